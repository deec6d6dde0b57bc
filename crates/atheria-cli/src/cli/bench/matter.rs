//! Putting matter into a sparse lattice: discs, squares and scattered cells.
//!
//! Every cell gets the same normalised value. With the identity law the
//! benchmarks use (psi' = 2 psi, normalised back to psi; vacuum's delta is
//! zero, below the existence threshold), the pattern stays exactly as it is,
//! so every timed step costs what the first one did.

use atheria::{DenseState, SparseEngine};

use super::config::Matter;

/// Rows inserted per strip: the temporary dense block stays small (a few
/// MiB) even for a million-cell disc, so it does not inflate peak memory.
const STRIP: usize = 16;

fn value(d: usize) -> (f32, f32) {
    (1.0 / (d as f32).sqrt(), 0.0)
}

/// Inserts the cells (x, y) of the box [x0, x0 + w) x [y0, y0 + h) for
/// which `inside` holds, strip by strip.
fn insert_where(
    e: &mut SparseEngine,
    (x0, y0): (i32, i32),
    (w, h): (usize, usize),
    inside: impl Fn(i64, i64) -> bool,
) -> anyhow::Result<()> {
    let d = e.d_state();
    let v = value(d).0;
    for sy in (0..h).step_by(STRIP) {
        let rows = STRIP.min(h - sy);
        let mut s = DenseState::zeros(rows, w, d)?;
        s.origin = (x0, y0 + sy as i32);
        let n = s.cells();
        let (planes, mask) = s.split_mut();
        planes[..d * n].fill(v);
        for (i, m) in mask.iter_mut().enumerate() {
            let (x, y) = ((i % w) as i64, (sy + i / w) as i64);
            *m = inside(x, y) as u8;
        }
        e.insert_dense(&s)?;
    }
    Ok(())
}

/// A disc of `cells` cells (as near as the lattice allows) centred at
/// (cx, cy).
pub fn disc(e: &mut SparseEngine, (cx, cy): (i32, i32), cells: usize) -> anyhow::Result<()> {
    let r = (cells as f64 / std::f64::consts::PI).sqrt();
    let ri = r.ceil() as i64;
    let side = (2 * ri + 1) as usize;
    let r2 = r * r;
    insert_where(e, (cx - ri as i32, cy - ri as i32), (side, side), |x, y| {
        let (dx, dy) = ((x - ri) as f64, (y - ri) as f64);
        dx * dx + dy * dy <= r2
    })
}

/// Fills an `extent` x `extent` square at (0, 0) with `matter`.
pub fn fill_extent(e: &mut SparseEngine, extent: usize, matter: Matter) -> anyhow::Result<()> {
    let cells = extent * extent;
    match matter {
        Matter::Disc(f) if f >= 1.0 => insert_where(e, (0, 0), (extent, extent), |_, _| true),
        Matter::Disc(f) => {
            let c = (extent / 2) as i32;
            disc(e, (c, c), (f * cells as f64).round() as usize)
        }
        Matter::Scattered(f) => {
            let want = (f * cells as f64).round() as usize;
            let v = [value(e.d_state()); 1];
            let values = v.repeat(e.d_state());
            // A fixed seed: the same cells on every run and backend.
            let mut rng = sparse_grid::rng::Rng::new(0x1234_5678);
            while e.occupied_count() < want {
                let (x, y) = (rng.below(extent as u64), rng.below(extent as u64));
                e.insert(x as i32, y as i32, &values)?;
            }
            Ok(())
        }
    }
}
