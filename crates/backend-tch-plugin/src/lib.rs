//! The tch backend ([`backend_tch`]) as a shared library, `libatheria_tch.so`,
//! which the `atheria` binary loads when a run first asks for tch.
//!
//! Why a separate library: tch links libtorch, and a program that links a
//! library the machine lacks does not start at all (the dynamic loader stops
//! it before `main`, with no hint of a fix). Loaded at run time instead, a
//! missing or mismatched libtorch is an error the binary words for people,
//! and a binary built with every backend still runs candle and ONNX Runtime
//! where libtorch is absent.
//!
//! The interface is [`engine_api::plugin`]: two C symbols, an ABI string and
//! a table of Rust entry points. Every entry point, and every method of the
//! backends it returns, catches panics and returns them as errors: host and
//! library each have their own standard library, so a panic must not unwind
//! from one into the other.

use std::any::Any;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use backend_tch::TchBackend;
use engine_api::plugin::{PluginApi, ABI};
use engine_api::{
    BackendOptions, BatchShape, ComputeBackend, Device, Error, ModelPackage, ModelSpec, Result,
};

/// The ABI string this library was built with ([`engine_api::plugin::ABI`]).
#[no_mangle]
pub extern "C" fn atheria_plugin_abi() -> *const c_char {
    ABI.as_ptr()
}

/// The entry points; read by the host only after the ABI strings match.
#[no_mangle]
// Rust types across a C symbol: sound only between one build of engine-api by
// one compiler, which the ABI string checked before this is called.
#[allow(improper_ctypes_definitions)]
pub extern "C" fn atheria_plugin_api() -> &'static PluginApi {
    &API
}

static API: PluginApi = PluginApi {
    name: "tch",
    check,
    load,
    set_dispatch,
};

fn check() -> Result<String> {
    guarded("check", backend_tch::check)
}

fn load(package: &ModelPackage, options: &BackendOptions) -> Result<Arc<dyn ComputeBackend>> {
    guarded("load", || {
        let backend = TchBackend::load(package, options)?;
        Ok(Arc::new(PanicFree(backend)) as Arc<dyn ComputeBackend>)
    })
}

fn set_dispatch(dispatch: &tracing::Dispatch) {
    // Fails only when already set: the host calls this once per process.
    let _ = tracing::dispatcher::set_global_default(dispatch.clone());
}

/// Runs `f`, turning a panic into an error that names the entry point.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(Error::Backend {
            backend: "tch",
            message: format!("{what} panicked: {}", panic_message(payload.as_ref())),
        })
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A backend whose methods never unwind into the host.
struct PanicFree<B>(B);

impl<B: ComputeBackend> ComputeBackend for PanicFree<B> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn spec(&self) -> &ModelSpec {
        self.0.spec()
    }

    fn device(&self) -> Device {
        self.0.device()
    }

    fn forward(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        guarded("forward", || self.0.forward(input, shape, output))
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}
