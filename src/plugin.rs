//! Backends built as shared libraries ([`engine_api::plugin`], a C ABI):
//! found beside the program, loaded once per process on first use, never
//! unloaded, and wrapped in a [`Runtime`] like the backends compiled in.
//!
//! The tch backend is one (`libatheria_tch.so`, crates/backend-tch-plugin),
//! so that a program using this library starts, and runs its other backends,
//! on a machine without libtorch, and says what is missing when tch is asked
//! for.
//!
//! Only C crosses the boundary: the library may be built by another compiler,
//! and the host may use another global allocator (tests/foreign_allocator.rs
//! runs tch under one). Strings and errors the library returns are copied
//! here and handed back to the library to free; its errors are rebuilt into
//! [`Error`]; its log events arrive through [`log_from_library`] and are
//! re-emitted through this process's `tracing`.

use std::ffi::{c_char, c_void, CStr, CString, OsStr};
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};
use std::ptr::{null_mut, NonNull};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use engine_api::plugin::{
    error_from_parts, AbiFn, CheckFn, DescribeFn, ForwardFn, ForwardInteriorFn, ForwardMemoryFn,
    FreeErrorFn, FreeFn, FreeStringFn, InteriorMarginFn, LoadFn, NameFn, PluginError, SetLoggerFn,
    ABI, ABI_SYMBOL, CHECK_SYMBOL, DESCRIBE_SYMBOL, DEVICE_CPU, DEVICE_CUDA,
    FORWARD_INTERIOR_SYMBOL, FORWARD_MEMORY_SYMBOL, FORWARD_SYMBOL, FREE_ERROR_SYMBOL,
    FREE_STRING_SYMBOL, FREE_SYMBOL, INTERIOR_MARGIN_SYMBOL, LOAD_SYMBOL, LOG_DEBUG, LOG_ERROR,
    LOG_INFO, LOG_OFF, LOG_TRACE, LOG_WARN, NAME_SYMBOL, SET_LOGGER_SYMBOL,
};
use engine_api::{
    BatchShape, ComputeBackend, Device, Error, LoadRequest, ModelFile, ModelSpec, Result, Runtime,
};
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use tracing::level_filters::LevelFilter;

/// A backend library: what it is called and what it needs.
pub(crate) struct Plugin {
    /// The backend's name.
    pub backend: &'static str,
    /// The library's file name.
    pub file: &'static str,
    /// The environment variable that names the library's path instead.
    pub env: &'static str,
    /// The package file the backend runs.
    pub model_file: ModelFile,
    /// Whether this build asked for the backend's CUDA support.
    pub cuda: bool,
    /// Environment variables set, where the process has not set them, right
    /// before the library is loaded (see [`TCH`]).
    pub env_defaults: &'static [(&'static str, &'static str)],
    /// Words a loader error (a missing or mismatched dependency) for people.
    pub explain: fn(&Path, &str) -> String,
}

/// libtorch's version and lib dir where this build found them (build.rs).
const LIBTORCH_VERSION: &str = env!("ATHERIA_TCH_LIBTORCH_VERSION");
const LIBTORCH_LIB: &str = env!("ATHERIA_TCH_LIBTORCH_LIB");

/// The tch backend (TorchScript on libtorch).
///
/// `OMP_WAIT_POLICY=PASSIVE`: libtorch's OpenMP workers otherwise spin for
/// milliseconds after each forward, taking the cores the engine's rayon
/// workers need next (ARCHITECTURE.md, the threading rule). libgomp reads the
/// variable once, in its constructor, which runs when this library brings
/// libtorch in: so it is set here, right before that, for every program using
/// this library (not only the `atheria` binary), and only when the process
/// has not chosen a policy itself.
pub(crate) const TCH: Plugin = Plugin {
    backend: "tch",
    file: "libatheria_tch.so",
    env: "ATHERIA_TCH_PLUGIN",
    model_file: ModelFile::TorchScript,
    cuda: cfg!(feature = "cuda"),
    env_defaults: &[("OMP_WAIT_POLICY", "PASSIVE")],
    explain: explain_tch,
};

/// The tch backend as a [`Runtime`].
pub(crate) static TCH_RUNTIME: PluginRuntime = PluginRuntime { plugin: &TCH };

