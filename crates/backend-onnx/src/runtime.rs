//! Finding the ONNX Runtime library and initialising it once per process.
//!
//! ort is built with `load-dynamic`: nothing is linked at build time, so the
//! library must be found at run time. Where to look is the program's choice
//! ([`set_library`]): by default `ORT_DYLIB_PATH` or the system's library,
//! nothing else; the `atheria` program also searches Python environments, since
//! the project's one already ships the library (the `onnxruntime` wheel), which
//! keeps the Rust and Python sides on the same ONNX Runtime version without a
//! second download.

use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use engine_api::{Error, Result};
use ort::environment::Environment;

/// The environment variable that names the library explicitly.
const DYLIB_VAR: &str = "ORT_DYLIB_PATH";

/// How to get a usable library, appended to every discovery error.
const FIX: &str =
    "fix: set ORT_DYLIB_PATH to a libonnxruntime.so of ONNX Runtime 1.17 or newer \
     (in this project, scripts/setup-python.sh installs one, the onnxruntime wheel, into <repo>/.venv)";

/// Where to look for the ONNX Runtime library: a process-wide choice
/// ([`set_library`]), since a process loads the library once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OrtLibrary {
    /// `ORT_DYLIB_PATH` when set, else the system's `libonnxruntime.so` as
    /// the dynamic loader finds it (`LD_LIBRARY_PATH`, the loader's cache).
    /// Nothing else is searched: the default for a program embedding
    /// Atheria.
    #[default]
    Environment,
    /// This file and nothing else (`ORT_DYLIB_PATH` is ignored).
    Path(PathBuf),
    /// `ORT_DYLIB_PATH` when set; else the onnxruntime wheel of the Python
    /// environment in `$VIRTUAL_ENV`, of the first `.venv` from the working
    /// directory upwards, and of the `.venv` of the checkout this crate was
    /// built from; then the system's library. What the `atheria` program
    /// asks for, so that it runs in a checkout set up by
    /// scripts/setup-python.sh.
    SearchPythonEnvironments,
}

/// The choice in force; read when the library is first loaded.
static CHOICE: Mutex<OrtLibrary> = Mutex::new(OrtLibrary::Environment);

/// Chooses where the ONNX Runtime library is looked for. Call it before the
/// first ONNX load or check; once the library is loaded, asking for another
/// place is an error (asking for the one in use is not).
pub fn set_library(library: OrtLibrary) -> Result<()> {
    let _init = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut choice = CHOICE.lock().unwrap_or_else(PoisonError::into_inner);
    if RUNTIME.get().is_some() && *choice != library {
        return Err(Error::InvalidArgument(format!(
            "ONNX Runtime is already loaded (found by {choice:?}); choose its library before the first ONNX load"
        )));
    }
    *choice = library;
    Ok(())
}

