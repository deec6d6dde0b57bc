//! The tiled step of a local model (receptive radius r): find the active
//! tiles, gather each with a halo of r into one batch, run the model on
//! chunks of it from the stepping thread, check the delta, then apply the
//! update in place, tile by tile in parallel.
//!
//! # Strips
//! A field of the batch is not one tile but a strip: up to
//! [`STRIP_TILES`] tiles side by side, `T + 2r` rows by up to `8T + 4r`
//! columns (fewer when a quarter of a chunk holds fewer, or when the step
//! has fewer tiles than 8 full strips).
//! Tiles that neighbour each other in a row of the lattice share their
//! halo columns there (one window of `mT + 2r` columns for a run of m);
//! a run that does not fit the rest of a field goes on in the next, and
//! the next run starts on the next even column after the last (so every
//! tile's output starts on an even column, as in a field of its own:
//! Winograd's 2 x 2 blocks cover a tile's cells the same way wherever it
//! lies). A strip of m tiles has room for two windows' halos (`mT + 4r`)
//! when that lays a step out in fewer columns than room for one (`mT +
//! 2r`): then the field where one run ends and the next begins still holds
//! m tiles (with room for one, those fields, most of a disc of matter,
//! held one tile fewer: the computed cells were 1.10x the tiles' on a disc
//! of 124 tiles, 1.05x with room for two), while runs that fill whole
//! strips (a small disc in strips of 2) waste nothing with room for one.
//! The columns between runs and after the last are zeros. A local
//! model's output at a tile's cells depends only on its window, so a strip
//! computes what separate fields would, while a convolution runs along
//! rows of 128 cells instead of 16 (measured on candle's conv3x3, D = 64:
//! 1.01x the cost per output cell of one 512 x 512 image, against 1.29x
//! on separate 18 x 18 fields). Fields of a model whose sizes must be a
//! multiple of something other than 1 stay one tile each (a strip's width
//! and its windows' columns would not be multiples of it).
//!
//! # Staging, atomic or rolling
//! Each chunk's updated tiles are staged, not written, because tiles still
//! to be gathered read the old values of their neighbours. An atomic step
//! (the default) stages every active tile and commits them all once every
//! chunk has been checked: a failure anywhere changes nothing, and the
//! staging is a second copy of the store (back buffers laid out as its
//! slots), which the commit swaps with it rather than copying each tile
//! back. Staging reads a tile's old values and writes the new ones beside
//! them, never in place. A rolling step
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

/// Tiles side by side in one field of the batch, at most (see "Strips").
pub const STRIP_TILES: usize = 8;

/// Fields a step's tiles are laid out in, at least, when there are as many
/// tiles (see "Strips").
const MIN_FIELDS: usize = 8;

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
    /// Whether this step stages into the ring (`stage`) and writes rows of
    /// tiles as it goes, rather than into `back`.
    rolling: bool,
    /// Rows of one field of the batch: T + 2r, rounded up to the model's
    /// `spatial_multiple` (the extra cells lie beyond the halo); also the
    /// width of one tile's window in it.
    pub side: usize,
    /// Tiles in one strip of a full chunk: up to [`STRIP_TILES`] when
    /// `side` is T + 2r, else 1.
    strip: usize,
    /// Columns of one field in a full chunk: [`strip_width`] of `strip`
    /// tiles.
    pub width: usize,
    /// Columns of one field in this step's batch: `width`, or narrower
    /// when a few tiles would leave a strip mostly empty.
    step_width: usize,
    /// Per entry of `wanted`: its field (numbered from the first of the
    /// step) and the column of the field where its window starts.
    place: Vec<(u32, u32)>,
    /// Per field of the step, its first entry of `wanted`; then the number
    /// of entries.
    field_start: Vec<u32>,
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
    /// A rolling step's staged tiles: a ring of `ring` tiles.
    stage: Vec<f32>,
    stage_occ: Vec<u8>,
    /// An atomic step's staged tiles: planes and masks laid out as the
    /// store's, each tile at its own slot, which the commit swaps with the
    /// store's (see "Staging, atomic or rolling").
    back: Vec<f32>,
    back_occ: Vec<u8>,
    checks: Vec<TileCheck>,
    slot_batch: Vec<u32>,
}

