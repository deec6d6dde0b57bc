//! The contract between Atheria's engines and its inference backends.
//!
//! Engines (dense, sparse) own the lattice and the update rule; backends own
//! model inference and nothing else. This crate is everything the two sides
//! share, and deliberately depends on no backend library:
//!
//! - [`ComputeBackend`]: forward a batch of cells through a loaded model
//!   (arguments checked once, by [`check_forward_args`]), or only the
//!   interior of every field ([`ComputeBackend::forward_interior`],
//!   [`interior_shape`]), which the sparse engine asks of a backend that
//!   can skip the halo's work.
//! - [`Runtime`]: a backend factory: is it usable here ([`Runtime::check`]),
//!   and load a model package into a [`ComputeBackend`] ([`Runtime::load`]),
//!   with every argument checked once ([`LoadRequest::new`]).
//! - [`BatchShape`]: the NCHW shape of a batch.
//! - [`Device`]: where a backend runs (CPU or CUDA device n).
//! - [`ModelSpec`] and [`ModelPackage`]: the model description (model.json)
//!   and its files ([`ModelFile`]), in a directory or in memory.
//! - [`BackendOptions`]: what a user asks of a backend (device, threads);
//!   [`check_threads`]: the one check of a thread count (at least 1, at most
//!   [`max_threads`]).
//! - [`Error`]: the one error type all of them use.
//! - [`header`]: a safetensors file's header read alone, so that files
//!   are refused by their first bytes or declared sizes before their data
//!   is read.
//! - [`pool`]: a bounded pool of model instances, for backends whose library
//!   handles cannot serve two threads at once.
//! - [`plugin`]: the C interface of a backend built as a shared library and
//!   loaded at run time (the tch backend, so that a missing libtorch is an
//!   error rather than a program that cannot start).

#![warn(missing_docs)]

mod backend;
mod batch;
mod device;
mod error;
pub mod header;
pub mod plugin;
pub mod pool;
mod runtime;
mod spec;

pub use backend::{
    check_forward_args, check_interior_args, check_interior_rewrite, check_memory_args,
    check_threads, copy_interior, interior_shape, max_threads, run_interior_by_crop,
    BackendOptions, ComputeBackend, MIN_THREAD_CAP, THREADS_PER_CORE_CAP,
};
pub use batch::BatchShape;
pub use device::Device;
pub use error::{human_bytes, Error, Result};
pub use runtime::{check_load_args, LoadRequest, Runtime};
pub use spec::{
    Architecture, MemoryTensor, ModelFile, ModelFiles, ModelPackage, ModelSpec, PackageFile,
    UpdateRule, MODEL_FORMAT,
};
