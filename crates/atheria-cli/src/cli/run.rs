//! `atheria run`: start-up in timed, watched stages, then the step loop with
//! progress, pictures, checkpoints and a summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use atheria::render::{delta_magnitude, write_png, Palette};
use atheria::sparse::{CellBox, Field};
use atheria::watchdog::Watchdog;
use atheria::{
    default_law, state_file, BackendKind, BackendOptions, ComputeBackend, DenseEngine, DenseState,
    Device, InitKind, ModelPackage, SparseEngine, SparseOptions, StepOptions, StepStats, Vacuum,
};
use clap::{Args, ValueEnum};
use tracing::info;

use super::progress::Progress;

/// Which engine steps the lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// One forward over the whole H x W grid per step (equal to the PyTorch engine).
    Dense,
    /// Tiles on an unbounded lattice; cost follows the matter.
    Sparse,
}

/// Arguments of `atheria run`.
#[derive(Debug, Args)]
// `--gamma -1` must reach our range check, not read as an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    /// Model package directory (model.json + weights); the embedded default law when absent.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Inference backend.
    #[arg(long, default_value = "candle", value_parser = parse_backend)]
    pub backend: BackendKind,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Dense)]
    pub engine: EngineKind,
    /// Grid side N (an N x N grid) for generated initial states.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub grid: usize,
    /// Steps to run.
    #[arg(long, default_value_t = 200)]
    pub steps: u64,
    /// Seed of the initial state.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Initial state: complex_noise, random, zeros, or a state file (.safetensors).
    #[arg(long, default_value = "random", value_name = "KIND|PATH")]
    pub init: String,
    /// Decay term gamma (delta -= gamma psi).
    #[arg(long, default_value_t = 0.0)]
    pub gamma: f32,
    /// Existence threshold: cells whose norm falls below it become vacuum (dense: off unless given).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Sparse engine: what unoccupied cells hold: `zero`, or `harmonic:S` (random phases of strength S).
    #[arg(long, default_value = "zero", value_parser = parse_vacuum)]
    pub vacuum: Vacuum,
    /// Sparse engine: tile side in cells (a power of two).
    #[arg(long, default_value_t = 16)]
    pub tile: usize,
    /// Threads for the backend and the engine (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write the final state to this file.
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,
    /// Write pictures (phase of channel 0, magnitude of the last delta) to this directory.
    #[arg(long, value_name = "DIR")]
    pub png: Option<PathBuf>,
    /// Save pictures every K steps (and after the last step).
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub every: u64,
    /// Abort with an error naming the stage when any start-up stage or step takes longer than this.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Write the state atomically to PATH every K steps, so a killed run loses at most K steps.
    #[arg(long, num_args = 2, value_names = ["K", "PATH"])]
    pub checkpoint_every: Option<Vec<String>>,
    /// Refuse states larger than this many cells (default: what fits in available memory).
    #[arg(long, value_name = "N")]
    pub max_cells: Option<usize>,
}

pub fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse().map_err(|e: atheria::Error| e.to_string())
}

fn parse_vacuum(s: &str) -> Result<Vacuum, String> {
    match s.split_once(':') {
        None if s == "zero" => Ok(Vacuum::Zero),
        Some(("harmonic", v)) => v
            .parse()
            .ok()
            .filter(|x: &f32| x.is_finite() && *x >= 0.0)
            .map(|strength| Vacuum::Harmonic { strength })
            .ok_or_else(|| format!("harmonic strength `{v}` must be a number >= 0")),
        _ => Err(format!("unknown vacuum `{s}`: use `zero` or `harmonic:S`")),
    }
}

fn parse_device(s: &str) -> Result<Device, String> {
    s.parse().map_err(|e: atheria::Error| e.to_string())
}

/// Times named start-up stages, logs each, and arms the watchdog for each.
pub struct Stages<'a> {
    watchdog: Option<&'a Watchdog>,
    /// Each stage and its duration, in order.
    pub done: Vec<(String, Duration)>,
}

impl<'a> Stages<'a> {
    /// Stages watched by `watchdog`, if any.
    pub fn new(watchdog: Option<&'a Watchdog>) -> Self {
        Self {
            watchdog,
            done: Vec::new(),
        }
    }

