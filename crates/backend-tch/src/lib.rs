//! Atheria's [`ComputeBackend`](engine_api::ComputeBackend) on libtorch:
//! runs a package's TorchScript file (`files.torchscript`) through tch 0.26.
//!
//! - [`TchBackend`]: load a package, forward batches (`backend`).
//! - [`check`]: does libtorch work here, and which version (`runtime`).
//! - `pool`: the module pool that makes the backend `Sync` without a lock
//!   around every forward.
//! - `error`: libtorch errors as one-line Atheria errors.
//!
//! # Building by hand
//! tch 0.26 needs libtorch 2.13.0. Use the project venv's PyTorch wheel
//! (torch-sys runs `python` from `PATH` when `VIRTUAL_ENV` is set, else
//! `python3`, and asks torch for its include and lib dirs):
//! ```sh
//! export LIBTORCH_USE_PYTORCH=1
//! export VIRTUAL_ENV=/work/main/.venv PATH=/work/main/.venv/bin:$PATH
//! cargo test -p backend-tch                 # CPU
//! cargo build -p backend-tch --features cuda  # keeps libtorch_cuda linked
//! ```
//! Other torch-sys variables: `LIBTORCH=/path/to/libtorch` (an unpacked
//! libtorch zip instead of the wheel; then `LIBTORCH_CXX11_ABI=0|1`,
//! default 1, `LIBTORCH_INCLUDE`, `LIBTORCH_LIB`), `LIBTORCH_STATIC=1`, and
//! `LIBTORCH_BYPASS_VERSION_CHECK=1` (only for a libtorch other than 2.13.0:
//! tch's generated bindings may then not match it). The wheel's ABI is read
//! from torch, so `LIBTORCH_CXX11_ABI` is not needed with it.
//!
//! No `LD_LIBRARY_PATH` is needed at run time: build.rs puts an rpath to the
//! libtorch lib dir on this crate's tests and examples, and re-exports the dir
//! as `DEP_ATHERIA_TCH_LIBTORCH_LIB` so the root package's build.rs puts it on
//! the `atheria` binaries. Moving or deleting the venv breaks such binaries
//! (`ldd` shows the missing `libtorch_cpu.so`). For CPU work only
//! `libtorch_cpu`, `libtorch`, `libc10` and `libgomp` from the wheel are
//! loaded, plus the CUDA runtime libraries `libtorch_cpu` itself depends on
//! (found through the wheel's own rpath to `nvidia/*/lib`).
//!
//! With the `cuda` feature build.rs links `libtorch_cuda` with
//! `--no-as-needed`: nothing in Rust calls into it, so the linker would drop
//! it and libtorch would then report CUDA as absent on a GPU machine.
//!
//! # Threads
//! `BackendOptions::threads` sets libtorch's intra-op (OpenMP) thread count;
//! `None` keeps libtorch's default, one per physical core. The count is
//! process-wide in libtorch; each forward re-applies its backend's count on
//! the calling thread when that thread last ran with another one. Inter-op
//! threads are set to 1 once per process (these models never `fork`).
//!
//! OMP_WAIT_POLICY_DOCS
//!
//! # Concurrency
//! POOL_DOCS

mod backend;
mod error;
mod pool;
mod runtime;

pub use backend::TchBackend;
pub use runtime::{check, LIBTORCH_VERSION};
