//! `atheria run --viz`, `--tool`, `--metrics` and `--sheet`, as a user runs
//! them: every picture and readout line is written, tools land before the
//! step they name (the same state as the library's `Simulation::apply`),
//! and bad tool strings and visualization names are one clear line.

mod common;

use std::path::Path;

use atheria::instruments::parse::parse_tool;
use atheria::{InitKind, Simulation, Viz};
use common::*;

fn run(args: &[&str], dir: &Path) -> std::process::Output {
    atheria()
        .arg("run")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run atheria")
}

#[test]
fn viz_all_writes_every_picture_and_metrics_a_line_per_k_steps() {
    let dir = temp_dir("viz-all");
    let out = run(
        &[
            "--grid",
            "32",
            "--steps",
            "6",
            "--every",
            "3",
            "--viz",
            "all",
            "--png",
            "v",
            "--metrics",
            "m.jsonl",
            "--sheet",
        ],
        &dir,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for step in ["000003", "000006"] {
        let mut names: Vec<String> = Viz::ALL.iter().map(|v| v.name()).collect();
        names.push("sheet".into());
        for name in names {
            let path = dir.join("v").join(format!("{name}_{step}.png"));
            let bytes =
                std::fs::read(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
            assert_eq!(&bytes[1..4], b"PNG", "{name} is not a PNG");
        }
    }
    // Nothing else, and no temporary file left behind.
    assert_eq!(
        std::fs::read_dir(dir.join("v")).unwrap().count(),
        2 * (Viz::ALL.len() + 1)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("m.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(
        steps,
        [0, 3, 6],
        "one line at the start and one per 3 steps"
    );
    for key in [
        "norm",
        "mean_density",
        "max_density",
        "matter_cells",
        "energy",
        "fidelity",
        "entropy",
        "clustering",
        "symmetry",
        "epoch",
    ] {
        assert!(
            lines.iter().all(|l| l[key].is_number()),
            "{key} missing: {lines:?}"
        );
    }
    assert_eq!(lines[0]["fidelity"].as_f64().unwrap().round(), 1.0);
    assert!(lines[2]["energy"].as_f64().unwrap() > 0.0);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("readouts at step 6: norm"), "{summary}");
    assert!(summary.contains("epoch"), "{summary}");
}

#[test]
fn tools_land_before_the_step_they_name_as_through_the_library() {
    let dir = temp_dir("tools");
    let tools = [
        "collapse:x=5,y=6,intensity=0.8,seed=3",
        "vortex:x=16,y=16,radius=5,strength=2@step=3",
        "phase_vortex:x=10,y=20,charge=-1,core=3@step=4",
        "click_out:chance=1,seed=5@step=2",
    ];
    let mut args = vec![
        "--grid",
        "32",
        "--steps",
        "5",
        "--init",
        "random",
        "--seed",
        "4",
        "--save",
        "s.safetensors",
    ];
    for t in &tools {
        args.extend(["--tool", t]);
    }
    let out = run(&args, &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("applied vortex before step 3"), "{err}");

    // The same run through the library.
    let mut sim = Simulation::builder()
        .init(InitKind::Random, 4, 32)
        .build()
        .unwrap();
    let parsed: Vec<_> = tools
        .iter()
        .map(|t| parse_tool(t, 1 << 20).unwrap())
        .collect();
    for next in 1..=5 {
        for t in parsed.iter().filter(|t| t.step.unwrap_or(1) == next) {
            sim.apply(&t.tool).unwrap();
        }
        sim.step().unwrap();
    }
    let saved = atheria::state_file::read_state(&dir.join("s.safetensors"), 1 << 20).unwrap();
    assert_eq!(
        saved,
        sim.state().unwrap(),
        "the CLI's tools differ from the library's"
    );

    // And the tools did something: without them the state differs.
    let mut plain = Simulation::builder()
        .init(InitKind::Random, 4, 32)
        .build()
        .unwrap();
    for _ in 0..5 {
        plain.step().unwrap();
    }
    assert_ne!(saved.planes(), plain.state().unwrap().planes());
}

#[test]
fn bad_tools_and_visualizations_are_one_clear_line() {
    let dir = temp_dir("bad-tools");
    for (args, expect) in [
        (vec!["--tool", "swirl:x=1,y=1"], "unknown tool `swirl`"),
        (vec!["--tool", "vortex:x=1"], "`y` is required"),
        (
            vec!["--tool", "vortex:x=1,y=2,rad=3"],
            "vortex has no argument `rad`",
        ),
        (vec!["--tool", "vortex:x=1,y=2,x=3"], "`x` is given twice"),
        (
            vec!["--tool", "collapse:x=1,y=2,intensity=lots"],
            "intensity = `lots` is not a number",
        ),
        (vec!["--tool", "vortex:x=1,y=2@step=0"], "@step=0"),
        (
            vec!["--tool", "vortex:x=1,y=2,radius=0"],
            "radius 0 must be between 1 and 4096",
        ),
        (
            vec!["--tool", "vortex:x=40,y=2"],
            "x 40 is outside the grid",
        ),
        (
            vec!["--tool", "collapse:x=1,y=2,intensity=1.5"],
            "intensity 1.5 must be between 0 and 1",
        ),
        (
            vec!["--tool", "click_out:chance=2"],
            "chance 2 must be between 0 and 1",
        ),
        (vec!["--tool", "phase_vortex:x=1,y=2,charge=0"], "charge 0"),
        (
            vec!["--tool", "inject_energy:mode=big_bang"],
            "mode = `big_bang`",
        ),
        (vec!["--viz", "density,fog"], "unknown visualization `fog`"),
        (vec!["--viz", "phase:x"], "phase:x"),
        (
            vec!["--viz", "phase:9", "--png", "p"],
            "--viz phase:9: model `default-schroedinger-d4` has channels 0..4",
        ),
        (
            vec!["--metrics", "/proc/m.jsonl"],
            "cannot create --metrics file /proc/m.jsonl",
        ),
    ] {
        let mut all = vec!["--grid", "16", "--steps", "2"];
        all.extend(&args);
        assert_clean_failure(&run(&all, &dir), expect);
    }
}

#[test]
fn the_sparse_engine_takes_tools_anywhere_and_draws_every_picture() {
    let dir = temp_dir("sparse-tools");
    let out = run(
        &[
            "--engine",
            "sparse",
            "--grid",
            "16",
            "--steps",
            "2",
            "--every",
            "2",
            "--viz",
            "all",
            "--png",
            "v",
            "--tool",
            "vortex:x=200,y=-150,radius=3",
            "--save",
            "s.safetensors",
        ],
        &dir,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let saved = atheria::state_file::read_state(&dir.join("s.safetensors"), 1 << 24).unwrap();
    // The lattice now spans the disc at the origin and the vortex beside it.
    assert!(
        saved.origin.1 <= -153 && saved.width() >= 200,
        "{} x {} at {:?}",
        saved.width(),
        saved.height(),
        saved.origin
    );
    assert_eq!(
        std::fs::read_dir(dir.join("v")).unwrap().count(),
        Viz::ALL.len()
    );
}
