//! Every backend reproduces PyTorch: the committed golden files were computed
//! by the PyTorch reference engine (python/make_golden.py).

mod common;

use atheria::{state_file, BatchShape, DenseEngine, StepOptions};
use common::*;

#[test]
fn every_backend_reproduces_pytorch_forward_within_1e_4() {
    for kind in backends() {
        for case in GOLDEN_CASES {
            let backend = load(kind, case);
            let file = golden(case).join("forward.safetensors");
            let (shape, x) = read_tensor(&file, "x");
            let (_, y) = read_tensor(&file, "y");
            let shape = BatchShape::new(shape[0], shape[1], shape[2], shape[3]);
            let mut out = vec![0.0; y.len()];
            backend
                .forward(&x, shape, &mut out)
                .unwrap_or_else(|e| panic!("{kind} {case}: {e}"));
            assert_close(&format!("{kind} forward {case}"), &out, &y, 1e-4, 1e-4);
        }
    }
}

#[test]
fn every_backend_reproduces_pytorch_steps_within_1e_5() {
    for kind in backends() {
        for case in GOLDEN_CASES {
            let (steps, gamma) = case_params(case);
            let dir = golden(case);
            let initial = state_file::read_state(&dir.join("initial.safetensors"), usize::MAX)
                .expect("initial");
            let expected = state_file::read_state(&dir.join("expected.safetensors"), usize::MAX)
                .expect("expected");
            let options = StepOptions::default().with_gamma(gamma);
            let mut engine = DenseEngine::new(load(kind, case), initial, options).expect("engine");
            for _ in 0..steps {
                engine
                    .step()
                    .unwrap_or_else(|e| panic!("{kind} {case}: {e}"));
            }
            let got = engine.state();
            assert_eq!(got.step, expected.step, "{kind} {case}: step count");
            assert_close(
                &format!("{kind} run {case}"),
                got.planes(),
                expected.planes(),
                1e-5,
                1e-5,
            );
        }
    }
}

#[test]
fn the_identity_conv3x3_leaves_a_normalised_state_unchanged() {
    for kind in backends() {
        let mut state = atheria::DenseState::zeros(9, 13, 4).unwrap();
        atheria::init::fill(&mut state, atheria::InitKind::Random, 11);
        let before = state.clone();
        let mut engine = DenseEngine::new(
            load(kind, "conv3x3_identity_d4"),
            state,
            StepOptions::default(),
        )
        .unwrap();
        for _ in 0..5 {
            engine.step().unwrap();
        }
        assert_close(
            &format!("{kind} identity"),
            engine.state().planes(),
            before.planes(),
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_does_not() {
    for kind in backends() {
        let run = |seed: u64| {
            let mut state = atheria::DenseState::zeros(12, 10, 4).unwrap();
            atheria::init::fill(&mut state, atheria::InitKind::ComplexNoise, seed);
            let mut engine =
                DenseEngine::new(load(kind, "conv3x3_d4"), state, StepOptions::default()).unwrap();
            for _ in 0..3 {
                engine.step().unwrap();
            }
            engine.state().planes().to_vec()
        };
        assert_eq!(run(4), run(4), "{kind}: same seed, different run");
        assert_ne!(run(4), run(5), "{kind}: the seed changes nothing");
    }
}
