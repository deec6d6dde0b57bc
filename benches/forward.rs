//! One forward of the conv3x3 law on each compiled-in backend: D = 4 (the
//! golden fixture's package) and D = 64, on a 64 x 64 field.
//!
//! tch and onnx need a TorchScript / ONNX file: the D = 64 package is the one
//! `atheria bench` exports (cached in the temp dir), exported here when the
//! Python environment exists; without it those two are skipped with a note
//! and candle runs identity weights built in memory.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use atheria::{BackendKind, BackendOptions, BatchShape, ComputeBackend, ModelPackage};
use criterion::{criterion_group, Criterion};

const GRID: usize = 64;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The D = 64 identity package, exported once if Python is set up.
fn package_d64() -> Option<ModelPackage> {
    let dir: PathBuf = std::env::temp_dir().join("atheria-bench-models/conv3x3-d64-h0");
    if !dir.join("model.json").is_file() {
        let py = root().join(".venv/bin/python");
        if !py.is_file() {
            return None;
        }
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        let ok = Command::new(py)
            .arg(root().join("python/export.py"))
            .args(["--arch", "conv3x3", "--d-state", "64", "--seed", "0"])
            .args(["--init", "identity", "--out"])
            .arg(&tmp)
            .status()
            .is_ok_and(|s| s.success());
        if !ok || std::fs::rename(&tmp, &dir).is_err() {
            return None;
        }
    }
    ModelPackage::load(&dir).ok()
}

#[cfg(feature = "candle")]
fn candle_identity_d64(options: &BackendOptions) -> Option<Arc<dyn ComputeBackend>> {
    let c = 128;
    let mut w = vec![0.0f32; c * c * 9];
    for i in 0..c {
        w[(i * c + i) * 9 + 4] = 1.0;
    }
    let mut spec = atheria::default_law::spec();
    spec.d_state = 64;
    spec.name = "identity-d64".into();
    let tensors = vec![
        ("conv.weight".to_string(), vec![c, c, 3, 3], w),
        ("conv.bias".to_string(), vec![c], vec![0.0; c]),
    ];
    backend_candle::CandleBackend::from_tensors(spec, tensors, options)
        .ok()
        .map(|b| Arc::new(b) as Arc<dyn ComputeBackend>)
}

#[cfg(not(feature = "candle"))]
fn candle_identity_d64(_: &BackendOptions) -> Option<Arc<dyn ComputeBackend>> {
    None
}

fn bench_forward(c: &mut Criterion) {
    // Find ONNX Runtime in the project's Python environment, as `atheria` does.
    #[cfg(feature = "onnx")]
    let _ = atheria::onnx::set_library(atheria::onnx::OrtLibrary::SearchPythonEnvironments);
    let options = BackendOptions::default();
    let d4 = ModelPackage::load(root().join("tests/fixtures/golden/conv3x3_d4"))
        .expect("the golden conv3x3_d4 package is part of the repository");
    let d64 = package_d64();
    let mut group = c.benchmark_group("forward");
    for kind in BackendKind::available() {
        if let Err(e) = kind.check() {
            eprintln!("forward/{kind}: SKIPPED: {e}");
            continue;
        }
        let d64_backend = match &d64 {
            Some(p) => kind.load(p, &options).ok(),
            None if kind == BackendKind::Candle => candle_identity_d64(&options),
            None => None,
        };
        let backends = [(4, kind.load(&d4, &options).ok()), (64, d64_backend)];
        for (d, backend) in backends {
            let name = format!("{kind}/conv3x3_d{d}_{GRID}x{GRID}");
            let Some(backend) = backend else {
                eprintln!("forward/{name}: SKIPPED: no model (run scripts/setup-python.sh)");
                continue;
            };
            let shape = BatchShape::new(1, 2 * d, GRID, GRID);
            let input = common::values(shape.len(), d as u64);
            let mut out = vec![0.0f32; shape.len()];
            group.bench_function(&name, |b| {
                b.iter(|| {
                    backend
                        .forward(black_box(&input), shape, &mut out)
                        .expect("forward");
                    black_box(&out);
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = bench_forward
}

/// `criterion_main!`, after making libtorch's OpenMP workers wait passively
/// as the `atheria` binary does (src/main.rs): spinning workers steal the
/// cores from everything else, and the figures swing by 10x.
fn main() {
    #[cfg(feature = "tch")]
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        use std::os::unix::process::CommandExt;
        if let Ok(exe) = std::env::current_exe() {
            let err = Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("OMP_WAIT_POLICY", "PASSIVE")
                .exec();
            eprintln!("warning: could not re-run with OMP_WAIT_POLICY=PASSIVE ({err})");
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
