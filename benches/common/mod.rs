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

/// `n` reproducible values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
