//! A counter-based random generator: every value is a pure function of its
//! key, so the same cell at the same step gets the same number on every
//! thread, in every engine and on every backend, with no shared state.

/// Mixes a 64-bit word (SplitMix64's finaliser: a bijection with full avalanche).
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit hash of a key of several words.
#[inline]
fn hash(key: &[u64]) -> u64 {
    key.iter().fold(0x9e37_79b9_7f4a_7c15, |h, &k| {
        mix(h ^ mix(k.wrapping_add(0x9e37_79b9_7f4a_7c15)))
    })
}

/// A uniform number in (0, 1) from 53 bits of a hash.
#[inline]
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal number determined by `key` (Box-Muller on two hashes).
#[inline]
pub fn normal(key: &[u64]) -> f32 {
    let h = hash(key);
    let u1 = unit(h);
    let u2 = unit(mix(h ^ 0x5851_f42d_4c95_7f2d));
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The key of one lattice value: (seed, x, y, step, channel, stream).
///
/// `stream` separates independent uses (initial noise, vacuum, real vs
/// imaginary part) so that they never share numbers.
#[inline]
pub fn cell_key(seed: u64, x: i64, y: i64, step: u64, channel: usize, stream: u64) -> [u64; 6] {
    [seed, x as u64, y as u64, step, channel as u64, stream]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_value_and_neighbours_differ() {
        let a = normal(&cell_key(7, -3, 4, 2, 1, 0));
        assert_eq!(a, normal(&cell_key(7, -3, 4, 2, 1, 0)));
        assert_ne!(a, normal(&cell_key(7, -3, 4, 2, 2, 0)));
        assert_ne!(a, normal(&cell_key(8, -3, 4, 2, 1, 0)));
    }

    #[test]
    fn moments_are_standard_normal() {
        let n = 200_000;
        let xs: Vec<f64> = (0..n)
            .map(|i| normal(&cell_key(1, i, 0, 0, 0, 0)) as f64)
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
