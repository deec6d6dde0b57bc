//! What a bench prints: the tables, the targets (met or missed), and the
//! machine they were measured on.

use crate::cli::out;
use serde_json::{json, Value};

use super::config::{DENSE_REFERENCE, SPARSE_EXTENT};
use super::timing::{median, spread};

/// The machine: CPU model, cores, and the threads the run used.
pub fn machine(threads: usize) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    json!({"cpu": cpu, "cores": cores, "threads": threads, "os": std::env::consts::OS, "arch": std::env::consts::ARCH})
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Adds to each sparse row its comparison with the dense engine on the
/// same backend over the same extent (the `dense-512` row).
pub fn compare_sparse(rows: &mut [Value]) {
    let dense: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r["config"] == DENSE_REFERENCE && r["engine"] == "dense")
        .filter_map(|r| Some((s(&r["backend"]).to_string(), f(&r["steps_per_s_median"])?)))
        .collect();
    for r in rows.iter_mut().filter(|r| r["engine"] == "sparse") {
        // Prefer the dense engine timed in windows interleaved with this
        // configuration's: the same moments of a shared machine.
        let side = f(&r["sparse"]["dense_side_by_side"]["steps_per_s_median"]);
        let Some(dense_rate) = side.or_else(|| {
            dense
                .iter()
                .find(|(b, _)| b == s(&r["backend"]))
                .map(|&(_, x)| x)
        }) else {
            continue;
        };
        let (Some(rate), Some(ns)) = (
            f(&r["steps_per_s_median"]),
            f(&r["sparse"]["ns_per_active_tile_cell"]),
        ) else {
            continue;
        };
        let dense_ns = 1e9 / (dense_rate * (SPARSE_EXTENT * SPARSE_EXTENT) as f64);
        let paired = &r["sparse"]["dense_side_by_side"];
        let (per_cell, speedup) = match (
            f(&paired["per_cell_vs_dense_median"]),
            f(&paired["speedup_median"]),
        ) {
            (Some(p), Some(q)) => (p, q),
            _ => (ns / dense_ns, rate / dense_rate),
        };
        r["sparse"]["dense_ns_per_cell"] = json!(dense_ns);
        r["sparse"]["dense_measured"] = json!(if side.is_some() {
            "in windows interleaved with this configuration's; ratios are medians of window pairs"
        } else {
            "the dense-512 row"
        });
        r["sparse"]["per_cell_vs_dense"] = json!(per_cell);
        r["sparse"]["speedup_vs_dense_512"] = json!(speedup);
    }
}

fn target(name: String, value: f64, goal: &str, met: bool) -> Value {
    json!({"name": name, "value": value, "target": goal, "met": met})
}

