//! PNG pictures of visualizations ([`Viz`]), each with the colormap a
//! person expects: cyclic (sinebow) for phases, perceptual sequential maps
//! (magma, inferno, viridis) for magnitudes, a diverging map centred on zero
//! for signed values, RGB maps as they are; `holographic_bulk`'s layers side
//! by side; `flow` with arrows. Small grids are scaled up by whole pixels so
//! that a 64 x 64 run is still worth looking at.
//!
//! Writes are atomic: the picture appears complete or not at all.

use std::io::BufWriter;
use std::path::Path;

use engine_api::{Error, Result};
use instruments::viz::{normalize, Colormap, Viz, VizMap};

/// Images are scaled up by an integer factor until they are at least this wide.
const MIN_SIDE: usize = 384;
/// The colour of a cell the vacuum mask removed: a dark grey, apart from
/// every colormap's own black.
const VACUUM: [u8; 3] = [40, 40, 44];
/// `gradient` and `spectral` maps whose values all stay below this are
/// f32 rounding of a uniform density, drawn flat.
const FLAT: f32 = 1e-4;
/// Pixels between the layers of a montage.
const GAP: usize = 4;
/// Cells between the arrows of a flow picture (at least; more on big grids).
const ARROW_EVERY: usize = 8;

/// An RGB picture: what [`draw_viz`] makes and [`contact_sheet`] tiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `[height][width][3]`, 8-bit RGB.
    pub pixels: Vec<u8>,
}

impl Image {
    /// A white picture.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    /// Copies `other` in with its top-left corner at (x, y).
    fn blit(&mut self, other: &Image, x: usize, y: usize) {
        for row in 0..other.height.min(self.height.saturating_sub(y)) {
            let n = other.width.min(self.width.saturating_sub(x)) * 3;
            let from = row * other.width * 3;
            let to = ((y + row) * self.width + x) * 3;
            self.pixels[to..to + n].copy_from_slice(&other.pixels[from..from + n]);
        }
    }

    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y) {
            let k = 3 * (y as usize * self.width + x as usize);
            self.pixels[k..k + 3].copy_from_slice(&c);
        }
    }

    /// A line by Bresenham's algorithm.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.put(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Writes the picture as a PNG, atomically (`sparse_grid::output`): it
    /// appears complete or not at all.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(
                BufWriter::new(&mut bytes),
                self.width as u32,
                self.height as u32,
            );
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let fail = |e: png::EncodingError| Error::io(path, std::io::Error::other(e));
            let mut writer = encoder.write_header().map_err(fail)?;
            writer.write_image_data(&self.pixels).map_err(fail)?;
            writer.finish().map_err(fail)?;
        }
        sparse_grid::output::write(path, &bytes)
    }
}

/// The colour of a value in [0, 1] under a colormap (NaN draws black).
fn colour(map: Colormap, v: f32) -> [u8; 3] {
    if !v.is_finite() {
        return [0, 0, 0];
    }
    let t = v.clamp(0.0, 1.0) as f64;
    let c = match map {
        Colormap::Magma => colorous::MAGMA.eval_continuous(t),
        Colormap::Inferno => colorous::INFERNO.eval_continuous(t),
        Colormap::Viridis => colorous::VIRIDIS.eval_continuous(t),
        Colormap::Sinebow => colorous::SINEBOW.eval_continuous(t),
        // RdBu runs red (negative) to blue (positive) through white.
        Colormap::Diverging => colorous::RED_BLUE.eval_continuous(t),
        Colormap::Rgb => unreachable!("RGB maps are drawn as they are"),
    };
    [c.r, c.g, c.b]
}

