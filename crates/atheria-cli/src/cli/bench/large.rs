//! `atheria bench --scale --cells N`: the opt-in large case (ten million
//! cells and up) of the sparse engine, through its public API only.
//!
//! For each backend and each `--d-states` D, a fresh process (so the peak
//! memory is this case's alone) loads the conv3x3 identity law, inserts a
//! disc of N cells, steps it (one warm-up step, then timed steps),
//! checkpoints it, drops it, resumes a new engine from the checkpoint,
//! checks that the resumed lattice is the checkpointed one cell for cell,
//! and steps it once more.
//!
//! The checkpoint is a directory of state files, one per band of rows of
//! the matter's bounding box, each written atomically (`state_file`): a
//! single file of the whole box would need the box as one dense state in
//! memory (1.27x the raw state for a disc) on top of the lattice, which at
//! D = 64 and 1e7 cells does not fit beside it in 24 GiB. Resuming imports
//! the bands one after the other (`SparseEngine::import`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use atheria::{state_file, BackendKind, BackendOptions, CellBox, SparseEngine, SparseOptions};
use serde_json::{json, Value};
use sparse_grid::rng;
use tracing::info;

use super::config::{Config, Engine};
use super::{matter, models, python, scale};
use crate::cli::out;

/// Timed steps before the checkpoint (after one warm-up step).
const TIMED_STEPS: usize = 2;
/// Most bytes of one band of the checkpoint (its dense state in memory).
const BAND_BYTES: usize = 256 << 20;
/// How long one case's process may take before it is stopped: ten million
/// cells at D = 64 take a few minutes per step on 2 busy cores.
const CASE_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// A cell count given as `10000000` or `1e7`.
pub fn parse_cells(s: &str) -> Result<usize, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of cells (e.g. 1e7)"))?;
    if !(v >= 1.0 && v <= sparse_grid::DEFAULT_MAX_CELLS as f64 && v.fract() == 0.0) {
        return Err(format!(
            "{s} cells: give a whole number from 1 to {}",
            sparse_grid::DEFAULT_MAX_CELLS
        ));
    }
    Ok(v as usize)
}

fn config(d: usize) -> Config {
    Config {
        name: format!("large-d{d}"),
        arch: "conv3x3",
        d_state: d,
        hidden: None,
        grid: 0,
        engine: Engine::Dense,
    }
}

fn status_mib(key: &str) -> f64 {
    scale::proc_status_mib(key).unwrap_or(f64::NAN)
}

/// Resets the peak-RSS mark, or says why the peaks cannot be measured.
fn reset_peak() -> anyhow::Result<()> {
    if !scale::reset_peak() {
        bail!("cannot reset the peak-memory mark (/proc/self/clear_refs)");
    }
    Ok(())
}

/// An order-free fingerprint of the lattice: the number of cells and the
/// wrapping sum of a hash of each cell's coordinates and value bits, so two
/// engines holding the same cells agree whatever order they keep them in.
fn fingerprint(e: &SparseEngine) -> (usize, u64) {
    let (mut n, mut sum) = (0usize, 0u64);
    for (x, y, v) in e.cells() {
        let mut h = rng::bits(&[x as i64 as u64, y as i64 as u64]);
        for (re, im) in v.iter() {
            h = rng::bits(&[h, (u64::from(re.to_bits()) << 32) | u64::from(im.to_bits())]);
        }
        sum = sum.wrapping_add(h);
        n += 1;
    }
    (n, sum)
}

/// Writes the lattice as bands of rows of its bounding box, one state file
/// each, into `dir`; returns the files and their bytes.
fn checkpoint(e: &SparseEngine, dir: &Path) -> anyhow::Result<(Vec<PathBuf>, u64)> {
    let b = e.bounding_box().context("the lattice is empty")?;
    let row_bytes = b.width() * (2 * e.d_state() * 4 + 1);
    let rows = (BAND_BYTES / row_bytes).max(1);
    let (mut files, mut bytes) = (Vec::new(), 0u64);
    let mut y = b.min_y as i64;
    while y <= b.max_y as i64 {
        let last = (y + rows as i64 - 1).min(b.max_y as i64);
        let band = e.export(CellBox::new(b.min_x, y as i32, b.max_x, last as i32))?;
        let path = dir.join(format!("band_{:05}.safetensors", files.len()));
        state_file::write_state(&band, &path)?;
        bytes += std::fs::metadata(&path)?.len();
        files.push(path);
        y = last + 1;
    }
    Ok((files, bytes))
}

