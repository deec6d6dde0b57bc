//! Golden fixtures (written by python/make_golden.py) and temporary packages.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use backend_tch::TchBackend;
use engine_api::{BackendOptions, BatchShape, ModelPackage};

/// Every golden case; each has a TorchScript file exported by PyTorch.
pub const CASES: [&str; 6] = [
    "conv3x3_d4",
    "conv3x3_identity_d4",
    "mlp_d2_h8",
    "deep_qca_d2_h8",
    "unet_d2_h8",
    "unet_unitary_d2_h8",
];

/// The fixture directory of `case`; panics, naming the fix, when it is missing.
pub fn golden(case: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden")
        .join(case);
    assert!(
        dir.join("model.pt").is_file() && dir.join("forward.safetensors").is_file(),
        "golden fixture {} is missing (model.pt, forward.safetensors): \
         generate it with `python python/make_golden.py` from the repository root",
        dir.display()
    );
    dir
}

/// A model input `x` and PyTorch's output `y` for it.
pub struct Forward {
    pub shape: BatchShape,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
}

/// Reads `forward.safetensors` of `case`.
pub fn forward(case: &str) -> Forward {
    let path = golden(case).join("forward.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let read = |name: &str| {
        let t = st.tensor(name).unwrap();
        assert_eq!(
            t.dtype(),
            safetensors::Dtype::F32,
            "{name} in {}",
            path.display()
        );
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), values)
    };
    let (shape, x) = read("x");
    let (y_shape, y) = read("y");
    assert_eq!(shape, y_shape);
    let shape = BatchShape::new(shape[0], shape[1], shape[2], shape[3]);
    Forward { shape, x, y }
}

/// Loads `case` on the CPU.
pub fn load(case: &str) -> TchBackend {
    let package = ModelPackage::load(golden(case)).unwrap();
    TchBackend::load(&package, &BackendOptions::default()).unwrap()
}

/// Largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "backend-tch-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a package with `model.json` naming `d_state` and the given
/// TorchScript bytes (custom architecture, radius null).
pub fn package_with(dir: &Path, d_state: usize, torchscript: &[u8]) -> ModelPackage {
    let json = format!(
        r#"{{"format":"atheria-model/1","name":"t","architecture":"custom","d_state":{d_state},
           "update":"additive","receptive_radius":null,"files":{{"torchscript":"model.pt"}}}}"#
    );
    std::fs::write(dir.join("model.json"), json).unwrap();
    std::fs::write(dir.join("model.pt"), torchscript).unwrap();
    ModelPackage::load(dir).unwrap()
}

/// A tensor of `case`'s `forward.safetensors` by name: its shape and values.
pub fn tensor(case: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let path = golden(case).join("forward.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("{name} in {}: {e}", path.display()));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

/// Writes a custom package listing `memory` (model.json's JSON list) with
/// the given TorchScript bytes and `spatial_multiple`.
pub fn package_with_memory(
    dir: &Path,
    d_state: usize,
    spatial_multiple: usize,
    memory: &str,
    torchscript: &[u8],
) -> ModelPackage {
    let json = format!(
        r#"{{"format":"atheria-model/1","name":"t","architecture":"custom","d_state":{d_state},
           "update":"additive","receptive_radius":null,"spatial_multiple":{spatial_multiple},
           "memory":{memory},"files":{{"torchscript":"model.pt"}}}}"#
    );
    std::fs::write(dir.join("model.json"), json).unwrap();
    std::fs::write(dir.join("model.pt"), torchscript).unwrap();
    ModelPackage::load(dir).unwrap()
}
