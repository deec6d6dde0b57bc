//! GroupNorm and ELU, fused where the networks apply them back to back.

use rayon::prelude::*;

use super::plan::Dims;

/// PyTorch's GroupNorm epsilon default, which the reference modules keep.
const EPS: f64 = 1e-5;

/// `ELU(alpha = 1)` in place.
pub fn elu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(16 * 1024).for_each(|chunk| {
        chunk.iter_mut().for_each(|v| *v = elu(*v));
    });
}

#[inline]
fn elu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        v.exp_m1()
    }
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
                let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = chunk
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n;
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

#[cfg(test)]
mod tests {
    use super::*;

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
