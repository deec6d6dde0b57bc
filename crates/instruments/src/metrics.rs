//! Readouts: what a run reports about its physics, cheap enough to compute
//! every step. Definitions: docs/instruments.md, "Readouts".

use rayon::prelude::*;
use serde::Serialize;

use sparse_grid::summary::sum_of_squares;

use crate::frame::FrameRef;
use crate::viz::VACUUM_THRESHOLD;

/// Atheria's epochs (its `EpochDetector.epochs`, 0 to 4 reachable), in
/// English.
pub const EPOCH_NAMES: [&str; 5] = [
    "unstable vacuum (big bang)",
    "quantum era (probability soup)",
    "particle era (symmetric crystallisation)",
    "chemical era (polymers and motion)",
    "gravitational era (accretion)",
];

/// The readouts of one moment of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Steps taken.
    pub step: u64,
    /// sqrt(sum over cells of |psi|^2).
    pub norm: f64,
    /// Mean of the density sum_c |psi_c|^2 over the frame's cells.
    pub mean_density: f64,
    /// Largest density.
    pub max_density: f64,
    /// Cells with |psi| above the threshold (the existence threshold, else
    /// Atheria's vacuum 0.05).
    pub matter_cells: u64,
    /// sum over cells of sum_c |delta_c|^2 of the last step (0 before).
    pub energy: f64,
    /// |<psi0|psi>|^2 / (<psi0|psi0> <psi|psi>): 1 means unchanged.
    pub fidelity: f64,
    /// Atheria's spatial Shannon entropy of the density.
    pub entropy: f64,
    /// Atheria's clustering: the variance of the density (unbiased).
    pub clustering: f64,
    /// Atheria's symmetry under a 90-degree rotation, 1 = symmetric.
    pub symmetry: f64,
    /// Atheria's epoch, 0 to 4 ([`EPOCH_NAMES`]).
    pub epoch: u8,
}

/// Atheria's `EpochDetector.determine_epoch` on its three inputs.
pub fn determine_epoch(energy: f64, clustering: f64, symmetry: f64) -> u8 {
    if energy < 1.0 {
        0
    } else if symmetry < 0.2 && clustering < 0.1 {
        1
    } else if symmetry > 0.6 {
        2
    } else if symmetry > 0.3 && clustering > 0.5 {
        3
    } else if clustering > 2.0 {
        4
    } else {
        1
    }
}

