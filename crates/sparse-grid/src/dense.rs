//! The dense engine: one forward over the whole H x W grid per step, then
//! the fused update in parallel over rows. It computes exactly what the
//! PyTorch engine computes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_api::{BatchShape, ComputeBackend, Error, ModelSpec, Result};

use crate::pool::LoopPool;
use crate::update::{first_non_finite, update_rows, PlaneRun, UpdateParams};
use crate::{DenseState, StepStats};

/// Options of a dense step that are not part of the model. Build them from
/// the default: `StepOptions::default().with_gamma(0.05).with_threshold(0.01)`
/// (fields may be added, so there is no struct literal outside this crate).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct StepOptions {
    /// Decay term (0 = off).
    pub gamma: f32,
    /// Existence threshold; `None` (the default) keeps every cell, as the
    /// PyTorch engine does.
    pub threshold: Option<f32>,
}

impl StepOptions {
    /// These options with decay term `gamma` (0 = off).
    pub fn with_gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }

    /// These options with existence threshold `threshold`: a number, or
    /// `None` to keep every cell.
    pub fn with_threshold(mut self, threshold: impl Into<Option<f32>>) -> Self {
        self.threshold = threshold.into();
        self
    }

    /// Checks the values: gamma ([`crate::update::check_gamma`]) and the
    /// threshold when there is one ([`crate::update::check_threshold`]).
    pub fn validate(&self) -> Result<()> {
        crate::update::check_gamma(self.gamma)?;
        if let Some(t) = self.threshold {
            crate::update::check_threshold(t)?;
        }
        Ok(())
    }
}

/// Checks that `state` fits `spec` and `options` as every dense engine
/// needs (the model's d_state, a size that is a multiple of its
/// `spatial_multiple`, valid options) and has a recurrent law adopt the
/// state's memory over this grid ([`crate::Memory::adopt_at`]): the dense
/// engine's and the device engine's one check.
pub fn fit_state(spec: &ModelSpec, state: &mut DenseState, options: &StepOptions) -> Result<()> {
    if state.d_state() != spec.d_state {
        return Err(Error::InvalidArgument(format!(
            "the state has d_state {} but model `{}` has d_state {}",
            state.d_state(),
            spec.name,
            spec.d_state
        )));
    }
    let m = spec.spatial_multiple.max(1);
    if !state.height().is_multiple_of(m) || !state.width().is_multiple_of(m) {
        return Err(Error::InvalidArgument(format!(
            "grid {} x {}: model `{}` ({}) needs height and width that are multiples of {m}",
            state.height(),
            state.width(),
            spec.name,
            spec.architecture
        )));
    }
    options.validate()?;
    // A sparse run's memory lies over its last window: laid out again
    // over this grid by the overlap rule (crate::recurrent).
    let from = state.memory_origin.take().unwrap_or(state.origin);
    state.memory = std::mem::take(&mut state.memory).adopt_at(
        spec,
        from,
        state.origin,
        state.height(),
        state.width(),
    )?;
    Ok(())
}

/// Steps a [`DenseState`] with a [`ComputeBackend`].
pub struct DenseEngine {
    backend: Arc<dyn ComputeBackend>,
    state: DenseState,
    params: UpdateParams,
    /// The last delta, `[2D][H][W]`: the forward's output buffer, reused.
    delta: Vec<f32>,
    /// Per-cell scratch for the update's norms, reused.
    norm: Vec<f32>,
    /// Occupancy written by the update, swapped in only when a step succeeds.
    next_occupied: Vec<u8>,
    /// A recurrent law's next memory, written by the forward and swapped
    /// into the state only when the step succeeds (empty without memory).
    next_memory: Vec<f32>,
    /// Where the update's parallel loop runs.
    pool: LoopPool,
    /// sum of delta^2 of the last step, `None` until the first: whether
    /// `delta` holds a step's delta.
    energy: Option<f64>,
}

impl DenseEngine {
    /// An engine over `state`. The state must have the model's d_state and a
    /// size that is a multiple of the model's `spatial_multiple`. A
    /// recurrent law adopts the state's memory ([`crate::Memory::adopt`]):
    /// zeros when it has none, the same tensors when they fit the model,
    /// an error naming the tensor otherwise. Memory laid out from elsewhere
    /// ([`DenseState::memory_origin`], a sparse run's) is laid out over
    /// this grid by [`crate::Memory::adopt_at`].
    pub fn new(
        backend: Arc<dyn ComputeBackend>,
        mut state: DenseState,
        options: StepOptions,
    ) -> Result<Self> {
        let spec = backend.spec();
        fit_state(spec, &mut state, &options)?;
        let params = UpdateParams {
            d_state: spec.d_state,
            rule: spec.update,
            gamma: options.gamma,
            threshold: options.threshold,
        };
        let n = state.cells();
        let what = || {
            format!(
                "the step buffers of {} x {} cells",
                state.height(),
                state.width()
            )
        };
        Ok(Self {
            backend,
            delta: crate::state::zeroed(state.planes().len(), what)?,
            norm: crate::state::zeroed(n, what)?,
            next_occupied: crate::state::zeroed(n, what)?,
            next_memory: crate::state::zeroed(state.memory.data().len(), what)?,
            state,
            params,
            pool: LoopPool::default(),
            energy: None,
        })
    }

