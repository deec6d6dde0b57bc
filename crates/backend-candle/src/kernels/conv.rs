//! Stride-1 convolutions with `k x k` kernels (k = 1 or 3, "same" padding).
//!
//! A 3x3 convolution with enough channels runs by Winograd's F(2x2, 3x3)
//! (`winograd`); a narrow one is an im2col of one work item's columns
//! followed by one gemm against the `[co, ci * 9]` weight matrix; a 1x1
//! convolution is the gemm alone, reading the input in place.

use rayon::prelude::*;

use super::plan::{plan, target_columns, Dims, Item, SharedOut};
use super::scratch::with_scratch;
use super::winograd::{self, Rect, TilePlan};

/// Fewest input and output channels for the Winograd path. Below that the
/// gemms are too small to gain from doing fewer multiplications, and the
/// transforms dominate.
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// A `Conv2d(ci, co, k, padding = k / 2)` with optional bias.
#[derive(Debug, Clone)]
pub struct Conv2d {
    co: usize,
    ci: usize,
    k: usize,
    /// PyTorch's `[co, ci, k, k]` flattened: row `o` of a `[co, ci * k * k]` matrix.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// Winograd-transformed weights (16 `[co, ci]` matrices), for wide 3x3s.
    winograd: Option<Vec<f32>>,
}

impl Conv2d {
    /// A convolution from PyTorch-layout weights; `k` must be 1 or 3.
    ///
    /// The weight loader has checked the lengths; this only asserts them.
    pub fn new(co: usize, ci: usize, k: usize, weight: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        assert!(k == 1 || k == 3, "only 1x1 and 3x3 kernels are supported");
        assert_eq!(weight.len(), co * ci * k * k);
        assert!(bias.as_ref().is_none_or(|b| b.len() == co));
        let wide = ci >= WINOGRAD_MIN_CHANNELS && co >= WINOGRAD_MIN_CHANNELS;
        let winograd = (k == 3 && wide).then(|| winograd::transform_weights(&weight, co, ci));
        Self {
            co,
            ci,
            k,
            weight,
            bias,
            winograd,
        }
    }

    /// The same convolution on the Winograd path (`true`) or im2col (`false`),
    /// whatever the channel counts: for tests.
    #[cfg(test)]
    pub(crate) fn with_winograd(mut self, on: bool) -> Self {
        self.winograd = (on && self.k == 3)
            .then(|| winograd::transform_weights(&self.weight, self.co, self.ci));
        self
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.co
    }

    /// Convolves `x` (`d`, with `d.c == ci`) into `out` (`d.with_c(co)`).
    ///
    /// Must run inside the backend's rayon pool.
    pub fn forward(&self, x: &[f32], d: Dims, out: &mut [f32]) {
        let target = if self.winograd.is_some() {
            winograd::target_columns(d.plane())
        } else {
            target_columns(self.depth())
        };
        self.forward_with(x, d, out, target, winograd::TILE_BLOCK);
    }

    /// Whether [`Conv2d::forward_interior`] can run: a 3x3 on the Winograd
    /// path (the im2col and 1x1 paths compute every output cell).
    pub fn has_interior(&self) -> bool {
        self.winograd.is_some()
    }

    /// The interior of [`Conv2d::forward`]'s output without its outer
    /// `margin` rows and columns, into `out` (`[b, co, h - 2 margin, w - 2
    /// margin]`), computing only those cells: for a batch of fields whose
    /// halo the caller drops. Needs [`Conv2d::has_interior`].
    ///
    /// Must run inside the backend's rayon pool.
    pub fn forward_interior(&self, x: &[f32], d: Dims, margin: usize, out: &mut [f32]) {
        assert!(
            self.has_interior(),
            "forward_interior needs the Winograd path"
        );
        let plane = (d.h - 2 * margin) * (d.w - 2 * margin);
        let target = winograd::target_columns(plane);
        self.forward_planned(x, d, margin, out, target, winograd::TILE_BLOCK);
    }

