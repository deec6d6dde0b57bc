//! The tile store: every tile is one contiguous block of 2D channel planes
//! `[2D][T][T]` plus an occupancy mask `[T][T]`, held in a slab addressed by
//! a map from tile key to slot. Freed slots are reused, so a world whose
//! matter stays bounded stops allocating once warm.
//!
//! Invariants between steps: every tile in the map holds at least one cell of
//! matter, `count` is each tile's number of occupied cells, and every vacuum
//! cell stores zeros (so the update reads psi = 0 there, as the dense engine
//! does, and the zero vacuum's gather is a plain copy).

use std::collections::HashMap;

use super::hasher::BuildTileHasher;

/// A tile's coordinates: (x, y) of its cell (0, 0), divided by T.
pub(crate) type TileKey = (i32, i32);

/// The slab of tiles.
pub(crate) struct TileStore {
    /// T.
    pub t: usize,
    /// log2 T.
    pub shift: u32,
    /// Complex channels per cell.
    pub d: usize,
    /// Slot-major planes: slot s holds `data[s * tile_len() ..][..tile_len()]`.
    pub data: Vec<f32>,
    /// Slot-major masks: slot s holds `occ[s * area() ..][..area()]`.
    pub occ: Vec<u8>,
    /// Occupied cells per slot (0 for free slots).
    pub count: Vec<u32>,
    /// The key of each slot (stale for free slots).
    pub keys: Vec<TileKey>,
    /// Whether each slot holds a tile.
    pub live: Vec<bool>,
    /// Tile key -> slot.
    pub map: HashMap<TileKey, u32, BuildTileHasher>,
    /// Free slots, reused before the slab grows.
    pub free: Vec<u32>,
    /// Sum of `count`.
    pub occupied: usize,
}

/// Marks a slot or batch entry that takes no part in a step.
pub const NOT_ACTIVE: u32 = u32::MAX;

impl TileStore {
    /// An empty store of T x T tiles (T a power of two) with D channels.
    pub fn new(t: usize, d: usize) -> Self {
        Self {
            t,
            shift: t.trailing_zeros(),
            d,
            data: Vec::new(),
            occ: Vec::new(),
            count: Vec::new(),
            keys: Vec::new(),
            live: Vec::new(),
            map: HashMap::default(),
            free: Vec::new(),
            occupied: 0,
        }
    }

    /// Cells per tile.
    #[inline]
    pub fn area(&self) -> usize {
        self.t * self.t
    }

    /// f32 values per tile.
    #[inline]
    pub fn tile_len(&self) -> usize {
        2 * self.d * self.area()
    }

    /// Rewrites, in parallel, the tiles a step produced: `slots[j]` is the
    /// slot of batch entry j (`NOT_ACTIVE` entries are skipped) and
    /// `write(j, planes, mask, count)` fills that slot. `batch_of` is the
    /// caller's reused slot -> entry scratch. The local and the window step
    /// both commit through here.
    pub fn commit(
        &mut self,
        slots: &[u32],
        batch_of: &mut Vec<u32>,
        write: impl Fn(usize, &mut [f32], &mut [u8], &mut u32) + Sync,
    ) {
        use rayon::prelude::*;
        batch_of.clear();
        batch_of.resize(self.slots(), NOT_ACTIVE);
        for (j, &s) in slots.iter().enumerate() {
            if s != NOT_ACTIVE {
                batch_of[s as usize] = j as u32;
            }
        }
        let (tl, area) = (self.tile_len(), self.area());
        self.data
            .par_chunks_mut(tl)
            .zip(self.occ.par_chunks_mut(area))
            .zip(self.count.par_iter_mut())
            .zip(batch_of.par_iter())
            .for_each(|(((tile, occ), count), &j)| {
                if j != NOT_ACTIVE {
                    write(j as usize, tile, occ, count);
                }
            });
    }

    /// Makes `back` and `back_occ` (planes and masks laid out as the
    /// store's) the store's, after a step staged the tiles in `slots` into
    /// them: those tiles take their staged values, and every other live
    /// tile (another process's halo) keeps its own, copied across first.
    /// The store's old buffers come back in `back` and `back_occ`, for the
    /// next step to stage into. A swap rather than a copy of every stepped
    /// tile: the atomic local step's commit (its counts: [`Self::set_counts`]).
    pub fn swap_in(
        &mut self,
        slots: &[u32],
        back: &mut Vec<f32>,
        back_occ: &mut Vec<u8>,
        batch_of: &mut Vec<u32>,
    ) {
        use rayon::prelude::*;
        assert!(back.len() == self.data.len() && back_occ.len() == self.occ.len());
        batch_of.clear();
        batch_of.resize(self.slots(), NOT_ACTIVE);
        for (j, &s) in slots.iter().enumerate() {
            batch_of[s as usize] = j as u32;
        }
        let (tl, area) = (self.tile_len(), self.area());
        back.par_chunks_mut(tl)
            .zip(back_occ.par_chunks_mut(area))
            .zip(self.data.par_chunks(tl).zip(self.occ.par_chunks(area)))
            .zip(self.live.par_iter().zip(batch_of.par_iter()))
            .for_each(|(((to, to_occ), (tile, occ)), (&live, &j))| {
                if live && j == NOT_ACTIVE {
                    to.copy_from_slice(tile);
                    to_occ.copy_from_slice(occ);
                }
            });
        std::mem::swap(&mut self.data, back);
        std::mem::swap(&mut self.occ, back_occ);
    }