/// The values drawn, in [0, 1]: Atheria's normalisation, except that
/// signed maps are scaled symmetrically so that zero is the diverging map's
/// white.
fn display_values(viz: Viz, map: &VizMap) -> Vec<f32> {
    if viz.colormap() == Colormap::Diverging {
        let m = map.data.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        return map
            .data
            .iter()
            .map(|v| if m > 0.0 { 0.5 + 0.5 * v / m } else { 0.5 })
            .collect();
    }
    if matches!(viz, Viz::Gradient | Viz::Spectral) {
        // Of a density that is uniform up to f32 rounding (every cell
        // normalised to 1) these are rounding noise, which min-max would
        // stretch into a full-contrast picture of nothing: such a map is
        // drawn flat.
        let max = map.data.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        if max < FLAT {
            return vec![0.0; map.data.len()];
        }
    }
    if matches!(viz, Viz::Physics | Viz::Energy | Viz::Delta) {
        // A few cells (where one channel nearly vanishes, for physics; at a
        // grid's zero-padded edge, for the delta) would leave the rest
        // black under min-max: the picture spans the 1st to the 99th
        // percentile.
        let mut v: Vec<f32> = map.data.iter().copied().filter(|v| v.is_finite()).collect();
        v.sort_by(f32::total_cmp);
        if let (Some(&lo), Some(&hi)) = (v.get(v.len() / 100), v.get(v.len() * 99 / 100)) {
            if hi > lo {
                return map.data.iter().map(|x| (x - lo) / (hi - lo)).collect();
            }
        }
    }
    normalize(viz, map).data
}

/// Draws `map` (a raw [`Simulation::field`](crate::Simulation::field) of
/// `viz`) as a PNG at `path`; `flow`, when given for [`Viz::Flow`], adds
/// the vectors as arrows.
pub fn write_viz(
    path: &Path,
    viz: Viz,
    map: &VizMap,
    flow: Option<(&[f32], &[f32])>,
) -> Result<()> {
    draw_viz(viz, map, flow)?.write_png(path)
}

/// Draws `map` as [`write_viz`] does, in memory.
pub fn draw_viz(viz: Viz, map: &VizMap, flow: Option<(&[f32], &[f32])>) -> Result<Image> {
    let scale = MIN_SIDE
        .div_ceil(map.width.max(map.height).max(1))
        .clamp(1, 16);
    draw_viz_scaled(viz, map, flow, scale)
}

/// Draws `map` as [`draw_viz`] does, each cell `scale` x `scale` pixels
/// (1 to 16): the same colours, for a program that scales the picture
/// itself (the live viewer sends one pixel per cell).
pub fn draw_viz_scaled(
    viz: Viz,
    map: &VizMap,
    flow: Option<(&[f32], &[f32])>,
    scale: usize,
) -> Result<Image> {
    let (w, h, layers) = (map.width, map.height, map.layers);
    if w == 0 || h == 0 || map.data.len() != w * h * map.channels * layers {
        return Err(Error::InvalidArgument(format!(
            "cannot draw {} values as a {w} x {h} x {} x {layers} picture",
            map.data.len(),
            map.channels
        )));
    }
    if !(1..=16).contains(&scale) {
        return Err(Error::InvalidArgument(format!(
            "picture scale {scale}: use 1 to 16 pixels per cell"
        )));
    }
    let values = display_values(viz, map);
    let (cw, ch) = (w * scale, h * scale);
    let mut canvas = Image::new(layers * cw + (layers - 1) * GAP, ch);
    for layer in 0..layers {
        let x0 = layer * (cw + GAP);
        for y in 0..h {
            for x in 0..w {
                let k = (layer * h + y) * w + x;
                let c = if map.vacuum.as_ref().is_some_and(|v| v[y * w + x]) {
                    VACUUM
                } else if map.channels == 3 {
                    let v = &values[3 * k..3 * k + 3];
                    [v[0], v[1], v[2]].map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)
                } else {
                    colour(viz.colormap(), values[k])
                };
                for py in 0..scale {
                    for px in 0..scale {
                        canvas.put((x0 + x * scale + px) as i64, (y * scale + py) as i64, c);
                    }
                }
            }
        }
    }
    if let (Viz::Flow, Some((dx, dy))) = (viz, flow) {
        draw_arrows(&mut canvas, w, h, scale, dx, dy);
    }
    Ok(canvas)
}

/// Pictures one below the other, left-aligned, on white.
pub fn stack(images: &[Image]) -> Image {
    let width = images.iter().map(|i| i.width).max().unwrap_or(0);
    let mut out = Image::new(
        width.max(1),
        images.iter().map(|i| i.height).sum::<usize>().max(1),
    );
    let mut y = 0;
    for image in images {
        out.blit(image, 0, y);
        y += image.height;
    }
    out
}

