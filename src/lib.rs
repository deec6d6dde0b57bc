//! Atheria Native: neural quantum-cellular-automaton simulations in Rust.
//!
//! A lattice of cells, each holding D complex amplitudes, evolves step by
//! step under a learned law (a 3x3 conv stencil, a per-cell MLP, a U-Net)
//! trained in PyTorch. This crate is what a program embeds: build a
//! [`Simulation`], step it, read and change its state.
//!
//! ```
//! use atheria::{InitKind, Simulation};
//!
//! // The embedded default law on candle, a 64 x 64 seeded field.
//! let mut sim = Simulation::builder().init(InitKind::Random, 1, 64).build()?;
//! let stats = sim.step()?;
//! println!("step {}: {} cells in {:?}", stats.step, stats.occupied_cells, stats.forward);
//! let psi = sim.cell(10, 20).expect("a dense grid holds every cell");
//! println!("psi(10, 20) channel 0 = {} + {}i", psi[0].0, psi[0].1);
//! sim.save(std::env::temp_dir().join("atheria-doc-state.safetensors"))?;
//! # Ok::<(), atheria::Error>(())
//! ```
//!
//! A model package (a directory with `model.json` and weights exported by
//! `python/export.py`) runs with `.model_dir(path)` on any compiled-in
//! backend (`.backend_kind(BackendKind::Onnx)`); one loaded backend can
//! serve many simulations (`.backend(arc)`). See `examples/`.
//!
//! # Contents
//! - [`simulation`]: [`Simulation`] and its [`SimulationBuilder`], over
//!   the dense, the sparse or the device-resident engine ([`EngineKind`]).
//! - [`backends`]: [`BackendKind`], a backend chosen at run time over those
//!   compiled in (features `candle` (default), `tch`, `onnx`), and its
//!   [`Runtime`], which checks it and loads models (from a directory or from
//!   memory: [`ModelPackage::from_bytes`]).
//! - [`default_law`]: the built-in law used when no model is given.
//! - [`experiment`]: Atheria's experiment folders (config.json and the
//!   `.pth` checkpoint its loader picks) as model packages, read in Rust
//!   ([`Experiment`], [`SimulationBuilder::experiment`]).
//! - [`instruments`]: tools that poke a simulation ([`Tool`],
//!   [`Simulation::apply`]), visualizations ([`Viz`], [`Simulation::field`])
//!   and readouts ([`Metrics`], [`Simulation::metrics`]), defined in
//!   `docs/instruments.md`.
//! - [`render`] (feature `render`, default): PNG pictures of fields.
//! - `distributed` (feature `mpi`): the sparse lattice across MPI ranks,
//!   built from a communicator (`SimulationBuilder::build_distributed`).
//! - [`watchdog`]: turns a stage that hangs into an error naming the stage.
//! - `plugin` (with `tch`, private): loads the tch backend's shared library
//!   on first use, through a C interface, so a program starts where
//!   libtorch is missing.
//! - Re-exports of the contract ([`engine_api`]: [`ComputeBackend`],
//!   [`Error`], [`ModelPackage`], ...) and of the engines ([`sparse_grid`]:
//!   [`DenseEngine`], [`SparseEngine`], [`DenseState`], state files, ...)
//!   for programs that need them directly.
//!
//! # Threads
//! Backends own their threads; engines use rayon for their own loops and
//! call the backend only from the thread that steps. Step a simulation from
//! an ordinary thread, never from inside a rayon worker.

#![warn(missing_docs)]

pub mod backends;
pub mod default_law;
#[cfg(feature = "mpi")]
pub mod distributed;
#[cfg(feature = "tch")]
mod plugin;
#[cfg(feature = "render")]
pub mod render;
pub mod simulation;
pub mod watchdog;

/// Tools, visualizations and readouts, over dense frames of cells.
pub use instruments;

/// Atheria's experiment folders (config.json and `.pth` checkpoints) read
/// as model packages: [`Experiment`] and [`SimulationBuilder::experiment`].
pub use atheria_experiment as experiment;
pub use atheria_experiment::Experiment;

/// The candle backend itself (feature `candle`), for what only it offers.
#[cfg(feature = "candle")]
pub use backend_candle as candle;
/// The ONNX Runtime backend itself (feature `onnx`): choose where its library
/// is found ([`onnx::set_library`]) before the first ONNX load.
#[cfg(feature = "onnx")]
pub use backend_onnx as onnx;
pub use backends::BackendKind;
pub use engine_api::{
    check_threads, interior_shape, max_threads, Architecture, BackendOptions, BatchShape,
    ComputeBackend, Device, Error, MemoryTensor, ModelFile, ModelPackage, ModelSpec, Result,
    Runtime, UpdateRule,
};
pub use instruments::{Metrics, ScheduledTool, Tool, Viz, VizMap};
pub use simulation::{
    default_max_cells, EngineKind, InitialState, RunSummary, Simulation, SimulationBuilder,
    StageObserver,
};
pub use sparse_grid::sparse::CellBox;
pub use sparse_grid::{
    init, sparse, state_file, summary, DenseEngine, DenseState, InitKind, Memory, SparseEngine,
    SparseOptions, StepOptions, StepStats, StepTimes, Vacuum,
};
