//! A small, fast, deterministic hasher for tile keys: SipHash's DoS
//! resistance buys nothing for integer keys the engine itself chooses, and a
//! fixed hasher makes the map's behaviour the same on every run.

use std::hash::{BuildHasherDefault, Hasher};

/// FxHash's mixing step (rustc's hasher) over 64-bit words.
#[derive(Default, Clone, Copy)]
pub(crate) struct TileHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for TileHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }
    #[inline]
    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }
}

/// Builds [`TileHasher`]s for the tile map.
pub(crate) type BuildTileHasher = BuildHasherDefault<TileHasher>;
