//! `atheria bench`: start-up by stage, warm-up with progress, then steps/s as
//! the median of timed windows, for every backend and configuration, side by
//! side with the PyTorch reference engine in the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use atheria::{
    BackendKind, BackendOptions, ComputeBackend, DenseEngine, DenseState, InitKind, ModelPackage,
    StepOptions,
};
use clap::Args;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::progress::Progress;
use super::run::{parse_backend, Stages};

/// Arguments of `atheria bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backends to run (comma-separated); every compiled-in backend by default.
    #[arg(long, value_delimiter = ',', value_parser = parse_backend)]
    pub backends: Option<Vec<BackendKind>>,
    /// Configurations (comma-separated) from: dense-32, dense-64, dense-128, unet-128
    /// (and the sparse ones when the sparse engine is built); all by default.
    #[arg(long, value_delimiter = ',')]
    pub configs: Option<Vec<String>>,
    /// Threads for every engine and backend, PyTorch included.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed windows per configuration (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub windows: usize,
    /// Target seconds per timed window.
    #[arg(long, default_value_t = 1.0)]
    pub window_secs: f64,
    /// Skip the PyTorch reference engine.
    #[arg(long)]
    pub no_pytorch: bool,
    /// Write every figure and the machine description to this JSON file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// One benchmark configuration.
#[derive(Debug, Clone)]
struct Config {
    name: String,
    arch: &'static str,
    d_state: usize,
    hidden: Option<usize>,
    grid: usize,
}

fn configs() -> Vec<Config> {
    let conv = |grid| Config {
        name: format!("dense-{grid}"),
        arch: "conv3x3",
        d_state: 64,
        hidden: None,
        grid,
    };
    vec![
        conv(32),
        conv(64),
        conv(128),
        Config {
            name: "unet-128".into(),
            arch: "unet",
            d_state: 8,
            hidden: Some(32),
            grid: 128,
        },
    ]
}

