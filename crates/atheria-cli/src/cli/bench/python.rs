//! The Python side of a bench: the exporter that makes the model packages
//! tch and onnx need, and the PyTorch reference engine timed side by side.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use atheria::ModelPackage;
use serde_json::Value;
use tracing::info;

use super::config::Config;

/// The project's Python, if its environment has been set up (`.venv` in the
/// current directory or in the source tree this binary was built from).
pub fn python() -> Option<PathBuf> {
    let root = source_root();
    [
        std::env::current_dir()
            .ok()
            .map(|d| d.join(".venv/bin/python")),
        Some(root.join(".venv/bin/python")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// The workspace this program was built from (crates/atheria-cli is two
/// levels below it): where `.venv` and `python/` are.
fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python_dir() -> PathBuf {
    source_root().join("python")
}

/// Where the exporter's packages are cached between runs.
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("atheria-bench-models")
}

/// Makes (once) the exporter's package for a configuration's model,
/// identity-initialised for conv3x3 (so a sparse pattern stays as it is) and
/// seeded for the rest. `None` when Python is not set up.
pub fn package_for(cfg: &Config, cache: &Path) -> anyhow::Result<Option<ModelPackage>> {
    let dir = cache.join(format!(
        "{}-d{}-h{}",
        cfg.arch,
        cfg.d_state,
        cfg.hidden.unwrap_or(0)
    ));
    if dir.join("model.json").is_file() {
        return Ok(Some(ModelPackage::load(&dir)?));
    }
    let Some(py) = python() else { return Ok(None) };
    info!(
        "exporting the {} model for {} (once, cached in {}) ...",
        cfg.arch,
        cfg.name,
        cache.display()
    );
    let mut cmd = Command::new(py);
    cmd.arg(python_dir().join("export.py")).args([
        "--arch",
        cfg.arch,
        "--d-state",
        &cfg.d_state.to_string(),
        "--seed",
        "0",
    ]);
    if let Some(h) = cfg.hidden {
        cmd.args(["--hidden", &h.to_string()]);
    }
    if cfg.arch == "conv3x3" {
        cmd.args(["--init", "identity"]);
    }
    // Into a temporary directory first, so an interrupted export is never
    // mistaken for a package by the next run.
    let tmp = cache.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = cmd
        .arg("--out")
        .arg(&tmp)
        .output()
        .context("cannot start the exporter")?;
    if !out.status.success() {
        bail!(
            "the exporter failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(Some(ModelPackage::load(&dir)?))
}

/// Runs the PyTorch reference engine's bench on the same configuration and
/// threads; returns its JSON line.
pub fn reference_bench(
    package: &ModelPackage,
    cfg: &Config,
    threads: usize,
    steps: u64,
    windows: usize,
) -> anyhow::Result<Value> {
    let py = python().context("no Python environment")?;
    let out = Command::new(py)
        .arg(python_dir().join("reference_engine.py"))
        .args(["bench", "--model"])
        .arg(package.origin())
        .args(["--grid", &cfg.grid.to_string()])
        .args(["--steps", &steps.max(windows as u64).to_string()])
        .args(["--warmup", "2", "--threads", &threads.to_string()])
        .args(["--windows", &windows.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the PyTorch reference engine")?;
    if !out.status.success() {
        bail!("the PyTorch reference engine failed (exit {})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("the PyTorch reference engine printed nothing")?;
    serde_json::from_str(line).context("the PyTorch reference engine printed no JSON")
}
