//! [`Simulation`]: one running universe, over the dense or the sparse engine.
//!
//! A simulation owns an engine ([`DenseEngine`], [`SparseEngine`], or the
//! device-resident engine of `atheria-device-engine`), which owns the
//! lattice and calls a shared [`ComputeBackend`] (the device engine runs
//! its law's candle tensors on its device instead). Everything a
//! program does with a run goes through this type: step, run with a
//! progress callback, read and replace the state, read and write single
//! cells, save and load state files, change gamma between steps.
//!
//! Coordinates are lattice coordinates `(x, y)` = (column, row) everywhere.
//! A dense grid covers the box from its origin (`DenseState::origin`,
//! usually (0, 0)) over its width and height; the sparse lattice is
//! unbounded (i32 per axis).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atheria_experiment::Experiment;
use engine_api::{BackendOptions, ComputeBackend, Device, Error, ModelPackage, ModelSpec, Result};
use sparse_grid::sparse::{CellBox, DEFAULT_THRESHOLD, DEFAULT_TILE};
use sparse_grid::{
    init, state_file, DenseEngine, DenseState, InitKind, SparseEngine, SparseOptions, StepOptions,
    StepStats, Vacuum, DEFAULT_MAX_CELLS,
};

use crate::{default_law, BackendKind};

mod device;
mod observe;

/// Which engine steps the lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EngineKind {
    /// One forward over the whole H x W grid per step: computes exactly what
    /// the PyTorch reference engine computes.
    #[default]
    Dense,
    /// Tiles on an unbounded lattice; a step costs what its matter costs.
    Sparse,
    /// The dense grid held on the backend's device as candle tensors
    /// (`atheria-device-engine`): the CPU, or a CUDA GPU in a `cuda` build.
    /// Only what is asked for (the state, pictures, readouts) is
    /// downloaded; tools change a downloaded copy that is uploaded back.
    /// Candle only; chosen by itself for candle on a CUDA device.
    Device,
}

impl EngineKind {
    /// The name used in options and reports: `dense` or `sparse`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Dense => "dense",
            EngineKind::Sparse => "sparse",
            EngineKind::Device => "device",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EngineKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dense" => Ok(EngineKind::Dense),
            "sparse" => Ok(EngineKind::Sparse),
            "device" => Ok(EngineKind::Device),
            _ => Err(Error::InvalidArgument(format!(
                "unknown engine `{s}`: use dense, sparse or device"
            ))),
        }
    }
}

/// Where the law comes from.
#[derive(Clone)]
enum ModelSource {
    /// The embedded default law (candle only).
    Default,
    /// A model package directory, loaded on the chosen backend.
    Dir(PathBuf),
    /// A model package already read.
    Package(Box<ModelPackage>),
    /// A backend already loaded, perhaps shared with other simulations.
    Loaded(Arc<dyn ComputeBackend>),
    /// An Atheria experiment folder, its checkpoint read at model load.
    Experiment(Box<Experiment>),
}

/// The state a simulation starts from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum InitialState {
    /// A seeded field of `size` x `size` cells. The dense engine's grid is
    /// all of it; the sparse engine's matter is a disc of diameter `size / 2`
    /// centred on the lattice origin, the rest vacuum.
    Generated {
        /// Which field.
        kind: InitKind,
        /// Its seed: the same seed gives the same field on every backend.
        seed: u64,
        /// Side of the square, in cells.
        size: usize,
    },
    /// A given state. The dense engine steps exactly this grid; the sparse
    /// engine takes its occupied cells, at its origin.
    State(DenseState),
    /// A state file (written by [`Simulation::save`] or `atheria run --save`).
    File(PathBuf),
}

impl InitialState {
    /// The initial state a user names in one word, as `atheria --init` and
    /// the Python module's `init=` take it: a state file path (a name
    /// ending in `.safetensors`, or any existing file), or a generated
    /// field `complex_noise`, `random` or `zeros` of `size` x `size` cells
    /// from `seed`. A path-shaped name that is not a file is an error
    /// saying so, not "unknown initial state"; a directory or a special
    /// file is refused.
    pub fn from_arg(text: &str, seed: u64, size: usize) -> Result<Self> {
        let path = Path::new(text);
        if text.ends_with(".safetensors") || path.is_file() {
            return Ok(InitialState::File(path.to_path_buf()));
        }
        if path.exists() {
            return Err(Error::InvalidArgument(format!(
                "{text}: not a state file (a directory or a special file)"
            )));
        }
        match text.parse::<InitKind>() {
            Ok(kind) => Ok(InitialState::Generated { kind, seed, size }),
            Err(_) if text.contains(['/', '.', std::path::MAIN_SEPARATOR]) => {
                Err(Error::InvalidArgument(format!(
                    "{text}: no such file (give a state file, or one of complex_noise, random, zeros)"
                )))
            }
            Err(e) => Err(e),
        }
    }
}

