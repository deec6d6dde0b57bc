//! U-Net laws end to end: packages made by the exporter at test time, dense
//! and sparse runs on every backend against the PyTorch reference engine
//! running the same steps (for the sparse engine: on the same windows), the
//! CLI's grid check, the sparse engine's window, and a PyTorch training
//! checkpoint converted and run without hand editing.
//!
//! The exporter and the reference engine run in the project's Python
//! environment (`.venv`, made by scripts/setup-python.sh). Without it these
//! tests print SKIPPED, unless ATHERIA_REQUIRE_BACKENDS is set: then a
//! missing environment fails them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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
/// PyTorch itself is that accurate (a chaotic law is not: see
/// `Bound::PyTorchOwnError`).
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

fn root() -> PathBuf {
    workspace_root()
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

/// A seeded U-Net law (D 8, hidden 32) and its 128 x 128 complex_noise start,
/// made once per test process and shared by the tests that run it.
struct Law {
    arch: &'static str,
    seed: &'static str,
    /// The exporter's `--last-std`; `None`: its default for U-Nets (0.05).
    last_std: Option<&'static str>,
    made: OnceLock<Option<Made>>,
}

/// What a [`Law`] made: the package and the initial state.
#[derive(Debug)]
struct Made {
    py: PathBuf,
    dir: PathBuf,
    model: PathBuf,
    initial: PathBuf,
}

impl Law {
    const fn new(arch: &'static str, seed: &'static str, last_std: Option<&'static str>) -> Self {
        Self {
            arch,
            seed,
            last_std,
            made: OnceLock::new(),
        }
    }

    fn name(&self) -> String {
        match self.last_std {
            Some(std) => format!("{} (last layer std {std})", self.arch),
            None => self.arch.to_string(),
        }
    }

    /// Exports the package and writes the initial state with the reference
    /// engine (--steps 0: Rust's and Python's complex_noise generators
    /// differ); `None` (after SKIPPED) without the Python environment.
    fn made(&self) -> Option<&Made> {
        self.made
            .get_or_init(|| {
                let py = python()?;
                let tag = format!(
                    "{}-{}-{}",
                    self.arch,
                    self.seed,
                    self.last_std.unwrap_or("default")
                );
                let dir = temp_dir(&format!("unet-law-{tag}"));
                let model = dir.join("model");
                let mut export = python_tool(&py, "export.py");
                export
                    .args([
                        "--arch",
                        self.arch,
                        "--d-state",
                        D_STATE,
                        "--hidden",
                        HIDDEN,
                    ])
                    .args(["--seed", self.seed, "--out"])
                    .arg(&model);
                if let Some(std) = self.last_std {
                    export.args(["--last-std", std]);
                }
                succeed(&format!("export {}", self.name()), &mut export);
                let initial = dir.join("initial.safetensors");
                succeed(
                    &format!("initial state for {}", self.name()),
                    python_tool(&py, "reference_engine.py")
                        .args(["run", "--model"])
                        .arg(&model)
                        .args([
                            "--init",
                            "complex_noise",
                            "--grid",
                            GRID,
                            "--seed",
                            self.seed,
                        ])
                        .args(["--steps", "0", "--save"])
                        .arg(&initial),
                );
                Some(Made {
                    py,
                    dir,
                    model,
                    initial,
                })
            })
            .as_ref()
    }
}

static UNET: Law = Law::new("unet", "11", None);
static UNET_UNITARY: Law = Law::new("unet_unitary", "12", None);
/// The unitary U-Net at the exporter's former last-layer std: a chaotic law.
static CHAOTIC_UNET_UNITARY: Law = Law::new("unet_unitary", "12", Some("0.2"));

/// The engine a run uses: `atheria run --engine` and the reference engine's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    /// The whole 128 x 128 grid.
    Dense,
    /// The sparse lattice: a global law steps the window around the matter
    /// (tiles of 16 holding matter plus one ring of tiles, rounded up to a
    /// multiple of 4, vacuum zero), cells below 0.01 become vacuum, and the
    /// saved state is the bounding box of the matter. The reference engine
    /// steps the same windows (SparseWindowEngine in python/atheria_ref).
    Sparse,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Dense => "dense",
            Engine::Sparse => "sparse",
        }
    }
}

