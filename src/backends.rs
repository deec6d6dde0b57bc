//! Backend selection at run time over the backends compiled in: each
//! [`BackendKind`] hands out its [`Runtime`], the factory that checks the
//! backend and loads models on it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use engine_api::{BackendOptions, ComputeBackend, Error, ModelPackage, Result, Runtime};

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
                "this program was built without it; rebuild with the Cargo feature `{}` (`cargo build --release --features {}`)",
                self.name(),
                self.name()
            ),
        }
    }

    /// The backend's [`Runtime`]: the factory that checks it and loads
    /// models on it; or an error naming the feature to build with.
    ///
    /// The tch runtime loads its library (`libatheria_tch.so`, and with it
    /// libtorch) on first use, not here.
    pub fn runtime(self) -> Result<&'static dyn Runtime> {
        match self {
            #[cfg(feature = "candle")]
            BackendKind::Candle => Ok(&backend_candle::RUNTIME),
            #[cfg(feature = "tch")]
            BackendKind::Tch => Ok(&crate::plugin::TCH_RUNTIME),
            #[cfg(feature = "onnx")]
            BackendKind::Onnx => Ok(&backend_onnx::RUNTIME),
            #[allow(unreachable_patterns)]
            _ => Err(self.not_compiled()),
        }
    }

    /// Whether the backend can work here (its native library loads), and its
    /// version: [`Runtime::check`].
    pub fn check(self) -> Result<String> {
        self.runtime()?.check()
    }

    /// Loads the model in `package` on this backend: [`Runtime::load`].
    pub fn load(
        self,
        package: &ModelPackage,
        options: &BackendOptions,
    ) -> Result<Arc<dyn ComputeBackend>> {
        self.runtime()?.load(package, options)
    }
}

/// The libtorch this build's tch library was built against, where it looks
/// for it (its rpath): `(version, lib dir)`; `None` in a build without `tch`.
pub fn tch_libtorch() -> Option<(&'static str, &'static str)> {
    #[cfg(feature = "tch")]
    return Some((
        env!("ATHERIA_TCH_LIBTORCH_VERSION"),
        env!("ATHERIA_TCH_LIBTORCH_LIB"),
    ));
    #[cfg(not(feature = "tch"))]
    None
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
