//! The sparse engine's API and its promises: global windows, the harmonic
//! vacuum, coordinate range, all-or-nothing steps, limits, slot reuse,
//! export and import, queries and fields.

mod common;

use std::sync::Arc;

use common::{Reference, Rng};
use engine_api::{ComputeBackend, Error, UpdateRule};
use sparse_grid::sparse::{CellBox, Field};
use sparse_grid::{DenseEngine, DenseState, SparseEngine, SparseOptions, StepOptions, Vacuum};

fn engine(backend: Arc<dyn ComputeBackend>, options: SparseOptions) -> SparseEngine {
    SparseEngine::new(backend, options).unwrap()
}

fn unit(d: usize, rng: &mut Rng) -> Vec<(f32, f32)> {
    let v: Vec<(f32, f32)> = (0..d)
        .map(|_| (rng.uniform_in(-1.0, 1.0), rng.uniform_in(-1.0, 1.0)))
        .collect();
    let n = v.iter().map(|(a, b)| a * a + b * b).sum::<f32>().sqrt() + 1e-6;
    v.into_iter().map(|(a, b)| (a / n, b / n)).collect()
}

/// Inserts a few blobs and scattered cells around (x0, y0).
fn populate(e: &mut SparseEngine, x0: i32, y0: i32, seed: u64) {
    let mut rng = Rng::new(seed);
    let d = e.d_state();
    for y in 0..6 {
        for x in 0..9 {
            e.insert(x0 + x, y0 + y, &unit(d, &mut rng)).unwrap();
        }
    }
    for _ in 0..12 {
        let (x, y) = (rng.below(70) as i32 - 35, rng.below(70) as i32 - 35);
        e.insert(x0 + x, y0 + y, &unit(d, &mut rng)).unwrap();
    }
}

/// A cell: x, y and D values.
type Cell = (i32, i32, Vec<(f32, f32)>);

/// Everything observable about the lattice: cells sorted by position.
fn snapshot(e: &SparseEngine) -> Vec<Cell> {
    let mut v: Vec<_> = e.cells().map(|(x, y, c)| (x, y, c.to_vec())).collect();
    v.sort_by_key(|&(x, y, _)| (y, x));
    v
}

#[test]
fn a_global_step_equals_the_dense_engine_on_its_window() {
    for (m, tile, threshold) in [(3, 8, 0.01), (4, 16, 0.3), (1, 4, 0.9)] {
        let d = 2;
        let backend: Arc<dyn ComputeBackend> = Arc::new(Reference::global(d, m, 21));
        let mut e = engine(
            backend.clone(),
            SparseOptions::default()
                .with_tile(tile)
                .with_threshold(threshold),
        );
        assert!(e.is_global());
        populate(&mut e, -5, 11, 3);
        for _ in 0..3 {
            let win = e.next_window().unwrap().unwrap();
            assert!(win.width().is_multiple_of(m) && win.height().is_multiple_of(m));
            let bbox = e.bounding_box().unwrap();
            assert!(win.min_x <= bbox.min_x - tile as i32 && win.max_x >= bbox.max_x + tile as i32);
            let mut dense = DenseEngine::new(
                backend.clone(),
                e.export(win).unwrap(),
                StepOptions::default().with_threshold(threshold),
            )
            .unwrap();
            dense.step().unwrap();
            let stats = e.step().unwrap();
            assert_eq!(stats.window, Some((win.height(), win.width())));
            let got = e.export(win).unwrap();
            let want = dense.state();
            assert_eq!(got.occupied(), want.occupied());
            for (a, b) in got.planes().iter().zip(want.planes()) {
                assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
            }
            assert_eq!(e.occupied_count(), stats.occupied_cells);
            assert_eq!(
                e.cells_in(win).count(),
                e.occupied_count(),
                "matter outside the window"
            );
            let delta = e.field(win, Field::DeltaMagnitude).unwrap();
            let n = win.width() * win.height();
            for (i, &v) in delta.iter().enumerate() {
                let sq: f32 = (0..2 * d)
                    .map(|c| dense.last_delta()[c * n + i].powi(2))
                    .sum();
                assert!((v - sq.sqrt()).abs() <= 1e-5);
            }
        }
    }
}

