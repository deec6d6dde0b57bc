//! `atheria run --distributed` under `mpirun` (Open MPI, feature `mpi`): the
//! lattice across 1 to 4 ranks equals the single-process sparse engine bit
//! for bit (candle; ONNX Runtime too with feature `onnx`); a NaN on one rank fails the step on every rank and keeps the
//! state; a killed rank stops the run promptly and leaves a readable
//! checkpoint; a checkpoint written by 3 ranks resumes on 2; the halo
//! follows the boundary, not the lattice; pictures and readouts drawn on
//! rank 0 from the gathered lattice equal one process's.
//!
//! Every mpirun runs under `timeout`, one at a time (a lock: 4 ranks per run
//! on a 2-core machine already oversubscribe it). Open MPI refuses root
//! unless told; the tests tell it, for CI containers.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use atheria::state_file;
use common::*;
use sparse_grid::rng::Rng;
use sparse_grid::DenseState;

/// One mpirun at a time.
static MPI: Mutex<()> = Mutex::new(());

/// `mpirun -n ranks atheria <args>` under `timeout 120`.
fn mpirun(ranks: usize) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "120", "mpirun", "--oversubscribe", "-n"])
        .arg(ranks.to_string())
        .arg(env!("CARGO_BIN_EXE_atheria"))
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Containers often forbid the cross-process memory reads of Open
        // MPI's single-copy shared memory; copying through a buffer works
        // everywhere.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("NO_COLOR", "1");
    cmd
}

fn checked(out: Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}): {err}",
        out.status
    );
    err + &String::from_utf8_lossy(&out.stdout)
}

/// The state after running `args` in one process (`atheria run --engine sparse`).
fn single(args: &[&str], save: &Path) -> DenseState {
    let out = atheria()
        .args(["run", "--engine", "sparse", "-q"])
        .args(args)
        .arg("--save")
        .arg(save)
        .output()
        .unwrap();
    checked(out, "the single-process run");
    state_file::read_state(save, usize::MAX).unwrap()
}

/// The state after running `args` on `ranks` ranks, and the run's log.
fn distributed(ranks: usize, args: &[&str], save: &Path) -> (DenseState, String) {
    let out = mpirun(ranks)
        .args(["run", "--engine", "sparse", "--distributed"])
        .args(args)
        .arg("--save")
        .arg(save)
        .output()
        .unwrap();
    let log = checked(out, &format!("the run on {ranks} ranks"));
    (state_file::read_state(save, usize::MAX).unwrap(), log)
}

/// Bit-for-bit equality of two states: box, step, occupancy, every value.
fn assert_same(a: &DenseState, b: &DenseState, what: &str) {
    assert_eq!(
        (a.origin, a.width(), a.height(), a.step),
        (b.origin, b.width(), b.height(), b.step),
        "{what}: box or step"
    );
    assert_eq!(a.occupied(), b.occupied(), "{what}: occupancy");
    let differ = a
        .planes()
        .iter()
        .zip(b.planes())
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{what}: {differ} values differ");
}

/// `cells` cells of matter at seeded places in a `side` x `side` box from
/// (-side/2, -side/2), D = 4 (the default law's), written to `path`.
fn scattered(path: &Path, side: usize, cells: usize, seed: u64) -> PathBuf {
    let mut state = DenseState::zeros(side, side, 4).unwrap();
    state.origin = (-(side as i32) / 2, -(side as i32) / 2);
    let n = state.cells();
    let mut rng = Rng::new(seed);
    let (planes, mask) = state.split_mut();
    for _ in 0..cells {
        let i = rng.below(n as u64) as usize;
        mask[i] = 1;
        for c in 0..8 {
            planes[c * n + i] = rng.normal();
        }
    }
    state_file::write_state(&state, path).unwrap();
    path.to_path_buf()
}

