//! The C interface of a backend built as a shared library and loaded at run
//! time.
//!
//! A backend whose native library may be absent where a program runs
//! (libtorch, which the tch backend links) is built as its own `cdylib`. The
//! program does not link it: it starts, runs the other backends, and turns a
//! missing library into an error naming what is missing and how to get it,
//! instead of the dynamic loader refusing to start the program at all.
//!
//! # A C ABI, not a Rust one
//! Host and library are two separately compiled Rust programs, each with its
//! own standard library, panic machinery, `tracing` and global allocator. So
//! nothing crosses the boundary but C: plain pointers, sizes, integers and
//! NUL-terminated strings, through `extern "C"` functions. Memory is freed by
//! the side that allocated it (the library exports the functions that free
//! what it returns); errors cross as a kind code and a message and are
//! rebuilt into [`Error`] on the host ([`error_parts`], [`error_from_parts`]);
//! log events cross as a callback the host registers and re-emits through its
//! own `tracing` ([`LogCallback`]); panics are caught at every entry point and
//! become errors. Nothing depends on the two sides sharing a compiler, a
//! Rust version or an allocator: a host with its own `#[global_allocator]`
//! loads the library like any other (tests/foreign_allocator.rs).
//!
//! # The functions
//! In C terms, where `size_t` is `usize` and every function is exported
//! unmangled by the library:
//!
//! ```c
//! typedef struct {            /* PluginError, allocated by the library  */
//!     uint32_t kind;          /* ERROR_* below                           */
//!     char    *message;       /* UTF-8, never NULL                       */
//!     char    *path;          /* the file involved, or NULL              */
//! } atheria_error;
//! typedef void (*atheria_log)(uint32_t level, const char *target, const char *message);
//!
//! const char    *atheria_plugin_abi(void);   /* ABI, a static string     */
//! const char    *atheria_backend_name(void); /* "tch", a static string   */
//! void           atheria_backend_set_logger(atheria_log callback, uint32_t max_level);
//! atheria_error *atheria_backend_check(char **version);
//! atheria_error *atheria_backend_load(const char *spec_json, const char *origin,
//!                                     const uint8_t *model, size_t model_len,
//!                                     uint32_t device_kind, size_t device_index,
//!                                     size_t threads, void **backend);
//! atheria_error *atheria_backend_forward(const void *backend,
//!                                        const float *input, size_t input_len,
//!                                        size_t n, size_t c, size_t h, size_t w,
//!                                        float *output, size_t output_len);
//! atheria_error *atheria_backend_forward_memory(const void *backend,
//!                                        const float *input, size_t input_len,
//!                                        size_t n, size_t c, size_t h, size_t w,
//!                                        const float *memory, size_t memory_len,
//!                                        float *output, size_t output_len,
//!                                        float *next_memory, size_t next_memory_len);
//! size_t         atheria_backend_interior_margin(const void *backend);
//! atheria_error *atheria_backend_forward_interior(const void *backend,
//!                                        const float *input, size_t input_len,
//!                                        size_t n, size_t c, size_t h, size_t w,
//!                                        size_t margin,
//!                                        float *output, size_t output_len);
//! char          *atheria_backend_describe(const void *backend);
//! void           atheria_backend_free(void *backend);
//! void           atheria_backend_free_string(char *string);
//! void           atheria_backend_free_error(atheria_error *error);
//! ```
//!
//! A function returning `atheria_error *` returns NULL on success. `check`
//! writes a version string; `load` a backend handle, given the model
//! description as model.json text, the model file's bytes, `origin` (what
//! errors call the file), the device ([`DEVICE_CPU`] or [`DEVICE_CUDA`] with
//! its index) and the intra-op threads (0: one per core). `forward` takes the
//! NCHW shape as four numbers; the library checks the lengths against it
//! again, since it cannot trust its caller. `forward_memory` is the forward
//! of a recurrent law ([`ComputeBackend::forward_with_memory`]): `memory`
//! holds the model's memory tensors one after another, in the order of the
//! `memory` list in the `spec_json` given to `load`, each NCHW
//! `[n, channels, h / stride, w / stride]`; the library reads it without
//! changing it and writes the next memory, laid out the same way, into
//! `next_memory`. The library checks these lengths again too; for a law
//! without memory both are 0 and the call is `forward`. `interior_margin`
//! is the margin whose interior the backend computes alone
//! ([`ComputeBackend::computes_interior`]), 0 for none, fixed at load;
//! `forward_interior` is [`ComputeBackend::forward_interior`], writing the
//! `[n, c, h - 2 margin, w - 2 margin]` interior. The handle may be
//! used from several threads at once (the backend is `Send + Sync`) until
//! it is freed.
//!
//! [`ComputeBackend::forward_with_memory`]: crate::ComputeBackend::forward_with_memory
//! [`ComputeBackend::computes_interior`]: crate::ComputeBackend::computes_interior
//! [`ComputeBackend::forward_interior`]: crate::ComputeBackend::forward_interior
//!
//! The host reads [`ABI_SYMBOL`] first and uses nothing else unless the
//! string equals its own [`ABI`]. The host never unloads a library.

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;