thread_local! {
    /// Per-thread scratch (densities, one channel's magnitudes and their
    /// transpose), reused so that readouts every step allocate nothing once
    /// warm.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Lanes of the vectorised sums: independent accumulators the compiler
/// keeps in SIMD registers (one accumulator would chain every addition).
const LANES: usize = 16;

/// sum_k f(a_k, b_k) over two slices of equal length, in f32 lanes,
/// returned in f64.
#[inline]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

/// The readouts of `frame`. `psi0` is the baseline of the fidelity (cells
/// paired by lattice coordinates), `energy` the last step's sum of
/// |delta|^2 (`None` before any step: 0; [`energy_of`] computes it from a
/// summary), `threshold` the existence threshold, if any.
///
/// One pass over psi, channel by channel (its densities, its magnitudes
/// against their rotation, its overlap with psi0), in vectorised loops: at
/// 128 x 128 x 64 a few percent of a step.
pub fn metrics(
    frame: &FrameRef<'_>,
    psi0: Option<&FrameRef<'_>>,
    energy: Option<f64>,
    threshold: Option<f32>,
    step: u64,
) -> Metrics {
    let (n, d, w, h) = (frame.cells(), frame.d, frame.width, frame.height);
    let t = threshold.unwrap_or(VACUUM_THRESHOLD) as f64;
    // The symmetry's square: the frame centred in S x S, zeros outside.
    let s = w.max(h);
    let (ox, oy) = ((s - w) / 2, (s - h) / 2);
    let same_box = psi0.is_some_and(|p| p.cell_box() == frame.cell_box() && p.d == d);
    // Channels are split among the pool's threads, each with its own
    // scratch (partial densities, magnitudes, their transpose) in one
    // buffer kept between calls.
    let parts = rayon::current_num_threads().clamp(1, d);
    let per = d.div_ceil(parts);
    let block = n + 2 * s * s;
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.resize(parts * block, 0.0);
        let (diff, re, im, n0) = scratch
            .par_chunks_mut(block)
            .enumerate()
            .map(|(t, buf)| {
                let (dens, rest) = buf.split_at_mut(n);
                let (mag, rot) = rest.split_at_mut(s * s);
                dens.fill(0.0);
                if w != h {
                    mag.fill(0.0); // the square's cells outside the frame
                }
                let (mut diff, mut re, mut im, mut n0) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
                for c in t * per..((t + 1) * per).min(d) {
                    let (pr, pi) = (
                        &frame.planes[c * n..][..n],
                        &frame.planes[(c + d) * n..][..n],
                    );
                    for y in 0..h {
                        let row = &mut mag[(y + oy) * s + ox..][..w];
                        let (r, i) = (&pr[y * w..][..w], &pi[y * w..][..w]);
                        let dr = &mut dens[y * w..][..w];
                        for (((m, d), a), b) in row.iter_mut().zip(dr.iter_mut()).zip(r).zip(i) {
                            let m2 = a * a + b * b;
                            *d += m2;
                            *m = m2.sqrt();
                        }
                    }
                    // rot90 (torch's, on [row][col]): out[i][j] = a[j][s-1-i],
                    // the transpose with its rows reversed; transposed in
                    // 8 x 8 blocks, then compared row against row.
                    transpose(mag, rot, s);
                    for i in 0..s {
                        let (a, b) = (&mag[i * s..][..s], &rot[(s - 1 - i) * s..][..s]);
                        diff += lane_sum(a, b, |x, y| (x - y) * (x - y));
                    }
                    if same_box {
                        let p0 = psi0.expect("same_box implies psi0");
                        let (ar, ai) = (&p0.planes[c * n..][..n], &p0.planes[(c + d) * n..][..n]);
                        let (r, i, m) = overlap_terms(ar, ai, pr, pi);
                        (re, im, n0) = (re + r, im + i, n0 + m);
                    }
                }
                (diff, re, im, n0)
            })
            .reduce(
                || (0.0, 0.0, 0.0, 0.0),
                |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3),
            );
        // The partial densities, added into the first part's.
        let (first, others) = scratch.split_at_mut(block);
        let dens = &mut first[..n];
        for part in others.chunks_exact(block) {
            for (x, y) in dens.iter_mut().zip(&part[..n]) {
                *x += y;
            }
        }
        // Per-cell statistics in chunks over the pool (the logarithms of
        // the entropy are the costly part).
        const CHUNK: usize = 4096;
        let (sum, sumsq, max, matter) = dens
            .par_chunks(CHUNK)
            .map(|ch| {
                ch.iter()
                    .fold((0.0f64, 0.0f64, 0.0f64, 0u64), |(s, q, m, k), &v| {
                        let v = v as f64;
                        (s + v, q + v * v, m.max(v), k + (v > t * t) as u64)
                    })
            })
            .reduce(
                || (0.0, 0.0, 0.0, 0),
                |a, b| (a.0 + b.0, a.1 + b.1, a.2.max(b.2), a.3 + b.3),
            );
        let total = sum + 1e-10;
        let entropy = -dens
            .par_chunks(CHUNK)
            .map(|ch| {
                ch.iter()
                    .map(|&v| {
                        let p = v as f64 / total;
                        p * (p + 1e-10).ln()
                    })
                    .sum::<f64>()
            })
            .sum::<f64>();
        let clustering = if n > 1 {
            ((sumsq - sum * sum / n as f64) / (n - 1) as f64).max(0.0)
        } else {
            0.0
        };
        let symmetry = 1.0 / (1.0 + 100.0 * diff / (s * s * d) as f64);
        let fidelity = match psi0 {
            None => 1.0,
            Some(_) if same_box => overlap_fidelity(re, im, n0, sum),
            Some(p0) => {
                let (re, im) = overlap(frame, p0);
                let n0 = sum_of_squares(&p0.planes[..2 * p0.d * p0.cells()]);
                overlap_fidelity(re, im, n0, sum)
            }
        };
        Metrics {
            step,
            norm: sum.sqrt(),
            mean_density: sum / n as f64,
            max_density: max,
            matter_cells: matter,
            energy: energy.unwrap_or(0.0),
            fidelity,
            entropy,
            clustering,
            symmetry,
            epoch: determine_epoch(sum, clustering, symmetry),
        }
    })
}

