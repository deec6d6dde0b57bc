//! `Simulation`, the embedding API, read as a specification: one type over
//! both engines, every change all-or-nothing, errors a program can match.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use atheria::{
    BackendOptions, BatchShape, CellBox, ComputeBackend, DenseState, Device, EngineKind, Error,
    InitKind, ModelSpec, Simulation, Viz,
};

const D: usize = atheria::default_law::D_STATE;

fn default_law() -> Arc<dyn ComputeBackend> {
    atheria::default_law::load(&BackendOptions::default()).unwrap()
}

/// A seeded 24 x 24 field whose matter is the disc of radius 6 around the
/// centre, vacuum elsewhere: far enough from the border for the sparse and
/// dense engines to agree for a few steps.
fn disc_state() -> DenseState {
    let mut s = DenseState::zeros(24, 24, D).unwrap();
    atheria::init::fill(&mut s, InitKind::Random, 5);
    for (i, o) in s.occupied_mut().iter_mut().enumerate() {
        let (x, y) = ((i % 24) as i32 - 12, (i / 24) as i32 - 12);
        *o = (x * x + y * y <= 36) as u8;
    }
    s.zero_vacuum();
    s
}

fn build(engine: EngineKind, state: DenseState) -> Simulation {
    Simulation::builder()
        .backend(default_law())
        .engine(engine)
        .threshold(Some(0.01))
        .initial_state(state)
        .build()
        .unwrap()
}

#[test]
fn dense_and_sparse_simulations_of_the_same_state_agree_cell_for_cell() {
    let mut dense = build(EngineKind::Dense, disc_state());
    let mut sparse = build(EngineKind::Sparse, disc_state());
    assert_eq!(dense.engine_kind(), EngineKind::Dense);
    assert_eq!(sparse.engine_kind(), EngineKind::Sparse);
    for _ in 0..3 {
        dense.step().unwrap();
        sparse.step().unwrap();
    }
    assert_eq!(dense.step_count(), 3);
    assert_eq!(sparse.step_count(), 3);
    assert_eq!(dense.occupied_count(), sparse.occupied_count());
    for y in 0..24 {
        for x in 0..24 {
            let (a, b) = (dense.cell(x, y), sparse.cell(x, y));
            assert_eq!(a.is_some(), b.is_some(), "occupancy of ({x}, {y})");
            if let (Some(a), Some(b)) = (a, b) {
                for (p, q) in a.iter().zip(&b) {
                    assert!(
                        (p.0 - q.0).abs() < 1e-5 && (p.1 - q.1).abs() < 1e-5,
                        "({x}, {y})"
                    );
                }
            }
        }
    }
    // Both report the same field over the same box.
    let area = CellBox::new(4, 4, 19, 19);
    let (fd, fs) = (
        dense.field(Viz::Density, area).unwrap().data,
        sparse.field(Viz::Density, area).unwrap().data,
    );
    for (a, b) in fd.iter().zip(&fs) {
        assert!((a - b).abs() < 1e-5);
    }
}