/// A start-up stage of [`SimulationBuilder::build_observed`], for programs
/// that time or watch them (the `atheria` CLI logs each and arms its
/// watchdog).
pub trait StageObserver {
    /// `stage` begins: `backend init`, `model load` or `state init`.
    fn enter(&mut self, stage: &str);
    /// `stage` finished in `took` (not called when it fails).
    fn done(&mut self, stage: &str, took: Duration);
}

/// Observes nothing.
impl StageObserver for () {
    fn enter(&mut self, _: &str) {}
    fn done(&mut self, _: &str, _: Duration) {}
}

/// Builds a [`Simulation`]: what law, on what backend, which engine, from
/// which state. Every option has a default: the embedded default law on
/// candle, the dense engine, a 128 x 128 `random` field of seed 0, gamma 0.
#[derive(Clone)]
#[must_use]
pub struct SimulationBuilder {
    model: ModelSource,
    backend: BackendKind,
    options: BackendOptions,
    engine: EngineKind,
    tile: usize,
    vacuum: Vacuum,
    pub(crate) atomic_steps: bool,
    threshold: Option<f32>,
    initial: InitialState,
    gamma: f32,
    max_cells: Option<usize>,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Default for SimulationBuilder {
    fn default() -> Self {
        Self {
            model: ModelSource::Default,
            backend: BackendKind::Candle,
            options: BackendOptions::default(),
            engine: EngineKind::Dense,
            tile: DEFAULT_TILE,
            vacuum: Vacuum::Zero,
            atomic_steps: true,
            threshold: None,
            initial: InitialState::Generated {
                kind: InitKind::Random,
                seed: 0,
                size: 128,
            },
            gamma: 0.0,
            max_cells: None,
            pool: None,
        }
    }
}

impl SimulationBuilder {
    /// The law in the model package directory `dir` (model.json and the
    /// files it lists), loaded on [`SimulationBuilder::backend_kind`].
    pub fn model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model = ModelSource::Dir(dir.into());
        self
    }

    /// The law of a package already read with [`ModelPackage::load`].
    pub fn model_package(mut self, package: ModelPackage) -> Self {
        self.model = ModelSource::Package(Box::new(package));
        self
    }

    /// The law of an Atheria experiment ([`Experiment::open`] on Atheria's
    /// `output/experiments/<name>`), with its physics: gamma from its
    /// `GAMMA_DECAY`, and a generated field of its initial-state mode on its
    /// inference grid (seed 0). Calls after this one (`gamma`, `init`,
    /// `state_file`, ...) change those as usual.
    ///
    /// The checkpoint is read at model load, in Rust, for the candle
    /// backend. The tch and ONNX Runtime backends need TorchScript and ONNX
    /// files, which only PyTorch writes: convert the checkpoint first with
    /// [`Experiment::export_package`] and load that with
    /// [`SimulationBuilder::model_dir`].
    pub fn experiment(mut self, experiment: &Experiment) -> Self {
        let c = &experiment.config;
        self.model = ModelSource::Experiment(Box::new(experiment.clone()));
        self.gamma = c.gamma;
        self.initial = InitialState::Generated {
            kind: c.initial_kind,
            seed: 0,
            size: c.grid_size,
        };
        self
    }

    /// The embedded default law (the default; runs on candle).
    pub fn default_law(mut self) -> Self {
        self.model = ModelSource::Default;
        self
    }

    /// A backend already loaded, for example shared by several simulations
    /// on several threads (backends are `Send + Sync`). The backend kind,
    /// device and threads options are then not used.
    pub fn backend(mut self, backend: Arc<dyn ComputeBackend>) -> Self {
        self.model = ModelSource::Loaded(backend);
        self
    }

    /// Which backend loads the model (default candle; it must be compiled
    /// in: [`BackendKind::available`]).
    pub fn backend_kind(mut self, kind: BackendKind) -> Self {
        self.backend = kind;
        self
    }

    /// Where the backend runs (default CPU). On candle a CUDA device means
    /// the device engine ([`EngineKind::Device`]): the dense engine would
    /// pay a host round trip per step, and candle's forward on the host
    /// runs on the CPU only.
    pub fn device(mut self, device: Device) -> Self {
        self.options.device = device;
        self
    }

    /// Threads of the backend (default: one per core). The engine's own
    /// loops run on rayon's global pool unless given
    /// [`SimulationBuilder::engine_pool`].
    pub fn threads(mut self, threads: usize) -> Self {
        self.options.threads = Some(threads);
        self
    }

    /// A rayon pool for the engine's own parallel loops (the update, the
    /// sparse gather and scatter) instead of rayon's global pool: keeps a
    /// simulation off the threads its host uses for other work. The backend
    /// is still called from the thread that steps, never from this pool.
    pub fn engine_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Which engine steps the lattice (default dense).
    pub fn engine(mut self, engine: EngineKind) -> Self {
        self.engine = engine;
        self
    }

