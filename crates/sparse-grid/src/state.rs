//! The dense field: H x W cells of D complex channels, stored as 2D
//! contiguous f32 planes (all real planes, then all imaginary planes), which
//! is exactly a model's NCHW input for a batch of one.

use engine_api::{Error, Result};

use crate::recurrent::Memory;

/// Cells a state may hold unless the caller raises the limit: about 2^28
/// cells is 16 GiB at D = 8, already most of a 24 GiB machine.
pub const DEFAULT_MAX_CELLS: usize = 1 << 28;

/// A dense block of the lattice.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseState {
    height: usize,
    width: usize,
    d_state: usize,
    /// `[2D][H][W]`: plane c < D is Re psi_c, plane D + c is Im psi_c.
    data: Vec<f32>,
    /// `[H][W]`: 1 where the cell holds matter, 0 for vacuum.
    occupied: Vec<u8>,
    /// Lattice coordinates (x = column, y = row) of cell (0, 0).
    pub origin: (i32, i32),
    /// Steps taken since the run began.
    pub step: u64,
    /// A recurrent law's memory ([`Memory`]): empty for a law without
    /// memory, and until an engine adopts the state (it then holds the
    /// model's tensors, zeros for a new run).
    pub memory: Memory,
    /// The lattice cell of the memory's reduced cell (0, 0), when the
    /// memory is not laid out from [`DenseState::origin`]: a sparse run's
    /// memory lies over the window of its last step, not over the box of
    /// its matter ([`crate::recurrent`]). `None` (a dense grid's memory)
    /// means the state's origin.
    pub memory_origin: Option<(i32, i32)>,
}

/// Checks sizes a user chose before anything is allocated; returns H*W.
pub fn check_size(height: usize, width: usize, d_state: usize, max_cells: usize) -> Result<usize> {
    if height == 0 || width == 0 || d_state == 0 {
        return Err(Error::InvalidArgument(format!(
            "grid {height} x {width} with d_state {d_state}: every size must be at least 1"
        )));
    }
    let cells = height
        .checked_mul(width)
        .filter(|&c| c <= max_cells)
        .ok_or_else(|| Error::TooManyCells {
            what: format!("grid {height} x {width}"),
            limit: max_cells,
        })?;
    cells
        .checked_mul(2 * d_state)
        .and_then(|v| v.checked_mul(4))
        .ok_or_else(|| {
            Error::InvalidArgument(format!("grid {height} x {width} x {d_state} is too large"))
        })?;
    Ok(cells)
}

/// Checks the values a caller writes into lattice cell (x, y): one (re, im)
/// per channel of a model with `d_state` channels, all finite. Both engines
/// and every program over them check a written cell with this.
pub fn check_cell_values(x: i32, y: i32, values: &[(f32, f32)], d_state: usize) -> Result<()> {
    if values.len() != d_state {
        return Err(Error::InvalidArgument(format!(
            "cell ({x}, {y}): {} values given but the model has d_state {d_state}",
            values.len()
        )));
    }
    if values.iter().any(|(a, b)| !a.is_finite() || !b.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "cell ({x}, {y}): values must be finite"
        )));
    }
    Ok(())
}

/// Element types whose all-zero bytes are the value zero, so that a zeroed
/// allocation is a vector of zeros (sealed: `f32`, `u8`).
pub trait Zeroable: Copy + sealed::Sealed {}
impl Zeroable for f32 {}
impl Zeroable for u8 {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u8 {}
}