/// Every target of the issue that this run measured.
pub fn targets(rows: &[Value], startup: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    // Per backend, the median over its dense conv configurations of each
    // one's median window-by-window ratio; the best backend has the highest.
    let mut per_backend: Vec<(String, f64)> = Vec::new();
    for r in rows.iter().filter(|r| r["engine"] == "dense") {
        let b = s(&r["backend"]).to_string();
        if per_backend.iter().any(|(x, _)| *x == b) {
            continue;
        }
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|o| o["engine"] == "dense" && o["backend"] == r["backend"])
            .filter_map(|o| f(&o["conv"]["vs_sgemm_median"]))
            .collect();
        if !ratios.is_empty() {
            per_backend.push((b, median(&ratios)));
        }
    }
    if let Some((b, x)) = per_backend.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        out.push(target(
            format!("conv GFLOP/s vs sgemm, best backend ({b}, median of dense configs)"),
            *x,
            ">= 0.70",
            *x >= 0.70,
        ));
    }
    for p in startup {
        let Some(ms) = f(&p["wall_to_first_step_end_ms"]) else {
            continue;
        };
        let limit = if p["backend"] == "tch" { 3.0 } else { 1.0 };
        out.push(target(
            format!(
                "start-up to end of first step, {} (fresh process)",
                s(&p["backend"])
            ),
            ms / 1e3,
            &format!("< {limit} s"),
            ms / 1e3 < limit,
        ));
    }
    for r in rows
        .iter()
        .filter(|r| r["config"] == "dense-128" && r["engine"] == "dense")
    {
        if let Some(x) = f(&r["readouts"]["share_of_step"]) {
            out.push(target(
                format!(
                    "every readout after every step, share of a step, dense-128 D=64 {}",
                    s(&r["backend"])
                ),
                x,
                "< 0.10",
                x < 0.10,
            ));
        }
    }
    // Round two (issue 17): the best backend against PyTorch in the same run.
    for (config, goal) in [("dense-128", 3.0), ("unet-128", 2.5)] {
        let torch = rows
            .iter()
            .find(|r| r["config"] == config && r["engine"] == "pytorch")
            .and_then(|r| f(&r["steps_per_s_median"]));
        let best = rows
            .iter()
            .filter(|r| r["config"] == config && r["engine"] == "dense")
            .filter_map(|r| Some((s(&r["backend"]).to_string(), f(&r["steps_per_s_median"])?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(torch), Some((backend, rate))) = (torch, best) {
            let x = rate / torch;
            out.push(target(
                format!("{config} steps/s vs PyTorch, best backend ({backend})"),
                x,
                &format!(">= {goal:.1}x"),
                x >= goal,
            ));
        }
    }
    for r in rows.iter().filter(|r| r["engine"] == "sparse") {
        if let Some(x) = f(&r["sparse"]["per_cell_vs_dense"]) {
            out.push(target(
                format!(
                    "sparse time per active-tile cell vs dense per cell, {} {}",
                    s(&r["config"]),
                    s(&r["backend"])
                ),
                x,
                "<= 1.2",
                x <= 1.2,
            ));
        }
    }
    out
}

/// The main table, the sparse table, the fresh-process start-up and the
/// conv-vs-sgemm line.
pub fn print_all(rows: &[Value], startup: &[Value], targets: &[Value]) {
    out!();
    out!(
        "{:<17} {:<8} {:>9} {:>15} {:>8} {:>8} {:>9} {:>7}",
        "config",
        "backend",
        "steps/s",
        "spread",
        "vs torch",
        "forward",
        "start-up",
        "sgemm"
    );
    for r in rows {
        let (cfg, backend) = (s(&r["config"]), r["backend"].as_str().unwrap_or("pytorch"));
        if let Some(e) = r["error"].as_str().or(r["skipped"].as_str()) {
            out!("{cfg:<17} {backend:<8} skipped: {e}");
            continue;
        }
        let rate = f(&r["steps_per_s_median"]).unwrap_or(f64::NAN);
        let windows: Vec<f64> = r["steps_per_s_windows"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let (lo, hi) = spread(&windows);
        let torch = rows
            .iter()
            .find(|o| o["config"] == r["config"] && o["engine"] == "pytorch")
            .and_then(|o| f(&o["steps_per_s_median"]));
        let ratio = match (torch, r["engine"] == "pytorch") {
            (Some(t), false) => format!("{:.2}x", rate / t),
            _ => "-".into(),
        };
        let share = f(&r["forward_share"]).map_or("-".into(), |x| format!("{:.0}%", x * 100.0));
        let startup = f(&r["startup_total_ms"])
            .or_else(|| {
                r["startup_s"]
                    .as_object()
                    .map(|m| m.values().filter_map(Value::as_f64).sum::<f64>() * 1e3)
            })
            .map_or("-".into(), |ms| format!("{ms:.0} ms"));
        let sgemm = f(&r["sgemm_gflops_median"]).map_or("-".into(), |g| format!("{g:.0}"));
        out!(
            "{cfg:<17} {backend:<8} {rate:>9.2} {:>15} {ratio:>8} {share:>8} {startup:>9} {sgemm:>7}",
            format!("{lo:.2}-{hi:.2}")
        );
    }
    out!("(sgemm: GFLOP/s of a 1024^3 sgemm after each window, median: the machine's speed at the time)");
    print_sparse(rows);
    print_startup(startup);
    let conv: Vec<&Value> = rows.iter().filter(|r| r["conv"].is_object()).collect();
    if !conv.is_empty() {
        out!("\nconv3x3 D=64 forward vs sgemm: each timed window is followed by a 1024^3 sgemm through candle's gemm kernels");
        out!("(conv GFLOP/s counts a direct convolution's 2 x 9 x ci x co flops per pixel; candle's Winograd path multiplies 2.25x less, so it can pass 100%)");
        out!(
            "{:<17} {:<7} {:>12} {:>13} {:>14}",
            "config",
            "backend",
            "conv GFLOP/s",
            "sgemm GFLOP/s",
            "conv/sgemm"
        );
        for r in conv {
            let c = &r["conv"];
            let med = |k: &str| {
                let v: Vec<f64> = c[k]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.1}", median(&v))
                }
            };
            out!(
                "{:<17} {:<7} {:>12} {:>13} {:>14}",
                s(&r["config"]),
                s(&r["backend"]),
                med("gflops_windows"),
                med("sgemm_gflops_windows"),
                f(&c["vs_sgemm_median"]).map_or("-".into(), |x| format!("{:.0}%", x * 100.0))
            );
        }
        out!("(medians over the windows; conv/sgemm is the median of the per-window ratios)");
    }
    print_targets(targets);
}

