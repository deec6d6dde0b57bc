//! The tiled step of a local model (receptive radius r): find the active
//! tiles, gather each with a halo of r into one batch, run the model on
//! chunks of it from the stepping thread, check the delta, then apply the
//! update in place, tile by tile in parallel.
//!
//! # Staging, atomic or rolling
//! Each chunk's updated tiles are staged, not written, because tiles still
//! to be gathered read the old values of their neighbours. An atomic step
//! (the default) stages every active tile and writes them all once every
//! chunk has been checked: a failure anywhere changes nothing, and the
//! staging is a second copy of the active tiles. A rolling step
//! ([`super::SparseOptions::atomic_steps`] off) uses that the active tiles
//! are gathered in row order and a gather reads at most `ceil(r / T)` tile
//! rows above its own: after each chunk it writes the staged tiles of every
//! row no later gather reads, so the staging is a ring of a few rows of
//! tiles. The values written are the same; only a failure after the first
//! write differs, leaving the lattice part stepped.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use engine_api::{BatchShape, ComputeBackend, Error, Result};
use rayon::prelude::*;

use super::tiles::{TileKey, TileStore};
use super::Vacuum;
use crate::pool::LoopPool;
use crate::summary::{summarize, PLANES};
use crate::update::{first_non_finite, update_run, PlaneRun, UpdateParams};
use crate::StepStats;

/// What a step needs besides the tiles and the batch buffers.
pub(crate) struct StepContext<'a> {
    pub backend: &'a dyn ComputeBackend,
    /// Where the step's parallel sections run (never `forward`).
    pub pool: &'a LoopPool,
    pub params: UpdateParams,
    pub vacuum: Vacuum,
    pub seed: u64,
    pub step: u64,
    pub max_cells: usize,
    pub forward_bytes: usize,
    /// Whether the step writes nothing until it has succeeded (see the
    /// module docs); shared steps are atomic whatever this says.
    pub atomic: bool,
}

impl StepContext<'_> {
    /// The error of this step (numbered from 1, as in every engine) failing
    /// because of `cause`.
    pub fn fail(&self, cause: Error) -> Error {
        Error::step(self.step + 1, cause)
    }
}

/// The batch of a local step, with every buffer reused from step to step.
///
/// The model runs chunk by chunk; each chunk's result is staged (the updated
/// tiles, their occupancy, the delta summary) before the next chunk runs, and the
/// tiles change only when every chunk has been checked: the step is
/// all-or-nothing while the halo-sized buffers stay one chunk long.
pub(crate) struct LocalBatch {
    /// Receptive radius.
    pub r: usize,
    /// Tile rows above its own that a tile's gather reads: ceil(r / T).
    rows_up: usize,
    /// Staged tiles the staging buffers hold: every active tile for an
    /// atomic step, a ring of them for a rolling one.
    ring: usize,
    /// Active tiles (a prefix of `wanted`) already written this step.
    written: usize,
    /// Side of one field of the batch: T + 2r, rounded up to the model's
    /// `spatial_multiple` (the extra cells lie beyond the halo).
    pub side: usize,
    /// Active tiles of the last successful step, sorted by (y, x): the
    /// layout of `summary`. Empty when no step has completed.
    pub keys: Vec<TileKey>,
    /// The delta summary of the last step ([`crate::summary`]), per tile:
    /// `[B][summary::PLANES][T][T]`.
    pub summary: Vec<f32>,
    wanted: Vec<TileKey>,
    /// What [`Self::stage_early`] staged, until the step that completes it.
    early: Option<Result<Staged>>,
    /// The tiles it staged, sorted by (y, x).
    early_keys: Vec<TileKey>,
    slots: Vec<u32>,
    created: Vec<u32>,
    mark: Vec<bool>,
    reach_lo: Vec<i64>,
    reach_hi: Vec<i64>,
    input: Vec<f32>,
    delta: Vec<f32>,
    halo: Vec<u8>,
    hmax: Vec<u8>,
    reach: Vec<u8>,
    stage: Vec<f32>,
    stage_occ: Vec<u8>,
    checks: Vec<TileCheck>,
    slot_batch: Vec<u32>,
}

