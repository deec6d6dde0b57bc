//! How a batch is cut into gemm-sized work items.

/// The NCHW shape of an activation inside a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch entries.
    pub b: usize,
    /// Channels.
    pub c: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
}

impl Dims {
    /// A shape.
    pub fn new(b: usize, c: usize, h: usize, w: usize) -> Self {
        Self { b, c, h, w }
    }

    /// Values in one channel plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Values in one batch entry.
    pub fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Values in the whole batch.
    pub fn len(&self) -> usize {
        self.b * self.image()
    }

    /// The same batch and plane with another channel count.
    pub fn with_c(&self, c: usize) -> Self {
        Self { c, ..*self }
    }
}

/// One unit of parallel work: a gemm over some columns (pixels) of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// Rows `r0..r1` of image `img`: contiguous in every channel plane, so the
    /// gemm can read and write the tensors in place.
    Band { img: usize, r0: usize, r1: usize },
    /// Whole images `i0..i1`: small tiles gathered into one wide gemm, because
    /// a gemm over a single 18 x 18 tile is mostly overhead.
    Images { i0: usize, i1: usize },
}

/// Floats of im2col scratch one work item may use: the column block plus the
/// gemm's packed panels stay within a core's L2.
const COLUMN_BUDGET: usize = 192 * 1024;
/// Fewest columns per gemm worth the call.
const MIN_COLUMNS: usize = 128;
/// Most columns per gemm; wider gains nothing and hurts load balance.
const MAX_COLUMNS: usize = 4096;

/// Columns per work item for a gemm whose inner dimension is `depth`.
pub fn target_columns(depth: usize) -> usize {
    (COLUMN_BUDGET / depth.max(1)).clamp(MIN_COLUMNS, MAX_COLUMNS)
}

/// How a batch is cut: `len` items, computed on demand so that planning a
/// layer allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Every image cut into bands of `rows` rows, `bands` per image.
    Bands {
        h: usize,
        rows: usize,
        bands: usize,
        images: usize,
    },
    /// Images taken `per` at a time.
    Groups { per: usize, images: usize },
}

impl Plan {
    /// Number of work items.
    pub fn len(&self) -> usize {
        match *self {
            Plan::Bands { bands, images, .. } => bands * images,
            Plan::Groups { per, images } => images.div_ceil(per),
        }
    }

    /// Work item `i` (`i < len()`).
    pub fn item(&self, i: usize) -> Item {
        match *self {
            Plan::Bands { h, rows, bands, .. } => {
                let (img, band) = (i / bands, i % bands);
                Item::Band {
                    img,
                    r0: band * rows,
                    r1: ((band + 1) * rows).min(h),
                }
            }
            Plan::Groups { per, images } => Item::Images {
                i0: i * per,
                i1: ((i + 1) * per).min(images),
            },
        }
    }
}

impl Plan {
    /// The same plan with bands of an even number of rows (all but the last).
    pub fn even_bands(self) -> Plan {
        match self {
            Plan::Bands {
                h, rows, images, ..
            } if rows % 2 == 1 && rows < h => {
                let rows = rows + 1;
                Plan::Bands {
                    h,
                    rows,
                    bands: h.div_ceil(rows),
                    images,
                }
            }
            other => other,
        }
    }
}

/// Cuts a batch of `b` images of `h x w` into work items of about `target`
/// columns each, with at least two items per thread when the batch allows.
pub fn plan(d: Dims, target: usize, threads: usize) -> Plan {
    let cols = d.plane();
    let target = target.max(1);
    let want = (2 * threads).max(1);
    if d.b == 0 || cols == 0 {
        return Plan::Groups { per: 1, images: 0 };
    }
    if cols < target && d.b > 1 {
        let per = (target / cols).clamp(1, d.b.div_ceil(want).max(1));
        if per > 1 {
            return Plan::Groups { per, images: d.b };
        }
    }
    let mut rows = (target / d.w.max(1)).clamp(1, d.h);
    let bands_wanted = want.div_ceil(d.b);
    rows = rows.min(d.h.div_ceil(bands_wanted)).max(1);
    Plan::Bands {
        h: d.h,
        rows,
        bands: d.h.div_ceil(rows),
        images: d.b,
    }
}

/// A raw output pointer shared by work items that write disjoint regions.
#[derive(Clone, Copy)]
pub struct SharedOut(pub *mut f32);

// SAFETY: every user partitions the pointee so that no two items touch the
// same element, and the pointee outlives the parallel loop that uses it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(d: Dims, items: &[Item]) -> Vec<u32> {
        let mut seen = vec![0u32; d.b * d.h];
        for item in items {
            match *item {
                Item::Band { img, r0, r1 } => (r0..r1).for_each(|r| seen[img * d.h + r] += 1),
                Item::Images { i0, i1 } => {
                    (i0 * d.h..i1 * d.h).for_each(|r| seen[r] += 1);
                }
            }
        }
        seen
    }

    proptest::proptest! {
        #[test]
        fn every_row_is_covered_once(b in 1usize..9, h in 1usize..40, w in 1usize..40,
                                     target in 1usize..3000, threads in 1usize..5) {
            let d = Dims::new(b, 3, h, w);
            for p in [plan(d, target, threads), plan(d, target, threads).even_bands()] {
                let items: Vec<Item> = (0..p.len()).map(|i| p.item(i)).collect();
                proptest::prop_assert!(covered(d, &items).iter().all(|&n| n == 1));
            }
        }
    }
}