fn explain_tch(path: &Path, error: &str) -> String {
    let wanted = format!("libtorch {LIBTORCH_VERSION} (built against {LIBTORCH_LIB})");
    if error.contains("cannot open shared object file") {
        format!(
            "libtorch is missing ({error}); this build needs {wanted}: run `scripts/setup-python.sh` to recreate the project's Python environment, or put that libtorch's lib dir on LD_LIBRARY_PATH"
        )
    } else if error.contains("undefined symbol") || error.contains("version `") {
        format!(
            "the libtorch found is not the one this build was made for ({error}); this build needs {wanted}: restore it, or rebuild (`source scripts/env.sh && cargo build --release --features tch`)"
        )
    } else {
        format!("cannot load {}: {error}", path.display())
    }
}

/// A loaded library's entry points (C functions, see [`engine_api::plugin`]).
pub(crate) struct Api {
    backend: &'static str,
    check: CheckFn,
    load: LoadFn,
    forward: ForwardFn,
    forward_memory: ForwardMemoryFn,
    interior_margin: InteriorMarginFn,
    forward_interior: ForwardInteriorFn,
    describe: DescribeFn,
    free: FreeFn,
    free_string: FreeStringFn,
    free_error: FreeErrorFn,
}

/// The libraries loaded so far.
static LOADED: Mutex<Vec<&'static Api>> = Mutex::new(Vec::new());

/// The entry points of `plugin`'s library, loading it on first use.
pub(crate) fn load(plugin: &Plugin) -> Result<&'static Api> {
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(api) = loaded.iter().find(|api| api.backend == plugin.backend) {
        return Ok(api);
    }
    let unavailable = |message: String| Error::BackendUnavailable {
        backend: plugin.backend,
        message,
    };
    let started = Instant::now();
    let path = find(plugin).map_err(unavailable)?;
    for (name, value) in plugin.env_defaults {
        if std::env::var_os(name).is_none() {
            // Changing the environment races with any other thread reading
            // or writing it at the same moment (getenv and setenv are not
            // synchronised in glibc). It is done once per process, under
            // this loader's lock, only where the process left the variable
            // unset; a program that must avoid it sets the variable itself
            // (to PASSIVE, or to ACTIVE to keep libgomp's default).
            std::env::set_var(name, value);
        }
    }
    // RTLD_NOW: a libtorch with missing symbols fails here, with the symbol's
    // name, instead of killing the process at its first call.
    // SAFETY: loading runs the library's initialisers: libtorch's, which
    // only register operators, and this project's library, which has none.
    let library = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| unavailable((plugin.explain)(&path, &dl_message(&e))))?;
    // Never unloaded: backends made by the library hold handles into it.
    let library: &'static Library = Box::leak(Box::new(library));
    let (api, set_logger) = entry_points(plugin, library, &path).map_err(unavailable)?;
    let api: &'static Api = Box::leak(Box::new(api));
    // SAFETY: the C signature engine_api::plugin documents; `log_from_library`
    // lives as long as the process.
    unsafe { set_logger(log_from_library, max_log_level()) };
    tracing::debug!(
        "loaded the {} backend from {} in {:.1} ms",
        plugin.backend,
        path.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    loaded.push(api);
    Ok(api)
}

/// `$ENV` when set, else the library beside the running program: in its own
/// directory, or in `deps/` below or beside it, where Cargo leaves the
/// libraries it builds (binaries sit above `deps/`, tests in it, examples
/// beside it).
fn find(plugin: &Plugin) -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(plugin.env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{}={} is not a file: point it at {}, or unset it to use the one built with this program",
                plugin.env,
                path.display(),
                plugin.file
            ))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot locate this program to find {}: {e}", plugin.file))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join(plugin.file),
        dir.join("deps").join(plugin.file),
        dir.join("..").join("deps").join(plugin.file),
    ];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "its library {} is not beside this program (looked for {}); Cargo builds it with the program (`cargo build --release --features {}`): keep it beside the program, or set {} to its path",
        plugin.file,
        looked.join(", "),
        plugin.backend,
        plugin.env
    ))
}

