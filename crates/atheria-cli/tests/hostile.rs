//! The hostile cases of issue 16's second round, run against the binary:
//! each must end promptly with one `error:` line and a non-zero exit, never
//! a panic (exit 101), an abort (134), a kill or a hang; sizes are refused
//! before memory is spent on them. (Outputs that must not clobber or lose a
//! run are `outputs.rs`; malformed packages and state files `bad_input.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_clean_failure, atheria, golden, stderr_of, temp_dir};

/// Runs `cmd` under an address-space limit of `limit_kib` (`ulimit -v`;
/// none when `None`) and a deadline: a run that outlives it is killed and
/// the test fails as a hang.
fn run_limited(cmd: Command, limit_kib: Option<u64>, deadline: Duration) -> Output {
    let mut cmd = match limit_kib {
        None => cmd,
        Some(kib) => {
            // sh sets the limit and execs the program with its arguments.
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
                .arg(cmd.get_program())
                .args(cmd.get_args());
            for (k, v) in cmd.get_envs() {
                if let Some(v) = v {
                    sh.env(k, v);
                }
            }
            sh
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start atheria");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "hang: still running after {deadline:?}; stderr so far: {}",
                stderr_of(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The run failed cleanly: one error line with `expect`, an ordinary exit
/// status (not a panic's 101, an abort's 134 or a signal).
fn assert_refused(out: &Output, expect: &str) {
    assert_clean_failure(out, expect);
    let code = out.status.code();
    assert!(
        matches!(code, Some(1..=3)),
        "exit status {:?} (101 is a panic, 134 an abort, none a signal); stderr: {}",
        out.status,
        stderr_of(out)
    );
}

fn run_args(args: &[&str]) -> Command {
    let mut cmd = atheria();
    cmd.arg("run").args(args);
    cmd
}

#[test]
fn a_million_threads_is_refused_at_once() {
    for args in [
        &["run", "--grid", "8", "--steps", "1"][..],
        &["bench", "--configs", "dense-32", "--windows", "1"][..],
    ] {
        let mut cmd = atheria();
        cmd.args(args).args(["--threads", "1000000"]);
        let out = run_limited(cmd, None, Duration::from_secs(20));
        assert_refused(&out, "at most");
    }
}

/// A state file whose header declares `h` x `w` x 2 cells, made as a
/// sparse file of its full length (nothing on disk, a lot to read).
fn declared_state(dir: &Path, h: u64, w: u64) -> PathBuf {
    let bytes = h * w * 2 * 4;
    let header = format!(
        r#"{{"__metadata__":{{"format":"atheria-state/1","step":"0"}},"psi_imag":{{"dtype":"F32","shape":[{h},{w},2],"data_offsets":[0,{bytes}]}},"psi_real":{{"dtype":"F32","shape":[{h},{w},2],"data_offsets":[{bytes},{}]}}}}"#,
        2 * bytes
    );
    let path = dir.join(format!("declared-{h}x{w}.safetensors"));
    let mut head = (header.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(header.as_bytes());
    std::fs::write(&path, &head).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(head.len() as u64 + 2 * bytes).unwrap();
    path
}

#[test]
fn a_state_declaring_too_many_cells_is_refused_by_its_header() {
    let dir = temp_dir("hostile-declared");
    // 6000 x 6000 x 2: a 576 MB file. Under a 1.5 GB address-space limit
    // a whole read of it (as before) fails; its header alone refuses it.
    let path = declared_state(&dir, 6000, 6000);
    let mut cmd = run_args(&["--steps", "1", "--max-cells", "100", "--init"]);
    cmd.arg(&path);
    let out = run_limited(cmd, Some(1_500_000), Duration::from_secs(20));
    assert_refused(&out, "exceeds the limit of 100 cells");
}

#[test]
fn weights_that_are_not_safetensors_are_refused_by_their_first_bytes() {
    let dir = temp_dir("hostile-weights");
    let package = dir.join("zeros");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::copy(
        golden("conv3x3_d4").join("model.json"),
        package.join("model.json"),
    )
    .unwrap();
    // 1 GB of zeros (a sparse file): its first 8 bytes declare an empty header.
    let weights = std::fs::File::create(package.join("model.safetensors")).unwrap();
    weights.set_len(1 << 30).unwrap();
    let mut cmd = run_args(&["--grid", "8", "--steps", "1", "--model"]);
    cmd.arg(&package);
    let out = run_limited(cmd, Some(1_500_000), Duration::from_secs(20));
    assert_refused(&out, "not a safetensors file");
}

#[test]
fn the_default_cell_limit_follows_the_model_and_the_address_space_limit() {
    // A U-Net needs several hundred bytes per cell: under 6 GB of address
    // space the default limit refuses a 12000 x 12000 grid (144 M cells,
    // tens of GB) before allocating, instead of admitting it at 56 bytes a
    // cell and being killed.
    let mut cmd = run_args(&["--grid", "12000", "--steps", "1", "--model"]);
    cmd.arg(golden("unet_d2_h8"));
    let out = run_limited(cmd, Some(6_000_000), Duration::from_secs(30));
    assert_refused(&out, "exceeds the limit");
}

#[test]
fn an_allocation_that_fails_is_an_error_not_an_abort() {
    // The user raised the cell limit past what the address space allows:
    // 1.6 G cells x 16 bytes does not fit in 2 GB.
    let cmd = run_args(&[
        "--grid",
        "40000",
        "--steps",
        "1",
        "--max-cells",
        "10000000000",
    ]);
    let out = run_limited(cmd, Some(2_000_000), Duration::from_secs(30));
    assert_refused(&out, "cannot allocate");
}

#[test]
fn a_missing_init_file_is_named_as_missing() {
    let out = run_limited(
        run_args(&["--grid", "8", "--steps", "1", "--init", "out/no-such-state"]),
        None,
        Duration::from_secs(20),
    );
    assert_refused(&out, "no such file");
    let dir = temp_dir("hostile-init-dir");
    let mut cmd = run_args(&["--grid", "8", "--steps", "1", "--init"]);
    cmd.arg(&dir);
    let out = run_limited(cmd, None, Duration::from_secs(20));
    assert_refused(&out, "not a state file");
}

#[test]
fn negative_numbers_reach_the_range_checks() {
    let mut doctor = atheria();
    doctor.args(["doctor", "--timeout", "-1"]);
    let out = run_limited(doctor, None, Duration::from_secs(20));
    assert_refused(&out, "--timeout");
    let mut bench = atheria();
    bench.args(["bench", "--window-secs", "-1"]);
    let out = run_limited(bench, None, Duration::from_secs(20));
    assert_refused(&out, "--window-secs");
}

/// A copy of the golden conv3x3 package with model.json's safetensors entry
/// replaced by `entry`.
fn package_pointing_at(name: &str, entry: &str) -> PathBuf {
    let dir = temp_dir(&format!("hostile-files-{name}"));
    let json = std::fs::read_to_string(golden("conv3x3_d4").join("model.json")).unwrap();
    let edited = json.replace("\"model.safetensors\"", &format!("\"{entry}\""));
    assert_ne!(json, edited);
    std::fs::write(dir.join("model.json"), edited).unwrap();
    dir
}

#[test]
fn model_files_must_stay_inside_their_package() {
    for (name, entry) in [
        ("parent", "../../etc/passwd"),
        ("absolute", "/etc/passwd"),
        ("inner-parent", "sub/../../model.safetensors"),
    ] {
        let package = package_pointing_at(name, entry);
        let mut cmd = run_args(&["--grid", "8", "--steps", "1", "--model"]);
        cmd.arg(&package);
        let out = run_limited(cmd, None, Duration::from_secs(20));
        assert_refused(&out, "inside the package");
    }
}

#[test]
fn a_model_file_that_is_a_directory_or_a_fifo_is_named_as_such() {
    let package = package_pointing_at("dir", "weights");
    std::fs::create_dir_all(package.join("weights")).unwrap();
    let mut cmd = run_args(&["--grid", "8", "--steps", "1", "--model"]);
    cmd.arg(&package);
    let out = run_limited(cmd, None, Duration::from_secs(20));
    assert_refused(&out, "is a directory");

    let package = package_pointing_at("fifo", "weights");
    let fifo = package.join("weights");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let mut cmd = run_args(&["--grid", "8", "--steps", "1", "--model"]);
    cmd.arg(&package);
    // Opening a FIFO for reading would block forever: it must not be opened.
    let out = run_limited(cmd, None, Duration::from_secs(20));
    assert_refused(&out, "not a regular file");
}

#[test]
fn a_huge_gamma_keeps_the_state_normalised_instead_of_zeroing_it() {
    let dir = temp_dir("hostile-gamma");
    let save = dir.join("g.safetensors");
    let mut cmd = run_args(&["--grid", "8", "--steps", "2", "--gamma", "1e20", "--save"]);
    cmd.arg(&save);
    let out = run_limited(cmd, None, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr_of(&out));
    let state = atheria::state_file::read_state(&save, 1 << 20).unwrap();
    let (n, d) = (state.cells(), state.d_state());
    let planes = state.planes();
    for i in 0..n {
        let sq: f32 = (0..2 * d).map(|c| planes[c * n + i].powi(2)).sum();
        assert!((sq - 1.0).abs() < 1e-4, "cell {i}: |psi|^2 = {sq}");
    }
}
