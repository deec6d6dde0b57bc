//! Helpers for the program's tests: the library's test helpers
//! (tests/common at the workspace root) and the `atheria` binary.
#![allow(dead_code, unused_imports)]

#[path = "../../../../tests/common/mod.rs"]
mod shared;

pub use shared::*;

/// Runs the `atheria` binary built for these tests.
pub fn atheria() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atheria"));
    cmd.env("NO_COLOR", "1");
    cmd
}
