//! The contract between Atheria's engines and its inference backends.
//!
//! Engines (dense, sparse) own the lattice and the update rule; backends own
//! model inference and nothing else. This crate is everything the two sides
//! share, and deliberately depends on no backend library:
//!
//! - [`ComputeBackend`]: forward a batch of cells through a loaded model.
//! - [`BatchShape`]: the NCHW shape of a batch.
//! - [`Device`]: where a backend runs (CPU or CUDA device n).
//! - [`ModelSpec`] and [`ModelPackage`]: the model description read from a
//!   package directory's `model.json`.
//! - [`BackendOptions`]: what a user asks of a backend (device, threads).
//! - [`Error`]: the one error type all of them use.
//! - [`plugin`]: the interface of a backend built as a shared library and
//!   loaded at run time (the tch backend, so that a missing libtorch is an
//!   error rather than a binary that cannot start).

mod backend;
mod batch;
mod device;
mod error;
pub mod plugin;
mod spec;

pub use backend::{check_forward_args, BackendOptions, ComputeBackend};
pub use batch::BatchShape;
pub use device::Device;
pub use error::{Error, Result};
pub use spec::{Architecture, ModelFiles, ModelPackage, ModelSpec, UpdateRule, MODEL_FORMAT};