/// The project's Python, if its environment has been set up.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
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

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Makes (once) the exporter's package for a configuration, identity-initialised
/// for conv3x3 as in the seed's benchmark. None when Python is not set up.
fn package_for(cfg: &Config, cache: &Path) -> anyhow::Result<Option<ModelPackage>> {
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
        "exporting the {} model for {} (once) ...",
        cfg.arch, cfg.name
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
    let out = cmd
        .arg("--out")
        .arg(&dir)
        .output()
        .context("cannot start the exporter")?;
    if !out.status.success() {
        bail!(
            "the exporter failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(ModelPackage::load(&dir)?))
}

/// Identity conv3x3 weights built in code, so candle benches without Python.
#[cfg(feature = "candle")]
fn identity_conv(d: usize) -> (atheria::ModelSpec, atheria::default_law::NamedTensors) {
    let mut spec = atheria::default_law::spec();
    spec.name = format!("identity-conv3x3-d{d}");
    spec.d_state = d;
    let c = 2 * d;
    let mut w = vec![0.0f32; c * c * 9];
    for i in 0..c {
        w[(i * c + i) * 9 + 4] = 1.0;
    }
    (
        spec,
        vec![
            ("conv.weight".into(), vec![c, c, 3, 3], w),
            ("conv.bias".into(), vec![c], vec![0.0; c]),
        ],
    )
}

fn load(
    kind: BackendKind,
    cfg: &Config,
    package: Option<&ModelPackage>,
    options: &BackendOptions,
) -> anyhow::Result<Arc<dyn ComputeBackend>> {
    match package {
        Some(p) => Ok(kind.load(p, options)?),
        #[cfg(feature = "candle")]
        None if kind == BackendKind::Candle && cfg.arch == "conv3x3" => {
            let (spec, tensors) = identity_conv(cfg.d_state);
            Ok(Arc::new(backend_candle::CandleBackend::from_tensors(
                spec, tensors, options,
            )?))
        }
        None => bail!(
            "no model package for {} (run scripts/setup-python.sh so the exporter can make one)",
            cfg.name
        ),
    }
}

/// Steps/s of timed windows, and the share of the time spent in forward.
struct Timing {
    windows: Vec<f64>,
    forward_share: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// Warms up, then times `windows` windows of about `window_secs` each; the
/// step closure returns the forward time of its step.
fn time_windows(
    label: &str,
    first_step: Duration,
    windows: usize,
    window_secs: f64,
    mut step: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Timing> {
    let per_window =
        ((window_secs / first_step.as_secs_f64().max(1e-6)).ceil() as u64).clamp(2, 10_000);
    let warmup = (per_window / 4).clamp(2, 50);
    let mut progress = Progress::new(&format!("{label} warm-up"), warmup, false);
    for i in 0..warmup {
        step()?;
        progress.set(i + 1);
    }
    progress.finish();
    let mut rates = Vec::new();
    let (mut forward, mut total) = (Duration::ZERO, Duration::ZERO);
    let mut progress = Progress::new(
        &format!("{label} timed"),
        per_window * windows as u64,
        false,
    );
    for w in 0..windows {
        let t = Instant::now();
        for i in 0..per_window {
            forward += step()?;
            progress.set(w as u64 * per_window + i + 1);
        }
        let took = t.elapsed();
        total += took;
        rates.push(per_window as f64 / took.as_secs_f64());
    }
    progress.finish();
    Ok(Timing {
        windows: rates,
        forward_share: forward.as_secs_f64() / total.as_secs_f64().max(1e-9),
    })
}

/// Runs the PyTorch reference engine's bench on the same configuration.
fn pytorch(
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
        .arg(&package.dir)
        .args([
            "--grid",
            &cfg.grid.to_string(),
            "--steps",
            &steps.to_string(),
            "--warmup",
            "3",
        ])
        .args([
            "--threads",
            &threads.to_string(),
            "--windows",
            &windows.to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
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
    Ok(serde_json::from_str(line)?)
}

/// The best single-precision matrix multiply this machine reaches through the
/// candle backend's matmul path, in GFLOP/s: the ceiling a convolution can reach.
fn matmul_gflops() -> Option<f64> {
    #[cfg(feature = "candle")]
    {
        backend_candle::matmul_gflops(1024).ok()
    }
    #[cfg(not(feature = "candle"))]
    {
        None
    }
}

fn machine(threads: usize) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    json!({"cpu": cpu, "cores": cores, "threads": threads})
}

/// `atheria bench`.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.windows == 0 || args.window_secs.is_nan() || args.window_secs <= 0.0 {
        bail!("--windows and --window-secs must be positive");
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    let kinds = args.backends.clone().unwrap_or_else(BackendKind::available);
    let all = configs();
    let chosen: Vec<Config> = match &args.configs {
        None => all,
        Some(names) => names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|c| &c.name == n)
                    .cloned()
                    .with_context(|| format!("unknown configuration `{n}`"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let cache = std::env::temp_dir().join("atheria-bench-models");
    std::fs::create_dir_all(&cache)?;
    let options = BackendOptions {
        threads: Some(threads),
        ..Default::default()
    };
    let mut rows: Vec<Value> = Vec::new();
    let gemm = matmul_gflops();
    for cfg in &chosen {
        let package = match package_for(cfg, &cache) {
            Ok(p) => p,
            Err(e) => {
                warn!("{}: {e:#}", cfg.name);
                None
            }
        };
        let mut best_rate = 0.0f64;
        let mut steps_for_pytorch = 20u64;
        for &kind in &kinds {
            let label = format!("{} {kind}", cfg.name);
            let mut stages = Stages::new(None);
            let result = (|| -> anyhow::Result<Value> {
                stages.run("backend init", || Ok(kind.check()?))?;
                let backend =
                    stages.run("model load", || load(kind, cfg, package.as_ref(), &options))?;
                let state = stages.run("state init", || {
                    let mut s = DenseState::zeros(cfg.grid, cfg.grid, cfg.d_state)?;
                    atheria::init::fill(&mut s, InitKind::ComplexNoise, 0);
                    Ok(s)
                })?;
                let mut engine = DenseEngine::new(backend, state, StepOptions::default())?;
                let first = stages.run("first step", || Ok(engine.step()?))?;
                let first_time = first.forward + first.scatter;
                let timing =
                    time_windows(&label, first_time, args.windows, args.window_secs, || {
                        Ok(engine.step()?.forward)
                    })?;
                let rate = median(&timing.windows);
                let flops =
                    2.0 * (cfg.grid * cfg.grid) as f64 * (2 * cfg.d_state).pow(2) as f64 * 9.0;
                let conv_gflops = (cfg.arch == "conv3x3")
                    .then(|| flops * rate / timing.forward_share.max(1e-9) / 1e9);
                steps_for_pytorch = steps_for_pytorch
                    .max((rate * args.window_secs * args.windows as f64) as u64 / 2);
                best_rate = best_rate.max(rate);
                Ok(json!({
                    "config": cfg.name, "engine": "atheria-dense", "backend": kind.name(),
                    "startup_ms": stages.done.iter().map(|(n, d)| (n.clone(), json!(d.as_secs_f64() * 1e3))).collect::<serde_json::Map<_, _>>(),
                    "steps_per_s_median": rate, "steps_per_s_windows": timing.windows,
                    "forward_share": timing.forward_share, "conv_gflops": conv_gflops,
                }))
            })();
            match result {
                Ok(row) => rows.push(row),
                Err(e) => {
                    warn!("{label}: skipped: {}", super::one_line(&e));
                    rows.push(json!({"config": cfg.name, "backend": kind.name(), "error": super::one_line(&e)}));
                }
            }
        }
        if args.no_pytorch {
            continue;
        }
        match &package {
            None => {
                info!("{}: PyTorch reference skipped (no Python environment: run scripts/setup-python.sh)", cfg.name);
                rows.push(json!({"config": cfg.name, "engine": "pytorch", "skipped": "no Python environment"}));
            }
            Some(p) => match pytorch(p, cfg, threads, steps_for_pytorch.min(2000), args.windows) {
                Ok(v) => {
                    let rate = v["steps_per_s_median"].as_f64().unwrap_or(f64::NAN);
                    info!(
                        "{}: PyTorch {rate:.1} steps/s; best atheria backend {:.2}x",
                        cfg.name,
                        best_rate / rate
                    );
                    rows.push(json!({"config": cfg.name, "engine": "pytorch", "backend": "pytorch", "steps_per_s_median": rate,
                                     "steps_per_s_windows": v["steps_per_s_windows"], "startup_s": v["startup_s"], "torch": v["torch"]}));
                }
                Err(e) => {
                    warn!(
                        "{}: PyTorch reference failed: {}",
                        cfg.name,
                        super::one_line(&e)
                    );
                    rows.push(json!({"config": cfg.name, "engine": "pytorch", "error": super::one_line(&e)}));
                }
            },
        }
    }
    print_table(&rows, gemm);
    if let Some(path) = &args.json {
        let doc = json!({"machine": machine(threads), "matmul_gflops": gemm, "results": rows});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        info!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Value], gemm: Option<f64>) {
    println!(
        "{:<12} {:<8} {:>10} {:>14} {:>9} {:>9} {:>12}",
        "config", "backend", "steps/s", "spread", "vs torch", "forward", "start-up"
    );
    for r in rows {
        let cfg = r["config"].as_str().unwrap_or("");
        let backend = r["backend"].as_str().unwrap_or("pytorch");
        if let Some(e) = r["error"].as_str().or(r["skipped"].as_str()) {
            println!("{cfg:<12} {backend:<8} skipped: {e}");
            continue;
        }
        let rate = r["steps_per_s_median"].as_f64().unwrap_or(f64::NAN);
        let windows: Vec<f64> = r["steps_per_s_windows"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let (lo, hi) = windows
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
        let torch = rows
            .iter()
            .find(|o| o["config"] == r["config"] && o["engine"] == "pytorch")
            .and_then(|o| o["steps_per_s_median"].as_f64());
        let ratio = torch.map_or("-".to_string(), |t| format!("{:.2}x", rate / t));
        let share = r["forward_share"]
            .as_f64()
            .map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0));
        let startup = r["startup_ms"].as_object().map_or("-".to_string(), |m| {
            format!(
                "{:.0} ms",
                m.values().filter_map(Value::as_f64).sum::<f64>()
            )
        });
        println!(
            "{cfg:<12} {backend:<8} {rate:>10.1} {:>14} {ratio:>9} {share:>9} {startup:>12}",
            format!("{lo:.1}-{hi:.1}")
        );
    }
    if let Some(g) = gemm {
        println!("matmul ceiling (1024^3 sgemm): {g:.1} GFLOP/s");
        for r in rows.iter().filter(|r| r["conv_gflops"].is_f64()) {
            let c = r["conv_gflops"].as_f64().unwrap_or(0.0);
            println!(
                "  {} {}: conv {c:.1} GFLOP/s = {:.0}% of the matmul ceiling",
                r["config"].as_str().unwrap_or(""),
                r["backend"].as_str().unwrap_or(""),
                100.0 * c / g
            );
        }
    }
}