use crate::Error;

/// The name of the exported function returning the library's [`ABI`] string.
pub const ABI_SYMBOL: &[u8] = b"atheria_plugin_abi\0";
/// `atheria_backend_name`: [`NameFn`].
pub const NAME_SYMBOL: &[u8] = b"atheria_backend_name\0";
/// `atheria_backend_set_logger`: [`SetLoggerFn`].
pub const SET_LOGGER_SYMBOL: &[u8] = b"atheria_backend_set_logger\0";
/// `atheria_backend_check`: [`CheckFn`].
pub const CHECK_SYMBOL: &[u8] = b"atheria_backend_check\0";
/// `atheria_backend_load`: [`LoadFn`].
pub const LOAD_SYMBOL: &[u8] = b"atheria_backend_load\0";
/// `atheria_backend_forward`: [`ForwardFn`].
pub const FORWARD_SYMBOL: &[u8] = b"atheria_backend_forward\0";
/// `atheria_backend_forward_memory`: [`ForwardMemoryFn`].
pub const FORWARD_MEMORY_SYMBOL: &[u8] = b"atheria_backend_forward_memory\0";
/// `atheria_backend_interior_margin`: [`InteriorMarginFn`].
pub const INTERIOR_MARGIN_SYMBOL: &[u8] = b"atheria_backend_interior_margin\0";
/// `atheria_backend_forward_interior`: [`ForwardInteriorFn`].
pub const FORWARD_INTERIOR_SYMBOL: &[u8] = b"atheria_backend_forward_interior\0";
/// `atheria_backend_describe`: [`DescribeFn`].
pub const DESCRIBE_SYMBOL: &[u8] = b"atheria_backend_describe\0";
/// `atheria_backend_free`: [`FreeFn`].
pub const FREE_SYMBOL: &[u8] = b"atheria_backend_free\0";
/// `atheria_backend_free_string`: [`FreeStringFn`].
pub const FREE_STRING_SYMBOL: &[u8] = b"atheria_backend_free_string\0";
/// `atheria_backend_free_error`: [`FreeErrorFn`].
pub const FREE_ERROR_SYMBOL: &[u8] = b"atheria_backend_free_error\0";

/// The interface version both sides must agree on. It names the set of
/// functions above, their C signatures and the meaning of every code; change
/// the number whenever any of them changes.
pub const ABI: &CStr = c"atheria-backend-plugin/3 (C ABI)";

/// An error returned by the library: allocated by it, freed by
/// `atheria_backend_free_error`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginError {
    /// One of the `ERROR_*` codes.
    pub kind: u32,
    /// What went wrong, UTF-8, never null.
    pub message: *mut c_char,
    /// The file involved ([`ERROR_MODEL`], [`ERROR_IO`]), or null.
    pub path: *mut c_char,
}

/// [`Error::InvalidArgument`].
pub const ERROR_INVALID_ARGUMENT: u32 = 1;
/// [`Error::Model`]: `path` is the file or package.
pub const ERROR_MODEL: u32 = 2;
/// [`Error::BackendUnavailable`].
pub const ERROR_UNAVAILABLE: u32 = 3;
/// [`Error::Backend`], and any error with no code of its own (its whole
/// message), including a panic caught in the library.
pub const ERROR_BACKEND: u32 = 4;
/// [`Error::Io`]: `path` is the file; the message is the system's.
pub const ERROR_IO: u32 = 5;

/// [`BackendOptions::device`](crate::BackendOptions::device) is the CPU.
pub const DEVICE_CPU: u32 = 0;
/// The device is CUDA device `device_index`.
pub const DEVICE_CUDA: u32 = 1;

/// Log levels of [`LogCallback`] and [`SetLoggerFn`] (`tracing`'s, most
/// severe first); as `max_level`, [`LOG_OFF`] turns logging off.
pub const LOG_OFF: u32 = 0;
/// `tracing::Level::ERROR`.
pub const LOG_ERROR: u32 = 1;
/// `tracing::Level::WARN`.
pub const LOG_WARN: u32 = 2;
/// `tracing::Level::INFO`.
pub const LOG_INFO: u32 = 3;
/// `tracing::Level::DEBUG`.
pub const LOG_DEBUG: u32 = 4;
/// `tracing::Level::TRACE`.
pub const LOG_TRACE: u32 = 5;