/// Columns of a field of `strip` tiles (see "Strips"): one window of
/// `side` for one; room for m tiles and one window's halo, or two (`two`)
/// for more.
fn strip_width(strip: usize, side: usize, t: usize, r: usize, two: bool) -> usize {
    match (strip, two) {
        (1, _) => side,
        (m, false) => m * t + 2 * r,
        (m, true) => m * t + 4 * r,
    }
}

/// Fields of `floats` values each that `bytes` holds, at least one.
fn fields_in(bytes: usize, floats: usize) -> usize {
    (bytes / (4 * floats)).max(1)
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
    /// Per-thread scratch of staging: a tile's delta as whole-tile planes,
    /// and the update's norms.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread scratch of staging: a tile's occupancy with its halo, the
    /// max filter's rows, and its light cone ([`reach_mask`]).
    static REACH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl LocalBatch {
    /// An empty batch for radius `r`, tiles of side `t` and `d` complex
    /// channels, whose chunks of model input hold at most `forward_bytes`
    /// (a strip is at most a quarter of a chunk, so that small chunks hold
    /// about as many tiles as separate fields would).
    pub fn new(
        r: usize,
        t: usize,
        spatial_multiple: usize,
        d: usize,
        forward_bytes: usize,
    ) -> Self {
        let m = spatial_multiple.max(1);
        let side = (t + 2 * r).div_ceil(m) * m;
        // Tiles per strip: as many as a quarter of one chunk's input holds,
        // at most STRIP_TILES.
        let columns = forward_bytes / (4 * 2 * d.max(1) * side) / 4;
        let fits = (2..=STRIP_TILES)
            .rev()
            .find(|&k| strip_width(k, side, t, r, true) <= columns)
            .unwrap_or(1);
        let strip = if m == 1 { fits } else { 1 };
        Self {
            r,
            rows_up: r.div_ceil(t),
            ring: 0,
            written: 0,
            rolling: false,
            side,
            strip,
            width: strip_width(strip, side, t, r, true),
            step_width: side,
            place: Vec::new(),
            field_start: Vec::new(),
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
            stage: Vec::new(),
            stage_occ: Vec::new(),
            back: Vec::new(),
            back_occ: Vec::new(),
            checks: Vec::new(),
            slot_batch: Vec::new(),
        }
    }

    /// The margin each field's forward drops: `Some(r)` when the backend
    /// can skip the halo's work, so that it returns each field's interior
    /// (`[2D, T, step width - 2r]`, the tiles' cells and the columns between
    /// runs), and the outer halo's cells, which the step drops anyway, are
    /// never computed; `None` when it returns the whole field and staging
    /// reads the tiles out of it.
    pub fn interior_margin(&self, t: usize, backend: &dyn ComputeBackend) -> Option<usize> {
        let r = self.r;
        (r > 0 && self.side == t + 2 * r && backend.computes_interior(r)).then_some(r)
    }

    /// Where a field's delta holds a tile's cells: the shape of the
    /// forward's output per field, given the margin it drops.
    fn output_view(&self, margin: Option<usize>) -> OutputView {
        match margin {
            Some(m) => OutputView {
                rows: self.side - 2 * m,
                cols: self.step_width - 2 * m,
                first: 0,
            },
            None => OutputView {
                rows: self.side,
                cols: self.step_width,
                first: self.r * self.step_width + self.r,
            },
        }
    }

    /// Fields in one full chunk of the model's input: as many as
    /// `forward_bytes` holds, at least one.
    pub fn chunk_fields(&self, d: usize, forward_bytes: usize) -> usize {
        fields_in(forward_bytes, 2 * d * self.side * self.width)
    }

    /// Lays the entries `wanted[from..]` out in strips of up to `strip`
    /// tiles, with room for one window's halo or two, whichever computes
    /// fewer cells (see "Strips"): sets `step_width` and packs.
    fn lay_out(&mut self, from: usize, strip: usize, t: usize) {
        let (side, r) = (self.side, self.r);
        let before = self.field_start.partition_point(|&s| (s as usize) < from);
        let columns = |b: &mut Self, width: usize| {
            b.step_width = width;
            b.pack(from, t);
            (b.field_start.len() - 1 - before) * width
        };
        let (one, two) = (
            strip_width(strip, side, t, r, false),
            strip_width(strip, side, t, r, true),
        );
        let narrow = columns(self, one);
        if two > one && columns(self, two) >= narrow {
            columns(self, one);
        }
    }

    /// Lays the entries `wanted[from..]` out in fields ("Strips" in the
    /// module docs) of `step_width` columns, after the fields of the
    /// entries before `from`: fills `place` and `field_start`.
    fn pack(&mut self, from: usize, t: usize) {
        let (r, side, width) = (self.r, self.side, self.step_width);
        let strips = width > side;
        self.place.truncate(from);
        self.field_start.retain(|&s| (s as usize) < from);
        // Where the last window in the current field ends (0: none yet).
        let mut end = 0;
        for j in from..self.wanted.len() {
            let (x, y) = self.wanted[j];
            let follows = strips && j > from && {
                let (px, py) = self.wanted[j - 1];
                py == y && px as i64 + 1 == x as i64
            };
            let x0 = if follows && end + t <= width {
                // The run goes on: this window overlaps the last by 2r.
                end - 2 * r
            } else {
                let next = end.next_multiple_of(2);
                if strips && end > 0 && next + side <= width {
                    next
                } else {
                    self.field_start.push(j as u32);
                    0
                }
            };
            self.place
                .push((self.field_start.len() as u32 - 1, x0 as u32));
            end = x0 + side;
        }
        self.field_start.push(self.wanted.len() as u32);
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
    /// yet, lays them out in fields, then gathers, forwards and stages them
    /// chunk by chunk of fields (the entries before `from` are already
    /// staged). Writes no tile, except when `rolling` (then `from` is 0):
    /// after each chunk it writes the rows of tiles no later gather reads.
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
        // At least MIN_FIELDS fields when there are that many tiles: the
        // last field of a step is partly empty, which matters when it is
        // one of a few.
        let tiles = (self.wanted.len() - from).max(1);
        let strip = self.strip.min(tiles.div_ceil(MIN_FIELDS));
        self.lay_out(from, strip, t);
        let width = self.step_width;
        let (area, tl) = (store.area(), store.tile_len());
        let b = self.slots.len();
        let fl = 2 * d * side * width;
        let hs = t + 2 * r;
        let margin = self.interior_margin(t, cx.backend);
        let view = self.output_view(margin);
        let dl = 2 * d * view.rows * view.cols;
        // The step's fields from `from` on, in chunks of `chunk` fields.
        let f_from = self.field_start.partition_point(|&s| (s as usize) < from);
        let fields = self.field_start.len() - 1;
        let chunk = fields_in(cx.forward_bytes, fl);
        let chunk = chunk.min((fields - f_from).max(1));
        // Entry j of the batch is staged at j % ring: the entries staged and
        // not yet written are at most `ring` consecutive ones.
        // An atomic step stages into the back buffers, as long as the
        // store's (which may have grown above).
        self.ring = if rolling { self.ring_len(chunk) } else { b };
        self.rolling = rolling;
        if rolling {
            self.stage.resize(self.ring * tl, 0.0);
            self.stage_occ.resize(self.ring * area, 0);
        } else {
            self.back.resize(store.data.len(), 0.0);
            self.back_occ.resize(store.occ.len(), 0);
        }
        self.summary.resize(b * PLANES * area, 0.0);
        self.checks.truncate(from);
        self.checks.resize(b, TileCheck::default());
        self.input.resize(chunk * fl, 0.0);
        self.delta.resize(chunk * dl, 0.0);

        let mut running: usize = self.checks[..from].iter().map(|k| k.count as usize).sum();
        let mut gather = t0.elapsed();
        let (mut forward, mut scatter) = (Duration::ZERO, Duration::ZERO);
        for f0 in (f_from..fields).step_by(chunk) {
            let n = chunk.min(fields - f0);
            let tiles = self.tiles_of(f0, f0 + n);
            let (j0, nt) = (tiles.start, tiles.len());
            let tg = Instant::now();
            let st: &TileStore = store;
            let (wanted, place, field_start) = (&self.wanted, &self.place, &self.field_start);
            cx.pool.run(|| {
                self.input[..n * fl]
                    .par_chunks_mut(fl)
                    .zip(
                        field_start[f0..f0 + n]
                            .par_iter()
                            .zip(&field_start[f0 + 1..]),
                    )
                    .for_each(|(field, (&s, &e))| {
                        let (s, e) = (s as usize, e as usize);
                        let window = Window { side, width };
                        gather_field(st, &wanted[s..e], &place[s..e], cx, r, window, field);
                    });
            });
            gather += tg.elapsed();

            // The forward runs here, on the stepping thread, never in a pool.
            let tf = Instant::now();
            let (input, shape) = (
                &self.input[..n * fl],
                BatchShape::new(n, 2 * d, side, width),
            );
            match margin {
                Some(m) => cx
                    .backend
                    .forward_interior(input, shape, m, &mut self.delta[..n * dl]),
                None => cx.backend.forward(input, shape, &mut self.delta[..n * dl]),
            }
            .map_err(|e| cx.fail(e))?;
            forward += tf.elapsed();

            let ts = Instant::now();
            let params = cx.params;
            let to = if rolling {
                StageTo {
                    planes: self.stage.as_mut_ptr(),
                    occ: self.stage_occ.as_mut_ptr(),
                    ring: Some(self.ring),
                    tl,
                    area,
                }
            } else {
                StageTo {
                    planes: self.back.as_mut_ptr(),
                    occ: self.back_occ.as_mut_ptr(),
                    ring: None,
                    tl,
                    area,
                }
            };
            let (delta, slots) = (&self.delta[..n * dl], &self.slots);
            cx.pool.run(|| {
                self.summary[j0 * PLANES * area..(j0 + nt) * PLANES * area]
                    .par_chunks_mut(PLANES * area)
                    .zip(self.checks[j0..j0 + nt].par_iter_mut())
                    .enumerate()
                    .for_each(|(i, (summary, check))| {
                        let j = j0 + i;
                        let (slot, key, (f, x0)) = (slots[j] as usize, wanted[j], place[j]);
                        let tile = &st.data[slot * tl..][..tl];
                        // SAFETY: the entries of one chunk have distinct
                        // slots and, in a ring at least as long as the
                        // chunk, distinct places; nothing else reads or
                        // writes the staging buffers during the chunk.
                        let (stage, occ) = unsafe { to.at(j, slot) };
                        let field = &delta[(f as usize - f0) * dl..][..dl];
                        let cells = TileDelta {
                            delta: &field[view.first + x0 as usize..],
                            plane: view.rows * view.cols,
                            row: view.cols,
                        };
                        REACH.with_borrow_mut(|scratch| {
                            // Read now, not at the gather: a rolling step
                            // has written no row this tile reads.
                            scratch.resize(hs * hs + hs * t + area, 0);
                            let (halo, rest) = scratch.split_at_mut(hs * hs);
                            let (hmax, reach) = rest.split_at_mut(hs * t);
                            gather_occupancy(st, key, r, halo);
                            reach_mask(halo, hmax, reach, t, r);
                            *check =
                                stage_tile(tile, cells, reach, &params, t, stage, occ, summary);
                        })
                    })
            });
            if let Some((j, (ly, lx, c))) = self.checks[j0..j0 + nt]
                .iter()
                .enumerate()
                .find_map(|(j, k)| k.bad.map(|bad| (j0 + j, bad)))
            {
                let (ox, oy) = store.origin(self.wanted[j]);
                return Err(cx.fail(non_finite(ox + lx as i64, oy + ly as i64, c, d)));
            }
            // Counts are never negative, so a running total past the limit
            // fails the step as soon as it is seen (before a rolling write).
            running += self.checks[j0..j0 + nt]
                .iter()
                .map(|k| k.count as usize)
                .sum::<usize>();
            if running > cx.max_cells {
                return Err(cx.fail(too_much_matter(running, cx.max_cells)));
            }
            if rolling && j0 + nt < b {
                let upto = self.writable(j0 + nt);
                self.write(store, cx, upto);
            }
            scatter += ts.elapsed();
        }

        Ok(Staged {
            gather,
            forward,
            scatter,
            total: running,
            model_cells: (fields - f_from) * view.rows * view.cols,
        })
    }

    /// The entries of `wanted` laid out in fields `f0..f1`.
    fn tiles_of(&self, f0: usize, f1: usize) -> std::ops::Range<usize> {
        self.field_start[f0] as usize..self.field_start[f1] as usize
    }

    /// How many staged tiles to hold for a rolling step in chunks of
    /// `chunk` fields: the most that are staged and not yet written at any
    /// time (at most the whole batch).
    fn ring_len(&self, chunk: usize) -> usize {
        let b = self.wanted.len();
        let fields = self.field_start.len() - 1;
        let (mut need, mut written) = (0, 0);
        for f0 in (0..fields).step_by(chunk) {
            let end = self.tiles_of(f0, (f0 + chunk).min(fields)).end;
            need = need.max(end - written);
            if end < b {
                written = self.writable(end);
            }
        }
        need.clamp(1, b.max(1))
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
        let (stage, stage_occ) = (&self.stage, &self.stage_occ);
        let slot_batch = &mut self.slot_batch;
        cx.pool.run(|| {
            store.commit(slots, slot_batch, |j, tile, occ, _| {
                let q = (lo + j) % ring;
                tile.copy_from_slice(&stage[q * tl..(q + 1) * tl]);
                occ.copy_from_slice(&stage_occ[q * area..(q + 1) * area]);
            })
        });
        let checks = &self.checks[lo..upto];
        store.set_counts(slots, |j| checks[j].count);
        self.written = upto;
    }

    /// Writes the staged tiles not yet written: the end of a successful
    /// step.
    fn commit(&mut self, store: &mut TileStore, cx: &StepContext, staged: Staged) -> StepStats {
        let ts = Instant::now();
        let b = self.slots.len();
        if self.rolling {
            self.write(store, cx, b);
        } else {
            cx.pool.run(|| {
                store.swap_in(
                    &self.slots,
                    &mut self.back,
                    &mut self.back_occ,
                    &mut self.slot_batch,
                )
            });
            let checks = &self.checks;
            store.set_counts(&self.slots, |j| checks[j].count);
            self.written = b;
        }
        StepStats {
            step: cx.step + 1,
            occupied_cells: staged.total,
            active_tiles: b,
            staged_tiles: self.ring,
            model_cells: staged.model_cells,
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
    /// Cells the model computed.
    model_cells: usize,
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
            model_cells: self.model_cells + early.model_cells,
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

/// Where staging writes an entry's updated planes and mask: a rolling
/// step's ring (entry j at `j % ring`) or an atomic step's back buffers
/// (at the entry's slot, as in the store).
#[derive(Clone, Copy)]
struct StageTo {
    planes: *mut f32,
    occ: *mut u8,
    /// The ring's length, or `None` for the back buffers.
    ring: Option<usize>,
    tl: usize,
    area: usize,
}

// SAFETY: a `StageTo` is shared by the workers of one chunk's staging, each
// of which writes only its own entry's place (see `at`).
unsafe impl Send for StageTo {}
unsafe impl Sync for StageTo {}

impl StageTo {
    /// The planes and mask that entry `j`, in `slot`, is staged into.
    ///
    /// # Safety
    /// The place must lie within the buffers (a ring of `ring` tiles, or
    /// back buffers as long as the store), and no other reference to it may
    /// live meanwhile: distinct entries of one chunk have distinct slots,
    /// and distinct places in a ring at least as long as the chunk.
    #[allow(clippy::mut_from_ref)]
    unsafe fn at(&self, j: usize, slot: usize) -> (&mut [f32], &mut [u8]) {
        let k = self.ring.map_or(slot, |ring| j % ring);
        // SAFETY: the caller's promise.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.planes.add(k * self.tl), self.tl),
                std::slice::from_raw_parts_mut(self.occ.add(k * self.area), self.area),
            )
        }
    }
}

/// A field of the batch: `side` rows of `width` columns per plane.
#[derive(Clone, Copy)]
struct Window {
    side: usize,
    width: usize,
}

/// A rectangle of a field and where its values come from: `rows` rows of
/// `len` cells at the field's (`fy`, `fx`), from the tile in `slot` at its
/// (`ly`, `lx`); from no tile (vacuum) or from nothing (zeros between
/// windows) when `slot` is `None`. (`x`, `y`): its first cell in the
/// lattice.
#[derive(Clone, Copy)]
struct Block {
    slot: Option<usize>,
    vacuum: bool,
    fy: usize,
    fx: usize,
    ly: usize,
    lx: usize,
    rows: usize,
    len: usize,
    x: i64,
    y: i64,
}

thread_local! {
    /// Per-thread scratch of the gather: the blocks of one field.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Copies the windows of the tiles `keys` (each `side` x `side`: its cells
/// plus a halo of r, starting r cells up and left of the tile), placed as
/// `place` says, into `field`, with vacuum where there is no matter and
/// zeros in the columns no window covers. A window that goes on a run
/// skips the columns the last one wrote.
///
/// Plane by plane: each plane of the field (a few KiB) is written whole
/// before the next, rather than every plane once per tile.
fn gather_field(
    store: &TileStore,
    keys: &[TileKey],
    place: &[(u32, u32)],
    cx: &StepContext,
    r: usize,
    window: Window,
    field: &mut [f32],
) {
    let (t, d, area) = (store.t as i64, store.d, store.area());
    let (tl, side, width) = (store.tile_len(), window.side, window.width);
    let plane = side * width;
    BLOCKS.with_borrow_mut(|blocks| {
        blocks.clear();
        let gap = |fx: usize, len: usize| Block {
            slot: None,
            vacuum: false,
            fy: 0,
            fx,
            ly: 0,
            lx: 0,
            rows: side,
            len,
            x: 0,
            y: 0,
        };
        let mut end: usize = 0;
        for (&key, &(_, x0)) in keys.iter().zip(place) {
            let x0 = x0 as usize;
            // Columns already written by the window before, on this run.
            let skip = end.saturating_sub(x0);
            if x0 > end {
                blocks.push(gap(end, x0 - end));
            }
            let (ox, oy) = store.origin(key);
            let corner = (ox - r as i64 + skip as i64, oy - r as i64);
            tile_blocks(store, corner, side - skip, side, |b| {
                blocks.push(Block {
                    fx: x0 + skip + b.fx,
                    ..b
                })
            });
            end = x0 + side;
        }
        if end < width {
            blocks.push(gap(end, width - end));
        }
        let t = t as usize;
        for (c, dst) in field.chunks_exact_mut(plane).enumerate().take(2 * d) {
            for b in blocks.iter() {
                let rows = dst[b.fy * width..].chunks_mut(width).take(b.rows);
                match b.slot {
                    Some(s) => {
                        let src = &store.data[s * tl + c * area + b.ly * t + b.lx..];
                        for (k, row) in rows.enumerate() {
                            let from = &src[k * t..][..b.len];
                            if b.len == 1 {
                                row[b.fx] = from[0];
                            } else {
                                row[b.fx..][..b.len].copy_from_slice(from);
                            }
                        }
                    }
                    None => rows.for_each(|row| row[b.fx..][..b.len].fill(0.0)),
                }
            }
        }
        if cx.vacuum.is_zero() {
            return;
        }
        for b in blocks.iter().filter(|b| b.vacuum) {
            for k in 0..b.rows {
                let at = (b.fy + k) * width + b.fx;
                let occ = b
                    .slot
                    .map(|s| &store.occ[s * area + (b.ly + k) * t + b.lx..][..b.len]);
                for i in 0..b.len {
                    if occ.is_some_and(|o| o[i] != 0) {
                        continue;
                    }
                    let (x, y) = (b.x + i as i64, b.y + k as i64);
                    for c in 0..d {
                        let (re, im) = cx.vacuum.value(cx.seed, x, y, cx.step, c);
                        field[c * plane + at + i] = re;
                        field[(c + d) * plane + at + i] = im;
                    }
                }
            }
        }
    });
}

/// Copies the occupancy of the tile `key` and its halo of r (`(T + 2r)^2`
/// cells, starting r cells up and left of the tile) into `halo`, 0 where
/// there is no tile.
fn gather_occupancy(store: &TileStore, key: TileKey, r: usize, halo: &mut [u8]) {
    let (t, area) = (store.t, store.area());
    let hs = t + 2 * r;
    let (ox, oy) = store.origin(key);
    tile_blocks(store, (ox - r as i64, oy - r as i64), hs, hs, |b| {
        for k in 0..b.rows {
            let h = &mut halo[(b.fy + k) * hs + b.fx..][..b.len];
            match b.slot {
                Some(s) => {
                    h.copy_from_slice(&store.occ[s * area + (b.ly + k) * t + b.lx..][..b.len])
                }
                None => h.fill(0),
            }
        }
    });
}

/// Cuts the `w` x `h` rectangle of the lattice whose first cell is
/// `corner` into its parts within one tile each, and hands each to `f` as
/// a [`Block`] placed relative to the rectangle (`fx`, `fy`), with the
/// tile's slot (`None` where there is none) and `vacuum` set.
fn tile_blocks(
    store: &TileStore,
    corner: (i64, i64),
    w: usize,
    h: usize,
    mut f: impl FnMut(Block),
) {
    let t = store.t as i64;
    let (fx0, fy0) = corner;
    let (fx1, fy1) = (fx0 + w as i64, fy0 + h as i64);
    for ty in fy0.div_euclid(t)..=(fy1 - 1).div_euclid(t) {
        let (ya, yb) = (fy0.max(ty * t), fy1.min((ty + 1) * t));
        for tx in fx0.div_euclid(t)..=(fx1 - 1).div_euclid(t) {
            let (xa, xb) = (fx0.max(tx * t), fx1.min((tx + 1) * t));
            f(Block {
                slot: store.key_in_range(tx, ty).and_then(|k| store.slot(k)),
                vacuum: true,
                fy: (ya - fy0) as usize,
                fx: (xa - fx0) as usize,
                ly: (ya - ty * t) as usize,
                lx: (xa - tx * t) as usize,
                rows: (yb - ya) as usize,
                len: (xb - xa) as usize,
                x: xa,
                y: ya,
            });
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

/// The shape of one field's delta as the forward returns it, and where a
/// tile whose window starts at column 0 has its first cell.
#[derive(Clone, Copy)]
struct OutputView {
    rows: usize,
    cols: usize,
    first: usize,
}

/// One tile's delta within its field's: `2D` planes of `plane` values,
/// the tile's T x T cells in rows of `row` values from the first.
#[derive(Clone, Copy)]
struct TileDelta<'a> {
    delta: &'a [f32],
    plane: usize,
    row: usize,
}

/// Stages one tile: checks its delta (without the halo) for non-finite
/// values, records |delta| per cell, and writes the updated tile (read from
/// `tile`, which stays as it was) and its occupancy into `stage` and `occ`.
/// Cells outside the light cone become vacuum (zeros) whatever the model
/// said.
#[allow(clippy::too_many_arguments)]
fn stage_tile(
    tile: &[f32],
    cells: TileDelta<'_>,
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
        // T * T cells at a time rather than on rows of T (measured: row by
        // row, staging took 1.6x as long). A field of one tile without its
        // halo already is.
        let TileDelta { delta, plane, row } = cells;
        let compact: &[f32] = if row == t && plane == area {
            &delta[..d2 * area]
        } else {
            for c in 0..d2 {
                for ly in 0..t {
                    compact[c * area + ly * t..][..t]
                        .copy_from_slice(&delta[c * plane + ly * row..][..t]);
                }
            }
            compact
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
        // SAFETY: `stage`, `tile` and `compact` hold 2D planes of `area`
        // cells each; `stage` is exclusively borrowed, so apart from both.
        unsafe {
            update_run(
                PlaneRun {
                    ptr: stage.as_mut_ptr(),
                    stride: area,
                },
                run,
                Some(PlaneRun {
                    ptr: tile.as_ptr(),
                    stride: area,
                }),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch for tiles of 16, radius 1, D = 64 and the default chunk,
    /// with `wanted` as given, laid out from its first entry.
    fn packed(wanted: &[TileKey], step_width: usize) -> LocalBatch {
        let mut b = LocalBatch::new(1, 16, 1, 64, crate::sparse::DEFAULT_FORWARD_BYTES);
        assert_eq!((b.side, b.width), (18, 8 * 16 + 4));
        b.step_width = step_width;
        b.wanted = wanted.to_vec();
        b.pack(0, 16);
        b
    }

    #[test]
    fn a_run_shares_its_halo_columns_and_goes_on_in_the_next_field() {
        // A run of 10 tiles, then a tile of the next row.
        let mut wanted: Vec<TileKey> = (0..10).map(|x| (x, 0)).collect();
        wanted.push((0, 1));
        let b = packed(&wanted, 132);
        // Eight windows overlapping by 2 columns fill the first field
        // (16 * 8 + 2 = 130 of 132); the run's last two go on in the second.
        let first: Vec<(u32, u32)> = (0..8).map(|k| (0, 16 * k)).collect();
        assert_eq!(b.place[..8], first[..]);
        assert_eq!(b.place[8..10], [(1, 0), (1, 16)]);
        // The next row's tile starts on the next even column after the
        // run's window (34), in the same field.
        assert_eq!(b.place[10], (1, 34));
        assert_eq!(b.field_start, [0, 8, 11]);
    }

    #[test]
    fn a_window_that_does_not_fit_starts_a_new_field() {
        // Separate tiles (not neighbours): 7 windows of 18 columns fit in
        // 132 (126), the eighth does not.
        let wanted: Vec<TileKey> = (0..8).map(|x| (2 * x, 0)).collect();
        let b = packed(&wanted, 132);
        let first: Vec<(u32, u32)> = (0..7).map(|k| (0, 18 * k)).collect();
        assert_eq!(b.place[..7], first[..]);
        assert_eq!(b.place[7], (1, 0));
        // Every window starts on an even column, within its field.
        assert!(b
            .place
            .iter()
            .all(|&(_, x0)| x0 % 2 == 0 && x0 as usize + 18 <= 132));
    }

    #[test]
    fn the_field_where_one_run_ends_and_the_next_begins_holds_eight_tiles() {
        // Two runs of 4 tiles in two rows: windows of 66 columns each, on
        // columns 0 and 66, fill one field of 132.
        let wanted: Vec<TileKey> = (0..8).map(|k| (k % 4, k / 4)).collect();
        let b = packed(&wanted, 132);
        let second = [(0, 66), (0, 82), (0, 98), (0, 114)];
        assert_eq!(b.place[..4], [(0, 0), (0, 16), (0, 32), (0, 48)]);
        assert_eq!(b.place[4..], second);
        assert_eq!(b.field_start, [0, 8]);
    }

    #[test]
    fn a_step_takes_room_for_two_halos_only_where_it_saves_columns() {
        let mut b = LocalBatch::new(1, 16, 1, 64, crate::sparse::DEFAULT_FORWARD_BYTES);
        // Two runs of 4: one field of 132 columns, against two of 130
        // (the second run's last tile does not fit the first).
        b.wanted = (0..8).map(|k| (k % 4, k / 4)).collect();
        b.lay_out(0, 8, 16);
        assert_eq!((b.step_width, &b.field_start[..]), (132, &[0, 8][..]));
        // Pairs of neighbours in strips of 2: one pair a field either way,
        // so 34 columns, not 36.
        b.wanted = vec![(0, 0), (1, 0), (3, 0), (4, 0)];
        b.lay_out(0, 2, 16);
        assert_eq!((b.step_width, &b.field_start[..]), (34, &[0, 2, 4][..]));
    }

    #[test]
    fn fields_of_one_tile_lay_out_one_window_each() {
        let wanted: Vec<TileKey> = (0..4).map(|x| (x, 0)).collect();
        let b = packed(&wanted, 18);
        assert_eq!(b.place, [(0, 0), (1, 0), (2, 0), (3, 0)]);
        assert_eq!(b.field_start, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_model_with_a_spatial_multiple_keeps_one_tile_per_field() {
        let b = LocalBatch::new(1, 16, 8, 64, crate::sparse::DEFAULT_FORWARD_BYTES);
        assert_eq!((b.side, b.width), (24, 24));
        // Even where T + 2r is a multiple (18 of 6): a strip of 18 + 16k
        // columns would not be.
        let b = LocalBatch::new(1, 16, 6, 64, crate::sparse::DEFAULT_FORWARD_BYTES);
        assert_eq!((b.side, b.width), (18, 18));
    }

    #[test]
    fn a_chunk_holds_at_least_four_strips() {
        // 4 x 2D x 18 bytes per column: a chunk of 4 strips of 36 columns
        // (two tiles and two windows' halos).
        let b = LocalBatch::new(1, 16, 1, 2, 4 * 4 * 18 * 4 * 36);
        assert_eq!(b.width, 36);
        assert_eq!(b.chunk_fields(2, 4 * 4 * 18 * 4 * 36), 4);
        // Too small for two tiles a strip: one tile per field.
        assert_eq!(LocalBatch::new(1, 16, 1, 2, 4 * 4 * 18 * 4 * 35).width, 18);
    }
}
