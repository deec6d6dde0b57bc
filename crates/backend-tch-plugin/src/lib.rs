//! The tch backend ([`backend_tch`]) as a shared library, `libatheria_tch.so`,
//! which the `atheria` library loads when a program first asks for tch.
//!
//! Why a separate library: tch links libtorch, and a program that links a
//! library the machine lacks does not start at all (the dynamic loader stops
//! it before `main`, with no hint of a fix). Loaded at run time instead, a
//! missing or mismatched libtorch is an error the program words for people,
//! and a program built with every backend still runs candle and ONNX Runtime
//! where libtorch is absent.
//!
//! The interface is the C ABI of [`engine_api::plugin`]: `extern "C"`
//! functions over plain pointers, sizes and C strings. This library and the
//! program loading it are separate Rust programs (their own standard library,
//! allocator, panic machinery and `tracing`), so:
//! - every string and error it returns was allocated here and is freed here
//!   (`atheria_backend_free_string`, `atheria_backend_free_error`), and a
//!   backend handle is a `Box<TchBackend>` freed by `atheria_backend_free`;
//! - errors leave as a kind code and a message ([`engine_api::plugin::error_parts`]);
//! - every entry point catches panics and returns them as errors;
//! - log events go to the callback the host registers
//!   (`atheria_backend_set_logger`), formatted here.

use std::ffi::{c_char, c_void, CStr, CString, OsStr};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::ptr::null_mut;

use backend_tch::TchBackend;
use engine_api::plugin::{
    error_parts, LogCallback, PluginError, ABI, DEVICE_CPU, DEVICE_CUDA, LOG_DEBUG, LOG_ERROR,
    LOG_INFO, LOG_OFF, LOG_TRACE, LOG_WARN,
};
use engine_api::{
    BackendOptions, BatchShape, ComputeBackend, Device, Error, ModelFile, ModelPackage, ModelSpec,
    Result,
};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const NAME: &str = "tch";

/// The ABI string this library was built with ([`engine_api::plugin::ABI`]).
#[no_mangle]
pub extern "C" fn atheria_plugin_abi() -> *const c_char {
    ABI.as_ptr()
}

/// The backend's name, a static string.
#[no_mangle]
pub extern "C" fn atheria_backend_name() -> *const c_char {
    c"tch".as_ptr()
}

/// Sends this library's log events at `max_level` (`LOG_*`) or more severe
/// to `callback`. The first call in a process wins.
#[no_mangle]
pub extern "C" fn atheria_backend_set_logger(callback: LogCallback, max_level: u32) {
    let _ = catch_unwind(|| {
        let max = match max_level {
            LOG_OFF => LevelFilter::OFF,
            LOG_ERROR => LevelFilter::ERROR,
            LOG_WARN => LevelFilter::WARN,
            LOG_INFO => LevelFilter::INFO,
            LOG_DEBUG => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        };
        // Fails only when already set: the host calls this once per process.
        let _ = tracing::subscriber::set_global_default(ToHost { callback, max });
    });
}

/// Checks that libtorch works here; writes its version to `*version`.
///
/// # Safety
/// `version` must be valid for one pointer write. The string written must be
/// freed with [`atheria_backend_free_string`].
#[no_mangle]
pub unsafe extern "C" fn atheria_backend_check(version: *mut *mut c_char) -> *mut PluginError {
    guarded("check", || {
        if version.is_null() {
            return Err(null_argument("version"));
        }
        let text = backend_tch::check()?;
        // SAFETY: non-null, and valid for a write by the caller's contract.
        unsafe { version.write(c_string(text.into_bytes()).into_raw()) };
        Ok(())
    })
}

