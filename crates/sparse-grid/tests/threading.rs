//! The threading rule, enforced (ARCHITECTURE.md): a step called from inside
//! a rayon worker is an error that changes nothing, and an engine given its
//! own pool computes exactly what it computes on the global pool, with
//! `forward` still on the stepping thread (the reference backend asserts
//! that it never runs in a rayon worker). The same checks on every real
//! backend are in the library's tests (tests/threading.rs at the root).

mod common;

use std::sync::Arc;

use common::{Reference, Rng};
use std::sync::atomic::Ordering;

use engine_api::{ComputeBackend, Error, UpdateRule};
use rayon::ThreadPool;
use sparse_grid::sparse::Field;
use sparse_grid::{
    init, DenseEngine, DenseState, InitKind, SparseEngine, SparseOptions, StepOptions, StepStats,
    Vacuum,
};

fn pool(threads: usize) -> Arc<ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool"),
    )
}

/// A seeded dense state, every cell matter.
fn state(height: usize, width: usize, d: usize, seed: u64) -> DenseState {
    let mut s = DenseState::zeros(height, width, d).unwrap();
    s.origin = (-5, 3);
    init::fill(&mut s, InitKind::Random, seed);
    s
}

/// A sparse engine holding scattered cells and a blob.
fn sparse(backend: Arc<dyn ComputeBackend>, vacuum: Vacuum) -> SparseEngine {
    let options = SparseOptions::default()
        .with_tile(8)
        .with_threshold(0.3)
        .with_vacuum(vacuum)
        .with_seed(5);
    let mut e = SparseEngine::new(backend, options).unwrap();
    let d = e.d_state();
    e.insert_dense(&state(12, 13, d, 1)).unwrap();
    let mut rng = Rng::new(2);
    for _ in 0..30 {
        let (x, y) = (rng.below(60) as i32 - 30, rng.below(60) as i32 - 30);
        let v: Vec<(f32, f32)> = (0..d).map(|_| (rng.normal(), rng.normal())).collect();
        e.insert(x, y, &v).unwrap();
    }
    e
}

/// A cell of the lattice: x, y and its values as bits.
type CellBits = (i32, i32, Vec<(u32, u32)>);

/// Every cell of the lattice, sorted, with values as bits.
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

/// Runs `step` inside a worker of a pool of 2, of a pool of 1, and of
/// rayon's global pool (through `join`), returning the three results.
fn in_every_kind_of_worker(
    mut step: impl FnMut() -> engine_api::Result<StepStats> + Send,
) -> Vec<engine_api::Result<StepStats>> {
    let mut results = Vec::new();
    for threads in [2, 1] {
        results.push(pool(threads).install(&mut step));
    }
    results.push(rayon::join(&mut step, || ()).0);
    results
}

fn assert_nested(results: Vec<engine_api::Result<StepStats>>, what: &str) {
    assert_eq!(results.len(), 3);
    for r in results {
        match r {
            Err(Error::NestedPool { pool }) => {
                assert!(pool.contains("worker"), "{what}: {pool}")
            }
            other => panic!("{what}: a step inside a rayon worker gave {other:?}"),
        }
    }
}

#[test]
fn a_dense_step_inside_a_rayon_worker_is_refused_and_changes_nothing() {
    let reference = Arc::new(Reference::conv3x3(2, UpdateRule::Additive, 0.3, 1));
    let before = state(9, 11, 2, 3);
    let mut e =
        DenseEngine::new(reference.clone(), before.clone(), StepOptions::default()).unwrap();
    assert_nested(in_every_kind_of_worker(|| e.step()), "dense");
    assert_eq!(e.state(), &before);
    assert!(e.last_delta().iter().all(|&v| v == 0.0));
    assert_eq!(reference.calls.load(Ordering::Relaxed), 0, "forward ran");

    // Inside the engine's own pool too, and the error says so.
    let own = pool(2);
    let mut e = e.with_pool(own.clone());
    let err = own.install(|| e.step()).unwrap_err();
    assert!(err.to_string().contains("the engine's own pool"), "{err}");
    assert_eq!(e.state(), &before);
    // From an ordinary thread it steps.
    e.step().unwrap();
    assert_eq!(e.state().step, 1);
}

