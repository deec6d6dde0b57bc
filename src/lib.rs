//! Atheria Native: neural quantum-cellular-automaton simulations in Rust.
//!
//! This crate is the facade an embedding program uses: it re-exports the
//! shared API ([`engine_api`]) and the engines ([`sparse_grid`]), and picks
//! the inference backend by Cargo feature (`candle` by default, `tch`, `onnx`).
//!
//! - [`backends`]: a backend chosen at run time ([`BackendKind`]) and its
//!   [`Runtime`], which checks it and loads models (from a directory or from
//!   memory: [`ModelPackage::from_bytes`]).
//! - [`default_law`]: the built-in law `atheria run` uses without `--model`.
//! - [`render`]: PNG pictures of fields (phase, density, delta magnitude).
//! - [`watchdog`]: turns a stage that hangs into an error naming the stage.
//! - `plugin` (with `tch`): loads the tch backend's shared library on first
//!   use, through a C interface, so the program starts where libtorch is
//!   missing.

pub mod backends;
pub mod default_law;
#[cfg(feature = "tch")]
mod plugin;
#[cfg(feature = "render")]
pub mod render;
pub mod watchdog;

/// The candle backend itself (feature `candle`), for what only it offers.
#[cfg(feature = "candle")]
pub use backend_candle as candle;
/// The ONNX Runtime backend itself (feature `onnx`): choose where its library
/// is found ([`onnx::set_library`]) before the first ONNX load.
#[cfg(feature = "onnx")]
pub use backend_onnx as onnx;
pub use backends::BackendKind;
pub use engine_api::{
    Architecture, BackendOptions, BatchShape, ComputeBackend, Device, Error, ModelFile,
    ModelPackage, ModelSpec, Result, Runtime, UpdateRule,
};
pub use sparse_grid::{
    init, sparse, state_file, DenseEngine, DenseState, InitKind, SparseEngine, SparseOptions,
    StepOptions, StepStats, StepTimes, Vacuum,
};
