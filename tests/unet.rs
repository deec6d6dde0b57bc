//! U-Net laws end to end: packages made by the exporter at test time, runs
//! against the PyTorch reference engine, the CLI's grid check, the sparse
//! engine's window, and a PyTorch training checkpoint converted and run
//! without hand editing.
//!
//! The exporter and the reference engine run in the project's Python
//! environment (`.venv`, made by scripts/setup-python.sh). Without it these
//! tests print SKIPPED, unless ATHERIA_REQUIRE_BACKENDS is set: then a
//! missing environment fails them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use atheria::{state_file, DenseState, ModelPackage, SparseEngine, SparseOptions};
use common::*;

/// Channels and width of the exported U-Nets.
const D_STATE: &str = "8";
const HIDDEN: &str = "32";
/// The PyTorch comparison run.
const GRID: &str = "128";
const STEPS: u64 = 10;
const GAMMA: &str = "0.01";
/// Saved states of a 10-step run agree with PyTorch's within this, where
/// PyTorch itself is that accurate (see `dense_runs_match_pytorch`).
const RUN_TOL: f32 = 1e-3;

/// The reference engine's run in float64: model, state file, gamma, steps,
/// output file. The yardstick for PyTorch's own float32 rounding.
const REFERENCE_F64: &str = r#"
import sys
sys.path.insert(0, "python")
import torch
from reference_engine import load_package
from atheria_ref.engine import ReferenceEngine
from atheria_ref.state_io import State, read_state, write_state
model, spec = load_package(sys.argv[1])
start = read_state(sys.argv[2])
psi = torch.from_numpy(start.psi).to(torch.complex128)[None]
engine = ReferenceEngine(model.double(), psi, gamma=float(sys.argv[3]),
                         unitary=spec["update"] == "unitary", step_count=start.step)
out = engine.run(int(sys.argv[4]))
write_state(sys.argv[5], State(out[0].numpy().astype("complex64"), engine.step_count))
"#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The project venv's Python, or `None` (after printing SKIPPED) when it is
/// absent and no backend test is required.
fn python() -> Option<PathBuf> {
    let py = root().join(".venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    assert!(
        std::env::var_os("ATHERIA_REQUIRE_BACKENDS").is_none(),
        "{} is missing: run scripts/setup-python.sh to make the Python environment (torch, onnxruntime) these tests need",
        py.display()
    );
    eprintln!(
        "SKIPPED: {} is missing; run scripts/setup-python.sh to test U-Net laws against PyTorch",
        py.display()
    );
    None
}

