//! Per-thread scratch buffers, so steady-state forwards do not allocate.

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with two scratch slices of this thread, of `a` and `b` floats.
///
/// The buffers only grow, so a pool thread allocates once per largest shape
/// it meets. Contents are unspecified: `f` must write before it reads. `f`
/// must not call back into `with_scratch` (kernels never nest).
pub fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (va, vb) = &mut *guard;
        if va.len() < a {
            va.resize(a, 0.0);
        }
        if vb.len() < b {
            vb.resize(b, 0.0);
        }
        f(&mut va[..a], &mut vb[..b])
    })
}
