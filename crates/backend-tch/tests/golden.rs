//! What is particular to the tch backend, on the golden fixtures and on
//! modules traced here: the libtorch version, the reused input tensor, shape
//! errors, tuple outputs, in-place modules. That every golden case matches
//! PyTorch, on every backend, is the one golden suite's job (tests/golden.rs
//! at the repository root).

mod common;

use backend_tch::{check, TchBackend};
use common::{forward, load, max_diff, package_with, TempDir};
use engine_api::{BackendOptions, BatchShape, ComputeBackend};
use tch::{CModule, Kind, Tensor};

#[test]
fn check_names_the_libtorch_version() {
    let line = check().unwrap();
    assert!(line.starts_with("libtorch 2.13.0"), "{line}");
    assert!(line.contains("cuda available"), "{line}");
}

#[test]
fn batches_of_one_and_repeated_calls_give_the_same_values() {
    // Exercises the reused input tensor: shape [2,..], then [1,..] twice, then [2,..].
    let case = "unet_d2_h8";
    let backend = load(case);
    let f = forward(case);
    let one = BatchShape {
        batch: 1,
        ..f.shape
    };
    let n = one.len();
    for b in 0..2 {
        for _ in 0..2 {
            let mut out = vec![0.0; n];
            backend
                .forward(&f.x[b * n..(b + 1) * n], one, &mut out)
                .unwrap();
            let diff = max_diff(&out, &f.y[b * n..(b + 1) * n]);
            assert!(diff <= 1e-4, "batch entry {b}: {diff}");
        }
    }
    let mut out = vec![0.0; f.x.len()];
    backend.forward(&f.x, f.shape, &mut out).unwrap();
    assert!(max_diff(&out, &f.y) <= 1e-4);
}

#[test]
fn a_wrong_shape_is_an_error_not_a_panic() {
    let case = "conv3x3_d4";
    let backend = load(case);
    let f = forward(case);
    let mut out = vec![0.0; f.x.len()];
    let bad = BatchShape {
        channels: 6,
        ..f.shape
    };
    assert!(backend.forward(&f.x, bad, &mut out).is_err());
    assert!(backend.forward(&f.x[1..], f.shape, &mut out).is_err());
    let unet = load("unet_d2_h8");
    let odd = BatchShape::new(1, 4, 6, 8);
    let err = unet
        .forward(&vec![0.0; odd.len()], odd, &mut vec![0.0; odd.len()])
        .unwrap_err();
    assert!(err.to_string().contains("multiples of 4"), "{err}");
}

/// Saves a module traced by libtorch from `f` on a [1, 4, 4, 4] input.
fn traced(dir: &TempDir, f: impl Fn(&Tensor) -> Vec<Tensor>) -> Vec<u8> {
    let x = Tensor::zeros([1, 4, 4, 4], (Kind::Float, tch::Device::Cpu));
    let module = CModule::create_by_tracing("m", "forward", &[x], &mut |xs| f(&xs[0])).unwrap();
    let path = dir.0.join("traced.pt");
    module.save(&path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn a_module_returning_a_tuple_is_read_from_its_first_element() {
    // Scripted by PyTorch (tests/data/make_tuple.py): forward returns (2 * x, x.sum()).
    let dir = TempDir::new("tuple");
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tuple.pt")).unwrap();
    let package = package_with(&dir.0, 2, &bytes);
    let backend = TchBackend::load(&package, &BackendOptions::default()).unwrap();
    let shape = BatchShape::new(2, 4, 3, 5);
    let input: Vec<f32> = (0..shape.len()).map(|i| i as f32 * 0.25).collect();
    let mut out = vec![0.0; shape.len()];
    backend.forward(&input, shape, &mut out).unwrap();
    let twice: Vec<f32> = input.iter().map(|v| v * 2.0).collect();
    assert_eq!(out, twice);
}

#[test]
fn a_module_that_writes_its_input_in_place_leaves_the_callers_input_alone() {
    let dir = TempDir::new("inplace");
    let bytes = traced(&dir, |x| {
        let mut x = x.shallow_clone();
        let _ = x.g_mul_scalar_(3.0);
        vec![x]
    });
    let package = package_with(&dir.0, 2, &bytes);
    let backend = TchBackend::load(&package, &BackendOptions::default()).unwrap();
    let shape = BatchShape::new(1, 4, 2, 2);
    let input = vec![1.0f32; shape.len()];
    let mut out = vec![0.0; shape.len()];
    for _ in 0..2 {
        backend.forward(&input, shape, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 3.0), "{out:?}");
    }
    assert!(input.iter().all(|&v| v == 1.0));
}