#[test]
fn the_harmonic_vacuum_does_not_depend_on_tiles_threads_or_order() {
    let d = 2;
    // The reference backend asserts that `forward` never runs in a rayon
    // worker: the engine's own pool is for its loops only.
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.3, 8));
    let cells = |reverse: bool| {
        let mut rng = Rng::new(4);
        let mut cells: Vec<_> = (0..40)
            .map(|_| {
                let v = unit(d, &mut rng);
                (rng.below(40) as i32 - 20, rng.below(40) as i32 - 20, v)
            })
            .collect();
        if reverse {
            cells.reverse();
        }
        cells
    };
    let run = |vacuum: Vacuum, tile: usize, threads: usize, reverse: bool| {
        let mut e = engine(
            backend.clone(),
            SparseOptions::default()
                .with_tile(tile)
                .with_vacuum(vacuum)
                .with_seed(99)
                .with_threshold(0.5),
        );
        for (x, y, v) in cells(reverse) {
            e.insert(x, y, &v).unwrap();
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut e = e.with_pool(Arc::new(pool));
        for _ in 0..4 {
            e.step().unwrap();
        }
        snapshot(&e)
    };
    let harmonic = Vacuum::Harmonic { strength: 0.7 };
    let base = run(harmonic, 16, 1, false);
    assert_eq!(base, run(harmonic, 8, 1, true));
    assert_eq!(base, run(harmonic, 4, 2, false));
    assert_eq!(base, run(harmonic, 32, 4, true));
    assert_ne!(
        base,
        run(Vacuum::Zero, 16, 1, false),
        "the harmonic vacuum must change the result"
    );
}

#[test]
fn vacuum_values_are_a_function_of_their_key() {
    let v = Vacuum::Harmonic { strength: 0.7 };
    let a = v.value(5, -3, 1 << 40, 7, 1);
    assert_eq!(a, v.value(5, -3, 1 << 40, 7, 1));
    assert!(((a.0 * a.0 + a.1 * a.1) - 1.0).abs() < 1e-6);
    assert_ne!(a, v.value(5, -3, 1 << 40, 8, 1), "a new step draws anew");
    assert_ne!(a, v.value(5, -3, 1 << 40, 7, 0));
    assert_ne!(a, v.value(6, -3, 1 << 40, 7, 1));
    assert_eq!(Vacuum::Zero.value(5, 1, 2, 3, 0), (0.0, 0.0));
}

#[test]
fn coordinates_beyond_i32_are_errors_not_wraps() {
    let d = 1;
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.3, 1));
    for (x, y) in [(i32::MAX, 0), (0, i32::MIN), (i32::MIN, i32::MAX)] {
        let mut e = engine(backend.clone(), SparseOptions::default());
        e.insert(x, y, &[(1.0, 0.0)]).unwrap();
        e.insert(7, 7, &[(1.0, 0.0)]).unwrap();
        let before = (snapshot(&e), e.tile_count(), e.step_count());
        let err = e.step().unwrap_err();
        assert!(matches!(err, Error::Step { step: 1, .. }), "{err}");
        let err = err.cause().to_string();
        assert!(err.contains("edge of the lattice"), "{err}");
        assert!(err.contains(&format!("x = {x}, y = {y}")), "{err}");
        assert_eq!((snapshot(&e), e.tile_count(), e.step_count()), before);
    }
    // One cell inside the edge is fine: the halo stays in the lattice.
    let mut e = engine(backend.clone(), SparseOptions::default());
    e.insert(i32::MAX - 1, i32::MIN + 1, &[(1.0, 0.0)]).unwrap();
    e.step().unwrap();
    assert!(e.get(i32::MAX, i32::MIN).is_some());
    assert!(e.step().is_err());

    // A dense state reaching past the lattice is refused whole.
    let mut state = DenseState::zeros(2, 5, d).unwrap();
    state.occupied_mut().fill(1);
    state.origin = (i32::MAX - 2, 0);
    let mut e = engine(backend.clone(), SparseOptions::default());
    assert!(matches!(
        e.insert_dense(&state),
        Err(Error::InvalidArgument(_))
    ));
    assert!(e.import(&state).is_err());
    assert_eq!(e.occupied_count(), 0);
    assert!(CellBox::from_origin(i32::MAX, 0, 2, 1).is_err());

    // A global model's window must fit too.
    let global: Arc<dyn ComputeBackend> = Arc::new(Reference::global(d, 1, 2));
    let mut e = engine(global, SparseOptions::default());
    e.insert(i32::MAX - 3, 0, &[(1.0, 0.0)]).unwrap();
    assert!(e.next_window().is_err());
    let err = e.step().unwrap_err().cause().to_string();
    assert!(err.contains("i32 lattice"), "{err}");
    assert_eq!(e.step_count(), 0);
}