    fn depth(&self) -> usize {
        self.ci * self.k * self.k
    }

    /// [`Conv2d::forward`] with an explicit work-item width and Winograd
    /// column block, so tests can drive every item kind on small shapes.
    pub(crate) fn forward_with(
        &self,
        x: &[f32],
        d: Dims,
        out: &mut [f32],
        target: usize,
        block: usize,
    ) {
        self.forward_planned(x, d, 0, out, target, block);
    }

    /// The output's interior without `margin` rows and columns (0: all of
    /// it; more only on the Winograd path), in work items of about `target`
    /// output columns; on the Winograd path the tile columns past a
    /// multiple of `block` in items of their own.
    fn forward_planned(
        &self,
        x: &[f32],
        d: Dims,
        margin: usize,
        out: &mut [f32],
        target: usize,
        block: usize,
    ) {
        assert_eq!(d.c, self.ci);
        assert_eq!(x.len(), d.len());
        assert!(margin == 0 || self.winograd.is_some());
        // The output cells: the work items cut these.
        let od = Dims::new(d.b, self.co, d.h - 2 * margin, d.w - 2 * margin);
        assert_eq!(out.len(), od.len());
        let threads = rayon::current_num_threads();
        let dst = SharedOut(out.as_mut_ptr());
        if let Some(u) = &self.winograd {
            let plan = TilePlan::new(od, target, threads, block);
            (0..plan.len())
                .into_par_iter()
                .for_each(|i| self.winograd(x, d, margin, &plan.item(i), u, dst));
            return;
        }
        let plan = plan(od, target, threads);
        (0..plan.len())
            .into_par_iter()
            .for_each(|i| match plan.item(i) {
                Item::Band { img, r0, r1 } => self.band(x, d, img, r0, r1, dst),
                Item::Images { i0, i1 } => self.images(x, d, i0, i1, dst),
            });
    }

    /// Rows `r0..r1` of one image by im2col and gemm, written straight into
    /// the output planes.
    fn band(&self, x: &[f32], d: Dims, img: usize, r0: usize, r1: usize, out: SharedOut) {
        let (hw, n) = (d.plane(), (r1 - r0) * d.w);
        let xi = &x[img * d.image()..][..d.image()];
        let base = img * self.co * hw + r0 * d.w;
        // SAFETY: item (img, r0..r1) owns columns r0*w..r1*w of image img's
        // planes; `plan` gives each (img, row) to exactly one item.
        let dst = unsafe { out.0.add(base) };
        if let Some(bias) = &self.bias {
            for (o, &b) in bias.iter().enumerate() {
                // SAFETY: as above; this row lies inside `out`.
                unsafe { std::slice::from_raw_parts_mut(dst.add(o * hw), n) }.fill(b);
            }
        }
        let read_dst = self.bias.is_some();
        if self.k == 1 {
            // SAFETY: lhs is [co, ci] row-major, rhs [ci, n] with row stride hw
            // inside `xi`, dst [co, n] with row stride hw inside `out`.
            unsafe {
                matmul(
                    self.co,
                    n,
                    self.ci,
                    (dst, hw),
                    read_dst,
                    &self.weight,
                    (xi[r0 * d.w..].as_ptr(), hw),
                )
            };
            return;
        }
        let depth = self.depth();
        with_scratch(depth * n, 0, |col, _| {
            im2col3(xi, d, r0, r1, col, n, 0);
            // SAFETY: col is [depth, n] row-major; dst as above.
            unsafe {
                matmul(
                    self.co,
                    n,
                    depth,
                    (dst, hw),
                    read_dst,
                    &self.weight,
                    (col.as_ptr(), n),
                )
            };
        });
    }

