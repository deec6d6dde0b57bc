//! The update rule: how a model's delta changes the state, fused into one
//! pass per run of cells. Dense and sparse engines both call one kernel (the
//! crate-private `update_run`, over raw plane pointers), so the physics is
//! written once; its safe public entry points are [`update_field`] (one
//! contiguous field) and [`update_rows`] (a field in parallel rows).

use engine_api::{Error, Result, UpdateRule};

/// Added to the norm before dividing, exactly as the PyTorch engine does.
pub const NORM_EPS: f32 = 1e-9;

/// Everything about a step's update except the data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateParams {
    /// Complex channels per cell.
    pub d_state: usize,
    /// Additive or unitary (delta = delta * psi).
    pub rule: UpdateRule,
    /// Decay: delta -= gamma * psi when gamma > 0.
    pub gamma: f32,
    /// Existence threshold: a cell whose norm before normalisation is below
    /// it becomes vacuum. `None` keeps every cell (the PyTorch engine's rule).
    pub threshold: Option<f32>,
}

/// A run of `n` cells laid out as 2D planes (real planes, then imaginary),
/// plane `c` starting at `ptr + c * stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaneRun<P> {
    /// First cell of plane 0.
    pub ptr: P,
    /// Distance in f32s between planes.
    pub stride: usize,
}

/// Updates `n` cells of psi from their delta, then normalises each cell,
/// writing 1 (matter) or 0 (vacuum) per cell to `occupied` when a threshold
/// is set. `norm` is scratch of at least `n` values. The state before the
/// step is read from `from` when given (the sparse engine stages a tile's
/// new values beside its old ones), else from `psi` itself (in place).
///
/// Steps 3 to 5 of the physics (ARCHITECTURE.md), in two sweeps over the
/// channels so that the inner loops are plain, vectorisable arrays.
///
/// # Safety
/// For every channel c < 2D, `psi.ptr + c * psi.stride .. + n` must be valid
/// for reads and writes, `delta.ptr + c * delta.stride .. + n` valid for
/// reads, and likewise `from`'s, which must not overlap psi's; no other
/// thread may touch those psi cells during the call.
pub(crate) unsafe fn update_run(
    psi: PlaneRun<*mut f32>,
    delta: PlaneRun<*const f32>,
    from: Option<PlaneRun<*const f32>>,
    n: usize,
    p: &UpdateParams,
    norm: &mut [f32],
    occupied: &mut [u8],
) {
    let d = p.d_state;
    let norm = &mut norm[..n];
    let occupied = &mut occupied[..n];
    norm.fill(0.0);
    let decay = p.gamma > 0.0;
    // psi + delta of one cell, from psi = a + ib and delta = u + iv.
    let cell = |a: f32, b: f32, mut u: f32, mut v: f32| {
        if p.rule == UpdateRule::Unitary {
            (u, v) = (u * a - v * b, u * b + v * a);
        }
        if decay {
            u -= p.gamma * a;
            v -= p.gamma * b;
        }
        (a + u, b + v)
    };
    for c in 0..d {
        // SAFETY: the caller guarantees these ranges; real and imaginary
        // planes of one channel never overlap (c < D <= c + D), nor do
        // `from`'s and psi's.
        let (pr, pi, dr, di) = unsafe {
            (
                std::slice::from_raw_parts_mut(psi.ptr.add(c * psi.stride), n),
                std::slice::from_raw_parts_mut(psi.ptr.add((c + d) * psi.stride), n),
                std::slice::from_raw_parts(delta.ptr.add(c * delta.stride), n),
                std::slice::from_raw_parts(delta.ptr.add((c + d) * delta.stride), n),
            )
        };
        match from {
            None => {
                for i in 0..n {
                    let (a, b) = cell(pr[i], pi[i], dr[i], di[i]);
                    (pr[i], pi[i]) = (a, b);
                    norm[i] += a * a + b * b;
                }
            }
            Some(from) => {
                // SAFETY: as above.
                let (fr, fi) = unsafe {
                    (
                        std::slice::from_raw_parts(from.ptr.add(c * from.stride), n),
                        std::slice::from_raw_parts(from.ptr.add((c + d) * from.stride), n),
                    )
                };
                for i in 0..n {
                    let (a, b) = cell(fr[i], fi[i], dr[i], di[i]);
                    (pr[i], pi[i]) = (a, b);
                    norm[i] += a * a + b * b;
                }
            }
        }
    }
    for i in 0..n {
        let mut len = norm[i].sqrt();
        if len.is_infinite() {
            // The sum of squares overflowed f32 (|psi| above ~1e19, e.g. a
            // huge gamma): PyTorch divides by inf and zeroes the cell;
            // measured with its largest value as the unit, the norm is finite.
            // SAFETY: as above.
            len = unsafe { scaled_norm(psi, i, 2 * d) };
        }
        let alive = p.threshold.is_none_or(|t| len >= t);
        occupied[i] = alive as u8;
        norm[i] = if alive { 1.0 / (len + NORM_EPS) } else { 0.0 };
    }
    for c in 0..2 * d {
        // SAFETY: as above.
        let plane = unsafe { std::slice::from_raw_parts_mut(psi.ptr.add(c * psi.stride), n) };
        for (x, s) in plane.iter_mut().zip(norm.iter()) {
            *x *= s;
        }
    }
}

