//! Puts an rpath to libtorch on `libatheria_tch.so`, so the library finds
//! libtorch without `LD_LIBRARY_PATH`, and with `cuda` keeps libtorch_cuda
//! linked (see crates/backend-tch/build.rs for why). Re-exports the libtorch
//! dir and version for the root package's error messages.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_ATHERIA_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=DEP_ATHERIA_TCH_LIBTORCH_VERSION");
    if let Ok(version) = env::var("DEP_ATHERIA_TCH_LIBTORCH_VERSION") {
        println!("cargo:libtorch_version={version}");
    }
    let Ok(lib) = env::var("DEP_ATHERIA_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:libtorch_lib={lib}");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,{lib}");
    if env::var_os("DEP_ATHERIA_TCH_CUDA").is_some() {
        for arg in ["-Wl,--no-as-needed", "-ltorch_cuda", "-Wl,--as-needed"] {
            println!("cargo:rustc-link-arg-cdylib={arg}");
        }
    }
}
