//! The device engine's own rules, on `Device::Cpu`: the existence threshold
//! as the dense engine applies it, a non-finite delta failing the step with
//! the state untouched, and a CUDA device refused in one line where it
//! cannot be had.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atheria_device_engine::{open_device, DeviceEngine, DeviceLaw};
use engine_api::{Architecture, BackendOptions, Device, Error, ModelPackage, ModelSpec, Runtime};
use sparse_grid::{state_file, DenseEngine, DenseState, StepOptions};

fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden")
        .join(case)
}

fn initial(case: &str) -> DenseState {
    state_file::read_state(&golden(case).join("initial.safetensors"), usize::MAX).unwrap()
}

#[test]
fn the_threshold_empties_the_same_cells_as_the_dense_engine() {
    let package = ModelPackage::load(golden("conv3x3_d4")).unwrap();
    // A threshold among this law's norms before normalisation (up to ~2 on
    // this case): 45 of 120 cells live through three steps.
    let options = StepOptions::default().with_gamma(0.3).with_threshold(1.5);
    let backend = backend_candle::RUNTIME
        .load(&package, &BackendOptions::default().with_threads(1))
        .unwrap();
    let mut dense = DenseEngine::new(backend, initial("conv3x3_d4"), options).unwrap();
    let law = Arc::new(DeviceLaw::from_package(&package, Device::Cpu).unwrap());
    let mut device = DeviceEngine::new(law, initial("conv3x3_d4"), options).unwrap();
    for _ in 0..3 {
        let (a, b) = (dense.step().unwrap(), device.step().unwrap());
        assert_eq!(a.occupied_cells, b.occupied_cells);
    }
    let got = device.state().unwrap();
    let cells = got.cells();
    let alive = device.occupied_count();
    println!("{alive} of {cells} cells alive");
    assert!(
        alive > 0 && alive < cells,
        "the case must keep some cells and empty others"
    );
    assert_eq!(got.occupied(), dense.state().occupied());
    let diff = got
        .planes()
        .iter()
        .zip(dense.state().planes())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "psi differs by {diff:e}");
}

/// A conv3x3 law whose bias is NaN in one channel: every delta is non-finite there.
fn nan_law() -> DeviceLaw {
    let d = 2;
    let c = 2 * d;
    let spec = ModelSpec::for_architecture("nan", Architecture::Conv3x3, d, None).unwrap();
    let mut bias = vec![0.0f32; c];
    bias[3] = f32::NAN;
    let tensors = vec![
        (
            "conv.weight".to_string(),
            vec![c, c, 3, 3],
            vec![0.01f32; c * c * 9],
        ),
        ("conv.bias".to_string(), vec![c], bias),
    ];
    DeviceLaw::from_tensors(spec, tensors, Device::Cpu).unwrap()
}

#[test]
fn a_non_finite_delta_fails_the_step_and_leaves_the_state() {
    let mut state = DenseState::zeros(4, 4, 2).unwrap();
    sparse_grid::init::fill(&mut state, sparse_grid::InitKind::Random, 7);
    let mut engine =
        DeviceEngine::new(Arc::new(nan_law()), state.clone(), StepOptions::default()).unwrap();
    let err = engine.step().unwrap_err();
    match err.cause() {
        Error::NonFinite {
            x: 0,
            y: 0,
            channel: 1,
            imaginary: true,
        } => {}
        other => panic!("expected the first NaN at (0, 0), imaginary part of channel 1: {other}"),
    }
    assert!(err.to_string().contains("step 1 failed"), "{err}");
    let after = engine.state().unwrap();
    assert_eq!(after.step, 0);
    assert_eq!(after.planes(), state.planes());
    assert_eq!(engine.last_delta_energy(), None);
}

#[test]
fn cuda_is_refused_in_one_line_within_a_second_where_it_cannot_be_had() {
    let started = Instant::now();
    let err = open_device(Device::Cuda(0)).map(|_| ()).unwrap_err();
    let message = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(matches!(err, Error::BackendUnavailable { .. }), "{message}");
    #[cfg(not(feature = "cuda"))]
    assert!(
        message.contains("no CUDA support") && message.contains("--features cuda"),
        "{message}"
    );
    // With the feature, on a machine without the driver (as in CI and here):
    // the missing library is named. Where a GPU is present this test is not
    // about that machine, so only a refusal is checked.
    #[cfg(feature = "cuda")]
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        assert!(message.contains("libcuda.so"), "{message}");
    }
    println!("{message}");
}
