//! `atheria bench --scale`: the sparse engine's scale figures, on the
//! conv3x3 D = 64 identity law:
//! - a blob costs the same at the origin and at (1e9, -1e9);
//! - two blobs 1e6 cells apart cost twice one (nothing is paid for the
//!   empty lattice between them);
//! - the share of a step spent outside the forward at 1e5 cells;
//! - peak memory while stepping 1e6 cells against their raw state
//!   (2 x 64 x 4 bytes per cell), with atomic steps on and off.
//!
//! Position and distance are timed in interleaved windows (origin, far, two
//! blobs, origin, ...), so a machine that slows down for a while slows all
//! three alike and the ratios stay fair.

use crate::cli::out;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use atheria::{
    interior_shape, BackendKind, BackendOptions, ComputeBackend, SparseEngine, SparseOptions,
    StepTimes,
};
use serde_json::{json, Value};
use tracing::info;

use super::config::Config;
use super::timing::median;
use super::{matter, models, python};

/// Cells of the blob in the position and distance figures.
const BLOB: usize = 10_000;
/// Cells of the blob whose time outside the forward is measured.
const SPLIT_CELLS: usize = 100_000;
/// Cells of the blob whose peak memory is measured.
const MEMORY_CELLS: usize = 1_000_000;
/// Where the far blob sits.
const FAR: (i32, i32) = (1_000_000_000, -1_000_000_000);
/// How far apart the two blobs are.
const APART: i32 = 1_000_000;

fn engine(
    backend: &Arc<dyn ComputeBackend>,
    blobs: &[(i32, i32)],
    cells: usize,
) -> anyhow::Result<SparseEngine> {
    let mut e = SparseEngine::new(Arc::clone(backend), SparseOptions::default())?;
    for &at in blobs {
        matter::disc(&mut e, at, cells)?;
    }
    e.step()?; // sizes every buffer
    Ok(e)
}

/// Seconds per step over `steps` steps.
fn time_steps(e: &mut SparseEngine, steps: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    for _ in 0..steps {
        e.step()?;
    }
    Ok(t.elapsed().as_secs_f64() / steps as f64)
}

/// A `/proc/self/status` figure in kB (`VmRSS:`, `VmHWM:`), in MiB.
pub(super) fn proc_status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the kernel's peak-RSS mark (VmHWM) to the current RSS.
pub(super) fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn position_and_distance(
    backend: &Arc<dyn ComputeBackend>,
    windows: usize,
    window_secs: f64,
) -> anyhow::Result<Value> {
    let mut engines = [
        engine(backend, &[(0, 0)], BLOB)?,
        engine(backend, &[FAR], BLOB)?,
        engine(backend, &[(0, 0), (APART, 0)], BLOB)?,
    ];
    let tiles: Vec<usize> = engines.iter().map(|e| e.tile_count()).collect();
    let one = time_steps(&mut engines[0], 1)?;
    let per = ((window_secs / 3.0 / one.max(1e-6)).round() as usize).max(1);
    let mut secs = [Vec::new(), Vec::new(), Vec::new()];
    for w in 0..windows {
        for (e, s) in engines.iter_mut().zip(secs.iter_mut()) {
            s.push(time_steps(e, per)?);
        }
        info!("scale: position and distance, window {}/{windows}", w + 1);
    }
    let ms: Vec<f64> = secs.iter().map(|s| median(s) * 1e3).collect();
    // Ratios window by window (each window's three timings are adjacent),
    // then their median.
    let ratio = |k: usize| {
        let r: Vec<f64> = secs[k].iter().zip(&secs[0]).map(|(x, o)| x / o).collect();
        median(&r)
    };
    Ok(json!({
        "blob_cells": engines[0].occupied_count(), "tiles": tiles,
        "origin_ms": ms[0], "far_ms": ms[1], "two_blobs_ms": ms[2],
        "far_vs_origin": ratio(1), "two_vs_one": ratio(2),
        "far": [FAR.0, FAR.1], "apart": APART,
    }))
}

fn outside_forward(backend: &Arc<dyn ComputeBackend>, steps: usize) -> anyhow::Result<Value> {
    let mut e = engine(backend, &[(0, 0)], SPLIT_CELLS)?;
    let (times, last) = StepTimes::measure(steps, || e.step())?;
    let (g, f, s) = times.per_step_ms();
    Ok(json!({
        "cells": e.occupied_count(), "active_tiles": last.active_tiles,
        "gather_ms": g, "forward_ms": f, "scatter_ms": s,
        "outside_forward_share": times.outside_forward_share(),
    }))
}

/// What one chunk of `e`'s step costs in memory on its own, in MiB of
/// peak RSS: the engine's model input and output for a full chunk and
/// whatever the backend allocates for one forward of it (its own copies,
/// its workspace), measured by running that forward once.
fn one_chunk_mib(e: &SparseEngine) -> f64 {
    let Some(shape) = e.full_chunk() else {
        return f64::NAN;
    };
    let before = proc_status_mib("VmRSS:").unwrap_or(f64::NAN);
    // Not zeros: a zeroed allocation is not resident until written, and
    // the engine's input is written.
    let input = vec![1e-3f32; shape.len()];
    // The forward the step makes: the tiles alone where the backend can.
    let margin = e.chunk_margin();
    let out = margin
        .and_then(|m| interior_shape(shape, m))
        .unwrap_or(shape);
    let mut delta = vec![0.0f32; out.len()];
    let backend = e.backend();
    let done = match margin {
        Some(m) => backend.forward_interior(&input, shape, m, &mut delta),
        None => backend.forward(&input, shape, &mut delta),
    };
    if let Err(e) = done {
        tracing::warn!("scale: the chunk's forward failed: {e}");
        return f64::NAN;
    }
    proc_status_mib("VmHWM:").unwrap_or(f64::NAN) - before
}