#[test]
fn a_non_finite_delta_fails_the_step_and_changes_nothing() {
    let d = 2;
    let mut reference = Reference::conv3x3(d, UpdateRule::Additive, 0.3, 6);
    reference.poison = Some(0.5);
    let backend: Arc<dyn ComputeBackend> = Arc::new(reference);
    let mut e = engine(backend, SparseOptions::default());
    populate(&mut e, 100, -100, 5);
    e.step().unwrap();
    e.insert(131, -77, &[(0.5, 0.0), (0.0, 0.0)]).unwrap();
    let before = (
        snapshot(&e),
        e.tile_count(),
        e.step_count(),
        e.occupied_count(),
    );
    let err = e.step().unwrap_err();
    // One step completed, so the failing one is step 2, as in the dense engine.
    assert!(matches!(err, Error::Step { step: 2, .. }), "{err}");
    assert!(
        matches!(
            err.cause(),
            Error::NonFinite {
                x: 131,
                y: -77,
                channel: 0,
                imaginary: false
            }
        ),
        "{err:?}"
    );
    let msg = err.cause().to_string();
    assert!(
        msg.contains("non-finite delta at x = 131, y = -77"),
        "{msg}"
    );
    assert!(msg.contains("real part of channel 0"), "{msg}");
    assert_eq!(
        (
            snapshot(&e),
            e.tile_count(),
            e.step_count(),
            e.occupied_count()
        ),
        before
    );
}

#[test]
fn max_cells_stops_growth_with_an_error_and_no_change() {
    let d = 1;
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.5, 2));
    let mut e = engine(backend, SparseOptions::default().with_max_cells(60));
    for i in 0..3 {
        e.insert(i, 0, &[(1.0, 0.0)]).unwrap();
    }
    let mut failed = false;
    for _ in 0..10 {
        let before = (snapshot(&e), e.tile_count(), e.step_count());
        match e.step() {
            Ok(s) => assert!(s.occupied_cells <= 60),
            Err(err) => {
                assert!(
                    matches!(err.cause(), Error::TooManyCells { limit: 60, .. }),
                    "{err:?}"
                );
                assert_eq!((snapshot(&e), e.tile_count(), e.step_count()), before);
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the law grows: it must hit the limit");
    let mut small = engine(
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.5, 2)),
        SparseOptions::default().with_max_cells(2),
    );
    small.insert(0, 0, &[(1.0, 0.0)]).unwrap();
    small.insert(0, 1, &[(1.0, 0.0)]).unwrap();
    small.insert(0, 1, &[(0.5, 0.0)]).unwrap();
    assert!(small.insert(5, 5, &[(1.0, 0.0)]).is_err());
    assert_eq!(small.occupied_count(), 2);
}