/// What staging found in one tile.
#[derive(Clone, Copy, Default)]
struct TileCheck {
    /// First non-finite delta: (row, column, channel) within the tile.
    bad: Option<(usize, usize, usize)>,
    /// Cells of matter after the update.
    count: u32,
}

thread_local! {
    /// Per-thread scratch of staging: a tile's delta without its halo, and
    /// the update's norms.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl LocalBatch {
    /// An empty batch for radius `r` and tiles of side `t`.
    pub fn new(r: usize, t: usize, spatial_multiple: usize) -> Self {
        let m = spatial_multiple.max(1);
        Self {
            r,
            rows_up: r.div_ceil(t),
            ring: 0,
            written: 0,
            side: (t + 2 * r).div_ceil(m) * m,
            keys: Vec::new(),
            summary: Vec::new(),
            delta: Vec::new(),
            wanted: Vec::new(),
            early: None,
            early_keys: Vec::new(),
            slots: Vec::new(),
            created: Vec::new(),
            mark: Vec::new(),
            reach_lo: Vec::new(),
            reach_hi: Vec::new(),
            input: Vec::new(),
            halo: Vec::new(),
            hmax: Vec::new(),
            reach: Vec::new(),
            stage: Vec::new(),
            stage_occ: Vec::new(),
            checks: Vec::new(),
            slot_batch: Vec::new(),
        }
    }

    /// The margin each field's forward drops: `Some(r)` when the backend
    /// can skip the halo's work, so that it returns each field's interior,
    /// the tile alone (`[2D, T, T]`), and the halo's cells, which the step
    /// drops anyway, are never computed; `None` when it returns the whole
    /// field and staging reads the tile out of it.
    pub fn interior_margin(&self, t: usize, backend: &dyn ComputeBackend) -> Option<usize> {
        let r = self.r;
        (r > 0 && self.side == t + 2 * r && backend.computes_interior(r)).then_some(r)
    }

    /// Cells per field whose delta the forward returns: the tile alone
    /// (`T * T`) when [`Self::interior_margin`] says so, else the field.
    fn delta_cells(&self, t: usize, backend: &dyn ComputeBackend) -> usize {
        match self.interior_margin(t, backend) {
            Some(_) => t * t,
            None => self.side * self.side,
        }
    }

    /// Fields in one full chunk of the model's input: as many as
    /// `forward_bytes` holds, at least one.
    pub fn chunk_fields(&self, d: usize, forward_bytes: usize) -> usize {
        (forward_bytes / (4 * 2 * d * self.side * self.side)).max(1)
    }

    /// Stages, before the rest of a shared step, the active tiles that
    /// `early` says need nothing from other processes (a tile whose whole
    /// 3 x 3 neighbourhood is this process's), so that their forward runs
    /// while the halo is on its way. The step that follows ([`Self::step`])
    /// stages the rest and agrees; an error here is reported there.
    pub fn stage_early(
        &mut self,
        store: &mut TileStore,
        cx: &StepContext,
        early: &(dyn Fn(i32, i32) -> bool + Sync),
    ) {
        if self.early.take().is_some() {
            store.release_empty(&self.created);
        }
        let t0 = Instant::now();
        self.slots.clear();
        self.created.clear();
        let staged = self
            .find_active(store, cx, Some(early))
            .and_then(|()| self.stage(store, cx, t0, 0, false));
        self.early_keys.clear();
        self.early_keys.extend_from_slice(&self.wanted);
        self.early = Some(staged);
    }

    /// Makes the next step fail with `error` (found before staging early).
    pub fn fail_early(&mut self, error: Error) {
        self.early = Some(Err(error));
    }

    /// One step. On error the tiles are as before the call. With `shared`,
    /// only the tiles it owns are stepped (the others are read-only halo)
    /// and it is asked to agree after staging, before anything is written.
    /// Tiles staged by [`Self::stage_early`] are kept, not staged again.
    pub fn step(
        &mut self,
        store: &mut TileStore,
        cx: &StepContext,
        shared: Option<&mut SharedStep<'_>>,
    ) -> Result<StepStats> {
        let t0 = Instant::now();
        let owns = shared.as_ref().map(|s| s.owns);
        let rolling = !cx.atomic && shared.is_none();
        self.written = 0;
        // Early staging belongs to a shared step; a plain one starts afresh.
        let early = self.early.take();
        let early = match shared {
            Some(_) => early,
            None => {
                if early.is_some() {
                    store.release_empty(&self.created);
                }
                None
            }
        };
        let staged = match early {
            None => {
                self.slots.clear();
                self.created.clear();
                self.find_active(store, cx, owns)
                    .and_then(|()| self.stage(store, cx, t0, 0, rolling))
            }
            Some(Err(e)) => Err(e),
            Some(Ok(first)) => self
                .find_rest(store, cx, owns)
                .and_then(|from| self.stage(store, cx, t0, from, false))
                .map(|rest| rest.after(first)),
        };
        // Every process takes part in the agreement, whatever it found.
        let staged = match (staged, shared) {
            (Ok(st), Some(s)) => (s.agree)(None).map(|()| st),
            (Err(e), Some(s)) => {
                let _ = (s.agree)(Some(&e));
                Err(e)
            }
            (staged, None) => staged,
        };
        match staged {
            Ok(staged) => {
                let stats = self.commit(store, cx, staged);
                store.release_empty(&self.slots);
                // A copy, not a swap: each vector keeps the capacity it needs.
                self.keys.clear();
                self.keys.extend_from_slice(&self.wanted);
                Ok(stats)
            }
            Err(e) => {
                store.release_empty(&self.created);
                self.keys.clear();
                if self.written == 0 {
                    return Err(e);
                }
                // A rolling step wrote part of the lattice before failing.
                let source = match e {
                    Error::Step { source, .. } => source,
                    other => Box::new(other),
                };
                Err(Error::TornStep {
                    step: cx.step + 1,
                    written: self.written,
                    active: self.slots.len(),
                    source,
                })
            }
        }
    }

    /// After [`Self::stage_early`]: `wanted` becomes the early tiles, then
    /// every other active tile `owns` keeps; returns how many were early.
    fn find_rest(
        &mut self,
        store: &TileStore,
        cx: &StepContext,
        owns: Option<&(dyn Fn(i32, i32) -> bool + Sync)>,
    ) -> Result<usize> {
        self.find_active(store, cx, owns)?;
        let early = &self.early_keys;
        // Both sorted by (y, x).
        self.wanted.retain(|&(x, y)| {
            early
                .binary_search_by_key(&(y, x), |&(x, y)| (y, x))
                .is_err()
        });
        self.wanted.splice(0..0, early.iter().copied());
        Ok(early.len())
    }

    /// Fills `wanted` with every occupied tile plus every tile an occupied
    /// cell reaches within r, sorted by (y, x).
    /// With `owns`, only the tiles it owns are kept.
    fn find_active(
        &mut self,
        store: &TileStore,
        cx: &StepContext,
        owns: Option<&(dyn Fn(i32, i32) -> bool + Sync)>,
    ) -> Result<()> {
        let (t, r) = (store.t as i64, self.r as i64);
        self.reach_lo.clear();
        self.reach_hi.clear();
        for l in 0..t {
            self.reach_lo.push((l - r).div_euclid(t));
            self.reach_hi.push((l + r).div_euclid(t));
        }
        let k_lo = (-r).div_euclid(t);
        let span = ((t - 1 + r).div_euclid(t) - k_lo + 1) as usize;
        self.wanted.clear();
        for slot in store.live_slots() {
            let key = store.keys[slot];
            self.wanted.push(key);
            if r == 0 {
                continue;
            }
            self.mark.clear();
            self.mark.resize(span * span, false);
            let area = store.area();
            let occ = &store.occ[slot * area..(slot + 1) * area];
            for (ly, row) in occ.chunks_exact(t as usize).enumerate() {
                let Some(first) = row.iter().position(|&o| o != 0) else {
                    continue;
                };
                let last = row.iter().rposition(|&o| o != 0).unwrap_or(first);
                for dy in self.reach_lo[ly]..=self.reach_hi[ly] {
                    for dx in self.reach_lo[first]..=self.reach_hi[last] {
                        self.mark[(dy - k_lo) as usize * span + (dx - k_lo) as usize] = true;
                    }
                }
            }
            for (m, _) in self.mark.iter().enumerate().filter(|(_, &m)| m) {
                let (dy, dx) = ((m / span) as i64 + k_lo, (m % span) as i64 + k_lo);
                if (dx, dy) == (0, 0) {
                    continue;
                }
                match store.key_in_range(key.0 as i64 + dx, key.1 as i64 + dy) {
                    Some(k) => self.wanted.push(k),
                    None => {
                        return Err(
                            cx.fail(Error::InvalidArgument(edge_message(store, slot, self.r)))
                        )
                    }
                }
            }
        }
        self.wanted.sort_unstable_by_key(|&(x, y)| (y, x));
        self.wanted.dedup();
        if let Some(owns) = owns {
            self.wanted.retain(|&(x, y)| owns(x, y));
        }
        Ok(())
    }

    /// Creates the active tiles from `wanted[from..]` that do not exist
    /// yet, then gathers, forwards and stages them chunk by chunk (the
    /// entries before `from` are already staged). Writes no tile, except
    /// when `rolling` (then `from` is 0): after each chunk it writes the
    /// rows of tiles no later gather reads.
    fn stage(
        &mut self,
        store: &mut TileStore,
        cx: &StepContext,
        t0: Instant,
        from: usize,
        rolling: bool,
    ) -> Result<Staged> {
        for &key in &self.wanted[from..] {
            let (s, new) = store.get_or_create(key);
            self.slots.push(s as u32);
            if new {
                self.created.push(s as u32);
            }
        }
        let (t, r, side, d) = (store.t, self.r, self.side, store.d);
        let (area, tl) = (store.area(), store.tile_len());
        let b = self.slots.len();
        let fl = 2 * d * side * side;
        let hs = t + 2 * r;
        let interior = self.interior_margin(t, cx.backend).is_some();
        let dl = 2 * d * self.delta_cells(t, cx.backend);
        let chunk = self.chunk_fields(d, cx.forward_bytes).min(b.max(1));
        // Entry j of the batch is staged at j % ring: with the ring a
        // multiple of the chunk (or the whole batch) no chunk wraps.
        self.ring = if rolling { self.ring_len(chunk) } else { b };
        let staged = self.ring.checked_mul(tl).ok_or_else(|| {
            cx.fail(Error::InvalidArgument(format!(
                "{b} active tiles are too many to batch"
            )))
        })?;
        self.stage.resize(staged, 0.0);
        self.stage_occ.resize(self.ring * area, 0);
        self.summary.resize(b * PLANES * area, 0.0);
        self.checks.truncate(from);
        self.checks.resize(b, TileCheck::default());
        self.input.resize(chunk * fl, 0.0);
        self.delta.resize(chunk * dl, 0.0);
        self.reach.resize(chunk * area, 0);
        self.halo.resize(chunk * hs * hs, 0);
        self.hmax.resize(chunk * hs * t, 0);

        let mut running: usize = self.checks[..from].iter().map(|k| k.count as usize).sum();
        let mut gather = t0.elapsed();
        let (mut forward, mut scatter) = (Duration::ZERO, Duration::ZERO);
        for b0 in (from..b).step_by(chunk) {
            let n = chunk.min(b - b0);
            let tg = Instant::now();
            let st: &TileStore = store;
            cx.pool.run(|| {
                self.input[..n * fl]
                    .par_chunks_mut(fl)
                    .zip(self.halo.par_chunks_mut(hs * hs))
                    .zip(self.hmax.par_chunks_mut(hs * t))
                    .zip(self.reach.par_chunks_mut(area))
                    .zip(self.wanted[b0..b0 + n].par_iter())
                    .for_each(|((((field, halo), hmax), reach), &key)| {
                        gather_tile(st, key, cx, r, side, field, halo);
                        reach_mask(halo, hmax, reach, t, r);
                    })
            });
            gather += tg.elapsed();

            // The forward runs here, on the stepping thread, never in a pool.
            let tf = Instant::now();
            let (input, shape) = (&self.input[..n * fl], BatchShape::new(n, 2 * d, side, side));
            if interior {
                cx.backend
                    .forward_interior(input, shape, r, &mut self.delta[..n * dl])
            } else {
                cx.backend.forward(input, shape, &mut self.delta[..n * dl])
            }
            .map_err(|e| cx.fail(e))?;
            forward += tf.elapsed();

            let ts = Instant::now();
            let params = cx.params;
            let q0 = b0 % self.ring;
            cx.pool.run(|| {
                self.stage[q0 * tl..(q0 + n) * tl]
                    .par_chunks_mut(tl)
                    .zip(self.stage_occ[q0 * area..(q0 + n) * area].par_chunks_mut(area))
                    .zip(
                        self.summary[b0 * PLANES * area..(b0 + n) * PLANES * area]
                            .par_chunks_mut(PLANES * area),
                    )
                    .zip(self.checks[b0..b0 + n].par_iter_mut())
                    .zip(self.delta[..n * dl].par_chunks(dl))
                    .zip(self.reach.par_chunks(area))
                    .zip(self.slots[b0..b0 + n].par_iter())
                    .for_each(
                        |((((((stage, occ), summary), check), delta), reach), &slot)| {
                            let tile = &st.data[slot as usize * tl..][..tl];
                            let field = if interior {
                                Field::Tile(delta)
                            } else {
                                Field::WithHalo { delta, r, side }
                            };
                            *check =
                                stage_tile(tile, field, reach, &params, t, stage, occ, summary);
                        },
                    )
            });
            if let Some((j, (ly, lx, c))) = self.checks[b0..b0 + n]
                .iter()
                .enumerate()
                .find_map(|(j, k)| k.bad.map(|bad| (b0 + j, bad)))
            {
                let (ox, oy) = store.origin(self.wanted[j]);
                return Err(cx.fail(non_finite(ox + lx as i64, oy + ly as i64, c, d)));
            }
            // Counts are never negative, so a running total past the limit
            // fails the step as soon as it is seen (before a rolling write).
            running += self.checks[b0..b0 + n]
                .iter()
                .map(|k| k.count as usize)
                .sum::<usize>();
            if running > cx.max_cells {
                return Err(cx.fail(too_much_matter(running, cx.max_cells)));
            }
            if rolling && b0 + n < b {
                let upto = self.writable(b0 + n);
                self.write(store, cx, upto);
            }
            scatter += ts.elapsed();
        }

        Ok(Staged {
            gather,
            forward,
            scatter,
            total: running,
        })
    }

    /// How many staged tiles to hold for a rolling step in chunks of
    /// `chunk`: the most that are staged and not yet written at any time,
    /// rounded up to a whole number of chunks (at most the whole batch).
    fn ring_len(&self, chunk: usize) -> usize {
        let b = self.wanted.len();
        let (mut need, mut written) = (0, 0);
        for b0 in (0..b).step_by(chunk) {
            let end = (b0 + chunk).min(b);
            need = need.max(end - written);
            if end < b {
                written = self.writable(end);
            }
        }
        let ring = need.div_ceil(chunk) * chunk;
        if ring >= b {
            b
        } else {
            ring
        }
    }

    /// How many of the active tiles (a prefix: they are sorted by row)
    /// may be written once the first `gathered` have been gathered: those
    /// in rows above every row a later gather reads.
    fn writable(&self, gathered: usize) -> usize {
        let next_row = self.wanted[gathered].1 as i64;
        let first_read = next_row - self.rows_up as i64;
        self.wanted
            .partition_point(|&(_, y)| (y as i64) < first_read)
    }

    /// Writes the staged tiles `written..upto` into the store, with their
    /// counts: with [`Self::commit`], the step's only change to the store.
    fn write(&mut self, store: &mut TileStore, cx: &StepContext, upto: usize) {
        let (lo, ring) = (self.written, self.ring);
        if upto <= lo {
            return;
        }
        let (area, tl) = (store.area(), store.tile_len());
        let slots = &self.slots[lo..upto];
        // Tiles outside the step (another process's halo) keep their count.
        let before: usize = slots
            .iter()
            .map(|&s| store.count[s as usize] as usize)
            .sum();
        let checks = &self.checks[lo..upto];
        let after: usize = checks.iter().map(|k| k.count as usize).sum();
        let (stage, stage_occ) = (&self.stage, &self.stage_occ);
        let slot_batch = &mut self.slot_batch;
        cx.pool.run(|| {
            store.commit(slots, slot_batch, |j, tile, occ, count| {
                let q = (lo + j) % ring;
                tile.copy_from_slice(&stage[q * tl..(q + 1) * tl]);
                occ.copy_from_slice(&stage_occ[q * area..(q + 1) * area]);
                *count = checks[j].count;
            })
        });
        store.occupied = store.occupied - before + after;
        self.written = upto;
    }

    /// Writes the staged tiles not yet written: the end of a successful
    /// step.
    fn commit(&mut self, store: &mut TileStore, cx: &StepContext, staged: Staged) -> StepStats {
        let ts = Instant::now();
        let b = self.slots.len();
        self.write(store, cx, b);
        StepStats {
            step: cx.step + 1,
            occupied_cells: staged.total,
            active_tiles: b,
            staged_tiles: self.ring,
            model_cells: b * self.delta_cells(store.t, cx.backend),
            window: None,
            gather: staged.gather,
            forward: staged.forward,
            scatter: staged.scatter + ts.elapsed(),
        }
    }
}