#[test]
fn one_to_four_ranks_equal_the_single_process_engine_bit_for_bit() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("mpi-equal");
    let spread = scattered(&dir.join("scattered.safetensors"), 400, 120, 5);
    let conv = golden("conv3x3_d4");
    let cases: Vec<(&str, Vec<String>)> = vec![
        // A disc across the rank boundaries, growing: rebalances move tiles.
        (
            "disc",
            ["--grid", "96", "--seed", "3", "--tile", "8"]
                .map(String::from)
                .to_vec(),
        ),
        // Scattered cells far apart: many tiles, few neighbours.
        (
            "scattered",
            vec!["--init".into(), spread.display().to_string()],
        ),
        // An exported conv3x3 package (python/export.py) on a seeded disc.
        (
            "conv3x3",
            vec![
                "--model".into(),
                conv.display().to_string(),
                "--grid".into(),
                "64".into(),
            ],
        ),
    ];
    // The same package on ONNX Runtime, when it is compiled in (CI: all).
    #[cfg(feature = "onnx")]
    let cases = {
        let mut cases = cases;
        let mut onnx = cases[2].1.clone();
        onnx.extend(["--backend".into(), "onnx".into()]);
        cases.push(("conv3x3-onnx", onnx));
        cases
    };
    let mut rebalanced = false;
    for (name, args) in &cases {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--steps", "20"]);
        let want = single(&args, &dir.join(format!("{name}-single.safetensors")));
        for ranks in 1..=4 {
            let save = dir.join(format!("{name}-{ranks}.safetensors"));
            let (got, log) = distributed(ranks, &args, &save);
            assert_same(&got, &want, &format!("{name} on {ranks} ranks"));
            if ranks > 1 {
                assert!(
                    !log.contains("halo 0 bytes/step"),
                    "{name} on {ranks} ranks exchanged no halo: {log}"
                );
            }
            rebalanced |= log.contains("rebalancing: the largest rank holds");
        }
    }
    assert!(
        rebalanced,
        "no run rebalanced: the growth case lost its point"
    );
}

#[test]
fn the_issue_run_of_256_cells_on_2_ranks_equals_one_process() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("mpi-256");
    let args = ["--grid", "256", "--steps", "50"];
    let want = single(&args, &dir.join("single.safetensors"));
    let (got, _) = distributed(2, &args, &dir.join("out.safetensors"));
    assert_same(&got, &want, "grid 256, 50 steps, 2 ranks");
}

#[test]
fn a_nan_on_one_rank_fails_the_step_on_every_rank_and_keeps_the_state() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("mpi-nan");
    // Two blobs; the conv3x3 law overflows to infinity next to the block of
    // 3e38 in the second, whose tiles rank 1 owns (the later Morton range).
    let mut state = DenseState::zeros(96, 96, 4).unwrap();
    let n = state.cells();
    let mut rng = Rng::new(1);
    let (planes, mask) = state.split_mut();
    for (cy, cx) in [(8usize, 8usize), (82, 82)] {
        for y in cy - 6..cy + 6 {
            for x in cx - 6..cx + 6 {
                let i = y * 96 + x;
                mask[i] = 1;
                let huge = (83..86).contains(&y) && (83..86).contains(&x);
                for c in 0..8 {
                    planes[c * n + i] = if huge { 3e38 } else { rng.normal() };
                }
            }
        }
    }
    let input = dir.join("nan.safetensors");
    state_file::write_state(&state, &input).unwrap();
    let save = dir.join("after.safetensors");
    let started = Instant::now();
    let out = mpirun(2)
        .args(["run", "--engine", "sparse", "--distributed", "--steps", "5"])
        .arg("--model")
        .arg(golden("conv3x3_d4"))
        .arg("--init")
        .arg(&input)
        .arg("--save")
        .arg(&save)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run succeeded: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(!err.contains("panicked"), "{err}");
    // Rank 1's own error, and rank 0's report of it.
    assert!(
        err.contains("step 1 failed: the model returned a non-finite delta"),
        "{err}"
    );
    assert!(
        err.contains("step 1 failed: rank 1 failed: the model returned a non-finite delta"),
        "{err}"
    );
    // Saved after the failed step from every rank's tiles: the input, untouched.
    let kept = state_file::read_state(&save, usize::MAX).unwrap();
    let mut want = state;
    want.step = 0;
    let from = |s: &DenseState| s.origin;
    assert_eq!(from(&kept), (2, 2), "the box of the input's matter");
    let cut = |s: &DenseState, x: usize, y: usize| {
        let i = (y - 2) * kept.width() + (x - 2);
        let j = y * 96 + x;
        let (n1, n2) = (s.cells(), want.cells());
        (0..8).all(|c| s.planes()[c * n1 + i].to_bits() == want.planes()[c * n2 + j].to_bits())
            && s.occupied()[i] == want.occupied()[j]
    };
    for y in 2..88 {
        for x in 2..88 {
            assert!(
                cut(&kept, x, y),
                "cell ({x}, {y}) changed after a failed step"
            );
        }
    }
    assert_eq!(kept.step, 0);
}

