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
use super::plan::{plan, Dims, Item, Plan};

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

/// Rows of the gemm's f32 microkernel on AVX2 (two 8-lane registers; half
/// the AVX-512 kernel's 32). The gemms here take the tiles as those rows
/// (`gemm` transposes a row-major product), so a work item whose tile count
/// leaves a few over pays a whole narrower kernel for them: 65 tiles, a row
/// of the sparse engine's 130-cell-wide fields, cost about what 72 do
/// (measured, 15 interleaved rounds: 11% more per tile cell than fields of
/// 128 output columns, whose 64 tiles a row divide; 0.6% more with the
/// split). [`TilePlan`] gives the columns past a multiple of this items of
/// their own.
pub const TILE_BLOCK: usize = 16;

/// A rectangle of Winograd tiles one work item computes: output rows
/// `r0..r1` (`r0` even) and tile columns `t0..t1` (output columns `2 t0 ..
/// 2 t1`, the last cut at the output's edge) of each image in `images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rect {
    /// Images of the batch.
    pub images: std::ops::Range<usize>,
    /// First output row.
    pub r0: usize,
    /// Output row past the last.
    pub r1: usize,
    /// First tile column.
    pub t0: usize,
    /// Tile column past the last.
    pub t1: usize,
}

impl Rect {
    /// Tiles in the rectangle: its gemms' width.
    pub fn tiles(&self) -> usize {
        self.images.len() * (self.r1 - self.r0).div_ceil(2) * (self.t1 - self.t0)
    }
}

/// How a Winograd convolution's output is cut into work items: the
/// ordinary [`plan`] over the tile columns up to a multiple of the block
/// (all of them when they are one block or fewer), and a second plan over
/// the columns left over, so that the gemms of the many items have a tile
/// count the microkernel divides (see [`TILE_BLOCK`]) and the leftover
/// columns of many rows and images share a few items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    main: Plan,
    /// Tile columns of the main plan.
    cols: usize,
    /// The plan of tile columns `cols..nx`, when there are any.
    rest: Option<Plan>,
    /// Tile columns of the output.
    nx: usize,
    /// Output rows.
    h: usize,
}

impl TilePlan {
    /// Items of about `target` output cells over the output `od`, at least
    /// two per thread where the output allows, with the columns past a
    /// multiple of `block` tiles in items of their own.
    pub fn new(od: Dims, target: usize, threads: usize, block: usize) -> Self {
        let nx = od.w.div_ceil(2);
        let over = if nx > block { nx % block.max(1) } else { 0 };
        let cols = nx - over;
        let part = |w: usize| plan(Dims { w, ..od }, target, threads).even_bands();
        Self {
            main: part(od.w.min(2 * cols)),
            cols,
            rest: (over > 0).then(|| part(od.w - 2 * cols)),
            nx,
            h: od.h,
        }
    }

    /// Number of work items.
    pub fn len(&self) -> usize {
        self.main.len() + self.rest.map_or(0, |p| p.len())
    }

    /// Work item `i` (`i < len()`).
    pub fn item(&self, i: usize) -> Rect {
        let n = self.main.len();
        let (part, t0, t1, i) = match self.rest {
            Some(rest) if i >= n => (rest, self.cols, self.nx, i - n),
            _ => (self.main, 0, self.cols, i),
        };
        let (images, r0, r1) = match part.item(i) {
            Item::Band { img, r0, r1 } => (img..img + 1, r0, r1),
            Item::Images { i0, i1 } => (i0..i1, 0, self.h),
        };
        Rect {
            images,
            r0,
            r1,
            t0,
            t1,
        }
    }
}

/// Floats of scratch [`band`] needs for the tiles of `rect`:
/// (transformed inputs, transformed outputs plus the row buffers).
pub fn scratch_len(ci: usize, co: usize, rect: &Rect) -> (usize, usize) {
    let (tiles, len) = (rect.tiles(), rect.t1 - rect.t0 + 1);
    (T * ci * tiles, T * co * tiles + 12 * len)
}

/// `a[k] = row[s + 2k]` and `b[k] = row[s + 2k + 1]`, zero where that is
/// outside the row (`s` may be -1: the padding column left of the row).
fn split_pairs(row: &[f32], s: isize, a: &mut [f32], b: &mut [f32]) {
    a.fill(0.0);
    b.fill(0.0);
    let (a, b, s) = if s < 0 {
        debug_assert_eq!(s, -1);
        // a[0] is the padding and b[0] the row's first value; the pairs
        // start at 1.
        match (b.first_mut(), row.first()) {
            (Some(b0), Some(&x)) => *b0 = x,
            _ => return,
        }
        (&mut a[1..], &mut b[1..], 1)
    } else {
        (a, b, s as usize)
    };
    let Some(row) = row.get(s..) else { return };
    let pairs = row.chunks_exact(2);
    let (n, last) = (pairs.len(), pairs.remainder().first().copied());
    for ((p, q), pair) in a.iter_mut().zip(b.iter_mut()).zip(pairs) {
        *p = pair[0];
        *q = pair[1];
    }
    if let (Some(x), Some(slot)) = (last, a.get_mut(n)) {
        *slot = x;
    }
}

