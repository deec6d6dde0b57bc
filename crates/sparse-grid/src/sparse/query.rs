//! Read-only views of the lattice: boxes of cells and one cell's values.

use engine_api::{Error, Result};

use super::tiles::TileStore;

/// An axis-aligned box of lattice cells, bounds included (so a box may end
/// at `i32::MAX` without overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CellBox {
    /// Smallest column.
    pub min_x: i32,
    /// Smallest row.
    pub min_y: i32,
    /// Largest column.
    pub max_x: i32,
    /// Largest row.
    pub max_y: i32,
}

impl CellBox {
    /// The box with corners (min_x, min_y) and (max_x, max_y), inclusive.
    pub fn new(min_x: i32, min_y: i32, max_x: i32, max_y: i32) -> Self {
        Self {
            min_x,
            min_y,
            max_x,
            max_y,
        }
    }

    /// The `width` x `height` box whose first cell is (x, y); an error when
    /// it is empty or would reach past the i32 lattice.
    pub fn from_origin(x: i32, y: i32, width: usize, height: usize) -> Result<Self> {
        let end = |start: i32, len: usize, axis: &str| -> Result<i32> {
            if len == 0 {
                return Err(Error::InvalidArgument(format!(
                    "a box of {width} x {height} cells is empty"
                )));
            }
            i32::try_from(start as i64 + len as i64 - 1).map_err(|_| {
                Error::InvalidArgument(format!(
                    "a box of {width} x {height} cells at ({x}, {y}) reaches past the i32 lattice along {axis}"
                ))
            })
        };
        Ok(Self::new(x, y, end(x, width, "x")?, end(y, height, "y")?))
    }

    /// Columns in the box (0 when min_x > max_x).
    pub fn width(&self) -> usize {
        (self.max_x as i64 - self.min_x as i64 + 1).max(0) as usize
    }

    /// Rows in the box (0 when min_y > max_y).
    pub fn height(&self) -> usize {
        (self.max_y as i64 - self.min_y as i64 + 1).max(0) as usize
    }

    /// True when the box holds no cell.
    pub fn is_empty(&self) -> bool {
        self.min_x > self.max_x || self.min_y > self.max_y
    }

    /// True when (x, y) lies in the box.
    pub fn contains(&self, x: i32, y: i32) -> bool {
        (self.min_x..=self.max_x).contains(&x) && (self.min_y..=self.max_y).contains(&y)
    }

    /// An error naming `what` when the box is empty.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        if self.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{what}: the box {self:?} is empty (min must not exceed max)"
            )));
        }
        Ok(())
    }
}

/// The D complex values of one cell, read in place from its tile.
#[derive(Clone, Copy)]
pub struct CellValues<'a> {
    tile: &'a [f32],
    i: usize,
    area: usize,
    d: usize,
}

impl<'a> CellValues<'a> {
    pub(crate) fn new(store: &'a TileStore, slot: usize, i: usize) -> Self {
        let tl = store.tile_len();
        Self {
            tile: &store.data[slot * tl..(slot + 1) * tl],
            i,
            area: store.area(),
            d: store.d,
        }
    }

    /// Complex channels (D).
    pub fn len(&self) -> usize {
        self.d
    }

    /// Always false: a cell has at least one channel.
    pub fn is_empty(&self) -> bool {
        self.d == 0
    }

    /// Channel `c` as (re, im); panics when `c >= D`, like slice indexing.
    pub fn get(&self, c: usize) -> (f32, f32) {
        assert!(c < self.d, "channel {c} out of range (D = {})", self.d);
        (
            self.tile[c * self.area + self.i],
            self.tile[(c + self.d) * self.area + self.i],
        )
    }

    /// The channels in order.
    pub fn iter(&self) -> impl Iterator<Item = (f32, f32)> + 'a {
        let v = *self;
        (0..v.d).map(move |c| v.get(c))
    }

    /// The channels as a vector.
    pub fn to_vec(&self) -> Vec<(f32, f32)> {
        self.iter().collect()
    }
}

impl std::fmt::Debug for CellValues<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Slots of the tiles that overlap `b`: by lookup when the box spans fewer
/// tiles than the store holds, else by scanning the store.
pub(crate) fn slots_overlapping(store: &TileStore, b: &CellBox) -> Vec<usize> {
    let s = store.shift;
    let (tx0, tx1) = ((b.min_x >> s) as i64, (b.max_x >> s) as i64);
    let (ty0, ty1) = ((b.min_y >> s) as i64, (b.max_y >> s) as i64);
    let span = (tx1 - tx0 + 1) as u128 * (ty1 - ty0 + 1) as u128;
    if span <= store.map.len() as u128 {
        let mut out = Vec::new();
        for ty in ty0..=ty1 {
            for tx in tx0..=tx1 {
                if let Some(slot) = store.slot((tx as i32, ty as i32)) {
                    out.push(slot);
                }
            }
        }
        out
    } else {
        let mut out: Vec<usize> = store
            .live_slots()
            .filter(|&slot| {
                let (kx, ky) = store.keys[slot];
                (tx0..=tx1).contains(&(kx as i64)) && (ty0..=ty1).contains(&(ky as i64))
            })
            .collect();
        out.sort_unstable_by_key(|&slot| (store.keys[slot].1, store.keys[slot].0));
        out
    }
}

/// The occupied cells of the given slots that lie in `b`, in tile order then
/// row-major within a tile.
pub(crate) fn occupied_in<'a>(
    store: &'a TileStore,
    slots: Vec<usize>,
    b: CellBox,
) -> impl Iterator<Item = (i32, i32, CellValues<'a>)> + 'a {
    let (t, area) = (store.t, store.area());
    slots.into_iter().flat_map(move |slot| {
        let (ox, oy) = store.origin(store.keys[slot]);
        let occ = &store.occ[slot * area..(slot + 1) * area];
        occ.iter().enumerate().filter_map(move |(i, &o)| {
            if o == 0 {
                return None;
            }
            let (x, y) = ((ox + (i % t) as i64) as i32, (oy + (i / t) as i64) as i32);
            b.contains(x, y)
                .then(|| (x, y, CellValues::new(store, slot, i)))
        })
    })
}
