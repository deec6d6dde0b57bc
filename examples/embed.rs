//! Embed a law trained in PyTorch: load, step, read a cell and a picture,
//! poke it with a tool, read its readouts, save and reload.
//!
//! cargo run --example embed [-- MODEL_DIR]
//! (MODEL_DIR: a package made by python/export.py; a small test law by default)

use std::ops::ControlFlow;

use atheria::{InitKind, Simulation, Tool, Viz};

const TEST_LAW: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden/conv3x3_d4"
);

fn main() -> Result<(), atheria::Error> {
    let model = std::env::args().nth(1).unwrap_or(TEST_LAW.into());
    let mut sim = Simulation::builder()
        .model_dir(&model) // model.json + weights; .backend_kind(..) picks tch or onnx
        .init(InitKind::ComplexNoise, 42, 64) // a seeded 64 x 64 field
        .gamma(0.01)
        .build()?;
    let (name, d, backend) = (&sim.spec().name, sim.d_state(), sim.backend().describe());
    println!("model `{name}` d_state {d} on {backend}");

    // Run 20 steps; the callback sees every step and could stop the run.
    let run = sim.run(20, |_, s| {
        if s.step % 10 == 0 {
            println!("step {}: {} cells", s.step, s.occupied_cells);
        }
        ControlFlow::Continue(())
    })?;
    let (n, rate) = (run.steps, run.steps_per_second());
    println!("ran {n} steps at {rate:.0} steps/s");

    // One cell, one visualization, a tool, the readouts.
    let psi = sim.cell(10, 20).expect("a dense grid holds every cell");
    println!("psi(10, 20)[0] = {:.6} {:+.6}i", psi[0].0, psi[0].1);
    let area = sim.extent().expect("a dense grid has an extent");
    let energy = sim.field(Viz::Energy, area)?.data; // sum |delta|^2 of the last step
    let max = energy.iter().fold(0.0f32, |a, &v| a.max(v));
    println!("max energy {max:.3e}");
    sim.apply(&"vortex:x=32,y=32,radius=6".parse::<Tool>()?)?; // or Tool::Vortex { .. }
    let m = sim.metrics()?; // norm, energy, fidelity, entropy, Atheria's epoch, ...
    let (fidelity, entropy, epoch) = (m.fidelity, m.entropy, m.epoch);
    println!("fidelity {fidelity:.4}, entropy {entropy:.3}, epoch {epoch}");

    // Save, reload into a new simulation, and check they agree.
    let path = std::env::temp_dir().join(format!("atheria-{}.safetensors", std::process::id()));
    sim.save(&path)?;
    let again = Simulation::builder()
        .model_dir(&model)
        .state_file(&path)
        .build()?;
    let same = again.state()? == sim.state()?;
    println!("reloaded at step {}: identical {same}", again.step_count());
    std::fs::remove_file(&path).map_err(|e| atheria::Error::io(&path, e))?;
    Ok(())
}
