//! The device engine (`EngineKind::Device`, `atheria-device-engine`) inside
//! a `Simulation`, on the CPU: it steps as the dense engine does (the
//! embedded default law and the recurrent U-Net, whose memory survives a
//! save and a load), its tools, readouts and pictures are the dense
//! engine's, and a CUDA device it cannot have is refused in one line,
//! within a second. Per-architecture equivalence is the engine crate's
//! (crates/device-engine/tests/equivalence.rs).
#![cfg(feature = "candle")]

mod common;

use std::time::{Duration, Instant};

use atheria::instruments::parse::parse_tool;
use atheria::{CellBox, Device, EngineKind, InitKind, Simulation, Viz};
use common::*;

fn pair(
    build: impl Fn(atheria::SimulationBuilder) -> atheria::SimulationBuilder,
) -> (Simulation, Simulation) {
    let dense = build(Simulation::builder()).build().expect("dense");
    let device = build(Simulation::builder())
        .engine(EngineKind::Device)
        .build()
        .expect("device");
    assert_eq!(device.engine_kind(), EngineKind::Device);
    (dense, device)
}

#[test]
fn the_default_law_steps_tools_and_readouts_as_on_the_dense_engine() {
    let (mut dense, mut device) = pair(|b| b.init(InitKind::Random, 3, 32).gamma(0.01));
    let tool = parse_tool("vortex:x=10,y=12,radius=5", 1 << 20).expect("tool");
    for sim in [&mut dense, &mut device] {
        sim.run(5, |_, _| std::ops::ControlFlow::Continue(()))
            .unwrap();
        sim.apply(&tool.tool).unwrap();
        sim.run(3, |_, _| std::ops::ControlFlow::Continue(()))
            .unwrap();
    }
    let (a, b) = (dense.state().unwrap(), device.state().unwrap());
    assert_eq!(a.step, b.step);
    let diff = max_abs_diff(a.planes(), b.planes()).0;
    assert!(
        diff <= 1e-5,
        "psi differs by {diff:e} after 8 steps and a vortex"
    );
    assert_eq!(dense.occupied_count(), device.occupied_count());
    assert_eq!(dense.extent(), device.extent());
    assert_eq!(
        dense.cell(4, 5).unwrap().len(),
        device.cell(4, 5).unwrap().len()
    );
    let (ma, mb) = (dense.metrics().unwrap(), device.metrics().unwrap());
    for (key, x, y) in [
        ("norm", ma.norm, mb.norm),
        ("energy", ma.energy, mb.energy),
        ("fidelity", ma.fidelity, mb.fidelity),
    ] {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(1.0),
            "{key}: {x} vs {y}"
        );
    }
    let area = CellBox::from_origin(0, 0, 32, 32).unwrap();
    let (fa, fb) = (
        dense.field(Viz::Energy, area).unwrap(),
        device.field(Viz::Energy, area).unwrap(),
    );
    assert!(max_abs_diff(&fa.data, &fb.data).0 <= 1e-4, "energy picture");
    // A cell written through the simulation reaches the device.
    device.set_cell(1, 1, &[(1.0, 0.0); 4]).unwrap();
    assert_eq!(device.cell(1, 1).unwrap()[0], (1.0, 0.0));
    println!("default law: max |device - dense| {diff:.2e}");
}

#[test]
fn a_recurrent_law_resumes_on_the_device_from_a_saved_state() {
    let case = "unet_convlstm_d2_h8";
    let (_, gamma) = case_params(case);
    let initial = golden(case).join("initial.safetensors");
    let (mut dense, mut device) =
        pair(|b| b.model_dir(golden(case)).state_file(&initial).gamma(gamma));
    let saved =
        std::env::temp_dir().join(format!("atheria-device-{}.safetensors", std::process::id()));
    for sim in [&mut dense, &mut device] {
        sim.run(4, |_, _| std::ops::ControlFlow::Continue(()))
            .unwrap();
    }
    device.save(&saved).unwrap();
    device.load(&saved).unwrap();
    for sim in [&mut dense, &mut device] {
        sim.run(4, |_, _| std::ops::ControlFlow::Continue(()))
            .unwrap();
    }
    std::fs::remove_file(&saved).unwrap();
    let (a, b) = (dense.state().unwrap(), device.state().unwrap());
    let (psi, memory) = (
        max_abs_diff(a.planes(), b.planes()).0,
        max_abs_diff(a.memory.data(), b.memory.data()).0,
    );
    assert!(!b.memory.is_empty());
    assert!(
        psi <= 1e-5 && memory <= 1e-5,
        "psi {psi:e}, memory {memory:e}"
    );
    println!("unet_convlstm, 8 steps through a save and load: psi {psi:.2e}, memory {memory:.2e}");
}

#[test]
fn cuda_that_cannot_be_had_is_refused_in_one_line_within_a_second() {
    let started = Instant::now();
    let err = Simulation::builder()
        .device(Device::Cuda(0))
        .build()
        .map(|_| ())
        .expect_err("no GPU here");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("cuda:0"), "{message}");
    println!("{message}");
}
