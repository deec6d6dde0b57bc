//! GroupNorm, RMSNorm and ELU, fused where the networks apply them back to back.

use rayon::prelude::*;

use super::plan::Dims;

/// PyTorch's GroupNorm epsilon default, which the reference modules keep.
const EPS: f64 = 1e-5;

/// Atheria's `RMSNorm2d` epsilon (its constructor's default, which its
/// U-Net keeps).
const RMS_EPS: f64 = 1e-6;

/// `ELU(alpha = 1)` in place.
pub fn elu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(16 * 1024).for_each(|chunk| {
        chunk.iter_mut().for_each(|v| *v = elu(*v));
    });
}

/// `ELU(alpha = 1)`: `v` above zero, else `exp(v) - 1`, NaN kept NaN.
///
/// Branch-free and without a libm call, so loops over it vectorise: with
/// libm's scalar `expm1f` the ELUs took a quarter of a U-Net forward.
#[inline]
fn elu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        exp_neg(v) - 1.0
    }
}

/// `exp(x)` for `x <= 0` (and NaN), within 2 ulp; below -87 it returns
/// about 1e-38, which `elu` turns into -1 as `expm1` does.
///
/// Cody-Waite reduction `x = n ln 2 + r`, `|r| <= ln 2 / 2`, Cephes' degree-6
/// polynomial for `exp(r)`, and `2^n` built in the exponent bits.
#[inline]
pub(super) fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // A comparison, not `max`: NaN must stay NaN (the engines catch it).
    let x = if x < -87.0 { -87.0 } else { x };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n in -126..=0: t's low mantissa bits hold n + ROUND's.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `GroupNorm(groups, channels, eps = 1e-5)` followed by `ELU`.
#[derive(Debug, Clone)]
pub struct GroupNormElu {
    groups: usize,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl GroupNormElu {
    /// The layer; `groups` divides `gamma.len() == beta.len()`.
    pub fn new(groups: usize, gamma: Vec<f32>, beta: Vec<f32>) -> Self {
        assert!(groups > 0 && gamma.len().is_multiple_of(groups) && gamma.len() == beta.len());
        Self {
            groups,
            gamma,
            beta,
        }
    }

    /// Normalises `x` (`d`, `d.c == channels`) in place.
    pub fn forward(&self, x: &mut [f32], d: Dims) {
        assert_eq!(d.c, self.gamma.len());
        let per = d.c / self.groups;
        let hw = d.plane();
        // A group's channels are contiguous in NCHW, so each group is one chunk.
        x.par_chunks_mut(per * hw)
            .enumerate()
            .for_each(|(i, chunk)| {
                let g = i % self.groups;
                // Two passes in f64: the group may hold a million values and the
                // reference uses an exact variance, not a running one.
                let n = chunk.len().max(1) as f64;
                let mean = sum_f64(chunk, |v| v) / n;
                let var = sum_f64(chunk, |v| (v - mean) * (v - mean)) / n;
                let inv = 1.0 / (var + EPS).sqrt();
                for (j, plane) in chunk.chunks_mut(hw).enumerate() {
                    let c = g * per + j;
                    let scale = (self.gamma[c] as f64 * inv) as f32;
                    let shift = (self.beta[c] as f64 - mean * self.gamma[c] as f64 * inv) as f32;
                    plane.iter_mut().for_each(|v| *v = elu(*v * scale + shift));
                }
            });
    }
}

/// Atheria's `RMSNorm2d(channels, eps = 1e-6)` followed by `ELU`: each
/// channel plane of each image becomes `x / sqrt(mean(x^2) + eps) * weight[c]`.
///
/// Unlike GroupNorm it subtracts no mean and has no bias, and its statistic
/// is per channel, not per group.
#[derive(Debug, Clone)]
pub struct RmsNormElu {
    weight: Vec<f32>,
}

impl RmsNormElu {
    /// The layer for `weight.len()` channels.
    pub fn new(weight: Vec<f32>) -> Self {
        Self { weight }
    }

    /// Normalises `x` (`d`, `d.c == channels`) in place.
    pub fn forward(&self, x: &mut [f32], d: Dims) {
        assert_eq!(d.c, self.weight.len());
        let hw = d.plane();
        if hw == 0 {
            return;
        }
        x.par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
            // The mean square in f64: a plane may hold a million values, and
            // an f32 running sum would drift from PyTorch's pairwise one.
            let ms = sum_f64(plane, |v| v * v) / hw as f64;
            let scale = (self.weight[i % d.c] as f64 / (ms + RMS_EPS).sqrt()) as f32;
            plane.iter_mut().for_each(|v| *v = elu(*v * scale));
        });
    }
}

