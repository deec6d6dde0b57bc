//! Which rank owns which tile: tiles in Morton (Z-order) of their
//! coordinates, cut into one contiguous range per rank. A Morton range is a
//! compact patch of the plane, so a rank's tiles touch few other ranks'
//! and the halo it exchanges stays near its perimeter.

/// The cut of the Morton curve into one range per rank: rank i owns the
/// codes from `cuts[i - 1]` (inclusive; 0 for rank 0) to `cuts[i]`
/// (exclusive; the end of the curve for the last rank).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    cuts: Vec<u64>,
}

impl Ownership {
    /// Everything owned by rank 0 (the state before the first balance):
    /// every cut at the end of the curve, which no tile reaches (a tile
    /// key is a cell coordinate divided by T >= 2).
    pub fn all_on_root(ranks: usize) -> Self {
        Self {
            cuts: vec![u64::MAX; ranks.saturating_sub(1)],
        }
    }

    /// Ranges holding as equal a number of tiles as whole tiles allow, for
    /// the Morton codes of every tile (`codes`, sorted ascending).
    pub fn balanced(codes: &[u64], ranks: usize) -> Self {
        let n = codes.len();
        let cuts = (1..ranks)
            .map(|i| codes.get(i * n / ranks).copied().unwrap_or(u64::MAX))
            .collect();
        Self { cuts }
    }

    /// The rank owning tile (tx, ty).
    #[inline]
    pub fn owner(&self, tx: i32, ty: i32) -> usize {
        let code = morton(tx, ty);
        self.cuts.partition_point(|&c| c <= code)
    }
}

/// The Morton code of tile (tx, ty): the bits of x and y (shifted so that
/// order is kept across zero) interleaved, x in the even bits.
#[inline]
pub fn morton(tx: i32, ty: i32) -> u64 {
    spread(tx as u32 ^ 0x8000_0000) | (spread(ty as u32 ^ 0x8000_0000) << 1)
}

/// The 32 bits of `v` in the even bits of a u64.
#[inline]
fn spread(v: u32) -> u64 {
    let mut x = v as u64;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morton_interleaves_and_keeps_order_across_zero() {
        assert!(morton(-1, -1) < morton(0, 0));
        assert_eq!(morton(1, 0) - morton(0, 0), 1);
        assert_eq!(morton(0, 1) - morton(0, 0), 2);
        assert!(morton(-5, 3) < morton(-4, 3));
    }

    #[test]
    fn balanced_ranges_split_the_tiles_evenly() {
        let mut codes: Vec<u64> = (0..10)
            .flat_map(|y| (0..10).map(move |x| morton(x, y)))
            .collect();
        codes.sort_unstable();
        let own = Ownership::balanced(&codes, 3);
        let mut load = [0usize; 3];
        for y in 0..10 {
            for x in 0..10 {
                load[own.owner(x, y)] += 1;
            }
        }
        assert_eq!(load, [33, 33, 34]);
        let root = Ownership::all_on_root(4);
        assert_eq!(root.owner(-7, 1 << 20), 0);
        // Fewer tiles than ranks: every tile still has one owner.
        let own = Ownership::balanced(&codes[..1], 4);
        assert_eq!(own.owner(0, 0), 3);
    }
}