/// Checks the library's ABI string, then looks up its entry points.
fn entry_points(
    plugin: &Plugin,
    library: &'static Library,
    path: &Path,
) -> std::result::Result<(Api, SetLoggerFn), String> {
    let not_ours = |what: String| {
        format!(
            "{} is not an Atheria backend library ({what}): point {} at the one built with this program",
            path.display(),
            plugin.env
        )
    };
    // SAFETY: the symbol's type is the one engine_api::plugin documents; a
    // library without it is refused before the call.
    let abi = unsafe { library.get::<AbiFn>(ABI_SYMBOL) }.map_err(|e| not_ours(dl_message(&e)))?;
    // SAFETY: the library returns a pointer to a static NUL-terminated string.
    let abi = unsafe { CStr::from_ptr(abi()) };
    if abi != ABI {
        return Err(format!(
            "{} comes from another build (its ABI is `{}`, this program's `{}`): use the library built with this program",
            path.display(),
            abi.to_string_lossy(),
            ABI.to_string_lossy()
        ));
    }
    /// Looks up one entry point.
    ///
    /// # Safety
    /// `T` must be the C function type engine_api::plugin gives `symbol`.
    unsafe fn get<T: Copy>(library: &Library, symbol: &[u8]) -> std::result::Result<T, String> {
        // SAFETY: by the function's contract.
        unsafe { library.get::<T>(symbol) }
            .map(|s| *s)
            .map_err(|e| dl_message(&e))
    }
    // SAFETY: the ABI strings match, so the library exports these symbols
    // with these C signatures.
    let (name, set_logger, api) = unsafe {
        let name: NameFn = get(library, NAME_SYMBOL)?;
        let set_logger: SetLoggerFn = get(library, SET_LOGGER_SYMBOL)?;
        let api = Api {
            backend: plugin.backend,
            check: get(library, CHECK_SYMBOL)?,
            load: get(library, LOAD_SYMBOL)?,
            forward: get(library, FORWARD_SYMBOL)?,
            forward_memory: get(library, FORWARD_MEMORY_SYMBOL)?,
            interior_margin: get(library, INTERIOR_MARGIN_SYMBOL)?,
            forward_interior: get(library, FORWARD_INTERIOR_SYMBOL)?,
            describe: get(library, DESCRIBE_SYMBOL)?,
            free: get(library, FREE_SYMBOL)?,
            free_string: get(library, FREE_STRING_SYMBOL)?,
            free_error: get(library, FREE_ERROR_SYMBOL)?,
        };
        (
            CStr::from_ptr(name()).to_string_lossy().into_owned(),
            set_logger,
            api,
        )
    };
    if name != plugin.backend {
        return Err(format!(
            "{} is the {name} backend's library, not the {} backend's: point {} at {}",
            path.display(),
            plugin.backend,
            plugin.env,
            plugin.file
        ));
    }
    Ok((api, set_logger))
}

/// The loader's own message, without libloading's wrapping.
fn dl_message(error: &libloading::Error) -> String {
    std::error::Error::source(error).map_or_else(|| error.to_string(), |s| s.to_string())
}

/// The most verbose level this process's subscriber wants, as a `LOG_*` code.
fn max_log_level() -> u32 {
    match LevelFilter::current() {
        LevelFilter::OFF => LOG_OFF,
        LevelFilter::ERROR => LOG_ERROR,
        LevelFilter::WARN => LOG_WARN,
        LevelFilter::INFO => LOG_INFO,
        LevelFilter::DEBUG => LOG_DEBUG,
        _ => LOG_TRACE,
    }
}

/// The log sink a library calls: re-emits the event through this process's
/// `tracing`, under the target `atheria::plugin`, with the library's own
/// target as the field `from`.
extern "C" fn log_from_library(level: u32, target: *const c_char, message: *const c_char) {
    let _ = catch_unwind(|| {
        // SAFETY: NUL-terminated strings valid during this call, or null.
        let (target, message) = unsafe { (lossy(target), lossy(message)) };
        match level {
            LOG_ERROR => tracing::error!(target: "atheria::plugin", from = %target, "{message}"),
            LOG_WARN => tracing::warn!(target: "atheria::plugin", from = %target, "{message}"),
            LOG_INFO => tracing::info!(target: "atheria::plugin", from = %target, "{message}"),
            LOG_DEBUG => tracing::debug!(target: "atheria::plugin", from = %target, "{message}"),
            _ => tracing::trace!(target: "atheria::plugin", from = %target, "{message}"),
        }
    });
}

