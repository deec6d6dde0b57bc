//! One loaded backend, several simulations on several threads: a backend is
//! `Send + Sync` and immutable once loaded, so an `Arc` of it serves them all.
//!
//! cargo run --example shared_backend

use std::sync::Arc;
use std::thread;

use atheria::{BackendOptions, InitKind, Simulation};

/// Steps a 48 x 48 field of `seed` ten times on `backend`; returns the sum
/// of the real parts of channel 0, a fingerprint of the run.
fn run(backend: Arc<dyn atheria::ComputeBackend>, seed: u64) -> Result<f64, atheria::Error> {
    let mut sim = Simulation::builder()
        .backend(backend) // shared, not loaded again
        .init(InitKind::Random, seed, 48)
        .build()?;
    for _ in 0..10 {
        sim.step()?;
    }
    let state = sim.state()?;
    Ok(state.planes()[..state.cells()]
        .iter()
        .map(|&v| v as f64)
        .sum())
}

fn main() -> Result<(), atheria::Error> {
    // Load once (the default law; `BackendKind::load` for a model package).
    let backend = atheria::default_law::load(&BackendOptions::default())?;
    let threads: Vec<_> = (0..4u64)
        .map(|seed| {
            let backend = Arc::clone(&backend);
            thread::spawn(move || run(backend, seed).map(|sum| (seed, sum)))
        })
        .collect();
    let mut sums = Vec::new();
    for t in threads {
        let (seed, sum) = t.join().expect("a simulation thread panicked")?;
        println!("seed {seed} on its own thread: fingerprint {sum:.6}");
        sums.push(sum);
    }
    // The same run alone on this thread gives the same numbers: sharing the
    // backend changes nothing.
    let alone = run(Arc::clone(&backend), 2)?;
    println!(
        "seed 2 alone: fingerprint {alone:.6}, equal {}",
        alone == sums[2]
    );
    println!("the backend served {} simulations", sums.len() + 1);
    Ok(())
}
