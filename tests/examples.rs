//! The examples an embedder copies (examples/) run and print what is true:
//! each is run as built by `cargo test`, and what it prints is checked
//! against the library driven directly.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use atheria::instruments::frame::{FrameMut, FrameRef};
use atheria::instruments::metrics::metrics;
use atheria::instruments::tools::Lattice;
use atheria::{BackendKind, BackendOptions, DenseEngine, DenseState, InitKind, ModelPackage, Tool};

/// Runs an example binary built beside this test (`cargo test` builds the
/// examples before it runs the tests) and returns its stdout.
fn run_example(name: &str) -> String {
    let exe = std::env::current_exe().expect("test binary");
    // target/<profile>/deps/this-test -> target/<profile>/examples/<name>
    let path: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests with `cargo test` (which builds the examples) or `cargo build --examples` first",
        path.display()
    );
    let out = Command::new(&path).output().expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The text after `prefix` on the line that starts with it.
fn after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting `{prefix}` in:\n{text}"))
}

/// Parses "a +bi" as printed by the examples.
fn complex(s: &str) -> (f32, f32) {
    let s = s.trim().trim_end_matches('i');
    let (re, im) = s.split_once(' ').expect("`re im` parts");
    (re.parse().expect("re"), im.parse().expect("im"))
}

#[test]
fn embed_steps_the_package_as_the_dense_engine_does_and_reloads_exactly() {
    let out = run_example("embed");
    assert!(
        out.contains("model `conv3x3_d4` d_state 4 on candle"),
        "{out}"
    );
    assert!(out.contains("step 10: 4096 cells"), "{out}");
    assert!(out.contains("step 20: 4096 cells"), "{out}");
    assert!(out.contains("ran 20 steps"), "{out}");
    assert!(out.contains("reloaded at step 20: identical true"), "{out}");

    // The same run on the dense engine directly.
    let root = env!("CARGO_MANIFEST_DIR");
    let package = ModelPackage::load(format!("{root}/tests/fixtures/golden/conv3x3_d4")).unwrap();
    let backend = BackendKind::Candle
        .load(&package, &BackendOptions::default())
        .unwrap();
    let mut state = DenseState::zeros(64, 64, 4).unwrap();
    atheria::init::fill(&mut state, InitKind::ComplexNoise, 42);
    let start = state.clone();
    let mut options = atheria::StepOptions::default();
    options.gamma = 0.01;
    let mut engine = DenseEngine::new(Arc::clone(&backend), state, options).unwrap();
    for _ in 0..20 {
        engine.step().unwrap();
    }
    let s = engine.state();
    let i = 20 * 64 + 10; // row 20, column 10
    let expected = (s.planes()[i], s.planes()[4 * s.cells() + i]);
    let printed = complex(after(&out, "psi(10, 20)[0] = "));
    assert!(
        (printed.0 - expected.0).abs() < 2e-6 && (printed.1 - expected.1).abs() < 2e-6,
        "printed {printed:?}, the dense engine has {expected:?}"
    );
    // The energy picture's largest cell: sum |delta|^2 of the last step.
    let (n, delta) = (s.cells(), engine.last_delta());
    let max_energy = (0..n)
        .map(|i| (0..8).map(|c| delta[c * n + i].powi(2)).sum::<f32>())
        .fold(0.0f32, f32::max);
    let printed: f32 = after(&out, "max energy ").trim().parse().unwrap();
    assert!(
        (printed - max_energy).abs() <= 1e-3 * max_energy,
        "printed {printed}, the engine's delta gives {max_energy}"
    );
    // The vortex, then the readouts against the start.
    let vortex = Tool::Vortex {
        x: 32,
        y: 32,
        radius: 6,
        strength: 1.0,
    };
    let grid = atheria::CellBox::new(0, 0, 63, 63);
    vortex
        .apply(
            &mut FrameMut::new(engine.state_mut()),
            &Lattice::Bounded(grid),
        )
        .unwrap();
    let base = FrameRef::new(&start, None).unwrap();
    let m = metrics(
        &FrameRef::new(engine.state(), None).unwrap(),
        Some(&base),
        None,
        None,
        20,
    );
    let line = format!(
        "fidelity {:.4}, entropy {:.3}, epoch {}",
        m.fidelity, m.entropy, m.epoch
    );
    assert!(out.contains(&line), "expected `{line}` in:\n{out}");
}

#[test]
fn sparse_embed_keeps_matter_inside_its_light_cone_far_from_the_origin() {
    let out = run_example("sparse_embed");
    // Lattice points with x^2 + y^2 <= 36.
    assert!(
        out.contains("inserted 113 cells around (1000000, -2000000)"),
        "{out}"
    );
    for step in 1..=10 {
        assert!(
            out.contains(&format!("step {step}: ")),
            "step {step} missing:\n{out}"
        );
    }
    // "x A..=B, y C..=D"
    let bounds: Vec<i64> = after(&out, "bounding box ")
        .replace(['x', 'y', ','], " ")
        .replace("..=", " ")
        .split_whitespace()
        .map(|w| w.parse().expect("a coordinate"))
        .collect();
    assert_eq!(bounds.len(), 4, "{out}");
    // Radius 6 plus one cell per step for 10 steps.
    let (cx, cy, reach) = (1_000_000i64, -2_000_000i64, 16i64);
    assert!(
        bounds[0] >= cx - reach && bounds[1] <= cx + reach,
        "{bounds:?}"
    );
    assert!(
        bounds[2] >= cy - reach && bounds[3] <= cy + reach,
        "{bounds:?}"
    );
    let near: usize = after(&out, "cells within 8 of (1000000, -2000000): ")
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The law keeps matter (zero bias): the disc's 113 cells and more.
    assert!(near >= 113, "{out}");
    assert!(out.contains("within 1000 of the origin: 0"), "{out}");
    let psi = complex(after(&out, "psi(1000003, -2000002)[0] = "));
    assert!(
        psi.0.is_finite() && psi.1.is_finite() && psi != (0.0, 0.0),
        "{out}"
    );
}

#[test]
fn shared_backend_runs_equal_on_many_threads_and_alone() {
    let out = run_example("shared_backend");
    let mut sums = Vec::new();
    for seed in 0..4 {
        let line = after(
            &out,
            &format!("seed {seed} on its own thread: fingerprint "),
        );
        sums.push(line.parse::<f64>().expect("fingerprint"));
    }
    // Different seeds, different runs.
    for i in 0..4 {
        for j in 0..i {
            assert_ne!(sums[i], sums[j], "seeds {i} and {j} gave the same run");
        }
    }
    let alone = after(&out, "seed 2 alone: fingerprint ");
    assert!(alone.ends_with("equal true"), "{out}");
    assert!(out.contains("the backend served 5 simulations"), "{out}");
}