    /// The tiles of `rect` by Winograd (`winograd::band`), without `margin`
    /// rows and columns around the output.
    fn winograd(&self, x: &[f32], d: Dims, margin: usize, rect: &Rect, u: &[f32], out: SharedOut) {
        let (a, b) = winograd::scratch_len(self.ci, self.co, rect);
        with_scratch(a, b, |v, rest| {
            // SAFETY: the plan gives these tiles to this item alone.
            unsafe {
                winograd::band(
                    x,
                    d,
                    margin,
                    rect,
                    u,
                    self.co,
                    self.bias.as_deref(),
                    out.0,
                    v,
                    rest,
                )
            }
        });
    }

    /// Whole images `i0..i1` gathered into one gemm, then scattered back.
    fn images(&self, x: &[f32], d: Dims, i0: usize, i1: usize, out: SharedOut) {
        let (hw, depth) = (d.plane(), self.depth());
        let n = (i1 - i0) * hw;
        with_scratch(depth * n, self.co * n, |col, res| {
            for (j, img) in (i0..i1).enumerate() {
                let xi = &x[img * d.image()..][..d.image()];
                if self.k == 1 {
                    for c in 0..self.ci {
                        col[c * n + j * hw..][..hw].copy_from_slice(&xi[c * hw..][..hw]);
                    }
                } else {
                    im2col3(xi, d, 0, d.h, col, n, j * hw);
                }
            }
            // SAFETY: col is [depth, n], res [co, n], both row-major.
            unsafe {
                matmul(
                    self.co,
                    n,
                    depth,
                    (res.as_mut_ptr(), n),
                    false,
                    &self.weight,
                    (col.as_ptr(), n),
                )
            };
            for (j, img) in (i0..i1).enumerate() {
                for o in 0..self.co {
                    // SAFETY: images i0..i1 belong to this item alone.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.0.add((img * self.co + o) * hw), hw)
                    };
                    let src = &res[o * n + j * hw..][..hw];
                    let b = self.bias.as_ref().map_or(0.0, |b| b[o]);
                    dst.iter_mut().zip(src).for_each(|(y, &s)| *y = s + b);
                }
            }
        });
    }
}