/// The norm of cell `i` over `planes` planes of `psi`, scaled by the cell's
/// largest magnitude so that the sum of squares cannot overflow.
///
/// # Safety
/// `psi.ptr + c * psi.stride + i` must be valid for reads for every
/// c < `planes`.
unsafe fn scaled_norm(psi: PlaneRun<*mut f32>, i: usize, planes: usize) -> f32 {
    // SAFETY: the caller's promise, for every read below.
    let value = |c: usize| unsafe { *psi.ptr.add(c * psi.stride + i) };
    let largest = (0..planes).map(|c| value(c).abs()).fold(0.0f32, f32::max);
    if !largest.is_finite() || largest == 0.0 {
        return largest;
    }
    let sum: f32 = (0..planes).map(|c| (value(c) / largest).powi(2)).sum();
    largest * sum.sqrt()
}

/// Checks a run of delta planes: `Ok` with the sum of their squares (the
/// step's `energy` readout, computed in the same pass), or `Err` with the
/// first non-finite value as (cell, channel).
///
/// # Safety
/// As for `delta` in `update_run`.
pub(crate) unsafe fn first_non_finite(
    delta: PlaneRun<*const f32>,
    n: usize,
    channels: usize,
) -> std::result::Result<f64, (usize, usize)> {
    let mut energy = 0.0f64;
    for c in 0..channels {
        // SAFETY: the caller guarantees the range.
        let plane = unsafe { std::slice::from_raw_parts(delta.ptr.add(c * delta.stride), n) };
        // One vectorised pass for the common, all-finite case: a NaN or an
        // infinity makes the sum non-finite, and only then is the plane
        // searched.
        let sq = crate::summary::sum_of_squares(plane);
        if !sq.is_finite() {
            if let Some(i) = plane.iter().position(|x| !x.is_finite()) {
                return Err((i, c));
            }
        }
        energy += sq;
    }
    Ok(energy)
}

/// Updates one whole contiguous field (planes of `n` cells each, stride `n`):
/// the safe entry point for callers that hold the field as one slice.
pub fn update_field(
    psi: &mut [f32],
    delta: &[f32],
    n: usize,
    p: &UpdateParams,
    norm: &mut [f32],
    occupied: &mut [u8],
) {
    let len = 2 * p.d_state * n;
    assert!(psi.len() >= len && delta.len() >= len && norm.len() >= n && occupied.len() >= n);
    // SAFETY: the asserts above bound every plane; `psi` is exclusively borrowed.
    unsafe {
        update_run(
            PlaneRun {
                ptr: psi.as_mut_ptr(),
                stride: n,
            },
            PlaneRun {
                ptr: delta.as_ptr(),
                stride: n,
            },
            None,
            n,
            p,
            norm,
            occupied,
        )
    }
}

