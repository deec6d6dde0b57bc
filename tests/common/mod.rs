//! Shared helpers for the integration tests: fixtures, backends, comparisons.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atheria::{BackendKind, BackendOptions, ComputeBackend, ModelPackage};

/// The committed golden cases (made by python/make_golden.py).
pub const GOLDEN_CASES: [&str; 8] = [
    "conv3x3_d4",
    "conv3x3_identity_d4",
    "mlp_d2_h8",
    "deep_qca_d2_h8",
    "unet_d2_h8",
    "unet_unitary_d2_h8",
    "unet_convlstm_d2_h8",
    "unet_unitary_rmsnorm_d2_h8",
];

/// The workspace root: these helpers serve the library's tests (at the
/// root) and the program's (crates/atheria-cli), which include this file.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/fixtures").is_dir())
        .expect("tests/fixtures above the crate")
        .to_path_buf()
}

/// `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// The directory of one golden case.
pub fn golden(case: &str) -> PathBuf {
    fixtures().join("golden").join(case)
}

/// Steps and gamma of a golden case (its case.json).
pub fn case_params(case: &str) -> (u64, f32) {
    let text = std::fs::read_to_string(golden(case).join("case.json")).expect("case.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("case.json is JSON");
    (
        v["steps"].as_u64().expect("steps"),
        v["gamma"].as_f64().expect("gamma") as f32,
    )
}

/// Backends to test: the compiled-in ones. A backend that is not compiled in
/// is announced as skipped; with ATHERIA_REQUIRE_BACKENDS=all (set by the
/// README's test command) a missing one fails the test instead.
pub fn backends() -> Vec<BackendKind> {
    find_native_libraries();
    let require_all = std::env::var("ATHERIA_REQUIRE_BACKENDS").is_ok_and(|v| v == "all");
    for kind in BackendKind::ALL {
        if !kind.compiled_in() {
            assert!(
                !require_all,
                "backend {kind} is not compiled in but ATHERIA_REQUIRE_BACKENDS=all"
            );
            eprintln!("SKIPPED: backend {kind} is not compiled in (build with --features {kind} to test it)");
        }
    }
    BackendKind::available()
}

/// True when `kind` can run the package's architecture.
pub fn supports(kind: BackendKind, package: &ModelPackage) -> bool {
    kind != BackendKind::Candle || package.spec().architecture != atheria::Architecture::Custom
}

/// Lets ONNX Runtime be found in the project's Python environment, as the
/// `atheria` program does (a library user's default is `ORT_DYLIB_PATH` or
/// the system's library only). [`backends`] and [`load`] call it.
pub fn find_native_libraries() {
    #[cfg(feature = "onnx")]
    atheria::onnx::set_library(atheria::onnx::OrtLibrary::SearchPythonEnvironments)
        .expect("the library choice is made before any load");
}

/// Loads a golden case's model on a backend with 2 threads.
pub fn load(kind: BackendKind, case: &str) -> Arc<dyn ComputeBackend> {
    find_native_libraries();
    let package = ModelPackage::load(golden(case)).expect("golden package");
    let options = BackendOptions::default().with_threads(2);
    kind.load(&package, &options)
        .unwrap_or_else(|e| panic!("{kind} cannot load {case}: {e}"))
}

/// Reads an f32 tensor from a safetensors file as (shape, values).
pub fn read_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("{} has no tensor {name}", path.display()));
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

/// Largest |a - b| over two slices, and where it is.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .enumerate()
        .fold((0.0, 0), |(m, at), (i, (x, y))| {
            let d = (x - y).abs();
            if d > m || d.is_nan() {
                (d, i)
            } else {
                (m, at)
            }
        })
}

/// Asserts |a - b| <= atol + rtol |b| everywhere, naming the worst element.
pub fn assert_close(what: &str, a: &[f32], b: &[f32], atol: f32, rtol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}: element {i} is {x}, expected {y} (|diff| {}, worst {:?})",
            (x - y).abs(),
            max_abs_diff(a, b)
        );
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atheria-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