    /// The sparse engine's tile side, a power of two from 4 to 1024
    /// (default 16).
    pub fn tile(mut self, tile: usize) -> Self {
        self.tile = tile;
        self
    }

    /// Whether the sparse engine holds a step's writes back until the whole
    /// step has succeeded (default true), so a failed step changes nothing
    /// at the price of a staged copy of the active tiles; `false` holds
    /// only a few rows of tiles (about half the peak memory of a large
    /// lattice) and a step that fails part-way leaves the lattice part
    /// stepped. See [`SparseOptions::atomic_steps`].
    pub fn atomic_steps(mut self, atomic: bool) -> Self {
        self.atomic_steps = atomic;
        self
    }

    /// What the sparse engine's unoccupied cells hold (default zero).
    pub fn vacuum(mut self, vacuum: Vacuum) -> Self {
        self.vacuum = vacuum;
        self
    }

    /// The existence threshold: cells whose norm before normalisation is
    /// below it become vacuum. Default: off for the dense engine (as the
    /// PyTorch engine), 0.01 for the sparse engine (which needs one).
    pub fn threshold(mut self, threshold: Option<f32>) -> Self {
        self.threshold = threshold;
        self
    }

    /// A seeded initial field (see [`InitialState::Generated`]).
    pub fn init(mut self, kind: InitKind, seed: u64, size: usize) -> Self {
        self.initial = InitialState::Generated { kind, seed, size };
        self
    }

    /// Start from `state` (see [`InitialState::State`]).
    pub fn initial_state(mut self, state: DenseState) -> Self {
        self.initial = InitialState::State(state);
        self
    }

