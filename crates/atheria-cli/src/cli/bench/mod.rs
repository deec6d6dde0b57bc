//! `atheria bench`: start-up by stage, warm-up with progress, then steps/s as
//! the median of timed windows, for every backend and configuration, side by
//! side with the PyTorch reference engine in the same run; `--scale` for the
//! sparse engine's scale figures.
//!
//! - [`config`]: the configurations; [`models`]: their weights on each backend;
//!   [`python`]: the exporter and the PyTorch reference engine.
//! - [`startup`]: the four start-up stages, in process and in a fresh process.
//! - [`timing`]: warm-up and timed windows; [`matter`]: sparse patterns.
//! - [`scale`]: `--scale`; [`large`]: `--scale --cells N`, the opt-in
//!   ten-million-cell case; [`report`]: tables, targets, the machine.

mod config;
mod large;
mod matter;
mod models;
mod python;
mod report;
mod scale;
#[cfg(feature = "candle")]
mod serve;
mod startup;
mod timing;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use atheria::{BackendKind, BackendOptions, ModelPackage, Simulation};
use clap::Args;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::run::parse_backend;
use config::{Config, Engine};
use timing::Companion;

/// Arguments of `atheria bench`.
#[derive(Debug, Args)]
// `--window-secs -1` reaches the range check, not clap's "unexpected argument".
#[command(allow_negative_numbers = true)]
pub struct BenchArgs {
    /// Backends to run (comma-separated); every compiled-in backend by default.
    #[arg(long, value_delimiter = ',', value_parser = parse_backend)]
    pub backends: Option<Vec<BackendKind>>,
    /// Configurations (comma-separated) from: dense-32, dense-64, dense-128,
    /// dense-512, unet-128, sparse-disc-1, sparse-disc-10, sparse-full,
    /// sparse-scatter-1; all by default (a sparse one brings dense-512).
    #[arg(long, value_delimiter = ',')]
    pub configs: Option<Vec<String>>,
    /// Threads for every engine and backend, PyTorch included (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed windows per configuration (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub windows: usize,
    /// Target seconds per timed window (a window holds at least one step).
    #[arg(long, default_value_t = 1.0)]
    pub window_secs: f64,
    /// Skip the PyTorch reference engine.
    #[arg(long)]
    pub no_pytorch: bool,
    /// Run the sparse engine's scale figures instead of the configurations:
    /// cost at (0, 0) vs (1e9, -1e9), two blobs 1e6 apart vs one, the time
    /// outside the forward at 1e5 cells, peak memory at 1e6 cells.
    #[arg(long)]
    pub scale: bool,
    /// With --scale: instead of the default scale figures, step a disc of N
    /// cells (`1e7` accepted) on the sparse engine at each of --d-states,
    /// checkpoint and resume it, each case in a fresh process; reports time
    /// per step and peak memory. Takes minutes per case at 1e7.
    #[arg(long, value_name = "N", value_parser = large::parse_cells, requires = "scale")]
    pub cells: Option<usize>,
    /// With --cells: the d_state of each case (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "16,64",
        requires = "cells"
    )]
    pub d_states: Vec<usize>,
    /// With --cells: where the checkpoints go (a directory per case, removed
    /// after; 1e7 cells at D = 64 need about 6.5 GB).
    #[arg(long, value_name = "DIR", requires = "cells")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Measure steps/s under `atheria serve` with 0, 1 and 50 viewers plus
    /// one stalled (128 x 128, D = 64, identity conv3x3 on candle).
    #[arg(long)]
    pub serve: bool,
    /// Under `mpirun -n P`: the sparse lattice across the ranks (feature `mpi`): steps/s and
    /// halo bytes per step of a disc of --distributed-grid cells a side (strong scaling) and of
    /// one sqrt(P) times wider (weak scaling), on the embedded default law.
    #[arg(long)]
    pub distributed: bool,
    /// Side of the strong-scaling lattice of --distributed.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub distributed_grid: usize,
    /// Timed steps of --distributed (after two warm-up steps).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub distributed_steps: u64,
    /// Tile side of the sparse configurations (a power of two), to compare
    /// tile sizes: each sparse row reports its time per active-tile cell.
    #[arg(long, default_value_t = atheria::sparse::DEFAULT_TILE)]
    pub tile: usize,
    /// With --cells: the sparse engine's steps `on` (atomic: a failed step
    /// changes nothing, a staged copy of the active tiles) or `off` (rows
    /// of tiles written as the step goes). The default --scale figures
    /// measure the 1e6-cell peak both ways.
    #[arg(long, default_value = "on", value_name = "on|off", action = clap::ArgAction::Set, value_parser = crate::cli::run::parse_on_off)]
    pub atomic_steps: bool,
    /// Write every figure and the machine description to this JSON file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Internal: run one start-up and print its stages (a fresh-process probe).
    #[arg(long, hide = true)]
    pub startup_probe: bool,
    /// Internal: measure the 1e6-cell peak memory in this fresh process.
    #[arg(long, hide = true)]
    pub memory_probe: bool,
    /// Internal: run one large case (--cells, the first of --d-states) in
    /// this fresh process.
    #[arg(long, hide = true)]
    pub large_probe: bool,
}

