//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

pub mod onnx;

use std::path::{Path, PathBuf};

use engine_api::{BackendOptions, ModelPackage};

/// Where the golden fixtures live (written by python/make_golden.py).
pub fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden")
        .join(case)
}

/// The golden package for `case`, or a panic that says how to make it.
pub fn golden_package(case: &str) -> ModelPackage {
    let dir = golden_dir(case);
    assert!(
        dir.join("model.json").is_file() && dir.join("forward.safetensors").is_file(),
        "golden fixture `{case}` is missing at {}: generate the fixtures with python/make_golden.py \
         (needs the project venv: scripts/setup-python.sh)",
        dir.display()
    );
    ModelPackage::load(&dir).unwrap_or_else(|e| panic!("golden fixture `{case}`: {e}"))
}

/// A tensor from a safetensors file: its shape and f32 values.
pub fn read_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let view = file
        .tensor(name)
        .unwrap_or_else(|e| panic!("{}: tensor `{name}`: {e}", path.display()));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name} must be f32");
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

/// A fresh, empty directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("backend-onnx")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a package (`model.json` + `model.onnx`) into a scratch directory.
pub fn write_package(name: &str, d_state: usize, onnx: &[u8]) -> ModelPackage {
    write_package_with_multiple(name, d_state, 1, onnx)
}

/// [`write_package`] with a `spatial_multiple`.
pub fn write_package_with_multiple(
    name: &str,
    d_state: usize,
    spatial_multiple: usize,
    onnx: &[u8],
) -> ModelPackage {
    let dir = scratch_dir(name);
    std::fs::write(dir.join("model.onnx"), onnx).unwrap();
    let json = format!(
        r#"{{"format":"atheria-model/1","name":"{name}","architecture":"custom","d_state":{d_state},
            "update":"additive","receptive_radius":1,"spatial_multiple":{spatial_multiple},"files":{{"onnx":"model.onnx"}}}}"#
    );
    std::fs::write(dir.join("model.json"), json).unwrap();
    ModelPackage::load(&dir).unwrap()
}

/// Deterministic values in [-1, 1), from the workspace's one generator.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    sparse_grid::rng::Rng::new(seed).uniform_vec(n, -1.0, 1.0)
}

/// A `2D -> 2D` 3x3 convolution with same padding: its ONNX bytes, and the
/// weights and bias for [`conv3x3_reference`].
pub fn conv3x3(d_state: usize, seed: u64) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let c = 2 * d_state;
    let weight: Vec<f32> = values(c * c * 9, seed).iter().map(|v| v * 0.2).collect();
    let bias = values(c, seed + 1);
    let io = (onnx::nchw(c), onnx::nchw(c));
    (
        onnx::conv_model(c, c, 3, &weight, &bias, 1, io),
        weight,
        bias,
    )
}

/// The same convolution computed naively, as the reference.
pub fn conv3x3_reference(
    x: &[f32],
    [b, c, h, w]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    for n in 0..b {
        for o in 0..c {
            for i in 0..h {
                for j in 0..w {
                    let mut acc = bias[o];
                    for ci in 0..c {
                        for di in 0..3 {
                            for dj in 0..3 {
                                let (ii, jj) = (i + di, j + dj);
                                if ii < 1 || jj < 1 || ii > h || jj > w {
                                    continue;
                                }
                                let xv = x[((n * c + ci) * h + ii - 1) * w + jj - 1];
                                acc += weight[((o * c + ci) * 3 + di) * 3 + dj] * xv;
                            }
                        }
                    }
                    y[((n * c + o) * h + i) * w + j] = acc;
                }
            }
        }
    }
    y
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// CPU options with a fixed thread count, so results do not depend on the
/// host. Also lets this test binary find ONNX Runtime in the project's Python
/// environment, as the `atheria` program does (a library user's default is
/// `ORT_DYLIB_PATH` or the system's library only).
pub fn cpu(threads: usize) -> BackendOptions {
    search_python_environments();
    BackendOptions::default().with_threads(threads)
}

/// Looks for ONNX Runtime in the Python environments too (see [`cpu`]).
pub fn search_python_environments() {
    backend_onnx::set_library(backend_onnx::OrtLibrary::SearchPythonEnvironments)
        .expect("the library choice is made before any load");
}
