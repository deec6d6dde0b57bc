//! Every way a model file or an option can be wrong is one clear error.

mod common;

use backend_tch::TchBackend;
use common::{golden, package_with, TempDir};
use engine_api::{BackendOptions, Device, Error, ModelPackage};
use tch::{CModule, Kind, Tensor};

fn load_err(package: &ModelPackage) -> String {
    match TchBackend::load(package, &BackendOptions::default()) {
        Ok(_) => panic!("loading {} should fail", package.origin().display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn garbage_empty_and_foreign_files_are_errors() {
    let onnx = std::fs::read(golden("conv3x3_d4").join("model.onnx")).unwrap();
    let weights = std::fs::read(golden("conv3x3_d4").join("model.safetensors")).unwrap();
    let mut truncated = std::fs::read(golden("conv3x3_d4").join("model.pt")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let cases: [(&str, &[u8]); 5] = [
        ("garbage", b"this is not a model at all"),
        ("empty", b""),
        ("onnx", &onnx),
        ("safetensors", &weights),
        ("truncated", &truncated),
    ];
    for (what, bytes) in cases {
        let dir = TempDir::new(what);
        let package = package_with(&dir.0, 4, bytes);
        let err = load_err(&package);
        assert!(err.contains("TorchScript"), "{what}: {err}");
        assert!(err.contains("model.pt"), "{what}: {err}");
        assert!(!err.contains('\n'), "{what}: one line expected: {err}");
    }
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = TempDir::new("missing");
    let package = package_with(&dir.0, 4, b"");
    std::fs::remove_file(dir.0.join("model.pt")).unwrap();
    let err = load_err(&package);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn a_d_state_the_model_rejects_names_both_numbers() {
    // The conv3x3 model takes 8 channels; model.json claims d_state 3 (6 channels).
    let dir = TempDir::new("dstate-in");
    let bytes = std::fs::read(golden("conv3x3_d4").join("model.pt")).unwrap();
    let package = package_with(&dir.0, 3, &bytes);
    let err = load_err(&package);
    assert!(err.contains("d_state 3"), "{err}");
    assert!(err.contains('8'), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn a_model_returning_other_channels_names_both_numbers() {
    // Accepts any channel count but returns the first two channels.
    let dir = TempDir::new("dstate-out");
    let x = Tensor::zeros([1, 8, 4, 4], (Kind::Float, tch::Device::Cpu));
    let module =
        CModule::create_by_tracing("m", "forward", &[x], &mut |xs| vec![xs[0].narrow(1, 0, 2)])
            .unwrap();
    module.save(dir.0.join("narrow.pt")).unwrap();
    let bytes = std::fs::read(dir.0.join("narrow.pt")).unwrap();
    let package = package_with(&dir.0, 4, &bytes);
    let err = load_err(&package);
    assert!(
        err.contains("d_state 4 (8 channels)") && err.contains("returns 2 channels"),
        "{err}"
    );
}

#[test]
fn a_cuda_device_libtorch_cannot_see_is_refused() {
    let package = ModelPackage::load(golden("conv3x3_d4")).unwrap();
    let options = BackendOptions::default().with_device(Device::Cuda(0));
    let result = TchBackend::load(&package, &options);
    if tch::Cuda::is_available() {
        let backend = result.unwrap();
        assert_eq!(
            engine_api::ComputeBackend::device(&backend),
            Device::Cuda(0)
        );
    } else {
        match result {
            Err(Error::BackendUnavailable { backend, message }) => {
                assert_eq!(backend, "tch");
                assert!(message.contains("cuda:0"), "{message}");
            }
            Err(e) => panic!("expected BackendUnavailable, got {e}"),
            Ok(_) => panic!("cuda:0 loaded without CUDA"),
        }
    }
    let options = BackendOptions::default().with_device(Device::Cuda(4096));
    assert!(TchBackend::load(&package, &options).is_err());
}

#[test]
fn zero_threads_is_an_error() {
    let package = ModelPackage::load(golden("conv3x3_d4")).unwrap();
    let options = BackendOptions::default().with_threads(0);
    let err = TchBackend::load(&package, &options)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("threads must be at least 1"), "{err}");
    assert!(
        !err.contains("--threads"),
        "a library error names no command-line flag: {err}"
    );
}
