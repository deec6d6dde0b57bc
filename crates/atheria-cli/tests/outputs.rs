//! Outputs that never clobber a path or lose a run (issue 16's defects 1,
//! 2, 6, 7 and 9 as `atheria run` meets them): output paths are checked before
//! the first step, a device is written through rather than replaced, and a
//! failed step leaves the run so far in `--save`.

mod common;

use std::os::unix::fs::FileTypeExt;

use common::*;

#[test]
fn a_save_path_in_a_missing_directory_fails_before_the_first_step() {
    let dir = temp_dir("save-missing-dir");
    let target = dir.join("nonexist").join("final.safetensors");
    let out = atheria()
        .args(["run", "--grid", "256", "--steps", "1000", "--save"])
        .arg(&target)
        .output()
        .unwrap();
    assert_clean_failure(&out, "does not exist");
    let err = stderr_of(&out);
    assert!(
        err.contains("final.safetensors") && !err.contains(".tmp"),
        "{err}"
    );
    assert!(
        !err.contains("first step"),
        "it stepped before failing: {err}"
    );
}

#[test]
fn a_device_given_as_save_path_is_written_through_not_replaced() {
    let dir = temp_dir("save-device");
    let node = dir.join("mynull");
    let made = std::process::Command::new("mknod")
        .args(["-m666"])
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(made, "mknod needs root, as the test command runs");
    let out = atheria()
        .args(["run", "--grid", "16", "--steps", "3", "--save"])
        .arg(&node)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let kind = std::fs::metadata(&node).unwrap().file_type();
    assert!(kind.is_char_device(), "the device became {kind:?}");
}

#[test]
fn a_failed_step_leaves_the_run_so_far_in_save() {
    // The sparse lattice grows past --max-cells: the step that would exceed
    // it fails, and --save holds the state after the step before it.
    let dir = temp_dir("save-after-failure");
    let save = dir.join("s.safetensors");
    let out = atheria()
        .args([
            "run",
            "--engine",
            "sparse",
            "--grid",
            "32",
            "--steps",
            "200",
            "--max-cells",
            "1100",
            "--save",
        ])
        .arg(&save)
        .output()
        .unwrap();
    assert_clean_failure(&out, "--max-cells N sets the limit");
    let err = stderr_of(&out);
    let failed: u64 = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .and_then(|l| l.split("step ").nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step number in: {err}"));
    let saved = atheria::state_file::read_state(&save, 1 << 20).expect("a saved state");
    assert_eq!(saved.step, failed - 1, "{err}");
    assert!(saved.occupied().iter().filter(|&&o| o != 0).count() <= 1100);
    assert!(err.contains("before the failed step"), "{err}");
}

#[test]
fn a_huge_timeout_is_an_error_not_a_panic() {
    for cmd in [
        vec!["run", "--grid", "8", "--steps", "1"],
        vec!["doctor", "--backends", "candle"],
    ] {
        let out = atheria()
            .args(&cmd)
            .args(["--timeout", "1e300"])
            .output()
            .unwrap();
        assert_clean_failure(&out, "--timeout 1e300 is too long");
    }
}

#[test]
fn a_closed_stdout_neither_panics_nor_loses_the_run() {
    let dir = temp_dir("closed-stdout");
    let save = dir.join("s.safetensors");
    for args in [
        vec!["doctor".to_string(), "--backends".into(), "candle".into()],
        vec![
            "run".into(),
            "--grid".into(),
            "16".into(),
            "--steps".into(),
            "3".into(),
            "--save".into(),
            save.display().to_string(),
        ],
    ] {
        let mut child = atheria()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away at once
        let out = child.wait_with_output().unwrap();
        let err = stderr_of(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
    assert_eq!(
        atheria::state_file::read_state(&save, 1 << 20)
            .unwrap()
            .step,
        3
    );
}

/// A 64 KiB tmpfs mounted at a fresh directory for the life of the value
/// (mounting needs root, as the test command runs on CI's machines).
struct FullDisk(std::path::PathBuf);

impl FullDisk {
    fn mount(name: &str) -> Self {
        let dir = temp_dir(name);
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "cannot mount a small tmpfs (the test needs root) at {}",
            dir.display()
        );
        FullDisk(dir)
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_save_by_name_and_leaves_no_partial_file() {
    let disk = FullDisk::mount("save-full-disk");
    let target = disk.0.join("final.safetensors");
    // 64 x 64 cells x D 2 x 8 bytes: 64 KiB of state, more than the disk holds.
    let out = atheria()
        .args(["run", "--grid", "64", "--steps", "2", "--save"])
        .arg(&target)
        .output()
        .unwrap();
    assert_clean_failure(&out, "final.safetensors");
    let err = stderr_of(&out);
    assert!(
        err.contains("No space left") && !err.contains(".tmp"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&disk.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "partial files left on the full disk: {left:?}"
    );
}

#[test]
fn a_checkpoint_on_a_full_disk_warns_and_the_run_still_saves() {
    let disk = FullDisk::mount("checkpoint-full-disk");
    let save = temp_dir("checkpoint-full-disk-save").join("final.safetensors");
    let out = atheria()
        .args([
            "run",
            "--grid",
            "64",
            "--steps",
            "3",
            "--checkpoint-every",
            "1",
        ])
        .arg(disk.0.join("ck.safetensors"))
        .arg("--save")
        .arg(&save)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("ck.safetensors") && err.contains("No space left"),
        "{err}"
    );
    let saved = atheria::state_file::read_state(&save, 1 << 20).expect("the final state");
    assert_eq!(saved.step, 3);
    let left: Vec<_> = std::fs::read_dir(&disk.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "partial checkpoints left on the full disk: {left:?}"
    );
}