/// `n` zeros in a new vector, or [`Error::OutOfMemory`] naming `what` when
/// the memory cannot be had (where `vec![0; n]` would abort the process:
/// `memory allocation of N bytes failed`). Like `vec![0; n]` it asks the
/// allocator for zeroed memory, so untouched pages cost nothing.
pub fn zeroed<T: Zeroable>(n: usize, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let oom = |what: String| Error::OutOfMemory {
        what,
        bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    let Ok(layout) = std::alloc::Layout::array::<T>(n) else {
        return Err(oom(what()));
    };
    // SAFETY: the layout's size is not zero (n > 0 and T is f32 or u8).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(oom(what()));
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `n`
    // values of T; its bytes are zero, which is a valid T (`Zeroable`); the
    // length and capacity are both `n`.
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

impl DenseState {
    /// An all-zero (vacuum) state. Sizes are checked before allocating.
    pub fn zeros(height: usize, width: usize, d_state: usize) -> Result<Self> {
        Self::zeros_limited(height, width, d_state, DEFAULT_MAX_CELLS)
    }

    /// As [`DenseState::zeros`] with an explicit cell limit.
    pub fn zeros_limited(
        height: usize,
        width: usize,
        d_state: usize,
        max_cells: usize,
    ) -> Result<Self> {
        let cells = check_size(height, width, d_state, max_cells)?;
        let what = || format!("a state of {height} x {width} cells with d_state {d_state}");
        Ok(Self {
            height,
            width,
            d_state,
            data: zeroed(2 * d_state * cells, what)?,
            occupied: zeroed(cells, what)?,
            origin: (0, 0),
            step: 0,
            memory: Memory::none(),
            memory_origin: None,
        })
    }

    /// A state from planes laid out `[2D][H][W]` and an occupancy mask `[H][W]`.
    pub fn from_planes(
        height: usize,
        width: usize,
        d_state: usize,
        data: Vec<f32>,
        occupied: Vec<u8>,
    ) -> Result<Self> {
        let cells = check_size(height, width, d_state, usize::MAX)?;
        if data.len() != 2 * d_state * cells || occupied.len() != cells {
            return Err(Error::InvalidArgument(format!(
                "state {height} x {width} x {d_state} needs {} values and {cells} mask bytes, got {} and {}",
                2 * d_state * cells,
                data.len(),
                occupied.len()
            )));
        }
        Ok(Self {
            height,
            width,
            d_state,
            data,
            occupied,
            origin: (0, 0),
            step: 0,
            memory: Memory::none(),
            memory_origin: None,
        })
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }
    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Complex channels per cell.
    pub fn d_state(&self) -> usize {
        self.d_state
    }
    /// Cells (H * W).
    pub fn cells(&self) -> usize {
        self.height * self.width
    }
    /// The planes, `[2D][H][W]`: the model input for a batch of one.
    pub fn planes(&self) -> &[f32] {
        &self.data
    }
    /// Mutable planes.
    pub fn planes_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// The occupancy mask, `[H][W]`.
    pub fn occupied(&self) -> &[u8] {
        &self.occupied
    }
    /// Mutable occupancy mask.
    pub fn occupied_mut(&mut self) -> &mut [u8] {
        &mut self.occupied
    }
    /// Planes and mask at once, for the engines' fused update.
    pub fn split_mut(&mut self) -> (&mut [f32], &mut [u8]) {
        (&mut self.data, &mut self.occupied)
    }

    /// The index of the cell in column `x`, row `y` in every plane; panics
    /// outside the block, like slice indexing.
    fn index(&self, x: usize, y: usize) -> usize {
        assert!(
            x < self.width && y < self.height,
            "cell (x {x}, y {y}) outside the {} x {} block (width x height)",
            self.width,
            self.height
        );
        y * self.width + x
    }

    /// Psi at channel `c` of the cell in column `x`, row `y` (relative to
    /// [`DenseState::origin`]), as (re, im). Coordinates are (x, y) =
    /// (column, row), as everywhere in the public API.
    pub fn get(&self, x: usize, y: usize, c: usize) -> (f32, f32) {
        let n = self.cells();
        let i = self.index(x, y);
        (self.data[c * n + i], self.data[(c + self.d_state) * n + i])
    }

    /// Sets psi at channel `c` of the cell in column `x`, row `y`.
    pub fn set(&mut self, x: usize, y: usize, c: usize, value: (f32, f32)) {
        let n = self.cells();
        let i = self.index(x, y);
        self.data[c * n + i] = value.0;
        self.data[(c + self.d_state) * n + i] = value.1;
    }

    /// Sum over channels of |psi|^2 per cell, `[H][W]`.
    pub fn density(&self) -> Vec<f32> {
        let n = self.cells();
        let mut out = vec![0.0; n];
        for plane in self.data.chunks_exact(n) {
            for (o, v) in out.iter_mut().zip(plane) {
                *o += v * v;
            }
        }
        out
    }

    /// The phase (argument) of channel `c` per cell, `[H][W]`, in (-pi, pi].
    pub fn phase(&self, c: usize) -> Vec<f32> {
        let n = self.cells();
        let re = &self.data[c * n..(c + 1) * n];
        let im = &self.data[(c + self.d_state) * n..(c + self.d_state + 1) * n];
        re.iter().zip(im).map(|(r, i)| i.atan2(*r)).collect()
    }

    /// Exchanges the occupancy mask with `other` (same length), so an engine
    /// can build the next mask aside and commit it only when a step succeeds.
    pub(crate) fn swap_occupied(&mut self, other: &mut Vec<u8>) {
        debug_assert_eq!(other.len(), self.occupied.len());
        std::mem::swap(&mut self.occupied, other);
    }

    /// Sets every unoccupied cell to zero, as a dense run reads vacuum.
    pub fn zero_vacuum(&mut self) {
        let n = self.cells();
        for plane in self.data.chunks_exact_mut(n) {
            for (v, &o) in plane.iter_mut().zip(&self.occupied) {
                if o == 0 {
                    *v = 0.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_addressed_by_column_then_row() {
        // 2 rows, 3 columns: (x, y) = (2, 1) is the last cell, index 5.
        let mut s = DenseState::zeros(2, 3, 2).unwrap();
        s.set(2, 1, 1, (0.5, -0.25));
        s.set(1, 0, 0, (1.0, 2.0));
        let n = s.cells();
        assert_eq!((s.planes()[n + 5], s.planes()[3 * n + 5]), (0.5, -0.25));
        assert_eq!((s.planes()[1], s.planes()[2 * n + 1]), (1.0, 2.0));
        assert_eq!(s.get(2, 1, 1), (0.5, -0.25));
        assert_eq!(s.get(1, 0, 0), (1.0, 2.0));
        assert_eq!(s.get(0, 1, 0), (0.0, 0.0));
    }

    #[test]
    #[should_panic(expected = "outside the 3 x 2 block")]
    fn a_row_past_the_height_panics_even_when_the_index_fits() {
        // (x 0, y 2) would be index 6 < 2 * 3 * 2 planes' length: without
        // the check it would silently read another plane.
        let s = DenseState::zeros(2, 3, 2).unwrap();
        let _ = s.get(0, 2, 0);
    }
}
