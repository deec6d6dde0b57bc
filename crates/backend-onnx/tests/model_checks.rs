//! Loading checks and forward correctness on small ONNX graphs written by the
//! tests themselves (no fixtures needed).

mod common;

use backend_onnx::OnnxBackend;
use common::onnx::{conv_model, nchw, Dim};
use common::*;
use engine_api::{BackendOptions, BatchShape, ComputeBackend, Device, Error};

fn load_err(package: &engine_api::ModelPackage, options: &BackendOptions) -> String {
    match OnnxBackend::load(package, options) {
        Ok(_) => panic!("loading {} should have failed", package.origin().display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_3x3_convolution_matches_the_naive_reference() {
    let d = 2;
    let (onnx, weight, bias) = conv3x3(d, 7);
    let package = write_package("conv_reference", d, &onnx);
    let backend = OnnxBackend::load(&package, &cpu(2)).unwrap();
    let dims = [2, 2 * d, 5, 9]; // batch 2, non-square
    let shape = BatchShape::new(dims[0], dims[1], dims[2], dims[3]);
    let x = values(shape.len(), 3);
    let mut y = vec![f32::NAN; shape.len()];
    backend.forward(&x, shape, &mut y).unwrap();
    let expected = conv3x3_reference(&x, dims, &weight, &bias);
    let err = max_abs_diff(&y, &expected);
    assert!(err < 1e-5, "max abs error {err}");

    // A second shape on the same backend: height and width really are dynamic.
    let shape = BatchShape::new(1, 2 * d, 12, 3);
    let x = values(shape.len(), 4);
    let mut y = vec![0.0; shape.len()];
    backend.forward(&x, shape, &mut y).unwrap();
    let expected = conv3x3_reference(&x, [1, 2 * d, 12, 3], &weight, &bias);
    assert!(max_abs_diff(&y, &expected) < 1e-5);

    let described = backend.describe();
    assert!(described.contains("CPUExecutionProvider"), "{described}");
    assert!(described.contains("onnxruntime"), "{described}");
}

#[test]
fn a_file_that_is_not_onnx_is_a_clear_error() {
    let package = write_package("not_onnx", 2, b"this is not a protobuf model, just text\n");
    let err = load_err(&package, &cpu(1));
    assert!(err.contains("cannot load this as an ONNX model"), "{err}");
    assert!(err.contains("model.onnx"), "{err}");
}

#[test]
fn an_output_channel_mismatch_names_both_numbers() {
    // 4 channels in (d_state 2), 6 out.
    let weight = values(6 * 4 * 9, 1);
    let io = (nchw(4), nchw(6));
    let package = write_package(
        "out_mismatch_declared",
        2,
        &conv_model(4, 6, 3, &weight, &[0.0; 6], 1, io),
    );
    let err = load_err(&package, &cpu(1));
    assert!(err.contains("output has 6 channels"), "{err}");
    assert!(err.contains("i.e. 4 channels"), "{err}");

    // A graph whose declared shapes look right but whose stride halves the
    // field: only the check forward can catch it.
    let (_, weight, bias) = conv3x3(2, 1);
    let package = write_package_with_multiple(
        "spatial_mismatch_forward",
        2,
        2,
        &conv_model(4, 4, 3, &weight, &bias, 2, (nchw(4), nchw(4))),
    );
    let err = load_err(&package, &cpu(1));
    assert!(err.contains("height, width [1, 1]"), "{err}");
    assert!(err.contains("height, width [2, 2]"), "{err}");
}

#[test]
fn an_input_channel_mismatch_with_model_json_names_both_numbers() {
    let (onnx, _, _) = conv3x3(4, 1); // 8 channels
    let package = write_package("in_mismatch", 2, &onnx); // model.json: d_state 2 -> 4
    let err = load_err(&package, &cpu(1));
    assert!(err.contains("has 8 channels"), "{err}");
    assert!(err.contains("4 channels"), "{err}");
}

#[test]
fn fixed_spatial_dimensions_are_rejected() {
    let (_, weight, bias) = conv3x3(1, 1);
    let fixed = [
        Dim::Dynamic("batch"),
        Dim::Fixed(2),
        Dim::Fixed(8),
        Dim::Fixed(8),
    ];
    let package = write_package(
        "fixed_dims",
        1,
        &conv_model(2, 2, 3, &weight, &bias, 1, (fixed, fixed)),
    );
    let err = load_err(&package, &cpu(1));
    assert!(err.contains("fixed height of 8"), "{err}");
}

#[test]
fn wrong_forward_arguments_are_errors_not_panics() {
    let (onnx, _, _) = conv3x3(1, 2);
    let backend = OnnxBackend::load(&write_package("bad_args", 1, &onnx), &cpu(1)).unwrap();
    let shape = BatchShape::new(1, 2, 4, 4);
    let x = vec![0.0; shape.len()];
    let mut short = vec![0.0; shape.len() - 1];
    assert!(matches!(
        backend.forward(&x, shape, &mut short),
        Err(Error::InvalidArgument(_))
    ));
    let wrong_channels = BatchShape::new(1, 4, 2, 4);
    let mut y = vec![0.0; shape.len()];
    assert!(matches!(
        backend.forward(&x, wrong_channels, &mut y),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn zero_threads_is_rejected() {
    let (onnx, _, _) = conv3x3(1, 2);
    let err = load_err(&write_package("zero_threads", 1, &onnx), &cpu(0));
    assert!(err.contains("threads"), "{err}");
}

/// Without the feature, CUDA is refused by name; with it, a CPU-only ONNX
/// Runtime (or no GPU) must be an error too, never a quiet run on the CPU.
#[test]
fn cuda_is_an_error_rather_than_a_silent_cpu_fallback() {
    let (onnx, _, _) = conv3x3(1, 2);
    let package = write_package("cuda", 1, &onnx);
    let options = cpu(1).with_device(Device::Cuda(0));
    match OnnxBackend::load(&package, &options) {
        Err(e) => {
            let e = e.to_string();
            println!("{e}");
            if cfg!(feature = "cuda") {
                assert!(e.contains("CUDA provider"), "{e}");
            } else {
                assert!(e.contains("`cuda` feature"), "{e}");
            }
        }
        // Only a CUDA build of ONNX Runtime on a GPU host gets here; then the
        // backend must say it runs on CUDA.
        Ok(backend) => {
            let d = backend.describe();
            assert!(
                cfg!(feature = "cuda") && d.contains("CUDAExecutionProvider"),
                "CUDA loaded: {d}"
            );
        }
    }
}

#[test]
fn check_reports_version_and_path() {
    search_python_environments();
    let line = backend_onnx::check().unwrap();
    assert!(line.starts_with("onnxruntime 1."), "{line}");
    assert!(line.contains("libonnxruntime"), "{line}");
}
