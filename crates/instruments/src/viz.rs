//! Visualizations: float maps of a frame, Atheria's normalisation to [0, 1],
//! and the colormap each one is drawn with. Definitions:
//! docs/instruments.md, "Visualizations".

use std::f32::consts::PI;
use std::fmt;
use std::str::FromStr;

use engine_api::{Error, Result};
use rustfft::{num_complex::Complex, FftPlanner};
use sparse_grid::summary::{ENERGY, FLOW_MAG, FLOW_X, FLOW_Y, PHYSICS};

use crate::frame::FrameRef;

/// Atheria's vacuum: a cell with |psi| at or below this is not drawn.
pub const VACUUM_THRESHOLD: f32 = 0.05;
/// Layers of `holographic_bulk` (the native engine's depth).
pub const BULK_LAYERS: usize = 5;

/// A visualization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Viz {
    /// sum_c |psi_c|^2.
    Density,
    /// The circular mean of the channels' phases.
    Phase,
    /// The phase of one channel (`phase:N`).
    PhaseChannel(usize),
    /// mean_c Re psi_c.
    Real,
    /// mean_c Im psi_c.
    Imag,
    /// sum_c |delta_c|^2 of the last step (density before any step).
    Energy,
    /// |grad density|.
    Gradient,
    /// log1p |FFT(density)|, centred, its DC replaced.
    Spectral,
    /// mean_c |delta_c| / |psi_c|.
    Physics,
    /// |psi_0|, |psi_1|, |psi_2| as RGB.
    Fields,
    /// mean_c |delta_c|, with the flow's vectors ([`flow_vectors`]).
    Flow,
    /// Hue = phase, value = density (absolute, clipped to 1).
    PhaseHsv,
    /// Atheria's holographic RGB.
    Holographic,
    /// Five progressively blurred layers of the density.
    HolographicBulk,
    /// |delta| of the last step.
    Delta,
}

/// How a visualization is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// Sequential, dark to bright (magnitudes).
    Magma,
    /// Sequential (energies).
    Inferno,
    /// Sequential, perceptually uniform (derived quantities).
    Viridis,
    /// Cyclic (phases).
    Sinebow,
    /// Diverging, white at zero (signed values).
    Diverging,
    /// The map is already RGB.
    Rgb,
}

impl Viz {
    /// Every visualization `--viz all` draws.
    pub const ALL: [Viz; 14] = [
        Viz::Density,
        Viz::Phase,
        Viz::Real,
        Viz::Imag,
        Viz::Energy,
        Viz::Gradient,
        Viz::Spectral,
        Viz::Physics,
        Viz::Fields,
        Viz::Flow,
        Viz::PhaseHsv,
        Viz::Holographic,
        Viz::HolographicBulk,
        Viz::Delta,
    ];

    /// The name in `--viz` lists and file names (`phase:3` for a channel).
    pub fn name(&self) -> String {
        match self {
            Viz::PhaseChannel(c) => format!("phase:{c}"),
            other => other.base_name().to_string(),
        }
    }