/// The sum of `f(v)` over `values`, in f64, in eight independent lanes so
/// the loop vectorises (a single running sum must add in order).
#[inline]
fn sum_f64(values: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(c) {
            *lane += f(v as f64);
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    lanes.iter().sum::<f64>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elu_matches_expm1_in_f64_and_keeps_nan() {
        let mut worst = 0.0f64;
        let mut x = -100.0f32;
        while x < 0.0 {
            let want = (x as f64).exp_m1();
            worst = worst.max((elu(x) as f64 - want).abs());
            x += 1.37e-4;
        }
        assert!(worst <= 1.2e-7, "max |elu - expm1| {worst:e}");
        for tiny in [-1e-30f32, -1e-10, -1e-5, -0.0, 0.0] {
            assert!(
                (elu(tiny) as f64 - (tiny as f64).exp_m1()).abs() <= 1e-7,
                "{tiny}"
            );
        }
        assert_eq!(elu(-87.5), -1.0);
        assert_eq!(elu(f32::NEG_INFINITY), -1.0);
        assert_eq!(elu(2.5), 2.5);
        assert_eq!(elu(f32::INFINITY), f32::INFINITY);
        assert!(elu(f32::NAN).is_nan(), "NaN must reach the engine's check");
        let mut v = vec![f32::NAN, -1.0, 1.0];
        elu_in_place(&mut v);
        assert!(v[0].is_nan() && (v[1] as f64 - (-1.0f64).exp_m1()).abs() < 1e-7 && v[2] == 1.0);
    }

    /// The textbook RMSNorm2d + ELU in f64.
    fn naive_rms_norm_elu(x: &[f32], d: Dims, weight: &[f32]) -> Vec<f64> {
        let hw = d.plane();
        x.chunks(hw)
            .enumerate()
            .flat_map(|(i, plane)| {
                let ms = plane.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / hw as f64;
                let s = weight[i % d.c] as f64 / (ms + 1e-6).sqrt();
                plane.iter().map(move |&v| {
                    let y = v as f64 * s;
                    if y > 0.0 {
                        y
                    } else {
                        y.exp_m1()
                    }
                })
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(100))]
        /// Any shape, scale and weights: within 2e-6 (relative above 1) of
        /// the f64 reference, a few f32 ulp.
        #[test]
        fn rms_norm_elu_matches_naive(
            b in 1usize..=3, c in 1usize..=5, h in 1usize..=7, w in 1usize..=7,
            scale in proptest::prelude::prop::sample::select(vec![1e-4f32, 1.0, 300.0]),
            seed: u64,
        ) {
            let d = Dims::new(b, c, h, w);
            let mut s = seed | 1;
            let mut next = || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            };
            let x: Vec<f32> = (0..d.len()).map(|_| next() * scale).collect();
            let weight: Vec<f32> = (0..c).map(|_| next() * 2.0).collect();
            let want = naive_rms_norm_elu(&x, d, &weight);
            let mut got = x.clone();
            RmsNormElu::new(weight).forward(&mut got, d);
            for (i, (a, e)) in got.iter().zip(&want).enumerate() {
                proptest::prop_assert!((*a as f64 - e).abs() <= 2e-6 * e.abs().max(1.0), "at {i}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn rms_norm_divides_by_the_root_mean_square_of_each_plane() {
        // Plane 0: [3, -4] has mean square 12.5; plane 1 is all zeros, which
        // eps keeps finite (0 / sqrt(1e-6) = 0).
        let mut x = vec![3.0, -4.0, 0.0, 0.0];
        RmsNormElu::new(vec![2.0, 5.0]).forward(&mut x, Dims::new(1, 2, 1, 2));
        let r = (12.5f64 + 1e-6).sqrt();
        assert!((x[0] as f64 - 6.0 / r).abs() < 1e-6, "{}", x[0]);
        assert!((x[1] as f64 - (-8.0 / r).exp_m1()).abs() < 1e-6, "{}", x[1]);
        assert_eq!(&x[2..], &[0.0, 0.0]);
    }

    #[test]
    fn normalises_each_group_then_applies_elu() {
        // One image, 4 channels in 2 groups, 2 values per plane.
        let mut x = vec![1.0, 3.0, 5.0, 7.0, -2.0, -2.0, 2.0, 2.0];
        let layer = GroupNormElu::new(2, vec![1.0, 2.0, 1.0, 1.0], vec![0.0, 0.5, 0.0, -1.0]);
        layer.forward(&mut x, Dims::new(1, 4, 1, 2));
        let sd = (5.0f64 + 1e-5).sqrt();
        let z = |v: f64| (v - 4.0) / sd;
        let want = [z(1.0), z(3.0), 2.0 * z(5.0) + 0.5, 2.0 * z(7.0) + 0.5];
        for (a, e) in x[..4].iter().zip(want) {
            let e = if e > 0.0 { e } else { e.exp_m1() };
            assert!((*a as f64 - e).abs() < 1e-5, "{a} vs {e}");
        }
        let s2 = (4.0f64 + 1e-5).sqrt();
        assert!((x[4] as f64 - (-2.0 / s2).exp_m1()).abs() < 1e-5);
        assert!((x[7] as f64 - (2.0 / s2 - 1.0)).abs() < 1e-5);
    }
}
