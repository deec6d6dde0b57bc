//! The simulation thread: owns the [`Simulation`], takes commands from a
//! bounded channel, steps while running, renders one frame per distinct
//! (visualization, region) that some viewer watches, and publishes frames
//! and status on `watch` channels (newest only: a slow viewer skips frames,
//! nothing queues).
//!
//! It is a plain `std::thread`: never a tokio worker (a step blocks for
//! milliseconds) and never a rayon worker (the engine refuses to step there).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atheria::instruments::viz;
use atheria::render::draw_viz_scaled;
use atheria::{CellBox, DenseState, EngineKind, Simulation, Viz};
use axum::body::Bytes;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

use crate::protocol::{Command, FrameHeader};

/// At most this many frames per second per picture.
const MAX_FPS: f64 = 30.0;
/// Rendering may take at most this share of the simulation thread's time
/// while it runs (so viewers cost the simulation at most about this much).
const RENDER_SHARE: f64 = 0.05;
/// A status at least this often while running.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// What one picture shows: a visualization over a region (`None`: the
/// whole dense grid, however it changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SubKey {
    pub viz: Viz,
    pub region: Option<CellBox>,
}

/// The newest encoded frame of one picture.
pub(crate) type FrameSlot = watch::Receiver<Option<Bytes>>;

struct SubEntry {
    tx: watch::Sender<Option<Bytes>>,
    viewers: usize,
}

/// A message to the simulation thread.
pub(crate) enum SimCmd {
    /// A client's command; the reply is the status after it, or an error.
    Client(Command, oneshot::Sender<Result<String, String>>),
    /// The state as a state file's bytes.
    Snapshot(oneshot::Sender<Result<Vec<u8>, String>>),
    /// Replace the state with a state file's bytes.
    Load(Vec<u8>, oneshot::Sender<Result<String, String>>),
    /// Something to draw (a new viewer): render when convenient.
    Wake,
    /// Stop the thread.
    Shutdown,
}

/// What the simulation thread and the connections share.
pub(crate) struct Shared {
    subs: Mutex<HashMap<SubKey, SubEntry>>,
    /// A picture is wanted that has not been drawn yet.
    dirty: AtomicBool,
    /// Connected viewers.
    pub clients: AtomicUsize,
    /// The simulation's step counter, after each step.
    pub steps: AtomicU64,
    pub cmd: SyncSender<SimCmd>,
}

impl Shared {
    pub fn new(cmd: SyncSender<SimCmd>) -> Self {
        Self {
            subs: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(true),
            clients: AtomicUsize::new(0),
            steps: AtomicU64::new(0),
            cmd,
        }
    }

    fn subs(&self) -> std::sync::MutexGuard<'_, HashMap<SubKey, SubEntry>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `key`; the simulation thread draws it soon.
    pub fn subscribe(&self, key: SubKey) -> FrameSlot {
        let rx = {
            let mut subs = self.subs();
            let entry = subs.entry(key).or_insert_with(|| SubEntry {
                tx: watch::channel(None).0,
                viewers: 0,
            });
            entry.viewers += 1;
            entry.tx.subscribe()
        };
        self.dirty.store(true, Ordering::SeqCst);
        let _ = self.cmd.try_send(SimCmd::Wake);
        rx
    }

    /// Stops watching `key`; the last viewer's leaving stops its drawing.
    pub fn unsubscribe(&self, key: SubKey) {
        let mut subs = self.subs();
        if let Some(e) = subs.get_mut(&key) {
            e.viewers -= 1;
            if e.viewers == 0 {
                subs.remove(&key);
            }
        }
    }

    /// Distinct pictures wanted now.
    pub fn pictures(&self) -> usize {
        self.subs().len()
    }
}

/// What the simulation thread needs besides the simulation.
pub(crate) struct SimThread {
    pub sim: Simulation,
    /// The state `reset` returns to.
    pub initial: DenseState,
    pub rx: Receiver<SimCmd>,
    pub shared: Arc<Shared>,
    pub status: watch::Sender<Arc<str>>,
}

struct Loop {
    running: bool,
    speed: Option<f64>,
    next_step: Instant,
    steps_per_s: f64,
    rate_from: (Instant, u64),
    next_render: Instant,
    last_render_step: Option<u64>,
    frames: u64,
    frames_per_s: f64,
    last_status: Instant,
    error: Option<String>,
}