#[test]
fn a_stationary_pattern_reuses_its_tile_slots() {
    let d = 2;
    // Zero weights: delta = 0, so the pattern stays put while its halo tiles
    // are created and dropped every step.
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.0, 1));
    let mut e = engine(backend, SparseOptions::default());
    populate(&mut e, -40, 40, 7);
    // Cells on tile edges and corners, whose halos reach neighbour tiles.
    for (x, y) in [(15, 15), (16, 200), (-1, -1), (-200, 31)] {
        e.insert(x, y, &[(1.0, 0.0), (0.0, 0.0)]).unwrap();
    }
    let cells = e.occupied_count();
    let tiles = e.tile_count();
    e.step().unwrap();
    let slots = e.tile_slots();
    assert!(
        slots > tiles,
        "halo tiles are created during a step: {slots} slots, {tiles} tiles, {cells} cells"
    );
    for _ in 0..100 {
        let s = e.step().unwrap();
        assert_eq!(s.occupied_cells, cells);
    }
    assert_eq!(
        e.tile_slots(),
        slots,
        "the slab grew on a stationary pattern"
    );
    assert_eq!(e.tile_count(), tiles, "empty tiles must be dropped");
}

#[test]
fn export_import_round_trip_and_replace() {
    let d = 3;
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.3, 3));
    let mut a = engine(backend.clone(), SparseOptions::default());
    populate(&mut a, -1000, 2000, 9);
    a.step().unwrap();
    a.step().unwrap();
    let bbox = a.bounding_box().unwrap();
    let state = a.export(bbox).unwrap();
    assert_eq!(state.origin, (bbox.min_x, bbox.min_y));
    assert_eq!(state.step, 2);
    assert_eq!(
        state.occupied().iter().filter(|&&o| o != 0).count(),
        a.occupied_count()
    );

    let mut b = engine(backend.clone(), SparseOptions::default());
    b.import(&state).unwrap();
    assert_eq!(b.step_count(), 2);
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(b.export(bbox).unwrap(), state);
    // Both continue identically.
    a.step().unwrap();
    b.step().unwrap();
    assert_eq!(snapshot(&a), snapshot(&b));

    // Import replaces its box: matter inside it that the state lacks goes.
    let mut c = engine(backend.clone(), SparseOptions::default());
    c.insert(0, 0, &[(1.0, 0.0); 3]).unwrap();
    c.insert(50, 50, &[(1.0, 0.0); 3]).unwrap();
    let mut patch = DenseState::zeros(4, 4, d).unwrap();
    patch.origin = (-2, -2);
    patch.set(3, 3, 1, (0.0, 1.0));
    patch.occupied_mut()[15] = 1;
    c.import(&patch).unwrap();
    assert!(c.get(0, 0).is_none());
    assert_eq!(c.get(1, 1).unwrap().get(1), (0.0, 1.0));
    assert!(c.get(50, 50).is_some());
    assert_eq!(c.occupied_count(), 2);
    assert_eq!(c.tile_count(), 2, "the emptied tile must be dropped");
    // insert_dense only adds.
    let mut d2 = engine(backend, SparseOptions::default());
    d2.insert(-1, -1, &[(1.0, 0.0); 3]).unwrap();
    assert_eq!(d2.insert_dense(&patch).unwrap(), 1);
    assert_eq!(d2.occupied_count(), 2);
    // Wrong d_state and non-finite values are refused.
    assert!(d2.import(&DenseState::zeros(2, 2, 2).unwrap()).is_err());
    let mut bad = patch.clone();
    bad.set(3, 3, 0, (f32::NAN, 0.0));
    assert!(d2.insert_dense(&bad).is_err());
    assert!(d2.insert(0, 0, &[(f32::INFINITY, 0.0); 3]).is_err());
    assert!(d2.insert(0, 0, &[(1.0, 0.0); 2]).is_err());
    assert_eq!(d2.occupied_count(), 2);
}