/// `atheria bench`.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.windows == 0 || !args.window_secs.is_finite() || args.window_secs <= 0.0 {
        bail!("--windows and --window-secs must be positive");
    }
    if let Some(n) = args.threads {
        atheria::check_threads(n).context("--threads")?;
    }
    if args.distributed {
        return distributed(&args);
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    check_compiled_in(args.backends.as_deref(), BackendKind::compiled_in)?;
    let kinds = args.backends.clone().unwrap_or_else(BackendKind::available);
    if kinds.is_empty() {
        bail!("no backend is compiled in: build with --features candle, tch or onnx");
    }
    let options = BackendOptions::default().with_threads(threads);
    let chosen = config::select(args.configs.as_deref())?;
    if args.startup_probe {
        let cfg = chosen.first().context("no configuration")?;
        let package = python::package_for(cfg, &python::cache_dir())?;
        startup::probe_child(kinds[0], cfg, package.as_ref(), &options)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.memory_probe {
        scale::memory_child(kinds[0], &options, args.atomic_steps)?;
        return Ok(ExitCode::SUCCESS);
    }
    atheria::SparseOptions::default()
        .with_tile(args.tile)
        .validate()
        .context("--tile")?;
    if args.d_states.contains(&0) {
        bail!("--d-states: every d_state must be at least 1");
    }
    let checkpoint_dir = args
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("atheria-bench-large"));
    if args.large_probe {
        let cells = args.cells.context("--large-probe needs --cells")?;
        let case = large::Case {
            cells,
            d: args.d_states[0],
            atomic: args.atomic_steps,
        };
        large::child(kinds[0], &options, case, &checkpoint_dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let machine = report::machine(threads);
    info!(
        "machine: {} ({} cores), {threads} threads",
        machine["cpu"], machine["cores"]
    );
    let command: Vec<String> = std::env::args().collect();
    #[cfg(feature = "candle")]
    if args.serve {
        let serve = serve::run(&options, args.windows, args.window_secs)?;
        let doc = json!({"machine": machine, "command": command, "serve": serve});
        return write_json(args.json.as_ref(), &doc);
    }
    if let Some(cells) = args.cells {
        let large = large::run(
            &kinds,
            args.threads,
            (cells, args.atomic_steps),
            &args.d_states,
            &checkpoint_dir,
        );
        let doc = json!({"machine": machine, "command": command, "large": large});
        return write_json(args.json.as_ref(), &doc);
    }
    if args.scale {
        let scale = scale::run(&kinds, &options, args.windows, args.window_secs);
        let targets = report::print_scale(&scale);
        let doc =
            json!({"machine": machine, "command": command, "scale": scale, "targets": targets});
        return write_json(args.json.as_ref(), &doc);
    }

    let cache = python::cache_dir();
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create {}", cache.display()))?;
    let startup = fresh_startups(&kinds, threads, &cache);
    let mut rows: Vec<Value> = Vec::new();
    let keep_reference = chosen.iter().any(|c| matches!(c.engine, Engine::Sparse(_)));
    // The dense reference engine of each backend, kept to be timed again
    // beside each sparse configuration: (engine, seconds per step).
    let mut reference: HashMap<BackendKind, (Simulation, f64)> = HashMap::new();
    for cfg in &chosen {
        let package = match python::package_for(cfg, &cache) {
            Ok(p) => p,
            Err(e) => {
                warn!("{}: {}", cfg.name, super::one_line(&e));
                None
            }
        };
        let mut best_rate = 0.0f64;
        for &kind in &kinds {
            let label = format!("{} {kind}", cfg.name);
            let companion = match cfg.engine {
                Engine::Sparse(_) => reference.get_mut(&kind),
                Engine::Dense => None,
            };
            match bench_one(
                kind,
                cfg,
                package.as_ref(),
                &options,
                &args,
                &label,
                companion,
            ) {
                Ok((row, engine)) => {
                    let rate = row["steps_per_s_median"].as_f64().unwrap_or(0.0);
                    best_rate = best_rate.max(rate);
                    rows.push(row);
                    if keep_reference && cfg.name == config::DENSE_REFERENCE && rate > 0.0 {
                        reference.insert(kind, (engine, 1.0 / rate));
                    }
                }
                Err(e) => {
                    warn!("{label}: skipped: {}", super::one_line(&e));
                    rows.push(json!({"config": cfg.name, "engine": engine_name(cfg), "backend": kind.name(), "error": super::one_line(&e)}));
                }
            }
        }
        if !args.no_pytorch && cfg.engine == Engine::Dense {
            let steps = (best_rate * args.window_secs * args.windows as f64 * 0.5) as u64;
            rows.push(pytorch_row(cfg, package.as_ref(), threads, steps, &args));
        }
    }
    report::compare_sparse(&mut rows);
    let targets = report::targets(&rows, &startup);
    report::print_all(&rows, &startup, &targets);
    let doc = json!({
        "machine": machine, "command": command, "sgemm_size": SGEMM_N,
        "startup_fresh_process": startup, "results": rows, "targets": targets,
    });
    write_json(args.json.as_ref(), &doc)
}

fn write_json(path: Option<&PathBuf>, doc: &Value) -> anyhow::Result<ExitCode> {
    if let Some(path) = path {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        info!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn engine_name(cfg: &Config) -> &'static str {
    match cfg.engine {
        Engine::Dense => "dense",
        Engine::Sparse(_) => "sparse",
    }
}

/// The fresh-process start-up of each backend (the probe's package is
/// exported first, so the probe times no export).
fn fresh_startups(kinds: &[BackendKind], threads: usize, cache: &std::path::Path) -> Vec<Value> {
    let Some(cfg) = config::all()
        .into_iter()
        .find(|c| c.name == startup::PROBE_CONFIG)
    else {
        return Vec::new();
    };
    if let Err(e) = python::package_for(&cfg, cache) {
        warn!("{}: {}", cfg.name, super::one_line(&e));
    }
    // Several rounds, the backends taking turns: one slow disk moment (a
    // library read from disk, not from the page cache) shows as one slow
    // run, not as the figure.
    let mut runs: Vec<Vec<Value>> = vec![Vec::new(); kinds.len()];
    for round in 0..STARTUP_ROUNDS {
        for (k, &kind) in kinds.iter().enumerate() {
            info!(
                "start-up of {kind} in a fresh process ({}/{STARTUP_ROUNDS}) ...",
                round + 1
            );
            match startup::fresh_process(kind, threads) {
                Ok(v) => runs[k].push(v),
                Err(e) => warn!("start-up of {kind}: {}", super::one_line(&e)),
            }
        }
    }
    kinds
        .iter()
        .zip(runs)
        .map(|(&kind, mut runs)| {
            let wall = |v: &Value| v["wall_to_first_step_end_ms"].as_f64().unwrap_or(f64::NAN);
            let walls: Vec<f64> = runs.iter().map(wall).collect();
            runs.sort_by(|a, b| wall(a).total_cmp(&wall(b)));
            match runs.get(runs.len() / 2) {
                Some(median) => {
                    let mut v = median.clone();
                    v["wall_runs_ms"] = json!(walls);
                    v["chosen"] = json!("the run with the median wall time");
                    v
                }
                None => json!({"backend": kind.name(), "error": "every start-up probe failed"}),
            }
        })
        .collect()
}

/// Fresh-process start-ups per backend; the median run is reported.
const STARTUP_ROUNDS: usize = 3;

/// Start-up, warm-up and timed windows of one configuration on one backend.
fn bench_one(
    kind: BackendKind,
    cfg: &Config,
    package: Option<&ModelPackage>,
    options: &BackendOptions,
    args: &BenchArgs,
    label: &str,
    reference: Option<&mut (Simulation, f64)>,
) -> anyhow::Result<(Value, Simulation)> {
    let (mut engine, first, stages) = startup::start(kind, cfg, package, options, args.tile)?;
    let first_time = first.gather + first.forward + first.scatter;
    let mut dense = reference.map(|(dense, secs)| (move || Ok(dense.step()?), *secs));
    let mut companion = dense.as_mut().map(|(step, secs)| Companion {
        per_window: timing::steps_for(args.window_secs, *secs),
        step,
        windows: Vec::new(),
    });
    // Each window is followed by an sgemm: the machine's speed at that
    // moment (a shared machine changes speed), and for the conv3x3 the
    // ceiling its arithmetic rate is compared with.
    let threads = options.threads.unwrap_or(1);
    let mut sgemm = || sgemm_gflops(threads);
    let probe: Option<&mut dyn FnMut() -> Option<f64>> = Some(&mut sgemm);
    let t = timing::time_windows(
        label,
        first_time,
        args.windows,
        args.window_secs,
        || Ok(engine.step()?),
        companion.as_mut(),
        probe,
    )?;
    let rate = t.median();
    let total_ms: f64 = stages.iter().map(|(_, d)| d.as_secs_f64() * 1e3).sum();
    let (g, fw, sc) = (
        t.per_step_ms(t.gather),
        t.per_step_ms(t.forward),
        t.per_step_ms(t.scatter),
    );
    let mut row = json!({
        "config": cfg.name, "engine": engine_name(cfg), "backend": kind.name(),
        "arch": cfg.arch, "d_state": cfg.d_state, "hidden": cfg.hidden, "grid": cfg.grid,
        "startup_ms": startup::stages_json(&stages), "startup_total_ms": total_ms,
        "steps_per_s_median": rate, "steps_per_s_windows": t.windows, "timed_steps": t.steps,
        "ms_per_step": {"gather": g, "forward": fw, "scatter": sc, "total": t.per_step_ms(t.total)},
        "forward_share": t.forward_share(),
        "sgemm_gflops_median": (!t.probe_windows.is_empty()).then(|| timing::median(&t.probe_windows)),
    });
    // The conv3x3's arithmetic rate: the FLOPs of the cells the model
    // computed (for a sparse step each active tile with its halo, or the
    // tile alone where the backend skips the halo) per second of forward,
    // window by window against the sgemm that followed.
    let tile = args.tile;
    let model_cells = t.last.model_cells;
    if cfg.arch == "conv3x3" && t.forward > std::time::Duration::ZERO {
        let flops = cfg.conv_flops(model_cells);
        let gflops: Vec<f64> = t
            .forward_secs_windows()
            .iter()
            .map(|s| flops / s.max(1e-12) / 1e9)
            .collect();
        let ratios: Vec<f64> = gflops
            .iter()
            .zip(&t.probe_windows)
            .map(|(c, g)| c / g)
            .collect();
        row["conv"] = json!({
            "gflops_mean": flops * t.steps as f64 / t.forward.as_secs_f64() / 1e9,
            "gflops_windows": gflops, "sgemm_gflops_windows": t.probe_windows,
            "vs_sgemm_windows": ratios,
            "vs_sgemm_median": (!ratios.is_empty()).then(|| timing::median(&ratios)),
        });
    }
    if cfg.engine == Engine::Dense {
        row["readouts"] = readout_cost(&mut engine, args.window_secs, rate)?;
    }
    if let Engine::Sparse(_) = cfg.engine {
        let cells = (t.last.active_tiles * tile * tile) as f64;
        row["sparse"] = json!({
            "tile": tile, "occupied_cells": t.last.occupied_cells, "active_tiles": t.last.active_tiles,
            "model_cells": t.last.model_cells,
            "halo_work": t.last.model_cells as f64 / (t.last.active_tiles * tile * tile).max(1) as f64,
            "ns_per_active_tile_cell": 1e9 / (rate * cells),
            "outside_forward_share": (g + sc) / (g + fw + sc),
        });
        if let Some(c) = &companion {
            // Window by window: this configuration's window against the
            // dense window that followed it.
            let extent = (config::SPARSE_EXTENT * config::SPARSE_EXTENT) as f64;
            let pairs = t.windows.iter().zip(&c.windows);
            let per_cell: Vec<f64> = pairs
                .clone()
                .map(|(s, d)| (d * extent) / (s * cells))
                .collect();
            let speedup: Vec<f64> = pairs.map(|(s, d)| s / d).collect();
            row["sparse"]["dense_side_by_side"] = json!({
                "config": config::DENSE_REFERENCE,
                "steps_per_s_median": timing::median(&c.windows), "steps_per_s_windows": c.windows,
                "per_cell_vs_dense_windows": per_cell, "speedup_windows": speedup,
                "per_cell_vs_dense_median": timing::median(&per_cell),
                "speedup_median": timing::median(&speedup),
            });
        }
    }
    Ok((row, engine))
}

/// What computing every readout ([`Simulation::metrics`]) after every step
/// costs, as a share of the step: steps and readouts alternate for about
/// one window, each timed alone; the medians are compared.
fn readout_cost(engine: &mut Simulation, window_secs: f64, rate: f64) -> anyhow::Result<Value> {
    let n = ((window_secs * rate) as usize).clamp(5, 500);
    info!("readouts after each of {n} steps ...");
    let (mut steps, mut reads) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t0 = std::time::Instant::now();
        engine.step()?;
        let t1 = std::time::Instant::now();
        std::hint::black_box(engine.metrics()?);
        steps.push((t1 - t0).as_secs_f64() * 1e3);
        reads.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    let (step_ms, read_ms) = (timing::median(&steps), timing::median(&reads));
    Ok(
        json!({"pairs": n, "step_ms_median": step_ms, "metrics_ms_median": read_ms, "share_of_step": read_ms / step_ms}),
    )
}

/// The PyTorch reference engine on `cfg`, or a row saying why not.
fn pytorch_row(
    cfg: &Config,
    package: Option<&ModelPackage>,
    threads: usize,
    steps: u64,
    args: &BenchArgs,
) -> Value {
    let Some(p) = package else {
        info!(
            "{}: PyTorch reference skipped (no Python environment: run scripts/setup-python.sh)",
            cfg.name
        );
        return json!({"config": cfg.name, "engine": "pytorch", "skipped": "no Python environment (scripts/setup-python.sh)"});
    };
    info!("{}: PyTorch reference engine ...", cfg.name);
    let before = sgemm_gflops(threads);
    let result = python::reference_bench(p, cfg, threads, steps.min(2000), args.windows);
    let around: Vec<f64> = [before, sgemm_gflops(threads)]
        .into_iter()
        .flatten()
        .collect();
    match result {
        Ok(v) => json!({
            "sgemm_gflops_median": (!around.is_empty()).then(|| timing::median(&around)),
            "sgemm_gflops_before_after": around,
            "config": cfg.name, "engine": "pytorch", "backend": "pytorch",
            "steps_per_s_median": v["steps_per_s_median"], "steps_per_s_windows": v["steps_per_s_windows"],
            "startup_s": v["startup_s"], "torch": v["torch"], "threads": v["threads"],
        }),
        Err(e) => {
            warn!(
                "{}: PyTorch reference failed: {}",
                cfg.name,
                super::one_line(&e)
            );
            json!({"config": cfg.name, "engine": "pytorch", "error": super::one_line(&e)})
        }
    }
}

/// Side of the square sgemm that stands for the machine's ceiling: large
/// enough to run at the kernels' full rate, small enough (2 GFLOP, best of
/// four) to follow every timed window.
const SGEMM_N: usize = 1024;

/// The best of a few large single-precision matrix multiplies through the
/// gemm kernels candle's convolutions use, in GFLOP/s: the ceiling a
/// convolution can reach on this machine right now, on the run's threads.
fn sgemm_gflops(threads: usize) -> Option<f64> {
    #[cfg(feature = "candle")]
    {
        atheria::candle::matmul_gflops(SGEMM_N, threads).ok()
    }
    #[cfg(not(feature = "candle"))]
    {
        let _ = threads;
        None
    }
}

/// A backend asked for by name must be compiled in (`compiled_in` says
/// which are), as `doctor` says: an error (exit 1), not a run that skips it
/// and exits 0.
fn check_compiled_in(
    asked: Option<&[BackendKind]>,
    compiled_in: impl Fn(BackendKind) -> bool,
) -> anyhow::Result<()> {
    if let Some(missing) = asked.into_iter().flatten().find(|k| !compiled_in(**k)) {
        bail!(
            "backend {missing} is not compiled in: build with --features {}",
            missing.name()
        );
    }
    Ok(())
}

/// `--distributed`, when this program has MPI.
#[cfg(feature = "mpi")]
fn distributed(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.distributed_grid < 2 || args.distributed_steps == 0 {
        bail!("--distributed-grid must be at least 2 and --distributed-steps at least 1");
    }
    super::distributed::bench(args.distributed_grid, args.distributed_steps, args.threads)
}

/// `--distributed`, when this program has no MPI: one line saying how to get it.
#[cfg(not(feature = "mpi"))]
fn distributed(_: &BenchArgs) -> anyhow::Result<ExitCode> {
    Err(crate::cli::no_mpi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_asked_for_but_not_compiled_in_is_an_error() {
        // As in a build without tch: every test build has all three, so the
        // predicate stands in for the features.
        let without_tch = |k: BackendKind| k != BackendKind::Tch;
        let e = check_compiled_in(Some(&[BackendKind::Candle, BackendKind::Tch]), without_tch)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "backend tch is not compiled in: build with --features tch"
        );
        assert!(check_compiled_in(Some(&[BackendKind::Candle]), without_tch).is_ok());
        assert!(check_compiled_in(None, without_tch).is_ok());
    }
}