/// Pointers into a field shared by the row workers of [`update_rows`]. Every
/// worker touches only its own row of every plane, so the writes are disjoint.
#[derive(Clone, Copy)]
struct Rows {
    psi: *mut f32,
    delta: *const f32,
}
// SAFETY: see the struct doc; `update_rows` holds `&mut` to psi for the whole
// parallel update.
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

/// Updates a whole field of `norm.len()` cells in rows of `width`, one rayon
/// task per row: the dense engine's step and the sparse engine's global
/// window both end here. `occupied` receives the per-cell existence flags.
pub fn update_rows(
    psi: &mut [f32],
    delta: &[f32],
    width: usize,
    p: &UpdateParams,
    norm: &mut [f32],
    occupied: &mut [u8],
) {
    use rayon::prelude::*;
    let n = norm.len();
    assert!(width > 0 && n.is_multiple_of(width) && occupied.len() == n);
    assert!(psi.len() >= 2 * p.d_state * n && delta.len() >= 2 * p.d_state * n);
    let rows = Rows {
        psi: psi.as_mut_ptr(),
        delta: delta.as_ptr(),
    };
    norm.par_chunks_mut(width)
        .zip(occupied.par_chunks_mut(width))
        .enumerate()
        .for_each(|(y, (norm, occ))| {
            let r = rows;
            // SAFETY: the asserts bound row y of every plane, and only this
            // worker touches row y.
            unsafe {
                update_run(
                    PlaneRun {
                        ptr: r.psi.add(y * width),
                        stride: n,
                    },
                    PlaneRun {
                        ptr: r.delta.add(y * width),
                        stride: n,
                    },
                    None,
                    width,
                    p,
                    norm,
                    occ,
                )
            }
        });
}

/// Checks a decay term a user chose: a finite number >= 0. The one place
/// gamma is validated, for both engines and every program over them.
pub fn check_gamma(gamma: f32) -> Result<()> {
    if !gamma.is_finite() || gamma < 0.0 {
        return Err(Error::InvalidArgument(format!(
            "gamma {gamma} must be a finite number >= 0"
        )));
    }
    Ok(())
}

