//! `atheria run --engine sparse` as a user meets it: the embedded default and a
//! conv3x3 package, pictures, and a saved state that numpy-style readers get
//! as plain [H, W, D] arrays with an occupancy mask and an origin.

mod common;

use atheria::state_file;
use common::*;

#[test]
fn the_sparse_engine_runs_the_default_law_from_a_seeded_blob() {
    let dir = temp_dir("sparse-default");
    let save = dir.join("final.safetensors");
    let out = atheria()
        .args([
            "run", "--engine", "sparse", "--grid", "32", "--steps", "6", "--every", "3", "--png",
        ])
        .arg(&dir)
        .arg("--save")
        .arg(&save)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("sparse lattice:"), "no lattice summary: {err}");
    for name in ["phase_c0_000003.png", "delta_000006.png"] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let state = state_file::read_state(&save, usize::MAX).unwrap();
    assert_eq!(state.step, 6);
    // The blob (a disc of diameter 16 centred on the origin) spreads at most
    // one cell per step with a radius-1 law.
    assert!(
        state.width() <= 16 + 2 * 6 + 1 && state.height() <= 16 + 2 * 6 + 1,
        "{}x{}",
        state.width(),
        state.height()
    );
    assert!(
        state.origin.0 < 0 && state.origin.1 < 0,
        "the blob is centred on the origin: {:?}",
        state.origin
    );
    assert!(
        state.occupied().contains(&0),
        "the bounding box of a disc has vacuum corners"
    );
}

#[test]
fn a_sparse_run_of_a_package_matches_the_dense_run_where_matter_is() {
    // A zero-bias conv3x3 maps vacuum to zero, so sparse == dense with the
    // same threshold on a grid large enough to hold all the matter.
    for kind in backends() {
        let dir = temp_dir(&format!("sparse-pkg-{kind}"));
        let pkg = dir.join("pkg");
        std::fs::create_dir_all(&pkg).unwrap();
        let src = golden("conv3x3_identity_d4");
        for f in ["model.json", "model.safetensors", "model.pt", "model.onnx"] {
            std::fs::copy(src.join(f), pkg.join(f)).unwrap();
        }
        let run = |engine: &str, save: &std::path::Path| {
            let out = atheria()
                .args([
                    "run",
                    "--quiet",
                    "--backend",
                    kind.name(),
                    "--engine",
                    engine,
                    "--model",
                ])
                .arg(&pkg)
                .args([
                    "--grid",
                    "24",
                    "--steps",
                    "4",
                    "--threshold",
                    "0.01",
                    "--init",
                ])
                .arg(golden("conv3x3_identity_d4").join("initial.safetensors"))
                .arg("--save")
                .arg(save)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{kind} {engine}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            state_file::read_state(save, usize::MAX).unwrap()
        };
        let sparse = run("sparse", &dir.join("sparse.safetensors"));
        assert_eq!(sparse.step, 4);
        assert!(sparse.occupied().iter().filter(|&&o| o != 0).count() > 0);
        // The identity law keeps every cell of the initial block where it is.
        let initial = state_file::read_state(
            &golden("conv3x3_identity_d4").join("initial.safetensors"),
            usize::MAX,
        )
        .unwrap();
        assert_eq!(
            (sparse.height(), sparse.width()),
            (initial.height(), initial.width())
        );
        let dense = run("dense", &dir.join("dense.safetensors"));
        assert_close(
            &format!("{kind} sparse vs dense"),
            sparse.planes(),
            dense.planes(),
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn doctor_reports_every_backend_with_times_quickly() {
    let started = std::time::Instant::now();
    let out = atheria().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        started.elapsed().as_secs_f64() < 10.0,
        "doctor took {:?}",
        started.elapsed()
    );
    for kind in atheria::BackendKind::ALL {
        let line = text
            .lines()
            .find(|l| l.starts_with(kind.name()))
            .unwrap_or_else(|| panic!("no line for {kind}: {text}"));
        if kind.compiled_in() {
            assert!(line.contains(" ok "), "{kind} should work here: {line}");
            assert!(line.contains("ms"), "no timing: {line}");
        } else {
            assert!(
                line.contains("not compiled in") && line.contains(&format!("--features {kind}")),
                "{line}"
            );
        }
    }
    assert!(
        out.status.success(),
        "doctor failed although nothing was requested: {text}"
    );
}

#[test]
fn atomic_steps_off_gives_the_same_state_and_only_the_sparse_engine_takes_it() {
    let dir = temp_dir("sparse-atomic-off");
    let run = |atomic: &str| {
        let save = dir.join(format!("atomic-{atomic}.safetensors"));
        let out = atheria()
            .args(["run", "--quiet", "--engine", "sparse", "--grid", "64"])
            .args([
                "--steps",
                "5",
                "--tile",
                "8",
                "--atomic-steps",
                atomic,
                "--save",
            ])
            .arg(&save)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        state_file::read_state(&save, usize::MAX).unwrap()
    };
    let (on, off) = (run("on"), run("off"));
    assert_eq!(off.step, 5);
    assert_eq!(
        (off.origin, off.width(), off.height()),
        (on.origin, on.width(), on.height())
    );
    assert_eq!(off.occupied(), on.occupied());
    assert!(
        off.planes()
            .iter()
            .zip(on.planes())
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "--atomic-steps off changed the result"
    );

    let out = atheria()
        .args(["run", "--engine", "dense", "--grid", "16", "--steps", "1"])
        .args(["--atomic-steps", "off"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "atomic steps off is an option of the sparse engine");
    let out = atheria()
        .args(["run", "--engine", "sparse", "--atomic-steps", "sometimes"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "--atomic-steps");
}
