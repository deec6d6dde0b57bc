//! `atheria run`: start-up in timed, watched stages, then the step loop with
//! progress, pictures, checkpoints and a summary.

use crate::cli::out;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use atheria::instruments::parse::parse_tool;
use atheria::instruments::EPOCH_NAMES;
use atheria::render::{contact_sheet, draw_viz, stack};
use atheria::watchdog::Watchdog;
use atheria::{
    BackendKind, CellBox, Device, EngineKind, Experiment, InitialState, Metrics, ScheduledTool,
    Simulation, SimulationBuilder, StageObserver, Vacuum, Viz,
};
use clap::Args;
use tracing::info;

use super::progress::Progress;

/// The flags that build the simulation: shared by `atheria run` and
/// `atheria serve`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Model package directory (model.json + weights); the embedded default law when absent.
    #[arg(long, value_name = "DIR", conflicts_with = "experiment")]
    pub model: Option<PathBuf>,
    /// An Atheria experiment folder (output/experiments/<name>, with config.json): its law from
    /// the checkpoint Atheria would load, and its gamma, grid and initial state unless given.
    /// candle reads the checkpoint itself; tch and onnx convert it with the project's Python
    /// environment.
    #[arg(long, value_name = "DIR")]
    pub experiment: Option<PathBuf>,
    /// Inference backend.
    #[arg(long, default_value = "candle", value_parser = parse_backend)]
    pub backend: BackendKind,
    /// Device: cpu, cuda or cuda:N. With candle, cuda runs the device engine (state kept on the GPU;
    /// needs a `cuda` build, scripts/build-cuda.sh).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Engine: dense, sparse, or device (the dense grid as candle tensors on --device; cpu or cuda).
    #[arg(long, default_value = "dense", value_parser = parse_engine)]
    pub engine: EngineKind,
    /// Grid side N (an N x N grid) for generated initial states [default: 128, or the
    /// experiment's GRID_SIZE_INFERENCE].
    #[arg(long, value_name = "N")]
    pub grid: Option<usize>,
    /// Seed of the initial state.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Initial state: complex_noise, random, zeros, or a state file (.safetensors) [default:
    /// random, or the experiment's INITIAL_STATE_MODE_INFERENCE].
    #[arg(long, value_name = "KIND|PATH")]
    pub init: Option<String>,
    /// Decay term gamma (delta -= gamma psi) [default: 0, or the experiment's GAMMA_DECAY].
    #[arg(long)]
    pub gamma: Option<f32>,
    /// Existence threshold: cells whose norm falls below it become vacuum (dense: off unless given).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Sparse engine: what unoccupied cells hold: `zero`, or `harmonic:S` (random phases of strength S).
    #[arg(long, default_value = "zero", value_parser = parse_vacuum)]
    pub vacuum: Vacuum,
    /// Sparse engine: tile side in cells (a power of two).
    #[arg(long, default_value_t = 16)]
    pub tile: usize,
    /// Sparse engine: `on` holds each step's writes until the whole step has succeeded, so a failed step changes nothing; `off` writes rows of tiles as the step goes, for about half the peak memory of a large lattice, and a step that fails part-way leaves the lattice part stepped (nothing is saved from it after that).
    #[arg(long, default_value = "on", value_name = "on|off", action = clap::ArgAction::Set, value_parser = parse_on_off)]
    pub atomic_steps: bool,
    /// Threads for the backend and the engine (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Refuse states larger than this many cells (default: what fits in available memory).
    #[arg(long, value_name = "N")]
    pub max_cells: Option<usize>,
}