    fn base_name(&self) -> &'static str {
        match self {
            Viz::Density => "density",
            Viz::Phase | Viz::PhaseChannel(_) => "phase",
            Viz::Real => "real",
            Viz::Imag => "imag",
            Viz::Energy => "energy",
            Viz::Gradient => "gradient",
            Viz::Spectral => "spectral",
            Viz::Physics => "physics",
            Viz::Fields => "fields",
            Viz::Flow => "flow",
            Viz::PhaseHsv => "phase_hsv",
            Viz::Holographic => "holographic",
            Viz::HolographicBulk => "holographic_bulk",
            Viz::Delta => "delta",
        }
    }

    /// Parses a comma-separated list (`density,phase:0,flow` or `all`).
    pub fn parse_list(list: &str) -> Result<Vec<Viz>> {
        let mut out: Vec<Viz> = Vec::new();
        for name in list.split(',').map(str::trim) {
            let more = if name == "all" {
                Viz::ALL.to_vec()
            } else {
                vec![name.parse()?]
            };
            for v in more {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// The colormap it is drawn with.
    pub fn colormap(&self) -> Colormap {
        match self {
            Viz::Density | Viz::Spectral | Viz::HolographicBulk | Viz::Delta => Colormap::Magma,
            Viz::Energy => Colormap::Inferno,
            Viz::Gradient | Viz::Physics | Viz::Flow => Colormap::Viridis,
            Viz::Phase | Viz::PhaseChannel(_) => Colormap::Sinebow,
            Viz::Real | Viz::Imag => Colormap::Diverging,
            Viz::Fields | Viz::PhaseHsv | Viz::Holographic => Colormap::Rgb,
        }
    }
}

impl FromStr for Viz {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Some(c) = s.strip_prefix("phase:") {
            return c.parse().map(Viz::PhaseChannel).map_err(|_| {
                Error::InvalidArgument(format!(
                    "visualization `{s}`: the channel must be a whole number (phase:0)"
                ))
            });
        }
        Viz::ALL
            .into_iter()
            .find(|v| v.base_name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Viz::ALL.iter().map(|v| v.base_name()).collect();
                Error::InvalidArgument(format!(
                    "unknown visualization `{s}`: use {}, phase:N (channel N) or all",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for Viz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A float map: `layers` x `height` x `width` x `channels`, row-major
/// (`fields`, `phase_hsv` and `holographic` have 3 channels, RGB;
/// `holographic_bulk` has 5 layers).
#[derive(Debug, Clone, PartialEq)]
pub struct VizMap {
    /// Cells per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Values per cell: 1, or 3 for RGB.
    pub channels: usize,
    /// Stacked maps: 1, or 5 for `holographic_bulk`.
    pub layers: usize,
    /// The values.
    pub data: Vec<f32>,
    /// Per cell, true where the vacuum mask removed the cell: a picture
    /// draws it as background. `None` without the mask, and for maps that
    /// are not one value per cell of psi (`gradient`, `spectral`,
    /// `holographic_bulk`).
    pub vacuum: Option<Vec<bool>>,
}

/// The masked view of a frame: psi and the summary are zero where the
/// vacuum mask removed the cell.
struct Masked<'a> {
    f: &'a FrameRef<'a>,
    keep: Vec<bool>,
}

impl<'a> Masked<'a> {
    fn new(f: &'a FrameRef<'a>, mask: bool) -> Self {
        let keep = (0..f.cells())
            .map(|i| !mask || f.density(i).sqrt() > VACUUM_THRESHOLD)
            .collect();
        Self { f, keep }
    }

    fn psi(&self, i: usize, c: usize) -> (f32, f32) {
        if self.keep[i] {
            self.f.psi(i, c)
        } else {
            (0.0, 0.0)
        }
    }

    fn density(&self) -> Vec<f32> {
        (0..self.f.cells())
            .map(|i| if self.keep[i] { self.f.density(i) } else { 0.0 })
            .collect()
    }

    /// A plane of the delta summary, masked; `None` before any step.
    fn summary(&self, plane: usize) -> Option<Vec<f32>> {
        let n = self.f.cells();
        let s = self.f.summary?;
        Some(
            (0..n)
                .map(|i| if self.keep[i] { s[plane * n + i] } else { 0.0 })
                .collect(),
        )
    }

    /// The circular mean of the channels' phases, per cell.
    fn mean_phase(&self) -> Vec<f32> {
        let d = self.f.d;
        (0..self.f.cells())
            .map(|i| {
                let (mut s, mut c) = (0.0f64, 0.0f64);
                for ch in 0..d {
                    let (re, im) = self.psi(i, ch);
                    let a = im.atan2(re) as f64;
                    s += a.sin();
                    c += a.cos();
                }
                ((s / d as f64).atan2(c / d as f64)) as f32
            })
            .collect()
    }
}

/// The raw map of `viz` over `frame`, with Atheria's vacuum mask unless
/// `mask` is false.
pub fn field(viz: Viz, frame: &FrameRef<'_>, mask: bool) -> Result<VizMap> {
    let (w, h, n, d) = (frame.width, frame.height, frame.cells(), frame.d);
    let m = Masked::new(frame, mask);
    let shaped = |channels: usize, layers: usize, data: Vec<f32>| VizMap {
        width: w,
        height: h,
        channels,
        layers,
        data,
        vacuum: None,
    };
    let plain = |data| shaped(1, 1, data);
    let rgb = |data| shaped(3, 1, data);
    let mean = |part: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                let s: f64 = (0..d)
                    .map(|c| {
                        let (re, im) = m.psi(i, c);
                        [re, im][part] as f64
                    })
                    .sum();
                (s / d as f64) as f32
            })
            .collect()
    };
    let mut map = match viz {
        Viz::Density => plain(m.density()),
        Viz::Phase => plain(m.mean_phase()),
        Viz::PhaseChannel(c) => {
            if c >= d {
                return Err(Error::InvalidArgument(format!(
                    "visualization phase:{c}: the model has channels 0..{d}"
                )));
            }
            plain(
                (0..n)
                    .map(|i| {
                        let (re, im) = m.psi(i, c);
                        im.atan2(re)
                    })
                    .collect(),
            )
        }
        Viz::Real => plain(mean(0)),
        Viz::Imag => plain(mean(1)),
        Viz::Energy => plain(m.summary(ENERGY).unwrap_or_else(|| m.density())),
        Viz::Gradient => plain(gradient(&m.density(), w, h)),
        Viz::Spectral => plain(spectral(&m.density(), w, h)),
        Viz::Physics => plain(m.summary(PHYSICS).unwrap_or_else(|| vec![0.0; n])),
        Viz::Fields => {
            let mut data = vec![0.0f32; 3 * n];
            for i in 0..n {
                for c in 0..d.min(3) {
                    let (re, im) = m.psi(i, c);
                    data[3 * i + c] = (re * re + im * im).sqrt();
                }
            }
            rgb(data)
        }
        Viz::Flow => plain(m.summary(FLOW_MAG).unwrap_or_else(|| vec![0.0; n])),
        Viz::PhaseHsv => {
            let (phase, dens) = (m.mean_phase(), m.density());
            let mut data = Vec::with_capacity(3 * n);
            for i in 0..n {
                let hue = (phase[i] + PI) / (2.0 * PI);
                // The density on its absolute [0, 1], not Atheria's min-max,
                // which stretches a normalised field's f32 rounding into
                // noise (docs/instruments.md).
                let value = dens[i].clamp(0.0, 1.0);
                data.extend_from_slice(&hsv_to_rgb(hue, 1.0, value));
            }
            rgb(data)
        }
        Viz::Holographic => {
            let mut data = vec![0.0f32; 3 * n];
            for i in 0..n {
                if !m.keep[i] {
                    continue;
                }
                let (re, im) = frame.psi(i, 0);
                data[3 * i] = (5.0 * frame.density(i)).min(1.0);
                data[3 * i + 1] = (im.atan2(re) + PI) / (2.0 * PI);
                data[3 * i + 2] = ((re + 1.0) * 0.5).clamp(0.0, 1.0);
            }
            rgb(data)
        }
        Viz::HolographicBulk => {
            let mut data = m.density();
            data.reserve((BULK_LAYERS - 1) * n);
            for k in 1..BULK_LAYERS {
                let next = blur3(&data[(k - 1) * n..k * n], w, h);
                data.extend_from_slice(&next);
            }
            shaped(1, BULK_LAYERS, data)
        }
        Viz::Delta => plain(
            m.summary(ENERGY)
                .map(|e| e.into_iter().map(f32::sqrt).collect())
                .unwrap_or_else(|| vec![0.0; n]),
        ),
    };
    if mask && !matches!(viz, Viz::Gradient | Viz::Spectral | Viz::HolographicBulk) {
        map.vacuum = Some(m.keep.iter().map(|k| !k).collect());
    }
    Ok(map)
}

/// Atheria's normalisation of a raw map to [0, 1]: absolute for density and
/// phases, by the maximum for the flow, none for RGB maps, min-max (0.5 when
/// flat) for the rest.
pub fn normalize(viz: Viz, map: &VizMap) -> VizMap {
    let data = match viz {
        Viz::Density => map.data.iter().map(|v| v.clamp(0.0, 1.0)).collect(),
        Viz::Phase | Viz::PhaseChannel(_) => map
            .data
            .iter()
            .map(|v| ((v + PI) / (2.0 * PI)).clamp(0.0, 1.0))
            .collect(),
        Viz::Flow => {
            let max = map.data.iter().copied().fold(0.0f32, f32::max);
            map.data
                .iter()
                .map(|v| {
                    if max > 0.0 {
                        (v / max).clamp(0.0, 1.0)
                    } else {
                        0.0
                    }
                })
                .collect()
        }
        Viz::PhaseHsv | Viz::Holographic => map.data.clone(),
        _ => {
            let (lo, hi) = min_max(&map.data);
            if hi - lo < 1e-10 {
                vec![0.5; map.data.len()]
            } else {
                map.data
                    .iter()
                    .map(|v| ((v - lo) / (hi - lo)).clamp(0.0, 1.0))
                    .collect()
            }
        }
    };
    VizMap {
        data,
        vacuum: map.vacuum.clone(),
        ..*map
    }
}

/// The flow's vectors (mean_c Re delta_c, mean_c Im delta_c), masked and
/// scaled as Atheria's `calculate_flow_data` (the largest component is 1);
/// zeros before any step.
pub fn flow_vectors(frame: &FrameRef<'_>, mask: bool) -> (Vec<f32>, Vec<f32>) {
    let m = Masked::new(frame, mask);
    let n = frame.cells();
    let dx = m.summary(FLOW_X).unwrap_or_else(|| vec![0.0; n]);
    let dy = m.summary(FLOW_Y).unwrap_or_else(|| vec![0.0; n]);
    let max = dx.iter().chain(&dy).fold(0.0f32, |a, v| a.max(v.abs()));
    let s = if max > 0.0 { 1.0 / max } else { 1.0 };
    (
        dx.iter().map(|v| v * s).collect(),
        dy.iter().map(|v| v * s).collect(),
    )
}

fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// numpy.gradient of a `w x h` map (central inside, one-sided at the edges,
/// 0 along an axis of length 1), as sqrt(gx^2 + gy^2).
fn gradient(f: &[f32], w: usize, h: usize) -> Vec<f32> {
    let diff = |len: usize, k: usize, at: &dyn Fn(usize) -> f32| -> f32 {
        if len < 2 {
            0.0
        } else if k == 0 {
            at(1) - at(0)
        } else if k == len - 1 {
            at(k) - at(k - 1)
        } else {
            (at(k + 1) - at(k - 1)) / 2.0
        }
    };
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let gx = diff(w, x, &|k| f[y * w + k]);
            let gy = diff(h, y, &|k| f[k * w + x]);
            out[y * w + x] = (gx * gx + gy * gy).sqrt();
        }
    }
    out
}

