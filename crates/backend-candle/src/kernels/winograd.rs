//! 3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3).
//!
//! Each 2 x 2 block of outputs is computed from the 4 x 4 input patch around
//! it as `A^T [ (G g G^T) .* (B^T d B) ] A`: the 9 products per output and
//! input channel of a direct convolution become 16 per four outputs, 2.25x
//! fewer multiplications. The element-wise products over channels are 16
//! independent matrix products `M_k = U_k V_k` (`U_k`: `[co, ci]` transformed
//! weights, computed once at load; `V_k`: `[ci, tiles]` transformed inputs),
//! which run on the same `gemm` kernel as the im2col path. The transforms
//! only add and halve, so the result differs from a direct convolution by a
//! few float32 roundings (tested against the textbook convolution).

// The transforms index several equal-length rows with one counter; that
// reads as the formulas do and vectorises as well as zipped iterators.
#![allow(clippy::needless_range_loop)]

use super::conv::matmul;
use super::plan::Dims;

/// Values in one transformed tile.
const T: usize = 16;

/// `U = G g G^T` for every (output, input) channel pair, laid out as 16
/// matrices `[co, ci]`: `u[k * co * ci + o * ci + c]`. `weight` is PyTorch's
/// `[co, ci, 3, 3]`.
pub fn transform_weights(weight: &[f32], co: usize, ci: usize) -> Vec<f32> {
    assert_eq!(weight.len(), co * ci * 9);
    let mut u = vec![0.0f32; T * co * ci];
    for o in 0..co {
        for c in 0..ci {
            let g = &weight[(o * ci + c) * 9..][..9];
            // G g: 4 x 3, with G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
            let mut gg = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (a, b, e) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = 0.5 * (a + b + e);
                gg[2][j] = 0.5 * (a - b + e);
                gg[3][j] = e;
            }
            // (G g) G^T: 4 x 4.
            for (i, row) in gg.iter().enumerate() {
                let (a, b, e) = (row[0], row[1], row[2]);
                let out = [a, 0.5 * (a + b + e), 0.5 * (a - b + e), e];
                for (j, v) in out.into_iter().enumerate() {
                    u[((i * 4 + j) * co + o) * ci + c] = v;
                }
            }
        }
    }
    u
}

/// Output columns (pixels) per work item: about 64 tiles. Larger items let
/// the 16 transformed matrices spill out of cache between the transforms and
/// the gemms (measured, 128 channels at 128 x 128 on 2 threads: 15 ms per
/// convolution with 256 columns, 34 ms with 1024).
const TARGET_COLUMNS: usize = 256;

/// Output columns per work item for images of `plane` pixels: about 64
/// tiles, or two whole images when an image holds fewer than two such items,
/// so a batch of small images (the sparse engine's 18 x 18 tiles) is neither
/// cut into bands of a few rows, whose tiny gemms cost more than they
/// compute, nor run one image at a time (measured, 64 images of 128 x 18 x
/// 18: 20.6 ms with one image per item, 19.4 ms with two, 19.8 ms with three).
pub fn target_columns(plane: usize) -> usize {
    if plane < 2 * TARGET_COLUMNS {
        (2 * plane).max(TARGET_COLUMNS)
    } else {
        TARGET_COLUMNS
    }
}

/// Floats of scratch [`band`] needs for `rows` output rows of width `w` (the
/// output's: the input's less twice the margin) in
/// each of `images` images:
/// (transformed inputs, transformed outputs plus the row buffers).
pub fn scratch_len(ci: usize, co: usize, images: usize, rows: usize, w: usize) -> (usize, usize) {
    let tiles = images * rows.div_ceil(2) * w.div_ceil(2);
    (T * ci * tiles, T * co * tiles + 12 * (w.div_ceil(2) + 1))
}

