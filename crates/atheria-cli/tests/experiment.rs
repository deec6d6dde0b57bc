//! `atheria run --experiment`: an Atheria experiment folder as Atheria's
//! trainer leaves it (tests/fixtures/atheria_output, written by
//! python/make_experiment_fixture.py) runs and matches PyTorch's run of the
//! checkpoint Atheria's loader picks, on every backend: candle reads the
//! `.pth` in Rust, tch and onnx convert it with the project's exporter.

mod common;

use std::path::PathBuf;

use atheria::state_file;
use common::*;

fn output() -> PathBuf {
    fixtures().join("atheria_output")
}

fn experiment() -> PathBuf {
    output().join("experiments/convlstm_d2_h2_g16")
}

fn expected(name: &str) -> PathBuf {
    output().join("expected/convlstm_d2_h2_g16").join(name)
}

#[test]
fn an_atheria_experiment_runs_as_saved_and_matches_pytorch() {
    let dir = temp_dir("experiment-run");
    let want = state_file::read_state(&expected("expected.safetensors"), usize::MAX).unwrap();
    for kind in backends() {
        let save = dir.join(format!("{kind}.safetensors"));
        // No --gamma: the experiment's GAMMA_DECAY (0.02) must be used.
        let out = atheria()
            .args(["run", "--backend", kind.name(), "--experiment"])
            .arg(experiment())
            .arg("--init")
            .arg(expected("initial.safetensors"))
            .args(["--steps", "10", "--save"])
            .arg(&save)
            .env("ATHERIA_CACHE", dir.join("cache"))
            .output()
            .expect("run atheria");
        let err = stderr_of(&out);
        assert!(out.status.success(), "{kind}: {err}");
        assert!(
            err.contains("checkpoint_ep119.pth"),
            "{kind}: the picked checkpoint is not logged: {err}"
        );
        let got = state_file::read_state(&save, usize::MAX).unwrap();
        assert_eq!(got.step, want.step, "{kind}");
        assert_close(
            &format!("{kind} psi"),
            got.planes(),
            want.planes(),
            1e-4,
            0.0,
        );
        for name in ["h_state", "c_state"] {
            assert_close(
                &format!("{kind} {name}"),
                got.memory.get(name).expect("memory saved"),
                want.memory.get(name).unwrap(),
                1e-4,
                0.0,
            );
        }
        let (diff, _) = max_abs_diff(got.planes(), want.planes());
        println!("{kind}: --experiment, 10 steps: max |psi - PyTorch| {diff:.2e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A copy of the fixture's output folder to break.
fn copy_output(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    for sub in [
        "experiments/convlstm_d2_h2_g16",
        "training_checkpoints/convlstm_d2_h2_g16",
    ] {
        let (from, to) = (output().join(sub), dir.join(sub));
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    dir
}

#[test]
fn broken_experiments_are_one_line_errors() {
    let dir = copy_output("experiment-bad");
    let exp = dir.join("experiments/convlstm_d2_h2_g16");
    let ckpts = dir.join("training_checkpoints/convlstm_d2_h2_g16");
    let run = || {
        atheria()
            .args(["run", "--steps", "1", "--grid", "16", "--experiment"])
            .arg(&exp)
            .output()
            .unwrap()
    };

    // The picked checkpoint truncated: named, no panic.
    let picked = ckpts.join("checkpoint_ep119.pth");
    let bytes = std::fs::read(&picked).unwrap();
    std::fs::write(&picked, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_failure(&run(), "checkpoint_ep119.pth");

    // A checkpoint of another size than config.json says: the tensor is named.
    std::fs::write(&picked, &bytes).unwrap();
    let config = std::fs::read_to_string(exp.join("config.json")).unwrap();
    std::fs::write(
        exp.join("config.json"),
        config.replace("\"hidden_channels\": 2", "\"hidden_channels\": 4"),
    )
    .unwrap();
    assert_clean_failure(&run(), "weight");

    // An architecture this project does not run.
    std::fs::write(
        exp.join("config.json"),
        config.replace("UNET_CONVLSTM", "SNN_UNET"),
    )
    .unwrap();
    assert_clean_failure(&run(), "SNN_UNET");

    // No checkpoints at all.
    std::fs::write(exp.join("config.json"), &config).unwrap();
    std::fs::remove_dir_all(&ckpts).unwrap();
    assert_clean_failure(&run(), "no checkpoint");

    // --model and --experiment together.
    let out = atheria()
        .args(["run", "--model", "x", "--experiment"])
        .arg(&exp)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("cannot be used with"),
        "{}",
        stderr_of(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_recurrent_law_runs_on_the_sparse_engine_and_saves_its_memory_with_its_window() {
    let dir = temp_dir("experiment-sparse-recurrent");
    let save = dir.join("sparse.safetensors");
    let out = atheria()
        .args(["run", "--engine", "sparse", "--steps", "2", "--model"])
        .arg(golden("unet_convlstm_d2_h8"))
        .arg("--init")
        .arg(golden("unet_convlstm_d2_h8").join("initial.safetensors"))
        .arg("--save")
        .arg(&save)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let saved = state_file::read_state(&save, usize::MAX).unwrap();
    assert_eq!(saved.step, 2);
    // The memory lies over the last step's window, which starts on a tile.
    let (x, y) = saved.memory_origin.expect("the memory's origin is saved");
    assert!(x % 16 == 0 && y % 16 == 0, "({x}, {y})");
    assert!(saved.memory.get("h_state").is_some() && saved.memory.get("c_state").is_some());
    let _ = std::fs::remove_dir_all(dir);
}
