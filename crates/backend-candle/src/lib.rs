//! Atheria's pure-Rust [`ComputeBackend`](engine_api::ComputeBackend).
//!
//! candle reads and converts the safetensors weights; the layers run on
//! f32 kernels built on `gemm` (candle's own matrix kernel), because candle's
//! stock CPU convolution is several times slower than PyTorch's.
//!
//! - [`CandleBackend`]: load a package or in-memory tensors, then forward
//!   (`forward_with_memory` for the recurrent `unet_convlstm`).
//! - [`CandleRuntime`] (and the static [`RUNTIME`]): the backend as an
//!   [`engine_api::Runtime`], the factory a program chooses at run time.
//! - [`check`]: whether the backend works here, and its version string.
//! - [`matmul_gflops`]: the matrix-multiply speed the kernels can reach.
//!
//! Inside: `layout` (the tensors each architecture needs), `weights`
//! (reading and checking them), `net` and `unet` (the architectures),
//! `kernels` (conv by im2col or Winograd, GroupNorm, RMSNorm, the ConvLSTM
//! cell, pooling, ...),
//! `workspace` (buffer reuse).

mod backend;
mod kernels;
mod layout;
mod net;
mod speed;
mod unet;
mod weights;
mod workspace;

pub use backend::{CandleBackend, CandleRuntime, RUNTIME};
pub use speed::matmul_gflops;

/// The candle release this crate is built against.
const CANDLE_VERSION: &str = "0.11";

/// Checks that the backend can run here; returns its version string.
///
/// Runs a tiny candle computation and a tiny forward through the kernels, so
/// a broken build or a CPU the kernels cannot use is found before a model loads.
pub fn check() -> engine_api::Result<String> {
    use candle_core::{Device, Tensor};
    let fail = |e: &dyn std::fmt::Display| engine_api::Error::BackendUnavailable {
        backend: "candle",
        message: format!("self-test failed: {e}"),
    };
    let sum = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)
        .and_then(|t| t.sum_all())
        .and_then(|t| t.to_scalar::<f32>())
        .map_err(|e| fail(&e))?;
    if sum != 6.0 {
        return Err(fail(&format!("candle summed 1 + 2 + 3 to {sum}")));
    }
    let conv = kernels::Conv2d::new(1, 1, 3, vec![1.0; 9], Some(vec![0.5]));
    let mut out = [0.0f32; 4];
    // A pool of our own, as in a forward: the global rayon pool stays untouched.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| fail(&e))?
        .install(|| conv.forward(&[1.0; 4], kernels::Dims::new(1, 1, 2, 2), &mut out));
    if out != [4.5; 4] {
        return Err(fail(&format!(
            "a 3x3 conv of ones gave {out:?}, expected 4.5 everywhere"
        )));
    }
    Ok(format!(
        "candle-core {CANDLE_VERSION} with gemm kernels (cpu: {})",
        cpu_features()
    ))
}

fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") {
            f.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            f.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            f.push("avx512f");
        }
        if f.is_empty() {
            "baseline x86_64".into()
        } else {
            f.join(" ")
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}