/// One large case: a disc of `cells` cells at d_state `d`, stepped with
/// atomic steps on or off.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Cells of the disc.
    pub cells: usize,
    /// Complex channels per cell.
    pub d: usize,
    /// [`SparseOptions::atomic_steps`] of its steps.
    pub atomic: bool,
}

/// The child's side: one case, printed as one line of JSON.
pub fn child(
    kind: BackendKind,
    options: &BackendOptions,
    case: Case,
    dir: &Path,
) -> anyhow::Result<()> {
    let Case { cells, d, atomic } = case;
    let sparse = SparseOptions::default().with_atomic_steps(atomic);
    let cfg = config(d);
    let package = python::package_for(&cfg, &python::cache_dir())?;
    let backend = models::load(kind, &cfg, package.as_ref(), options)?;
    let base = status_mib("VmRSS:");
    reset_peak()?;
    let mut e = SparseEngine::new(backend.clone(), sparse)?;
    let t = Instant::now();
    info!("large {kind} D={d}: inserting a disc of {cells} cells ...");
    matter::disc(&mut e, (0, 0), cells)?;
    let insert_s = t.elapsed().as_secs_f64();
    let raw = e.occupied_count() as f64 * (2 * d * 4) as f64 / (1 << 20) as f64;
    info!("large {kind} D={d}: warm-up step ...");
    let t = Instant::now();
    let stats = e.step()?;
    let first_s = t.elapsed().as_secs_f64();
    let mut step_s = Vec::new();
    for i in 0..TIMED_STEPS {
        info!("large {kind} D={d}: timed step {}/{TIMED_STEPS} ...", i + 1);
        let t = Instant::now();
        e.step()?;
        step_s.push(t.elapsed().as_secs_f64());
    }
    let peak_step = status_mib("VmHWM:") - base;
    let (tiles, occupied) = (e.tile_count(), e.occupied_count());
    let before = fingerprint(&e);

    info!("large {kind} D={d}: checkpoint into {} ...", dir.display());
    reset_peak()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let t = Instant::now();
    let (files, bytes) = checkpoint(&e, dir)?;
    let checkpoint_s = t.elapsed().as_secs_f64();
    let step_count = e.step_count();
    drop(e);

    info!("large {kind} D={d}: resume from {} files ...", files.len());
    let t = Instant::now();
    let mut r = SparseEngine::new(backend, sparse)?;
    for f in &files {
        r.import(&state_file::read_state(f, r.options().max_cells)?)?;
    }
    let resume_s = t.elapsed().as_secs_f64();
    let after = fingerprint(&r);
    let resumed_step_count = r.step_count();
    info!("large {kind} D={d}: a step of the resumed lattice ...");
    let t = Instant::now();
    r.step()?;
    let resumed_step_s = t.elapsed().as_secs_f64();
    let peak_resume = status_mib("VmHWM:") - base;
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir(dir);
    if before != after || step_count != resumed_step_count {
        bail!(
            "the resumed lattice differs from the checkpointed one ({} cells, step {step_count} before; {} cells, step {resumed_step_count} after)",
            before.0,
            after.0
        );
    }
    let mean_step = step_s.iter().sum::<f64>() / step_s.len() as f64;
    out!(
        "{}",
        json!({
            "backend": kind.name(), "d_state": d, "atomic_steps": atomic, "cells": occupied,
            "tiles": tiles, "active_tiles": stats.active_tiles, "staged_tiles": stats.staged_tiles, "raw_state_mib": raw, "insert_s": insert_s,
            "first_step_s": first_s, "step_s": step_s, "step_s_mean": mean_step,
            "peak_stepping_mib": peak_step, "peak_stepping_vs_raw": peak_step / raw,
            "checkpoint_files": files.len(), "checkpoint_mib": bytes as f64 / (1 << 20) as f64,
            "checkpoint_s": checkpoint_s, "resume_s": resume_s, "resumed_equal": true,
            "resumed_step_s": resumed_step_s, "peak_checkpoint_resume_mib": peak_resume,
            "peak_measured_from": "RSS after the model loaded (VmHWM reset there, and again before the checkpoint)",
        })
    );
    Ok(())
}