/// Loads a TorchScript model; writes a backend handle to `*backend`.
///
/// # Safety
/// `spec_json` and `origin` must be NUL-terminated strings; `model` must
/// point to `model_len` readable bytes (or be anything when `model_len` is
/// 0); `backend` must be valid for one pointer write. All are only read
/// during the call. The handle must be freed with [`atheria_backend_free`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn atheria_backend_load(
    spec_json: *const c_char,
    origin: *const c_char,
    model: *const u8,
    model_len: usize,
    device_kind: u32,
    device_index: usize,
    threads: usize,
    backend: *mut *mut c_void,
) -> *mut PluginError {
    guarded("load", || {
        if spec_json.is_null() || origin.is_null() || backend.is_null() {
            return Err(null_argument("spec_json, origin or backend"));
        }
        // SAFETY: NUL-terminated strings, by the caller's contract.
        let (json, origin) = unsafe { (CStr::from_ptr(spec_json), CStr::from_ptr(origin)) };
        let origin = PathBuf::from(OsStr::from_bytes(origin.to_bytes()));
        let json = json
            .to_str()
            .map_err(|_| Error::InvalidArgument("the model description is not UTF-8".into()))?;
        let spec = ModelSpec::from_json(json, &origin)?;
        // SAFETY: `model_len` readable bytes, by the caller's contract.
        let bytes = unsafe { slice_or_empty(model, model_len) }?;
        let device = match device_kind {
            DEVICE_CPU => Device::Cpu,
            DEVICE_CUDA => Device::Cuda(device_index),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "device kind {other} is not one this library knows"
                )))
            }
        };
        let mut options = BackendOptions::default().with_device(device);
        if threads > 0 {
            options = options.with_threads(threads);
        }
        let package =
            ModelPackage::from_bytes(spec, [(ModelFile::TorchScript, bytes)])?.with_origin(&origin);
        let loaded = TchBackend::load(&package, &options)?;
        tracing::debug!("loaded {}: {}", origin.display(), loaded.describe());
        // SAFETY: non-null, and valid for a write by the caller's contract.
        unsafe { backend.write(Box::into_raw(Box::new(loaded)).cast()) };
        Ok(())
    })
}

/// The backend and the input and output buffers of a forward call, from
/// their pointers; null pointers with non-zero lengths are errors.
///
/// # Safety
/// `backend` must be null or a live handle from [`atheria_backend_load`];
/// `input` must point to `input_len` readable f32 and `output` to
/// `output_len` writable f32 that overlap nothing else while the returned
/// borrows live.
unsafe fn forward_args<'a>(
    backend: *const c_void,
    input: *const f32,
    input_len: usize,
    output: *mut f32,
    output_len: usize,
) -> Result<(&'a TchBackend, &'a [f32], &'a mut [f32])> {
    // SAFETY: a live handle (a `Box<TchBackend>`) or null, by the caller's contract.
    let backend =
        unsafe { backend.cast::<TchBackend>().as_ref() }.ok_or_else(|| null_argument("backend"))?;
    // SAFETY: the buffers' lengths and exclusivity, by the caller's contract.
    let input = unsafe { slice_or_empty(input, input_len) }?;
    // SAFETY: as above.
    let output = unsafe { slice_mut_or_empty(output, output_len, "output") }?;
    Ok((backend, input, output))
}

/// One forward of an NCHW batch of shape `[n, c, h, w]`.
///
/// # Safety
/// `backend` must be a live handle from [`atheria_backend_load`]; `input`
/// must point to `input_len` readable f32 and `output` to `output_len`
/// writable f32 that overlap nothing else during the call (either may be
/// anything when its length is 0). Several threads may call this at once on
/// one handle.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn atheria_backend_forward(
    backend: *const c_void,
    input: *const f32,
    input_len: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    output: *mut f32,
    output_len: usize,
) -> *mut PluginError {
    guarded("forward", || {
        // SAFETY: the caller's contract, as `forward_args` needs it.
        let (backend, input, output) =
            unsafe { forward_args(backend, input, input_len, output, output_len) }?;
        // `forward` checks the lengths against the shape before anything
        // reads the buffers.
        backend.forward(input, BatchShape::new(n, c, h, w), output)
    })
}