impl SimThread {
    /// Runs until [`SimCmd::Shutdown`] or until every sender is gone.
    pub fn run(mut self) {
        let now = Instant::now();
        let mut l = Loop {
            running: false,
            speed: None,
            next_step: now,
            steps_per_s: 0.0,
            rate_from: (now, self.sim.step_count()),
            next_render: now,
            last_render_step: None,
            frames: 0,
            frames_per_s: 0.0,
            last_status: now,
            error: None,
        };
        self.shared
            .steps
            .store(self.sim.step_count(), Ordering::SeqCst);
        self.publish(&mut l);
        loop {
            let now = Instant::now();
            let wait = if l.running {
                l.next_step.saturating_duration_since(now)
            } else if self.shared.dirty.load(Ordering::SeqCst) {
                Duration::ZERO
            } else {
                HEARTBEAT
            };
            let first = if wait.is_zero() {
                match self.rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match self.rx.recv_timeout(wait) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            let mut next = first;
            while let Some(cmd) = next {
                if !self.handle(cmd, &mut l) {
                    return;
                }
                next = self.rx.try_recv().ok();
            }
            if l.running && Instant::now() >= l.next_step {
                self.step_once(&mut l);
                let now = Instant::now();
                l.next_step = match l.speed {
                    // Catch up at most one step after a stall.
                    Some(s) => (l.next_step + Duration::from_secs_f64(1.0 / s))
                        .max(now - Duration::from_secs_f64(1.0 / s)),
                    None => now,
                };
            }
            self.maybe_render(&mut l);
            if l.running && l.last_status.elapsed() >= HEARTBEAT {
                self.publish(&mut l);
            }
        }
    }

    /// One command; false to stop the thread.
    fn handle(&mut self, cmd: SimCmd, l: &mut Loop) -> bool {
        match cmd {
            SimCmd::Shutdown => return false,
            SimCmd::Wake => {}
            SimCmd::Snapshot(reply) => {
                let bytes = self
                    .sim
                    .state()
                    .and_then(|s| atheria::state_file::state_bytes(&s))
                    .map_err(|e| e.to_string());
                let _ = reply.send(bytes);
            }
            SimCmd::Load(bytes, reply) => {
                let result = atheria::state_file::parse_state(&bytes, self.sim.max_cells())
                    .and_then(|s| self.sim.set_state(s).map_err(|e| e.to_string()));
                let _ = reply.send(result.map(|()| {
                    self.changed(l);
                    self.publish(l)
                }));
            }
            SimCmd::Client(command, reply) => {
                let result = self.command(command, l);
                let _ = reply.send(result.map(|()| self.publish(l)));
            }
        }
        true
    }

    fn command(&mut self, command: Command, l: &mut Loop) -> Result<(), String> {
        let e = |e: atheria::Error| e.to_string();
        match command {
            Command::Play => {
                l.running = true;
                l.error = None;
                l.next_step = Instant::now();
                l.rate_from = (Instant::now(), self.sim.step_count());
            }
            Command::Pause => {
                l.running = false;
                l.steps_per_s = 0.0;
            }
            Command::Step { count } => {
                for _ in 0..count {
                    if !self.step_once(l) {
                        return Err(l.error.clone().unwrap_or_default());
                    }
                }
            }
            Command::Reset => {
                self.sim.set_state(self.initial.clone()).map_err(e)?;
                l.error = None;
                self.changed(l);
            }
            Command::SetSpeed(s) => {
                l.speed = s;
                l.next_step = Instant::now();
            }
            Command::SetGamma(g) => self.sim.set_gamma(g).map_err(e)?,
            Command::Tool(tool) => {
                self.sim.apply(&tool).map_err(e)?;
                self.changed(l);
            }
            // Per-connection commands: the connection handles them.
            Command::SetViz(_) | Command::View(_) | Command::Snapshot => {}
        }
        Ok(())
    }

    /// The field changed without a step: draw it again.
    fn changed(&self, l: &mut Loop) {
        self.shared
            .steps
            .store(self.sim.step_count(), Ordering::SeqCst);
        l.last_render_step = None;
        self.shared.dirty.store(true, Ordering::SeqCst);
    }

    /// One step; a failure pauses the run and is reported in the status.
    fn step_once(&mut self, l: &mut Loop) -> bool {
        match self.sim.step() {
            Ok(stats) => {
                self.shared.steps.store(stats.step, Ordering::SeqCst);
                true
            }
            Err(err) => {
                tracing::warn!("step failed, paused: {err}");
                l.error = Some(err.to_string());
                l.running = false;
                self.publish(l);
                false
            }
        }
    }

    /// Draws every wanted picture when something new is to be seen and the
    /// frame budget allows.
    fn maybe_render(&mut self, l: &mut Loop) {
        let step = self.sim.step_count();
        let dirty = self.shared.dirty.load(Ordering::SeqCst);
        if !dirty && l.last_render_step == Some(step) {
            return;
        }
        // Paused, a change is drawn at once; running, within the budget.
        if l.running && Instant::now() < l.next_render {
            return;
        }
        self.shared.dirty.store(false, Ordering::SeqCst);
        let wanted: Vec<(SubKey, watch::Sender<Option<Bytes>>)> = self
            .shared
            .subs()
            .iter()
            .map(|(k, e)| (*k, e.tx.clone()))
            .collect();
        l.last_render_step = Some(step);
        if wanted.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut regions: Vec<Option<CellBox>> = wanted.iter().map(|(k, _)| k.region).collect();
        regions.sort_by_key(|r| r.map(|b| (b.min_x, b.min_y, b.max_x, b.max_y)));
        regions.dedup();
        for region in regions {
            let Some(area) = region.or_else(|| self.sim.extent()) else {
                continue;
            };
            let frame = match self.sim.frame(area) {
                Ok(f) => f,
                Err(err) => {
                    tracing::warn!("cannot read the field for a picture: {err}");
                    continue;
                }
            };
            let frame = frame.as_ref();
            for (key, tx) in wanted.iter().filter(|(k, _)| k.region == region) {
                match encode(key.viz, &frame, area, step) {
                    Ok(bytes) => {
                        tx.send_replace(Some(bytes));
                    }
                    Err(err) => tracing::warn!("cannot draw {}: {err}", key.viz),
                }
            }
        }
        let cost = started.elapsed().as_secs_f64();
        l.frames += 1;
        let gap = (1.0 / MAX_FPS).max(cost / RENDER_SHARE);
        l.next_render = Instant::now() + Duration::from_secs_f64(gap);
    }

    /// Publishes the status and returns it.
    fn publish(&mut self, l: &mut Loop) -> String {
        let now = Instant::now();
        let span = now.duration_since(l.rate_from.0).as_secs_f64();
        if span >= 0.25 {
            let step = self.sim.step_count();
            if l.running {
                l.steps_per_s = step.saturating_sub(l.rate_from.1) as f64 / span;
            }
            l.frames_per_s = l.frames as f64 / span;
            l.frames = 0;
            l.rate_from = (now, step);
        }
        l.last_status = now;
        let text = status_json(&self.sim, l, &self.shared).to_string();
        self.status.send_replace(Arc::from(text.as_str()));
        text
    }
}

fn status_json(sim: &Simulation, l: &Loop, shared: &Shared) -> Value {
    let metrics = sim
        .metrics()
        .ok()
        .and_then(|m| serde_json::to_value(m).ok())
        .unwrap_or(Value::Null);
    let extent = sim
        .extent()
        .map(|b| json!({"x": b.min_x, "y": b.min_y, "width": b.width(), "height": b.height()}));
    json!({
        "type": "status",
        "step": sim.step_count(),
        "running": l.running,
        "steps_per_s": (l.steps_per_s * 10.0).round() / 10.0,
        "speed": l.speed,
        "gamma": sim.gamma(),
        "engine": sim.engine_kind().name(),
        "extent": extent,
        "cells": sim.occupied_count(),
        "viewers": shared.clients.load(Ordering::SeqCst),
        "pictures": shared.pictures(),
        "frames_per_s": (l.frames_per_s * 10.0).round() / 10.0,
        "click_out": sim.click_out().is_some(),
        "error": l.error,
        "metrics": metrics,
    })
}

/// Pixels per cell of a picture of `area`: one, except that flow's arrows
/// need room on small regions.
fn scale_for(viz: Viz, area: CellBox) -> usize {
    if viz == Viz::Flow {
        (256 / area.width().max(area.height()).max(1)).clamp(1, 4)
    } else {
        1
    }
}

/// One picture as a frame message: the same colours as `atheria run --png`.
fn encode(
    v: Viz,
    frame: &atheria::instruments::FrameRef<'_>,
    area: CellBox,
    step: u64,
) -> atheria::Result<Bytes> {
    let map = viz::field(v, frame, true)?;
    let flow = (v == Viz::Flow).then(|| viz::flow_vectors(frame, true));
    let scale = scale_for(v, area);
    let image = draw_viz_scaled(
        v,
        &map,
        flow.as_ref().map(|(x, y)| (x.as_slice(), y.as_slice())),
        scale,
    )?;
    let header = FrameHeader {
        flags: 0,
        channels: 3,
        scale: scale as u8,
        width: image.width as u32,
        height: image.height as u32,
        step,
        x: area.min_x,
        y: area.min_y,
        viz: v.name(),
    };
    Ok(Bytes::from(header.encode(&image.pixels)))
}

/// The region a new viewer of `sim` sees: the whole dense grid, or on the
/// sparse lattice a square around the matter (or the origin) of at most
/// `max_cells` cells.
pub(crate) fn default_region(sim: &Simulation, max_cells: usize) -> Option<CellBox> {
    if sim.engine_kind() != EngineKind::Sparse {
        return None;
    }
    let side_max = (max_cells as f64).sqrt() as i64;
    let (cx, cy, side) = match sim.extent() {
        Some(b) => (
            (b.min_x as i64 + b.max_x as i64) / 2,
            (b.min_y as i64 + b.max_y as i64) / 2,
            (b.width().max(b.height()) as i64 * 2).clamp(32, side_max),
        ),
        None => (0, 0, 128.min(side_max)),
    };
    let x0 = (cx - side / 2).clamp(i32::MIN as i64, i32::MAX as i64 - side) as i32;
    let y0 = (cy - side / 2).clamp(i32::MIN as i64, i32::MAX as i64 - side) as i32;
    CellBox::from_origin(x0, y0, side as usize, side as usize).ok()
}