#[test]
fn a_killed_rank_stops_the_run_promptly_and_the_checkpoint_loads() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("mpi-kill");
    let ckpt = dir.join("ckpt.safetensors");
    let mut child = mpirun(3)
        .args([
            "run",
            "--engine",
            "sparse",
            "--distributed",
            "--grid",
            "96",
            "--steps",
            "1000000",
            "--checkpoint-every",
            "3",
        ])
        .arg(&ckpt)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ckpt.exists() {
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The ranks: atheria processes below this mpirun (timeout -> mpirun -> ranks).
    let ranks = descendants(child.id())
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "atheria")
        })
        .collect::<Vec<_>>();
    assert_eq!(ranks.len(), 3, "ranks found: {ranks:?}");
    let victim = ranks[1];
    let killed = Instant::now();
    assert!(Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let took = killed.elapsed();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    eprintln!("mpirun ended {took:?} after the kill, {status}");
    assert!(!status.success(), "the run survived a killed rank: {err}");
    assert!(
        took < Duration::from_secs(30),
        "the others took {took:?} to stop: {err}"
    );
    // timeout's 124 would mean mpirun hung until the limit.
    assert_ne!(status.code(), Some(124), "mpirun hung: {err}");
    let state = state_file::read_state(&ckpt, usize::MAX).unwrap();
    assert!(
        state.step > 0 && state.step.is_multiple_of(3),
        "step {}",
        state.step
    );
    for p in ranks {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "rank {p} still runs"
        );
    }
}

/// Every process below `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // pid (comm) state ppid ...: comm may hold spaces, so after ')'.
            let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, pp)| pp == parent)
                .map(|&(p, _)| p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

#[test]
fn a_checkpoint_of_3_ranks_resumes_on_2_as_an_uninterrupted_run() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("mpi-resume");
    let want = single(
        &["--grid", "96", "--seed", "4", "--steps", "20"],
        &dir.join("single.safetensors"),
    );
    let half = dir.join("half.safetensors");
    distributed(3, &["--grid", "96", "--seed", "4", "--steps", "10"], &half);
    let init = half.display().to_string();
    let (got, _) = distributed(
        2,
        &["--init", &init, "--steps", "10"],
        &dir.join("end.safetensors"),
    );
    assert_same(&got, &want, "10 steps on 3 ranks, then 10 on 2");
}

#[test]
fn halo_bytes_follow_the_boundary_not_the_lattice() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("mpi-halo");
    let halo = |grid: &str| -> (f64, usize) {
        let (state, log) = distributed(
            2,
            &["--grid", grid, "--steps", "2"],
            &dir.join(format!("{grid}.safetensors")),
        );
        let line = log
            .lines()
            .find(|l| l.contains("bytes/step over all ranks"))
            .unwrap_or_else(|| panic!("no halo figure: {log}"));
        let bytes: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let cells = state.occupied().iter().filter(|&&o| o != 0).count();
        (bytes, cells)
    };
    let (small, small_cells) = halo("64");
    let (large, large_cells) = halo("256");
    let cells = large_cells as f64 / small_cells as f64;
    let bytes = large / small;
    // A disc 4 times wider: 16 times the cells, 4 times the boundary.
    assert!(cells > 12.0, "cells grew {cells:.1}x");
    assert!(
        bytes > 2.0 && bytes < 6.0,
        "halo grew {bytes:.1}x ({small} -> {large} bytes/step) while the cells grew {cells:.1}x"
    );
}

