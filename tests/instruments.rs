//! Tools, visualizations and readouts against the PyTorch reference
//! (python/atheria_ref/instruments.py, fixtures by
//! python/make_instruments_golden.py), on frames and through `Simulation`
//! on both engines. Definitions: docs/instruments.md.
//!
//! Tolerances: 1e-5 absolute plus 1e-5 relative for values computed in f32
//! here and in f64 by the reference; 1e-4 for `spectral` (an FFT of 256+
//! terms). Seeded tools draw the same keyed random numbers as the reference
//! (python/atheria_ref/rng.py is a port of sparse_grid::rng), so they match
//! cell by cell, not only in distribution.

mod common;

use std::path::PathBuf;

use atheria::instruments::frame::{Frame, FrameMut, FrameRef};
use atheria::instruments::metrics::{energy_of, metrics};
use atheria::instruments::parse::parse_tool;
use atheria::instruments::tools::{ClickOut, Lattice};
use atheria::instruments::viz::{field, flow_vectors, normalize};
use atheria::{CellBox, DenseState, EngineKind, Simulation, Tool, Viz};
use common::assert_close;
use safetensors::SafeTensors;

const CASES: [&str; 3] = ["square", "rect", "sparse"];

/// One fixture file.
struct Case {
    name: String,
    bytes: Vec<u8>,
}

impl Case {
    fn load(name: &str) -> Self {
        let path: PathBuf = common::fixtures()
            .join("instruments")
            .join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            name: name.to_string(),
            bytes,
        }
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("safetensors")
    }

    fn meta(&self, key: &str) -> Option<String> {
        let (_, m) = SafeTensors::read_metadata(&self.bytes).expect("header");
        m.metadata().as_ref().and_then(|m| m.get(key).cloned())
    }

    fn has(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("{}: no tensor {name}", self.name));
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), v)
    }

    fn u8s(&self, name: &str) -> Vec<u8> {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("{}: no tensor {name}", self.name));
        t.data().to_vec()
    }

    fn pair(&self, key: &str) -> (i32, i32) {
        let v = self
            .meta(key)
            .unwrap_or_else(|| panic!("{}: no metadata {key}", self.name));
        let p: Vec<i32> = v.split(',').map(|x| x.trim().parse().unwrap()).collect();
        (p[0], p[1])
    }

    /// A state from `<prefix>.re`, `<prefix>.im` ([H, W, D]) and an
    /// occupancy tensor (all occupied when absent).
    fn state(&self, prefix: &str, occupied: Option<&str>, origin: (i32, i32)) -> DenseState {
        let (shape, re) = self.f32s(&format!("{prefix}.re"));
        let (_, im) = self.f32s(&format!("{prefix}.im"));
        let (h, w, d) = (shape[0], shape[1], shape[2]);
        let n = h * w;
        let mut planes = vec![0.0f32; 2 * d * n];
        for i in 0..n {
            for c in 0..d {
                planes[c * n + i] = re[i * d + c];
                planes[(c + d) * n + i] = im[i * d + c];
            }
        }
        let occ = occupied.map_or(vec![1; n], |o| self.u8s(o));
        let mut s = DenseState::from_planes(h, w, d, planes, occ).unwrap();
        s.origin = origin;
        s.step = self.meta("step").map_or(0, |v| v.parse().unwrap());
        s
    }

    fn psi(&self) -> DenseState {
        self.state("psi", Some("occupied"), self.pair("origin"))
    }

    fn delta_planes(&self) -> Vec<f32> {
        self.state("delta", None, (0, 0)).planes().to_vec()
    }

    fn bounded(&self) -> bool {
        self.meta("lattice").as_deref() == Some("bounded")
    }

    fn lattice(&self) -> Lattice {
        let psi = self.psi();
        if self.bounded() {
            Lattice::Bounded(
                CellBox::from_origin(psi.origin.0, psi.origin.1, psi.width(), psi.height())
                    .unwrap(),
            )
        } else {
            let e: Vec<i32> = self
                .meta("extent")
                .unwrap()
                .split(',')
                .map(|v| v.parse().unwrap())
                .collect();
            Lattice::Unbounded {
                extent: Some(CellBox::new(e[0], e[1], e[2], e[3])),
            }
        }
    }

    fn threshold(&self) -> Option<f32> {
        self.meta("threshold")
            .filter(|t| t != "none")
            .map(|t| t.parse().unwrap())
    }

    /// The frame of the fixture with the summary computed here.
    fn frame(&self) -> Frame {
        let psi = self.psi();
        let n = psi.cells();
        let mut summary = vec![0.0; atheria::summary::PLANES * n];
        atheria::summary::summarize(
            psi.planes(),
            &self.delta_planes(),
            n,
            psi.d_state(),
            &mut summary,
        );
        Frame::new(psi, Some(summary)).unwrap()
    }

    /// The tool cases: (index, tool string).
    fn tools(&self) -> Vec<(usize, String)> {
        (0..)
            .map_while(|i| self.meta(&format!("tool.{i}")).map(|t| (i, t)))
            .collect()
    }

    fn tool_result(&self, i: usize) -> DenseState {
        self.state(
            &format!("tool.{i}"),
            Some(&format!("tool.{i}.occupied")),
            self.pair(&format!("tool.{i}.origin")),
        )
    }
}

