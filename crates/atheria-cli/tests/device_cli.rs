//! `atheria run --engine device` (the device-resident engine on the CPU, as
//! CI runs it) and `--device cuda` where there is no CUDA: one error line
//! naming what is missing, in under a second.

mod common;

use std::time::{Duration, Instant};

use atheria::state_file;
use common::*;

#[test]
fn the_device_engine_runs_on_the_cpu_and_matches_the_dense_engine() {
    let dir = temp_dir("device-cpu");
    let mut states = Vec::new();
    for engine in ["dense", "device"] {
        let save = dir.join(format!("{engine}.safetensors"));
        let out = atheria()
            .args([
                "run", "--engine", engine, "--grid", "24", "--steps", "5", "--gamma", "0.01",
            ])
            .args(["--png"])
            .arg(&dir)
            .arg("--save")
            .arg(&save)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{engine}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        states.push(state_file::read_state(&save, usize::MAX).unwrap());
    }
    assert_eq!(states[0].step, 5);
    assert_eq!(states[1].step, 5);
    let diff = states[0]
        .planes()
        .iter()
        .zip(states[1].planes())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "device differs from dense by {diff:e}");
    assert!(
        dir.join("delta_000005.png").is_file(),
        "pictures from the device engine"
    );
}

#[test]
fn cuda_without_cuda_fails_in_one_line_within_a_second() {
    let started = Instant::now();
    let out = atheria()
        .args(["run", "--device", "cuda", "--steps", "1", "--grid", "8"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ran on a machine without CUDA: {err}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}: {err}");
    let lines: Vec<_> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    // The default binary has no CUDA; a `cuda` build on a machine without
    // the driver names the driver's library instead.
    assert!(
        lines[0].contains("cuda:0")
            && (lines[0].contains("--features cuda") || lines[0].contains("libcuda.so")),
        "{err}"
    );
}