fn print_sparse(rows: &[Value]) {
    let sparse: Vec<&Value> = rows.iter().filter(|r| r["engine"] == "sparse").collect();
    if sparse.is_empty() {
        return;
    }
    out!(
        "\nsparse engine over a {SPARSE_EXTENT} x {SPARSE_EXTENT} extent (tiles of {}), against {DENSE_REFERENCE} on the same backend",
        sparse
            .iter()
            .map(|r| &r["sparse"]["tile"])
            .find(|t| !t.is_null())
            .unwrap_or(&Value::Null)
    );
    out!(
        "{:<17} {:<7} {:>7} {:>6} {:>6} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
        "config",
        "backend",
        "cells",
        "tiles",
        "halo",
        "ms/step",
        "gather",
        "forward",
        "scatter",
        "outside",
        "ns/cell",
        "dense ns",
        "vs dense",
        "speedup"
    );
    for r in sparse {
        let sp = &r["sparse"];
        let ms = &r["ms_per_step"];
        let num = |v: &Value, p: usize| f(v).map_or("-".into(), |x| format!("{x:.p$}"));
        out!(
            "{:<17} {:<7} {:>7} {:>6} {:>6} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8}",
            s(&r["config"]),
            s(&r["backend"]),
            sp["occupied_cells"].to_string(),
            sp["active_tiles"].to_string(),
            f(&sp["halo_work"]).map_or("-".into(), |x| format!("{x:.2}x")),
            num(&ms["total"], 1),
            num(&ms["gather"], 1),
            num(&ms["forward"], 1),
            num(&ms["scatter"], 1),
            f(&sp["outside_forward_share"]).map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
            num(&sp["ns_per_active_tile_cell"], 1),
            num(&sp["dense_ns_per_cell"], 1),
            f(&sp["per_cell_vs_dense"]).map_or("-".into(), |x| format!("{x:.2}x")),
            f(&sp["speedup_vs_dense_512"]).map_or("-".into(), |x| format!("{x:.2}x")),
        );
    }
}

fn print_startup(startup: &[Value]) {
    if startup.is_empty() {
        return;
    }
    out!(
        "\nstart-up in a fresh process ({}: conv3x3 D=64, 128 x 128), ms, the median of {} runs; before main: exec and linked libraries (libtorch loads in backend init)",
        super::startup::PROBE_CONFIG,
        super::STARTUP_ROUNDS
    );
    out!(
        "{:<8} {:>11} {:>12} {:>10} {:>10} {:>10} {:>22}  all runs",
        "backend",
        "before main",
        "backend init",
        "model load",
        "state init",
        "first step",
        "exec to first step end",
    );
    for p in startup {
        if let Some(e) = p["error"].as_str() {
            out!("{:<8} skipped: {e}", s(&p["backend"]));
            continue;
        }
        let st = &p["stages_ms"];
        let ms = |k: &str| f(&st[k]).map_or("-".into(), |x| format!("{x:.1}"));
        let in_stages: f64 = st
            .as_object()
            .map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum());
        let wall = f(&p["wall_to_first_step_end_ms"]);
        out!(
            "{:<8} {:>11} {:>12} {:>10} {:>10} {:>10} {:>22}  {}",
            s(&p["backend"]),
            wall.map_or("-".into(), |w| format!("{:.0}", w - in_stages)),
            ms("backend init"),
            ms("model load"),
            ms("state init"),
            ms("first step"),
            wall.map_or("-".into(), |x| format!("{x:.0}")),
            p["wall_runs_ms"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_f64)
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        );
    }
}

/// One line per target: value, goal, met or MISSED.
pub fn print_targets(targets: &[Value]) {
    if targets.is_empty() {
        return;
    }
    out!("\ntargets");
    for t in targets {
        out!(
            "  {:<70} {:>8.3} (target {:<8}) {}",
            s(&t["name"]),
            f(&t["value"]).unwrap_or(f64::NAN),
            s(&t["target"]),
            if t["met"] == true { "met" } else { "MISSED" }
        );
    }
}

