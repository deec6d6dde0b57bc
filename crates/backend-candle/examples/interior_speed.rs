//! Times the conv3x3 law (D = 64) per output cell on the shapes the
//! engines hand it: one large image (the dense engine) against batches of
//! fields whose halo is dropped (`ComputeBackend::forward_interior`, the
//! sparse engine's step): 16-cell tiles one per field, and strips of 4, 8
//! (the sparse engine's, with room for one window's halo or two) and 16
//! tiles side by side.
//!
//! `cargo run --release -p backend-candle --example interior_speed -- [threads]`
//!
//! The shapes run in interleaved rounds and each figure is the fastest of
//! all its runs, since the machine may be shared.

use std::time::Instant;

use backend_candle::CandleBackend;
use engine_api::{
    interior_shape, Architecture, BackendOptions, BatchShape, ComputeBackend, ModelSpec,
};

/// Complex channels: the bench's conv3x3 law.
const D: usize = 64;
/// (fields, rows, columns, margin): the dense engine's 512 x 512 grid; a
/// chunk of 404 16-cell tiles with a halo of 1 one per field, then in
/// strips of 4, 8 (with room for one halo and for two: 65 Winograd tiles a
/// row) and 16 tiles.
const CASES: [(usize, usize, usize, usize); 6] = [
    (1, 512, 512, 0),
    (404, 18, 18, 1),
    (101, 18, 66, 1),
    (50, 18, 130, 1),
    (50, 18, 132, 1),
    (25, 18, 258, 1),
];

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    sparse_grid::rng::Rng::new(seed).uniform_vec(n, -scale, scale)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::args().nth(1).map_or(Ok(2), |s| s.parse())?;
    let c = 2 * D;
    let spec =
        ModelSpec::for_architecture(format!("conv3x3_d{D}"), Architecture::Conv3x3, D, None)?;
    let weight = values(1, c * c * 9, 1.0 / (c as f32 * 9.0).sqrt());
    let backend = CandleBackend::from_tensors(
        spec,
        vec![
            ("conv.weight".into(), vec![c, c, 3, 3], weight),
            ("conv.bias".into(), vec![c], values(2, c, 0.1)),
        ],
        &BackendOptions::default().with_threads(threads),
    )?;
    let mut best = [f64::MAX; CASES.len()];
    for _round in 0..4 {
        for (i, &(n, rows, cols, margin)) in CASES.iter().enumerate() {
            let shape = BatchShape::new(n, c, rows, cols);
            let out = interior_shape(shape, margin).ok_or("a margin that leaves cells")?;
            let x = values(3, shape.len(), 1.0);
            let mut y = vec![0.0f32; out.len()];
            for _ in 0..10 {
                let t = Instant::now();
                backend.forward_interior(&x, shape, margin, &mut y)?;
                best[i] = best[i].min(t.elapsed().as_secs_f64());
            }
        }
    }
    println!("conv3x3 D={D}, {threads} threads: fastest forward per output cell");
    let dense = best[0] / (512.0 * 512.0);
    for (&(n, rows, cols, margin), &secs) in CASES.iter().zip(&best) {
        let per_cell = secs / (n * (rows - 2 * margin) * (cols - 2 * margin)) as f64;
        println!(
            "{n:4} fields of {rows:3} x {cols:<3} margin {margin}: {:7.1} ms, {:6.1} ns per output cell ({:.2}x the 512 x 512 image's)",
            secs * 1e3,
            per_cell * 1e9,
            per_cell / dense
        );
    }
    Ok(())
}