fn memory(backend: &Arc<dyn ComputeBackend>, atomic: bool) -> anyhow::Result<Value> {
    let base = proc_status_mib("VmRSS:").unwrap_or(f64::NAN);
    let reset = reset_peak();
    let options = SparseOptions::default().with_atomic_steps(atomic);
    let mut e = SparseEngine::new(Arc::clone(backend), options)?;
    // First, in the same process: the peak is measured from `base`, so a
    // workspace the backend keeps after this forward counts in both.
    let chunk = if reset { one_chunk_mib(&e) } else { f64::NAN };
    matter::disc(&mut e, (0, 0), MEMORY_CELLS)?;
    let held = proc_status_mib("VmRSS:").unwrap_or(f64::NAN) - base;
    let t = Instant::now();
    let steps = 2;
    let mut staged = 0;
    for _ in 0..steps {
        staged = e.step()?.staged_tiles;
    }
    let step_ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let peak = proc_status_mib("VmHWM:").unwrap_or(f64::NAN) - if reset { base } else { 0.0 };
    let raw = e.occupied_count() as f64 * (2 * e.d_state() * 4) as f64 / (1 << 20) as f64;
    Ok(json!({
        "atomic_steps": atomic, "staged_tiles": staged, "chunk_buffers_mib": chunk,
        "peak_vs_raw_plus_chunk": (peak - chunk) / raw,
        "cells": e.occupied_count(), "tiles": e.tile_count(), "raw_state_mib": raw,
        "rss_after_insert_mib": held, "peak_while_stepping_mib": peak, "peak_vs_raw": peak / raw,
        "step_ms": step_ms,
        "peak_measured_from": if reset { "RSS before the engine (VmHWM reset)" } else { "process start (VmHWM could not be reset)" },
    }))
}

/// The child's side of [`memory_in_child`]: loads the model, then measures
/// and prints one line of JSON.
pub fn memory_child(
    kind: BackendKind,
    options: &BackendOptions,
    atomic: bool,
) -> anyhow::Result<()> {
    let package = python::package_for(&scale_config(), &python::cache_dir())?;
    let backend = models::load(kind, &scale_config(), package.as_ref(), options)?;
    out!("{}", memory(&backend, atomic)?);
    Ok(())
}

/// Measures [`memory`] in a fresh process, where nothing freed by earlier
/// figures lies in the allocator for the engine to reuse unseen.
fn memory_in_child(
    kind: BackendKind,
    threads: Option<usize>,
    atomic: bool,
) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("cannot find this program to start it again")?;
    let mut cmd = Command::new(exe);
    cmd.args(["-q", "bench", "--memory-probe", "--backends", kind.name()]);
    cmd.args(["--atomic-steps", crate::cli::run::on_off(atomic)]);
    if let Some(n) = threads {
        cmd.args(["--threads", &n.to_string()]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the memory probe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the memory probe failed (exit {})", out.status);
    }
    let line = text
        .lines()
        .last()
        .context("the memory probe printed nothing")?;
    serde_json::from_str(line).context("the memory probe printed no JSON")
}

fn scale_config() -> Config {
    Config {
        name: "scale".into(),
        arch: "conv3x3",
        d_state: 64,
        hidden: None,
        grid: 0,
        engine: super::config::Engine::Dense,
    }
}

/// The scale figures on each backend in `kinds`.
pub fn run(
    kinds: &[BackendKind],
    options: &BackendOptions,
    windows: usize,
    window_secs: f64,
) -> Vec<Value> {
    let cfg = scale_config();
    let package = match python::package_for(&cfg, &python::cache_dir()) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("scale: {}", crate::cli::one_line(&e));
            None
        }
    };
    let mut out = Vec::new();
    for &kind in kinds {
        let result = (|| -> anyhow::Result<Value> {
            kind.check()?;
            let backend = models::load(kind, &cfg, package.as_ref(), options)?;
            info!("scale {kind}: position and distance ({BLOB}-cell blobs)");
            let pos = position_and_distance(&backend, windows, window_secs)?;
            info!("scale {kind}: split at {SPLIT_CELLS} cells");
            let split = outside_forward(&backend, 3)?;
            drop(backend);
            info!(
                "scale {kind}: memory at {MEMORY_CELLS} cells, atomic steps (in a fresh process)"
            );
            let mem = memory_in_child(kind, options.threads, true)?;
            info!(
                "scale {kind}: memory at {MEMORY_CELLS} cells, rolling steps (in a fresh process)"
            );
            let rolling = memory_in_child(kind, options.threads, false)?;
            Ok(json!({
                "backend": kind.name(), "position_distance": pos, "split_1e5": split,
                "memory_1e6": mem, "memory_1e6_rolling": rolling,
            }))
        })();
        out.push(result.unwrap_or_else(|e| {
            let msg = crate::cli::one_line(&e);
            tracing::warn!("scale {kind}: skipped: {msg}");
            json!({"backend": kind.name(), "error": msg})
        }));
    }
    out
}