/// Arguments of `atheria run`.
#[derive(Debug, Args)]
// `--gamma -1` must reach our range check, not read as an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    #[command(flatten)]
    pub sim: SimArgs,
    /// Steps to run.
    #[arg(long, default_value_t = 200)]
    pub steps: u64,
    /// Write the final state to this file.
    #[arg(long, value_name = "PATH")]
    pub save: Option<PathBuf>,
    /// Write pictures of the --viz visualizations to this directory.
    #[arg(long, value_name = "DIR")]
    pub png: Option<PathBuf>,
    /// Visualizations to draw (comma-separated): density, phase, phase:N, real, imag, energy,
    /// gradient, spectral, physics, fields, flow, phase_hsv, holographic, holographic_bulk,
    /// delta, or all (docs/instruments.md).
    #[arg(long, default_value = "phase:0,delta", value_name = "LIST", value_parser = parse_viz)]
    pub viz: VizList,
    /// With --png, also write every chosen visualization on one contact sheet, sheet_NNNNNN.png.
    #[arg(long)]
    pub sheet: bool,
    /// Apply a tool: `name:key=value,...[@step=N]`, e.g. `vortex:x=40,y=40,radius=6@step=50`
    /// (repeatable; before the first step unless @step says otherwise; docs/instruments.md).
    #[arg(long = "tool", value_name = "TOOL")]
    pub tools: Vec<String>,
    /// Write the readouts (norm, energy, fidelity, entropy, epoch, ...) as JSON lines to PATH:
    /// one at the start and one every K steps (--every).
    #[arg(long, value_name = "PATH")]
    pub metrics: Option<PathBuf>,
    /// Save pictures and readouts every K steps (and after the last step).
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub every: u64,
    /// Abort with an error naming the stage when any start-up stage or step takes longer than this.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Write the state atomically to PATH every K steps, so a killed run loses at most K steps.
    #[arg(long, num_args = 2, value_names = ["K", "PATH"])]
    pub checkpoint_every: Option<Vec<String>>,
    /// Run the sparse lattice across the ranks of `mpirun -n N atheria run --distributed ...`
    /// (built with the `mpi` feature; local laws only). Rank 0 reads the state, saves and prints.
    #[arg(long)]
    pub distributed: bool,
}

pub fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse().map_err(|e: atheria::Error| e.to_string())
}

/// A switch as [`parse_on_off`] reads it back: `on` or `off`.
pub(crate) fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// `on` or `off`, as a switch the user reads in words.
pub(crate) fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected `on` or `off`".into()),
    }
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

/// The visualizations `--viz` chose, in order.
#[derive(Debug, Clone)]
pub struct VizList(pub Vec<Viz>);

fn parse_viz(s: &str) -> Result<VizList, String> {
    Viz::parse_list(s).map(VizList).map_err(|e| e.to_string())
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    s.parse().map_err(|e: atheria::Error| e.to_string())
}

fn parse_device(s: &str) -> Result<Device, String> {
    s.parse().map_err(|e: atheria::Error| e.to_string())
}

/// Times named start-up stages, logs each, and arms the watchdog for each:
/// the CLI's [`StageObserver`] of the library's start-up.
pub struct Stages<'a> {
    watchdog: Option<&'a Watchdog>,
    /// The stage under way, if any: a start-up error names it.
    current: Option<String>,
    /// Each stage and its duration, in order.
    pub done: Vec<(String, Duration)>,
}

impl<'a> Stages<'a> {
    /// Stages watched by `watchdog`, if any.
    pub fn new(watchdog: Option<&'a Watchdog>) -> Self {
        Self {
            watchdog,
            current: None,
            done: Vec::new(),
        }
    }

    /// Runs one stage, logging its start and its duration.
    pub fn run<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.enter(name);
        let t = Instant::now();
        let out = f().with_context(|| format!("stage {name}"))?;
        self.done(name, t.elapsed());
        Ok(out)
    }

    /// Adds the stage under way, if any, to a start-up error.
    pub fn name_failed(&self, e: atheria::Error) -> anyhow::Error {
        match &self.current {
            Some(stage) => anyhow::Error::new(e).context(format!("stage {stage}")),
            None => e.into(),
        }
    }
}