#[test]
fn a_sparse_step_inside_a_rayon_worker_is_refused_and_changes_nothing() {
    let harmonic = Vacuum::Harmonic { strength: 0.5 };
    let local: Arc<Reference> = Arc::new(Reference::conv3x3(2, UpdateRule::Unitary, 0.3, 1));
    let global: Arc<Reference> = Arc::new(Reference::global(2, 4, 7));
    for (name, reference, vacuum) in [
        ("local", &local, Vacuum::Zero),
        ("local, harmonic vacuum", &local, harmonic),
        ("global", &global, Vacuum::Zero),
    ] {
        let calls = reference.calls.load(Ordering::Relaxed);
        let mut e = sparse(reference.clone(), vacuum);
        e.step().unwrap();
        let before = (snapshot(&e), e.tile_count(), e.step_count());
        let area = e.bounding_box().unwrap();
        let delta = e.field(area, Field::DeltaMagnitude).unwrap();
        assert_nested(in_every_kind_of_worker(|| e.step()), name);
        assert_eq!((snapshot(&e), e.tile_count(), e.step_count()), before);
        assert_eq!(e.field(area, Field::DeltaMagnitude).unwrap(), delta);
        assert_eq!(
            reference.calls.load(Ordering::Relaxed),
            calls + 1,
            "{name}: forward ran in a refused step"
        );
    }
}

#[test]
fn an_engine_with_its_own_pool_steps_bitwise_equal_to_one_without() {
    let steps = 4;
    let dense = |backend: Arc<dyn ComputeBackend>, own: Option<Arc<ThreadPool>>| {
        let options = StepOptions::default().with_gamma(0.05).with_threshold(0.2);
        let mut e = DenseEngine::new(backend, state(13, 17, 2, 9), options).unwrap();
        if let Some(p) = own {
            e = e.with_pool(p);
        }
        for _ in 0..steps {
            e.step().unwrap();
        }
        (e.state().clone(), e.last_delta().to_vec())
    };
    let backends: [Arc<dyn ComputeBackend>; 2] = [
        Arc::new(Reference::conv3x3(2, UpdateRule::Unitary, 0.4, 3)),
        Arc::new(Reference::global(2, 1, 4)),
    ];
    for backend in &backends {
        let base = dense(backend.clone(), None);
        for threads in [1, 3] {
            let got = dense(backend.clone(), Some(pool(threads)));
            assert_eq!(got.0.occupied(), base.0.occupied());
            assert!(
                bits(got.0.planes()) == bits(base.0.planes()) && bits(&got.1) == bits(&base.1),
                "dense, {}, {threads} threads: not bitwise equal",
                backend.spec().name
            );
        }
    }

    let harmonic = Vacuum::Harmonic { strength: 0.5 };
    for (backend, vacuum) in [
        (backends[0].clone(), Vacuum::Zero),
        (backends[0].clone(), harmonic),
        (backends[1].clone(), harmonic),
    ] {
        let run = |own: Option<Arc<ThreadPool>>| {
            let mut e = sparse(backend.clone(), vacuum);
            if let Some(p) = own {
                e = e.with_pool(p);
                assert!(e.pool().is_some());
            }
            for _ in 0..steps {
                e.step().unwrap();
            }
            let area = e.bounding_box().unwrap();
            let delta = e.field(area, Field::DeltaMagnitude).unwrap();
            (snapshot(&e), bits(&delta))
        };
        let base = run(None);
        for threads in [1, 3] {
            assert!(
                run(Some(pool(threads))) == base,
                "sparse, {}, {vacuum:?}, {threads} threads: not bitwise equal",
                backend.spec().name
            );
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
