//! Atheria's ONNX Runtime backend: runs a model package's `model.onnx`.
//!
//! ONNX Runtime is not linked: ort's `load-dynamic` loads it at run time, once
//! per process, from the first usable place in [`library_candidates`].
//!
//! - [`OnnxBackend`]: the [`engine_api::ComputeBackend`] (module `backend`):
//!   loading, the load-time model check, forward; one session per concurrent
//!   caller from a bounded [`engine_api::pool::Pool`], because ort's
//!   `Session::run` needs `&mut`.
//! - [`OnnxRuntime`] (and the static [`RUNTIME`]): the backend as an
//!   [`engine_api::Runtime`].
//! - [`check`], [`library_candidates`], [`set_library`]: finding and
//!   initialising the library (module `runtime`).
//! - module `provider`: CPU, or CUDA with the `cuda` feature.
//! - module `interior`: a local law's graph without its convolutions'
//!   padding, so that [`engine_api::ComputeBackend::forward_interior`]
//!   computes a field's interior alone (the sparse engine's tiles without
//!   their halo); checked against the full graph at load.
//!
//! # Where the library comes from
//! A process loads ONNX Runtime once; [`set_library`] chooses where from,
//! before the first load ([`OrtLibrary`]). By default only `ORT_DYLIB_PATH`,
//! else the system's library: a program embedding Atheria finds nothing by
//! its working directory. A program can name the file
//! ([`OrtLibrary::Path`]), or search Python environments for the
//! onnxruntime wheel ([`OrtLibrary::SearchPythonEnvironments`], what the
//! `atheria` program does).
//!
//! # Environment variables
//! - `ORT_DYLIB_PATH`: the ONNX Runtime library to load; when set, the only
//!   place tried (unless the program named a file itself).
//! - `VIRTUAL_ENV`: with [`OrtLibrary::SearchPythonEnvironments`], a Python
//!   environment whose `onnxruntime` wheel to use, searched first.
//! - `ORT_LOG`: ONNX Runtime's own log level (`fatal`, `error` (default),
//!   `warning`, `info`, `verbose`), read by ort.
//!
//! # Threads
//! Sessions use `BackendOptions::threads` intra-op threads, one inter-op
//! thread, sequential execution, and no spin-waiting (see `backend`), so
//! that between forwards the cores belong to the engine's rayon workers.

//!
//! # Recurrent laws
//! A package whose model.json lists `memory` runs through
//! [`ComputeBackend::forward_with_memory`]: the graph takes the field (`x`)
//! and one input per memory tensor, named as model.json names it, and
//! returns the delta (`delta`) and `<name>_next` per memory tensor. Inputs
//! and outputs are bound by name, so their order in the graph does not
//! matter. The load checks that every name is there (an error names the
//! missing one), then runs a check forward with zero memory and checks
//! every output's shape. The field and memory are passed as views of the
//! caller's buffers (ONNX Runtime does not write to its inputs).
//!
//! [`ComputeBackend::forward_with_memory`]: engine_api::ComputeBackend::forward_with_memory

mod backend;
mod interior;
mod provider;
mod runtime;

pub use backend::{OnnxBackend, OnnxRuntime, RUNTIME};
pub use runtime::{check, library, library_candidates, set_library, OrtLibrary};
