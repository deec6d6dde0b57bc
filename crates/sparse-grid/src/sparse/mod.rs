//! The sparse engine: an unbounded lattice (i32 per axis) stored as tiles of
//! T x T cells, whose step costs what its matter costs.
//!
//! # The equivalence
//! With the zero vacuum and a local model (receptive radius r) that maps an
//! all-vacuum neighbourhood to a zero delta (no bias), one step of
//! [`SparseEngine`] equals one step of [`crate::DenseEngine`] with the same
//! threshold, cell for cell (values and occupancy), on any dense grid large
//! enough that no matter comes within r of its border. Both compute the same
//! model output at every cell within r of matter; every other cell sees only
//! vacuum, so its delta is zero and it stays vacuum in both engines.
//!
//! # The light cone
//! A step may turn a vacuum cell into matter only if it lies within r
//! (Chebyshev distance) of matter at the start of the step; cells beyond stay
//! vacuum whatever the model says. For the models of the equivalence this
//! changes nothing (their delta there is zero); for a model with a bias, or
//! with the harmonic vacuum, it makes the result independent of the tile
//! size, which only decides how the work is batched.
//!
//! # Global models
//! A model without a receptive radius (the U-Net) sees the whole field, so the
//! sparse engine steps one dense window: the tiles holding matter plus one
//! ring of tiles, padded with vacuum to the model's `spatial_multiple`. The
//! result over that window equals a [`crate::DenseEngine`] step on the same
//! window. A global law's output depends on the window it is shown (how much
//! vacuum surrounds the matter): that is the model's nature, not an engine
//! error, and [`SparseEngine::next_window`] says which window a step will use.
//!
//! # Recurrent laws
//! A recurrent law (global, with memory: `unet_convlstm`) keeps its memory
//! laid out over the window of its last step ([`SparseEngine::memory`]).
//! While the window stays put the memory is carried whole, and the run
//! equals a dense run over that window. When the window grows or moves, the
//! reduced cells both windows cover keep their memory, the new window's
//! other cells start at zero, and those it leaves are dropped
//! ([`crate::recurrent::remap_into`]); the tile must be a multiple of every
//! memory stride so the windows' reduced grids line up. The next memory is
//! committed with the step, and exported and imported with its window.
//!
//! # Cost
//! A local step runs the model on every active tile plus a halo of r cells,
//! laid out in strips of up to 8 tiles side by side (neighbours in a row
//! share their halo columns; `local`'s "Strips"). A backend that returns the
//! whole field computes the halo rows and columns too; one that can skip
//! the halo's work (`ComputeBackend::computes_interior`: candle's Winograd
//! 3x3 and per-cell layers, ONNX Runtime's graph and tch's layers without
//! padding) is asked for the interior, T rows of the strip, and computes
//! about T^2 per tile (`StepStats::model_cells`). The rest of a step is
//! copying (gather, scatter) and the update.
//! Memory is counted in tiles: each holds T^2 cells whatever its matter, and
//! a step stages the updated active tiles beside the current ones (that is
//! what makes it all-or-nothing; with [`SparseOptions::atomic_steps`] off
//! only a few rows of them), plus one chunk of model input and output of at
//! most [`SparseOptions::forward_bytes`] each.

mod engine;
mod hasher;
mod local;
mod options;
mod query;
mod tiles;
mod vacuum;
mod window;

pub use engine::{SparseEngine, ENCODED_HEADER};
pub use local::SharedStep;
pub use options::{Field, SparseOptions, DEFAULT_FORWARD_BYTES, DEFAULT_THRESHOLD, DEFAULT_TILE};
pub use query::{CellBox, CellValues};
pub use vacuum::Vacuum;
