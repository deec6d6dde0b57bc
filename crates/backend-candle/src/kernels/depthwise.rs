//! The grouped 3x3 convolution of deep_qca: each input channel feeds
//! `multiplier` output channels of its own (PyTorch `groups = in_channels`).

use rayon::prelude::*;

use super::plan::Dims;

/// `Conv2d(ci, ci * multiplier, 3, padding = 1, groups = ci, bias = False)`.
#[derive(Debug, Clone)]
pub struct Depthwise3x3 {
    ci: usize,
    multiplier: usize,
    /// PyTorch's `[ci * multiplier, 1, 3, 3]`, flattened.
    weight: Vec<f32>,
}

impl Depthwise3x3 {
    /// The layer from PyTorch-layout weights (lengths checked by the loader).
    pub fn new(ci: usize, multiplier: usize, weight: Vec<f32>) -> Self {
        assert_eq!(weight.len(), ci * multiplier * 9);
        Self {
            ci,
            multiplier,
            weight,
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.ci * self.multiplier
    }

    /// Convolves `x` (`d`, `d.c == ci`) into `out` (`d.with_c(ci * multiplier)`).
    pub fn forward(&self, x: &[f32], d: Dims, out: &mut [f32]) {
        assert_eq!(d.c, self.ci);
        let (h, w, hw) = (d.h, d.w, d.plane());
        let co = self.out_channels();
        out.par_chunks_mut(hw).enumerate().for_each(|(i, dst)| {
            let (img, o) = (i / co, i % co);
            let src = &x[(img * d.c + o / self.multiplier) * hw..][..hw];
            let k = &self.weight[o * 9..][..9];
            dst.fill(0.0);
            // Nine shifted, scaled adds over whole row spans: the compiler
            // vectorises these, unlike a per-pixel 3x3 gather.
            for ky in 0..3 {
                for kx in 0..3 {
                    let wk = k[ky * 3 + kx];
                    if wk == 0.0 {
                        continue;
                    }
                    for y in 0..h {
                        let sy = y + ky;
                        if sy == 0 || sy > h {
                            continue;
                        }
                        let s = &src[(sy - 1) * w..][..w];
                        let r = &mut dst[y * w..][..w];
                        let (r, s) = match kx {
                            0 => (&mut r[1..], &s[..w - 1]),
                            1 => (&mut r[..], s),
                            _ => (&mut r[..w - 1], &s[1..]),
                        };
                        r.iter_mut().zip(s).for_each(|(a, &v)| *a += wk * v);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_grouped_naive_conv() {
        let d = Dims::new(2, 3, 5, 4);
        let x: Vec<f32> = (0..d.len()).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
        let weight: Vec<f32> = (0..3 * 2 * 9)
            .map(|i| ((i * 13 % 7) as f32) * 0.5 - 1.0)
            .collect();
        let layer = Depthwise3x3::new(3, 2, weight.clone());
        let mut out = vec![f32::NAN; d.with_c(6).len()];
        layer.forward(&x, d, &mut out);
        for img in 0..2 {
            for o in 0..6 {
                let plane = &x[(img * 3 + o / 2) * 20..][..20];
                let one = Dims::new(1, 1, 5, 4);
                let want =
                    super::super::naive_conv2d(plane, one, &weight[o * 9..][..9], None, 1, 3);
                let got = &out[(img * 6 + o) * 20..][..20];
                for (a, e) in got.iter().zip(&want) {
                    assert!((a - e).abs() < 1e-5, "{a} vs {e}");
                }
            }
        }
    }
}