/// The tiles of `rect` in the batch `x` (`d`, `d.c == ci`), into `out`,
/// the output batch; `u` holds the transformed weights. With a `margin` of
/// m the output is the interior of the "same" convolution without its outer
/// m rows and columns (`[b, co, h - 2m, w - 2m]`, output cell (y, x) centred
/// on input cell (y + m, x + m)), so the tiles of the margin are never
/// computed; 0 is the whole output. Adds `bias` when given, else writes.
/// Several whole images make one item when they are small (the sparse
/// engine's tiles), so the gemms are wide enough to pay for packing their
/// weights.
///
/// Every loop runs along a row of tiles, over contiguous memory, so it
/// vectorises: input rows are split into even and odd columns (a tile at
/// `2t` reads columns `2t - 1 .. 2t + 2`, i.e. odd `t - 1`, even `t`, odd
/// `t`, even `t + 1` in image columns), and each transformed value of a row
/// of tiles is one contiguous run of the 16 matrices.
///
/// # Safety
/// `out` must be valid for the whole output batch, and no other thread may
/// touch the output cells of `rect` meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn band(
    x: &[f32],
    d: Dims,
    margin: usize,
    rect: &Rect,
    u: &[f32],
    co: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    v: &mut [f32],
    rest: &mut [f32],
) {
    let (ci, w, hw) = (d.c, d.w, d.plane());
    let Rect {
        ref images,
        r0,
        r1,
        t0,
        t1,
    } = *rect;
    // Output columns and cells per plane.
    let (ow, ohw) = (w - 2 * margin, (d.h - 2 * margin) * (w - 2 * margin));
    let (nx, ny) = (t1 - t0, (r1 - r0).div_ceil(2));
    let tiles = rect.tiles();
    let (m, rows) = rest.split_at_mut(T * co * tiles);
    let rows = &mut rows[..12 * (nx + 1)];
    // Per input row i of a tile row: `a[i]` holds padded columns 2t (image
    // column 2t - 1 + margin) and `b[i]` padded columns 2t + 1 (image column
    // 2t + margin), for t in t0..=t1; zeros outside the image.
    let len = nx + 1;
    let (a, b) = rows[..8 * len].split_at_mut(4 * len);
    // (`rows` has 12 rows of `len`: these 8 for the inputs, and 8 plus 4
    // for the output transform once the inputs are done.)
    // The image column of a[0] (-1: the padding left of the image).
    let first = (2 * t0 + margin) as isize - 1;
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
                    split_pairs(src, first, ai, bi);
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
                    // Output columns 2 t0 .. 2 t1, cut at the edge.
                    let cols = ow.min(2 * t1) - 2 * t0;
                    let at = (r0 + y + i) * ow + 2 * t0;
                    let row = std::slice::from_raw_parts_mut(plane.add(at), cols);
                    let (left, right) = y_rows[2 * i * len..][..2 * len].split_at(len);
                    let (pairs, tail) = row.split_at_mut(cols / 2 * 2);
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Every tile of the output is in exactly one item, and the items
        /// of the main plan are a whole number of blocks wide.
        #[test]
        fn every_tile_is_in_one_item_and_the_main_items_fill_whole_blocks(
            b in 1usize..5, h in 1usize..40, w in 1usize..200, target in 1usize..3000,
            threads in 1usize..5, block in 1usize..20,
        ) {
            let od = Dims::new(b, 3, h, w);
            let plan = TilePlan::new(od, target, threads, block);
            let (nx, ny) = (w.div_ceil(2), h.div_ceil(2));
            let mut seen = vec![0u32; b * ny * nx];
            for i in 0..plan.len() {
                let r = plan.item(i);
                proptest::prop_assert!(r.r0.is_multiple_of(2) && r.r0 < r.r1 && r.r1 <= h && r.t0 < r.t1 && r.t1 <= nx);
                if nx > block && r.t0 == 0 {
                    proptest::prop_assert!((r.t1 - r.t0).is_multiple_of(block));
                }
                for img in r.images.clone() {
                    for ty in r.r0 / 2..r.r1.div_ceil(2) {
                        for t in r.t0..r.t1 {
                            seen[(img * ny + ty) * nx + t] += 1;
                        }
                    }
                }
            }
            proptest::prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }

    /// The sparse engine's fields of 8 tiles with room for two halos: 130
    /// output columns, 65 tiles a row. The rows' first 64 tiles make the
    /// many items; the 65th column of eight fields makes one item of 64.
    #[test]
    fn a_row_of_65_tiles_leaves_its_last_column_to_items_of_its_own() {
        let od = Dims::new(50, 128, 16, 130);
        let plan = TilePlan::new(od, target_columns(16 * 130), 2, TILE_BLOCK);
        let items: Vec<Rect> = (0..plan.len()).map(|i| plan.item(i)).collect();
        let (main, rest): (Vec<&Rect>, Vec<&Rect>) = items.iter().partition(|r| r.t0 == 0);
        assert!(main.iter().all(|r| r.t1 == 64 && r.tiles() == 64));
        assert_eq!(main.len(), 50 * 8);
        assert!(rest.iter().all(|r| (r.t0, r.t1) == (64, 65)));
        assert_eq!(rest[0].tiles(), 64);
        assert_eq!(rest.iter().map(|r| r.tiles()).sum::<usize>(), 50 * 8);
    }

    #[test]
    fn split_pairs_reads_even_and_odd_columns_from_either_side_of_the_padding() {
        let row = [1.0, 2.0, 3.0, 4.0, 5.0];
        let (mut a, mut b) = ([9.0; 4], [9.0; 4]);
        split_pairs(&row, -1, &mut a, &mut b);
        assert_eq!((a, b), ([0.0, 2.0, 4.0, 0.0], [1.0, 3.0, 5.0, 0.0]));
        split_pairs(&row, 2, &mut a, &mut b);
        assert_eq!((a, b), ([3.0, 5.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]));
        let (mut a, mut b) = ([9.0; 2], [9.0; 2]);
        split_pairs(&row, 1, &mut a, &mut b);
        assert_eq!((a, b), ([2.0, 4.0], [3.0, 5.0]));
        split_pairs(&row, 7, &mut a, &mut b);
        assert_eq!((a, b), ([0.0; 2], [0.0; 2]));
    }
}
