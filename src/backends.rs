//! Backend selection at run time over the backends compiled in.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use engine_api::{BackendOptions, ComputeBackend, Error, ModelPackage, Result};

/// The inference backends Atheria knows, compiled in or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Pure-Rust candle with safetensors weights (feature `candle`, default).
    Candle,
    /// TorchScript through libtorch (feature `tch`).
    Tch,
    /// ONNX Runtime (feature `onnx`).
    Onnx,
}

impl BackendKind {
    /// Every backend, compiled in or not.
    pub const ALL: [BackendKind; 3] = [BackendKind::Candle, BackendKind::Tch, BackendKind::Onnx];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Candle => "candle",
            BackendKind::Tch => "tch",
            BackendKind::Onnx => "onnx",
        }
    }

    /// True when this binary was built with the backend's feature.
    pub fn compiled_in(self) -> bool {
        match self {
            BackendKind::Candle => cfg!(feature = "candle"),
            BackendKind::Tch => cfg!(feature = "tch"),
            BackendKind::Onnx => cfg!(feature = "onnx"),
        }
    }

    /// The backends this binary can use.
    pub fn available() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.compiled_in()).collect()
    }

    fn not_compiled(self) -> Error {
        Error::BackendUnavailable {
            backend: self.name(),
            message: format!(
                "this binary was built without it; rebuild with `cargo build --release --features {}`",
                self.name()
            ),
        }
    }

    /// Whether the backend can work here (its native library loads), and its
    /// version: the `check` of tract's runtimes.
    pub fn check(self) -> Result<String> {
        match self {
            #[cfg(feature = "candle")]
            BackendKind::Candle => backend_candle::check(),
            #[cfg(feature = "tch")]
            BackendKind::Tch => (crate::plugin::load(&crate::plugin::TCH)?.check)(),
            #[cfg(feature = "onnx")]
            BackendKind::Onnx => backend_onnx::check(),
            #[allow(unreachable_patterns)]
            _ => Err(self.not_compiled()),
        }
    }

    /// Loads the model in `package` on this backend.
    pub fn load(
        self,
        package: &ModelPackage,
        options: &BackendOptions,
    ) -> Result<Arc<dyn ComputeBackend>> {
        match self {
            #[cfg(feature = "candle")]
            BackendKind::Candle => Ok(Arc::new(backend_candle::CandleBackend::load(
                package, options,
            )?)),
            #[cfg(feature = "tch")]
            BackendKind::Tch => (crate::plugin::load(&crate::plugin::TCH)?.load)(package, options),
            #[cfg(feature = "onnx")]
            BackendKind::Onnx => Ok(Arc::new(backend_onnx::OnnxBackend::load(package, options)?)),
            #[allow(unreachable_patterns)]
            _ => {
                let _ = (package, options);
                Err(self.not_compiled())
            }
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("unknown backend `{s}`: use candle, tch or onnx"))
            })
    }
}
