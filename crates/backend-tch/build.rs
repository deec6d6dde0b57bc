//! Makes binaries that link libtorch start without `LD_LIBRARY_PATH`.
//!
//! torch-sys finds libtorch (see the crate docs for the environment it needs)
//! and hands its lib dir to direct dependents as `DEP_TCH_LIBTORCH_LIB`. This
//! script
//! - puts an rpath to that dir on this crate's own tests and examples
//!   (`rustc-link-arg` only reaches the package's own targets);
//! - re-exports the dir as `DEP_ATHERIA_TCH_LIBTORCH_LIB` (this crate's
//!   `links = "atheria_tch"`) so crates/backend-tch-plugin/build.rs can do
//!   the same for `libatheria_tch.so` (and `DEP_ATHERIA_TCH_CUDA` with `cuda`);
//! - with the `cuda` feature, keeps libtorch_cuda on the link line: the
//!   linker's `--as-needed` drops it (nothing references its symbols), and
//!   libtorch then reports CUDA as absent at run time;
//! - records the libtorch version for `backend_tch::check` (and re-exports
//!   it as `DEP_ATHERIA_TCH_LIBTORCH_VERSION`).

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        // torch-sys only exports the dir on Linux and macOS; elsewhere the
        // user must put libtorch on the loader path themselves.
        println!("cargo:rustc-env=ATHERIA_LIBTORCH_VERSION=unknown");
        return;
    };
    println!("cargo:libtorch_lib={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // Tells the plugin crate's build script to do the same (DEP_ATHERIA_TCH_CUDA).
        println!("cargo:cuda=1");
        for arg in ["-Wl,--no-as-needed", "-ltorch_cuda", "-Wl,--as-needed"] {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
    let version = libtorch_version(&lib);
    println!("cargo:rustc-env=ATHERIA_LIBTORCH_VERSION={version}");
    println!("cargo:libtorch_version={version}");
}

/// The version of the libtorch in `lib`: a PyTorch wheel has
/// `torch/version.py` next to `torch/lib`, a libtorch zip has `build-version`.
fn libtorch_version(lib: &Path) -> String {
    let Some(root) = lib.parent() else {
        return "unknown".into();
    };
    if let Ok(text) = std::fs::read_to_string(root.join("build-version")) {
        return text.trim().to_string();
    }
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("__version__ = ") {
                return v.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
            }
        }
    }
    "unknown".into()
}