/// `atheria_plugin_abi`: the library's [`ABI`], a static string.
pub type AbiFn = unsafe extern "C" fn() -> *const c_char;
/// `atheria_backend_name`: the backend's name, a static string.
pub type NameFn = unsafe extern "C" fn() -> *const c_char;
/// The host's log sink: a level (`LOG_*`), the event's target and its
/// formatted message, both NUL-terminated and valid only during the call.
/// Called from any thread; must not unwind.
pub type LogCallback = extern "C" fn(level: u32, target: *const c_char, message: *const c_char);
/// `atheria_backend_set_logger`: sends the library's log events at
/// `max_level` or more severe to `callback` (once per process).
pub type SetLoggerFn = unsafe extern "C" fn(callback: LogCallback, max_level: u32);
/// `atheria_backend_check`: writes a version string to `*version`, or
/// returns an error.
pub type CheckFn = unsafe extern "C" fn(version: *mut *mut c_char) -> *mut PluginError;
/// `atheria_backend_load`: writes a backend handle to `*backend`, or returns
/// an error.
pub type LoadFn = unsafe extern "C" fn(
    spec_json: *const c_char,
    origin: *const c_char,
    model: *const u8,
    model_len: usize,
    device_kind: u32,
    device_index: usize,
    threads: usize,
    backend: *mut *mut c_void,
) -> *mut PluginError;
/// `atheria_backend_forward`: one forward of an NCHW batch.
pub type ForwardFn = unsafe extern "C" fn(
    backend: *const c_void,
    input: *const f32,
    input_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    output: *mut f32,
    output_len: usize,
) -> *mut PluginError;
/// `atheria_backend_forward_memory`: one forward of an NCHW batch of a
/// recurrent law, reading `memory` and writing `output` and `next_memory`.
pub type ForwardMemoryFn = unsafe extern "C" fn(
    backend: *const c_void,
    input: *const f32,
    input_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    memory: *const f32,
    memory_len: usize,
    output: *mut f32,
    output_len: usize,
    next_memory: *mut f32,
    next_memory_len: usize,
) -> *mut PluginError;
/// `atheria_backend_interior_margin`: the margin whose interior
/// `forward_interior` computes alone, 0 for none.
pub type InteriorMarginFn = unsafe extern "C" fn(backend: *const c_void) -> usize;
/// `atheria_backend_forward_interior`: one forward of an NCHW batch that
/// writes each field's interior without its outer `margin` cells.
pub type ForwardInteriorFn = unsafe extern "C" fn(
    backend: *const c_void,
    input: *const f32,
    input_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    margin: usize,
    output: *mut f32,
    output_len: usize,
) -> *mut PluginError;
/// `atheria_backend_describe`: a one-line description, to free with
/// `atheria_backend_free_string`.
pub type DescribeFn = unsafe extern "C" fn(backend: *const c_void) -> *mut c_char;
/// `atheria_backend_free`: frees a backend handle.
pub type FreeFn = unsafe extern "C" fn(backend: *mut c_void);
/// `atheria_backend_free_string`: frees a string the library returned.
pub type FreeStringFn = unsafe extern "C" fn(string: *mut c_char);
/// `atheria_backend_free_error`: frees an error the library returned.
pub type FreeErrorFn = unsafe extern "C" fn(error: *mut PluginError);

/// An error as it crosses the boundary: its code, its message, and the file
/// involved where the kind has one. [`error_from_parts`] rebuilds it.
pub fn error_parts(error: &Error) -> (u32, String, Option<PathBuf>) {
    match error {
        Error::InvalidArgument(message) => (ERROR_INVALID_ARGUMENT, message.clone(), None),
        Error::Model { path, message } => (ERROR_MODEL, message.clone(), Some(path.clone())),
        Error::BackendUnavailable { message, .. } => (ERROR_UNAVAILABLE, message.clone(), None),
        Error::Backend { message, .. } => (ERROR_BACKEND, message.clone(), None),
        Error::Io { path, source } => (ERROR_IO, source.to_string(), Some(path.clone())),
        other => (ERROR_BACKEND, other.to_string(), None),
    }
}

/// The [`Error`] that [`error_parts`] took apart, for `backend`; an unknown
/// code (a newer library) becomes [`Error::Backend`].
pub fn error_from_parts(
    backend: &'static str,
    kind: u32,
    message: String,
    path: Option<PathBuf>,
) -> Error {
    match (kind, path) {
        (ERROR_INVALID_ARGUMENT, _) => Error::InvalidArgument(message),
        (ERROR_MODEL, Some(path)) => Error::Model { path, message },
        (ERROR_UNAVAILABLE, _) => Error::BackendUnavailable { backend, message },
        (ERROR_IO, Some(path)) => Error::io(path, std::io::Error::other(message)),
        _ => Error::Backend { backend, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_survives_the_crossing() {
        let errors = [
            Error::InvalidArgument("bad".into()),
            Error::model("/m/model.pt", "not TorchScript"),
            Error::BackendUnavailable {
                backend: "tch",
                message: "no libtorch".into(),
            },
            Error::backend("tch", "forward failed"),
            Error::io(
                "/m/model.pt",
                std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
            ),
        ];
        for error in errors {
            let (kind, message, path) = error_parts(&error);
            let back = error_from_parts("tch", kind, message, path);
            assert_eq!(back.to_string(), error.to_string());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&error)
            );
        }
        let other = Error::step(3, Error::InvalidArgument("x".into()));
        let (kind, message, _) = error_parts(&other);
        assert_eq!(kind, ERROR_BACKEND);
        assert_eq!(
            error_from_parts("tch", 99, message, None).to_string(),
            "backend tch: step 3 failed: x (state left as it was before this step)"
        );
    }
}