/// Checks an existence threshold a user chose: a finite number >= 0. The
/// one place a threshold is validated, for both engines and every program
/// over them (the sparse engine needs it above 0 as well:
/// [`crate::SparseOptions::validate`]).
pub fn check_threshold(threshold: f32) -> Result<()> {
    if !threshold.is_finite() || threshold < 0.0 {
        return Err(Error::InvalidArgument(format!(
            "threshold {threshold} must be a finite number >= 0"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    /// The physics written out per cell with complex numbers, as the PyTorch
    /// engine computes it: the specification the fused kernel must meet.
    fn reference(psi: &[f32], delta: &[f32], n: usize, p: &UpdateParams) -> Vec<f32> {
        let d = p.d_state;
        let mut out = psi.to_vec();
        for i in 0..n {
            let mut cells = Vec::new();
            for c in 0..d {
                let (a, b) = (psi[c * n + i] as f64, psi[(c + d) * n + i] as f64);
                let (mut u, mut v) = (delta[c * n + i] as f64, delta[(c + d) * n + i] as f64);
                if p.rule == UpdateRule::Unitary {
                    (u, v) = (u * a - v * b, u * b + v * a);
                }
                if p.gamma > 0.0 {
                    u -= p.gamma as f64 * a;
                    v -= p.gamma as f64 * b;
                }
                cells.push((a + u, b + v));
            }
            let norm = cells.iter().map(|(a, b)| a * a + b * b).sum::<f64>().sqrt();
            let keep = p.threshold.is_none_or(|t| norm >= t as f64);
            for (c, (a, b)) in cells.into_iter().enumerate() {
                let s = if keep { 1.0 / (norm + 1e-9) } else { 0.0 };
                out[c * n + i] = (a * s) as f32;
                out[(c + d) * n + i] = (b * s) as f32;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn fused_update_matches_the_per_cell_physics(
            d in 1usize..5, n in 1usize..40, unitary in any::<bool>(), gamma in prop_oneof![Just(0.0f32), 0.0f32..0.5],
            threshold in proptest::option::of(0.0f32..1.5), seed in any::<u64>(),
        ) {
            let values = |k: u64| -> Vec<f32> {
                (0..2 * d * n).map(|i| crate::rng::normal(&[seed, k, i as u64])).collect()
            };
            let (psi0, delta) = (values(0), values(1));
            let rule = if unitary { UpdateRule::Unitary } else { UpdateRule::Additive };
            let p = UpdateParams { d_state: d, rule, gamma, threshold };
            let mut psi = psi0.clone();
            let (mut norm, mut occ) = (vec![0.0; n], vec![0; n]);
            update_field(&mut psi, &delta, n, &p, &mut norm, &mut occ);
            let want = reference(&psi0, &delta, n, &p);
            for (got, want) in psi.iter().zip(&want) {
                prop_assert!((got - want).abs() <= 1e-5 + 1e-5 * want.abs(), "{got} vs {want}");
            }
            // Beside the old values (as sparse staging runs it): the same
            // values bit for bit, and the old ones untouched.
            let mut beside = vec![f32::NAN; psi.len()];
            let mut occ_beside = vec![9; n];
            // SAFETY: every slice holds 2d planes of n values.
            unsafe {
                update_run(
                    PlaneRun { ptr: beside.as_mut_ptr(), stride: n },
                    PlaneRun { ptr: delta.as_ptr(), stride: n },
                    Some(PlaneRun { ptr: psi0.as_ptr(), stride: n }),
                    n,
                    &p,
                    &mut norm,
                    &mut occ_beside,
                )
            };
            prop_assert_eq!(&beside, &psi);
            prop_assert_eq!(&occ_beside, &occ);
            for i in 0..n {
                let sq: f32 = (0..2 * d).map(|c| psi[c * n + i].powi(2)).sum();
                if occ[i] == 1 {
                    assert_relative_eq!(sq, 1.0, epsilon = 1e-4);
                } else {
                    prop_assert_eq!(sq, 0.0);
                }
            }
        }
    }

    #[test]
    fn a_huge_gamma_normalises_instead_of_zeroing() {
        // psi - 1e20 psi: |psi|^2 overflows f32, but the direction is -psi.
        let (d, n) = (3, 5);
        let psi0: Vec<f32> = (0..2 * d * n)
            .map(|i| crate::rng::normal(&[7, i as u64]))
            .collect();
        let delta = vec![0.0; 2 * d * n];
        let p = UpdateParams {
            d_state: d,
            rule: UpdateRule::Additive,
            gamma: 1e20,
            threshold: Some(0.01),
        };
        let mut psi = psi0.clone();
        let (mut norm, mut occ) = (vec![0.0; n], vec![0; n]);
        update_field(&mut psi, &delta, n, &p, &mut norm, &mut occ);
        let want = reference(&psi0, &delta, n, &p);
        assert!(
            occ.iter().all(|&o| o == 1),
            "every cell stays matter: {occ:?}"
        );
        for (got, want) in psi.iter().zip(&want) {
            assert!((got - want).abs() <= 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn first_non_finite_names_cell_and_channel() {
        let n = 6;
        let mut delta = vec![0.5f32; 4 * n];
        let run = |d: &[f32]| unsafe {
            first_non_finite(
                PlaneRun {
                    ptr: d.as_ptr(),
                    stride: n,
                },
                n,
                4,
            )
        };
        assert_eq!(run(&delta), Ok(0.25 * 4.0 * n as f64));
        delta[2 * n + 4] = f32::INFINITY;
        delta[3 * n + 1] = f32::NAN;
        assert_eq!(run(&delta), Err((4, 2)));
    }

    #[test]
    fn gamma_and_threshold_must_be_finite_and_not_negative() {
        for ok in [0.0, 0.01, 5.0] {
            assert!(
                check_gamma(ok).is_ok() && check_threshold(ok).is_ok(),
                "{ok}"
            );
        }
        for bad in [-0.01, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let (g, t) = (check_gamma(bad), check_threshold(bad));
            assert!(matches!(g, Err(Error::InvalidArgument(m)) if m.contains("gamma")));
            assert!(matches!(t, Err(Error::InvalidArgument(m)) if m.contains("threshold")));
        }
    }
}
