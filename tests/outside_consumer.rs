//! The library as a dependency of a crate outside this workspace: it builds
//! with its default features from nothing but its path, runs, and pulls in
//! none of the command line's dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use atheria::{InitKind, Simulation};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the outside crate and this test both compute: the default law on a
/// seeded 16 x 16 field, 5 steps, the sum of every plane value.
const MAIN_RS: &str = r#"
use atheria::{InitKind, Simulation};

fn main() -> Result<(), atheria::Error> {
    let mut sim = Simulation::builder().init(InitKind::Random, 3, 16).build()?;
    for _ in 0..5 {
        sim.step()?;
    }
    let sum: f64 = sim.state()?.planes().iter().map(|&v| v as f64).sum();
    println!("step {} sum {sum:.9}", sim.step_count());
    Ok(())
}
"#;

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Where the outside crate builds: beside this workspace's build outputs,
/// kept between runs (the CI's are outside the clone), never inside them,
/// so the nested build never waits on this build's lock.
fn consumer_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target"))
        .join("outside-consumer")
}

#[test]
fn a_crate_outside_the_workspace_builds_against_the_library_and_runs() {
    let dir = std::env::temp_dir().join(format!("atheria-outside-consumer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"outside-consumer\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\natheria = {{ path = {ROOT:?} }}\n\n\
         # Not a member of any workspace above the temporary directory.\n[workspace]\n"
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), MAIN_RS).unwrap();
    // The workspace's lock file pins the same versions this repository tests
    // (cargo drops the entries the consumer does not need).
    std::fs::copy(Path::new(ROOT).join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();

    let out = cargo()
        .args(["run", "--quiet", "--offline"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", consumer_target())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the outside crate failed to build or run:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut sim = Simulation::builder()
        .init(InitKind::Random, 3, 16)
        .build()
        .unwrap();
    for _ in 0..5 {
        sim.step().unwrap();
    }
    let sum: f64 = sim
        .state()
        .unwrap()
        .planes()
        .iter()
        .map(|&v| v as f64)
        .sum();
    let printed = stdout.trim();
    let (step, value) = printed
        .strip_prefix("step ")
        .and_then(|r| r.split_once(" sum "))
        .unwrap_or_else(|| panic!("unexpected output: {printed}"));
    assert_eq!(step, "5");
    let value: f64 = value.parse().unwrap();
    // Same code, same seeds; another build (profile, flags) may round the
    // float32 kernels differently, no more.
    assert!(
        (value - sum).abs() <= 1e-4 * sum.abs().max(1.0),
        "outside crate: {value}, here: {sum}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_library_does_not_depend_on_the_command_line_stack() {
    let out = cargo()
        .args([
            "tree",
            "--offline",
            "-p",
            "atheria",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(ROOT)
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.lines().any(|l| l.starts_with("atheria v")), "{tree}");
    for name in ["clap", "indicatif", "ctrlc", "tracing-subscriber", "anyhow"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{name} v"))),
            "the library depends on {name}:\n{tree}"
        );
    }
}
