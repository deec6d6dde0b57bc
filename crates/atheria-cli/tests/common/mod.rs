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

/// stderr of a finished command, as text.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failed command printed exactly one `error:` line, mentioning
/// `expect`, and no panic.
pub fn assert_clean_failure(out: &std::process::Output, expect: &str) {
    let err = stderr_of(out);
    assert!(!out.status.success(), "command succeeded; stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    let lines: Vec<_> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(
        lines[0].contains(expect),
        "error does not mention `{expect}`: {}",
        lines[0]
    );
}