/// How close to PyTorch a backend must end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bound {
    /// Within RUN_TOL of PyTorch.
    RunTol,
    /// As far from the exact result as PyTorch itself, give or take the luck
    /// of chaos: a chaotic law amplifies every rounding, so PyTorch's own
    /// float32 run strays from float64 by p, and no float32 engine can be
    /// held closer. Which engine ends closer is chance: per step every
    /// backend is more exact than PyTorch here (measured after 1 step, to
    /// float64: candle 1.8e-6, tch 2.6e-6, onnx 3.1e-6, PyTorch 4.5e-6),
    /// yet after 10 amplifying steps candle ended 2.3e-3 away against
    /// PyTorch's 2.5e-3. So: within max(RUN_TOL, 2p) of PyTorch and of
    /// float64; a wrong step is off by O(1) and still fails.
    PyTorchOwnError,
}

/// The largest change of any value between `start` and `end` over the cells
/// of `start` (placed by their origins) that `end` holds too.
fn moved(start: &DenseState, end: &DenseState) -> f32 {
    let (d, sn, en) = (start.d_state(), start.cells(), end.cells());
    let mut most = 0.0f32;
    for y in 0..start.height() {
        for x in 0..start.width() {
            let ex = x as i64 + start.origin.0 as i64 - end.origin.0 as i64;
            let ey = y as i64 + start.origin.1 as i64 - end.origin.1 as i64;
            if ex < 0 || ey < 0 || ex >= end.width() as i64 || ey >= end.height() as i64 {
                continue;
            }
            let (i, j) = (
                y * start.width() + x,
                ey as usize * end.width() + ex as usize,
            );
            for p in 0..2 * d {
                most = most.max((start.planes()[p * sn + i] - end.planes()[p * en + j]).abs());
            }
        }
    }
    most
}

/// Runs `law` 10 steps (gamma 0.01) from its 128 x 128 start on `engine`:
/// PyTorch's reference engine, then `atheria run` on every backend. Each
/// backend's saved state must hold the same cells as PyTorch's (step,
/// origin, size, occupancy) with values within `bound` of PyTorch's.
fn runs_match_pytorch(law: &Law, engine: Engine, bound: Bound) {
    let Some(made) = law.made() else { return };
    let name = format!("{} {}", engine.name(), law.name());
    let tag = format!("{}-{}", engine.name(), law.seed);
    let steps = STEPS.to_string();
    let pytorch = made.dir.join(format!("pytorch-{tag}.safetensors"));
    succeed(
        &format!("reference engine, {name}, {STEPS} steps"),
        python_tool(&made.py, "reference_engine.py")
            .args(["run", "--engine", engine.name(), "--model"])
            .arg(&made.model)
            .arg("--init")
            .arg(&made.initial)
            .args(["--steps", &steps, "--gamma", GAMMA, "--save"])
            .arg(&pytorch),
    );
    let start = read(&made.initial);
    let expected = read(&pytorch);
    assert_eq!(expected.step, STEPS, "{name}: PyTorch's step count");
    let moved = moved(&start, &expected);
    assert!(
        moved > 10.0 * RUN_TOL,
        "{name}: {STEPS} PyTorch steps moved the state only {moved}: the comparison would prove nothing"
    );
    eprintln!(
        "{name}: PyTorch's {STEPS} steps moved values by up to {moved:.3}; matter box {} x {} at {:?}",
        expected.height(),
        expected.width(),
        expected.origin
    );
    let exact = (bound == Bound::PyTorchOwnError).then(|| {
        assert_eq!(
            engine,
            Engine::Dense,
            "the float64 run is the dense engine's"
        );
        let path = made.dir.join(format!("float64-{tag}.safetensors"));
        succeed(
            &format!("reference engine {name} in float64"),
            python_in_root(&made.py)
                .args(["-c", REFERENCE_F64])
                .arg(&made.model)
                .arg(&made.initial)
                .args([GAMMA, &steps])
                .arg(&path),
        );
        let exact = read(&path);
        let (own, _) = max_abs_diff(expected.planes(), exact.planes());
        eprintln!("{name}: PyTorch float32 vs float64 after {STEPS} steps: {own:.3e}");
        (exact, own)
    });
    for kind in backends() {
        let save = made.dir.join(format!("{kind}-{tag}.safetensors"));
        succeed(
            &format!("atheria run {name} on {kind}"),
            atheria()
                .args(["run", "--quiet", "--engine", engine.name()])
                .args(["--backend", kind.name(), "--model"])
                .arg(&made.model)
                .arg("--init")
                .arg(&made.initial)
                .args(["--steps", &steps, "--gamma", GAMMA, "--save"])
                .arg(&save),
        );
        let got = read(&save);
        assert_eq!(got.step, STEPS, "{name} {kind}: step count");
        assert_eq!(
            (got.origin, got.height(), got.width(), got.d_state()),
            (
                expected.origin,
                expected.height(),
                expected.width(),
                expected.d_state()
            ),
            "{name} {kind}: saved state's origin and size (height, width, D) against PyTorch's"
        );
        assert!(
            got.occupied() == expected.occupied(),
            "{name} {kind}: {} cells of matter where PyTorch has {}, or in other places",
            got.occupied().iter().filter(|&&o| o != 0).count(),
            expected.occupied().iter().filter(|&&o| o != 0).count()
        );
        let (to_pytorch, at) = max_abs_diff(got.planes(), expected.planes());
        let (tol_pytorch, to_exact) = match &exact {
            None => {
                eprintln!(
                    "{name} {kind}: max |diff| after {STEPS} steps: {to_pytorch:.3e} to PyTorch"
                );
                (RUN_TOL, String::new())
            }
            Some((exact, own)) => {
                let (to_exact, _) = max_abs_diff(got.planes(), exact.planes());
                eprintln!(
                    "{name} {kind}: max |diff| after {STEPS} steps: {to_pytorch:.3e} to PyTorch, {to_exact:.3e} to float64"
                );
                let tol_exact = RUN_TOL.max(2.0 * own);
                assert!(
                    to_exact <= tol_exact,
                    "{name} on {kind}, {STEPS} steps: max |diff| {to_exact:.3e} to float64 (allowed {tol_exact:.1e}; PyTorch float32 itself is {own:.3e} from float64)"
                );
                (
                    RUN_TOL.max(2.0 * own),
                    format!("; {to_exact:.3e} to float64"),
                )
            }
        };
        assert!(
            to_pytorch <= tol_pytorch,
            "{name} on {kind}, {STEPS} steps: max |diff| {to_pytorch:.3e} to PyTorch (allowed {tol_pytorch:.1e}; value {at}: {} against {}{to_exact})",
            got.planes()[at],
            expected.planes()[at]
        );
    }
}

