//! Backends built as shared libraries ([`engine_api::plugin`]): found beside
//! the program, loaded once per process on first use, never unloaded.
//!
//! The tch backend is one (`libatheria_tch.so`, crates/backend-tch-plugin),
//! so that this program starts, and runs its other backends, on a machine
//! without libtorch, and says what is missing when tch is asked for.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use engine_api::plugin::{PluginApi, ABI, ABI_SYMBOL, API_SYMBOL};
use engine_api::{Error, Result};
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

/// A backend library: what it is called and what it needs.
pub(crate) struct Plugin {
    /// The backend's name.
    pub backend: &'static str,
    /// The library's file name.
    pub file: &'static str,
    /// The environment variable that names the library's path instead.
    pub env: &'static str,
    /// Words a loader error (a missing or mismatched dependency) for people.
    pub explain: fn(&Path, &str) -> String,
}

/// libtorch's version and lib dir where this build found them (build.rs).
const LIBTORCH_VERSION: &str = env!("ATHERIA_TCH_LIBTORCH_VERSION");
const LIBTORCH_LIB: &str = env!("ATHERIA_TCH_LIBTORCH_LIB");

/// The tch backend (TorchScript on libtorch).
pub(crate) const TCH: Plugin = Plugin {
    backend: "tch",
    file: "libatheria_tch.so",
    env: "ATHERIA_TCH_PLUGIN",
    explain: explain_tch,
};

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

/// The libraries loaded so far.
static LOADED: Mutex<Vec<&'static PluginApi>> = Mutex::new(Vec::new());

/// The entry points of `plugin`'s library, loading it on first use.
pub(crate) fn load(plugin: &Plugin) -> Result<&'static PluginApi> {
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(api) = loaded.iter().find(|api| api.name == plugin.backend) {
        return Ok(api);
    }
    let unavailable = |message: String| Error::BackendUnavailable {
        backend: plugin.backend,
        message,
    };
    let started = Instant::now();
    let path = find(plugin).map_err(unavailable)?;
    // RTLD_NOW: a libtorch with missing symbols fails here, with the symbol's
    // name, instead of killing the process at its first call.
    // SAFETY: loading runs the library's initialisers: libtorch's, which
    // only register operators, and this project's plugin, which has none.
    let library = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| unavailable((plugin.explain)(&path, &dl_message(&e))))?;
    // Never unloaded: backends made by the library hold its code and vtables.
    let library: &'static Library = Box::leak(Box::new(library));
    let api = entry_points(plugin, library, &path).map_err(unavailable)?;
    (api.set_dispatch)(&tracing::dispatcher::get_default(Clone::clone));
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

/// Checks the library's ABI string, then returns its entry points.
fn entry_points(
    plugin: &Plugin,
    library: &'static Library,
    path: &Path,
) -> std::result::Result<&'static PluginApi, String> {
    let not_ours = |what: String| {
        format!(
            "{} is not an Atheria backend library ({what}): point {} at the one built with this program",
            path.display(),
            plugin.env
        )
    };
    // SAFETY: the symbol's type is the one engine_api::plugin documents; a
    // library without it is refused before the call.
    let abi = unsafe { library.get::<extern "C" fn() -> *const c_char>(ABI_SYMBOL) }
        .map_err(|e| not_ours(dl_message(&e)))?;
    // SAFETY: the plugin returns a pointer to a static NUL-terminated string.
    let abi = unsafe { CStr::from_ptr(abi()) };
    if abi != ABI {
        return Err(format!(
            "{} comes from another build (its ABI is `{}`, this program's `{}`): use the library built with this program",
            path.display(),
            abi.to_string_lossy(),
            ABI.to_string_lossy()
        ));
    }
    // SAFETY: the ABI strings match, so both sides agree on PluginApi.
    let api = unsafe { library.get::<extern "C" fn() -> &'static PluginApi>(API_SYMBOL) }
        .map_err(|e| not_ours(dl_message(&e)))?;
    let api = api();
    if api.name != plugin.backend {
        return Err(format!(
            "{} is the {} backend's library, not the {} backend's: point {} at {}",
            path.display(),
            api.name,
            plugin.backend,
            plugin.env,
            plugin.file
        ));
    }
    Ok(api)
}

/// The loader's own message, without libloading's wrapping.
fn dl_message(error: &libloading::Error) -> String {
    std::error::Error::source(error).map_or_else(|| error.to_string(), |s| s.to_string())
}
