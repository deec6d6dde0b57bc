//! Atheria's ONNX Runtime backend: runs a model package's `model.onnx`.
//!
//! ONNX Runtime is not linked: ort's `load-dynamic` loads it at run time, once
//! per process, from the first usable place in [`library_candidates`].
//!
//! - [`OnnxBackend`]: the [`engine_api::ComputeBackend`] (module `backend`):
//!   loading, the load-time model check, forward.
//! - [`check`], [`library_candidates`]: finding and initialising the library
//!   (module `runtime`).
//! - module `pool`: one session per concurrent caller, because ort's
//!   `Session::run` needs `&mut`.
//! - module `provider`: CPU, or CUDA with the `cuda` feature.
//!
//! # Environment variables
//! - `ORT_DYLIB_PATH`: the ONNX Runtime library to load; when set, the only
//!   place tried.
//! - `VIRTUAL_ENV`: a Python environment whose `onnxruntime` wheel to use,
//!   searched before `<repo>/.venv`.
//! - `ORT_LOG`: ONNX Runtime's own log level (`fatal`, `error` (default),
//!   `warning`, `info`, `verbose`), read by ort.
//!
//! # Threads
//! Sessions use `BackendOptions::threads` intra-op threads, one inter-op
//! thread, sequential execution, and no spin-waiting (see `backend`), so
//! that between forwards the cores belong to the engine's rayon workers.

mod backend;
mod pool;
mod provider;
mod runtime;

pub use backend::OnnxBackend;
pub use runtime::{check, library_candidates};