#[test]
fn run_stops_when_the_callback_says_so() {
    let mut sim = build(EngineKind::Dense, disc_state());
    let mut seen = Vec::new();
    let summary = sim
        .run(10, |sim, stats| {
            assert_eq!(sim.step_count(), stats.step);
            seen.push(stats.step);
            if stats.step == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!((summary.steps, summary.stopped), (3, true));
    assert_eq!(sim.step_count(), 3);
    assert_eq!(sim.last_stats().map(|s| s.step), Some(3));
}

#[test]
fn cells_are_read_and_written_at_lattice_coordinates() {
    for engine in [EngineKind::Dense, EngineKind::Sparse] {
        let mut sim = build(engine, disc_state());
        let v = vec![(0.5, -0.5); D];
        sim.set_cell(12, 10, &v).unwrap();
        assert_eq!(sim.cell(12, 10), Some(v.clone()), "{engine}");
        // (x, y) is (column, row): the transposed cell was not written.
        assert_ne!(sim.cell(10, 12), Some(v.clone()), "{engine}");
        let state = sim.state().unwrap();
        let (ox, oy) = state.origin;
        let i = (10 - oy) as usize * state.width() + (12 - ox) as usize;
        assert_eq!(state.planes()[i], 0.5, "{engine}");
        assert_eq!(state.planes()[D * state.cells() + i], -0.5, "{engine}");

        // A wrong channel count or a NaN changes nothing.
        let before = sim.state().unwrap();
        assert!(matches!(
            sim.set_cell(12, 10, &[(1.0, 0.0)]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(sim.set_cell(12, 10, &[(f32::NAN, 0.0); D]).is_err());
        assert_eq!(sim.state().unwrap(), before, "{engine}");
    }
    // The dense grid has an edge; the sparse lattice does not.
    let mut dense = build(EngineKind::Dense, disc_state());
    let err = dense.set_cell(24, 0, &[(1.0, 0.0); D]).unwrap_err();
    assert!(err.to_string().contains("outside the dense grid"), "{err}");
    assert_eq!(dense.cell(-1, 0), None);
    let mut sparse = build(EngineKind::Sparse, disc_state());
    sparse.set_cell(-40_000, 90_000, &[(1.0, 0.0); D]).unwrap();
    assert!(sparse.cell(-40_000, 90_000).is_some());
}

#[test]
fn gamma_changes_between_steps_and_a_bad_value_changes_nothing() {
    let mut a = build(EngineKind::Dense, disc_state());
    let mut b = Simulation::builder()
        .backend(default_law())
        .threshold(Some(0.01))
        .gamma(0.2)
        .initial_state(disc_state())
        .build()
        .unwrap();
    assert!(a.set_gamma(-1.0).is_err());
    assert!(a.set_gamma(f32::NAN).is_err());
    assert_eq!(a.gamma(), 0.0);
    a.set_gamma(0.2).unwrap();
    a.step().unwrap();
    b.step().unwrap();
    assert_eq!(a.state().unwrap(), b.state().unwrap());
}

#[test]
fn states_save_load_and_replace_exactly() {
    let dir = std::env::temp_dir().join(format!("atheria-simulation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for engine in [EngineKind::Dense, EngineKind::Sparse] {
        let mut sim = build(engine, disc_state());
        sim.run(2, |_, _| ControlFlow::Continue(())).unwrap();
        let path = dir.join(format!("{engine}.safetensors"));
        sim.save(&path).unwrap();
        let saved = sim.state().unwrap();
        sim.step().unwrap();
        assert_ne!(sim.state().unwrap(), saved);
        sim.load(&path).unwrap();
        assert_eq!(sim.state().unwrap(), saved, "{engine}");
        assert_eq!(sim.step_count(), 2);

        let resumed = Simulation::builder()
            .backend(default_law())
            .engine(engine)
            .threshold(Some(0.01))
            .state_file(&path)
            .build()
            .unwrap();
        assert_eq!(resumed.state().unwrap(), saved, "{engine}");

        // A state for another law is refused and changes nothing.
        let wrong = DenseState::zeros(8, 8, D + 1).unwrap();
        assert!(sim.set_state(wrong).is_err());
        assert_eq!(sim.state().unwrap(), saved, "{engine}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_box_reaching_past_the_dense_grid_reads_vacuum_there() {
    let sim = build(EngineKind::Dense, disc_state());
    let cut = sim.state_in(CellBox::new(20, -2, 27, 3)).unwrap();
    assert_eq!((cut.width(), cut.height(), cut.origin), (8, 6, (20, -2)));
    let full = sim.state().unwrap();
    for y in -2..=3i32 {
        for x in 20..=27i32 {
            let j = (y + 2) as usize * 8 + (x - 20) as usize;
            let inside = (0..24).contains(&x) && (0..24).contains(&y);
            let expected = if inside {
                full.planes()[y as usize * 24 + x as usize]
            } else {
                0.0
            };
            assert_eq!(cut.planes()[j], expected, "({x}, {y})");
            if !inside {
                assert_eq!(cut.occupied()[j], 0);
            }
        }
    }
    let phase = sim
        .field_with(Viz::PhaseChannel(0), CellBox::new(0, 0, 23, 23), false)
        .unwrap()
        .data;
    let full_phase = full.phase(0);
    for (i, (a, b)) in phase.iter().zip(&full_phase).enumerate() {
        if full.occupied()[i] != 0 {
            assert_eq!(a, b);
        }
    }
}

/// The default law, but from its `after`-th call on the delta of one cell
/// is NaN.
struct PoisonAfter {
    inner: Arc<dyn ComputeBackend>,
    calls: AtomicU64,
    after: u64,
    cell: (usize, usize),
}

impl ComputeBackend for PoisonAfter {
    fn name(&self) -> &'static str {
        "poisoned"
    }
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> atheria::Result<()> {
        self.inner.forward(input, shape, output)?;
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.after {
            let (x, y) = self.cell;
            // A batch of one dense field: channel 1 (real part), at (x, y).
            output[shape.height * shape.width + y * shape.width + x] = f32::NAN;
        }
        Ok(())
    }
}

#[test]
fn a_failed_step_is_numbered_alike_in_both_engines_and_keeps_its_cause() {
    for engine in [EngineKind::Dense, EngineKind::Sparse] {
        let backend = Arc::new(PoisonAfter {
            inner: default_law(),
            calls: AtomicU64::new(0),
            after: 2,
            // The centre of the disc: matter in both engines. The sparse
            // engine's one tile holds all of it at the same place.
            cell: (12, 12),
        });
        let mut sim = Simulation::builder()
            .backend(backend)
            .engine(engine)
            .threshold(Some(0.01))
            .tile(32)
            .initial_state(disc_state())
            .build()
            .unwrap();
        sim.step().unwrap();
        sim.step().unwrap();
        let before = sim.state().unwrap();
        let err = sim.step().unwrap_err();
        assert!(
            matches!(err, Error::Step { step: 3, .. }),
            "{engine}: {err:?}"
        );
        assert!(
            matches!(
                err.cause(),
                Error::NonFinite {
                    channel: 1,
                    imaginary: false,
                    ..
                }
            ),
            "{engine}: {err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            sim.state().unwrap(),
            before,
            "{engine}: the failed step changed the state"
        );
        assert_eq!(sim.step_count(), 2);
    }
}

#[test]
fn the_builder_refuses_bad_options_before_loading_anything() {
    for (builder, word) in [
        (Simulation::builder().gamma(-0.5), "gamma"),
        (
            Simulation::builder().threshold(Some(f32::INFINITY)),
            "threshold",
        ),
        (Simulation::builder().threads(0), "threads"),
        (Simulation::builder().init(InitKind::Random, 0, 0), "size"),
        (
            Simulation::builder().model_dir("/no/such/package"),
            "/no/such/package",
        ),
    ] {
        let err = builder.build().err().expect("a bad option builds");
        assert!(err.to_string().contains(word), "{err}");
    }
    let err = Simulation::builder()
        .init(InitKind::Random, 0, 100_000)
        .max_cells(1000)
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::TooManyCells { limit: 1000, .. }),
        "{err:?}"
    );
}

#[test]
fn a_simulation_stepped_inside_a_rayon_worker_refuses_instead_of_nesting_pools() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for engine in [EngineKind::Dense, EngineKind::Sparse] {
        let mut sim = build(engine, disc_state());
        let before = sim.state().unwrap();
        let err = pool.install(|| sim.step()).unwrap_err();
        assert!(matches!(err, Error::NestedPool { .. }), "{engine}: {err:?}");
        assert_eq!(sim.state().unwrap(), before);
        assert_eq!(sim.step_count(), 0);

        // Given the pool for its own loops instead, it steps, and equals a
        // simulation on rayon's global pool.
        let mut own = Simulation::builder()
            .backend(default_law())
            .engine(engine)
            .threshold(Some(0.01))
            .initial_state(disc_state())
            .engine_pool(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(3)
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap();
        for _ in 0..2 {
            own.step().unwrap();
            sim.step().unwrap();
        }
        assert_eq!(own.state().unwrap(), sim.state().unwrap(), "{engine}");
    }
}
