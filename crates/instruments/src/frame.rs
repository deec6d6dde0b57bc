//! Frames: a dense `W x H` box of the lattice at an origin, with psi as
//! `2D` planes (the layout of [`DenseState`]), the occupancy mask and,
//! after a step, the delta summary ([`sparse_grid::summary`]).

use engine_api::{Error, Result};
use sparse_grid::sparse::CellBox;
use sparse_grid::summary::PLANES;
use sparse_grid::DenseState;

/// A read-only frame: what visualizations and readouts look at. It borrows,
/// so the dense engine's grid is read where it lies.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// Lattice coordinates (x, y) of the frame's first cell.
    pub origin: (i32, i32),
    /// Cells per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Complex channels per cell.
    pub d: usize,
    /// `[2D][H][W]`: real planes, then imaginary planes.
    pub planes: &'a [f32],
    /// `[H][W]`: 1 for matter.
    pub occupied: &'a [u8],
    /// `[summary::PLANES][H][W]`, `None` before the first step (or after a
    /// tool changed the field, as Atheria forgets its delta then).
    pub summary: Option<&'a [f32]>,
}

impl<'a> FrameRef<'a> {
    /// A frame over a state, with the delta summary when there is one.
    pub fn new(state: &'a DenseState, summary: Option<&'a [f32]>) -> Result<Self> {
        let n = state.cells();
        if let Some(s) = summary {
            if s.len() != PLANES * n {
                return Err(Error::InvalidArgument(format!(
                    "a delta summary of {} values does not fit a {} x {} frame",
                    s.len(),
                    state.width(),
                    state.height()
                )));
            }
        }
        Ok(Self {
            origin: state.origin,
            width: state.width(),
            height: state.height(),
            d: state.d_state(),
            planes: state.planes(),
            occupied: state.occupied(),
            summary,
        })
    }

    /// Cells in the frame.
    pub fn cells(&self) -> usize {
        self.width * self.height
    }

    /// The box of lattice cells the frame covers.
    pub fn cell_box(&self) -> CellBox {
        cell_box(self.origin, self.width, self.height)
    }

    /// Channel `c` of cell `i` (row-major index) as (re, im).
    #[inline]
    pub fn psi(&self, i: usize, c: usize) -> (f32, f32) {
        let n = self.cells();
        (self.planes[c * n + i], self.planes[(c + self.d) * n + i])
    }

    /// sum_c |psi_c|^2 of cell `i`.
    #[inline]
    pub fn density(&self, i: usize) -> f32 {
        let n = self.cells();
        (0..2 * self.d)
            .map(|c| self.planes[c * n + i].powi(2))
            .sum()
    }

    /// The row-major index of lattice cell (x, y), if the frame holds it.
    #[inline]
    pub fn index(&self, x: i64, y: i64) -> Option<usize> {
        let (dx, dy) = (x - self.origin.0 as i64, y - self.origin.1 as i64);
        (dx >= 0 && dy >= 0 && (dx as usize) < self.width && (dy as usize) < self.height)
            .then(|| dy as usize * self.width + dx as usize)
    }
}

/// An owned frame, for programs that keep one (a baseline for the
/// fidelity, a picture's input).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// psi, occupancy, origin and step.
    pub state: DenseState,
    /// `[summary::PLANES][H][W]`, when there is one.
    pub summary: Option<Vec<f32>>,
}

impl Frame {
    /// The borrowed view of this frame.
    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef::new(&self.state, self.summary.as_deref())
            .expect("a Frame's summary is checked when it is made")
    }

    /// A frame of `state` with an optional summary (checked against its size).
    pub fn new(state: DenseState, summary: Option<Vec<f32>>) -> Result<Self> {
        FrameRef::new(&state, summary.as_deref())?;
        Ok(Self { state, summary })
    }
}

/// A frame a tool writes: psi and occupancy, borrowed mutably (the dense
/// engine's grid in place, or a box exported from the sparse lattice).
#[derive(Debug)]
pub struct FrameMut<'a> {
    /// Lattice coordinates (x, y) of the frame's first cell.
    pub origin: (i32, i32),
    /// Cells per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Complex channels per cell.
    pub d: usize,
    /// `[2D][H][W]`.
    pub planes: &'a mut [f32],
    /// `[H][W]`.
    pub occupied: &'a mut [u8],
}

impl<'a> FrameMut<'a> {
    /// The frame of a whole state.
    pub fn new(state: &'a mut DenseState) -> Self {
        let (origin, width, height, d) =
            (state.origin, state.width(), state.height(), state.d_state());
        let (planes, occupied) = state.split_mut();
        Self {
            origin,
            width,
            height,
            d,
            planes,
            occupied,
        }
    }

    /// Cells in the frame.
    pub fn cells(&self) -> usize {
        self.width * self.height
    }

    /// The box of lattice cells the frame covers.
    pub fn cell_box(&self) -> CellBox {
        cell_box(self.origin, self.width, self.height)
    }

    /// The row-major index of lattice cell (x, y), if the frame holds it.
    #[inline]
    pub fn index(&self, x: i64, y: i64) -> Option<usize> {
        let (dx, dy) = (x - self.origin.0 as i64, y - self.origin.1 as i64);
        (dx >= 0 && dy >= 0 && (dx as usize) < self.width && (dy as usize) < self.height)
            .then(|| dy as usize * self.width + dx as usize)
    }

    /// Channel `c` of cell `i` as (re, im).
    #[inline]
    pub fn get(&self, i: usize, c: usize) -> (f32, f32) {
        let n = self.cells();
        (self.planes[c * n + i], self.planes[(c + self.d) * n + i])
    }

    /// Writes channel `c` of cell `i` and makes the cell matter.
    #[inline]
    pub fn set(&mut self, i: usize, c: usize, (re, im): (f32, f32)) {
        let n = self.cells();
        self.planes[c * n + i] = re;
        self.planes[(c + self.d) * n + i] = im;
        self.occupied[i] = 1;
    }
}

/// The box of `width x height` cells at `origin` (sizes >= 1).
pub(crate) fn cell_box(origin: (i32, i32), width: usize, height: usize) -> CellBox {
    CellBox::new(
        origin.0,
        origin.1,
        (origin.0 as i64 + width as i64 - 1) as i32,
        (origin.1 as i64 + height as i64 - 1) as i32,
    )
}