impl StageObserver for Stages<'_> {
    fn enter(&mut self, stage: &str) {
        info!("stage {stage} ...");
        if let Some(w) = self.watchdog {
            w.enter(stage);
        }
        self.current = Some(stage.to_string());
    }

    fn done(&mut self, stage: &str, took: Duration) {
        if let Some(w) = self.watchdog {
            w.idle();
        }
        info!("stage {stage} done in {}", ms(took));
        self.done.push((stage.to_string(), took));
        self.current = None;
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
    Ok(Some(Watchdog::start(
        super::timeout_duration("--timeout", secs)?,
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

impl SimArgs {
    /// Checks what needs no stage, so a typo costs nothing and allocates
    /// nothing (the library checks the rest as the simulation is built).
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(n) = self.threads {
            atheria::check_threads(n).context("--threads")?;
        }
        if self.grid == Some(0) {
            bail!("--grid must be at least 1");
        }
        Ok(())
    }

    /// The initial state as given, or the default (`random`, or the
    /// experiment's mode), for logs.
    fn init_text(&self, experiment: Option<&Experiment>) -> String {
        self.init.clone().unwrap_or_else(|| {
            experiment.map_or("random".into(), |e| e.config.initial_mode.clone())
        })
    }

    /// The simulation these flags describe, built in timed, watched stages,
    /// with the model and the state it starts from logged.
    pub fn build(&self, stages: &mut Stages) -> anyhow::Result<Simulation> {
        if let Some(n) = self.threads {
            // Engine loops get their own n threads; a second build fails harmlessly in tests.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
        let experiment = self.open_experiment()?;
        let sim = self
            .builder(experiment.as_ref())?
            .build_observed(stages)
            .map_err(|e| stages.name_failed(e))?;
        let spec = sim.spec();
        info!(
            "model `{}`: {} d_state {} update {} on {}",
            spec.name,
            spec.architecture,
            spec.d_state,
            spec.update,
            sim.backend().describe()
        );
        match sim.sparse() {
            Some(e) => info!(
                "sparse lattice: {} occupied cells in {} tiles, from {}",
                e.occupied_count(),
                e.tile_count(),
                self.init_text(experiment.as_ref())
            ),
            None => {
                let b = sim.extent().unwrap_or_else(|| CellBox::new(0, 0, 0, 0));
                info!(
                    "state {} x {} x {} from {}",
                    b.height(),
                    b.width(),
                    spec.d_state,
                    self.init_text(experiment.as_ref())
                )
            }
        }
        Ok(sim)
    }

    /// The experiment `--experiment` names, opened (config read, checkpoint
    /// picked), and logged.
    fn open_experiment(&self) -> anyhow::Result<Option<Experiment>> {
        let Some(dir) = &self.experiment else {
            return Ok(None);
        };
        let e = Experiment::open(dir)?;
        let c = &e.config;
        info!(
            "experiment `{}`: {} d_state {} hidden {} gamma {} from {}",
            e.name,
            c.atheria_architecture,
            c.d_state,
            c.hidden_channels,
            c.gamma,
            e.checkpoint.display()
        );
        Ok(Some(e))
    }

    /// The simulation these flags describe on the sparse engine, not yet
    /// built, for `--distributed` (the experiment logged by every rank
    /// would repeat: it is opened quietly).
    #[cfg(feature = "mpi")]
    pub(crate) fn distributed_builder(&self) -> anyhow::Result<SimulationBuilder> {
        if let Some(n) = self.threads {
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
        let experiment = self
            .experiment
            .as_deref()
            .map(Experiment::open)
            .transpose()?;
        Ok(self
            .builder(experiment.as_ref())?
            .engine(EngineKind::Sparse))
    }

    /// The simulation these flags describe, not yet built.
    fn builder(&self, experiment: Option<&Experiment>) -> anyhow::Result<SimulationBuilder> {
        let mut b = Simulation::builder();
        // The experiment first: its gamma, grid and initial state are
        // defaults the flags below override.
        b = match (experiment, &self.model) {
            (Some(e), _) if self.backend == BackendKind::Candle => b.experiment(e),
            (Some(e), _) => b.experiment(e).model_dir(convert_for(e, self.backend)?),
            (None, Some(dir)) => b.model_dir(dir),
            // Without --model, the embedded default law: on another backend the
            // library refuses it at model load, after backend init has said whether
            // that backend works here at all.
            (None, None) => b.default_law(),
        };
        b = b
            .backend_kind(self.backend)
            .device(self.device)
            .engine(self.engine)
            .tile(self.tile)
            .atomic_steps(self.atomic_steps)
            .vacuum(self.vacuum)
            .threshold(self.threshold);
        if let Some(g) = self.gamma.or(experiment.map(|e| e.config.gamma)) {
            b = b.gamma(g);
        }
        if let Some(n) = self.threads {
            b = b.threads(n);
        }
        if let Some(n) = self.max_cells {
            b = b.max_cells(n);
        }
        let grid = self
            .grid
            .or(experiment.map(|e| e.config.grid_size))
            .unwrap_or(128);
        let init = self.init_text(experiment);
        let initial = InitialState::from_arg(&init, self.seed, grid).context("--init")?;
        Ok(b.initial(initial))
    }
}

/// The experiment's checkpoint converted for the tch or onnx backend by
/// the project's exporter in its Python environment
/// (`atheria::experiment::project_python`), cached.
fn convert_for(e: &Experiment, backend: BackendKind) -> anyhow::Result<PathBuf> {
    let python = atheria::experiment::project_python();
    info!(
        "converting the checkpoint for {backend} with {}",
        python.display()
    );
    Ok(e.convert(&python)?)
}

pub(crate) fn checkpoint_args(v: &Option<Vec<String>>) -> anyhow::Result<Option<(u64, PathBuf)>> {
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
    if args.distributed {
        return distributed(args);
    }
    if args.every == 0 {
        bail!("--every must be at least 1");
    }
    args.sim.check()?;
    let checkpoint = checkpoint_args(&args.checkpoint_every)?;
    // Every output path is checked before the first step, so a typo costs
    // nothing instead of the whole run (sparse_grid::output has the rules).
    for (flag, path) in [
        ("--save", args.save.as_ref()),
        ("--checkpoint-every", checkpoint.as_ref().map(|(_, p)| p)),
    ] {
        if let Some(path) = path {
            sparse_grid::output::check_writable(path).with_context(|| flag.to_string())?;
        }
    }
    let max_cells = args.sim.max_cells.unwrap_or(sparse_grid::DEFAULT_MAX_CELLS);
    let tools: Vec<ScheduledTool> = args
        .tools
        .iter()
        .map(|t| parse_tool(t, max_cells))
        .collect::<atheria::Result<_>>()?;
    let mut metrics_out = args
        .metrics
        .as_ref()
        .map(|path| MetricsFile::create(path))
        .transpose()?;
    if let Some(dir) = &args.png {
        create_png_dir(dir)?;
    }
    let watchdog = start_watchdog(args.timeout)?;
    let mut stages = Stages::new(watchdog.as_ref());
    let started = Instant::now();

    let mut engine = args.sim.build(&mut stages)?;
    let spec = engine.spec().clone();
    // A channel the model does not have is a mistake to report now, not
    // after the run.
    if let Some(c) = args.png.as_ref().and_then(|_| {
        args.viz.0.iter().find_map(|v| match v {
            Viz::PhaseChannel(c) if *c >= spec.d_state => Some(*c),
            _ => None,
        })
    }) {
        bail!(
            "--viz phase:{c}: model `{}` has channels 0..{}",
            spec.name,
            spec.d_state
        );
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // Ctrl-C finishes the current step, then stops (and saves with --save).
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let first_step = engine.step_count();
    let last_step = first_step + args.steps;
    for t in &tools {
        if let Some(n) = t.step.filter(|&n| n <= first_step || n > last_step) {
            tracing::warn!(
                "tool {} @step={n} is outside this run (steps {} to {last_step}): not applied",
                t.tool.name(),
                first_step + 1
            );
        }
    }
    if let Some(out) = &mut metrics_out {
        out.write(&engine.metrics()?)?;
    }
    let mut progress = Progress::new("steps", args.steps, false);
    let loop_start = Instant::now();
    let mut steps_done = 0u64;
    let mut forward_time = Duration::ZERO;
    while steps_done < args.steps {
        let next = first_step + steps_done + 1;
        for t in tools
            .iter()
            .filter(|t| t.step.unwrap_or(first_step + 1) == next)
        {
            engine
                .apply(&t.tool)
                .with_context(|| format!("before step {next}"))?;
            info!("applied {} before step {next}", t.tool.name());
        }
        let stage = if steps_done == 0 {
            "first step".to_string()
        } else {
            format!("step {next}")
        };
        let stepped = if steps_done == 0 {
            stages.run(&stage, || Ok(engine.step()?))
        } else {
            if let Some(w) = &watchdog {
                w.enter(&stage);
            }
            let s = engine.step();
            if let Some(w) = &watchdog {
                w.idle();
            }
            s.map_err(anyhow::Error::from)
        };
        let stats = match stepped {
            Ok(stats) => stats,
            Err(e) => {
                // A failed step left the state as it was before it: keep
                // the run so far where --save asked for it.
                if let Some(path) = &args.save {
                    match engine.save(path) {
                        Ok(()) => tracing::warn!(
                            "saved the state after step {} (before the failed step) to {}",
                            engine.step_count(),
                            path.display()
                        ),
                        Err(s) => tracing::warn!("could not save after the failed step: {s}"),
                    }
                }
                return Err(e);
            }
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
        if steps_done.is_multiple_of(args.every) || last {
            if let Some(dir) = &args.png {
                write_pictures(dir, &engine, &args.viz.0, args.sheet)?;
            }
            if let Some(out) = &mut metrics_out {
                out.write(&engine.metrics()?)?;
            }
        }
        if let Some((k, path)) = &checkpoint {
            if steps_done.is_multiple_of(*k) {
                // A checkpoint that cannot be written (a full disk, a
                // vanished directory) must not stop a run on its way to a
                // healthy --save: warn, keep the previous checkpoint, go on.
                if let Err(e) = engine.save(path) {
                    tracing::warn!(
                        "checkpoint after step {} not written ({e}); the run goes on",
                        engine.step_count()
                    );
                }
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
        engine.save(path)?;
        let saved = engine.extent().unwrap_or_else(|| CellBox::new(0, 0, 0, 0));
        info!(
            "saved {} x {} state to {}",
            saved.height(),
            saved.width(),
            path.display()
        );
    }
    let rate = steps_done as f64 / loop_time.as_secs_f64().max(1e-9);
    let stage_list: Vec<String> = stages
        .done
        .iter()
        .map(|(n, d)| format!("{n} {}", ms(*d)))
        .collect();
    out!(
        "{steps_done} steps in {:.2} s: {rate:.1} steps/s ({:.0}% in forward); start-up: {}; total {:.2} s",
        loop_time.as_secs_f64(),
        100.0 * forward_time.as_secs_f64() / loop_time.as_secs_f64().max(1e-9),
        stage_list.join(", "),
        started.elapsed().as_secs_f64()
    );
    let m = engine.metrics()?;
    out!(
        "readouts at step {}: norm {:.4}, mean density {:.4}, matter {} cells, energy {:.4e}, fidelity {:.4}, entropy {:.3}, epoch {} ({})",
        m.step,
        m.norm,
        m.mean_density,
        m.matter_cells,
        m.energy,
        m.fidelity,
        m.entropy,
        m.epoch,
        EPOCH_NAMES[m.epoch as usize]
    );
    Ok(if interrupted.load(Ordering::SeqCst) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--distributed`, when this program has MPI.
#[cfg(feature = "mpi")]
fn distributed(args: RunArgs) -> anyhow::Result<ExitCode> {
    super::distributed::run(args)
}

/// `--distributed`, when this program has no MPI: one line saying how to get it.
#[cfg(not(feature = "mpi"))]
fn distributed(_: RunArgs) -> anyhow::Result<ExitCode> {
    Err(super::no_mpi())
}

/// Writes one picture per chosen visualization over the simulation's extent
/// (the dense grid, or the sparse lattice's matter):
/// `<name>_<step>.png`, with `phase:N` named `phase_cN`.
fn write_pictures(dir: &Path, sim: &Simulation, vizs: &[Viz], sheet: bool) -> anyhow::Result<()> {
    let step = sim.step_count();
    let Some(area) = sim.extent() else {
        tracing::warn!("step {step}: no matter left, no picture");
        return Ok(());
    };
    let frame = sim.frame(area)?;
    draw_pictures(dir, step, &frame.as_ref(), vizs, sheet)
}

/// Writes one picture per chosen visualization of `frame` (and the contact
/// sheet with `sheet`) as the pictures of step `step`: what
/// [`write_pictures`] draws, for a frame from anywhere (`--distributed`
/// gathers one on rank 0).
pub(crate) fn draw_pictures(
    dir: &Path,
    step: u64,
    frame: &atheria::instruments::FrameRef<'_>,
    vizs: &[Viz],
    sheet: bool,
) -> anyhow::Result<()> {
    let mut tiles = Vec::new();
    for &viz in vizs {
        let map = atheria::instruments::viz::field(viz, frame, true)?;
        let flow = (viz == Viz::Flow).then(|| atheria::instruments::viz::flow_vectors(frame, true));
        let name = match viz {
            Viz::PhaseChannel(c) => format!("phase_c{c}"),
            other => other.name(),
        };
        let image = draw_viz(
            viz,
            &map,
            flow.as_ref().map(|(x, y)| (x.as_slice(), y.as_slice())),
        )?;
        image.write_png(&dir.join(format!("{name}_{step:06}.png")))?;
        if sheet {
            tiles.push(image);
        }
    }
    if sheet {
        // The montage of holographic_bulk takes a row of its own.
        let (wide, square): (Vec<_>, Vec<_>) =
            tiles.into_iter().partition(|t| t.width > 2 * t.height);
        let mut parts = vec![contact_sheet(&square, 5)];
        parts.extend(
            wide.iter()
                .map(|t| contact_sheet(std::slice::from_ref(t), 1)),
        );
        let all = stack(&parts);
        all.write_png(&dir.join(format!("sheet_{step:06}.png")))?;
    }
    Ok(())
}

/// Makes the `--png` directory and checks that it takes files, before the
/// run, so a typo fails in milliseconds rather than at the first picture.
pub(crate) fn create_png_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create --png directory {}", dir.display()))?;
    sparse_grid::output::check_writable(&dir.join(".atheria-write-check"))
        .with_context(|| format!("--png directory {} is not writable", dir.display()))?;
    Ok(())
}

/// The `--metrics` file: one JSON object per line, flushed as written so
/// that a killed run keeps every line it wrote.
pub(crate) struct MetricsFile {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl MetricsFile {
    pub(crate) fn create(path: &Path) -> anyhow::Result<Self> {
        // Its directory is made as --png's is.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the directory of --metrics file {}",
                    path.display()
                )
            })?;
        }
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create --metrics file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
        })
    }

    pub(crate) fn write(&mut self, m: &Metrics) -> anyhow::Result<()> {
        use std::io::Write;
        serde_json::to_writer(&mut self.out, m)?;
        self.out
            .write_all(b"\n")
            .and_then(|()| self.out.flush())
            .with_context(|| format!("cannot write --metrics file {}", self.path.display()))
    }
}