/// What staging measured and found, for the commit.
struct Staged {
    gather: Duration,
    forward: Duration,
    scatter: Duration,
    /// Cells of matter in the stepped tiles after the step.
    total: usize,
}

impl Staged {
    /// This staging of every tile (the total counts them all) after
    /// `early` staged the first ones: the times add up.
    fn after(self, early: Staged) -> Staged {
        Staged {
            gather: self.gather + early.gather,
            forward: self.forward + early.forward,
            scatter: self.scatter + early.scatter,
            total: self.total,
        }
    }
}

/// A step shared with other processes (the crate `atheria-distributed`
/// runs one lattice across MPI ranks): which tiles this process steps, and
/// the agreement that makes the step all or nothing across all of them.
pub struct SharedStep<'a> {
    /// True for the tiles (by tile coordinates: cell / T) this process
    /// steps. Other tiles in the store are read as halo and left unchanged.
    pub owns: &'a (dyn Fn(i32, i32) -> bool + Sync),
    /// Called once per step on every process, after staging and before
    /// any tile is written, with this process's error if it has one.
    /// `Ok` commits the step; an error (the failing process's) leaves
    /// every tile as it was. It must fail when given an error.
    pub agree: &'a mut dyn FnMut(Option<&Error>) -> Result<()>,
}

