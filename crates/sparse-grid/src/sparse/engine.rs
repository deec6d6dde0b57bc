//! [`SparseEngine`]: the public face of the sparse lattice.

use std::sync::Arc;

use engine_api::{BatchShape, ComputeBackend, Error, Result};

use super::local::{LocalBatch, SharedStep, StepContext};
use super::query::{occupied_in, slots_overlapping, CellBox, CellValues};
use super::tiles::TileStore;
use super::window::WindowBatch;
use super::{Field, SparseOptions};
use crate::pool::LoopPool;
use crate::recurrent::Memory;
use crate::state::check_size;
use crate::summary::{summarize, ENERGY, PLANES};
use crate::update::UpdateParams;
use crate::{DenseState, StepStats, DEFAULT_MAX_CELLS};

/// What a step needs besides the tiles and the batch, borrowing only the
/// engine's fields it names (the tiles and the batch are borrowed apart).
macro_rules! context {
    ($e:ident) => {
        StepContext {
            backend: $e.backend.as_ref(),
            pool: &$e.pool,
            params: $e.params,
            vacuum: $e.options.vacuum,
            seed: $e.options.seed,
            step: $e.step,
            max_cells: $e.options.max_cells,
            forward_bytes: $e.options.forward_bytes,
            atomic: $e.options.atomic_steps,
        }
    };
}

/// How a step runs, decided by the model's receptive radius.
// One per engine, so its size does not matter; boxing would add a hop to
// every step's buffers.
#[allow(clippy::large_enum_variant)]
enum Mode {
    /// A local model: tiles with halos, batched.
    Local(LocalBatch),
    /// A global model: one dense window.
    Global(WindowBatch),
}

/// An unbounded lattice (i32 per axis) of cells holding D complex channels,
/// stored as tiles, stepped by a [`ComputeBackend`] at a cost proportional to
/// its matter. See the [module docs](super) for what a step computes.
pub struct SparseEngine {
    backend: Arc<dyn ComputeBackend>,
    options: SparseOptions,
    params: UpdateParams,
    tiles: TileStore,
    step: u64,
    mode: Mode,
    /// Where the step's parallel sections run.
    pool: LoopPool,
    /// The step that failed part-way with atomic steps off, leaving the
    /// lattice part stepped: nothing steps or exports it after that.
    torn: Option<u64>,
}

impl SparseEngine {
    /// An empty lattice (all vacuum) at step 0, stepped by `backend`.
    pub fn new(backend: Arc<dyn ComputeBackend>, options: SparseOptions) -> Result<Self> {
        options.validate()?;
        let spec = backend.spec();
        // The memory is kept over the global window; a recurrent law with a
        // receptive radius would step tile by tile, where it has no place.
        if spec.is_recurrent() && !spec.is_global() {
            return Err(Error::InvalidArgument(format!(
                "model `{}` keeps memory but has receptive radius {:?}: the sparse engine keeps \
                 memory only for global laws (receptive_radius null); use --engine dense",
                spec.name,
                spec.receptive_radius.unwrap_or_default()
            )));
        }
        // A recurrent law's memory grid must line up with every window, whose
        // origins are multiples of the tile (crate::recurrent).
        if let Some(t) = spec
            .memory
            .iter()
            .find(|t| !options.tile.is_multiple_of(t.stride.max(1)))
        {
            return Err(Error::InvalidArgument(format!(
                "tile {} is not a multiple of the stride {} of model `{}`'s memory `{}`: \
                 use a tile of at least {} (--tile)",
                options.tile, t.stride, spec.name, t.name, t.stride
            )));
        }
        let params = UpdateParams {
            d_state: spec.d_state,
            rule: spec.update,
            gamma: options.gamma,
            threshold: Some(options.threshold),
        };
        let mode = match spec.receptive_radius {
            Some(r) => Mode::Local(LocalBatch::new(
                r,
                options.tile,
                spec.spatial_multiple,
                spec.d_state,
                options.forward_bytes,
            )),
            None => Mode::Global(WindowBatch::new(spec.spatial_multiple)),
        };
        Ok(Self {
            tiles: TileStore::new(options.tile, spec.d_state),
            backend,
            options,
            params,
            step: 0,
            mode,
            pool: LoopPool::default(),
            torn: None,
        })
    }