    /// Runs one stage, logging its start and its duration.
    pub fn run<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        info!("stage {name} ...");
        if let Some(w) = self.watchdog {
            w.enter(name);
        }
        let t = Instant::now();
        let out = f().with_context(|| format!("stage {name}"));
        if let Some(w) = self.watchdog {
            w.idle();
        }
        let took = t.elapsed();
        if out.is_ok() {
            info!("stage {name} done in {}", ms(took));
            self.done.push((name.to_string(), took));
        }
        out
    }
}

/// A duration in milliseconds, for logs.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Starts the watchdog for `--timeout`: on expiry it prints one error line
/// naming the stage and exits, since a hung native call cannot be cancelled.
pub fn start_watchdog(timeout: Option<f64>) -> anyhow::Result<Option<Watchdog>> {
    let Some(secs) = timeout else { return Ok(None) };
    if !(secs.is_finite() && secs > 0.0) {
        bail!("--timeout {secs} must be a positive number of seconds");
    }
    Ok(Some(Watchdog::start(
        Duration::from_secs_f64(secs),
        |stage, limit| {
            eprintln!(
                "error: stage `{stage}` did not finish within {:.1} s (--timeout); \
             run `atheria doctor` to check the backend, or raise --timeout",
                limit.as_secs_f64()
            );
            std::process::exit(3);
        },
    )))
}

/// Loads the model: a package on the chosen backend, or the embedded default.
pub fn load_model(
    model: Option<&Path>,
    backend: BackendKind,
    options: &BackendOptions,
) -> anyhow::Result<Arc<dyn ComputeBackend>> {
    match model {
        Some(dir) => {
            let package = ModelPackage::load(dir)?;
            Ok(backend.load(&package, options)?)
        }
        None if backend == BackendKind::Candle => Ok(default_law::load(options)?),
        None => bail!(
            "the embedded default law runs on candle; pass --model DIR to use --backend {backend}"
        ),
    }
}

/// Cells the default `--max-cells` allows: what fits in about half the
/// available memory, at the engine's bytes per cell (state, delta, scratch).
pub fn default_max_cells(d_state: usize) -> usize {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(8 << 30);
    let per_cell = (2 * d_state * 4 * 3 + 8) as u64;
    ((available / 2) / per_cell).max(1) as usize
}

/// Builds the initial state from `--init`. With `blob`, a generated state is a
/// disc of matter (diameter grid / 2) centred on the lattice origin, the rest
/// vacuum: the sparse engine's seeded start.
pub fn initial_state(
    init: &str,
    grid: usize,
    d_state: usize,
    seed: u64,
    max_cells: usize,
    blob: bool,
) -> anyhow::Result<DenseState> {
    let path = Path::new(init);
    if init.ends_with(".safetensors") || path.is_file() {
        let state = state_file::read_state(path, max_cells)?;
        if state.d_state() != d_state {
            bail!(
                "state file {init} has d_state {} but the model has d_state {d_state}; use a state made for this model",
                state.d_state()
            );
        }
        return Ok(state);
    }
    let kind: InitKind = init.parse()?;
    let mut state = DenseState::zeros_limited(grid, grid, d_state, max_cells)?;
    if blob {
        let half = i32::try_from(grid / 2).context("--grid is too large for the lattice")?;
        state.origin = (-half, -half);
    }
    atheria::init::fill(&mut state, kind, seed);
    if blob {
        let r = grid as f64 / 4.0;
        let c = (grid as f64 - 1.0) / 2.0;
        for (i, o) in state.occupied_mut().iter_mut().enumerate() {
            let (y, x) = ((i / grid) as f64, (i % grid) as f64);
            if (x - c).hypot(y - c) > r {
                *o = 0;
            }
        }
        state.zero_vacuum();
    }
    Ok(state)
}

fn checkpoint_args(v: &Option<Vec<String>>) -> anyhow::Result<Option<(u64, PathBuf)>> {
    let Some(v) = v else { return Ok(None) };
    let k: u64 = v[0].parse().ok().filter(|&k| k > 0).with_context(|| {
        format!(
            "--checkpoint-every {} {}: K must be a whole number of steps >= 1",
            v[0], v[1]
        )
    })?;
    Ok(Some((k, PathBuf::from(&v[1]))))
}

