//! Readouts: what a run reports about its physics, cheap enough to compute
//! every step. Definitions: docs/instruments.md, "Readouts".

use serde::Serialize;

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

/// The readouts of `frame`. `psi0` is the baseline of the fidelity (cells
/// paired by lattice coordinates), `energy` the last step's sum of
/// |delta|^2 (`None` before any step: 0; [`energy_of`] computes it from a
/// summary), `threshold` the existence threshold, if any.
pub fn metrics(
    frame: &FrameRef<'_>,
    psi0: Option<&FrameRef<'_>>,
    energy: Option<f64>,
    threshold: Option<f32>,
    step: u64,
) -> Metrics {
    let (n, d, w) = (frame.cells(), frame.d, frame.width);
    let t = threshold.unwrap_or(VACUUM_THRESHOLD) as f64;
    let (mut sum, mut sumsq, mut max, mut matter) = (0.0f64, 0.0f64, 0.0f64, 0u64);
    for i in 0..n {
        let v = frame.density(i) as f64;
        sum += v;
        sumsq += v * v;
        max = max.max(v);
        matter += (v.sqrt() > t) as u64;
    }
    let mut entropy = 0.0f64;
    let total = sum + 1e-10;
    for i in 0..n {
        let p = frame.density(i) as f64 / total;
        entropy -= p * (p + 1e-10).ln();
    }
    let clustering = if n > 1 {
        ((sumsq - sum * sum / n as f64) / (n - 1) as f64).max(0.0)
    } else {
        0.0
    };
    let energy = energy.unwrap_or(0.0);

    // Fidelity over the cells both frames hold.
    let fidelity = psi0.map_or(1.0, |p0| {
        let (mut re, mut im, mut n0) = (0.0f64, 0.0f64, 0.0f64);
        for j in 0..p0.cells() {
            n0 += p0.density(j) as f64;
            let (x, y) = (
                p0.origin.0 as i64 + (j % p0.width) as i64,
                p0.origin.1 as i64 + (j / p0.width) as i64,
            );
            if let Some(i) = frame.index(x, y) {
                for c in 0..d.min(p0.d) {
                    let (a, b) = p0.psi(j, c);
                    let (u, v) = frame.psi(i, c);
                    // conj(a + ib) (u + iv)
                    re += a as f64 * u as f64 + b as f64 * v as f64;
                    im += a as f64 * v as f64 - b as f64 * u as f64;
                }
            }
        }
        if n0 > 0.0 && sum > 0.0 {
            (re * re + im * im) / (n0 * sum)
        } else {
            0.0
        }
    });

    // Symmetry: the frame centred in an S x S square, against its rotation.
    let s = frame.width.max(frame.height);
    let (ox, oy) = ((s - frame.width) / 2, (s - frame.height) / 2);
    let at = |row: usize, col: usize| -> Option<usize> {
        let (r, c) = (row.checked_sub(oy)?, col.checked_sub(ox)?);
        (r < frame.height && c < w).then_some(r * w + c)
    };
    let mut diff = 0.0f64;
    let plane = |c: usize| {
        (
            &frame.planes[c * n..][..n],
            &frame.planes[(c + d) * n..][..n],
        )
    };
    for c in 0..d {
        let (pr, pi) = plane(c);
        let mag = |k: Option<usize>| k.map_or(0.0, |k| (pr[k] * pr[k] + pi[k] * pi[k]).sqrt());
        for i in 0..s {
            for j in 0..s {
                let a = mag(at(i, j));
                let b = mag(at(j, s - 1 - i));
                diff += ((a - b) as f64).powi(2);
            }
        }
    }
    let symmetry = 1.0 / (1.0 + 100.0 * diff / (s * s * d) as f64);

    Metrics {
        step,
        norm: sum.sqrt(),
        mean_density: sum / n as f64,
        max_density: max,
        matter_cells: matter,
        energy,
        fidelity,
        entropy,
        clustering,
        symmetry,
        epoch: determine_epoch(sum, clustering, symmetry),
    }
}

/// The readouts' `energy` from a frame's delta summary (`None` without one).
pub fn energy_of(frame: &FrameRef<'_>) -> Option<f64> {
    let n = frame.cells();
    frame
        .summary
        .map(|s| s[..n].iter().map(|&v| v as f64).sum())
}