/// Writes the 3x3, padding-1 patches of rows `r0..r1` of one image `xi` into
/// `col` (`[c * 9, stride]` row-major) from column `offset` on.
///
/// Each tap's row is the band shifted by one flat offset, so it is one
/// contiguous copy plus zeroed borders: per-row copies of an 18-wide tile
/// would spend more time in `memmove` calls than in the gemm.
fn im2col3(
    xi: &[f32],
    d: Dims,
    r0: usize,
    r1: usize,
    col: &mut [f32],
    stride: usize,
    offset: usize,
) {
    let (w, hw) = (d.w as isize, d.plane() as isize);
    let n = (r1 - r0) * d.w;
    let first = (r0 * d.w) as isize;
    for c in 0..d.c {
        let plane = &xi[c * d.plane()..][..d.plane()];
        for ky in 0..3isize {
            for kx in 0..3isize {
                let tap = (c * 9 + (ky * 3 + kx) as usize) * stride + offset;
                let dst = &mut col[tap..][..n];
                // dst[j] = plane[first + j + shift] where that index is in the plane.
                let shift = (ky - 1) * w + (kx - 1);
                let lo = (-(first + shift)).clamp(0, n as isize) as usize;
                let hi = (hw - first - shift).clamp(lo as isize, n as isize) as usize;
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                if hi > lo {
                    let src = (first + shift + lo as isize) as usize;
                    dst[lo..hi].copy_from_slice(&plane[src..src + (hi - lo)]);
                }
                // The flat shift wraps a row's neighbour in from the next or
                // previous row: those are padding, and so are rows outside
                // the image (only reachable at the band's ends).
                match kx {
                    0 => dst.iter_mut().step_by(d.w).for_each(|v| *v = 0.0),
                    2 => dst[d.w - 1..]
                        .iter_mut()
                        .step_by(d.w)
                        .for_each(|v| *v = 0.0),
                    _ => {}
                }
                if ky == 0 && r0 == 0 {
                    dst[..d.w].fill(0.0);
                }
                if ky == 2 && r1 == d.h {
                    dst[n - d.w..].fill(0.0);
                }
            }
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] * rhs[k, n]`, single-threaded (parallelism
/// comes from the work items). Matrices are given as (pointer, row stride)
/// with unit column stride; `lhs` is dense row-major.
///
/// # Safety
/// `dst` and `rhs` must be valid for the rows and columns described.
pub(super) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize),
    read_dst: bool,
    lhs: &[f32],
    rhs: (*const f32, usize),
) {
    debug_assert!(lhs.len() >= m * k);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            for r in 0..m {
                std::slice::from_raw_parts_mut(dst.0.add(r * dst.1), n).fill(0.0);
            }
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        1,
        dst.1 as isize,
        read_dst,
        lhs.as_ptr(),
        1,
        k as isize,
        rhs.0,
        1,
        rhs.1 as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// The textbook convolution, for tests: `weight` `[co, ci, k, k]`, padding `k / 2`.
#[cfg(test)]
pub fn naive_conv2d(
    x: &[f32],
    d: Dims,
    weight: &[f32],
    bias: Option<&[f32]>,
    co: usize,
    k: usize,
) -> Vec<f32> {
    let p = (k / 2) as isize;
    let mut out = vec![0.0f32; d.b * co * d.plane()];
    for b in 0..d.b {
        for o in 0..co {
            for y in 0..d.h {
                for xx in 0..d.w {
                    let mut acc = bias.map_or(0.0, |bs| bs[o]) as f64;
                    for c in 0..d.c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let sy = y as isize + ky as isize - p;
                                let sx = xx as isize + kx as isize - p;
                                if sy < 0 || sx < 0 || sy >= d.h as isize || sx >= d.w as isize {
                                    continue;
                                }
                                let v = x[((b * d.c + c) * d.h + sy as usize) * d.w + sx as usize];
                                acc += (v * weight[((o * d.c + c) * k + ky) * k + kx]) as f64;
                            }
                        }
                    }
                    out[((b * co + o) * d.h + y) * d.w + xx] = acc as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(seed: u64, n: usize) -> Vec<f32> {
        // A small LCG: reproducible values in [-1, 1) without a rand dependency.
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn fast_conv_equals_naive_conv(
            b in 1usize..=3, ci in 1usize..=6, co in 1usize..=6, h in 1usize..=9, w in 1usize..=9,
            k in prop::sample::select(vec![1usize, 3]), with_bias: bool, winograd: bool,
            target in prop::sample::select(vec![1usize, 5, 40, 100, 4096]),
            block in prop::sample::select(vec![1usize, 2, 3, 16]), seed: u64,
        ) {
            let d = Dims::new(b, ci, h, w);
            let x = values(seed, d.len());
            let weight = values(seed ^ 1, co * ci * k * k);
            let bias = with_bias.then(|| values(seed ^ 2, co));
            let conv = Conv2d::new(co, ci, k, weight.clone(), bias.clone()).with_winograd(winograd);
            let mut out = vec![f32::NAN; d.with_c(co).len()];
            pool().install(|| conv.forward_with(&x, d, &mut out, target, block));
            let want = naive_conv2d(&x, d, &weight, bias.as_deref(), co, k);
            for (i, (a, e)) in out.iter().zip(&want).enumerate() {
                prop_assert!((a - e).abs() <= 1e-4, "at {i}: fast {a} naive {e}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// The interior path computes, for every cell it keeps, what the
        /// whole convolution does there: odd and even sizes, margins up to
        /// the largest that leaves a cell, both work-item kinds, with and
        /// without the tile columns past a block apart.
        #[test]
        fn interior_equals_the_naive_convs_interior(
            b in 1usize..=3, ci in 1usize..=5, co in 1usize..=5, h in 3usize..=12, w in 3usize..=12,
            margin_pick in 1usize..=5, with_bias: bool,
            target in prop::sample::select(vec![1usize, 5, 40, 100, 4096]),
            block in prop::sample::select(vec![1usize, 2, 3, 16]), seed: u64,
        ) {
            let margin = margin_pick.min((h.min(w) - 1) / 2);
            let d = Dims::new(b, ci, h, w);
            let x = values(seed, d.len());
            let weight = values(seed ^ 1, co * ci * 9);
            let bias = with_bias.then(|| values(seed ^ 2, co));
            let conv = Conv2d::new(co, ci, 3, weight.clone(), bias.clone()).with_winograd(true);
            prop_assert!(conv.has_interior());
            let (ih, iw) = (h - 2 * margin, w - 2 * margin);
            let mut out = vec![f32::NAN; b * co * ih * iw];
            pool().install(|| conv.forward_planned(&x, d, margin, &mut out, target, block));
            let want = naive_conv2d(&x, d, &weight, bias.as_deref(), co, 3);
            for (i, &a) in out.iter().enumerate() {
                let (plane, y, xx) = (i / (ih * iw), i / iw % ih, i % iw);
                let e = want[(plane * h + y + margin) * w + xx + margin];
                prop_assert!((a - e).abs() <= 1e-4, "at {i}: interior {a} naive {e}");
            }
        }
    }

    /// A narrow 3x3 (im2col) and a 1x1 compute every cell: no interior path.
    #[test]
    fn only_the_winograd_path_has_an_interior() {
        let conv = |ci, k| Conv2d::new(ci, ci, k, vec![0.5; ci * ci * k * k], None);
        assert!(conv(WINOGRAD_MIN_CHANNELS, 3).has_interior());
        assert!(!conv(WINOGRAD_MIN_CHANNELS - 1, 3).has_interior());
        assert!(!conv(WINOGRAD_MIN_CHANNELS, 1).has_interior());
    }

    /// The textbook convolution in f64 (inputs as given in f32): the
    /// reference both PyTorch's and our f32 errors are measured against.
    fn conv2d_f64(x: &[f32], d: Dims, weight: &[f32], bias: &[f32], co: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; co * d.plane()];
        for o in 0..co {
            for y in 0..d.h {
                for xx in 0..d.w {
                    let mut acc = bias[o] as f64;
                    for c in 0..d.c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (sy, sx) = ((y + ky) as isize - 1, (xx + kx) as isize - 1);
                                if sy < 0 || sx < 0 || sy >= d.h as isize || sx >= d.w as isize {
                                    continue;
                                }
                                let v = x[(c * d.h + sy as usize) * d.w + sx as usize] as f64;
                                acc += v * weight[((o * d.c + c) * 3 + ky) * 3 + kx] as f64;
                            }
                        }
                    }
                    out[(o * d.h + y) * d.w + xx] = acc;
                }
            }
        }
        out
    }

    /// Our f32 convolution (Winograd F(2x2, 3x3) and im2col) is at most twice
    /// PyTorch's own f32 error against f64, max and mean, on the inputs and
    /// PyTorch figures of `tests/fixtures/conv_error.json`
    /// (`python/make_conv_error.py`).
    #[test]
    fn f32_error_is_within_twice_pytorchs() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/conv_error.json"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() >= 2);
        for case in cases {
            let n = |k: &str| case[k].as_u64().unwrap() as usize;
            let f = |k: &str| case[k].as_f64().unwrap();
            let (ci, co, h, w, seed) = (n("ci"), n("co"), n("h"), n("w"), n("seed") as u64);
            let bound = f("bound") as f32;
            let uniform =
                |s: u64, len: usize, b: f32| sparse_grid::rng::Rng::new(s).uniform_vec(len, -b, b);
            let x = uniform(seed, ci * h * w, 1.0);
            let weight = uniform(seed + 1, co * ci * 9, bound);
            let bias = uniform(seed + 2, co, bound);
            // The same inputs as PyTorch's (sums in f64 of the same f32 values).
            let sum = |v: &[f32]| v.iter().map(|&a| a as f64).sum::<f64>();
            assert!((sum(&x) - f("x_sum")).abs() <= 1e-9 * f("x_sum").abs().max(1.0));
            assert!(
                (sum(&weight) - f("weight_sum")).abs() <= 1e-9 * f("weight_sum").abs().max(1.0)
            );
            let d = Dims::new(1, ci, h, w);
            let want = conv2d_f64(&x, d, &weight, &bias, co);
            // Our f64 reference is PyTorch's.
            let y64_sum: f64 = want.iter().sum();
            assert!((y64_sum - f("y64_sum")).abs() <= 1e-9 * f("y64_sum").abs().max(1.0));
            let (torch_max, torch_mean) = (f("torch_f32_max_abs_err"), f("torch_f32_mean_abs_err"));
            for winograd in [true, false] {
                let conv = Conv2d::new(co, ci, 3, weight.clone(), Some(bias.clone()))
                    .with_winograd(winograd);
                let mut out = vec![f32::NAN; d.with_c(co).len()];
                pool().install(|| conv.forward(&x, d, &mut out));
                let err: Vec<f64> = out
                    .iter()
                    .zip(&want)
                    .map(|(&a, e)| (a as f64 - e).abs())
                    .collect();
                let max = err.iter().cloned().fold(0.0, f64::max);
                let mean = err.iter().sum::<f64>() / err.len() as f64;
                let name = case["name"].as_str().unwrap();
                eprintln!(
                    "{name} winograd={winograd}: max {max:.3e} ({:.2}x torch), mean {mean:.3e} ({:.2}x torch)",
                    max / torch_max,
                    mean / torch_mean
                );
                assert!(
                    max <= 2.0 * torch_max,
                    "{name} winograd={winograd}: max error {max:.3e} > 2 x torch's {torch_max:.3e}"
                );
                assert!(mean <= 2.0 * torch_mean, "{name} winograd={winograd}: mean error {mean:.3e} > 2 x torch's {torch_mean:.3e}");
            }
        }
    }

    /// The sparse engine's strip of 8 tiles with room for two halos (18 x
    /// 132, margin 1: 65 tiles a row), whose 65th tile column is computed
    /// in items of its own, through the default plan.
    #[test]
    fn a_strip_with_a_tile_column_past_the_block_matches_naive() {
        let d = Dims::new(3, 16, 18, 132);
        let x = values(10, d.len());
        let weight = values(11, 16 * 16 * 9);
        let bias = values(12, 16);
        let conv = Conv2d::new(16, 16, 3, weight.clone(), Some(bias.clone()));
        let mut out = vec![f32::NAN; 3 * 16 * 16 * 130];
        pool().install(|| conv.forward_interior(&x, d, 1, &mut out));
        let want = naive_conv2d(&x, d, &weight, Some(&bias), 16, 3);
        for (i, &a) in out.iter().enumerate() {
            let (plane, y, xx) = (i / (16 * 130), i / 130 % 16, i % 130);
            let e = want[(plane * 18 + y + 1) * 132 + xx + 1];
            assert!((a - e).abs() <= 1e-4, "at {i}: interior {a} naive {e}");
        }
    }

    #[test]
    fn default_plan_matches_naive_on_a_wide_conv() {
        let d = Dims::new(2, 20, 33, 17);
        let x = values(7, d.len());
        let weight = values(8, 24 * 20 * 9);
        let bias = values(9, 24);
        let conv = Conv2d::new(24, 20, 3, weight.clone(), Some(bias.clone()));
        let mut out = vec![0.0; d.with_c(24).len()];
        pool().install(|| conv.forward(&x, d, &mut out));
        let want = naive_conv2d(&x, d, &weight, Some(&bias), 24, 3);
        for (a, e) in out.iter().zip(&want) {
            assert!((a - e).abs() <= 1e-4, "fast {a} naive {e}");
        }
    }
}