fn viz_names() -> Vec<Viz> {
    let mut v = Viz::ALL.to_vec();
    v.push(Viz::PhaseChannel(1));
    v
}

#[test]
fn the_delta_summary_matches_the_reference() {
    for name in CASES {
        let case = Case::load(name);
        let frame = case.frame();
        let (_, want) = case.f32s("summary");
        assert_close(
            &format!("{name} summary"),
            frame.summary.as_ref().unwrap(),
            &want,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn every_visualization_matches_the_reference() {
    for name in CASES {
        let case = Case::load(name);
        let frame = case.frame();
        let frame = frame.as_ref();
        for viz in viz_names() {
            let tol = if viz == Viz::Spectral { 1e-4 } else { 1e-5 };
            let what = format!("{name} {viz}");
            let raw = field(viz, &frame, true).unwrap();
            let (shape, want) = case.f32s(&format!("viz.{viz}.raw"));
            assert_eq!(
                shape.iter().product::<usize>(),
                raw.data.len(),
                "{what}: shape {shape:?}"
            );
            assert_close(&format!("{what} raw"), &raw.data, &want, tol, tol);
            let (_, want) = case.f32s(&format!("viz.{viz}.norm"));
            assert_close(
                &format!("{what} normalised"),
                &normalize(viz, &raw).data,
                &want,
                tol,
                tol,
            );
            let (_, want) = case.f32s(&format!("viz.{viz}.raw_nomask"));
            assert_close(
                &format!("{what} without mask"),
                &field(viz, &frame, false).unwrap().data,
                &want,
                tol,
                tol,
            );
        }
        let (dx, dy) = flow_vectors(&frame, true);
        assert_close(
            &format!("{name} flow dx"),
            &dx,
            &case.f32s("viz.flow.dx").1,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("{name} flow dy"),
            &dy,
            &case.f32s("viz.flow.dy").1,
            1e-5,
            1e-5,
        );
        // Before any step there is no summary: energy draws the density.
        let psi = case.psi();
        let bare = FrameRef::new(&psi, None).unwrap();
        for viz in [Viz::Energy, Viz::Physics] {
            let (_, want) = case.f32s(&format!("viz.{viz}.raw_nostep"));
            assert_close(
                &format!("{name} {viz} before a step"),
                &field(viz, &bare, true).unwrap().data,
                &want,
                1e-5,
                1e-5,
            );
        }
    }
}

#[test]
fn readouts_match_the_reference() {
    for name in CASES {
        let case = Case::load(name);
        let frame = case.frame();
        let frame = frame.as_ref();
        let psi0 = case.state("psi0", None, case.pair("psi0_origin"));
        let psi0 = FrameRef::new(&psi0, None).unwrap();
        let step = case.meta("step").unwrap().parse().unwrap();
        let got = metrics(
            &frame,
            Some(&psi0),
            energy_of(&frame),
            case.threshold(),
            step,
        );
        let got = serde_json::to_value(got).unwrap();
        let want: serde_json::Value = serde_json::from_str(&case.meta("metrics").unwrap()).unwrap();
        for (key, w) in want.as_object().unwrap() {
            let g = got
                .get(key)
                .unwrap_or_else(|| panic!("{name}: no readout {key}"));
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-6 + 1e-5 * w.abs(),
                "{name} {key}: {g}, reference {w}"
            );
        }
        assert_eq!(
            got.as_object().unwrap().len(),
            want.as_object().unwrap().len(),
            "{name}: readouts {got}"
        );
    }
}

/// The stamp patch of tool `i`, when the fixture has one.
fn patch(case: &Case, i: usize) -> Option<DenseState> {
    case.has(&format!("stamp.{i}.re")).then(|| {
        case.state(
            &format!("stamp.{i}"),
            Some(&format!("stamp.{i}.occupied")),
            (0, 0),
        )
    })
}

/// Parses tool `i` of a case (a stamp's patch comes from the fixture).
fn tool_of(case: &Case, i: usize, spec: &str) -> (Tool, Option<u64>) {
    if let Some(p) = patch(case, i) {
        // A directory of its own per call: tests run in parallel threads.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = common::temp_dir(&format!("patch-{}-{i}-{call}", case.name));
        let file = dir.join("patch.safetensors");
        atheria::state_file::write_state(&p, &file).unwrap();
        let spec = spec.replace(
            "file=patch.safetensors",
            &format!("file={}", file.display()),
        );
        let t = parse_tool(&spec, 1 << 20).unwrap();
        return (t.tool, t.step);
    }
    let t = parse_tool(spec, 1 << 20).unwrap_or_else(|e| panic!("{}: {spec}: {e}", case.name));
    (t.tool, t.step)
}

#[test]
fn every_tool_matches_the_reference_on_frames() {
    for name in CASES {
        let case = Case::load(name);
        let lattice = case.lattice();
        for (i, spec) in case.tools() {
            let want = case.tool_result(i);
            let (tool, step) = tool_of(&case, i, &spec);
            // The result frame: the case's cells copied into the reference's box.
            let mut got = DenseState::zeros(want.height(), want.width(), want.d_state()).unwrap();
            got.origin = want.origin;
            got.step = want.step;
            copy_into(&case.psi(), &mut got);
            let mut frame = FrameMut::new(&mut got);
            match tool {
                Tool::ClickOut { chance, seed, .. } => {
                    let region = lattice.region().unwrap();
                    ClickOut { chance, seed }
                        .apply(
                            &mut frame,
                            region,
                            step.expect("click_out fixtures say their step"),
                        )
                        .unwrap();
                }
                _ => tool
                    .apply(&mut frame, &lattice)
                    .unwrap_or_else(|e| panic!("{name} {spec}: {e}")),
            }
            assert_close(
                &format!("{name} tool {i} `{spec}`"),
                got.planes(),
                want.planes(),
                1e-5,
                1e-5,
            );
            assert_eq!(
                got.occupied(),
                want.occupied(),
                "{name} tool {i} `{spec}`: occupancy"
            );
        }
    }
}

/// Copies the cells of `from` that `to` covers (by lattice coordinates).
fn copy_into(from: &DenseState, to: &mut DenseState) {
    let (d, n, m) = (from.d_state(), from.cells(), to.cells());
    let (fw, tw) = (from.width() as i64, to.width() as i64);
    let (src, src_occ) = (from.planes().to_vec(), from.occupied().to_vec());
    let (fo, tor) = (from.origin, to.origin);
    let (planes, occ) = to.split_mut();
    for i in 0..n {
        let (x, y) = (fo.0 as i64 + i as i64 % fw, fo.1 as i64 + i as i64 / fw);
        let (tx, ty) = (x - tor.0 as i64, y - tor.1 as i64);
        if tx >= 0 && ty >= 0 && tx < tw && (ty * tw + tx) < m as i64 {
            let j = (ty * tw + tx) as usize;
            occ[j] = src_occ[i];
            for c in 0..2 * d {
                planes[c * m + j] = src[c * n + i];
            }
        }
    }
}

/// A simulation of the embedded default law (D = 4) holding a fixture's state.
fn simulation(case: &Case, engine: EngineKind) -> Simulation {
    Simulation::builder()
        .default_law()
        .engine(engine)
        .initial_state(case.psi())
        .build()
        .unwrap()
}

#[test]
fn tools_through_a_simulation_match_the_reference_on_both_engines() {
    for (name, engine) in [
        ("square", EngineKind::Dense),
        ("sparse", EngineKind::Sparse),
    ] {
        let case = Case::load(name);
        for (i, spec) in case.tools() {
            let (tool, _) = tool_of(&case, i, &spec);
            if matches!(tool, Tool::ClickOut { .. }) {
                continue; // a setting of the steps: see click_out_follows_each_step
            }
            let mut sim = simulation(&case, engine);
            sim.apply(&tool)
                .unwrap_or_else(|e| panic!("{name} {spec}: {e}"));
            let want = case.tool_result(i);
            let area =
                CellBox::from_origin(want.origin.0, want.origin.1, want.width(), want.height())
                    .unwrap();
            let got = sim.state_in(area).unwrap();
            let what = format!("{name} ({engine:?}) tool {i} `{spec}`");
            assert_close(&what, got.planes(), want.planes(), 1e-5, 1e-5);
            assert_eq!(got.occupied(), want.occupied(), "{what}: occupancy");
            // Nothing outside the result box changed or appeared.
            assert_eq!(
                sim.occupied_count(),
                got.occupied().iter().filter(|&&o| o != 0).count() + outside(&case, area),
                "{what}: cells outside"
            );
        }
    }
}

/// Cells of matter of the case's state outside `area`.
fn outside(case: &Case, area: CellBox) -> usize {
    let psi = case.psi();
    (0..psi.cells())
        .filter(|&i| {
            let (x, y) = (
                psi.origin.0 + (i % psi.width()) as i32,
                psi.origin.1 + (i / psi.width()) as i32,
            );
            psi.occupied()[i] != 0 && !area.contains(x, y)
        })
        .count()
}

#[test]
fn visualizations_and_readouts_through_a_simulation_match_the_reference() {
    for (name, engine) in [
        ("square", EngineKind::Dense),
        ("sparse", EngineKind::Sparse),
    ] {
        let case = Case::load(name);
        let sim = simulation(&case, engine);
        let area = sim.extent().unwrap();
        for viz in viz_names() {
            let got = sim.field(viz, area).unwrap();
            let key = match viz {
                // No step yet: the delta's pictures are what the reference draws without a summary.
                Viz::Energy | Viz::Physics => format!("viz.{viz}.raw_nostep"),
                Viz::Flow | Viz::Delta => {
                    assert!(
                        got.data.iter().all(|&v| v == 0.0),
                        "{name} {viz} before a step"
                    );
                    continue;
                }
                _ => format!("viz.{viz}.raw"),
            };
            let tol = if viz == Viz::Spectral { 1e-4 } else { 1e-5 };
            assert_close(
                &format!("{name} ({engine:?}) {viz}"),
                &got.data,
                &case.f32s(&key).1,
                tol,
                tol,
            );
        }
        let got = serde_json::to_value(sim.metrics().unwrap()).unwrap();
        let want: serde_json::Value = serde_json::from_str(&case.meta("metrics").unwrap()).unwrap();
        // energy needs a step, fidelity is against the simulation's own start.
        for key in [
            "norm",
            "mean_density",
            "max_density",
            "entropy",
            "clustering",
            "symmetry",
        ] {
            let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-6 + 1e-5 * w.abs(),
                "{name} ({engine:?}) {key}: {g}, reference {w}"
            );
        }
        let fidelity = got["fidelity"].as_f64().unwrap();
        assert!(
            (fidelity - 1.0).abs() < 1e-7,
            "{name}: psi0 is the start, fidelity {fidelity}"
        );
        assert_eq!(got["energy"].as_f64().unwrap(), 0.0, "{name}: no step yet");
    }
}

#[test]
fn click_out_follows_each_step_on_both_engines() {
    for (name, engine) in [
        ("square", EngineKind::Dense),
        ("sparse", EngineKind::Sparse),
    ] {
        let case = Case::load(name);
        let (mut on, mut off) = (simulation(&case, engine), simulation(&case, engine));
        on.apply(&Tool::ClickOut {
            enabled: true,
            chance: 1.0,
            seed: 9,
        })
        .unwrap();
        assert!(on.click_out().is_some());
        for _ in 0..3 {
            on.step().unwrap();
            off.step().unwrap();
            // The same step without click-out, then the reference's swaps.
            let region = off.extent().unwrap();
            let mut want = off.state_in(region).unwrap();
            let step = off.step_count();
            ClickOut {
                chance: 1.0,
                seed: 9,
            }
            .apply(&mut FrameMut::new(&mut want), region, step)
            .unwrap();
            let got = on.state_in(region).unwrap();
            assert_close(
                &format!("{name} ({engine:?}) click-out after step {step}"),
                got.planes(),
                want.planes(),
                0.0,
                0.0,
            );
            assert_ne!(
                got.planes(),
                off.state_in(region).unwrap().planes(),
                "{name}: nothing swapped"
            );
            off.set_state(got).unwrap();
        }
        on.apply(&Tool::ClickOut {
            enabled: false,
            chance: 1.0,
            seed: 9,
        })
        .unwrap();
        assert!(on.click_out().is_none());
    }
}

#[test]
fn bad_tool_arguments_are_errors_naming_them_and_change_nothing() {
    let case = Case::load("square");
    let mut sim = simulation(&case, EngineKind::Dense);
    let before = sim.state().unwrap();
    let cases: [(Tool, &str); 8] = [
        (
            Tool::Vortex {
                x: 8,
                y: 8,
                radius: 0,
                strength: 1.0,
            },
            "radius 0",
        ),
        (
            Tool::Vortex {
                x: 8,
                y: 8,
                radius: 3,
                strength: -1.0,
            },
            "strength -1 must be between 0 and 1000",
        ),
        (
            Tool::Vortex {
                x: 16,
                y: 8,
                radius: 3,
                strength: 1.0,
            },
            "x 16 is outside the grid",
        ),
        (
            Tool::Collapse {
                x: 3,
                y: -1,
                intensity: 0.5,
                seed: 0,
            },
            "y -1 is outside the grid",
        ),
        (
            Tool::Collapse {
                x: 3,
                y: 3,
                intensity: 1.5,
                seed: 0,
            },
            "intensity 1.5",
        ),
        (
            Tool::ClickOut {
                enabled: true,
                chance: 2.0,
                seed: 0,
            },
            "chance 2",
        ),
        (
            Tool::PhaseVortex {
                x: 3,
                y: 3,
                charge: 0,
                core: 2.0,
            },
            "charge 0",
        ),
        (
            Tool::PhaseVortex {
                x: 3,
                y: 3,
                charge: 1,
                core: f32::NAN,
            },
            "core NaN",
        ),
    ];
    for (tool, needle) in cases {
        let e = sim.apply(&tool).expect_err(needle).to_string();
        assert!(e.starts_with(tool.name()) && e.contains(needle), "{e}");
        assert_eq!(sim.state().unwrap(), before, "{e}: the state changed");
    }
    // A stamp that does not fit the grid names where it would reach.
    let patch = DenseState::zeros(4, 4, 4).unwrap();
    let e = sim
        .apply(&Tool::Stamp { x: 14, y: 0, patch })
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not fit inside the grid"), "{e}");
    // On an empty sparse lattice a wave has nothing to span.
    let mut empty = Simulation::builder()
        .default_law()
        .engine(EngineKind::Sparse)
        .initial_state(DenseState::zeros(1, 1, 4).unwrap())
        .build()
        .unwrap();
    let e = empty
        .apply(&Tool::Wave { k_x: 1.0, k_y: 1.0 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("the lattice is empty"), "{e}");
    // ... but a vortex anywhere creates matter there.
    empty
        .apply(&Tool::Vortex {
            x: -5_000_000,
            y: 7,
            radius: 2,
            strength: 1.0,
        })
        .unwrap();
    assert_eq!(empty.occupied_count(), 16);
    assert_eq!(
        empty.extent(),
        Some(CellBox::new(-5_000_002, 5, -4_999_999, 8))
    );
}

#[test]
fn a_tool_forgets_the_last_delta_and_the_next_step_brings_it_back() {
    let case = Case::load("square");
    let mut sim = simulation(&case, EngineKind::Dense);
    sim.step().unwrap();
    let area = sim.extent().unwrap();
    assert!(sim.metrics().unwrap().energy > 0.0);
    assert!(sim
        .field(Viz::Delta, area)
        .unwrap()
        .data
        .iter()
        .any(|&v| v > 0.0));
    sim.apply(&Tool::Wave { k_x: 2.0, k_y: 0.0 }).unwrap();
    assert_eq!(sim.metrics().unwrap().energy, 0.0);
    assert!(sim
        .field(Viz::Delta, area)
        .unwrap()
        .data
        .iter()
        .all(|&v| v == 0.0));
    sim.step().unwrap();
    let m = sim.metrics().unwrap();
    assert!(
        m.energy > 0.0 && m.fidelity < 1.0 && m.step == case.psi().step + 2,
        "{m:?}"
    );
}

#[test]
fn readouts_and_pictures_agree_between_the_engines_after_steps() {
    // The same matter on both engines (a blob away from the dense grid's
    // edges, where the sparse lattice has no edge) gives the same
    // readouts and pictures over the same box.
    let mut blob = DenseState::zeros(32, 32, 4).unwrap();
    atheria::init::fill(&mut blob, atheria::InitKind::Random, 3);
    for (i, o) in blob.occupied_mut().iter_mut().enumerate() {
        let (x, y) = ((i % 32) as f64 - 15.5, (i / 32) as f64 - 15.5);
        *o = (x.hypot(y) < 6.0) as u8;
    }
    blob.zero_vacuum();
    let build = |engine| {
        Simulation::builder()
            .default_law()
            .engine(engine)
            .initial_state(blob.clone())
            .build()
            .unwrap()
    };
    let (mut dense, mut sparse) = (build(EngineKind::Dense), build(EngineKind::Sparse));
    for _ in 0..2 {
        dense.step().unwrap();
        sparse.step().unwrap();
    }
    let area = CellBox::new(4, 4, 27, 27);
    for viz in Viz::ALL {
        let (a, b) = (
            dense.field(viz, area).unwrap(),
            sparse.field(viz, area).unwrap(),
        );
        assert_close(
            &format!("{viz} dense vs sparse"),
            &a.data,
            &b.data,
            1e-5,
            1e-4,
        );
    }
}
