//! `atheria run --distributed` and `atheria bench --distributed`, under
//! `mpirun`: the sparse lattice across MPI ranks (feature `mpi`). Rank 0
//! reads the initial state, writes every file and prints; every rank steps
//! its own tiles.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use atheria::distributed::mpi::topology::SimpleCommunicator;
use atheria::distributed::mpi::traits::{Communicator, CommunicatorCollectives, Root};
use atheria::distributed::DistributedSparse;
use atheria::instruments::metrics::{energy_of, metrics};
use atheria::instruments::{Frame, FrameRef, Viz};
use atheria::{state_file, InitKind, Simulation};
use tracing::{info, warn};

use super::progress::Progress;
use super::run::{checkpoint_args, draw_pictures, ms, MetricsFile, RunArgs, Stages};
use crate::cli::out;

/// `atheria run --distributed`: the flags of `run` that build the
/// simulation, with --steps, --save, --checkpoint-every and --timeout.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.tools.is_empty() {
        bail!(
            "--tool is not available with --distributed yet: apply tools in a run without \
             --distributed and save the state (a saved state loads in either)"
        );
    }
    args.sim.check()?;
    let checkpoint = checkpoint_args(&args.checkpoint_every)?;
    let universe = atheria::distributed::mpi::initialize()
        .context("MPI could not be initialised (was it initialised twice?)")?;
    let world = universe.world();
    let root = world.rank() == 0;
    if root {
        for (flag, path) in [
            ("--save", args.save.as_ref()),
            ("--checkpoint-every", checkpoint.as_ref().map(|(_, p)| p)),
        ] {
            if let Some(path) = path {
                sparse_grid::output::check_writable(path).with_context(|| flag.to_string())?;
            }
        }
    }
    // Pictures and readouts are drawn on rank 0 from a gathered frame.
    let mut metrics_out = None;
    if root {
        if let Some(dir) = &args.png {
            super::run::create_png_dir(dir)?;
        }
        metrics_out = args
            .metrics
            .as_ref()
            .map(|path| MetricsFile::create(path))
            .transpose()?;
    }
    let watchdog = super::run::start_watchdog(args.timeout)?;
    let mut stages = Stages::new(watchdog.as_ref());
    let started = Instant::now();
    let builder = args.sim.distributed_builder()?;
    let mut sim = match builder.build_distributed(world, &mut stages) {
        Ok(sim) => sim,
        // A build that fails fails on every rank (it is agreed).
        Err(e) => return Ok(fail_together(&universe.world(), stages.name_failed(e))),
    };
    let ranks = sim.comm().size();
    if root {
        info!(
            "{ranks} ranks, tiles per rank {:?} (Morton ranges)",
            sim.stats().loads
        );
    }
    let d_state = sim.engine().d_state();
    if let Some(c) = args.png.as_ref().and_then(|_| {
        args.viz.0.iter().find_map(|v| match v {
            Viz::PhaseChannel(c) if *c >= d_state => Some(*c),
            _ => None,
        })
    }) {
        bail!("--viz phase:{c}: the model has channels 0..{d_state}");
    }
    let mut observer = Observer {
        png: args.png.as_deref(),
        vizs: &args.viz.0,
        sheet: args.sheet,
        metrics: metrics_out,
        psi0: None,
        threshold: sim.engine().options().threshold,
    };
    // Readouts at the start, as a single-process run writes them.
    observer.observe(&mut sim, args.metrics.is_some(), false)?;
    let mut progress = Progress::new("steps", args.steps, !root);
    let loop_start = Instant::now();
    let mut forward = Duration::ZERO;
    for done in 1..=args.steps {
        if let Some(w) = &watchdog {
            w.enter(format!("step {}", sim.step_count() + 1));
        }
        let stats = match sim.step() {
            Ok(stats) => stats,
            Err(e) => {
                // Every rank failed this step together and every rank's
                // tiles are as before it: keep the run so far where --save
                // asked for it, as a single-process run does.
                if let (Some(state), Some(path)) = (sim.gather()?, &args.save) {
                    match state_file::write_state(&state, path) {
                        Ok(()) => warn!(
                            "saved the state after step {} (before the failed step) to {}",
                            state.step,
                            path.display()
                        ),
                        Err(s) => warn!("could not save after the failed step: {s}"),
                    }
                }
                // Every rank failed this step (it is agreed).
                return Ok(fail_together(sim.comm(), e.into()));
            }
        };
        if let Some(w) = &watchdog {
            w.idle();
        }
        forward += stats.forward;
        progress.set(done);
        if done.is_multiple_of(args.every) || done == args.steps {
            observer.observe(&mut sim, args.metrics.is_some(), args.png.is_some())?;
        }
        if let Some((k, path)) = &checkpoint {
            if done.is_multiple_of(*k) {
                if let Some(state) = sim.gather()? {
                    if let Err(e) = state_file::write_state(&state, path) {
                        warn!(
                            "checkpoint after step {} not written ({e}); the run goes on",
                            state.step
                        );
                    }
                }
            }
        }
    }
    progress.finish();
    let loop_time = loop_start.elapsed();
    let state = sim.gather()?;
    let figures = Figures::gather(&sim, forward, loop_time);
    if let (Some(state), Some(path)) = (&state, &args.save) {
        state_file::write_state(state, path)?;
        info!(
            "saved {} x {} state to {}",
            state.height(),
            state.width(),
            path.display()
        );
    }
    if let (Some(state), Some(f)) = (&state, figures) {
        let rate = args.steps as f64 / loop_time.as_secs_f64().max(1e-9);
        out!(
            "{} steps in {:.2} s on {ranks} ranks: {rate:.1} steps/s; total {:.2} s; {} cells of matter",
            args.steps,
            loop_time.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            state.occupied().iter().filter(|&&o| o != 0).count()
        );
        f.print(args.steps);
    }
    drop(sim);
    drop(universe);
    Ok(ExitCode::SUCCESS)
}