/// Tiles pictures row by row, `columns` to a row, on white with a gap;
/// each tile keeps its size (a montage takes its own width).
pub fn contact_sheet(tiles: &[Image], columns: usize) -> Image {
    let columns = columns.max(1);
    let cell_w = tiles.iter().map(|t| t.width).max().unwrap_or(0);
    let rows: Vec<&[Image]> = tiles.chunks(columns).collect();
    let row_h: Vec<usize> = rows
        .iter()
        .map(|r| r.iter().map(|t| t.height).max().unwrap_or(0))
        .collect();
    let width = columns * cell_w + (columns + 1) * GAP;
    let height = row_h.iter().sum::<usize>() + (rows.len() + 1) * GAP;
    let mut sheet = Image::new(width.max(1), height.max(1));
    let mut y = GAP;
    for (row, h) in rows.iter().zip(&row_h) {
        let mut x = GAP;
        for t in row.iter() {
            sheet.blit(t, x, y);
            x += cell_w + GAP;
        }
        y += h + GAP;
    }
    sheet
}

/// Arrows of the flow (already scaled so the largest component is 1) on a
/// coarse grid, each as long as the spacing at full strength.
fn draw_arrows(canvas: &mut Image, w: usize, h: usize, scale: usize, dx: &[f32], dy: &[f32]) {
    let every = ARROW_EVERY.max(w.max(h) / 32);
    // The arrow of the 90th-percentile speed spans the spacing, so that a
    // few fast cells do not shrink every other arrow to a dot.
    let mut speeds: Vec<f32> = (every / 2..h)
        .step_by(every)
        .flat_map(|y| (every / 2..w).step_by(every).map(move |x| (x, y)))
        .map(|(x, y)| dx[y * w + x].hypot(dy[y * w + x]))
        .filter(|s| s.is_finite())
        .collect();
    speeds.sort_by(f32::total_cmp);
    let p90 = speeds.get(speeds.len() * 9 / 10).copied().unwrap_or(0.0);
    if p90 <= 0.0 {
        return;
    }
    let reach = (every * scale) as f32 * 0.9 / p90;
    let white = [255, 255, 255];
    for y in (every / 2..h).step_by(every) {
        for x in (every / 2..w).step_by(every) {
            let (u, v) = (dx[y * w + x], dy[y * w + x]);
            let speed = u.hypot(v);
            if !speed.is_finite() || speed < 0.05 * p90 {
                continue;
            }
            // At most 1.5 spacings long.
            let (u, v) = if speed > 1.5 * p90 {
                (u * 1.5 * p90 / speed, v * 1.5 * p90 / speed)
            } else {
                (u, v)
            };
            let from = (
                ((x as f32 + 0.5) * scale as f32),
                ((y as f32 + 0.5) * scale as f32),
            );
            let to = (from.0 + u * reach, from.1 + v * reach);
            let p = |(a, b): (f32, f32)| (a.round() as i64, b.round() as i64);
            canvas.line(p(from), p(to), white);
            // The head: two short strokes back from the tip.
            let len = u.hypot(v);
            let (ux, uy) = (u / len, v / len);
            let head = (len * reach * 0.35).clamp(2.0, (every * scale) as f32 * 0.3);
            for side in [-1.0f32, 1.0] {
                let back = (
                    to.0 - head * (ux * 0.87 - side * uy * 0.5),
                    to.1 - head * (uy * 0.87 + side * ux * 0.5),
                );
                canvas.line(p(to), p(back), white);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn a_montage_has_every_layer_and_a_diverging_zero_is_white() {
        let dir = std::env::temp_dir().join(format!("atheria-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bulk = VizMap {
            width: 8,
            height: 8,
            channels: 1,
            layers: 5,
            data: (0..320).map(|v| v as f32).collect(),
            vacuum: None,
        };
        let path = dir.join("bulk.png");
        write_viz(&path, Viz::HolographicBulk, &bulk, None).unwrap();
        let (w, h, _) = read(&path);
        assert_eq!((w, h), (5 * 8 * 16 + 4 * GAP as u32, 8 * 16));

        let real = VizMap {
            width: 2,
            height: 1,
            channels: 1,
            layers: 1,
            data: vec![0.0, 1.0],
            vacuum: None,
        };
        let path = dir.join("real.png");
        write_viz(&path, Viz::Real, &real, None).unwrap();
        let (_, _, px) = read(&path);
        // The first cell is zero: the diverging map's middle, near white.
        assert!(px[..3].iter().all(|&c| c > 230), "{:?}", &px[..3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
