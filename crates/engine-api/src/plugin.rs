//! Backends built as shared libraries and loaded at run time.
//!
//! A backend whose native library may be absent where the binary runs
//! (libtorch, which the tch backend links) is built as its own `cdylib`. The
//! binary does not link it: it starts, runs the other backends, and turns a
//! missing library into an error naming what is missing and how to get it,
//! instead of the dynamic loader refusing to start the program at all.
//!
//! Such a library exports two C symbols:
//! - [`ABI_SYMBOL`], `extern "C" fn() -> *const c_char`: the [`ABI`] string
//!   it was built with;
//! - [`API_SYMBOL`], `extern "C" fn() -> &'static PluginApi`: its entry points.
//!
//! [`PluginApi`] holds Rust types and Rust-ABI function pointers, whose layout
//! only holds between one build of this crate by one compiler. The host
//! therefore compares the ABI string, a plain C string, with its own first,
//! and reads [`PluginApi`] only when they are equal. Host and library share
//! the C allocator (both use Rust's default `System` allocator), so values
//! made on one side may be dropped on the other. The host never unloads a
//! library: the backends it made hold code and vtables inside it.

use std::ffi::CStr;
use std::sync::Arc;

use crate::{BackendOptions, ComputeBackend, ModelPackage, Result};

/// The name of the exported function returning the library's [`ABI`] string.
pub const ABI_SYMBOL: &[u8] = b"atheria_plugin_abi\0";

/// The name of the exported function returning the library's [`PluginApi`].
pub const API_SYMBOL: &[u8] = b"atheria_plugin_api\0";

/// This build's plugin ABI: the interface version, this crate's version, the
/// compiler's version and a hash of this crate's sources (see build.rs).
pub const ABI: &CStr = match CStr::from_bytes_with_nul(
    concat!(
        "atheria-backend-plugin/1; engine-api ",
        env!("CARGO_PKG_VERSION"),
        "; ",
        env!("ATHERIA_ABI_FINGERPRINT"),
        "\0"
    )
    .as_bytes(),
) {
    Ok(abi) => abi,
    Err(_) => panic!("the plugin ABI string must end in its only NUL"),
};

/// The entry points of a backend library.
///
/// Implementations must not let a panic unwind into the host: each side has
/// its own copy of Rust's standard library and panic machinery.
pub struct PluginApi {
    /// The backend's name (`tch`).
    pub name: &'static str,
    /// Whether the backend works here, and its version: the backend's `check`.
    pub check: fn() -> Result<String>,
    /// Loads a model package.
    pub load: fn(&ModelPackage, &BackendOptions) -> Result<Arc<dyn ComputeBackend>>,
    /// Sends the library's log events to the host's subscriber: the library
    /// has its own copy of `tracing`, whose default subscriber is no one.
    pub set_dispatch: fn(&tracing::Dispatch),
}