/// Ends a run that failed on every rank alike: each rank prints its error
/// line, then all wait for each other before any exits. Open MPI ends the
/// whole job when the first rank exits with an error, so without the wait
/// a fast rank could kill rank 0 before it had saved or printed.
fn fail_together(world: &impl CommunicatorCollectives, e: anyhow::Error) -> ExitCode {
    crate::cli::report(&e);
    world.barrier();
    ExitCode::FAILURE
}

/// `--png` and `--metrics` of a distributed run: each time, the lattice
/// and its delta summary are gathered on rank 0 (a collective call), which
/// draws the pictures and writes the readouts as a single-process run does.
struct Observer<'a> {
    png: Option<&'a Path>,
    vizs: &'a [Viz],
    sheet: bool,
    metrics: Option<MetricsFile>,
    /// The fidelity's psi0: the first frame gathered.
    psi0: Option<Frame>,
    threshold: f32,
}

impl Observer<'_> {
    /// Gathers a frame when readouts or pictures are asked for, then draws
    /// and writes on rank 0. Collective: every rank calls it at the same
    /// steps with the same flags (from the command line, never from what
    /// only rank 0 holds).
    fn observe(
        &mut self,
        sim: &mut DistributedSparse<SimpleCommunicator>,
        readouts: bool,
        pictures: bool,
    ) -> anyhow::Result<()> {
        if !(readouts || pictures) {
            return Ok(());
        }
        let step = sim.step_count();
        let Some((state, summary)) = sim.gather_frame()? else {
            return Ok(());
        };
        let frame = FrameRef::new(&state, summary.as_deref())?;
        if pictures {
            if let Some(dir) = self.png {
                draw_pictures(dir, step, &frame, self.vizs, self.sheet)?;
            }
        }
        if let Some(out) = self.metrics.as_mut().filter(|_| readouts) {
            if self.psi0.is_none() {
                // The fidelity's psi0, as a simulation keeps the field it
                // was built with.
                self.psi0 = Some(Frame::new(state.clone(), None)?);
            }
            let psi0 = self.psi0.as_ref().map(Frame::as_ref);
            let m = metrics(
                &frame,
                psi0.as_ref(),
                energy_of(&frame),
                Some(self.threshold),
                step,
            );
            out.write(&m)?;
        }
        Ok(())
    }
}

/// Per-rank figures of a run, gathered on rank 0.
pub struct Figures {
    /// Per rank: tiles, halo bytes sent over the run, exchange time (ns),
    /// agreement time (ns), forward time (ns), bytes moved by rebalances.
    rows: Vec<[u64; 6]>,
    rebalances: u64,
    loop_time: Duration,
}