    /// Gives the tile in `slots[j]` `count(j)` cells of matter, keeping
    /// `occupied` the sum of every count (tiles not in `slots`, another
    /// process's halo, keep theirs): how a local step's commit, by copy or
    /// by swap, records what staging counted.
    pub fn set_counts(&mut self, slots: &[u32], count: impl Fn(usize) -> u32) {
        for (j, &s) in slots.iter().enumerate() {
            let c = &mut self.count[s as usize];
            self.occupied = self.occupied - *c as usize + count(j) as usize;
            *c = count(j);
        }
    }

    /// Slots in the slab, live or free.
    pub fn slots(&self) -> usize {
        self.keys.len()
    }

    /// The tile holding lattice cell (x, y), and the cell's index in it.
    #[inline]
    pub fn locate(&self, x: i32, y: i32) -> (TileKey, usize) {
        let m = (self.t - 1) as i32;
        let key = (x >> self.shift, y >> self.shift);
        (key, ((y & m) as usize) * self.t + (x & m) as usize)
    }

    /// The lattice coordinates of a tile's cell (0, 0), as i64.
    #[inline]
    pub fn origin(&self, key: TileKey) -> (i64, i64) {
        ((key.0 as i64) << self.shift, (key.1 as i64) << self.shift)
    }

    /// The key of the tile at tile coordinates (tx, ty) given as i64, or
    /// `None` when it would hold cells outside the i32 lattice.
    #[inline]
    pub fn key_in_range(&self, tx: i64, ty: i64) -> Option<TileKey> {
        let lo = (i32::MIN >> self.shift) as i64;
        let hi = (i32::MAX >> self.shift) as i64;
        ((lo..=hi).contains(&tx) && (lo..=hi).contains(&ty)).then_some((tx as i32, ty as i32))
    }

    /// The slot of a tile, if it exists.
    #[inline]
    pub fn slot(&self, key: TileKey) -> Option<usize> {
        self.map.get(&key).map(|&s| s as usize)
    }

    /// The slot of a tile, creating it empty (all vacuum) if needed. Returns
    /// the slot and whether it was created.
    pub fn get_or_create(&mut self, key: TileKey) -> (usize, bool) {
        if let Some(s) = self.slot(key) {
            return (s, false);
        }
        let (tl, area) = (self.tile_len(), self.area());
        let s = match self.free.pop() {
            Some(s) => {
                let s = s as usize;
                // Freed tiles keep their last values; vacuum must read zero.
                self.data[s * tl..(s + 1) * tl].fill(0.0);
                self.occ[s * area..(s + 1) * area].fill(0);
                self.keys[s] = key;
                self.live[s] = true;
                s
            }
            None => {
                let s = self.keys.len();
                self.data.resize((s + 1) * tl, 0.0);
                self.occ.resize((s + 1) * area, 0);
                self.count.push(0);
                self.keys.push(key);
                self.live.push(true);
                s
            }
        };
        self.count[s] = 0;
        self.map.insert(key, s as u32);
        (s, true)
    }

    /// Frees a slot for reuse. Its matter (if any) leaves the count.
    pub fn release(&mut self, s: usize) {
        if !self.live[s] {
            return;
        }
        self.map.remove(&self.keys[s]);
        self.occupied -= self.count[s] as usize;
        self.count[s] = 0;
        self.live[s] = false;
        self.free.push(s as u32);
    }

    /// Frees every live tile that holds no matter.
    pub fn release_empty(&mut self, slots: &[u32]) {
        for &s in slots {
            let s = s as usize;
            if self.live[s] && self.count[s] == 0 {
                self.release(s);
            }
        }
    }

    /// Whether cell `i` of slot `s` holds matter.
    #[inline]
    pub fn is_occupied(&self, s: usize, i: usize) -> bool {
        self.occ[s * self.area() + i] != 0
    }

    /// Makes cell `i` of slot `s` matter holding `values` (one per channel).
    pub fn set_cell(&mut self, s: usize, i: usize, values: impl Iterator<Item = (f32, f32)>) {
        let (base, a, d) = (s * self.tile_len(), self.area(), self.d);
        for (c, (re, im)) in values.enumerate().take(d) {
            self.data[base + c * a + i] = re;
            self.data[base + (c + d) * a + i] = im;
        }
        let o = &mut self.occ[s * a + i];
        if *o == 0 {
            *o = 1;
            self.count[s] += 1;
            self.occupied += 1;
        }
    }

    /// Makes cell `i` of slot `s` vacuum (zeros). Does not free the tile.
    pub fn clear_cell(&mut self, s: usize, i: usize) {
        let (base, a, d) = (s * self.tile_len(), self.area(), self.d);
        for c in 0..2 * d {
            self.data[base + c * a + i] = 0.0;
        }
        let o = &mut self.occ[s * a + i];
        if *o != 0 {
            *o = 0;
            self.count[s] -= 1;
            self.occupied -= 1;
        }
    }

    /// Live slots, in slot order.
    pub fn live_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.live
            .iter()
            .enumerate()
            .filter_map(|(s, &l)| l.then_some(s))
    }
}
