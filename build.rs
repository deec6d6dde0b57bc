//! Build script of the `atheria` package.
//!
//! With the `tch` feature, records where crates/backend-tch-plugin found
//! libtorch (its version and lib dir), so that a missing or mismatched
//! libtorch at run time is an error saying what this build needs
//! (src/plugin.rs). The binary itself does not link libtorch.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    for (from, to) in [
        (
            "DEP_ATHERIA_TCH_PLUGIN_LIBTORCH_VERSION",
            "ATHERIA_TCH_LIBTORCH_VERSION",
        ),
        (
            "DEP_ATHERIA_TCH_PLUGIN_LIBTORCH_LIB",
            "ATHERIA_TCH_LIBTORCH_LIB",
        ),
    ] {
        println!("cargo:rerun-if-env-changed={from}");
        let value = env::var(from).unwrap_or_else(|_| "unknown".into());
        println!("cargo:rustc-env={to}={value}");
    }
}