/// `atheria run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.every == 0 {
        bail!("--every must be at least 1");
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    // Checked before any stage, so a typo costs nothing and allocates nothing.
    if args.grid == 0 {
        bail!("--grid must be at least 1");
    }
    if !(args.gamma.is_finite() && args.gamma >= 0.0) {
        bail!("--gamma {} must be a finite number >= 0", args.gamma);
    }
    if let Some(t) = args.threshold {
        if !(t.is_finite() && t >= 0.0) {
            bail!("--threshold {t} must be a finite number >= 0");
        }
    }
    let checkpoint = checkpoint_args(&args.checkpoint_every)?;
    if let Some(dir) = &args.png {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --png directory {}", dir.display()))?;
    }
    let watchdog = start_watchdog(args.timeout)?;
    let mut stages = Stages::new(watchdog.as_ref());
    let mut options = BackendOptions::default().with_device(args.device);
    options.threads = args.threads;
    let started = Instant::now();

    stages.run("backend init", || {
        if let Some(n) = args.threads {
            // Engine loops get their own n threads; a second build fails harmlessly in tests.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
        let version = args.backend.check()?;
        info!("backend {}: {version}", args.backend);
        Ok(())
    })?;
    let backend = stages.run("model load", || {
        load_model(args.model.as_deref(), args.backend, &options)
    })?;
    let spec = backend.spec().clone();
    info!(
        "model `{}`: {} d_state {} update {} on {}",
        spec.name,
        spec.architecture,
        spec.d_state,
        spec.update,
        backend.describe()
    );
    let max_cells = args
        .max_cells
        .unwrap_or_else(|| default_max_cells(spec.d_state));
    let state = stages.run("state init", || {
        let blob = args.engine == EngineKind::Sparse;
        initial_state(
            &args.init,
            args.grid,
            spec.d_state,
            args.seed,
            max_cells,
            blob,
        )
    })?;
    info!(
        "state {} x {} x {} from {}",
        state.height(),
        state.width(),
        state.d_state(),
        args.init
    );
    let mut engine = Sim::new(&args, backend, state, max_cells)?;

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // Ctrl-C finishes the current step, then stops (and saves with --save).
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let first_step = engine.step_count();
    let mut progress = Progress::new("steps", args.steps, false);
    let loop_start = Instant::now();
    let mut steps_done = 0u64;
    let mut forward_time = Duration::ZERO;
    while steps_done < args.steps {
        let stage = if steps_done == 0 {
            "first step".to_string()
        } else {
            format!("step {}", first_step + steps_done + 1)
        };
        let stats = if steps_done == 0 {
            stages.run(&stage, || Ok(engine.step()?))?
        } else {
            if let Some(w) = &watchdog {
                w.enter(&stage);
            }
            let s = engine.step()?;
            if let Some(w) = &watchdog {
                w.idle();
            }
            s
        };
        forward_time += stats.forward;
        if stats.active_tiles > 0 {
            let window = stats
                .window
                .map_or_else(String::new, |(h, w)| format!(", window {h} x {w}"));
            tracing::debug!(
                "step {}: {} cells, {} tiles{window}, gather {}, forward {}, scatter {}",
                stats.step,
                stats.occupied_cells,
                stats.active_tiles,
                ms(stats.gather),
                ms(stats.forward),
                ms(stats.scatter)
            );
        }
        steps_done += 1;
        progress.set(steps_done);
        let last = steps_done == args.steps || interrupted.load(Ordering::SeqCst);
        if let Some(dir) = &args.png {
            if steps_done.is_multiple_of(args.every) || last {
                write_pictures(dir, &engine)?;
            }
        }
        if let Some((k, path)) = &checkpoint {
            if steps_done.is_multiple_of(*k) {
                state_file::write_state(&engine.snapshot()?, path)?;
            }
        }
        if interrupted.load(Ordering::SeqCst) {
            progress.finish();
            tracing::warn!("interrupted: stopped after step {}", engine.step_count());
            break;
        }
    }
    progress.finish();
    let loop_time = loop_start.elapsed();
    if let Some(path) = &args.save {
        let state = engine.snapshot()?;
        state_file::write_state(&state, path)?;
        info!(
            "saved {} x {} state to {}",
            state.height(),
            state.width(),
            path.display()
        );
    }
    let rate = steps_done as f64 / loop_time.as_secs_f64().max(1e-9);
    let stage_list: Vec<String> = stages
        .done
        .iter()
        .map(|(n, d)| format!("{n} {}", ms(*d)))
        .collect();
    println!(
        "{steps_done} steps in {:.2} s: {rate:.1} steps/s ({:.0}% in forward); start-up: {}; total {:.2} s",
        loop_time.as_secs_f64(),
        100.0 * forward_time.as_secs_f64() / loop_time.as_secs_f64().max(1e-9),
        stage_list.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(if interrupted.load(Ordering::SeqCst) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes the phase of channel 0 and the magnitude of the last delta.
fn write_pictures(dir: &Path, engine: &Sim) -> anyhow::Result<()> {
    let step = engine.step_count();
    let Some((w, h, phase, delta)) = engine.pictures()? else {
        tracing::warn!("step {step}: no matter left, no picture");
        return Ok(());
    };
    write_png(
        &dir.join(format!("phase_c0_{step:06}.png")),
        w,
        h,
        &phase,
        Palette::Phase,
    )?;
    write_png(
        &dir.join(format!("delta_{step:06}.png")),
        w,
        h,
        &delta,
        Palette::Magnitude,
    )?;
    Ok(())
}

/// The engine a run steps: the CLI's one view over both.
enum Sim {
    Dense(DenseEngine),
    Sparse(Box<SparseEngine>),
}

impl Sim {
    /// The engine `--engine` asks for, holding `state` (the sparse engine
    /// places its occupied cells at its origin).
    fn new(
        args: &RunArgs,
        backend: Arc<dyn ComputeBackend>,
        state: DenseState,
        max_cells: usize,
    ) -> anyhow::Result<Self> {
        match args.engine {
            EngineKind::Dense => {
                let options = StepOptions {
                    gamma: args.gamma,
                    threshold: args.threshold,
                };
                Ok(Sim::Dense(DenseEngine::new(backend, state, options)?))
            }
            EngineKind::Sparse => {
                let options = SparseOptions {
                    tile: args.tile,
                    threshold: args.threshold.unwrap_or(atheria::sparse::DEFAULT_THRESHOLD),
                    vacuum: args.vacuum,
                    gamma: args.gamma,
                    max_cells,
                    seed: args.seed,
                    ..SparseOptions::default()
                };
                let mut engine = SparseEngine::new(backend, options)?;
                engine.import(&state)?;
                info!(
                    "sparse lattice: {} occupied cells in {} tiles",
                    engine.occupied_count(),
                    engine.tile_count()
                );
                Ok(Sim::Sparse(Box::new(engine)))
            }
        }
    }

    fn step(&mut self) -> atheria::Result<StepStats> {
        match self {
            Sim::Dense(e) => e.step(),
            Sim::Sparse(e) => e.step(),
        }
    }

    fn step_count(&self) -> u64 {
        match self {
            Sim::Dense(e) => e.state().step,
            Sim::Sparse(e) => e.step_count(),
        }
    }

    /// The state to save: the dense grid, or the sparse lattice's bounding box.
    fn snapshot(&self) -> anyhow::Result<DenseState> {
        match self {
            Sim::Dense(e) => Ok(e.state().clone()),
            Sim::Sparse(e) => {
                let area = e.bounding_box().unwrap_or_else(|| CellBox::new(0, 0, 0, 0));
                Ok(e.export(area)?)
            }
        }
    }

    /// Width, height, phase of channel 0 and |delta| over the grid (dense) or
    /// the bounding box (sparse); `None` when no matter is left.
    #[allow(clippy::type_complexity)]
    fn pictures(&self) -> anyhow::Result<Option<(usize, usize, Vec<f32>, Vec<f32>)>> {
        match self {
            Sim::Dense(e) => {
                let s = e.state();
                Ok(Some((
                    s.width(),
                    s.height(),
                    s.phase(0),
                    delta_magnitude(e.last_delta(), s.cells()),
                )))
            }
            Sim::Sparse(e) => {
                let Some(area) = e.bounding_box() else {
                    return Ok(None);
                };
                let phase = e.field(area, Field::Phase(0))?;
                let delta = e.field(area, Field::DeltaMagnitude)?;
                Ok(Some((area.width(), area.height(), phase, delta)))
            }
        }
    }
}
