//! Opening a device: the CPU always; a CUDA GPU with the `cuda` feature,
//! after checking that the driver and the CUDA libraries load, so that a
//! machine without them gets one line naming what is missing (cudarc,
//! which loads them at first use, would panic instead).

use engine_api::{Device, Error, Result};

/// The candle device for `device`.
pub fn open(device: Device) -> Result<candle_core::Device> {
    match device {
        Device::Cpu => Ok(candle_core::Device::Cpu),
        Device::Cuda(ordinal) => open_cuda(ordinal),
        other => Err(Error::InvalidArgument(format!(
            "device {other}: the device engine runs on cpu or cuda[:N]"
        ))),
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<candle_core::Device> {
    Err(Error::BackendUnavailable {
        backend: crate::NAME,
        message: format!(
            "cuda:{ordinal} requested but this build has no CUDA support: build with `--features cuda` (scripts/build-cuda.sh)"
        ),
    })
}

/// The libraries candle's CUDA device loads when it is created: cudarc's
/// name, the file a user looks for, and how to get it.
#[cfg(feature = "cuda")]
const CUDA_LIBRARIES: [(&str, &str, &str); 4] = [
    ("cuda", "libcuda.so (the NVIDIA driver)", "install the NVIDIA driver, or run where there is a GPU"),
    ("cublas", "libcublas.so.13", "install the nvidia-cublas wheel (CUDA 13) or the CUDA toolkit and put its lib folder on LD_LIBRARY_PATH"),
    ("curand", "libcurand.so.10", "install the nvidia-curand wheel (CUDA 13) or the CUDA toolkit and put its lib folder on LD_LIBRARY_PATH"),
    ("nvrtc", "libnvrtc.so.13", "install the nvidia-cuda-nvrtc wheel (CUDA 13) or the CUDA toolkit and put its lib folder on LD_LIBRARY_PATH"),
];

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<candle_core::Device> {
    let unavailable = |message: String| Error::BackendUnavailable {
        backend: crate::NAME,
        message,
    };
    for (name, file, fix) in CUDA_LIBRARIES {
        let found = cudarc::get_lib_name_candidates(name).iter().any(|file| {
            // SAFETY: loading a CUDA library runs only its own initialisers;
            // the handle is dropped at once (cudarc loads it again to use it).
            unsafe { libloading::Library::new(file) }.is_ok()
        });
        if !found {
            return Err(unavailable(format!(
                "cuda:{ordinal} requested but {file} cannot be loaded: {fix}"
            )));
        }
    }
    // cudarc still panics on a symbol it cannot find (a driver older than
    // CUDA 13): caught here, so that it is one error line too.
    match std::panic::catch_unwind(|| candle_core::Device::new_cuda(ordinal)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(unavailable(format!(
            "cuda:{ordinal} cannot be opened: {e}"
        ))),
        Err(_) => Err(unavailable(format!(
            "cuda:{ordinal} cannot be opened: the CUDA driver lacks a function CUDA 13 needs (update the NVIDIA driver)"
        ))),
    }
}
