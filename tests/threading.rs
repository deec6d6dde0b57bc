//! The threading rule on every backend (ARCHITECTURE.md): a step called
//! from inside a rayon worker, where the backend's own pool (candle's rayon
//! pool, libtorch's OpenMP, ONNX Runtime's) would nest inside rayon's, is
//! refused with `Error::NestedPool` before anything happens, by both
//! engines; and an engine given its own rayon pool steps bitwise equal to
//! one on the global pool, with `forward` still on the stepping thread.

mod common;

use std::sync::Arc;

use atheria::sparse::Field;
use atheria::{
    state_file, BackendKind, ComputeBackend, DenseEngine, DenseState, Error, ModelPackage,
    SparseEngine, SparseOptions, StepOptions, StepStats,
};
use common::*;
use rayon::ThreadPool;

fn pool(threads: usize) -> Arc<ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool"),
    )
}

/// Every compiled-in backend with every golden case it can run, and the
/// case's initial state.
fn cases() -> Vec<(
    BackendKind,
    &'static str,
    Arc<dyn ComputeBackend>,
    DenseState,
)> {
    let mut out = Vec::new();
    for kind in backends() {
        for case in GOLDEN_CASES {
            let package = ModelPackage::load(golden(case)).expect("golden package");
            if !supports(kind, &package) {
                continue;
            }
            let initial =
                state_file::read_state(&golden(case).join("initial.safetensors"), usize::MAX)
                    .expect("initial state");
            out.push((kind, case, load(kind, case), initial));
        }
    }
    assert!(!out.is_empty(), "no backend to test");
    out
}

/// `step` run inside a worker of a pool of 2 threads and of rayon's global
/// pool (through `join`): both must be `NestedPool` errors.
fn refused_in_workers(
    what: &str,
    failures: &mut Vec<String>,
    mut step: impl FnMut() -> atheria::Result<StepStats> + Send,
) {
    let results = [
        ("a pool of 2", pool(2).install(&mut step)),
        ("the global pool", rayon::join(&mut step, || ()).0),
    ];
    for (whose, result) in results {
        match result {
            Err(Error::NestedPool { .. }) => {}
            other => failures.push(format!(
                "{what}: a step inside a worker of {whose} gave {other:?}, not NestedPool"
            )),
        }
    }
}

/// A cell of the lattice: x, y and its values as bits.
type CellBits = (i32, i32, Vec<(u32, u32)>);

/// The sparse lattice as sorted cells with values as bits.
fn snapshot(e: &SparseEngine) -> Vec<CellBits> {
    let mut v: Vec<_> = e
        .cells()
        .map(|(x, y, c)| {
            let bits = c.iter().map(|(a, b)| (a.to_bits(), b.to_bits())).collect();
            (x, y, bits)
        })
        .collect();
    v.sort_by_key(|&(x, y, _)| (y, x));
    v
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failures:\n  - {}",
        failures.len(),
        failures.join("\n  - ")
    );
}

#[test]
fn a_step_inside_a_rayon_worker_is_refused_on_every_backend_by_both_engines() {
    let mut failures = Vec::new();
    for (kind, case, backend, initial) in cases() {
        let what = format!("{kind} {case} dense");
        let mut dense = DenseEngine::new(backend.clone(), initial.clone(), StepOptions::default())
            .expect("dense engine");
        refused_in_workers(&what, &mut failures, || dense.step());
        // A recurrent law's memory starts as zeros in the engine.
        let s = dense.state();
        if (s.planes(), s.occupied(), s.step)
            != (initial.planes(), initial.occupied(), initial.step)
            || s.memory.data().iter().any(|&v| v != 0.0)
            || dense.last_delta().iter().any(|&v| v != 0.0)
        {
            failures.push(format!("{what}: a refused step changed the engine"));
        }

        let what = format!("{kind} {case} sparse");
        let mut sparse =
            SparseEngine::new(backend, SparseOptions::default()).expect("sparse engine");
        sparse.import(&initial).expect("import");
        let before = (snapshot(&sparse), sparse.tile_count(), sparse.step_count());
        refused_in_workers(&what, &mut failures, || sparse.step());
        // A recurrent law's memory is laid out by the first step, not before.
        if (snapshot(&sparse), sparse.tile_count(), sparse.step_count()) != before
            || sparse.memory().is_some()
        {
            failures.push(format!("{what}: a refused step changed the lattice"));
        }
        // From an ordinary thread both step.
        for (name, r) in [("dense", dense.step()), ("sparse", sparse.step())] {
            if let Err(e) = r {
                failures.push(format!(
                    "{kind} {case} {name}: an ordinary step failed: {e}"
                ));
            }
        }
    }
    report(failures);
}

#[test]
fn an_engine_with_its_own_pool_steps_bitwise_equal_on_every_backend() {
    const STEPS: usize = 3;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut failures = Vec::new();
    for (kind, case, backend, initial) in cases() {
        let (_, gamma) = case_params(case);
        let dense = |own: Option<Arc<ThreadPool>>| {
            let options = StepOptions::default().with_gamma(gamma);
            let mut e = DenseEngine::new(backend.clone(), initial.clone(), options).unwrap();
            if let Some(p) = own {
                e = e.with_pool(p);
            }
            for _ in 0..STEPS {
                e.step()
                    .unwrap_or_else(|err| panic!("{kind} {case} dense: {err}"));
            }
            (
                e.state().occupied().to_vec(),
                bits(e.state().planes()),
                bits(e.last_delta()),
            )
        };
        let sparse = |own: Option<Arc<ThreadPool>>| {
            let options = SparseOptions::default().with_gamma(gamma);
            let mut e = SparseEngine::new(backend.clone(), options).unwrap();
            e.import(&initial).unwrap();
            if let Some(p) = own {
                e = e.with_pool(p);
            }
            for _ in 0..STEPS {
                e.step()
                    .unwrap_or_else(|err| panic!("{kind} {case} sparse: {err}"));
            }
            let delta = e
                .bounding_box()
                .map(|area| bits(&e.field(area, Field::DeltaMagnitude).unwrap()));
            // A recurrent law's memory must not depend on the pool either.
            let memory = e.memory().map(|(m, w)| (bits(m.data()), w));
            Some((snapshot(&e), delta, memory))
        };
        let (dense_base, sparse_base) = (dense(None), sparse(None));
        for threads in [1, 3] {
            if dense(Some(pool(threads))) != dense_base {
                failures.push(format!(
                    "{kind} {case} dense: own pool of {threads} differs from the global pool"
                ));
            }
            if sparse_base.is_some() && sparse(Some(pool(threads))) != sparse_base {
                failures.push(format!(
                    "{kind} {case} sparse: own pool of {threads} differs from the global pool"
                ));
            }
        }
    }
    report(failures);
}