/// The margin whose interior [`atheria_backend_forward_interior`] computes
/// alone ([`ComputeBackend::computes_interior`]), 0 for none.
///
/// # Safety
/// `backend` must be a live handle from [`atheria_backend_load`] (or null,
/// which answers 0).
#[no_mangle]
pub unsafe extern "C" fn atheria_backend_interior_margin(backend: *const c_void) -> usize {
    // SAFETY: a live handle (a `Box<TchBackend>`) or null, by the caller's contract.
    let Some(backend) = (unsafe { backend.cast::<TchBackend>().as_ref() }) else {
        return 0;
    };
    catch_unwind(AssertUnwindSafe(|| backend.interior_margin().unwrap_or(0))).unwrap_or(0)
}

/// One forward of an NCHW batch of shape `[n, c, h, w]` that writes each
/// field's interior without its outer `margin` cells
/// ([`ComputeBackend::forward_interior`]) into `output`, of shape
/// `[n, c, h - 2 margin, w - 2 margin]`.
///
/// # Safety
/// As [`atheria_backend_forward`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn atheria_backend_forward_interior(
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
) -> *mut PluginError {
    guarded("forward_interior", || {
        // SAFETY: the caller's contract, as `forward_args` needs it.
        let (backend, input, output) =
            unsafe { forward_args(backend, input, input_len, output, output_len) }?;
        // `forward_interior` checks the lengths against the shape and the
        // margin before anything reads the buffers.
        backend.forward_interior(input, BatchShape::new(n, c, h, w), margin, output)
    })
}

/// One forward of a recurrent law on an NCHW batch of shape `[n, c, h, w]`:
/// reads `memory` (the model's memory tensors one after another, in
/// model.json order) and writes the delta into `output` and the next memory
/// into `next_memory`. For a law without memory both memory lengths are 0
/// and this is [`atheria_backend_forward`].
///
/// # Safety
/// `backend` must be a live handle from [`atheria_backend_load`]; `input`
/// and `memory` must point to `input_len` and `memory_len` readable f32,
/// `output` and `next_memory` to `output_len` and `next_memory_len`
/// writable f32, the four overlapping nothing else during the call (any may
/// be anything when its length is 0). Several threads may call this at
/// once on one handle.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn atheria_backend_forward_memory(
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
) -> *mut PluginError {
    guarded("forward_memory", || {
        // SAFETY: a live handle (a `Box<TchBackend>`), by the caller's contract.
        let backend = unsafe { backend.cast::<TchBackend>().as_ref() }
            .ok_or_else(|| null_argument("backend"))?;
        // SAFETY: the buffers' lengths and exclusivity, by the caller's contract.
        let (input, memory) = unsafe {
            (
                slice_or_empty(input, input_len)?,
                slice_or_empty(memory, memory_len)?,
            )
        };
        // SAFETY: as above.
        let output = unsafe { slice_mut_or_empty(output, output_len, "output") }?;
        // SAFETY: as above.
        let next_memory =
            unsafe { slice_mut_or_empty(next_memory, next_memory_len, "next_memory") }?;
        // `forward_with_memory` checks every length against the shape and
        // the model's memory before anything reads the buffers.
        backend.forward_with_memory(
            input,
            BatchShape::new(n, c, h, w),
            memory,
            output,
            next_memory,
        )
    })
}

/// A one-line description of a backend, to free with
/// [`atheria_backend_free_string`]; null if the handle is null.
///
/// # Safety
/// `backend` must be a live handle from [`atheria_backend_load`].
#[no_mangle]
pub unsafe extern "C" fn atheria_backend_describe(backend: *const c_void) -> *mut c_char {
    // SAFETY: a live handle, by the caller's contract.
    let Some(backend) = (unsafe { backend.cast::<TchBackend>().as_ref() }) else {
        return null_mut();
    };
    let text = catch_unwind(AssertUnwindSafe(|| backend.describe()))
        .unwrap_or_else(|_| "tch (describe panicked)".into());
    c_string(text.into_bytes()).into_raw()
}

/// Frees a backend handle; null is ignored.
///
/// # Safety
/// `backend` must be a handle from [`atheria_backend_load`] that no call is
/// using and that is not freed again.
#[no_mangle]
pub unsafe extern "C" fn atheria_backend_free(backend: *mut c_void) {
    if backend.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in `atheria_backend_load`, freed once.
    let backend = unsafe { Box::from_raw(backend.cast::<TchBackend>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(backend)));
}