/// The `--scale` figures, one block per backend, and their targets.
pub fn print_scale(scale: &[Value]) -> Vec<Value> {
    let mut targets = Vec::new();
    for r in scale {
        let b = s(&r["backend"]);
        if let Some(e) = r["error"].as_str() {
            out!("\nscale {b}: skipped: {e}");
            continue;
        }
        let p = &r["position_distance"];
        let sp = &r["split_1e5"];
        let (m, mr) = (&r["memory_1e6"], &r["memory_1e6_rolling"]);
        let v = |x: &Value| f(x).unwrap_or(f64::NAN);
        out!("\nscale figures, conv3x3 D=64 identity law, sparse engine on {b}");
        out!(
            "  {}-cell disc: at (0, 0) {:.1} ms/step, at ({}, {}) {:.1} ms/step: {:.2}x (tiles {} and {})",
            p["blob_cells"], v(&p["origin_ms"]), p["far"][0], p["far"][1], v(&p["far_ms"]), v(&p["far_vs_origin"]),
            p["tiles"][0], p["tiles"][1]
        );
        out!(
            "  two such discs {} apart: {:.1} ms/step = {:.2}x one disc (tiles {})",
            p["apart"],
            v(&p["two_blobs_ms"]),
            v(&p["two_vs_one"]),
            p["tiles"][2]
        );
        out!(
            "  {}-cell disc ({} active tiles): gather {:.1} + forward {:.1} + scatter {:.1} ms; outside forward {:.1}%",
            sp["cells"], sp["active_tiles"], v(&sp["gather_ms"]), v(&sp["forward_ms"]), v(&sp["scatter_ms"]),
            100.0 * v(&sp["outside_forward_share"])
        );
        for (m, how) in [(m, "atomic steps"), (mr, "atomic steps off")] {
            out!(
                "  {}-cell disc ({} tiles), {how}: raw state {:.0} MiB; RSS after insert +{:.0} MiB; peak while stepping +{:.0} MiB = {:.2}x raw, {:.2}x raw beyond one chunk's {:.0} MiB (input, output and the backend's own, measured; {} tiles staged, {:.0} ms/step)",
                m["cells"], m["tiles"], v(&m["raw_state_mib"]), v(&m["rss_after_insert_mib"]),
                v(&m["peak_while_stepping_mib"]), v(&m["peak_vs_raw"]), v(&m["peak_vs_raw_plus_chunk"]),
                v(&m["chunk_buffers_mib"]), m["staged_tiles"], v(&m["step_ms"])
            );
        }
        let far = v(&p["far_vs_origin"]);
        targets.push(target(
            format!("far blob vs blob at origin, {b}"),
            far,
            "0.9-1.1",
            (0.9..=1.1).contains(&far),
        ));
        let two = v(&p["two_vs_one"]);
        targets.push(target(
            format!("two blobs 1e6 apart vs one, {b}"),
            two,
            "1.8-2.2",
            (1.8..=2.2).contains(&two),
        ));
        let rolling = v(&mr["peak_vs_raw_plus_chunk"]);
        targets.push(target(
            format!("peak at 1e6 cells D=64 beyond one chunk, atomic steps off, {b}"),
            rolling,
            "<= 1.5x raw",
            rolling <= 1.5,
        ));
        let out = v(&sp["outside_forward_share"]);
        targets.push(target(
            format!("time outside forward at 1e5 cells, {b}"),
            out,
            "<= 0.25",
            out <= 0.25,
        ));
    }
    print_targets(&targets);
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(config: &str, engine: &str, backend: Option<&str>, rate: f64) -> Value {
        json!({"config": config, "engine": engine, "backend": backend, "steps_per_s_median": rate})
    }

    #[test]
    fn round_two_speed_targets_take_the_best_backend_against_pytorch() {
        let rows = [
            row("dense-128", "dense", Some("tch"), 30.0),
            row("dense-128", "dense", Some("candle"), 63.0),
            row("dense-128", "pytorch", None, 20.0),
            row("unet-128", "dense", Some("candle"), 40.0),
            row("unet-128", "pytorch", None, 20.0),
        ];
        let found = targets(&rows, &[]);
        let named = |prefix: &str| {
            found
                .iter()
                .find(|t| s(&t["name"]).starts_with(prefix))
                .unwrap_or_else(|| panic!("no target {prefix}: {found:?}"))
                .clone()
        };
        let dense = named("dense-128 steps/s vs PyTorch");
        assert_eq!(
            s(&dense["name"]),
            "dense-128 steps/s vs PyTorch, best backend (candle)"
        );
        assert_eq!(dense["value"], json!(3.15));
        assert_eq!(dense["met"], json!(true));
        let unet = named("unet-128 steps/s vs PyTorch");
        assert_eq!(unet["value"], json!(2.0));
        assert_eq!(unet["met"], json!(false), "2.0x is short of 2.5x");
        // Without a PyTorch row there is no ratio to report.
        assert!(targets(&rows[..2], &[])
            .iter()
            .all(|t| !s(&t["name"]).contains("PyTorch")));
    }
}