/// `dst` = the transpose of the `s x s` matrix `src`: eight rows of `src`
/// at a time, each read in order, their column `j` written as eight
/// contiguous values of `dst`'s row `j`.
fn transpose(src: &[f32], dst: &mut [f32], s: usize) {
    const B: usize = 8;
    let (src, dst) = (&src[..s * s], &mut dst[..s * s]);
    let full = s / B * B;
    for i0 in (0..full).step_by(B) {
        let rows: [&[f32]; B] = std::array::from_fn(|k| &src[(i0 + k) * s..][..s]);
        for (j, out) in dst.chunks_exact_mut(s).enumerate() {
            let out: &mut [f32; B] = (&mut out[i0..i0 + B]).try_into().expect("8 values");
            for k in 0..B {
                out[k] = rows[k][j];
            }
        }
    }
    for i in full..s {
        for j in 0..s {
            dst[j * s + i] = src[i * s + j];
        }
    }
}

/// One channel's share of <psi0|psi> and <psi0|psi0>, in one vectorised
/// pass: psi0 = a + ib, psi = u + iv, conj(a + ib)(u + iv) = (au + bv) +
/// i(av - bu). Returns (re, im, |psi0|^2).
fn overlap_terms(a: &[f32], b: &[f32], u: &[f32], v: &[f32]) -> (f64, f64, f64) {
    let (mut re, mut im, mut n0) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
    let mut tail = (0.0f32, 0.0f32, 0.0f32);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (cu, cv) = (u.chunks_exact(LANES), v.chunks_exact(LANES));
    for (((a, b), u), v) in ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cu.remainder())
        .zip(cv.remainder())
    {
        tail.0 += a * u + b * v;
        tail.1 += a * v - b * u;
        tail.2 += a * a + b * b;
    }
    for (((a, b), u), v) in ca.zip(cb).zip(cu).zip(cv) {
        for l in 0..LANES {
            re[l] += a[l] * u[l] + b[l] * v[l];
            im[l] += a[l] * v[l] - b[l] * u[l];
            n0[l] += a[l] * a[l] + b[l] * b[l];
        }
    }
    let total = |acc: [f32; LANES], t: f32| acc.iter().map(|&x| x as f64).sum::<f64>() + t as f64;
    (total(re, tail.0), total(im, tail.1), total(n0, tail.2))
}

/// |<psi0|psi>|^2 / (<psi0|psi0> <psi|psi>) from the overlap (re, im),
/// <psi0|psi0> = `n0` and <psi|psi> = `norm_sq`; 0 when either norm is 0.
fn overlap_fidelity(re: f64, im: f64, n0: f64, norm_sq: f64) -> f64 {
    if n0 <= 0.0 || norm_sq <= 0.0 {
        return 0.0;
    }
    (re * re + im * im) / (n0 * norm_sq)
}

/// <psi0|psi> over the cells both frames hold, when their boxes differ.
fn overlap(frame: &FrameRef<'_>, p0: &FrameRef<'_>) -> (f64, f64) {
    let (n, m) = (frame.cells(), p0.cells());
    let (a, b) = (frame.cell_box(), p0.cell_box());
    let (x0, x1) = (a.min_x.max(b.min_x) as i64, a.max_x.min(b.max_x) as i64);
    let (y0, y1) = (a.min_y.max(b.min_y) as i64, a.max_y.min(b.max_y) as i64);
    let (mut re, mut im) = (0.0f64, 0.0f64);
    if x0 > x1 || y0 > y1 {
        return (re, im);
    }
    let len = (x1 - x0 + 1) as usize;
    let (d, d0) = (frame.d, p0.d);
    for c in 0..d.min(d0) {
        let (ur, ui) = (
            &frame.planes[c * n..][..n],
            &frame.planes[(c + d) * n..][..n],
        );
        let (ar, ai) = (&p0.planes[c * m..][..m], &p0.planes[(c + d0) * m..][..m]);
        for y in y0..=y1 {
            let i = frame.index(x0, y).expect("inside the overlap");
            let j = p0.index(x0, y).expect("inside the overlap");
            let (ar, ai) = (&ar[j..j + len], &ai[j..j + len]);
            let (ur, ui) = (&ur[i..i + len], &ui[i..i + len]);
            re += lane_sum(ar, ur, |a, u| a * u) + lane_sum(ai, ui, |b, v| b * v);
            im += lane_sum(ar, ui, |a, v| a * v) - lane_sum(ai, ur, |b, u| b * u);
        }
    }
    (re, im)
}

/// The readouts' `energy` from a frame's delta summary (`None` without one).
pub fn energy_of(frame: &FrameRef<'_>) -> Option<f64> {
    let n = frame.cells();
    frame
        .summary
        .map(|s| s[..n].iter().map(|&v| v as f64).sum())
}