    /// Start from a state file (see [`InitialState::File`]).
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.initial = InitialState::File(path.into());
        self
    }

    /// Start from `initial`.
    pub fn initial(mut self, initial: InitialState) -> Self {
        self.initial = initial;
        self
    }

    /// The decay term: delta -= gamma psi (default 0: off).
    pub fn gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }

    /// The most cells a state may hold (default: [`default_max_cells`]).
    /// Larger states, files and steps are refused before anything is
    /// allocated.
    pub fn max_cells(mut self, max_cells: usize) -> Self {
        self.max_cells = Some(max_cells);
        self
    }

    /// Loads the law and the initial state and makes the engine.
    pub fn build(self) -> Result<Simulation> {
        self.build_observed(&mut ())
    }

    /// As [`SimulationBuilder::build`], telling `observer` when each stage
    /// (backend init, model load, state init) begins and how long it took.
    pub fn build_observed(self, observer: &mut dyn StageObserver) -> Result<Simulation> {
        self.check()?;
        if self.engine_kind() == EngineKind::Device {
            return self.build_device(observer);
        }
        let backend = match &self.model {
            ModelSource::Loaded(backend) => Arc::clone(backend),
            _ => {
                stage(observer, "backend init", || {
                    let version = self.backend.check()?;
                    tracing::info!("backend {}: {version}", self.backend);
                    Ok(())
                })?;
                stage(observer, "model load", || self.load_model())?
            }
        };
        let spec = backend.spec().clone();
        let (max_cells, state) = self.initial_stage(observer, &spec)?;
        let sparse = SparseOptions::default()
            .with_tile(self.tile)
            .with_threshold(self.threshold.unwrap_or(DEFAULT_THRESHOLD))
            .with_vacuum(self.vacuum)
            .with_gamma(self.gamma)
            .with_max_cells(max_cells)
            .with_seed(self.seed())
            .with_atomic_steps(self.atomic_steps);
        let mut engine = Engine::new(
            self.engine,
            backend,
            state,
            self.gamma,
            self.threshold,
            sparse,
        )?;
        if let Some(pool) = &self.pool {
            engine.set_pool(Some(Arc::clone(pool)));
        }
        Simulation::start(engine, max_cells)
    }

    /// The engine that steps: the one asked for, except that candle on a
    /// CUDA device is the device engine.
    fn engine_kind(&self) -> EngineKind {
        match self.engine {
            EngineKind::Dense
                if self.backend == BackendKind::Candle && self.options.device.is_cuda() =>
            {
                EngineKind::Device
            }
            kind => kind,
        }
    }

    /// [`SimulationBuilder::build_observed`] for the device engine: the
    /// device opens and the law uploads in `model load`.
    fn build_device(self, observer: &mut dyn StageObserver) -> Result<Simulation> {
        if self.backend != BackendKind::Candle {
            return Err(Error::InvalidArgument(format!(
                "the device engine runs on candle, not {}: use the candle backend (on {} the {} backend runs the dense engine)",
                self.backend, self.options.device, self.backend
            )));
        }
        stage(observer, "backend init", || {
            let version = self.backend.check()?;
            tracing::info!(
                "backend {}: {version} on {}",
                self.backend,
                self.options.device
            );
            Ok(())
        })?;
        let law = stage(observer, "model load", || {
            device::law(&self.model, self.options.device)
        })?;
        let spec = law.spec().clone();
        let (max_cells, state) = self.initial_stage(observer, &spec)?;
        let options = StepOptions::default()
            .with_gamma(self.gamma)
            .with_threshold(self.threshold);
        let engine = Engine::Device(Box::new(device::DeviceEngine::new(law, state, options)?));
        Simulation::start(engine, max_cells)
    }

    /// The cell limit for `spec`'s law (the one asked for, or what fits in
    /// memory) and the initial state under it: the `state init` stage of
    /// every build.
    fn initial_stage(
        &self,
        observer: &mut dyn StageObserver,
        spec: &ModelSpec,
    ) -> Result<(usize, DenseState)> {
        let max_cells = self.max_cells.unwrap_or_else(|| default_max_cells(spec));
        let state = stage(observer, "state init", || {
            self.initial_state_for(spec, max_cells)
        })?;
        Ok((max_cells, state))
    }

    /// Checks what can be checked before anything is loaded, so that a
    /// mistake costs nothing.
    fn check(&self) -> Result<()> {
        sparse_grid::update::check_gamma(self.gamma)?;
        if !self.atomic_steps && self.engine != EngineKind::Sparse {
            return Err(Error::InvalidArgument(format!(
                "atomic steps off is an option of the sparse engine; the {} engine's steps are \
                 always atomic (a failed step changes nothing)",
                self.engine
            )));
        }
        if let Some(t) = self.threshold {
            sparse_grid::update::check_threshold(t)?;
        }
        if let Some(threads) = self.options.threads {
            engine_api::check_threads(threads)?;
        }
        if let InitialState::Generated { size: 0, .. } = self.initial {
            return Err(Error::InvalidArgument(
                "the initial field's size must be at least 1 cell".to_string(),
            ));
        }
        if self.max_cells == Some(0) {
            return Err(Error::InvalidArgument(
                "max_cells must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    pub(crate) fn seed(&self) -> u64 {
        match self.initial {
            InitialState::Generated { seed, .. } => seed,
            _ => 0,
        }
    }

    fn load_model(&self) -> Result<Arc<dyn ComputeBackend>> {
        match &self.model {
            ModelSource::Dir(dir) => self.backend.load(&ModelPackage::load(dir)?, &self.options),
            ModelSource::Package(package) => self.backend.load(package, &self.options),
            ModelSource::Default if self.backend == BackendKind::Candle => {
                default_law::load(&self.options)
            }
            ModelSource::Default => Err(Error::InvalidArgument(format!(
                "the embedded default law runs on candle; give a model package (a directory with model.json) to use the {} backend",
                self.backend
            ))),
            ModelSource::Loaded(backend) => Ok(Arc::clone(backend)),
            ModelSource::Experiment(e) if self.backend == BackendKind::Candle => {
                self.backend.load(&e.package()?, &self.options)
            }
            ModelSource::Experiment(e) => Err(Error::InvalidArgument(format!(
                "experiment `{}`: its checkpoint runs on candle as it is; the {} backend needs it \
                 converted by PyTorch first (Experiment::export_package, or `atheria run --experiment` \
                 with the project's Python environment)",
                e.name, self.backend
            ))),
        }
    }

    fn initial_state_for(&self, spec: &ModelSpec, max_cells: usize) -> Result<DenseState> {
        let sparse = self.engine == EngineKind::Sparse;
        let state = match &self.initial {
            InitialState::File(path) => state_file::read_state(path, max_cells)?,
            InitialState::State(state) => state.clone(),
            &InitialState::Generated { kind, seed, size } => {
                generated(kind, seed, size, spec.d_state, max_cells, sparse)?
            }
        };
        if state.d_state() != spec.d_state {
            return Err(Error::InvalidArgument(format!(
                "the initial state has d_state {} but model `{}` has d_state {}; use a state made for this model",
                state.d_state(),
                spec.name,
                spec.d_state
            )));
        }
        Ok(state)
    }
}

/// Runs one start-up stage under `observer`.
fn stage<T>(
    observer: &mut dyn StageObserver,
    name: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    observer.enter(name);
    let started = Instant::now();
    let out = f()?;
    observer.done(name, started.elapsed());
    Ok(out)
}

/// A seeded field; for the sparse engine a disc of matter of diameter
/// `size / 2` centred on the origin, the rest vacuum.
fn generated(
    kind: InitKind,
    seed: u64,
    size: usize,
    d_state: usize,
    max_cells: usize,
    disc: bool,
) -> Result<DenseState> {
    let mut state = DenseState::zeros_limited(size, size, d_state, max_cells)?;
    if disc {
        let half = i32::try_from(size / 2).map_err(|_| {
            Error::InvalidArgument(format!("a field of side {size} does not fit the lattice"))
        })?;
        state.origin = (-half, -half);
    }
    init::fill(&mut state, kind, seed);
    if disc {
        let r = size as f64 / 4.0;
        let c = (size as f64 - 1.0) / 2.0;
        for (i, o) in state.occupied_mut().iter_mut().enumerate() {
            let (y, x) = ((i / size) as f64, (i % size) as f64);
            if (x - c).hypot(y - c) > r {
                *o = 0;
            }
        }
        state.zero_vacuum();
    }
    Ok(state)
}

/// Cells a simulation of `spec` may hold unless told otherwise: what fits in
/// half of the memory this process may still use
/// ([`sparse_grid::memory::available_bytes`]: free memory, the cgroup's and
/// `ulimit -v`'s limits) at the model's estimated bytes per cell
/// ([`ModelSpec::bytes_per_cell`]: the engine's buffers and the backend's
/// activations), and never more than [`DEFAULT_MAX_CELLS`].
pub fn default_max_cells(spec: &ModelSpec) -> usize {
    let available = sparse_grid::memory::available_bytes();
    ((available / 2) / spec.bytes_per_cell().max(1)).clamp(1, DEFAULT_MAX_CELLS as u64) as usize
}

/// The engine of a simulation: the one place the two are told apart.
enum Engine {
    // Both boxed: a simulation moves between threads and owners, and the
    // engines are a few hundred bytes each.
    Dense(Box<DenseEngine>),
    Sparse(Box<SparseEngine>),
    Device(Box<device::DeviceEngine>),
}

impl Engine {
    fn set_pool(&mut self, pool: Option<Arc<rayon::ThreadPool>>) {
        match self {
            Engine::Dense(e) => e.set_pool(pool),
            Engine::Sparse(e) => e.set_pool(pool),
            // Its loops are candle's, on its device.
            Engine::Device(_) => {}
        }
    }

    fn pool(&self) -> Option<Arc<rayon::ThreadPool>> {
        match self {
            Engine::Dense(e) => e.pool().cloned(),
            Engine::Sparse(e) => e.pool().cloned(),
            Engine::Device(_) => None,
        }
    }

    /// The engine of `kind` over `state`: a dense one steps with `gamma`
    /// and `threshold`, a sparse one with `sparse` (which holds them too).
    fn new(
        kind: EngineKind,
        backend: Arc<dyn ComputeBackend>,
        state: DenseState,
        gamma: f32,
        threshold: Option<f32>,
        sparse: SparseOptions,
    ) -> Result<Self> {
        match kind {
            EngineKind::Device => Err(Error::InvalidArgument(
                "the device engine loads its own law: build it from a model, not a loaded backend"
                    .into(),
            )),
            EngineKind::Dense => {
                let mut options = StepOptions::default();
                options.gamma = gamma;
                options.threshold = threshold;
                Ok(Engine::Dense(Box::new(DenseEngine::new(
                    backend, state, options,
                )?)))
            }
            EngineKind::Sparse => {
                let mut engine = SparseEngine::new(backend, sparse)?;
                engine.import(&state)?;
                Ok(Engine::Sparse(Box::new(engine)))
            }
        }
    }
}

/// One running universe: a law, an engine and its lattice.
///
/// `Simulation` is `Send`: a server can own it on a worker thread. Its
/// backend is an `Arc` that several simulations may share. Every method that
/// changes the state either completes or changes nothing.
///
/// ```
/// use atheria::{InitKind, Simulation};
///
/// let mut sim = Simulation::builder()
///     .init(InitKind::Random, 7, 32) // a 32 x 32 seeded field
///     .gamma(0.01)
///     .build()?;
/// sim.run(10, |_, _| std::ops::ControlFlow::Continue(()))?;
/// assert_eq!(sim.step_count(), 10);
/// let psi = sim.cell(3, 4).expect("a dense grid holds every cell");
/// assert_eq!(psi.len(), sim.d_state());
/// # Ok::<(), atheria::Error>(())
/// ```
pub struct Simulation {
    engine: Engine,
    max_cells: usize,
    last: Option<StepStats>,
    /// Tools' settings and the readouts' baseline (`simulation/observe.rs`).
    observe: observe::Observe,
}

/// What [`Simulation::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct RunSummary {
    /// Steps completed.
    pub steps: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Of which in the backend's forward.
    pub forward: Duration,
    /// True when the callback stopped the run before `steps` were done.
    pub stopped: bool,
}

impl RunSummary {
    /// Steps per second over the run.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Simulation {
    /// A builder with every option at its default.
    pub fn builder() -> SimulationBuilder {
        SimulationBuilder::default()
    }

    /// A simulation of `engine`, its readouts' baseline taken now.
    fn start(engine: Engine, max_cells: usize) -> Result<Self> {
        let mut sim = Simulation {
            engine,
            max_cells,
            last: None,
            observe: observe::Observe::default(),
        };
        sim.reset_baseline()?;
        Ok(sim)
    }

    /// Advances one step. On error the state is exactly as before the call
    /// and the error is an [`Error::Step`] naming the step (counting from 1)
    /// with the cause as its source.
    ///
    /// With click-out on ([`Tool::ClickOut`](crate::Tool)), its swaps follow
    /// the step; if they fail (the sparse lattice's extent beyond the cell
    /// limit) the step stands and the error says so.
    pub fn step(&mut self) -> Result<StepStats> {
        let stats = match &mut self.engine {
            Engine::Dense(e) => e.step()?,
            Engine::Sparse(e) => e.step()?,
            Engine::Device(e) => e.step()?,
        };
        self.last = Some(stats);
        self.after_step(stats.step)?;
        Ok(stats)
    }

    /// Runs up to `steps` steps, calling `on_step` after each with the
    /// simulation and the step's statistics; the run stops early when it
    /// returns [`ControlFlow::Break`]. A failed step stops the run with its
    /// error; the steps before it stand.
    pub fn run(
        &mut self,
        steps: u64,
        mut on_step: impl FnMut(&Simulation, &StepStats) -> ControlFlow<()>,
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let mut summary = RunSummary::default();
        while summary.steps < steps {
            let stats = self.step()?;
            summary.steps += 1;
            summary.forward += stats.forward;
            if on_step(self, &stats).is_break() {
                summary.stopped = summary.steps < steps;
                break;
            }
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// Steps taken since the run began (a state file's count included).
    pub fn step_count(&self) -> u64 {
        match &self.engine {
            Engine::Dense(e) => e.state().step,
            Engine::Sparse(e) => e.step_count(),
            Engine::Device(e) => e.step_count(),
        }
    }

    /// Which engine steps the lattice.
    pub fn engine_kind(&self) -> EngineKind {
        match self.engine {
            Engine::Dense(_) => EngineKind::Dense,
            Engine::Sparse(_) => EngineKind::Sparse,
            Engine::Device(_) => EngineKind::Device,
        }
    }

    /// The backend that runs the law (shareable with other simulations);
    /// on the device engine, the same law on the host's candle backend.
    pub fn backend(&self) -> &Arc<dyn ComputeBackend> {
        match &self.engine {
            Engine::Dense(e) => e.backend(),
            Engine::Sparse(e) => e.backend(),
            Engine::Device(e) => e.law().host_backend(),
        }
    }

    /// The law's description.
    pub fn spec(&self) -> &ModelSpec {
        self.backend().spec()
    }

    /// Complex channels per cell.
    pub fn d_state(&self) -> usize {
        self.spec().d_state
    }

    /// The cell limit in force.
    pub fn max_cells(&self) -> usize {
        self.max_cells
    }

    /// The decay term of the next steps.
    pub fn gamma(&self) -> f32 {
        match &self.engine {
            Engine::Dense(e) => e.gamma(),
            Engine::Sparse(e) => e.gamma(),
            Engine::Device(e) => e.gamma(),
        }
    }

    /// Changes the decay term from the next step on; an invalid value
    /// (negative, not finite) changes nothing.
    pub fn set_gamma(&mut self, gamma: f32) -> Result<()> {
        match &mut self.engine {
            Engine::Dense(e) => e.set_gamma(gamma),
            Engine::Sparse(e) => e.set_gamma(gamma),
            Engine::Device(e) => e.set_gamma(gamma),
        }
    }

    /// The statistics of the last step, `None` before the first.
    pub fn last_stats(&self) -> Option<&StepStats> {
        self.last.as_ref()
    }

    /// Cells holding matter.
    pub fn occupied_count(&self) -> usize {
        match &self.engine {
            Engine::Dense(e) => e.state().occupied().iter().filter(|&&o| o != 0).count(),
            Engine::Sparse(e) => e.occupied_count(),
            Engine::Device(e) => e.occupied_count(),
        }
    }

    /// The box a picture of the whole universe covers: the dense grid, or
    /// the smallest box holding the sparse lattice's matter (`None` when
    /// there is none).
    pub fn extent(&self) -> Option<CellBox> {
        match &self.engine {
            Engine::Dense(e) => {
                let s = e.state();
                CellBox::from_origin(s.origin.0, s.origin.1, s.width(), s.height()).ok()
            }
            Engine::Sparse(e) => e.bounding_box(),
            Engine::Device(e) => {
                let ((h, w), (x, y)) = e.extent();
                CellBox::from_origin(x, y, w, h).ok()
            }
        }
    }

    /// The state: the dense grid, or the sparse lattice over [`extent`]
    /// (one vacuum cell at the origin when the lattice is empty), with its
    /// occupancy mask, origin and step counter, and a recurrent law's memory
    /// (the sparse engine's with [`DenseState::memory_origin`], the window
    /// it lies over), so that [`Simulation::set_state`] of it resumes the run.
    ///
    /// [`extent`]: Simulation::extent
    pub fn state(&self) -> Result<DenseState> {
        match &self.engine {
            Engine::Dense(e) => Ok(e.state().clone()),
            Engine::Sparse(e) => {
                let area = e.bounding_box().unwrap_or_else(|| CellBox::new(0, 0, 0, 0));
                e.export(area)
            }
            Engine::Device(e) => e.state(),
        }
    }

    /// The cells of `area` as a state (origin at the box's first cell);
    /// cells without matter, or outside a dense grid, are vacuum. A
    /// recurrent law's memory is not in it ([`Simulation::state`] has it).
    pub fn state_in(&self, area: CellBox) -> Result<DenseState> {
        match &self.engine {
            Engine::Dense(e) => dense_cut(e.state(), area, self.max_cells),
            Engine::Sparse(e) => e.export_cells(area),
            Engine::Device(e) => dense_cut(&e.state()?, area, self.max_cells),
        }
    }

    /// Replaces the whole state between steps, step counter included. The
    /// dense engine takes `state` as its grid (same d_state; the grid may
    /// change size); the sparse engine's lattice becomes `state`'s occupied
    /// cells at its origin. A recurrent law takes the state's memory where
    /// it lies ([`DenseState::memory_origin`]; zeros when it has none). Fails, changing nothing, on a state that does
    /// not fit the law or the cell limit.
    pub fn set_state(&mut self, state: DenseState) -> Result<()> {
        if state.cells() > self.max_cells {
            return Err(Error::TooManyCells {
                what: format!("state {} x {}", state.height(), state.width()),
                limit: self.max_cells,
            });
        }
        let backend = Arc::clone(self.backend());
        let pool = self.engine.pool();
        let mut engine = match &self.engine {
            Engine::Dense(e) => {
                let mut options = StepOptions::default();
                options.gamma = e.gamma();
                options.threshold = e.threshold();
                Engine::Dense(Box::new(DenseEngine::new(backend, state, options)?))
            }
            Engine::Sparse(e) => {
                let mut fresh = SparseEngine::new(backend, *e.options())?;
                fresh.import(&state)?;
                Engine::Sparse(Box::new(fresh))
            }
            Engine::Device(e) => Engine::Device(Box::new(device::DeviceEngine::new(
                Arc::clone(e.law()),
                state,
                e.options(),
            )?)),
        };
        engine.set_pool(pool);
        self.engine = engine;
        self.last = None;
        self.reset_baseline()
    }

    /// Psi at lattice cell (x, y), one (re, im) per channel, or `None` for
    /// vacuum (a cell without matter, or outside a dense grid).
    /// On the device engine the grid is downloaded for it: read many
    /// cells from one [`Simulation::state`] instead.
    pub fn cell(&self, x: i32, y: i32) -> Option<Vec<(f32, f32)>> {
        let downloaded;
        let s = match &self.engine {
            Engine::Dense(e) => e.state(),
            Engine::Device(e) => {
                downloaded = e.state().ok()?;
                &downloaded
            }
            Engine::Sparse(e) => return e.get(x, y).map(|v| v.to_vec()),
        };
        let i = dense_index(s, x, y)?;
        if s.occupied()[i] == 0 {
            return None;
        }
        let (n, d) = (s.cells(), s.d_state());
        let p = s.planes();
        Some((0..d).map(|c| (p[c * n + i], p[(c + d) * n + i])).collect())
    }

    /// Makes lattice cell (x, y) matter holding `values` (one (re, im) per
    /// channel, taken as given: the next step normalises). Fails, changing
    /// nothing, on a wrong channel count, a non-finite value, a cell outside
    /// a dense grid, or a new cell beyond the cell limit.
    pub fn set_cell(&mut self, x: i32, y: i32, values: &[(f32, f32)]) -> Result<()> {
        self.on_grid(|s| {
                let d = s.d_state();
                sparse_grid::check_cell_values(x, y, values, d)?;
                let i = dense_index(s, x, y).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "cell ({x}, {y}) is outside the dense grid ({} x {} from ({}, {})); the sparse engine has no edge",
                        s.width(),
                        s.height(),
                        s.origin.0,
                        s.origin.1
                    ))
                })?;
                let n = s.cells();
                let (planes, occupied) = s.split_mut();
                for (c, &(re, im)) in values.iter().enumerate() {
                    planes[c * n + i] = re;
                    planes[(c + d) * n + i] = im;
                }
                occupied[i] = 1;
                Ok(())
        })
        .unwrap_or_else(|sparse| sparse.insert(x, y, values))
    }

    /// Runs `f` on the dense grid, in place on the dense engine, on a
    /// downloaded copy uploaded back when `f` succeeds on the device engine
    /// (so a failed `f` changes nothing there either); hands the sparse
    /// engine back as `Err` for the caller's own way.
    fn on_grid(
        &mut self,
        f: impl FnOnce(&mut DenseState) -> Result<()>,
    ) -> std::result::Result<Result<()>, &mut SparseEngine> {
        match &mut self.engine {
            Engine::Dense(e) => Ok(f(e.state_mut())),
            Engine::Device(e) => Ok(e.state().and_then(|mut s| {
                f(&mut s)?;
                e.set_state(s)
            })),
            Engine::Sparse(e) => Err(e),
        }
    }

    /// Writes the state ([`Simulation::state`]) to a state file,
    /// atomically: a reader never sees a torn file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        state_file::write_state(&self.state()?, path.as_ref())
    }

    /// Replaces the state with a state file's ([`Simulation::set_state`]).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let state = state_file::read_state(path.as_ref(), self.max_cells)?;
        self.set_state(state)
    }

    /// The dense engine, when this simulation runs on it.
    pub fn dense(&self) -> Option<&DenseEngine> {
        match &self.engine {
            Engine::Dense(e) => Some(e),
            _ => None,
        }
    }

    /// The sparse engine, when this simulation runs on it.
    pub fn sparse(&self) -> Option<&SparseEngine> {
        match &self.engine {
            Engine::Sparse(e) => Some(e),
            _ => None,
        }
    }

    /// The sparse engine, taken out of the simulation (to step it across
    /// MPI ranks, say); `None` on the dense and the device engine.
    pub fn into_sparse(self) -> Option<SparseEngine> {
        match self.engine {
            Engine::Sparse(e) => Some(*e),
            _ => None,
        }
    }

    /// The sparse engine, mutable (insert, remove, import regions).
    pub fn sparse_mut(&mut self) -> Option<&mut SparseEngine> {
        match &mut self.engine {
            Engine::Sparse(e) => Some(e),
            _ => None,
        }
    }
}

