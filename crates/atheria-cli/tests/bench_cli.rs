//! `atheria bench` always finishes and reports every figure: a short run of
//! one dense configuration with and without the PyTorch reference.

mod common;

use common::*;

#[test]
fn a_short_bench_finishes_with_a_table_and_json_for_every_backend() {
    let dir = temp_dir("bench");
    let json = dir.join("bench.json");
    let out = atheria()
        .args([
            "bench",
            "--configs",
            "dense-32",
            "--windows",
            "2",
            "--window-secs",
            "0.05",
            "--threads",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
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
