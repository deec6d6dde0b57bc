//! The device engine on `Device::Cpu` computes what the dense engine
//! computes, on every architecture the candle backend runs: each golden
//! package (tests/fixtures/golden, exported by python/make_golden.py) is
//! stepped by both from its initial state with its case's gamma and steps
//! (3, or 10 for the recurrent and RMSNorm U-Nets), and the states
//! (psi, occupancy, step, a recurrent law's memory) agree within 1e-5 per
//! value. Both are also held to PyTorch's state after those steps
//! (`expected.safetensors`) with the golden suite's run bound,
//! 1e-5 + 1e-5 |want|. The two engines sum in different orders (candle's
//! im2col conv against backend-candle's Winograd kernels), a few 1e-7 after
//! normalisation; a wrong tap, sign, norm or memory moves values by 1e-2.

use std::path::PathBuf;
use std::sync::Arc;

use atheria_device_engine::{DeviceEngine, DeviceLaw};
use engine_api::{BackendOptions, Device, ModelPackage, Runtime};
use sparse_grid::{state_file, DenseEngine, DenseState, StepOptions};

const TOL: f32 = 1e-5;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden")
}

fn case_params(dir: &std::path::Path) -> (u64, f32) {
    let text = std::fs::read_to_string(dir.join("case.json")).expect("case.json");
    let case: serde_json::Value = serde_json::from_str(&text).expect("case json");
    (
        case["steps"].as_u64().expect("steps"),
        case["gamma"].as_f64().expect("gamma") as f32,
    )
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The largest |got - want| beyond 1e-5 + 1e-5 |want| (0 when within).
fn beyond_run_bound(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() - (1e-5 + 1e-5 * w.abs()))
        .fold(0.0, f32::max)
}

/// Steps both engines `steps` times from `initial`; returns the states.
fn run_both(
    package: &ModelPackage,
    initial: DenseState,
    options: StepOptions,
    steps: u64,
) -> (DenseState, DenseState) {
    let backend = backend_candle::RUNTIME
        .load(package, &BackendOptions::default().with_threads(2))
        .expect("candle backend");
    let mut dense = DenseEngine::new(backend, initial.clone(), options).expect("dense engine");
    let law = Arc::new(DeviceLaw::from_package(package, Device::Cpu).expect("device law"));
    let mut device = DeviceEngine::new(law, initial, options).expect("device engine");
    for _ in 0..steps {
        let a = dense.step().expect("dense step");
        let b = device.step().expect("device step");
        assert_eq!(a.occupied_cells, b.occupied_cells);
        let (ea, eb) = (
            dense.last_delta_energy().unwrap(),
            device.last_delta_energy().unwrap(),
        );
        assert!(
            (ea - eb).abs() <= 1e-4 * ea.abs().max(1.0),
            "energy {ea} vs {eb}"
        );
    }
    (dense.state().clone(), device.state().expect("download"))
}

#[test]
fn every_golden_architecture_equals_the_dense_engine_and_pytorch() {
    let mut cases: Vec<_> = std::fs::read_dir(golden())
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("model.safetensors").is_file())
        .collect();
    cases.sort();
    let mut archs = std::collections::BTreeSet::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let package = ModelPackage::load(dir).expect("package");
        archs.insert(package.spec().architecture.to_string());
        let (steps, gamma) = case_params(dir);
        let initial =
            state_file::read_state(&dir.join("initial.safetensors"), usize::MAX).expect("initial");
        let expected = state_file::read_state(&dir.join("expected.safetensors"), usize::MAX)
            .expect("expected");
        let options = StepOptions::default().with_gamma(gamma);
        let (dense, device) = run_both(&package, initial, options, steps);
        assert_eq!(device.step, dense.step, "{name}: step count");
        assert_eq!(device.occupied(), dense.occupied(), "{name}: occupancy");
        let psi = max_diff(device.planes(), dense.planes());
        let mem = max_diff(device.memory.data(), dense.memory.data());
        let torch = beyond_run_bound(device.planes(), expected.planes());
        println!(
            "{name} ({steps} steps): max |device - dense| psi {psi:.2e}, memory {mem:.2e}; \
             beyond PyTorch's bound {torch:.2e}"
        );
        assert!(psi <= TOL, "{name}: psi differs by {psi:e}");
        assert!(mem <= TOL, "{name}: memory differs by {mem:e}");
        assert!(torch <= 0.0, "{name}: {torch:e} beyond PyTorch's run bound");
        if package.spec().is_recurrent() {
            assert!(!device.memory.is_empty(), "{name}: memory downloaded");
            assert_eq!(device.memory.entries(), dense.memory.entries());
            assert!(
                device.memory.data().iter().any(|&v| v != 0.0),
                "{name}: the memory moved"
            );
            // By name: a state file may list the tensors in another order.
            for e in expected.memory.entries() {
                let got = device.memory.get(&e.name).expect("memory tensor by name");
                let want = beyond_run_bound(got, expected.memory.get(&e.name).unwrap());
                assert!(
                    want <= 0.0,
                    "{name}: memory `{}` {want:e} beyond PyTorch's bound",
                    e.name
                );
            }
        }
    }
    // Every architecture the candle backend runs.
    for arch in [
        "conv3x3",
        "mlp",
        "deep_qca",
        "unet",
        "unet_unitary",
        "unet_convlstm",
        "unet_unitary_rmsnorm",
    ] {
        assert!(archs.contains(arch), "no golden case for {arch}");
    }
}