/// A copy of a C string (empty for null).
///
/// # Safety
/// `text` must be null or a NUL-terminated string.
unsafe fn lossy(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: by the function's contract.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

impl Api {
    /// Turns an error the library returned into an [`Error`], and frees it.
    ///
    /// # Safety
    /// `error` must be null or an error this library returned, not yet freed.
    unsafe fn take_error(&self, error: *mut PluginError) -> Option<Error> {
        if error.is_null() {
            return None;
        }
        // SAFETY: a live PluginError with NUL-terminated strings (or a null
        // path), copied before the library frees it.
        let rebuilt = unsafe {
            let e = &*error;
            let path = (!e.path.is_null())
                .then(|| PathBuf::from(OsStr::from_bytes(CStr::from_ptr(e.path).to_bytes())));
            error_from_parts(self.backend, e.kind, lossy(e.message), path)
        };
        // SAFETY: returned by this library, freed once.
        unsafe { (self.free_error)(error) };
        Some(rebuilt)
    }

    /// Copies a string the library returned, and frees it.
    ///
    /// # Safety
    /// `text` must be null or a string this library returned, not yet freed.
    unsafe fn take_string(&self, text: *mut c_char) -> String {
        // SAFETY: by the function's contract.
        unsafe {
            let copy = lossy(text);
            if !text.is_null() {
                (self.free_string)(text);
            }
            copy
        }
    }
}

/// A backend library as a [`Runtime`]: the library is loaded on first use.
pub(crate) struct PluginRuntime {
    plugin: &'static Plugin,
}

impl PluginRuntime {
    fn api(&self) -> Result<&'static Api> {
        load(self.plugin)
    }
}

impl Runtime for PluginRuntime {
    fn name(&self) -> &'static str {
        self.plugin.backend
    }

    fn model_file(&self) -> ModelFile {
        self.plugin.model_file
    }

    fn check(&self) -> Result<String> {
        let api = self.api()?;
        let mut version = null_mut();
        // SAFETY: the C signature engine_api::plugin documents; `version` is
        // a valid place for one pointer.
        let error = unsafe { (api.check)(&mut version) };
        // SAFETY: what the library returned, each freed once.
        unsafe {
            match api.take_error(error) {
                Some(e) => Err(e),
                None => Ok(api.take_string(version)),
            }
        }
    }

    fn load_library(&self) -> Result<()> {
        self.api().map(|_| ())
    }

    fn supports_device(&self, device: Device) -> std::result::Result<(), String> {
        match device {
            Device::Cpu => Ok(()),
            Device::Cuda(_) if self.plugin.cuda => Ok(()),
            other => Err(format!(
                "{other} was requested but this build lacks the `cuda` feature: rebuild with \
                 `--features {},cuda`, or use the cpu device",
                self.plugin.backend
            )),
        }
    }

    fn prepare(&self, request: LoadRequest) -> Result<Arc<dyn ComputeBackend>> {
        let api = self.api()?;
        let spec_json = serde_json::to_string(request.spec())
            .map_err(|e| Error::backend(api.backend, format!("cannot describe the model: {e}")))?;
        let spec_json = CString::new(spec_json)
            .map_err(|_| Error::backend(api.backend, "the model description holds a NUL"))?;
        let origin = CString::new(request.origin().as_os_str().as_bytes()).map_err(|_| {
            Error::InvalidArgument(format!(
                "{}: a path holding a NUL byte",
                request.origin().display()
            ))
        })?;
        let (device_kind, device_index) = match request.device() {
            Device::Cuda(n) => (DEVICE_CUDA, n),
            _ => (DEVICE_CPU, 0),
        };
        let threads = request.threads().map_or(0, NonZeroUsize::get);
        let bytes = request.bytes();
        let mut handle = null_mut::<c_void>();
        // SAFETY: the C signature engine_api::plugin documents; every pointer
        // is valid for the call (the library copies what it keeps), and
        // `handle` is a valid place for one pointer.
        let error = unsafe {
            (api.load)(
                spec_json.as_ptr(),
                origin.as_ptr(),
                bytes.as_ptr(),
                bytes.len(),
                device_kind,
                device_index,
                threads,
                &mut handle,
            )
        };
        // SAFETY: what the library returned, freed once.
        if let Some(e) = unsafe { api.take_error(error) } {
            return Err(e);
        }
        let handle = NonNull::new(handle).ok_or_else(|| {
            Error::backend(api.backend, "the library reported success but no backend")
        })?;
        // SAFETY: a live handle, just made.
        let interior_margin = unsafe { (api.interior_margin)(handle.as_ptr()) };
        Ok(Arc::new(PluginBackend {
            api,
            handle,
            spec: request.spec().clone(),
            device: request.device(),
            interior_margin,
        }))
    }
}