/// Output rows `r0..r1` of each image in `images` of the batch `x` (`d`,
/// `d.c == ci`), into `out`, the output batch; `u` holds the transformed
/// weights. With a `margin` of m the output is the interior of the "same"
/// convolution without its outer m rows and columns (`[b, co, h - 2m,
/// w - 2m]`, output cell (y, x) centred on input cell (y + m, x + m)), so
/// the tiles of the margin are never computed; 0 is the whole output. Adds `bias` when given, else writes. Several whole
/// images make one item when they are small (the sparse engine's tiles), so
/// the gemms are wide enough to pay for packing their weights.
///
/// Every loop runs along a row of tiles, over contiguous memory, so it
/// vectorises: input rows are split into even and odd columns (a tile at
/// `2t` reads columns `2t - 1 .. 2t + 2`, i.e. odd `t - 1`, even `t`, odd
/// `t`, even `t + 1` in image columns), and each transformed value of a row
/// of tiles is one contiguous run of the 16 matrices.
///
/// # Safety
/// `out` must be valid for the whole output batch, and no other thread may
/// touch rows `r0..r1` of these images' planes meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn band(
    x: &[f32],
    d: Dims,
    margin: usize,
    images: std::ops::Range<usize>,
    r0: usize,
    r1: usize,
    u: &[f32],
    co: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    v: &mut [f32],
    rest: &mut [f32],
) {
    let (ci, w, hw) = (d.c, d.w, d.plane());
    // Output columns and cells per plane.
    let (ow, ohw) = (w - 2 * margin, (d.h - 2 * margin) * (w - 2 * margin));
    let (nx, ny) = (ow.div_ceil(2), (r1 - r0).div_ceil(2));
    let tiles = images.len() * ny * nx;
    let (m, rows) = rest.split_at_mut(T * co * tiles);
    let rows = &mut rows[..12 * (nx + 1)];
    // Per input row i of a tile row: `a[i]` holds padded columns 2t (image
    // column 2t - 1 + margin) and `b[i]` padded columns 2t + 1 (image column
    // 2t + margin), for t in 0..=nx; zeros outside the image.
    let len = nx + 1;
    let (a, b) = rows[..8 * len].split_at_mut(4 * len);
    // (`rows` has 12 rows of `len`: these 8 for the inputs, and 8 plus 4
    // for the output transform once the inputs are done.)

    for c in 0..ci {
        for (li, img) in images.clone().enumerate() {
            let plane = &x[img * d.image() + c * hw..][..hw];
            for ty in 0..ny {
                let top = (r0 + 2 * ty + margin) as isize - 1;
                for i in 0..4 {
                    let (ai, bi) = (&mut a[i * len..][..len], &mut b[i * len..][..len]);
                    let y = top + i as isize;
                    if y < 0 || y as usize >= d.h {
                        ai.fill(0.0);
                        bi.fill(0.0);
                        continue;
                    }
                    let src = &plane[y as usize * w..][..w];
                    ai.fill(0.0);
                    bi.fill(0.0);
                    // The row's pairs of image columns from column
                    // margin - 1 on: without a margin the padding zero comes
                    // first, so they fill (bi[k], ai[k + 1]); with one they
                    // start inside the row and fill (ai[k], bi[k]). Zeros
                    // past the row.
                    let (first, second, row): (&mut [f32], &mut [f32], &[f32]) = if margin == 0 {
                        (bi, &mut ai[1..], src)
                    } else {
                        (ai, bi, &src[margin - 1..])
                    };
                    let pairs = row.chunks_exact(2);
                    if let (Some(&last), Some(slot)) =
                        (pairs.remainder().first(), first.get_mut(row.len() / 2))
                    {
                        *slot = last;
                    }
                    for ((p, q), pair) in first.iter_mut().zip(second.iter_mut()).zip(pairs) {
                        *p = pair[0];
                        *q = pair[1];
                    }
                }
                // B^T d down the columns: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
                for half in [&mut *a, &mut *b] {
                    let (r01, r23) = half.split_at_mut(2 * len);
                    let (p0, p1) = r01.split_at_mut(len);
                    let (p2, p3) = r23.split_at_mut(len);
                    for t in 0..len {
                        let (d0, d1, d2, d3) = (p0[t], p1[t], p2[t], p3[t]);
                        p0[t] = d0 - d2;
                        p1[t] = d1 + d2;
                        p2[t] = d2 - d1;
                        p3[t] = d1 - d3;
                    }
                }
                // ... B across them: patch columns (odd t-1, even t, odd t, even t+1)
                // = (a[t], b[t], a[t+1], b[t+1]).
                let at = c * tiles + (li * ny + ty) * nx;
                for r in 0..4 {
                    let (ar, br) = (&a[r * len..][..len], &b[r * len..][..len]);
                    let base = |j: usize| (r * 4 + j) * ci * tiles + at;
                    let o0 = &mut v[base(0)..][..nx];
                    for t in 0..nx {
                        o0[t] = ar[t] - ar[t + 1];
                    }
                    let o1 = &mut v[base(1)..][..nx];
                    for t in 0..nx {
                        o1[t] = br[t] + ar[t + 1];
                    }
                    let o2 = &mut v[base(2)..][..nx];
                    for t in 0..nx {
                        o2[t] = ar[t + 1] - br[t];
                    }
                    let o3 = &mut v[base(3)..][..nx];
                    for t in 0..nx {
                        o3[t] = br[t] - br[t + 1];
                    }
                }
            }
        }
    }

    // M_k = U_k V_k: 16 products [co, ci] x [ci, tiles].
    for k in 0..T {
        // SAFETY: u holds 16 [co, ci] matrices; v and m 16 [ci | co, tiles].
        matmul(
            co,
            tiles,
            ci,
            (m[k * co * tiles..].as_mut_ptr(), tiles),
            false,
            &u[k * co * ci..][..co * ci],
            (v[k * ci * tiles..].as_ptr(), tiles),
        );
    }

    // Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1], a row of tiles at a time, in
    // passes of a few streams each (sixteen at once would not vectorise):
    // A^T down the columns into s, A across them into y, then interleaved
    // into the output rows.
    let out_rows = r1 - r0;
    let (s_rows, y_rows) = rows[..12 * len].split_at_mut(8 * len);
    for o in 0..co {
        let bias = bias.map_or(0.0, |b| b[o]);
        for (li, img) in images.clone().enumerate() {
            let plane = out.add((img * co + o) * ohw);
            for ty in 0..ny {
                let at = o * tiles + (li * ny + ty) * nx;
                let mk = |k: usize| &m[k * co * tiles + at..][..nx];
                for j in 0..4 {
                    let (m0, m1, m2, m3) = (mk(j), mk(4 + j), mk(8 + j), mk(12 + j));
                    let (top, bottom) = s_rows[2 * j * len..][..2 * len].split_at_mut(len);
                    for t in 0..nx {
                        top[t] = m0[t] + m1[t] + m2[t];
                        bottom[t] = m1[t] - m2[t] - m3[t];
                    }
                }
                for i in 0..2 {
                    let s = |j: usize| &s_rows[(2 * j + i) * len..][..nx];
                    let (s0, s1, s2, s3) = (s(0), s(1), s(2), s(3));
                    let (left, right) = y_rows[2 * i * len..][..2 * len].split_at_mut(len);
                    for t in 0..nx {
                        left[t] = s0[t] + s1[t] + s2[t] + bias;
                        right[t] = s1[t] - s2[t] - s3[t] + bias;
                    }
                }
                let y = 2 * ty;
                for i in 0..2 {
                    if y + i >= out_rows {
                        break;
                    }
                    let row = std::slice::from_raw_parts_mut(plane.add((r0 + y + i) * ow), ow);
                    let (left, right) = y_rows[2 * i * len..][..2 * len].split_at(len);
                    let (pairs, tail) = row.split_at_mut(ow / 2 * 2);
                    for ((pair, &l), &r) in pairs.chunks_exact_mut(2).zip(left).zip(right) {
                        pair[0] = l;
                        pair[1] = r;
                    }
                    if let Some(last) = tail.first_mut() {
                        *last = left[nx - 1];
                    }
                }
            }
        }
    }
}