/// The index of lattice cell (x, y) in a dense state, if it is inside.
fn dense_index(s: &DenseState, x: i32, y: i32) -> Option<usize> {
    let (cx, cy) = (x as i64 - s.origin.0 as i64, y as i64 - s.origin.1 as i64);
    let inside = (0..s.width() as i64).contains(&cx) && (0..s.height() as i64).contains(&cy);
    inside.then(|| cy as usize * s.width() + cx as usize)
}

/// Calls `f(i_grid, i_area)` for every cell of `area` inside `grid` (a dense
/// grid's box): the cell's index in the grid's planes and in `area`'s.
fn for_overlap(grid: CellBox, area: CellBox, mut f: impl FnMut(usize, usize)) {
    if area.is_empty() || grid.is_empty() {
        return;
    }
    let (ox, oy) = (grid.min_x as i64, grid.min_y as i64);
    let x0 = (area.min_x as i64).max(ox);
    let x1 = (area.max_x as i64).min(grid.max_x as i64);
    let y0 = (area.min_y as i64).max(oy);
    let y1 = (area.max_y as i64).min(grid.max_y as i64);
    let (gw, w) = (grid.width(), area.width());
    for y in y0..=y1 {
        for x in x0..=x1 {
            let i = (y - oy) as usize * gw + (x - ox) as usize;
            let j = (y - area.min_y as i64) as usize * w + (x - area.min_x as i64) as usize;
            f(i, j);
        }
    }
}

/// The box a dense grid covers (its origin, width and height).
fn grid_box(origin: (i32, i32), height: usize, width: usize) -> Result<CellBox> {
    CellBox::from_origin(origin.0, origin.1, width, height)
}

/// The cells of `area` from a dense grid; outside the grid is vacuum.
fn dense_cut(s: &DenseState, area: CellBox, max_cells: usize) -> Result<DenseState> {
    let (d, n) = (s.d_state(), s.cells());
    let mut out = DenseState::zeros_limited(area.height(), area.width(), d, max_cells)?;
    out.origin = (area.min_x, area.min_y);
    out.step = s.step;
    let m = out.cells();
    let (src, src_occ) = (s.planes(), s.occupied());
    let (planes, occupied) = out.split_mut();
    for_overlap(grid_box(s.origin, s.height(), s.width())?, area, |i, j| {
        occupied[j] = src_occ[i];
        for c in 0..2 * d {
            planes[c * m + j] = src[c * n + i];
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn a_simulation_can_move_to_another_thread() {
        assert_send::<Simulation>();
        assert_send::<SimulationBuilder>();
    }
}