/// The choice in force.
pub fn library() -> OrtLibrary {
    CHOICE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The loaded library and its one process-wide environment.
pub(crate) struct OrtRuntime {
    /// ort allows one environment per process; every session shares it.
    pub(crate) env: Environment,
    /// The file the library was loaded from (a bare name for the system one).
    pub(crate) path: PathBuf,
    /// `major.minor.patch` as the library reports it.
    pub(crate) version: String,
}

/// Set once, on the first successful initialisation; failures are not cached,
/// so a user who fixes the environment need not restart a long-lived process.
static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
/// Serialises initialisation attempts (`OnceLock::get_or_try_init` is unstable).
static INIT: Mutex<()> = Mutex::new(());

/// Where the ONNX Runtime library would be looked for, in order, under the
/// choice in force ([`set_library`], [`OrtLibrary`]).
///
/// A named file (`ORT_DYLIB_PATH`, [`OrtLibrary::Path`]) is the only place.
/// Otherwise the system's `libonnxruntime.so` (found by the dynamic loader)
/// comes last, after, with [`OrtLibrary::SearchPythonEnvironments`], the
/// onnxruntime wheels of the Python environments. A Python environment
/// without the wheel is listed as its glob pattern (the entry then contains
/// `*`), so that messages show every place searched.
pub fn library_candidates() -> Vec<PathBuf> {
    let choice = library();
    if let OrtLibrary::Path(path) = choice {
        return vec![path];
    }
    if let Some(path) = non_empty_var(DYLIB_VAR) {
        return vec![PathBuf::from(path)];
    }
    let mut candidates = Vec::new();
    let venvs = if choice == OrtLibrary::SearchPythonEnvironments {
        python_environments()
    } else {
        Vec::new()
    };
    for venv in venvs {
        let found = wheel_libraries(&venv);
        let entries = if found.is_empty() {
            vec![venv.join(WHEEL_PATTERN)]
        } else {
            found
        };
        for entry in entries {
            if !candidates.contains(&entry) {
                candidates.push(entry);
            }
        }
    }
    candidates.push(PathBuf::from(system_library_name()));
    candidates
}

/// Finds and initialises ONNX Runtime; returns e.g.
/// `onnxruntime 1.31.1 from /path/libonnxruntime.so.1.31.1`.
pub fn check() -> Result<String> {
    let rt = runtime()?;
    Ok(format!(
        "onnxruntime {} from {}",
        rt.version,
        rt.path.display()
    ))
}

/// The process's runtime, initialising it on first use.
pub(crate) fn runtime() -> Result<&'static OrtRuntime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = initialise()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Tries every candidate in order; the error lists each one and why it failed.
fn initialise() -> Result<OrtRuntime> {
    let mut tried = Vec::new();
    for candidate in library_candidates() {
        match try_candidate(&candidate) {
            Ok(rt) => {
                tracing::debug!(path = %rt.path.display(), version = %rt.version, "loaded ONNX Runtime");
                return Ok(rt);
            }
            Err(why) => tried.push(format!("{} ({why})", candidate.display())),
        }
    }
    let source = match library() {
        OrtLibrary::Path(_) => "the program named the library, so only it was tried",
        _ if non_empty_var(DYLIB_VAR).is_some() => "ORT_DYLIB_PATH is set, so only it was tried",
        _ => "looked in",
    };
    Err(Error::BackendUnavailable {
        backend: "onnx",
        message: format!(
            "ONNX Runtime library not found or not loadable; {source}: {}; {FIX}",
            tried.join("; ")
        ),
    })
}

/// Loads one candidate and builds the environment, or says why not.
fn try_candidate(candidate: &Path) -> std::result::Result<OrtRuntime, String> {
    let is_bare_name = candidate.components().count() == 1;
    if candidate.to_string_lossy().contains('*') {
        return Err("no onnxruntime wheel there".into());
    }
    // dlopen on a directory, FIFO or device could block or mislead; only the
    // system name is left for the dynamic loader to resolve.
    if !is_bare_name && !candidate.is_file() {
        return Err(if candidate.exists() {
            "not a regular file".into()
        } else {
            "no such file".into()
        });
    }
    // Opened here first for two things ort does not give: the loader's own
    // reason when dlopen fails, and the library's version string.
    let version = probe(candidate)?;
    // ort panics rather than returns for a few broken libraries (a null API
    // table); a panic here must become an error, not abort the caller.
    let loaded = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<_, String> {
        let builder = ort::init_from(candidate).map_err(|e| e.to_string())?;
        builder
            .with_name("atheria")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("loaded, but creating the environment failed: {e}"))
    }));
    let env = match loaded {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "ONNX Runtime {version} panicked while initialising"
            ))
        }
    };
    Ok(OrtRuntime {
        env,
        path: candidate.to_path_buf(),
        version,
    })
}

