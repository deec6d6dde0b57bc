//! A recurrent law's memory (`unet_convlstm`'s `h_state` and `c_state`)
//! through the engine, the state file and a failed step, on every backend
//! compiled in. The golden suite (tests/golden.rs) checks the values
//! against PyTorch; this file checks what the engine does with them.

mod common;

use std::sync::Arc;

use atheria::{
    state_file, BatchShape, ComputeBackend, DenseEngine, DenseState, Device, ModelSpec, StepOptions,
};
use common::*;

const CASE: &str = "unet_convlstm_d2_h8";

fn initial() -> DenseState {
    state_file::read_state(&golden(CASE).join("initial.safetensors"), usize::MAX).unwrap()
}

fn engine(backend: Arc<dyn ComputeBackend>, state: DenseState) -> DenseEngine {
    let (_, gamma) = case_params(CASE);
    DenseEngine::new(backend, state, StepOptions::default().with_gamma(gamma)).unwrap()
}

fn run(engine: &mut DenseEngine, steps: u64) {
    for _ in 0..steps {
        engine.step().unwrap();
    }
}

#[test]
fn a_new_run_starts_its_memory_from_zeros_and_carries_it() {
    for kind in backends() {
        let mut e = engine(load(kind, CASE), initial());
        let m = &e.state().memory;
        assert_eq!(m.entries().len(), 2, "{kind}");
        // h 8: 4 x 8 = 32 channels at a quarter of 16 x 12.
        assert_eq!(m.entries()[0].dims, [32, 4, 3], "{kind}");
        assert!(m.data().iter().all(|&v| v == 0.0), "{kind}");
        e.step().unwrap();
        let after = e.state().memory.data().to_vec();
        assert!(
            after.iter().any(|&v| v != 0.0),
            "{kind}: the memory did not move"
        );
        e.step().unwrap();
        assert_ne!(
            e.state().memory.data(),
            &after[..],
            "{kind}: memory frozen after one step"
        );
    }
}

