//! What the criterion benches share: short measurement times (so `cargo
//! bench` takes minutes, not hours) and a seeded fill.

use std::time::Duration;

use criterion::Criterion;

/// Two seconds of measurement per bench, half a second of warm-up.
pub fn quick() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10)
}

/// `n` reproducible values in [-1, 1), from the workspace's one generator.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    sparse_grid::rng::Rng::new(seed).uniform_vec(n, -1.0, 1.0)
}
