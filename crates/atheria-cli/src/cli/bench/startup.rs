//! Start-up: the four stages of a run (backend init, model load, state
//! init, first step), timed in this process for every configuration, and
//! once per backend in a fresh process, where the clock also covers what
//! happens before `main` (exec and the libraries the binary links; tch's
//! library and libtorch load later, in backend init): the start-up a user
//! waits for.

use crate::cli::out;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use atheria::{
    BackendKind, BackendOptions, DenseState, EngineKind, InitKind, ModelPackage, Simulation,
    StepStats,
};
use serde_json::{json, Map, Value};

use super::config::{Config, Engine};
use super::{matter, models};
use crate::cli::run::Stages;

/// The configuration a fresh-process start-up is measured on.
pub const PROBE_CONFIG: &str = "dense-128";

/// Each start-up stage and its duration, in order.
pub type StageTimes = Vec<(String, Duration)>;

/// Runs the four start-up stages of `cfg` on `kind` (a sparse
/// configuration with tiles of `tile`); returns the engine after its first
/// step, the first step's statistics and the stages.
pub fn start(
    kind: BackendKind,
    cfg: &Config,
    package: Option<&ModelPackage>,
    options: &BackendOptions,
    tile: usize,
) -> anyhow::Result<(Simulation, StepStats, StageTimes)> {
    let mut stages = Stages::new(None);
    stages.run("backend init", || Ok(kind.check()?))?;
    let backend = stages.run("model load", || models::load(kind, cfg, package, options))?;
    let mut engine = stages.run("state init", || {
        let sim = Simulation::builder().backend(Arc::clone(&backend));
        Ok(match cfg.engine {
            Engine::Dense => sim.init(InitKind::ComplexNoise, 0, cfg.grid).build()?,
            Engine::Sparse(m) => {
                let empty = DenseState::zeros(1, 1, cfg.d_state)?;
                let mut sim = sim
                    .engine(EngineKind::Sparse)
                    .tile(tile)
                    .initial_state(empty)
                    .build()?;
                let lattice = sim.sparse_mut().expect("a sparse simulation");
                matter::fill_extent(lattice, cfg.grid, m)?;
                sim
            }
        })
    })?;
    let first = stages.run("first step", || Ok(engine.step()?))?;
    Ok((engine, first, stages.done))
}

/// Stage durations as a JSON object of milliseconds.
pub fn stages_json(stages: &[(String, Duration)]) -> Map<String, Value> {
    stages
        .iter()
        .map(|(n, d)| (n.clone(), json!(d.as_secs_f64() * 1e3)))
        .collect()
}

/// The child's side of [`fresh_process`]: one line of JSON on stdout as
/// soon as the first step is done, then exit.
pub fn probe_child(
    kind: BackendKind,
    cfg: &Config,
    package: Option<&ModelPackage>,
    options: &BackendOptions,
) -> anyhow::Result<()> {
    let (_, _, stages) = start(kind, cfg, package, options, atheria::sparse::DEFAULT_TILE)?;
    out!("{}", json!({ "stages_ms": stages_json(&stages) }));
    Ok(())
}

/// Starts this binary afresh to run `cfg`'s start-up on `kind`; returns the
/// wall time from spawning it to the line it prints after the first step,
/// and the child's own stage times.
pub fn fresh_process(kind: BackendKind, threads: usize) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("cannot find this program to start it again")?;
    let mut cmd = Command::new(exe);
    cmd.args(["-q", "bench", "--startup-probe", "--backends", kind.name()])
        .args(["--configs", PROBE_CONFIG, "--threads", &threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd.spawn().context("cannot start the start-up probe")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let wall = t.elapsed();
    let out = child.wait_with_output()?;
    if !out.status.success() || line.trim().is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "the start-up probe failed: {}",
            err.lines().last().unwrap_or("no message").trim()
        );
    }
    let child: Value = serde_json::from_str(line.trim()).context("the probe printed no JSON")?;
    Ok(json!({
        "backend": kind.name(), "config": PROBE_CONFIG,
        "wall_to_first_step_end_ms": wall.as_secs_f64() * 1e3,
        "stages_ms": child["stages_ms"],
    }))
}