/// A backend living in a library: a handle and the library's functions.
struct PluginBackend {
    api: &'static Api,
    handle: NonNull<c_void>,
    spec: ModelSpec,
    device: Device,
    /// The margin whose interior the library computes alone, 0 for none
    /// (asked once at load: the library fixes it then).
    interior_margin: usize,
}

// SAFETY: the handle is the library's `Send + Sync` backend (the ABI allows
// calls on one handle from several threads at once), and the library is
// never unloaded.
unsafe impl Send for PluginBackend {}
// SAFETY: as above.
unsafe impl Sync for PluginBackend {}

impl PluginBackend {
    /// Calls one of the library's fallible entry points with this backend's
    /// handle and turns the error it returns, if any, into ours.
    fn call(&self, entry: impl FnOnce(*mut c_void) -> *mut PluginError) -> Result<()> {
        let error = entry(self.handle.as_ptr());
        // SAFETY: what the library returned, freed once.
        match unsafe { self.api.take_error(error) } {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl ComputeBackend for PluginBackend {
    fn name(&self) -> &'static str {
        self.api.backend
    }

    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn device(&self) -> Device {
        self.device
    }

    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        // SAFETY: a live handle; `input` and `output` are valid, distinct
        // buffers of the lengths passed, for the duration of the call.
        self.call(|handle| unsafe {
            (self.api.forward)(
                handle,
                input.as_ptr(),
                input.len(),
                shape.batch,
                shape.channels,
                shape.height,
                shape.width,
                output.as_mut_ptr(),
                output.len(),
            )
        })
    }

    fn computes_interior(&self, margin: usize) -> bool {
        margin > 0 && margin == self.interior_margin
    }

    fn run_interior(
        &self,
        input: &[f32],
        shape: BatchShape,
        margin: usize,
        output: &mut [f32],
    ) -> Result<()> {
        // The library crops a whole forward itself for other margins.
        // SAFETY: a live handle; `input` and `output` are valid, distinct
        // buffers of the lengths passed, for the duration of the call.
        self.call(|handle| unsafe {
            (self.api.forward_interior)(
                handle,
                input.as_ptr(),
                input.len(),
                shape.batch,
                shape.channels,
                shape.height,
                shape.width,
                margin,
                output.as_mut_ptr(),
                output.len(),
            )
        })
    }

    fn run_with_memory(
        &self,
        input: &[f32],
        shape: BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> Result<()> {
        // SAFETY: a live handle; the four buffers are valid and distinct
        // (two shared borrows, two exclusive ones) for the lengths passed,
        // for the duration of the call.
        self.call(|handle| unsafe {
            (self.api.forward_memory)(
                handle,
                input.as_ptr(),
                input.len(),
                shape.batch,
                shape.channels,
                shape.height,
                shape.width,
                memory.as_ptr(),
                memory.len(),
                output.as_mut_ptr(),
                output.len(),
                next_memory.as_mut_ptr(),
                next_memory.len(),
            )
        })
    }

    fn describe(&self) -> String {
        // SAFETY: a live handle; the string returned is the library's.
        unsafe {
            let text = (self.api.describe)(self.handle.as_ptr());
            self.api.take_string(text)
        }
    }
}

impl Drop for PluginBackend {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once, by the library that made it.
        unsafe { (self.api.free)(self.handle.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    //! The memory forward across the C boundary: the golden recurrent law
    //! through `libatheria_tch.so` against PyTorch.

    use std::path::Path;

    use std::ffi::{c_void, CString};
    use std::ptr::null_mut;

    use engine_api::plugin::DEVICE_CPU;
    use engine_api::{BackendOptions, BatchShape, ModelPackage, Runtime};

    use super::TCH_RUNTIME;

    /// A tensor of `forward.safetensors` in `dir`: its shape and values.
    fn tensor(dir: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
        let bytes = std::fs::read(dir.join("forward.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor(name).unwrap();
        let values = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), values)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn a_recurrent_law_runs_through_the_library_and_matches_pytorch() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/unet_convlstm_d2_h8");
        let package = ModelPackage::load(&dir).unwrap();
        let options = BackendOptions::default().with_threads(2);
        let backend = TCH_RUNTIME.load(&package, &options).unwrap();
        let (dims, x) = tensor(&dir, "x");
        let shape = BatchShape::new(dims[0], dims[1], dims[2], dims[3]);
        let (_, h) = tensor(&dir, "h_state");
        let (_, c) = tensor(&dir, "c_state");
        let memory: Vec<f32> = h.iter().chain(&c).copied().collect();
        let mut out = vec![f32::NAN; shape.len()];
        let mut next = vec![f32::NAN; memory.len()];
        backend
            .forward_with_memory(&x, shape, &memory, &mut out, &mut next)
            .unwrap();
        let (dy, dh, dc) = (
            max_diff(&out, &tensor(&dir, "y").1),
            max_diff(&next[..h.len()], &tensor(&dir, "h_state_next").1),
            max_diff(&next[h.len()..], &tensor(&dir, "c_state_next").1),
        );
        println!("tch library: max |diff| delta {dy:e}, h_state_next {dh:e}, c_state_next {dc:e}");
        assert!(dy <= 1e-4 && dh <= 1e-4 && dc <= 1e-4, "{dy} {dh} {dc}");

        // The library checks the lengths again, whatever the host checked:
        // called directly, a short memory and a null one are errors, not
        // reads past the buffer.
        let api = super::load(&super::TCH).unwrap();
        let spec_json = CString::new(serde_json::to_string(package.spec()).unwrap()).unwrap();
        let origin = CString::new("model.pt").unwrap();
        let bytes = std::fs::read(dir.join("model.pt")).unwrap();
        let mut handle = null_mut::<c_void>();
        // SAFETY: the C signatures engine_api::plugin documents; every
        // buffer is valid for the length passed (the short one included:
        // it is shorter, not longer, than the memory).
        unsafe {
            let error = (api.load)(
                spec_json.as_ptr(),
                origin.as_ptr(),
                bytes.as_ptr(),
                bytes.len(),
                DEVICE_CPU,
                0,
                1,
                &mut handle,
            );
            assert!(api.take_error(error).is_none());
            let forward =
                |memory: *const f32, memory_len: usize, out: &mut [f32], next: &mut [f32]| {
                    let error = (api.forward_memory)(
                        handle,
                        x.as_ptr(),
                        x.len(),
                        shape.batch,
                        shape.channels,
                        shape.height,
                        shape.width,
                        memory,
                        memory_len,
                        out.as_mut_ptr(),
                        out.len(),
                        next.as_mut_ptr(),
                        next.len(),
                    );
                    api.take_error(error).map(|e| e.to_string())
                };
            let short = forward(memory.as_ptr(), memory.len() - 1, &mut out, &mut next);
            let short = short.expect("a short memory is refused");
            let needs = format!("needs {} memory values", memory.len());
            assert!(
                short.contains("h_state, c_state") && short.contains(&needs),
                "{short}"
            );
            let null = forward(std::ptr::null(), memory.len(), &mut out, &mut next);
            assert!(null
                .expect("a null memory is refused")
                .contains("null pointer"));
            assert_eq!(
                forward(memory.as_ptr(), memory.len(), &mut out, &mut next),
                None
            );
            (api.free)(handle);
        }
        assert!(max_diff(&next[..h.len()], &tensor(&dir, "h_state_next").1) <= 1e-4);
    }
}