#[test]
fn a_global_law_is_refused_on_every_rank_with_the_reason() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let out = mpirun(2)
        .args(["run", "--engine", "sparse", "--distributed", "--steps", "2"])
        .arg("--model")
        .arg(golden("unet_d2_h8"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a U-Net ran across ranks: {err}");
    let refusals = err
        .lines()
        .filter(|l| {
            l.starts_with("error: model `unet_d2_h8` is global")
                && l.contains("cannot be split across MPI ranks")
        })
        .count();
    // Each rank refuses before any exchange, and they wait for each other
    // before exiting (mpirun ends the job at the first rank's exit), so
    // both refusals reach stderr, and no other error.
    assert_eq!(refusals, 2, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        refusals,
        "{err}"
    );
    assert_ne!(out.status.code(), Some(124), "mpirun timed out: {err}");
}

#[test]
fn atomic_steps_off_is_refused_on_every_rank() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let out = mpirun(2)
        .args(["run", "--engine", "sparse", "--distributed", "--steps", "2"])
        .args(["--grid", "32", "--atomic-steps", "off"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a rolling step ran across ranks: {err}"
    );
    let refusals = err
        .lines()
        .filter(|l| l.starts_with("error: atomic steps off cannot be used with a distributed run"))
        .count();
    assert_eq!(refusals, 2, "{err}");
    assert_ne!(out.status.code(), Some(124), "mpirun timed out: {err}");
}

#[test]
fn pictures_and_readouts_of_3_ranks_equal_one_process() {
    let _one = MPI.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("mpi-observe");
    // Every visualization (the delta's too, from the summaries the ranks
    // sum on rank 0) at steps 3 and 6, and readouts at 0, 3 and 6.
    let args = |name: &str| {
        vec![
            "--grid".to_string(),
            "48".into(),
            "--steps".into(),
            "6".into(),
            "--every".into(),
            "3".into(),
            "--viz".into(),
            "all".into(),
            "--png".into(),
            dir.join(name).display().to_string(),
            "--metrics".into(),
            dir.join(format!("{name}.jsonl")).display().to_string(),
        ]
    };
    let out = atheria()
        .args(["run", "--engine", "sparse", "-q"])
        .args(args("single"))
        .output()
        .unwrap();
    checked(out, "the single-process run");
    let out = mpirun(3)
        .args(["run", "--engine", "sparse", "--distributed", "-q"])
        .args(args("ranks"))
        .output()
        .unwrap();
    checked(out, "the run on 3 ranks");

    let mut pictures: Vec<_> = std::fs::read_dir(dir.join("single"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    pictures.sort();
    assert_eq!(pictures.len(), 2 * 14, "14 pictures at steps 3 and 6");
    for name in &pictures {
        let want = std::fs::read(dir.join("single").join(name)).unwrap();
        let got = std::fs::read(dir.join("ranks").join(name))
            .unwrap_or_else(|e| panic!("{name:?} from the ranks: {e}"));
        assert!(want == got, "{name:?} differs from one process's");
    }

    // The readouts: the same numbers, up to the order in which the threads
    // of one process and of rank 0 sum them (1e-6 relative; measured 1e-9).
    let lines = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (want, got) = (lines("single.jsonl"), lines("ranks.jsonl"));
    assert_eq!(want.len(), 3, "readouts at steps 0, 3 and 6");
    assert_eq!(got.len(), want.len());
    for (w, g) in want.iter().zip(&got) {
        for (key, wv) in w.as_object().unwrap() {
            let gv = &g[key];
            match (wv.as_f64(), gv.as_f64()) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "step {}: {key} {a} vs {b}",
                    w["step"]
                ),
                _ => assert_eq!(wv, gv, "step {}: {key}", w["step"]),
            }
        }
    }
    let fidelity = |v: &serde_json::Value| v["fidelity"].as_f64().unwrap();
    assert!(fidelity(&got[0]) > 0.999 && fidelity(&got[2]) < 0.9);
}
