//! The one random generator of the workspace: counter-based, so every value
//! is a pure function of its key. The same cell at the same step gets the
//! same number on every thread, in every engine and on every backend, with no
//! shared state.
//!
//! Two ways to use it:
//!
//! - **Keyed**: [`normal`], [`uniform`] and [`bits`] of a key of several
//!   words, such as [`cell_key`] (seed, x, y, step, channel, stream). The
//!   engines draw initial states and the harmonic vacuum this way.
//! - **Sequential**: [`Rng`], a seed and a counter, for code that wants "the
//!   next number" (test inputs, benchmark weights, scattered cells). Draw i
//!   of `Rng::new(seed)` is the keyed value of `[seed, i]`, so a sequence is
//!   reproducible and needs no other generator.
//!
//! The values are statistically sound for simulation and tests (SplitMix64's
//! finaliser per key word), not for cryptography.

/// Mixes a 64-bit word (SplitMix64's finaliser: a bijection with full avalanche).
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 uniformly distributed bits determined by `key` (a hash of its words:
/// keys that differ in any word give unrelated values).
#[inline]
pub fn bits(key: &[u64]) -> u64 {
    key.iter().fold(0x9e37_79b9_7f4a_7c15, |h, &k| {
        mix(h ^ mix(k.wrapping_add(0x9e37_79b9_7f4a_7c15)))
    })
}

/// A uniform number in (0, 1) from 53 bits of a hash.
#[inline]
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A uniform number in [0, 1) determined by `key` (24 bits: every value is
/// an exact f32).
#[inline]
pub fn uniform(key: &[u64]) -> f32 {
    (bits(key) >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// A standard normal number determined by `key` (Box-Muller on two hashes).
#[inline]
pub fn normal(key: &[u64]) -> f32 {
    let h = bits(key);
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

/// A reproducible sequence over the keyed generator: a seed and a counter.
/// Draw i (whatever kind of number it is) is the keyed value of
/// `[seed, i]`, so two sequences with the same seed are equal, and every
/// draw advances the counter by one.
///
/// ```
/// use sparse_grid::rng::Rng;
/// let mut rng = Rng::new(7);
/// let weights = rng.uniform_vec(16, -0.5, 0.5);
/// assert!(weights.iter().all(|w| (-0.5..0.5).contains(w)));
/// assert_eq!(Rng::new(7).uniform_vec(16, -0.5, 0.5), weights);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    seed: u64,
    counter: u64,
}

impl Rng {
    /// The sequence of `seed`, at its first draw.
    pub fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    /// The key of the next draw, advancing the counter.
    #[inline]
    fn next_key(&mut self) -> [u64; 2] {
        let key = [self.seed, self.counter];
        self.counter = self.counter.wrapping_add(1);
        key
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        bits(&self.next_key())
    }

    /// The next uniform number in [0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f32 {
        uniform(&self.next_key())
    }

    /// The next uniform number in [lo, hi).
    #[inline]
    pub fn uniform_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// The next standard normal number.
    #[inline]
    pub fn normal(&mut self) -> f32 {
        normal(&self.next_key())
    }

    /// The next integer in [0, n) (n > 0; the bias of a modulo of 64 bits
    /// is below 2^-32 for n < 2^32).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0): the range is empty");
        self.next_u64() % n
    }

    /// The next `n` uniform numbers in [lo, hi).
    pub fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform_in(lo, hi)).collect()
    }

    /// The next `n` normal numbers with mean 0 and standard deviation `std`.
    pub fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * std).collect()
    }
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

    #[test]
    fn the_sequence_is_the_keyed_generator_at_its_counter() {
        let mut rng = Rng::new(11);
        assert_eq!(rng.next_u64(), bits(&[11, 0]));
        assert_eq!(rng.uniform(), uniform(&[11, 1]));
        assert_eq!(rng.normal(), normal(&[11, 2]));
        assert_eq!(
            Rng::new(11).normal_vec(5, 2.0),
            Rng::new(11).normal_vec(5, 2.0)
        );
        assert_ne!(Rng::new(11).next_u64(), Rng::new(12).next_u64());
    }

    #[test]
    fn uniform_numbers_fill_their_range_evenly() {
        let mut rng = Rng::new(3);
        let n = 100_000;
        let xs = rng.uniform_vec(n, -1.0, 1.0);
        assert!(xs.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        let mut counts = [0usize; 10];
        for _ in 0..n {
            counts[rng.below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| c.abs_diff(n / 10) < n / 100),
            "{counts:?}"
        );
    }
}