    /// Runs this engine's own parallel loop (the update, over rows) in
    /// `pool` instead of rayon's global pool. Only that loop runs inside
    /// the pool: `forward` is still called from the thread that calls
    /// [`DenseEngine::step`], so the backend's threads never nest in it.
    /// Results do not depend on the pool.
    pub fn with_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool.set(Some(pool));
        self
    }

    /// Sets (`Some`) or clears (`None`: rayon's global pool) the pool of
    /// this engine's own parallel loop; see [`DenseEngine::with_pool`].
    pub fn set_pool(&mut self, pool: Option<Arc<rayon::ThreadPool>>) {
        self.pool.set(pool);
    }

    /// The pool this engine's own parallel loop runs in, when it was given one.
    pub fn pool(&self) -> Option<&Arc<rayon::ThreadPool>> {
        self.pool.get()
    }

    /// The current state.
    pub fn state(&self) -> &DenseState {
        &self.state
    }

    /// The current state, to change between steps (values, occupancy, the
    /// step counter). Its size cannot change, so the engine's buffers stay
    /// valid.
    pub fn state_mut(&mut self) -> &mut DenseState {
        &mut self.state
    }

    /// Takes the state out of the engine.
    pub fn into_state(self) -> DenseState {
        self.state
    }

    /// The delta of the last step, `[2D][H][W]` (zeros before the first).
    pub fn last_delta(&self) -> &[f32] {
        &self.delta
    }

    /// The delta summary of the last step ([`crate::summary`]), computed
    /// from its delta and the state now: `[summary::PLANES][H][W]`; `None`
    /// before the first step.
    pub fn delta_summary(&self) -> Option<Vec<f32>> {
        self.energy.is_some().then(|| {
            let (n, d) = (self.state.cells(), self.state.d_state());
            let mut out = vec![0.0; crate::summary::PLANES * n];
            crate::summary::summarize(self.state.planes(), &self.delta, n, d, &mut out);
            out
        })
    }

    /// sum over cells and channels of |delta|^2 of the last step (the
    /// `energy` readout), computed while the step checks its delta; `None`
    /// before the first step.
    pub fn last_delta_energy(&self) -> Option<f64> {
        self.energy
    }

    /// The backend this engine calls.
    pub fn backend(&self) -> &Arc<dyn ComputeBackend> {
        &self.backend
    }

    /// The decay term of the next steps.
    pub fn gamma(&self) -> f32 {
        self.params.gamma
    }

    /// The existence threshold, `None` when off.
    pub fn threshold(&self) -> Option<f32> {
        self.params.threshold
    }

    /// Changes the decay term from the next step on; an invalid value
    /// changes nothing.
    pub fn set_gamma(&mut self, gamma: f32) -> Result<()> {
        crate::update::check_gamma(gamma)?;
        self.params.gamma = gamma;
        Ok(())
    }

    /// Advances one step. On error the state is exactly as before the call.
    ///
    /// Call it from an ordinary thread: called from inside a rayon worker
    /// (e.g. in `pool.install(|| engine.step())`), where the backend's own
    /// thread pool would nest inside rayon's, it returns
    /// [`Error::NestedPool`] and does nothing. To bound the engine's own
    /// threads, give it a pool ([`DenseEngine::with_pool`]).
    pub fn step(&mut self) -> Result<StepStats> {
        self.pool.check_caller()?;
        let s = &mut self.state;
        let (h, w, d) = (s.height(), s.width(), s.d_state());
        let n = h * w;
        // Errors name the step being computed, counting from 1.
        let step = s.step + 1;
        let fail = |cause: Error| Error::step(step, cause);

        let t0 = Instant::now();
        let shape = BatchShape::new(1, 2 * d, h, w);
        // The state's planes are the model input as they are: no copy. A
        // recurrent law's memory goes beside them (none for other laws);
        // the next memory is written aside, like the next occupancy.
        self.backend
            .forward_with_memory(
                s.planes(),
                shape,
                s.memory.data(),
                &mut self.delta,
                &mut self.next_memory,
            )
            .map_err(fail)?;
        let forward = t0.elapsed();

        let t1 = Instant::now();
        let delta = PlaneRun {
            ptr: self.delta.as_ptr(),
            stride: n,
        };
        // SAFETY: `delta` holds 2D planes of n cells.
        let energy = unsafe { first_non_finite(delta, n, 2 * d) };
        if let Err((i, c)) = energy {
            let (x, y) = (
                s.origin.0 as i64 + (i % w) as i64,
                s.origin.1 as i64 + (i / w) as i64,
            );
            return Err(fail(Error::NonFinite {
                x,
                y,
                channel: c % d,
                imaginary: c >= d,
            }));
        }
        let (delta, params) = (&self.delta, &self.params);
        let (norm, next_occupied) = (&mut self.norm, &mut self.next_occupied);
        let planes = s.planes_mut();
        self.pool
            .run(|| update_rows(planes, delta, w, params, norm, next_occupied));
        s.swap_occupied(&mut self.next_occupied);
        s.memory.swap_data(&mut self.next_memory);
        s.step += 1;
        self.energy = energy.ok();
        let update = t1.elapsed();
        let occupied = s.occupied().iter().filter(|&&o| o != 0).count();
        Ok(StepStats {
            step: s.step,
            occupied_cells: occupied,
            active_tiles: 0,
            staged_tiles: 0,
            model_cells: h * w,
            window: Some((h, w)),
            gather: Duration::ZERO,
            forward,
            scatter: update,
        })
    }
}