/// Runs one case in a fresh process, waiting at most [`CASE_TIMEOUT`].
fn in_child(
    kind: BackendKind,
    threads: Option<usize>,
    case: Case,
    dir: &Path,
) -> anyhow::Result<Value> {
    let Case { cells, d, atomic } = case;
    let exe = std::env::current_exe().context("cannot find this program to start it again")?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "bench",
        "--scale",
        "--large-probe",
        "--backends",
        kind.name(),
    ])
    .args(["--cells", &cells.to_string(), "--d-states", &d.to_string()])
    .args(["--atomic-steps", crate::cli::run::on_off(atomic)])
    .arg("--checkpoint-dir")
    .arg(dir);
    if let Some(n) = threads {
        cmd.args(["--threads", &n.to_string()]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the large-case process")?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > CASE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the {cells}-cell case at D={d} took over {} s and was stopped",
                CASE_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut text = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut text)?;
    }
    if !status.success() {
        let hint = match std::os::unix::process::ExitStatusExt::signal(&status) {
            Some(9) => ": killed, most likely by the kernel's out-of-memory killer",
            _ => "",
        };
        bail!("the {cells}-cell case at D={d} failed ({status}){hint}");
    }
    let line = text
        .lines()
        .last()
        .context("the large-case process printed nothing")?;
    serde_json::from_str(line).context("the large-case process printed no JSON")
}

/// Every (backend, D) case, each in its own process; prints a table.
/// `(cells, atomic)`: the disc's cells and whether steps are atomic.
pub fn run(
    kinds: &[BackendKind],
    threads: Option<usize>,
    (cells, atomic): (usize, bool),
    d_states: &[usize],
    dir: &Path,
) -> Vec<Value> {
    let mut rows = Vec::new();
    for &kind in kinds {
        for &d in d_states {
            info!("large {kind}: {cells} cells at D={d}, in a fresh process");
            let case_dir = dir.join(format!("{}-d{d}-{}", kind.name(), std::process::id()));
            rows.push(
                in_child(kind, threads, Case { cells, d, atomic }, &case_dir).unwrap_or_else(|e| {
                    let msg = crate::cli::one_line(&e);
                    tracing::warn!("large {kind} D={d}: {msg}");
                    json!({"backend": kind.name(), "d_state": d, "cells": cells, "error": msg})
                }),
            );
        }
    }
    print(&rows);
    rows
}

fn print(rows: &[Value]) {
    let v = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    out!("\nlarge case: a disc on the sparse engine, conv3x3 identity law, one fresh process per row");
    if let Some(r) = rows.iter().find(|r| r["atomic_steps"].is_boolean()) {
        let on = r["atomic_steps"] == Value::Bool(true);
        out!(
            "(atomic steps {}: {})",
            crate::cli::run::on_off(on),
            if on {
                "every active tile staged before any is written"
            } else {
                "rows of tiles written as the step goes"
            }
        );
    }
    out!(
        "(s/step: mean of the timed steps after a warm-up one; peaks: RSS above the loaded model,"
    );
    out!(" over insert + steps, then over checkpoint + resume + one step of the resumed lattice)");
    out!(
        "{:8} {:>3} {:>9} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9}",
        "backend",
        "D",
        "cells",
        "tiles",
        "raw MiB",
        "insert s",
        "s/step",
        "peak MiB",
        "vs raw",
        "ckpt s",
        "ckpt MiB",
        "resume s",
        "step s",
        "peak MiB"
    );
    for r in rows {
        if let Some(e) = r["error"].as_str() {
            out!(
                "{:8} {:>3} {:>9} failed: {e}",
                s(&r["backend"]),
                r["d_state"],
                r["cells"]
            );
            continue;
        }
        out!(
            "{:8} {:>3} {:>9} {:>6} {:>8.0} {:>8.1} {:>8.2} {:>9.0} {:>7.2}x {:>8.1} {:>9.0} {:>8.1} {:>8.2} {:>9.0}",
            s(&r["backend"]), r["d_state"], r["cells"], r["tiles"], v(&r["raw_state_mib"]),
            v(&r["insert_s"]), v(&r["step_s_mean"]), v(&r["peak_stepping_mib"]),
            v(&r["peak_stepping_vs_raw"]), v(&r["checkpoint_s"]), v(&r["checkpoint_mib"]),
            v(&r["resume_s"]), v(&r["resumed_step_s"]), v(&r["peak_checkpoint_resume_mib"])
        );
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::parse_cells;

    #[test]
    fn cell_counts_take_scientific_notation_and_refuse_the_rest() {
        assert_eq!(parse_cells("1e7"), Ok(10_000_000));
        assert_eq!(parse_cells("2500"), Ok(2500));
        for bad in ["0", "-5", "1.5", "abc", "1e12", "nan", "inf"] {
            assert!(parse_cells(bad).is_err(), "{bad}");
        }
    }
}