#[test]
fn queries_and_fields_agree_with_the_cells() {
    let d = 2;
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.3, 3));
    let mut e = engine(backend, SparseOptions::default());
    assert!(e.bounding_box().is_none());
    populate(&mut e, 7, -3, 11);
    e.step().unwrap();
    let all = snapshot(&e);
    assert_eq!(all.len(), e.occupied_count());
    let bbox = e.bounding_box().unwrap();
    for (x, y, _) in &all {
        assert!(bbox.contains(*x, *y));
    }
    assert!(all.iter().any(|c| c.0 == bbox.min_x) && all.iter().any(|c| c.1 == bbox.max_y));

    let area = CellBox::new(0, -10, 20, 5);
    let mut inside: Vec<_> = e.cells_in(area).map(|(x, y, _)| (x, y)).collect();
    inside.sort_by_key(|&(x, y)| (y, x));
    let want: Vec<_> = all
        .iter()
        .filter(|c| area.contains(c.0, c.1))
        .map(|c| (c.0, c.1))
        .collect();
    assert_eq!(inside, want);
    let near: usize = e.cells_within(10, 0, 6).count();
    let want = all
        .iter()
        .filter(|c| ((c.0 - 10) as i64).pow(2) + (c.1 as i64).pow(2) <= 36)
        .count();
    assert_eq!(near, want);
    assert_eq!(
        e.cells_within(i32::MAX, i32::MAX, u32::MAX).count(),
        all.iter()
            .filter(|c| ((i32::MAX as i128 - c.0 as i128).pow(2)
                + (i32::MAX as i128 - c.1 as i128).pow(2))
                <= (u32::MAX as i128).pow(2))
            .count()
    );

    let density = e.field(bbox, Field::Density).unwrap();
    let phase = e.field(bbox, Field::Phase(1)).unwrap();
    let delta = e.field(bbox, Field::DeltaMagnitude).unwrap();
    let w = bbox.width();
    for (x, y, v) in &all {
        let i = (y - bbox.min_y) as usize * w + (x - bbox.min_x) as usize;
        let dens: f32 = v.iter().map(|(a, b)| a * a + b * b).sum();
        assert!((density[i] - dens).abs() < 1e-6 && (dens - 1.0).abs() < 1e-4);
        assert_eq!(phase[i], v[1].1.atan2(v[1].0));
        assert!(delta[i] > 0.0);
    }
    assert!(e.field(bbox, Field::Phase(2)).is_err());
    assert!(e.remove(all[0].0, all[0].1).is_some());
    assert!(e.remove(all[0].0, all[0].1).is_none());
    assert_eq!(e.occupied_count(), all.len() - 1);
}

#[test]
fn options_are_checked() {
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(1, UpdateRule::Additive, 0.3, 3));
    for bad in [
        SparseOptions::default().with_tile(12),
        SparseOptions::default().with_tile(2),
        SparseOptions::default().with_threshold(0.0),
        SparseOptions::default().with_threshold(-0.5),
        SparseOptions::default().with_threshold(f32::NAN),
        SparseOptions::default().with_gamma(f32::NAN),
        SparseOptions::default().with_gamma(-0.1),
        SparseOptions::default().with_max_cells(0),
        SparseOptions::default().with_vacuum(Vacuum::harmonic(f32::INFINITY)),
    ] {
        assert!(SparseEngine::new(backend.clone(), bad).is_err(), "{bad:?}");
    }
    // The dense engine's options, checked by the same functions.
    let state = DenseState::zeros(4, 4, 1).unwrap();
    for bad in [
        StepOptions::default().with_gamma(-1.0),
        StepOptions::default().with_gamma(f32::INFINITY),
        StepOptions::default().with_threshold(-0.1),
        StepOptions::default().with_threshold(f32::NAN),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        assert!(
            DenseEngine::new(backend.clone(), state.clone(), bad).is_err(),
            "{bad:?}"
        );
    }
    let good = StepOptions::default().with_gamma(0.1).with_threshold(0.0);
    assert_eq!((good.gamma, good.threshold), (0.1, Some(0.0)));
    assert!(DenseEngine::new(backend.clone(), state, good).is_ok());
    let good = SparseOptions::default()
        .with_tile(32)
        .with_seed(4)
        .with_forward_bytes(1 << 10);
    assert_eq!((good.tile, good.seed, good.forward_bytes), (32, 4, 1 << 10));
    assert!(SparseEngine::new(backend, good).is_ok());
}

#[test]
fn an_empty_lattice_steps_without_calling_the_model() {
    let reference = Arc::new(Reference::conv3x3(1, UpdateRule::Additive, 0.3, 3));
    let mut e = engine(reference.clone(), SparseOptions::default());
    let s = e.step().unwrap();
    assert_eq!((s.step, s.occupied_cells, s.active_tiles), (1, 0, 0));
    assert_eq!(
        reference.calls.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