/// Opens the library and asks its version, with the loader's full reason on
/// failure. The handle is closed again; ort keeps its own.
fn probe(path: &Path) -> std::result::Result<String, String> {
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: loading runs the library's initialisers, which is what using it
    // means; ONNX Runtime's are benign. `OrtGetApiBase` has the C signature
    // ONNX Runtime documents, and the version string is a static
    // NUL-terminated string owned by the library, copied before it is closed.
    unsafe {
        let lib =
            libloading::Library::new(path).map_err(|e| match std::error::Error::source(&e) {
                Some(reason) => format!("cannot load: {reason}"),
                None => format!("cannot load: {e}"),
            })?;
        let get_base: libloading::Symbol<GetApiBase> = lib
            .get(b"OrtGetApiBase\0")
            .map_err(|_| "loads, but is not ONNX Runtime (no `OrtGetApiBase`)".to_string())?;
        let base = get_base();
        if base.is_null() {
            return Err("`OrtGetApiBase` returned null".into());
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return Err("ONNX Runtime reports no version".into());
        }
        Ok(std::ffi::CStr::from_ptr(version)
            .to_string_lossy()
            .into_owned())
    }
}

/// Where the wheel keeps the library, relative to a virtual environment.
const WHEEL_PATTERN: &str = "lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*";

/// Virtual environments to search, most specific first.
fn python_environments() -> Vec<PathBuf> {
    let mut venvs = Vec::new();
    if let Some(venv) = non_empty_var("VIRTUAL_ENV") {
        venvs.push(PathBuf::from(venv));
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(venv) = cwd
            .ancestors()
            .map(|d| d.join(".venv"))
            .find(|v| v.is_dir())
        {
            venvs.push(venv);
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize().unwrap_or(repo);
    venvs.push(repo.join(".venv"));
    // The same directory reached two ways (a symlink, `..`) is searched once.
    let mut unique: Vec<PathBuf> = Vec::new();
    for venv in venvs {
        let key = venv.canonicalize().unwrap_or_else(|_| venv.clone());
        if !unique
            .iter()
            .any(|u| u.canonicalize().unwrap_or_else(|_| u.clone()) == key)
        {
            unique.push(venv);
        }
    }
    unique
}

/// The wheel's libraries in `venv`, expanding [`WHEEL_PATTERN`] by hand
/// (two wildcards do not justify a glob dependency). Newest name first.
fn wheel_libraries(venv: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for python in entries_starting_with(&venv.join("lib"), "python3") {
        let capi = python.join("site-packages/onnxruntime/capi");
        found.extend(entries_starting_with(&capi, "libonnxruntime.so"));
    }
    found.sort();
    found.reverse();
    found
}

/// Entries of `dir` whose file name starts with `prefix`, sorted; none when
/// the directory cannot be read.
fn entries_starting_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `libonnxruntime.so` (or the platform's spelling), resolved by the loader.
fn system_library_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

fn non_empty_var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_expanded_and_newest_first() {
        let dir = std::env::temp_dir().join(format!("atheria-onnx-glob-{}", std::process::id()));
        let capi = dir.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        for name in [
            "libonnxruntime.so.1.30.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(capi.join(name), b"").unwrap();
        }
        let found = wheel_libraries(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["libonnxruntime.so.1.31.1", "libonnxruntime.so.1.30.0"]
        );
    }

    /// One test, since it changes the process-wide choice (and never loads
    /// the library).
    #[test]
    fn by_default_nothing_but_the_environment_is_searched_and_the_system_library_is_last() {
        if non_empty_var(DYLIB_VAR).is_some() {
            return; // then it is the only candidate, by design
        }
        assert_eq!(library(), OrtLibrary::Environment);
        assert_eq!(
            library_candidates(),
            [PathBuf::from(system_library_name())],
            "an embedding program must not find libraries by its working directory"
        );
        set_library(OrtLibrary::Path("/opt/ort/libonnxruntime.so".into())).unwrap();
        assert_eq!(
            library_candidates(),
            [PathBuf::from("/opt/ort/libonnxruntime.so")]
        );
        set_library(OrtLibrary::SearchPythonEnvironments).unwrap();
        assert_eq!(
            library_candidates().last().unwrap(),
            &PathBuf::from(system_library_name())
        );
        set_library(OrtLibrary::Environment).unwrap();
    }
}