    /// Runs this engine's own parallel loops (gather, update, scatter) in
    /// `pool` instead of rayon's global pool. Only those loops run inside the
    /// pool: `forward` is still called from the thread that calls
    /// [`SparseEngine::step`], so the backend's threads never nest in it.
    /// Results do not depend on the pool.
    pub fn with_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool.set(Some(pool));
        self
    }

    /// Sets (`Some`) or clears (`None`: rayon's global pool) the pool of
    /// this engine's own parallel loops; see [`SparseEngine::with_pool`].
    pub fn set_pool(&mut self, pool: Option<Arc<rayon::ThreadPool>>) {
        self.pool.set(pool);
    }

    /// The pool this engine's own parallel loops run in, when it was given one.
    pub fn pool(&self) -> Option<&Arc<rayon::ThreadPool>> {
        self.pool.get()
    }

    /// The backend this engine calls.
    pub fn backend(&self) -> &Arc<dyn ComputeBackend> {
        &self.backend
    }

    /// The decay term of the next steps.
    pub fn gamma(&self) -> f32 {
        self.params.gamma
    }

    /// Changes the decay term from the next step on; an invalid value
    /// changes nothing.
    pub fn set_gamma(&mut self, gamma: f32) -> Result<()> {
        crate::update::check_gamma(gamma)?;
        self.params.gamma = gamma;
        self.options.gamma = gamma;
        Ok(())
    }

    /// The options the engine was made with.
    pub fn options(&self) -> &SparseOptions {
        &self.options
    }

    /// Complex channels per cell (the model's d_state).
    pub fn d_state(&self) -> usize {
        self.tiles.d
    }

    /// The batch a local law's step hands the backend in one full chunk:
    /// as many strips of tiles with their halo as
    /// [`SparseOptions::forward_bytes`] holds (a step's last chunk may hold
    /// fewer, and a step of a few tiles narrower strips). `None` for a
    /// global law, which steps one window.
    pub fn full_chunk(&self) -> Option<BatchShape> {
        match &self.mode {
            Mode::Local(b) => {
                let d = self.d_state();
                let n = b.chunk_fields(d, self.options.forward_bytes);
                Some(BatchShape::new(n, 2 * d, b.side, b.width))
            }
            Mode::Global(_) => None,
        }
    }

    /// The margin a local law's forward drops from each field of a chunk
    /// (`ComputeBackend::forward_interior`): `Some(r)` when the backend
    /// computes the tiles alone, without the halo; `None` when it returns
    /// whole fields of [`SparseEngine::full_chunk`]'s shape, and for a
    /// global law.
    pub fn chunk_margin(&self) -> Option<usize> {
        match &self.mode {
            Mode::Local(b) => b.interior_margin(self.tiles.t, self.backend.as_ref()),
            Mode::Global(_) => None,
        }
    }

    /// True when the model is global and steps run on one dense window.
    pub fn is_global(&self) -> bool {
        matches!(self.mode, Mode::Global(_))
    }

    /// A recurrent law's memory and the window it is laid out for (the
    /// window's first cell holds the memory's reduced cell (0, 0)): the
    /// memory of the last successful step, or the one imported. `None`
    /// for a law without memory, or before the first step or import (the
    /// first step then starts from zeros). How the memory follows a window
    /// that moves or grows: [`crate::recurrent`].
    pub fn memory(&self) -> Option<(&Memory, CellBox)> {
        match &self.mode {
            Mode::Global(g) => g.memory_window.map(|w| (&g.memory, w)),
            Mode::Local(_) => None,
        }
    }

    /// Steps taken (or set by [`SparseEngine::import`]).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Sets the step counter (it keys the harmonic vacuum's noise).
    pub fn set_step_count(&mut self, step: u64) {
        self.step = step;
    }

    /// Cells holding matter.
    pub fn occupied_count(&self) -> usize {
        self.tiles.occupied
    }

    /// Tiles holding matter.
    pub fn tile_count(&self) -> usize {
        self.tiles.map.len()
    }

    /// Slots in the tile slab, live or free. The slab reuses freed slots and
    /// never shrinks, so this is the engine's high-water mark of tiles.
    pub fn tile_slots(&self) -> usize {
        self.tiles.slots()
    }

    /// Makes (x, y) matter holding `values` (one (re, im) per channel, taken
    /// as given: the next step normalises). Fails, changing nothing, on a
    /// wrong channel count, a non-finite value, or when a new cell would
    /// exceed `max_cells`.
    pub fn insert(&mut self, x: i32, y: i32, values: &[(f32, f32)]) -> Result<()> {
        crate::check_cell_values(x, y, values, self.d_state())?;
        let (key, i) = self.tiles.locate(x, y);
        let present = self
            .tiles
            .slot(key)
            .is_some_and(|s| self.tiles.is_occupied(s, i));
        if !present {
            self.check_room(1)?;
        }
        let (s, _) = self.tiles.get_or_create(key);
        self.tiles.set_cell(s, i, values.iter().copied());
        Ok(())
    }

    /// The values at (x, y), or `None` for vacuum.
    pub fn get(&self, x: i32, y: i32) -> Option<CellValues<'_>> {
        let (key, i) = self.tiles.locate(x, y);
        let s = self.tiles.slot(key)?;
        self.tiles
            .is_occupied(s, i)
            .then(|| CellValues::new(&self.tiles, s, i))
    }

    /// Makes (x, y) vacuum; returns the values it held, if it was matter.
    pub fn remove(&mut self, x: i32, y: i32) -> Option<Vec<(f32, f32)>> {
        let old = self.get(x, y)?.to_vec();
        let (key, i) = self.tiles.locate(x, y);
        let s = self.tiles.slot(key)?;
        self.tiles.clear_cell(s, i);
        if self.tiles.count[s] == 0 {
            self.tiles.release(s);
        }
        Some(old)
    }

    /// Writes the occupied cells of `state` at its origin, leaving the rest
    /// of the lattice as it is; returns the cells written. Fails, changing
    /// nothing, when the state reaches past the i32 lattice, has another
    /// d_state, holds a non-finite value in an occupied cell, or would
    /// exceed `max_cells`. A recurrent law's memory stays as it is: the
    /// state's memory, if any, is not read ([`SparseEngine::import`] reads it).
    pub fn insert_dense(&mut self, state: &DenseState) -> Result<usize> {
        let area = self.check_dense(state)?;
        let (mut written, mut new) = (0usize, 0usize);
        for_each_occupied(state, |gx, gy, _| {
            written += 1;
            new += self.get(gx, gy).is_none() as usize;
        });
        self.check_room(new)?;
        self.write_dense(state, area, false);
        Ok(written)
    }

    /// Replaces the lattice inside `state`'s box with `state`: its occupied
    /// cells become matter, its other cells vacuum; the step counter becomes
    /// `state.step`. Fails, changing nothing, as [`SparseEngine::insert_dense`].
    ///
    /// A recurrent law takes the state's memory, if it has one, as laid
    /// out from [`DenseState::memory_origin`] (the state's origin when
    /// `None`, as in a dense file) over the cells its tensors cover; the
    /// next step lays it out for its own window by the overlap rule
    /// ([`crate::recurrent`]). A state without memory leaves the engine's
    /// memory as it is.
    pub fn import(&mut self, state: &DenseState) -> Result<()> {
        let area = self.check_dense(state)?;
        let memory = self.imported_memory(state)?;
        let inside = self.cells_in(area).count();
        let incoming = state.occupied().iter().filter(|&&o| o != 0).count();
        let after = self.tiles.occupied - inside + incoming;
        if after > self.options.max_cells {
            return Err(self.too_many(after));
        }
        self.write_dense(state, area, true);
        self.step = state.step;
        if let (Some((m, window)), Mode::Global(g)) = (memory, &mut self.mode) {
            g.memory = m;
            g.memory_window = Some(window);
        }
        Ok(())
    }

    /// The memory `state` brings for this engine's law, with the window it
    /// is laid out for; `None` when it brings none. Checks everything
    /// import needs, so that import changes nothing on error.
    fn imported_memory(&self, state: &DenseState) -> Result<Option<(Memory, CellBox)>> {
        if state.memory.is_empty() {
            return Ok(None);
        }
        let spec = self.backend.spec();
        let memory = state.memory.clone().adopt_grid(spec)?;
        let (x, y) = state.memory_origin.unwrap_or(state.origin);
        // Windows start on multiples of the tile, so the memory must start
        // on a multiple of each stride to line up with them.
        if let Some(t) = spec.memory.iter().find(|t| {
            let s = t.stride.max(1) as i64;
            (x as i64).rem_euclid(s) != 0 || (y as i64).rem_euclid(s) != 0
        }) {
            return Err(Error::InvalidArgument(format!(
                "memory `{}` lies from ({x}, {y}), off the sparse engine's grid of {}-cell steps: \
                 give the state an origin that is a multiple of {}",
                t.name, t.stride, t.stride
            )));
        }
        let (h, w) = memory.extent(spec);
        let window = CellBox::from_origin(x, y, w.max(1), h.max(1))?;
        Ok(Some((memory, window)))
    }

    /// The cells of `area` as a [`DenseState`]: planes, occupancy mask,
    /// origin (the box's first cell) and the step counter; vacuum is zero.
    /// A recurrent law's memory comes with it whole ([`SparseEngine::memory`]),
    /// with [`DenseState::memory_origin`] saying where it lies, so that
    /// [`SparseEngine::import`] of the export resumes the run exactly.
    pub fn export(&self, area: CellBox) -> Result<DenseState> {
        let mut out = self.export_cells(area)?;
        if let Some((memory, window)) = self.memory() {
            out.memory = memory.clone();
            out.memory_origin = Some((window.min_x, window.min_y));
        }
        Ok(out)
    }

    /// The cells of `area` as [`SparseEngine::export`] gives them, without
    /// a recurrent law's memory: what pictures, readouts and tools read,
    /// so that they do not copy the memory each time.
    pub fn export_cells(&self, area: CellBox) -> Result<DenseState> {
        self.check_whole()?;
        area.check("export")?;
        let (w, d) = (area.width(), self.d_state());
        let mut out = DenseState::zeros(area.height(), w, d)?;
        out.origin = (area.min_x, area.min_y);
        out.step = self.step;
        let n = out.cells();
        let (planes, mask) = out.split_mut();
        for (x, y, v) in self.cells_in(area) {
            let i = (y as i64 - area.min_y as i64) as usize * w
                + (x as i64 - area.min_x as i64) as usize;
            mask[i] = 1;
            for (c, (re, im)) in v.iter().enumerate() {
                planes[c * n + i] = re;
                planes[(c + d) * n + i] = im;
            }
        }
        Ok(out)
    }

    /// The tile coordinates (cell / T) of every tile holding matter, in no
    /// particular order.
    pub fn tile_keys(&self) -> impl Iterator<Item = (i32, i32)> + '_ {
        self.tiles.live_slots().map(|s| self.tiles.keys[s])
    }

    /// Appends every cell of matter inside `area` to `out` as
    /// [`ENCODED_HEADER`] + 2D f32: x and y (their bits), then the real and
    /// the imaginary parts of each channel; returns the cells appended.
    /// The form in which processes sharing a lattice send each other cells
    /// ([`SparseEngine::insert_encoded`]).
    pub fn encode_cells(&self, area: CellBox, out: &mut Vec<f32>) -> usize {
        self.encode_cells_where(area, out, |_, _| true)
    }

    /// [`SparseEngine::encode_cells`] of the cells of `area` for which
    /// `keep(x, y)` is true (a halo strip: those near another process's
    /// tiles).
    pub fn encode_cells_where(
        &self,
        area: CellBox,
        out: &mut Vec<f32>,
        keep: impl Fn(i32, i32) -> bool,
    ) -> usize {
        let mut n = 0;
        for (x, y, v) in self.cells_in(area).filter(|&(x, y, _)| keep(x, y)) {
            out.push(f32::from_bits(x as u32));
            out.push(f32::from_bits(y as u32));
            out.extend(v.iter().map(|(re, _)| re));
            out.extend(v.iter().map(|(_, im)| im));
            n += 1;
        }
        n
    }

    /// Makes matter of the cells [`SparseEngine::encode_cells`] wrote (by
    /// an engine of the same law); returns the cells written. They are
    /// taken as they come (the sending engine checked them), without the
    /// cell limit: they are either another process's halo, removed again
    /// after the step ([`SparseEngine::retain_tiles`]), or tiles moving
    /// between processes, which the limit of the whole counts once.
    pub fn insert_encoded(&mut self, cells: &[f32]) -> Result<usize> {
        let len = ENCODED_HEADER + 2 * self.d_state();
        if !cells.len().is_multiple_of(len) {
            return Err(Error::InvalidArgument(format!(
                "{} encoded values are not whole cells of {len} values",
                cells.len()
            )));
        }
        let d = self.d_state();
        for cell in cells.chunks_exact(len) {
            let (x, y) = (cell[0].to_bits() as i32, cell[1].to_bits() as i32);
            let (key, i) = self.tiles.locate(x, y);
            let (s, _) = self.tiles.get_or_create(key);
            let (re, im) = cell[ENCODED_HEADER..].split_at(d);
            self.tiles
                .set_cell(s, i, re.iter().copied().zip(im.iter().copied()));
        }
        Ok(cells.len() / len)
    }

    /// Removes every tile for which `keep(tile x, tile y)` is false (a
    /// process's halo after a shared step, or tiles that moved away).
    pub fn retain_tiles(&mut self, keep: impl Fn(i32, i32) -> bool) {
        for s in 0..self.tiles.slots() {
            let (x, y) = self.tiles.keys[s];
            if self.tiles.live[s] && !keep(x, y) {
                self.tiles.release(s);
            }
        }
    }

    /// The smallest box holding every cell of matter, or `None` when there
    /// is none.
    pub fn bounding_box(&self) -> Option<CellBox> {
        let mut cells = self.cells();
        let (x, y, _) = cells.next()?;
        let mut b = CellBox::new(x, y, x, y);
        for (x, y, _) in cells {
            b = CellBox::new(
                b.min_x.min(x),
                b.min_y.min(y),
                b.max_x.max(x),
                b.max_y.max(y),
            );
        }
        Some(b)
    }

    /// Every cell of matter as (x, y, values), in no particular order.
    pub fn cells(&self) -> impl Iterator<Item = (i32, i32, CellValues<'_>)> + '_ {
        let all = CellBox::new(i32::MIN, i32::MIN, i32::MAX, i32::MAX);
        occupied_in(&self.tiles, self.tiles.live_slots().collect(), all)
    }

    /// The cells of matter inside `area` (bounds included).
    pub fn cells_in(&self, area: CellBox) -> impl Iterator<Item = (i32, i32, CellValues<'_>)> + '_ {
        let slots = if area.is_empty() {
            Vec::new()
        } else {
            slots_overlapping(&self.tiles, &area)
        };
        occupied_in(&self.tiles, slots, area)
    }

    /// The cells of matter within Euclidean distance `radius` of (x, y).
    pub fn cells_within(
        &self,
        x: i32,
        y: i32,
        radius: u32,
    ) -> impl Iterator<Item = (i32, i32, CellValues<'_>)> + '_ {
        let r = radius as i64;
        let clamp = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        let (cx, cy) = (x as i64, y as i64);
        let area = CellBox::new(clamp(cx - r), clamp(cy - r), clamp(cx + r), clamp(cy + r));
        self.cells_in(area).filter(move |&(px, py, _)| {
            let (dx, dy) = ((px as i64 - cx) as i128, (py as i64 - cy) as i128);
            dx * dx + dy * dy <= (r as i128) * (r as i128)
        })
    }

    /// A per-cell quantity over `area`, row-major `[height][width]`.
    pub fn field(&self, area: CellBox, field: Field) -> Result<Vec<f32>> {
        area.check("field")?;
        let (h, w, d) = (area.height(), area.width(), self.d_state());
        let n = check_size(h, w, 1, DEFAULT_MAX_CELLS)?;
        let mut out = vec![0.0f32; n];
        let at = |x: i64, y: i64| {
            (y - area.min_y as i64) as usize * w + (x - area.min_x as i64) as usize
        };
        match field {
            Field::Density => {
                for (x, y, v) in self.cells_in(area) {
                    out[at(x as i64, y as i64)] = v.iter().map(|(a, b)| a * a + b * b).sum();
                }
            }
            Field::Phase(c) => {
                if c >= d {
                    return Err(Error::InvalidArgument(format!(
                        "phase of channel {c}: the model has channels 0..{d}"
                    )));
                }
                for (x, y, v) in self.cells_in(area) {
                    let (re, im) = v.get(c);
                    out[at(x as i64, y as i64)] = im.atan2(re);
                }
            }
            Field::DeltaMagnitude => {
                let mut sum = vec![0.0f32; PLANES * n];
                if self.summary_into(area, &mut sum)? {
                    for (o, e) in out.iter_mut().zip(&sum[ENERGY * n..][..n]) {
                        *o = e.sqrt();
                    }
                }
            }
        }
        Ok(out)
    }

    /// The window a global model's next step runs on (see the module docs);
    /// `None` for a local model or an empty lattice.
    pub fn next_window(&self) -> Result<Option<CellBox>> {
        match &self.mode {
            Mode::Local(_) => Ok(None),
            Mode::Global(g) => g.next_window(&self.tiles).map_err(Error::InvalidArgument),
        }
    }

    /// Advances one step. On error the lattice and the step counter are
    /// exactly as before the call.
    ///
    /// Call it from an ordinary thread: called from inside a rayon worker
    /// (e.g. in `pool.install(|| engine.step())`), where the backend's own
    /// thread pool would nest inside rayon's, it returns
    /// [`Error::NestedPool`] and does nothing. To bound the engine's own
    /// threads, give it a pool ([`SparseEngine::with_pool`]).
    pub fn step(&mut self) -> Result<StepStats> {
        self.step_inner(None)
    }

    /// Advances one step shared with other processes ([`SharedStep`]):
    /// only the tiles `shared.owns` are stepped, the others (another
    /// process's halo, put here by [`SparseEngine::insert_encoded`]) are
    /// read and left as they are, and nothing is written unless
    /// `shared.agree` agrees. On error the lattice and the step counter are
    /// exactly as before the call. Local laws only: a global law's window
    /// needs the whole lattice in one process.
    pub fn step_shared(&mut self, shared: &mut SharedStep<'_>) -> Result<StepStats> {
        if self.is_global() {
            return Err(Error::InvalidArgument(format!(
                "model `{}` is global (receptive radius null: it sees the whole window), so \
                 its step cannot be split across processes; run it in one process",
                self.backend.spec().name
            )));
        }
        self.step_inner(Some(shared))
    }

    /// Starts a shared step early: stages (gather, forward, update, into
    /// staging; nothing is written) the active tiles for which `early(tile
    /// x, tile y)` is true, which must be tiles whose whole 3 x 3
    /// neighbourhood this process owns, so they need no halo. The next
    /// [`SparseEngine::step_shared`] stages the rest, agrees and commits
    /// the whole; an error here is that step's error. The MPI engine calls
    /// it while the halo is in flight. Does nothing for a global law.
    pub fn stage_early(&mut self, early: &(dyn Fn(i32, i32) -> bool + Sync)) {
        let caller = self.pool.check_caller().and_then(|()| self.check_whole());
        let cx = context!(self);
        if let Mode::Local(batch) = &mut self.mode {
            match caller {
                Ok(()) => batch.stage_early(&mut self.tiles, &cx, early),
                Err(e) => batch.fail_early(e),
            }
        }
    }

    fn step_inner(&mut self, shared: Option<&mut SharedStep<'_>>) -> Result<StepStats> {
        self.pool.check_caller()?;
        self.check_whole()?;
        let cx = context!(self);
        let stats = match &mut self.mode {
            Mode::Local(batch) => batch.step(&mut self.tiles, &cx, shared),
            Mode::Global(batch) => batch.step(&mut self.tiles, &cx),
        };
        match stats {
            Ok(stats) => {
                self.step += 1;
                Ok(stats)
            }
            Err(e) => {
                if let Error::TornStep { step, .. } = e {
                    self.torn = Some(step);
                }
                Err(e)
            }
        }
    }

    /// An error when a step that failed part-way (atomic steps off) left
    /// the lattice part stepped.
    fn check_whole(&self) -> Result<()> {
        match self.torn {
            Some(step) => Err(Error::Torn { step }),
            None => Ok(()),
        }
    }

    /// Whether a step that failed part-way with atomic steps off
    /// ([`SparseOptions::atomic_steps`]) left the lattice part stepped;
    /// such an engine refuses to step or export.
    pub fn is_torn(&self) -> bool {
        self.torn.is_some()
    }

    /// The delta summary of the last step ([`crate::summary`]) over `area`:
    /// `[summary::PLANES][height][width]`, zero where the model did not
    /// run; `None` before this engine's first step (or after a step with
    /// nothing to step).
    pub fn delta_summary(&self, area: CellBox) -> Result<Option<Vec<f32>>> {
        area.check("delta summary")?;
        let n = check_size(area.height(), area.width(), PLANES, DEFAULT_MAX_CELLS)?;
        let mut out = vec![0.0f32; PLANES * n];
        Ok(self.summary_into(area, &mut out)?.then_some(out))
    }

    /// Fills `out` (`[PLANES][cells of area_box]`) with the delta summary of
    /// the last step; false (and `out` untouched) before the first step.
    fn summary_into(&self, area_box: CellBox, out: &mut [f32]) -> Result<bool> {
        let (w, n) = (area_box.width(), area_box.width() * area_box.height());
        let at = |x: i64, y: i64| {
            (y - area_box.min_y as i64) as usize * w + (x - area_box.min_x as i64) as usize
        };
        match &self.mode {
            Mode::Local(b) => {
                if b.keys.is_empty() {
                    return Ok(false);
                }
                let (t, area) = (self.tiles.t, self.tiles.area());
                for (j, &key) in b.keys.iter().enumerate() {
                    let (ox, oy) = self.tiles.origin(key);
                    if ox + (t as i64) <= area_box.min_x as i64
                        || ox > area_box.max_x as i64
                        || oy + (t as i64) <= area_box.min_y as i64
                        || oy > area_box.max_y as i64
                    {
                        continue;
                    }
                    let tile = &b.summary[j * PLANES * area..(j + 1) * PLANES * area];
                    for i in 0..area {
                        let (x, y) = (ox + (i % t) as i64, oy + (i / t) as i64);
                        if area_box.contains(x as i32, y as i32) {
                            let k = at(x, y);
                            for p in 0..PLANES {
                                out[p * n + k] = tile[p * area + i];
                            }
                        }
                    }
                }
                Ok(true)
            }
            Mode::Global(g) => {
                let Some(win) = g.window else {
                    return Ok(false);
                };
                // The window's summary, from its delta and the state now.
                let psi = self.export_cells(win)?;
                let wn = psi.cells();
                let mut sum = vec![0.0f32; PLANES * wn];
                summarize(psi.planes(), &g.delta, wn, self.d_state(), &mut sum);
                let ww = win.width();
                for y in area_box.min_y.max(win.min_y)..=area_box.max_y.min(win.max_y) {
                    for x in area_box.min_x.max(win.min_x)..=area_box.max_x.min(win.max_x) {
                        let i = (y as i64 - win.min_y as i64) as usize * ww
                            + (x as i64 - win.min_x as i64) as usize;
                        let k = at(x as i64, y as i64);
                        for p in 0..PLANES {
                            out[p * n + k] = sum[p * wn + i];
                        }
                    }
                }
                Ok(true)
            }
        }
    }

    /// Writes `state` tile by tile; with `replace`, its vacuum cells clear
    /// the lattice too. The caller has checked everything.
    fn write_dense(&mut self, state: &DenseState, area: CellBox, replace: bool) {
        let (t, d, n, w) = (
            self.tiles.t as i64,
            self.d_state(),
            state.cells(),
            state.width(),
        );
        let (planes, mask) = (state.planes(), state.occupied());
        let (x0, y0) = (area.min_x as i64, area.min_y as i64);
        let (x1, y1) = (area.max_x as i64, area.max_y as i64);
        for ty in y0.div_euclid(t)..=y1.div_euclid(t) {
            for tx in x0.div_euclid(t)..=x1.div_euclid(t) {
                let (xa, xb) = (x0.max(tx * t), x1.min(tx * t + t - 1));
                let (ya, yb) = (y0.max(ty * t), y1.min(ty * t + t - 1));
                let idx = |x: i64, y: i64| (y - y0) as usize * w + (x - x0) as usize;
                let any = (ya..=yb).any(|y| (xa..=xb).any(|x| mask[idx(x, y)] != 0));
                let key = (tx as i32, ty as i32);
                let slot = if any {
                    Some(self.tiles.get_or_create(key).0)
                } else if replace {
                    self.tiles.slot(key)
                } else {
                    None
                };
                let Some(s) = slot else { continue };
                for y in ya..=yb {
                    for x in xa..=xb {
                        let (i, li) = (idx(x, y), ((y - ty * t) * t + (x - tx * t)) as usize);
                        if mask[i] != 0 {
                            let v = (0..d).map(|c| (planes[c * n + i], planes[(c + d) * n + i]));
                            self.tiles.set_cell(s, li, v);
                        } else if replace {
                            self.tiles.clear_cell(s, li);
                        }
                    }
                }
                if self.tiles.count[s] == 0 {
                    self.tiles.release(s);
                }
            }
        }
    }

    /// Checks a dense state against the lattice; returns its box.
    fn check_dense(&self, state: &DenseState) -> Result<CellBox> {
        let d = self.d_state();
        if state.d_state() != d {
            return Err(Error::InvalidArgument(format!(
                "the state has d_state {} but model `{}` has d_state {d}",
                state.d_state(),
                self.backend.spec().name
            )));
        }
        let area = CellBox::from_origin(
            state.origin.0,
            state.origin.1,
            state.width(),
            state.height(),
        )?;
        let n = state.cells();
        let planes = state.planes();
        let mut bad = None;
        for_each_occupied(state, |gx, gy, i| {
            if bad.is_none() && (0..2 * d).any(|c| !planes[c * n + i].is_finite()) {
                bad = Some((gx, gy));
            }
        });
        if let Some((x, y)) = bad {
            return Err(Error::InvalidArgument(format!(
                "the state holds a non-finite value at x = {x}, y = {y}"
            )));
        }
        Ok(area)
    }

    /// An error unless `new` more cells of matter fit under `max_cells`.
    fn check_room(&self, new: usize) -> Result<()> {
        let after = self.tiles.occupied + new;
        if after > self.options.max_cells {
            return Err(self.too_many(after));
        }
        Ok(())
    }

    fn too_many(&self, after: usize) -> Error {
        Error::TooManyCells {
            what: format!("{after} cells of matter"),
            limit: self.options.max_cells,
        }
    }
}

/// Values before the channels of each cell [`SparseEngine::encode_cells`]
/// writes: its x and y.
pub const ENCODED_HEADER: usize = 2;

/// Calls `f(x, y, i)` for every occupied cell of `state`, with its lattice
/// coordinates and its index in the state's planes. The state's box must fit
/// the lattice (checked by the caller).
fn for_each_occupied(state: &DenseState, mut f: impl FnMut(i32, i32, usize)) {
    let (w, (ox, oy)) = (state.width(), state.origin);
    for (i, &o) in state.occupied().iter().enumerate() {
        if o != 0 {
            f(ox + (i % w) as i32, oy + (i / w) as i32, i);
        }
    }
}
