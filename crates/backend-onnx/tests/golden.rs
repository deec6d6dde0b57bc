//! The golden forwards: ONNX Runtime on PyTorch's exported graph must give
//! PyTorch's output (`forward.safetensors`: `x` and `y = M(x)`).
//!
//! Fixtures come from python/make_golden.py; without them these tests fail
//! with a message saying so, rather than pass by skipping.

mod common;

use backend_onnx::OnnxBackend;
use common::*;
use engine_api::{BatchShape, ComputeBackend};

fn check_case(case: &str) {
    let package = golden_package(case);
    let backend = OnnxBackend::load(&package, &cpu(2))
        .unwrap_or_else(|e| panic!("golden fixture `{case}`: {e}"));
    let forward = golden_dir(case).join("forward.safetensors");
    let (x_shape, x) = read_tensor(&forward, "x");
    let (y_shape, y) = read_tensor(&forward, "y");
    assert_eq!(x_shape, y_shape, "{case}: x and y shapes differ");
    let [b, c, h, w] = x_shape[..] else {
        panic!("{case}: x has shape {x_shape:?}, expected 4 dimensions");
    };
    let shape = BatchShape::new(b, c, h, w);
    let mut out = vec![f32::NAN; shape.len()];
    backend
        .forward(&x, shape, &mut out)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    // float32 convolutions summed in a different order: relative 1e-4 of
    // the output's scale is far below any real disagreement.
    let scale = y.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = max_abs_diff(&out, &y);
    println!("{case}: max abs error {err:.3e} (output scale {scale:.3})");
    assert!(
        err <= 1e-4 * scale,
        "{case}: max abs error {err} vs PyTorch (output scale {scale})"
    );
}

#[test]
fn golden_conv3x3_d4() {
    check_case("conv3x3_d4");
}

#[test]
fn golden_conv3x3_identity_d4() {
    check_case("conv3x3_identity_d4");
}

#[test]
fn golden_mlp_d2_h8() {
    check_case("mlp_d2_h8");
}

#[test]
fn golden_deep_qca_d2_h8() {
    check_case("deep_qca_d2_h8");
}

#[test]
fn golden_unet_d2_h8() {
    check_case("unet_d2_h8");
}

#[test]
fn golden_unet_unitary_d2_h8() {
    check_case("unet_unitary_d2_h8");
}
