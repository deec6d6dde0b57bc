//! Build script of the `atheria` package.
//!
//! With the `tch` feature, puts an rpath to libtorch's lib dir on this
//! package's binaries, tests and benches, so they start without
//! `LD_LIBRARY_PATH`; with `tch` and `cuda`, also keeps libtorch_cuda linked
//! (see crates/backend-tch/build.rs, which finds the dir and explains why).
//! `rustc-link-arg` from the backend crate's own build script does not reach
//! this package's targets, hence this script.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=DEP_ATHERIA_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=DEP_ATHERIA_TCH_CUDA");
    let Some(lib) = env::var_os("DEP_ATHERIA_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!(
        "cargo:rustc-link-arg=-Wl,-rpath,{}",
        std::path::Path::new(&lib).display()
    );
    if env::var_os("DEP_ATHERIA_TCH_CUDA").is_some() {
        for arg in ["-Wl,--no-as-needed", "-ltorch_cuda", "-Wl,--as-needed"] {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
