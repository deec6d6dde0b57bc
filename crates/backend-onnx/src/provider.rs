//! Execution providers: which ONNX Runtime engine runs the graph.

use engine_api::{Device, Error, Result};
use ort::session::builder::SessionBuilder;

/// ONNX Runtime's name for its built-in CPU provider.
pub(crate) const CPU: &str = "CPUExecutionProvider";

/// Whether this build can use `device` (whether the library and the machine
/// can is found out when a session registers the provider).
pub(crate) fn supports(device: Device) -> std::result::Result<(), String> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(_) if cfg!(feature = "cuda") => Ok(()),
        other => Err(format!(
            "{other} requested, but backend-onnx was built without its `cuda` feature: \
             rebuild with `--features onnx,cuda`, or use the cpu device"
        )),
    }
}

/// Registers the provider for `device` and returns its name.
///
/// The CPU provider is always present and needs no registration. CUDA is
/// registered with `error_on_failure`: ort's default is to log the failure
/// and quietly run on the CPU, which would make a `--device cuda` run
/// silently slow and its timings lies.
pub(crate) fn register(
    builder: SessionBuilder,
    device: Device,
) -> Result<(SessionBuilder, &'static str)> {
    match device {
        Device::Cpu => Ok((builder, CPU)),
        Device::Cuda(ordinal) => register_cuda(builder, ordinal),
        other => Err(Error::InvalidArgument(format!(
            "device {other} is not supported by ONNX Runtime here"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn register_cuda(
    builder: SessionBuilder,
    ordinal: usize,
) -> Result<(SessionBuilder, &'static str)> {
    use ort::ep::{ExecutionProvider, CUDA};

    let id = i32::try_from(ordinal)
        .map_err(|_| Error::InvalidArgument(format!("CUDA device {ordinal} is out of range")))?;
    let cuda = CUDA::default()
        .with_device_id(id)
        .build()
        .error_on_failure();
    let builder = builder.with_execution_providers([cuda]).map_err(|e| {
        Error::BackendUnavailable {
            backend: "onnx",
            message: format!(
                "cannot use ONNX Runtime's CUDA provider on cuda:{ordinal}: {e}; the library must be a GPU build \
                 (the onnxruntime-gpu wheel, or ORT_DYLIB_PATH pointing at one) with CUDA and cuDNN on the \
                 library path, or use the cpu device"
            ),
        }
    })?;
    Ok((builder, CUDA::NAME))
}

#[cfg(not(feature = "cuda"))]
fn register_cuda(
    _builder: SessionBuilder,
    ordinal: usize,
) -> Result<(SessionBuilder, &'static str)> {
    // `supports` refused this before any session was built.
    Err(Error::BackendUnavailable {
        backend: "onnx",
        message: supports(Device::Cuda(ordinal))
            .err()
            .unwrap_or_else(|| "CUDA is not compiled in".into()),
    })
}
