//! The delta summary: five numbers per cell about the last step's delta,
//! kept by both engines so that pictures and readouts of the step
//! (`energy`, `flow`, `physics`, `|delta|`) do not need the whole delta,
//! which the sparse engine does not keep (it is one chunk long).
//!
//! Definitions (docs/instruments.md, "The delta summary"), with
//! `delta_c = dr_c + i di_c` the model output of the step and psi the state
//! after it:
//!
//! | plane | value |
//! |---|---|
//! | [`ENERGY`] | sum_c \|delta_c\|^2 |
//! | [`FLOW_X`] | mean_c dr_c |
//! | [`FLOW_Y`] | mean_c di_c |
//! | [`FLOW_MAG`] | mean_c \|delta_c\| |
//! | [`PHYSICS`] | mean_c \|delta_c\| / \|psi_c\| (0 where \|psi_c\| <= 1e-10) |

/// Planes of a summary, each one value per cell.
pub const PLANES: usize = 5;
/// Plane of sum_c |delta_c|^2 (Atheria's "energy" picture).
pub const ENERGY: usize = 0;
/// Plane of mean_c Re delta_c (the flow's x component).
pub const FLOW_X: usize = 1;
/// Plane of mean_c Im delta_c (the flow's y component).
pub const FLOW_Y: usize = 2;
/// Plane of mean_c |delta_c| (the flow's magnitude).
pub const FLOW_MAG: usize = 3;
/// Plane of mean_c |delta_c| / |psi_c| (Atheria's "physics" map).
pub const PHYSICS: usize = 4;

/// Below this |psi_c| a channel adds 0 to [`PHYSICS`], as in Atheria.
pub const PHYSICS_EPS: f32 = 1e-10;

/// sum of v^2 over a slice, in f64, in one vectorised pass: independent
/// f32 lanes (one accumulator would chain every addition), then their sum.
/// The `energy` readout of a whole delta; non-finite when any value is.
pub fn sum_of_squares(v: &[f32]) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    for chunk in chunks {
        for l in 0..LANES {
            acc[l] += chunk[l] * chunk[l];
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
}

/// Writes the summary of `n` cells to `out` (`[PLANES][n]`), from `psi` and
/// `delta` given as `2 d` planes of `n` cells each (real planes, then
/// imaginary ones: the layout of [`crate::DenseState`]).
///
/// # Panics
/// When a slice is shorter than its layout says.
pub fn summarize(psi: &[f32], delta: &[f32], n: usize, d: usize, out: &mut [f32]) {
    assert!(psi.len() >= 2 * d * n && delta.len() >= 2 * d * n && out.len() >= PLANES * n);
    let out = &mut out[..PLANES * n];
    out.fill(0.0);
    let (energy, rest) = out.split_at_mut(n);
    let (fx, rest) = rest.split_at_mut(n);
    let (fy, rest) = rest.split_at_mut(n);
    let (fm, physics) = rest.split_at_mut(n);
    for c in 0..d {
        let (pr, pi) = (&psi[c * n..][..n], &psi[(c + d) * n..][..n]);
        let (dr, di) = (&delta[c * n..][..n], &delta[(c + d) * n..][..n]);
        for i in 0..n {
            let sq = dr[i] * dr[i] + di[i] * di[i];
            let m = sq.sqrt();
            let p = (pr[i] * pr[i] + pi[i] * pi[i]).sqrt();
            energy[i] += sq;
            fx[i] += dr[i];
            fy[i] += di[i];
            fm[i] += m;
            physics[i] += if p > PHYSICS_EPS { m / p } else { 0.0 };
        }
    }
    let inv = 1.0 / d as f32;
    for plane in [fx, fy, fm, &mut physics[..n]] {
        plane.iter_mut().for_each(|v| *v *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cell_by_hand() {
        // d = 2: psi = (1 + 0i, 0 + 2i), delta = (3 + 4i, 0 + 0i).
        let psi = [1.0, 0.0, 0.0, 2.0];
        let delta = [3.0, 0.0, 4.0, 0.0];
        let mut out = [0.0; PLANES];
        summarize(&psi, &delta, 1, 2, &mut out);
        assert_eq!(out, [25.0, 1.5, 2.0, 2.5, 2.5]);
    }
}