impl Figures {
    /// Gathers every rank's figures on rank 0 (`None` on the others).
    pub fn gather(
        sim: &DistributedSparse<SimpleCommunicator>,
        forward: Duration,
        loop_time: Duration,
    ) -> Option<Self> {
        let s = sim.stats();
        let mine = [
            sim.engine().tile_count() as u64,
            s.halo_bytes_total,
            s.exchange_time.as_nanos() as u64,
            s.agree_time.as_nanos() as u64,
            forward.as_nanos() as u64,
            s.moved_bytes,
        ];
        let root = sim.comm().process_at_rank(0);
        if sim.rank() != 0 {
            root.gather_into(&mine[..]);
            return None;
        }
        let mut all = vec![0u64; 6 * sim.comm().size() as usize];
        root.gather_into_root(&mine[..], &mut all[..]);
        Some(Self {
            rows: all
                .chunks_exact(6)
                .map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
                .collect(),
            rebalances: s.rebalances,
            loop_time,
        })
    }

    /// Halo bytes sent per step, summed over ranks.
    pub fn halo_per_step(&self, steps: u64) -> f64 {
        self.rows.iter().map(|r| r[1]).sum::<u64>() as f64 / steps.max(1) as f64
    }

    /// The largest rank's share of the loop spent exchanging and agreeing.
    pub fn comm_fraction(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| (r[2] + r[3]) as f64 / self.loop_time.as_nanos().max(1) as f64)
            .fold(0.0, f64::max)
    }

    /// Prints the per-rank load and communication figures.
    pub fn print(&self, steps: u64) {
        out!(
            "halo {:.0} bytes/step over all ranks; {} rebalances; per rank (tiles, halo bytes/step, exchange, agree, forward):",
            self.halo_per_step(steps),
            self.rebalances
        );
        for (rank, r) in self.rows.iter().enumerate() {
            out!(
                "  rank {rank}: {} tiles, {:.0} B/step, exchange {}, agree {}, forward {}",
                r[0],
                r[1] as f64 / steps.max(1) as f64,
                ms(Duration::from_nanos(r[2])),
                ms(Duration::from_nanos(r[3])),
                ms(Duration::from_nanos(r[4]))
            );
        }
    }
}

/// `atheria bench --distributed`, under `mpirun -n P`: steps/s and halo
/// bytes per step of the embedded default law's sparse disc, at a fixed
/// lattice (strong scaling: `side` cells) and at a lattice that grows with
/// the ranks (weak scaling: `side * sqrt(P)`, the same cells per rank).
pub fn bench(side: usize, steps: u64, threads: Option<usize>) -> anyhow::Result<ExitCode> {
    let universe = atheria::distributed::mpi::initialize()
        .context("MPI could not be initialised (was it initialised twice?)")?;
    let world = universe.world();
    let ranks = world.size() as usize;
    let root = world.rank() == 0;
    let weak = (side as f64 * (ranks as f64).sqrt()).round() as usize;
    if root {
        out!("distributed bench: {ranks} ranks, default law, sparse disc, {steps} steps after 2 warm-up");
    }
    for (kind, grid) in [("strong", side), ("weak", weak)] {
        let mut b = Simulation::builder()
            .default_law()
            .init(InitKind::Random, 1, grid);
        if let Some(n) = threads {
            b = b.threads(n);
        }
        let mut sim = b.build_distributed(world.duplicate(), &mut ())?;
        for _ in 0..2 {
            sim.step()?;
        }
        sim.reset_stats();
        let t0 = Instant::now();
        let mut forward = Duration::ZERO;
        for _ in 0..steps {
            forward += sim.step()?.forward;
        }
        let took = t0.elapsed();
        if let Some(f) = Figures::gather(&sim, forward, took) {
            out!(
                "{kind}: grid {grid} ({} tiles): {:.2} steps/s, halo {:.0} bytes/step, communication {:.1}% of the step on the busiest rank",
                f.rows.iter().map(|r| r[0]).sum::<u64>(),
                steps as f64 / took.as_secs_f64().max(1e-9),
                f.halo_per_step(steps),
                100.0 * f.comm_fraction()
            );
        }
    }
    drop(universe);
    Ok(ExitCode::SUCCESS)
}
