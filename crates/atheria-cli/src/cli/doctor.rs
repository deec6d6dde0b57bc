//! `atheria doctor`: checks each backend in its own bounded stage and says how
//! to fix what fails. A check that hangs is reported as a timeout; the hung
//! thread is abandoned and the process exits when the report is done.

use crate::cli::out;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atheria::{BackendKind, BackendOptions, BatchShape, ModelFile, ModelPackage, ModelSpec};
use clap::Args;

/// Arguments of `atheria doctor`.
#[derive(Debug, Args)]
// `--timeout -1` reaches the range check (one line naming the flag), not
// clap's "unexpected argument".
#[command(allow_negative_numbers = true)]
pub struct DoctorArgs {
    /// Backends to check (comma-separated); all known backends by default.
    #[arg(long, value_delimiter = ',', value_parser = super::run::parse_backend)]
    pub backends: Option<Vec<BackendKind>>,
    /// Seconds each check may take before it is reported as hung.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

/// A tiny TorchScript/ONNX/safetensors package (conv3x3, D = 4) built into the
/// binary, so the doctor needs no files: the exporter's own output, loaded
/// from memory.
const TINY_JSON: &str = include_str!("../../../../tests/fixtures/golden/conv3x3_d4/model.json");
const TINY_FILES: [(ModelFile, &[u8]); 3] = [
    (
        ModelFile::Safetensors,
        include_bytes!("../../../../tests/fixtures/golden/conv3x3_d4/model.safetensors"),
    ),
    (
        ModelFile::TorchScript,
        include_bytes!("../../../../tests/fixtures/golden/conv3x3_d4/model.pt"),
    ),
    (
        ModelFile::Onnx,
        include_bytes!("../../../../tests/fixtures/golden/conv3x3_d4/model.onnx"),
    ),
];

fn tiny_package() -> anyhow::Result<ModelPackage> {
    let origin = Path::new("<the doctor's built-in model>");
    let spec = ModelSpec::from_json(TINY_JSON, &origin.join("model.json"))?;
    Ok(ModelPackage::from_bytes(spec, TINY_FILES)?.with_origin(origin))
}

/// Runs `f` on its own thread; gives up after `limit`.
fn bounded<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("atheria-doctor".into())
        .spawn(move || {
            let _ = tx.send(f());
        })?;
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        Err(anyhow::anyhow!(
            "did not finish within {:.1} s (hung?)",
            limit.as_secs_f64()
        ))
    })
}

fn fix_for(kind: BackendKind) -> String {
    match kind {
        BackendKind::Candle => {
            "rebuild with `--features candle` (pure Rust, nothing to install)".into()
        }
        _ if !kind.compiled_in() => {
            format!("rebuild with `--features {kind}` (see README: `source scripts/env.sh`)")
        }
        BackendKind::Tch => {
            "run scripts/setup-python.sh (installs torch 2.13.0 into .venv, where this build looks for libtorch)".into()
        }
        BackendKind::Onnx => {
            "run scripts/setup-python.sh (installs onnxruntime into .venv) or set ORT_DYLIB_PATH"
                .into()
        }
    }
}

/// `atheria doctor`.
pub fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let limit = super::timeout_duration("--timeout", args.timeout)?;
    let requested = args.backends.is_some();
    let kinds = args.backends.unwrap_or_else(|| BackendKind::ALL.to_vec());
    let package = tiny_package()?;
    let mut failed = false;
    for kind in kinds {
        let started = Instant::now();
        if !kind.compiled_in() {
            out!(
                "{:<7} -     not compiled in; {}",
                kind.name(),
                fix_for(kind)
            );
            failed |= requested;
            continue;
        }
        let pkg = package.clone();
        let checks = bounded(limit, move || {
            let t = Instant::now();
            let version = kind.check()?;
            let t_check = t.elapsed();
            let t = Instant::now();
            let backend = kind.load(&pkg, &BackendOptions::default().with_threads(1))?;
            let t_load = t.elapsed();
            let t = Instant::now();
            let shape = BatchShape::new(1, backend.spec().channels(), 8, 8);
            let input = vec![0.5f32; shape.len()];
            let mut out = vec![0.0f32; shape.len()];
            backend.forward(&input, shape, &mut out)?;
            anyhow::ensure!(
                out.iter().all(|v| v.is_finite()),
                "the forward returned non-finite values"
            );
            Ok((version, backend.describe(), [t_check, t_load, t.elapsed()]))
        });
        match checks {
            Ok((version, describe, [c, l, f])) => out!(
                "{:<7} ok    {version}; tiny model loaded ({}) and ran one forward on {describe} ({}); check {}",
                kind.name(),
                super::run::ms(l),
                super::run::ms(f),
                super::run::ms(c)
            ),
            Err(e) => {
                failed = true;
                out!(
                    "{:<7} FAIL  {} after {}; fix: {}",
                    kind.name(),
                    super::one_line(&e),
                    super::run::ms(started.elapsed()),
                    fix_for(kind)
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
