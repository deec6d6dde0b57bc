//! PNG pictures of fields, with perceptual colormaps: a cyclic one for phases,
//! a sequential one for magnitudes. Small grids are scaled up by whole pixels
//! so that a 64 x 64 run is still worth looking at.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use engine_api::{Error, Result};

/// Images are scaled up by an integer factor until they are at least this wide.
const MIN_SIDE: usize = 384;

/// Which colormap a field gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Palette {
    /// Cyclic (sinebow), for angles in (-pi, pi].
    Phase,
    /// Sequential (magma), for magnitudes from 0 to the field's maximum.
    Magnitude,
}

/// Writes `values` (`height` rows of `width`) as a PNG. Phases map (-pi, pi] onto
/// the cycle; magnitudes map [0, max] onto the colormap (NaN draws black).
pub fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    values: &[f32],
    palette: Palette,
) -> Result<()> {
    if values.len() != width * height || width == 0 || height == 0 {
        return Err(Error::InvalidArgument(format!(
            "cannot draw {} values as a {width} x {height} picture",
            values.len()
        )));
    }
    let scale = MIN_SIDE.div_ceil(width.max(height)).clamp(1, 16);
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max);
    let colour = |v: f32| -> [u8; 3] {
        if !v.is_finite() {
            return [0, 0, 0];
        }
        let c = match palette {
            Palette::Phase => colorous::SINEBOW
                .eval_continuous(((v as f64 / std::f64::consts::TAU) + 0.5).rem_euclid(1.0)),
            Palette::Magnitude => colorous::MAGMA.eval_continuous(if max > 0.0 {
                (v / max).clamp(0.0, 1.0) as f64
            } else {
                0.0
            }),
        };
        [c.r, c.g, c.b]
    };
    let (w, h) = (width * scale, height * scale);
    let mut pixels = Vec::with_capacity(w * h * 3);
    for row in values.chunks_exact(width) {
        let line: Vec<u8> = row
            .iter()
            .flat_map(|&v| std::iter::repeat_n(colour(v), scale))
            .flatten()
            .collect();
        for _ in 0..scale {
            pixels.extend_from_slice(&line);
        }
    }
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let fail = |e: png::EncodingError| Error::io(path, std::io::Error::other(e));
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels).map_err(fail)?;
    writer.finish().map_err(fail)
}