/// log1p |fftshift(fft2(f))| with the centre replaced by the largest of its
/// neighbours.
fn spectral(f: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut planner = FftPlanner::<f64>::new();
    let mut buf: Vec<Complex<f64>> = f.iter().map(|&v| Complex::new(v as f64, 0.0)).collect();
    let row = planner.plan_fft_forward(w);
    for r in buf.chunks_exact_mut(w) {
        row.process(r);
    }
    let col = planner.plan_fft_forward(h);
    let mut column = vec![Complex::new(0.0, 0.0); h];
    for x in 0..w {
        for y in 0..h {
            column[y] = buf[y * w + x];
        }
        col.process(&mut column);
        for y in 0..h {
            buf[y * w + x] = column[y];
        }
    }
    // fftshift: output (y, x) holds frequency ((y + h - h/2) % h, ...).
    let mut mag = vec![0.0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            let (sy, sx) = ((y + h - h / 2) % h, (x + w - w / 2) % w);
            mag[y * w + x] = buf[sy * w + sx].norm();
        }
    }
    let (cy, cx) = (h / 2, w / 2);
    let mut best = None::<f64>;
    for y in cy.saturating_sub(1)..(cy + 2).min(h) {
        for x in cx.saturating_sub(1)..(cx + 2).min(w) {
            if (y, x) != (cy, cx) {
                best = Some(best.map_or(mag[y * w + x], |b| b.max(mag[y * w + x])));
            }
        }
    }
    if let Some(b) = best {
        mag[cy * w + cx] = b;
    }
    mag.iter().map(|v| v.ln_1p() as f32).collect()
}

/// One 3x3 binomial blur ([1 2 1]^T [1 2 1] / 16) with zero padding.
fn blur3(f: &[f32], w: usize, h: usize) -> Vec<f32> {
    const K: [f32; 3] = [0.25, 0.5, 0.25];
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            for (dy, ky) in K.iter().enumerate() {
                for (dx, kx) in K.iter().enumerate() {
                    let (yy, xx) = (y as i64 + dy as i64 - 1, x as i64 + dx as i64 - 1);
                    if (0..h as i64).contains(&yy) && (0..w as i64).contains(&xx) {
                        s += ky * kx * f[yy as usize * w + xx as usize];
                    }
                }
            }
            out[y * w + x] = s;
        }
    }
    out
}

/// HSV (all in [0, 1]) to RGB, as matplotlib's `hsv_to_rgb`.
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let i = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}