#[test]
fn dense_unet_runs_match_pytorch_on_every_backend() {
    runs_match_pytorch(&UNET, Engine::Dense, Bound::RunTol);
}

#[test]
fn dense_unet_unitary_runs_match_pytorch_on_every_backend() {
    runs_match_pytorch(&UNET_UNITARY, Engine::Dense, Bound::RunTol);
}

/// The additive U-Net gives every vacuum cell of the window a delta, so the
/// matter grows by a ring of tiles each step: the 10th step runs on 448 x 448.
///
/// Measured: candle and tch end about 9e-5 from PyTorch, as far as PyTorch's
/// own float32 run is from float64 on these windows; ONNX Runtime, whose
/// forward is about 15x less exact than PyTorch's here, 3.4e-4.
#[test]
fn sparse_unet_runs_match_pytorch_on_the_same_windows_on_every_backend() {
    runs_match_pytorch(&UNET, Engine::Sparse, Bound::RunTol);
}

/// The unitary rule multiplies the delta by psi, zero on vacuum: the matter
/// stays 128 x 128, stepped on a 160 x 160 window (one ring of tiles).
///
/// Measured: this law is more sensitive on its window than on the dense grid
/// (PyTorch float32 ends 1.3e-4 from float64, against 4.6e-5 dense); candle
/// and tch end 1.3e-4 from PyTorch, ONNX Runtime 6.7e-4: the tightest margin
/// of these tests.
#[test]
fn sparse_unet_unitary_runs_match_pytorch_on_the_same_windows_on_every_backend() {
    runs_match_pytorch(&UNET_UNITARY, Engine::Sparse, Bound::RunTol);
}

/// At last-layer std 0.2 the unitary U-Net is chaotic (|delta| ~ 1 per step;
/// a 1e-7 change grows about 2.2x per step): PyTorch in float32 itself ends
/// about 2.5e-3 from float64 after 10 steps, so no float32 engine can be held
/// to 1e-3 of it. Each backend must end about as far from the exact result
/// as PyTorch does (`Bound::PyTorchOwnError`).
#[test]
fn a_chaotic_unet_law_ends_as_close_to_pytorch_as_pytorch_is_to_float64() {
    runs_match_pytorch(&CHAOTIC_UNET_UNITARY, Engine::Dense, Bound::PyTorchOwnError);
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
        let mut engine = SparseEngine::new(backend, SparseOptions::default().with_gamma(gamma))
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