/// Frees a string this library returned; null is ignored.
///
/// # Safety
/// `string` must come from this library and not be freed again.
#[no_mangle]
pub unsafe extern "C" fn atheria_backend_free_string(string: *mut c_char) {
    if !string.is_null() {
        // SAFETY: made by CString::into_raw here, freed once.
        drop(unsafe { CString::from_raw(string) });
    }
}

/// Frees an error this library returned; null is ignored.
///
/// # Safety
/// `error` must come from this library and not be freed again.
#[no_mangle]
pub unsafe extern "C" fn atheria_backend_free_error(error: *mut PluginError) {
    if error.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in `error_ptr`, its strings by
    // CString::into_raw; freed once.
    unsafe {
        let error = Box::from_raw(error);
        atheria_backend_free_string(error.message);
        atheria_backend_free_string(error.path);
    }
}

/// Runs `f`, returning null on success and an error otherwise; a panic
/// becomes an error naming the entry point.
fn guarded(what: &str, f: impl FnOnce() -> Result<()>) -> *mut PluginError {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => null_mut(),
        Ok(Err(e)) => error_ptr(&e),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            error_ptr(&Error::Backend {
                backend: NAME,
                message: format!("{what} panicked: {message}"),
            })
        }
    }
}

/// An error for the host, allocated here.
fn error_ptr(error: &Error) -> *mut PluginError {
    let (kind, message, path) = error_parts(error);
    let path = path.map_or(null_mut(), |p| {
        c_string(p.as_os_str().as_bytes().to_vec()).into_raw()
    });
    Box::into_raw(Box::new(PluginError {
        kind,
        message: c_string(message.into_bytes()).into_raw(),
        path,
    }))
}

/// A C string of `bytes`, any NUL in them replaced (messages never hold one).
fn c_string(mut bytes: Vec<u8>) -> CString {
    bytes
        .iter_mut()
        .filter(|b| **b == 0)
        .for_each(|b| *b = b'?');
    CString::new(bytes).unwrap_or_default()
}

fn null_argument(what: &str) -> Error {
    Error::InvalidArgument(format!("{what}: null pointer passed to the tch library"))
}

/// A slice over a C buffer; empty for length 0 whatever the pointer.
///
/// # Safety
/// For a length above 0, `ptr` must point to `len` readable values that stay
/// unchanged for `'a`.
unsafe fn slice_or_empty<'a, T>(ptr: *const T, len: usize) -> Result<&'a [T]> {
    if len == 0 {
        Ok(&[])
    } else if ptr.is_null() {
        Err(null_argument("buffer"))
    } else {
        // SAFETY: by the function's contract.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }
}

/// A mutable slice over a C buffer; empty for length 0 whatever the
/// pointer. `what` names the buffer in the error for a null pointer.
///
/// # Safety
/// For a length above 0, `ptr` must point to `len` writable values that
/// nothing else reads or writes for `'a`.
unsafe fn slice_mut_or_empty<'a, T>(ptr: *mut T, len: usize, what: &str) -> Result<&'a mut [T]> {
    if len == 0 {
        Ok(&mut [])
    } else if ptr.is_null() {
        Err(null_argument(what))
    } else {
        // SAFETY: by the function's contract.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }
}

/// The subscriber this library logs to: formats each event and hands it to
/// the host's callback, which re-emits it through the host's `tracing`.
struct ToHost {
    callback: LogCallback,
    max: LevelFilter,
}

impl Subscriber for ToHost {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    // Spans are not forwarded: the backend's events carry what they mean.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let level = match *metadata.level() {
            Level::ERROR => LOG_ERROR,
            Level::WARN => LOG_WARN,
            Level::INFO => LOG_INFO,
            Level::DEBUG => LOG_DEBUG,
            _ => LOG_TRACE,
        };
        let mut text = Text::default();
        event.record(&mut text);
        let message = c_string(format!("{}{}", text.message, text.fields).into_bytes());
        let target = c_string(metadata.target().as_bytes().to_vec());
        (self.callback)(level, target.as_ptr(), message.as_ptr());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message and its other fields, as text.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}