#[test]
fn a_checkpoint_written_mid_run_resumes_exactly() {
    let (steps, _) = case_params(CASE);
    let dir = temp_dir("recurrent-resume");
    for kind in backends() {
        let backend = load(kind, CASE);
        let mut whole = engine(Arc::clone(&backend), initial());
        run(&mut whole, steps);

        let mut first = engine(Arc::clone(&backend), initial());
        run(&mut first, steps / 2);
        let path = dir.join(format!("{kind}.safetensors"));
        state_file::write_state(first.state(), &path).unwrap();
        let saved = state_file::read_state(&path, usize::MAX).unwrap();
        for name in ["h_state", "c_state"] {
            assert_eq!(
                saved.memory.get(name),
                first.state().memory.get(name),
                "{kind}: memory `{name}` changed on disk"
            );
        }
        let mut second = engine(Arc::clone(&backend), saved);
        run(&mut second, steps - steps / 2);
        assert_eq!(
            second.state(),
            whole.state(),
            "{kind}: the resumed run differs from the uninterrupted one"
        );

        // Without the memory the run goes elsewhere: the check above would
        // catch a file that lost it.
        let mut forgetful = first.state().clone();
        forgetful.memory = atheria::Memory::none();
        let mut third = engine(Arc::clone(&backend), forgetful);
        run(&mut third, steps - steps / 2);
        let (diff, _) = max_abs_diff(third.state().planes(), whole.state().planes());
        assert!(
            diff > 1e-3,
            "{kind}: forgetting the memory changed psi by only {diff}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pytorchs_mid_run_state_resumes_to_pytorchs_end() {
    let (steps, _) = case_params(CASE);
    let mid = state_file::read_state(&golden(CASE).join("mid.safetensors"), usize::MAX).unwrap();
    let expected =
        state_file::read_state(&golden(CASE).join("expected.safetensors"), usize::MAX).unwrap();
    assert!(!mid.memory.is_empty(), "mid.safetensors holds memory");
    for kind in backends() {
        let mut e = engine(load(kind, CASE), mid.clone());
        run(&mut e, steps - mid.step);
        assert_eq!(e.state().step, expected.step);
        assert_close(
            &format!("{kind} psi"),
            e.state().planes(),
            expected.planes(),
            1e-5,
            1e-5,
        );
        for name in ["h_state", "c_state"] {
            assert_close(
                &format!("{kind} {name}"),
                e.state().memory.get(name).unwrap(),
                expected.memory.get(name).unwrap(),
                1e-5,
                1e-5,
            );
        }
    }
}

/// The real backend, except that its forward writes the next memory and
/// then fails (or returns a NaN delta): the engine must drop both.
struct Failing {
    inner: Arc<dyn ComputeBackend>,
    nan: bool,
}

impl ComputeBackend for Failing {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> atheria::Result<()> {
        self.inner.run(input, shape, output)
    }
    fn run_with_memory(
        &self,
        input: &[f32],
        shape: BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> atheria::Result<()> {
        self.inner
            .forward_with_memory(input, shape, memory, output, next_memory)?;
        next_memory.fill(7.0);
        if self.nan {
            output[3] = f32::NAN;
            Ok(())
        } else {
            Err(atheria::Error::backend(
                "test",
                "the forward failed on purpose",
            ))
        }
    }
}

#[test]
fn a_failed_step_leaves_the_memory_as_it_was() {
    for kind in backends() {
        let backend = load(kind, CASE);
        let mut warm = engine(Arc::clone(&backend), initial());
        run(&mut warm, 2);
        let before = warm.state().clone();
        for nan in [false, true] {
            let failing = Arc::new(Failing {
                inner: Arc::clone(&backend),
                nan,
            });
            let mut e = engine(failing, before.clone());
            let err = e.step().unwrap_err().to_string();
            assert!(err.contains("step 3"), "{kind}: {err}");
            assert_eq!(
                e.state(),
                &before,
                "{kind} (nan {nan}): the failed step changed the state"
            );
        }
    }
}

#[test]
fn memory_that_does_not_fit_the_law_is_refused_by_name() {
    let backend = load(atheria::BackendKind::Candle, CASE);
    let mut state = initial();
    state.memory = atheria::Memory::from_tensors(vec![
        ("h_state".into(), [32, 4, 3], vec![0.0; 384]),
        ("c_state".into(), [32, 2, 3], vec![0.0; 192]),
    ])
    .unwrap();
    let err = DenseEngine::new(Arc::clone(&backend), state, StepOptions::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("c_state") && err.contains("[32, 4, 3]"),
        "{err}"
    );

    // A plain law given a recurrent law's state file.
    let mut state = DenseState::zeros(16, 12, 2).unwrap();
    state.memory = initial_with_memory();
    let plain = load(atheria::BackendKind::Candle, "unet_d2_h8");
    let err = DenseEngine::new(plain, state, StepOptions::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("keeps none"), "{err}");
}

fn initial_with_memory() -> atheria::Memory {
    state_file::read_state(&golden(CASE).join("mid.safetensors"), usize::MAX)
        .unwrap()
        .memory
}

#[test]
fn a_recurrent_law_called_without_its_memory_is_told_how_to_call_it() {
    for kind in backends() {
        let backend = load(kind, CASE);
        let shape = BatchShape::new(1, 4, 16, 12);
        let x = vec![0.0; shape.len()];
        let mut y = vec![0.0; shape.len()];
        let err = backend.forward(&x, shape, &mut y).unwrap_err().to_string();
        assert!(err.contains("forward_with_memory"), "{kind}: {err}");
        let mut next = vec![0.0; 10];
        let err = backend
            .forward_with_memory(&x, shape, &[0.0; 10], &mut y, &mut next)
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory values"), "{kind}: {err}");
    }
}

#[test]
fn the_sparse_engine_refuses_a_recurrent_law_with_the_way_out() {
    let backend = load(atheria::BackendKind::Candle, CASE);
    let err = atheria::SparseEngine::new(backend, atheria::SparseOptions::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("--engine dense"), "{err}");
}