/// Copies the `side` x `side` field of the tile `key` (its cells plus a halo
/// of r, starting r cells up and left of the tile) into `field`, with vacuum
/// where there is no matter, and its occupancy (the first T + 2r rows and
/// columns) into `halo`.
fn gather_tile(
    store: &TileStore,
    key: TileKey,
    cx: &StepContext,
    r: usize,
    side: usize,
    field: &mut [f32],
    halo: &mut [u8],
) {
    let (t, d, area) = (store.t as i64, store.d, store.area());
    let (tl, plane) = (store.tile_len(), side * side);
    let hs = t as usize + 2 * r;
    let (ox, oy) = store.origin(key);
    let (fx0, fy0) = (ox - r as i64, oy - r as i64);
    let (fx1, fy1) = (fx0 + side as i64, fy0 + side as i64);
    for ty in fy0.div_euclid(t)..=(fy1 - 1).div_euclid(t) {
        let (ya, yb) = (fy0.max(ty * t), fy1.min((ty + 1) * t));
        for tx in fx0.div_euclid(t)..=(fx1 - 1).div_euclid(t) {
            let (xa, xb) = (fx0.max(tx * t), fx1.min((tx + 1) * t));
            let len = (xb - xa) as usize;
            let slot = store.key_in_range(tx, ty).and_then(|k| store.slot(k));
            let (fxa, lxa) = ((xa - fx0) as usize, (xa - tx * t) as usize);
            // Channel by channel, row by row: each plane is read and written
            // in order (row by row across the channels touched 2D planes a
            // row). The halo's columns are one cell wide: copied as values,
            // not through memcpy.
            let (fya, lya) = ((ya - fy0) as usize, (ya - ty * t) as usize);
            let rows = (yb - ya) as usize;
            for c in 0..2 * d {
                let dst = &mut field[c * plane..][..plane];
                match slot {
                    Some(s) => {
                        let src = &store.data[s * tl + c * area..][..area];
                        for k in 0..rows {
                            let (to, from) = ((fya + k) * side + fxa, (lya + k) * t as usize + lxa);
                            if len == 1 {
                                dst[to] = src[from];
                            } else {
                                dst[to..][..len].copy_from_slice(&src[from..][..len]);
                            }
                        }
                    }
                    None => {
                        for k in 0..rows {
                            dst[(fya + k) * side + fxa..][..len].fill(0.0);
                        }
                    }
                }
            }
            for y in ya..yb {
                let (fy, ly) = ((y - fy0) as usize, (y - ty * t) as usize);
                let dst = fy * side + fxa;
                let src = ly * t as usize + lxa;
                let occ = slot.map(|s| &store.occ[s * area + src..][..len]);
                if fy < hs && fxa < hs {
                    let n = len.min(hs - fxa);
                    let h = &mut halo[fy * hs + fxa..][..n];
                    match occ {
                        Some(o) => h.copy_from_slice(&o[..n]),
                        None => h.fill(0),
                    }
                }
                if !cx.vacuum.is_zero() {
                    for i in 0..len {
                        if occ.is_some_and(|o| o[i] != 0) {
                            continue;
                        }
                        for c in 0..d {
                            let (re, im) = cx.vacuum.value(cx.seed, xa + i as i64, y, cx.step, c);
                            field[c * plane + dst + i] = re;
                            field[(c + d) * plane + dst + i] = im;
                        }
                    }
                }
            }
        }
    }
}

