//! Atheria's [`ComputeBackend`](engine_api::ComputeBackend) on libtorch:
//! runs a package's TorchScript file (`files.torchscript`) through tch 0.26.
//!
//! - [`TchBackend`]: load a package, forward batches (`backend`).
//! - [`TchRuntime`] (and the static [`RUNTIME`]): the backend as an
//!   [`engine_api::Runtime`].
//! - [`check`]: does libtorch work here, and which version (`runtime`).
//! - `pool`: the module pool ([`engine_api::pool::Pool`], bounded) that makes
//!   the backend `Sync` without a lock around every forward.
//! - `error`: libtorch errors as one-line Atheria errors.
//! - `interior`: a local law's layers run without padding, so that
//!   `forward_interior` computes a field's interior alone (the sparse
//!   engine's tiles without their halo); checked against the module's
//!   forward at load.
//!
//! # Building by hand
//! tch 0.26 needs libtorch 2.13.0. Use the project venv's PyTorch wheel
//! (torch-sys runs `python` from `PATH` when `VIRTUAL_ENV` is set, else
//! `python3`, and asks torch for its include and lib dirs):
//! ```sh
//! export LIBTORCH_USE_PYTORCH=1
//! export VIRTUAL_ENV=$PWD/.venv PATH=$PWD/.venv/bin:$PATH   # from the repository root
//! cargo test -p backend-tch                 # CPU
//! cargo build -p backend-tch --features cuda  # keeps libtorch_cuda linked
//! ```
//! Without Python on `PATH` (verified, suits a `.cargo/config.toml` `[env]`
//! table), point torch-sys at the wheel's directory as if it were a libtorch
//! zip; the wheel uses the C++11 ABI, and torch-sys then skips its version
//! check (the wheel has no `build-version` file), so mind the version:
//! ```sh
//! export LIBTORCH=$PWD/.venv/lib/python3.11/site-packages/torch LIBTORCH_CXX11_ABI=1
//! ```
//! Other torch-sys variables: `LIBTORCH_INCLUDE` and `LIBTORCH_LIB` (override
//! the dirs under `LIBTORCH`), `LIBTORCH_STATIC=1`, and
//! `LIBTORCH_BYPASS_VERSION_CHECK=1` (a libtorch other than 2.13.0, whose
//! bindings tch may not match). With neither `LIBTORCH_USE_PYTORCH` nor
//! `LIBTORCH` set, torch-sys fails the build with "Cannot find a libtorch
//! install".
//!
//! No `LD_LIBRARY_PATH` is needed at run time: build.rs puts an rpath to the
//! libtorch lib dir on this crate's tests and examples, and re-exports the dir
//! as `DEP_ATHERIA_TCH_LIBTORCH_LIB` so crates/backend-tch-plugin puts it on
//! `libatheria_tch.so`, the form in which the `atheria` binary loads this
//! crate at run time (the binary itself does not link libtorch, so a moved or
//! deleted venv is an error it reports, not a program that cannot start).
//! Programs that link this crate directly (its tests and examples) do not
//! start without the venv (`ldd` shows the missing `libtorch_cpu.so`). For CPU work only
//! `libtorch_cpu`, `libc10` and `libgomp` from the wheel are loaded, plus the CUDA runtime libraries `libtorch_cpu` itself depends on
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
//! # OpenMP spin-waiting: run with `OMP_WAIT_POLICY=PASSIVE`
//! libtorch's CPU kernels run on libgomp, whose idle workers spin before they
//! sleep. After each forward that is CPU taken from the engine's rayon update,
//! which runs right after the forward (never at the same time). Measured with
//! `examples/overhead.rs` (conv3x3_d4 on [1, 8, 64, 64], 2 threads, 2-core
//! VM): 6 to 10 ms of CPU burned in the 20 ms after each forward with the
//! default policy, 0.1 ms with `OMP_WAIT_POLICY=PASSIVE`. PASSIVE costs a
//! futex wake per parallel region: microseconds, against forwards of hundreds
//! of microseconds and more. So the recommended setting is PASSIVE.
//!
//! It has to be in the environment when libtorch is loaded: libgomp is a
//! load-time dependency of libtorch_cpu and reads it in its constructor. In a
//! program that links this crate that is before `main`, and setting it from
//! Rust changes nothing (measured: still 8 to 11 ms). This crate therefore
//! does not set it; it logs once (at `info`) when it is unset. The `atheria`
//! library loads libtorch later, with `libatheria_tch.so`, and sets PASSIVE
//! right before it does (unless the process already chose a policy), so
//! every program embedding it gets PASSIVE (measured with conv3x3 D=32 on
//! 64 x 64, 200 steps, 2 threads: 1.4 s and 1.0 s of user CPU with the
//! variable unset, the same as PASSIVE; 6.7 s and 6.4 s with ACTIVE).
//!
//! # Concurrency
//! tch 0.26 marks `CModule` `Send + Sync`, but a TorchScript forward may
//! mutate its module's attributes, and each module here keeps a reusable input
//! tensor, so one module never runs on two threads at once. Instead a pool
//! hands each forward its own module (`pool`): the only lock is held for a
//! `Vec` pop and push, and the pool grows, from the file's bytes kept in
//! memory, to the number of threads that ever forwarded at once, but never
//! past its cap (the core count within 2..=16, as ONNX Runtime's sessions;
//! [`TchBackend::prepare_with_cap`] sets another): further callers wait for
//! a module. Each module holds its own copy of the weights.
//!
//! Single-thread cost against a `Mutex<CModule>` doing the same work
//! (`examples/overhead.rs`, 1 intra-op thread, PASSIVE, median of 10 x 400
//! calls on a busy 2-core VM): conv3x3_d4 [1, 8, 16, 16] 27.9 to 28.3 us per
//! forward with the pool, 27.6 to 27.8 us with the mutex (+0.4 us, about 1.5%,
//! the run-to-run noise); [1, 8, 64, 64] 265 against 264 us. The difference is
//! mostly the checks the backend makes (arguments, output shape and type).
//!
//! Per forward the backend copies the input into the module's reused input
//! tensor (the model may write to its input in place, so it never gets a view
//! of the caller's slice) and copies the output straight into the caller's
//! buffer, converting type and device in that one copy. The only Rust-side
//! allocations are tch's: a one-element handle `Vec` for the forward call and
//! the output's shape. Gradients are off (`no_grad`, set per call because
//! grad mode is thread-local; tch 0.26 has no inference-mode guard).

//!
//! # Recurrent laws
//! A package whose model.json lists `memory` (`unet_convlstm`, or any custom
//! law) runs through [`ComputeBackend::forward_with_memory`]: the module is
//! called as `forward(x, <memory>...)`, one 4-D tensor per memory tensor in
//! model.json order, and must return the tuple `(delta, <memory>_next...)`.
//! The load's check forward passes zero memory and checks the tuple's arity
//! and every output's shape, so a module that returns only the delta, or
//! too few memory outputs, is an error at load naming what is missing. The
//! memory tensors are staged like the field (copied into tensors each pooled
//! module reuses, since a forward may update them in place and the caller's
//! memory must stay as it was), and each output is copied once, straight
//! into the caller's `output` and `next_memory`.
//!
//! [`ComputeBackend::forward_with_memory`]: engine_api::ComputeBackend::forward_with_memory

mod backend;
mod error;
mod interior;
mod pool;
mod runtime;

pub use backend::{TchBackend, TchRuntime, RUNTIME};
pub use runtime::{check, LIBTORCH_VERSION};
