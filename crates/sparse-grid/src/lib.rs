//! The lattice and the engines that step it.
//!
//! - [`DenseState`]: a dense block of cells as contiguous channel planes.
//! - [`init`]: seeded initial fields; [`state_file`]: the safetensors state format.
//! - [`update`]: the update rule (the physics after the model), fused per run of cells.
//! - [`DenseEngine`]: one forward over the whole grid per step.
//! - [`sparse`]: [`SparseEngine`], an unbounded tiled lattice whose step
//!   costs what its matter costs.
//!
//! Engines parallelise their own loops with rayon but call the backend only
//! from the stepping thread, never from a rayon worker (ARCHITECTURE.md).

mod dense;
pub mod init;
mod pool;
pub mod rng;
pub mod sparse;
mod state;
pub mod state_file;
mod stats;
pub mod update;

pub use dense::{DenseEngine, StepOptions};
pub use init::InitKind;
pub use sparse::{SparseEngine, SparseOptions, Vacuum};
pub use state::{check_size, DenseState, DEFAULT_MAX_CELLS};
pub use stats::{StepStats, StepTimes};
