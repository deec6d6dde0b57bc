//! The U-Net's resolution changes: 2x2 max pooling down, a stride-2 2x2
//! transposed convolution up.

use rayon::prelude::*;

use super::conv::matmul;
use super::plan::{plan, target_columns, Dims, Item, SharedOut};
use super::scratch::with_scratch;

/// `MaxPool2d(2)`: `x` (`d`, even h and w) into `out` (`b, c, h/2, w/2`).
pub fn max_pool2(x: &[f32], d: Dims, out: &mut [f32]) {
    let (h2, w2, hw) = (d.h / 2, d.w / 2, d.plane());
    out.par_chunks_mut((h2 * w2).max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            let src = &x[i * hw..][..hw];
            for y in 0..h2 {
                let (a, b) = (&src[2 * y * d.w..][..d.w], &src[(2 * y + 1) * d.w..][..d.w]);
                for (xo, o) in dst[y * w2..][..w2].iter_mut().enumerate() {
                    *o = a[2 * xo]
                        .max(a[2 * xo + 1])
                        .max(b[2 * xo])
                        .max(b[2 * xo + 1]);
                }
            }
        });
}

/// `ConvTranspose2d(ci, co, kernel_size = 2, stride = 2)` with bias.
///
/// Each input pixel spreads into its own 2x2 output block, so the layer is a
/// gemm `[co * 4, ci] x [ci, pixels]` and a scatter.
#[derive(Debug, Clone)]
pub struct ConvTranspose2x2 {
    ci: usize,
    co: usize,
    /// `[co * 4, ci]` row-major: row `o * 4 + a * 2 + c` is tap (a, c) of channel o.
    weight_t: Vec<f32>,
    bias: Vec<f32>,
}

impl ConvTranspose2x2 {
    /// The layer from PyTorch's `[ci, co, 2, 2]` weight and `[co]` bias.
    pub fn new(ci: usize, co: usize, weight: &[f32], bias: Vec<f32>) -> Self {
        assert_eq!(weight.len(), ci * co * 4);
        assert_eq!(bias.len(), co);
        let mut weight_t = vec![0.0; weight.len()];
        for i in 0..ci {
            for r in 0..co * 4 {
                weight_t[r * ci + i] = weight[i * co * 4 + r];
            }
        }
        Self {
            ci,
            co,
            weight_t,
            bias,
        }
    }

    /// Upsamples `x` (`d`, `d.c == ci`) into channels `0..co` of `out`, whose
    /// images are `out_image` floats apart (so the result can land directly in
    /// the first half of a concatenation buffer) with planes `2h x 2w`.
    pub fn forward(&self, x: &[f32], d: Dims, out: &mut [f32], out_image: usize) {
        assert_eq!(d.c, self.ci);
        assert!(out_image >= self.co * 4 * d.plane());
        assert!(out.len() >= d.b * out_image);
        let items = plan(d, target_columns(self.ci), rayon::current_num_threads());
        let dst = SharedOut(out.as_mut_ptr());
        items.par_iter().for_each(|item| {
            let (imgs, r0, r1) = match *item {
                Item::Band { img, r0, r1 } => (img..img + 1, r0, r1),
                Item::Images { i0, i1 } => (i0..i1, 0, d.h),
            };
            for img in imgs {
                self.band(x, d, img, r0, r1, dst, out_image);
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn band(
        &self,
        x: &[f32],
        d: Dims,
        img: usize,
        r0: usize,
        r1: usize,
        out: SharedOut,
        out_image: usize,
    ) {
        let (hw, w, n) = (d.plane(), d.w, (r1 - r0) * d.w);
        let m = self.co * 4;
        let src = &x[img * d.image() + r0 * w..];
        let (oh, ow) = (2 * d.h, 2 * d.w);
        with_scratch(0, m * n, |_, res| {
            // SAFETY: rhs is [ci, n] with row stride hw inside x; res is [m, n].
            unsafe {
                matmul(
                    m,
                    n,
                    self.ci,
                    (res.as_mut_ptr(), n),
                    false,
                    &self.weight_t,
                    (src.as_ptr(), hw),
                )
            };
            for o in 0..self.co {
                let b = self.bias[o];
                // SAFETY: output rows 2*r0..2*r1 of image img, channel o, are
                // written by this item only.
                let plane = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.0.add(img * out_image + o * oh * ow),
                        oh * ow,
                    )
                };
                for a in 0..2 {
                    for c in 0..2 {
                        let taps = &res[(o * 4 + a * 2 + c) * n..][..n];
                        for (ri, y) in (r0..r1).enumerate() {
                            let row = &mut plane[(2 * y + a) * ow..][..ow];
                            for (xx, &v) in taps[ri * w..][..w].iter().enumerate() {
                                row[2 * xx + c] = v + b;
                            }
                        }
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
    fn pools_the_max_of_each_block() {
        let x: Vec<f32> = (0..16).map(|v| ((v * 7) % 16) as f32).collect();
        let mut out = vec![0.0; 4];
        max_pool2(&x, Dims::new(1, 1, 4, 4), &mut out);
        let want: Vec<f32> = [(0, 0), (0, 2), (2, 0), (2, 2)]
            .iter()
            .map(|&(y, xx)| {
                [
                    x[y * 4 + xx],
                    x[y * 4 + xx + 1],
                    x[(y + 1) * 4 + xx],
                    x[(y + 1) * 4 + xx + 1],
                ]
                .into_iter()
                .fold(f32::MIN, f32::max)
            })
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn transposed_conv_matches_its_definition() {
        let (b, ci, co, h, w) = (2, 3, 2, 3, 2);
        let d = Dims::new(b, ci, h, w);
        let x: Vec<f32> = (0..d.len()).map(|i| (i as f32 * 0.37).sin()).collect();
        let weight: Vec<f32> = (0..ci * co * 4).map(|i| (i as f32 * 0.91).cos()).collect();
        let bias = vec![0.25, -0.5];
        let layer = ConvTranspose2x2::new(ci, co, &weight, bias.clone());
        let image = co * 4 * h * w;
        let mut out = vec![f32::NAN; b * image];
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| layer.forward(&x, d, &mut out, image));
        for n in 0..b {
            for o in 0..co {
                for y in 0..2 * h {
                    for xx in 0..2 * w {
                        let mut e = bias[o];
                        for i in 0..ci {
                            e += x[((n * ci + i) * h + y / 2) * w + xx / 2]
                                * weight[((i * co + o) * 2 + y % 2) * 2 + xx % 2];
                        }
                        let a = out[((n * co + o) * 2 * h + y) * 2 * w + xx];
                        assert!((a - e).abs() < 1e-5, "{a} vs {e}");
                    }
                }
            }
        }
    }
}
