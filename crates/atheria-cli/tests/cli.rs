//! The `atheria` command as a user meets it: the default run, model packages,
//! saved states against PyTorch, and one-line errors for bad input.

mod common;

use atheria::state_file;
use common::*;

#[test]
fn the_default_run_needs_no_files_and_writes_pictures() {
    let dir = temp_dir("default-run");
    let out = atheria()
        .args([
            "run", "--grid", "48", "--steps", "12", "--every", "6", "--png",
        ])
        .arg(&dir)
        .output()
        .expect("run atheria");
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    for stage in [
        "backend init done",
        "model load done",
        "state init done",
        "first step done",
    ] {
        assert!(err.contains(stage), "no `{stage}` log line: {err}");
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("12 steps") && summary.contains("steps/s"),
        "summary: {summary}"
    );
    for name in [
        "phase_c0_000006.png",
        "delta_000006.png",
        "phase_c0_000012.png",
        "delta_000012.png",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|_| panic!("{name} missing"));
        assert_eq!(&bytes[1..4], b"PNG", "{name} is not a PNG");
    }
}

#[test]
fn saved_states_of_every_golden_package_match_pytorch_within_1e_4() {
    let dir = temp_dir("golden-run");
    for kind in backends() {
        for case in GOLDEN_CASES {
            let (steps, gamma) = case_params(case);
            let save = dir.join(format!("{kind}-{case}.safetensors"));
            let out = atheria()
                .args(["run", "--quiet", "--backend", kind.name(), "--model"])
                .arg(golden(case))
                .arg("--init")
                .arg(golden(case).join("initial.safetensors"))
                .args([
                    "--steps",
                    &steps.to_string(),
                    "--gamma",
                    &gamma.to_string(),
                    "--save",
                ])
                .arg(&save)
                .output()
                .expect("run atheria");
            assert!(out.status.success(), "{kind} {case}: {}", stderr_of(&out));
            let got = state_file::read_state(&save, usize::MAX).expect("saved state");
            let want =
                state_file::read_state(&golden(case).join("expected.safetensors"), usize::MAX)
                    .unwrap();
            assert_close(
                &format!("{kind} {case} saved state"),
                got.planes(),
                want.planes(),
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn a_missing_model_is_one_clear_line() {
    let out = atheria()
        .args(["run", "--model", "/no/such/model"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "model.json");
}

#[test]
fn a_model_whose_channels_disagree_with_d_state_is_named() {
    let dir = temp_dir("bad-d-state");
    for f in ["model.safetensors", "model.pt", "model.onnx"] {
        std::fs::copy(golden("conv3x3_d4").join(f), dir.join(f)).unwrap();
    }
    let json = std::fs::read_to_string(golden("conv3x3_d4").join("model.json")).unwrap();
    std::fs::write(
        dir.join("model.json"),
        json.replace("\"d_state\": 4", "\"d_state\": 3"),
    )
    .unwrap();
    for kind in backends() {
        let out = atheria()
            .args(["run", "--steps", "1", "--backend", kind.name(), "--model"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_clean_failure(&out, "3");
    }
}

#[test]
fn bad_flag_values_are_one_clear_line() {
    for (args, expect) in [
        (vec!["--grid", "0"], "at least 1"),
        (vec!["--gamma", "-1"], "gamma"),
        (vec!["--init", "sideways"], "unknown initial state"),
        (
            vec!["--init", "/no/such/state.safetensors"],
            "state.safetensors",
        ),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--timeout", "-3"], "--timeout"),
    ] {
        let out = atheria().arg("run").args(&args).output().unwrap();
        assert_clean_failure(&out, expect);
    }
}

#[test]
fn a_state_file_that_disagrees_with_the_model_is_named() {
    // The identity case has d_state 4; the mlp case's state has d_state 2.
    let out = atheria()
        .args(["run", "--model"])
        .arg(golden("conv3x3_identity_d4"))
        .arg("--init")
        .arg(golden("mlp_d2_h8").join("initial.safetensors"))
        .output()
        .unwrap();
    assert_clean_failure(&out, "d_state 2");
}

#[test]
fn a_stage_over_its_timeout_is_named_and_fails() {
    let out = atheria()
        .args(["run", "--grid", "3000", "--steps", "1", "--timeout", "0.02"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("did not finish within 0.0 s") || err.contains("did not finish within"),
        "{err}"
    );
    assert!(err.contains("stage `"), "the stage is not named: {err}");
}

#[test]
fn an_unknown_backend_or_one_not_compiled_in_names_the_feature() {
    let out = atheria()
        .args(["run", "--backend", "jax"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    for kind in atheria::BackendKind::ALL
        .into_iter()
        .filter(|k| !k.compiled_in())
    {
        let out = atheria()
            .args(["run", "--backend", kind.name(), "--model"])
            .arg(golden("conv3x3_d4"))
            .output()
            .unwrap();
        assert_clean_failure(&out, &format!("--features {kind}"));
    }
}