/// Stderr of a finished command, for messages.
fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd`, failing the test with its stderr unless it succeeds. Each
/// command's wall time goes to stderr: these tests must stay fast.
fn succeed(what: &str, cmd: &mut Command) -> Output {
    let started = std::time::Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        stderr_of(&out)
    );
    out
}

/// Python from the repository root. Torch's OpenMP workers wait passively:
/// tests run side by side on few cores, where spinning workers starve the
/// other test's processes.
fn python_in_root(py: &Path) -> Command {
    let mut cmd = Command::new(py);
    cmd.current_dir(root()).env("OMP_WAIT_POLICY", "PASSIVE");
    cmd
}

/// A Python tool of python/ run from the repository root.
fn python_tool(py: &Path, script: &str) -> Command {
    let mut cmd = python_in_root(py);
    cmd.arg(root().join("python").join(script));
    cmd
}

fn read(path: &Path) -> DenseState {
    state_file::read_state(path, usize::MAX).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Exports `arch` (D 8, hidden 32, seeded), runs PyTorch's reference engine
/// 10 steps on a 128 x 128 complex_noise state, and `atheria run` (dense) on
/// every backend from that same state (the reference engine writes it with
/// --steps 0: Rust's and Python's complex_noise generators differ).
///
/// Each backend's saved state must be within RUN_TOL of PyTorch's. A law can
/// amplify rounding beyond that (the unitary U-Net does: PyTorch in float32
/// ends 2.5e-3 from PyTorch in float64 after 10 steps), so the same run in
/// float64 measures PyTorch's own error p, and a backend passes when it is
/// within max(RUN_TOL, 2p) of PyTorch and max(RUN_TOL, p) of float64: no
/// farther from the exact result than PyTorch itself.
fn dense_runs_match_pytorch(arch: &str, seed: &str) {
    let Some(py) = python() else { return };
    let dir = temp_dir(&format!("unet-pytorch-{arch}"));
    let model = dir.join("model");
    succeed(
        &format!("export {arch}"),
        python_tool(&py, "export.py")
            .args(["--arch", arch, "--d-state", D_STATE, "--hidden", HIDDEN])
            .args(["--seed", seed, "--out"])
            .arg(&model),
    );
    let reference = |steps: u64, save: &Path| {
        succeed(
            &format!("reference engine {arch}, {steps} steps"),
            python_tool(&py, "reference_engine.py")
                .args(["run", "--model"])
                .arg(&model)
                .args(["--init", "complex_noise", "--grid", GRID, "--seed", seed])
                .args(["--steps", &steps.to_string(), "--gamma", GAMMA, "--save"])
                .arg(save),
        );
    };
    let initial = dir.join("initial.safetensors");
    let pytorch = dir.join("pytorch.safetensors");
    reference(0, &initial);
    reference(STEPS, &pytorch);
    let exact_path = dir.join("float64.safetensors");
    succeed(
        &format!("reference engine {arch} in float64"),
        python_in_root(&py)
            .args(["-c", REFERENCE_F64])
            .arg(&model)
            .arg(&initial)
            .args([GAMMA, &STEPS.to_string()])
            .arg(&exact_path),
    );
    let start = read(&initial);
    let expected = read(&pytorch);
    let exact = read(&exact_path);
    assert_eq!(expected.step, STEPS, "{arch}: PyTorch's step count");
    let (moved, _) = max_abs_diff(expected.planes(), start.planes());
    assert!(
        moved > 10.0 * RUN_TOL,
        "{arch}: 10 PyTorch steps moved the state only {moved}: the comparison would prove nothing"
    );
    let (own, _) = max_abs_diff(expected.planes(), exact.planes());
    eprintln!("{arch}: PyTorch float32 vs float64 after {STEPS} steps: {own:.3e}");
    for kind in backends() {
        let save = dir.join(format!("{kind}.safetensors"));
        succeed(
            &format!("atheria run {arch} on {kind}"),
            atheria()
                .args(["run", "--quiet", "--backend", kind.name(), "--model"])
                .arg(&model)
                .arg("--init")
                .arg(&initial)
                .args(["--steps", &STEPS.to_string(), "--gamma", GAMMA, "--save"])
                .arg(&save),
        );
        let got = read(&save);
        assert_eq!(got.step, STEPS, "{arch} {kind}: step count");
        assert_eq!(
            (got.height(), got.width(), got.d_state()),
            (expected.height(), expected.width(), expected.d_state()),
            "{arch} {kind}: saved state's size"
        );
        let (to_pytorch, at) = max_abs_diff(got.planes(), expected.planes());
        let (to_exact, _) = max_abs_diff(got.planes(), exact.planes());
        eprintln!(
            "{arch} {kind}: max |diff| after {STEPS} steps: {to_pytorch:.3e} to PyTorch, {to_exact:.3e} to float64"
        );
        let (tol_pytorch, tol_exact) = (RUN_TOL.max(2.0 * own), RUN_TOL.max(own));
        assert!(
            to_pytorch <= tol_pytorch && to_exact <= tol_exact,
            "{arch} on {kind}, {STEPS} dense steps: max |diff| {to_pytorch:.3e} to PyTorch (allowed {tol_pytorch:.1e}; value {at}: {} against {}) and {to_exact:.3e} to float64 (allowed {tol_exact:.1e}; PyTorch float32 itself is {own:.3e} from float64)",
            got.planes()[at],
            expected.planes()[at]
        );
    }
}

#[test]
fn dense_unet_runs_match_pytorch_on_every_backend() {
    dense_runs_match_pytorch("unet", "11");
}

#[test]
fn dense_unet_unitary_runs_match_pytorch_on_every_backend() {
    dense_runs_match_pytorch("unet_unitary", "12");
}

#[test]
fn the_dense_engine_rejects_a_unet_grid_that_is_not_a_multiple_of_4_before_stepping() {
    for kind in backends() {
        let out = atheria()
            .args(["run", "--backend", kind.name(), "--model"])
            .arg(golden("unet_d2_h8"))
            .args(["--grid", "30", "--steps", "1", "--init", "complex_noise"])
            .output()
            .expect("run atheria");
        let err = stderr_of(&out);
        assert!(
            !out.status.success(),
            "{kind}: a 30 x 30 U-Net run succeeded: {err}"
        );
        assert!(
            !err.contains("panicked"),
            "{kind}: panic instead of an error: {err}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{kind}: expected one error line: {err}");
        assert!(
            lines[0].contains("30 x 30") && lines[0].contains("multiples of 4"),
            "{kind}: the error should name the grid and the multiple: {}",
            lines[0]
        );
        assert!(
            !err.contains("stage first step"),
            "{kind}: the grid was refused only once stepping began: {err}"
        );
    }
}

#[test]
fn the_sparse_engine_steps_a_unet_on_its_window() {
    let case = "unet_d2_h8";
    let (_, gamma) = case_params(case);
    let initial = golden(case).join("initial.safetensors");
    let start = read(&initial);
    let dir = temp_dir("unet-sparse");
    for kind in backends() {
        let save = dir.join(format!("{kind}.safetensors"));
        let out = succeed(
            &format!("atheria run --engine sparse on {kind}"),
            atheria()
                .args(["run", "-v", "--engine", "sparse", "--backend", kind.name()])
                .arg("--model")
                .arg(golden(case))
                .arg("--init")
                .arg(&initial)
                .args(["--steps", "3", "--gamma", &gamma.to_string(), "--save"])
                .arg(&save),
        );
        let err = stderr_of(&out);
        // -v reports every step's window as the tiles the model ran on.
        for step in 1..=3 {
            let line = err
                .lines()
                .find(|l| l.contains(&format!("step {step}: ")) && l.contains(" tiles"))
                .unwrap_or_else(|| panic!("{kind}: no window report for step {step}: {err}"));
            assert!(line.contains("cells"), "{kind}: {line}");
        }
        let got = read(&save);
        assert_eq!(got.step, 3, "{kind}: step count");

        // The same run in process: the CLI saves the bounding box of the matter.
        let package = ModelPackage::load(golden(case)).expect("package");
        let backend = kind
            .load(&package, &Default::default())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let mut engine = SparseEngine::new(
            backend,
            SparseOptions {
                gamma,
                ..SparseOptions::default()
            },
        )
        .expect("sparse engine");
        engine.import(&start).expect("import");
        let mut window = None;
        for _ in 0..3 {
            let next = engine.next_window().expect("window").expect("matter");
            window = engine.step().expect("sparse step").window;
            assert_eq!(
                window,
                Some((next.height(), next.width())),
                "{kind}: the step ran on another window than next_window announced"
            );
        }
        let (wh, ww) = window.expect("a global model steps a window");
        assert!(
            wh >= start.height() && ww >= start.width() && wh % 4 == 0 && ww % 4 == 0,
            "{kind}: window {wh} x {ww} must cover the {} x {} start and be a multiple of 4",
            start.height(),
            start.width()
        );
        let area = engine.bounding_box().expect("matter left");
        let want = engine.export(area).expect("export");
        assert_eq!(
            (got.origin, got.height(), got.width()),
            (want.origin, want.height(), want.width()),
            "{kind}: saved box"
        );
        assert_eq!(got.occupied(), want.occupied(), "{kind}: occupancy");
        assert_close(
            &format!("{kind} sparse U-Net, CLI against the library"),
            got.planes(),
            want.planes(),
            1e-6,
            0.0,
        );
    }
}

/// Tensors of a safetensors file by name: (dtype, shape, bytes).
fn tensors(path: &Path) -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut all: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            (
                name,
                format!("{:?}", t.dtype()),
                t.shape().to_vec(),
                t.data().to_vec(),
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn a_pytorch_checkpoint_converts_and_reproduces_the_golden_unet_on_every_backend() {
    let Some(py) = python() else { return };
    let case = "unet_d2_h8";
    let dir = temp_dir("unet-checkpoint");
    let model = dir.join("trained");
    succeed(
        "export --checkpoint",
        python_tool(&py, "export.py")
            .args(["--arch", "unet", "--checkpoint"])
            .arg(fixtures().join("checkpoint_unet_d2_h8.pt"))
            .arg("--out")
            .arg(&model),
    );
    // The checkpoint holds the golden package's weights, under PyTorch's names.
    assert!(
        tensors(&model.join("model.safetensors"))
            == tensors(&golden(case).join("model.safetensors")),
        "the converted checkpoint's weights differ from golden/{case}'s"
    );
    let (steps, gamma) = case_params(case);
    let expected = read(&golden(case).join("expected.safetensors"));
    for kind in backends() {
        let save = dir.join(format!("{kind}.safetensors"));
        succeed(
            &format!("atheria run on the converted checkpoint, {kind}"),
            atheria()
                .args(["run", "--quiet", "--backend", kind.name(), "--model"])
                .arg(&model)
                .arg("--init")
                .arg(golden(case).join("initial.safetensors"))
                .args(["--steps", &steps.to_string()])
                .args(["--gamma", &gamma.to_string(), "--save"])
                .arg(&save),
        );
        let got = read(&save);
        assert_eq!(got.step, expected.step, "{kind}: step count");
        assert_close(
            &format!("converted checkpoint on {kind} against golden/{case}"),
            got.planes(),
            expected.planes(),
            1e-4,
            0.0,
        );
    }
}
