//! `atheria bench` always finishes and reports every figure: a short run of
//! one dense configuration with and without the PyTorch reference.

mod common;

use common::*;

/// Runs `bench` with `--json PATH`; asserts it succeeded and returns its
/// stdout and the JSON it wrote.
fn bench_json(
    cmd: &mut std::process::Command,
    json: &std::path::Path,
) -> (String, serde_json::Value) {
    let out = cmd.arg("--json").arg(json).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), doc)
}

#[test]
fn a_short_bench_finishes_with_a_table_and_json_for_every_backend() {
    let dir = temp_dir("bench");
    let json = dir.join("bench.json");
    let (text, doc) = bench_json(
        atheria().args([
            "bench",
            "--configs",
            "dense-32",
            "--windows",
            "2",
            "--window-secs",
            "0.05",
            "--threads",
            "2",
        ]),
        &json,
    );
    assert!(
        doc["machine"]["cores"].as_u64().is_some_and(|c| c >= 1),
        "machine missing: {doc}"
    );
    let rows = doc["results"].as_array().expect("results");
    for kind in backends() {
        assert!(
            text.lines()
                .any(|l| l.starts_with("dense-32") && l.contains(kind.name())),
            "no {kind} row: {text}"
        );
        let row = rows
            .iter()
            .find(|r| r["config"] == "dense-32" && r["backend"] == kind.name())
            .unwrap_or_else(|| panic!("no {kind} result in {doc}"));
        let rate = row["steps_per_s_median"].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0, "{kind}: no steps/s in {row}");
    }
    // PyTorch runs beside them when the project's Python environment exists.
    let venv = workspace_root().join(".venv/bin/python");
    let torch = rows
        .iter()
        .find(|r| r["config"] == "dense-32" && r["backend"] == "pytorch");
    if venv.is_file() {
        let torch = torch.expect("a PyTorch row");
        assert!(
            torch["steps_per_s_median"]
                .as_f64()
                .is_some_and(|r| r > 0.0),
            "{torch}"
        );
    } else {
        eprintln!("SKIPPED: the PyTorch reference (no .venv)");
    }
}

/// The opt-in large case end to end at a small size: a disc steps,
/// checkpoints as bands of state files, resumes equal cell for cell and
/// steps again, in a fresh process, and the checkpoint is removed after.
#[test]
fn the_large_scale_case_steps_checkpoints_and_resumes() {
    for atomic in ["on", "off"] {
        large_case(atomic);
    }
}

fn large_case(atomic: &str) {
    let dir = temp_dir(&format!("bench-large-{atomic}"));
    let (json, checkpoints) = (dir.join("large.json"), dir.join("checkpoints"));
    let (text, doc) = bench_json(
        atheria()
            .args(["bench", "--scale", "--cells", "3e3", "--d-states", "4"])
            .args(["--atomic-steps", atomic])
            .args(["--backends", "candle", "--threads", "2", "--checkpoint-dir"])
            .arg(&checkpoints),
        &json,
    );
    let row = &doc["large"][0];
    assert_eq!(row["backend"], "candle", "{doc}");
    assert_eq!(row["atomic_steps"], atomic == "on", "{doc}");
    assert!(text.contains(&format!("(atomic steps {atomic}:")), "{text}");
    assert_eq!(row["d_state"], 4, "{doc}");
    assert_eq!(row["resumed_equal"], true, "{doc}");
    // A disc of about 3000 cells (the lattice rounds its radius).
    let cells = row["cells"].as_u64().unwrap();
    assert!((2900..=3100).contains(&cells), "{cells} cells: {doc}");
    for key in [
        "step_s_mean",
        "resumed_step_s",
        "peak_stepping_mib",
        "checkpoint_mib",
    ] {
        assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {row}");
    }
    assert!(
        row["checkpoint_files"].as_u64().is_some_and(|n| n >= 1),
        "{row}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("candle") && l.contains(" 4 ")),
        "no table row: {text}"
    );
    // Each case's checkpoint directory is removed after its resume.
    let left: Vec<_> = std::fs::read_dir(&checkpoints)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// --cells belongs to --scale (one line naming the missing flag), and a
/// count that is not a whole number of cells is refused with one line
/// saying so.
#[test]
fn the_large_case_wants_scale_and_a_whole_cell_count() {
    let out = atheria()
        .args(["bench", "--cells", "1e7"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("required arguments were not provided: --scale")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
    let out = atheria()
        .args(["bench", "--scale", "--cells", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("whole number"), "{err}");
}