/// `reach[ly][lx]` = 1 when an occupied cell lies within r (Chebyshev) of
/// the tile's cell (lx, ly): the light cone, as a max filter of the halo's
/// occupancy, one axis at a time.
fn reach_mask(halo: &[u8], hmax: &mut [u8], reach: &mut [u8], t: usize, r: usize) {
    let hs = t + 2 * r;
    for fy in 0..hs {
        let row = &halo[fy * hs..(fy + 1) * hs];
        for lx in 0..t {
            hmax[fy * t + lx] = row[lx..=lx + 2 * r].iter().fold(0, |a, &b| a | b);
        }
    }
    for ly in 0..t {
        for lx in 0..t {
            reach[ly * t + lx] = (ly..=ly + 2 * r).fold(0, |a, fy| a | hmax[fy * t + lx]);
        }
    }
}

/// One tile's delta as the model returned it.
#[derive(Clone, Copy)]
enum Field<'a> {
    /// The tile alone, `[2D, T, T]` (`ComputeBackend::forward_interior`).
    Tile(&'a [f32]),
    /// The whole field, `[2D, side, side]`, the tile at (r, r).
    WithHalo {
        delta: &'a [f32],
        r: usize,
        side: usize,
    },
}

/// Stages one tile: checks its delta (without the halo) for non-finite
/// values, records |delta| per cell, and writes the updated tile and its
/// occupancy into `stage` and `occ`. Cells outside the light cone become
/// vacuum (zeros) whatever the model said.
#[allow(clippy::too_many_arguments)]
fn stage_tile(
    tile: &[f32],
    field: Field<'_>,
    reach: &[u8],
    params: &UpdateParams,
    t: usize,
    stage: &mut [f32],
    occ: &mut [u8],
    summary: &mut [f32],
) -> TileCheck {
    let (area, d2) = (t * t, 2 * params.d_state);
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.resize(d2 * area + area, 0.0);
        let (compact, norm) = scratch.split_at_mut(d2 * area);
        // The tile's delta as whole-tile planes: the update then runs on
        // T * T cells at a time rather than on rows of T.
        let compact: &[f32] = match field {
            Field::Tile(delta) => delta,
            Field::WithHalo { delta, r, side } => {
                for c in 0..d2 {
                    for ly in 0..t {
                        compact[c * area + ly * t..][..t]
                            .copy_from_slice(&delta[c * side * side + (ly + r) * side + r..][..t]);
                    }
                }
                compact
            }
        };
        let run = PlaneRun {
            ptr: compact.as_ptr(),
            stride: area,
        };
        // SAFETY: `compact` holds 2D planes of `area` cells.
        if let Err((i, c)) = unsafe { first_non_finite(run, area, d2) } {
            return TileCheck {
                bad: Some((i / t, i % t, c)),
                count: 0,
            };
        }
        stage.copy_from_slice(tile);
        // SAFETY: `stage` and `compact` hold 2D planes of `area` cells each;
        // `stage` is exclusively borrowed.
        unsafe {
            update_run(
                PlaneRun {
                    ptr: stage.as_mut_ptr(),
                    stride: area,
                },
                run,
                area,
                params,
                norm,
                occ,
            )
        };
        let mut count = 0;
        for i in 0..area {
            if occ[i] != 0 && reach[i] == 0 {
                occ[i] = 0;
                for c in 0..d2 {
                    stage[c * area + i] = 0.0;
                }
            }
            count += occ[i] as u32;
        }
        // With psi after the step, as the dense engine's summary.
        summarize(stage, compact, area, params.d_state, summary);
        TileCheck { bad: None, count }
    })
}

