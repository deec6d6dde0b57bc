//! Process-wide libtorch settings: devices, threads, and the health check.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::Once;

use engine_api::{Device, Error, Result};
use tch::{Kind, Tensor};

use crate::error::{torch_message, NAME};

/// The libtorch version torch-sys built against (read by build.rs). The rpath
/// points at the same directory, so it is the one loaded at run time unless
/// `LD_LIBRARY_PATH` says otherwise.
pub const LIBTORCH_VERSION: &str = env!("ATHERIA_LIBTORCH_VERSION");

/// Whether libtorch works here, and its version, e.g.
/// `libtorch 2.13.0+cu130 (cpu; cuda available: false; 8 threads)`.
///
/// Runs one small tensor op on the CPU, so a libtorch that loads but cannot
/// compute is reported here rather than at the first step.
pub fn check() -> Result<String> {
    let unavailable = |e: tch::TchError| Error::BackendUnavailable {
        backend: NAME,
        message: format!("libtorch cannot run a tensor op: {}", torch_message(&e)),
    };
    let sum = Tensor::f_ones([2, 3], (Kind::Float, tch::Device::Cpu))
        .and_then(|t| t.f_sum(Kind::Float))
        .and_then(|t| t.f_double_value(&[]))
        .map_err(unavailable)?;
    if sum != 6.0 {
        return Err(Error::BackendUnavailable {
            backend: NAME,
            message: format!("libtorch summed six ones to {sum}: the library is broken"),
        });
    }
    let cuda = tch::Cuda::is_available();
    let devices = if cuda {
        format!(" ({} devices)", tch::Cuda::device_count())
    } else if cfg!(feature = "cuda") {
        String::new()
    } else {
        " (built without the `cuda` feature)".to_string()
    };
    Ok(format!(
        "libtorch {LIBTORCH_VERSION} (cpu; cuda available: {cuda}{devices}; {} threads)",
        tch::get_num_threads()
    ))
}

/// Whether this build can run on `device` at all: the CPU always, CUDA with
/// the `cuda` feature (whether libtorch sees that GPU is [`torch_device`]'s
/// question).
pub(crate) fn supports_device(device: Device) -> std::result::Result<(), String> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(_) if cfg!(feature = "cuda") => Ok(()),
        other => Err(format!(
            "{other} was requested but this build lacks the `cuda` feature: rebuild with \
             `--features tch,cuda`, or use the cpu device"
        )),
    }
}

/// Maps an Atheria device to libtorch's, refusing (never silently replacing) a
/// CUDA device libtorch cannot see.
pub(crate) fn torch_device(device: Device) -> Result<tch::Device> {
    let n = match device {
        Device::Cpu => return Ok(tch::Device::Cpu),
        Device::Cuda(n) => n,
        other => {
            return Err(Error::BackendUnavailable {
                backend: NAME,
                message: format!("{other} is not a device libtorch runs on here"),
            })
        }
    };
    if !tch::Cuda::is_available() {
        let why = if cfg!(feature = "cuda") {
            "libtorch_cuda sees no GPU (check the driver and CUDA_VISIBLE_DEVICES)"
        } else {
            "this build lacks the `cuda` feature: rebuild with `--features tch,cuda`"
        };
        return Err(Error::BackendUnavailable {
            backend: NAME,
            message: format!("{device} was requested but {why}; or use the cpu device"),
        });
    }
    let count = tch::Cuda::device_count();
    if i64::try_from(n).map_or(true, |n| n >= count) {
        return Err(Error::InvalidArgument(format!(
            "{device} does not exist: libtorch sees {count} CUDA device(s), cuda:0 to cuda:{}",
            count - 1
        )));
    }
    Ok(tch::Device::Cuda(n))
}

/// The thread count as libtorch takes it (an `i32`); at least 1 was checked
/// by the load.
pub(crate) fn intra_op_threads(threads: Option<NonZeroUsize>) -> Result<Option<i32>> {
    match threads {
        None => Ok(None),
        Some(n) => i32::try_from(n.get()).map(Some).map_err(|_| {
            Error::InvalidArgument(format!(
                "{n} intra-op threads is more than libtorch takes (at most {})",
                i32::MAX
            ))
        }),
    }
}

static INTEROP: Once = Once::new();

thread_local! {
    /// The intra-op thread count last applied on this thread.
    static APPLIED: Cell<i32> = const { Cell::new(0) };
}

/// Applies the thread settings on the calling thread.
///
/// libtorch (OpenMP build) keeps one process-wide count but applies it to a
/// thread's OpenMP team only on that thread's first parallel op; a later
/// `set_num_threads` from another thread does not reach it. So every forward
/// re-applies its backend's count when this thread last used another one (one
/// thread-local read otherwise). Inter-op threads are set to 1 once per
/// process: Atheria's models never `fork`, and libtorch refuses a second call.
pub(crate) fn apply_threads(threads: Option<i32>) {
    INTEROP.call_once(|| {
        if std::env::var_os("OMP_WAIT_POLICY").is_none() {
            tracing::info!(
                "OMP_WAIT_POLICY is unset: libtorch's OpenMP workers spin for milliseconds after \
                 each forward, taking CPU from the engine; start with OMP_WAIT_POLICY=PASSIVE"
            );
        }
        if tch::get_num_interop_threads() != 1 {
            // Fails only if someone already started inter-op work; then the
            // existing pool stays, which is harmless.
            let _ = std::panic::catch_unwind(|| tch::set_num_interop_threads(1));
        }
    });
    if let Some(n) = threads {
        if APPLIED.get() != n {
            tch::set_num_threads(n);
            APPLIED.set(n);
        }
    }
}