/// The message for matter whose reach leaves the i32 lattice.
fn edge_message(store: &TileStore, slot: usize, r: usize) -> String {
    let (t, area) = (store.t, store.area());
    let (ox, oy) = store.origin(store.keys[slot]);
    let r = r as i64;
    let outside = |v: i64| v - r < i32::MIN as i64 || v + r > i32::MAX as i64;
    let cell = (0..area)
        .filter(|&i| store.occ[slot * area + i] != 0)
        .map(|i| (ox + (i % t) as i64, oy + (i / t) as i64))
        .find(|&(x, y)| outside(x) || outside(y))
        .unwrap_or((ox, oy));
    format!(
        "matter at x = {}, y = {} lies within the receptive radius {r} of the edge of the lattice (coordinates are i32): the step would need cells beyond it; move the pattern inward",
        cell.0, cell.1
    )
}

/// The message for a non-finite model output at lattice cell (x, y).
pub(crate) fn non_finite(x: i64, y: i64, c: usize, d: usize) -> Error {
    Error::NonFinite {
        x,
        y,
        channel: c % d,
        imaginary: c >= d,
    }
}

/// The error of a step that would leave `total` cells of matter.
pub(crate) fn too_much_matter(total: usize, limit: usize) -> Error {
    Error::TooManyCells {
        what: format!("{total} cells of matter after this step (a higher threshold leaves fewer)"),
        limit,
    }
}
