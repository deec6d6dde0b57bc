//! Atheria's lattice and everything that steps it, not only the sparse grid
//! its name recalls: the dense state and the dense engine, the update rule,
//! seeded initial states, the state file, the random generator, and the
//! tiled sparse engine.
//!
//! | module / item | what it holds |
//! |---|---|
//! | [`DenseState`] | a dense block of cells as contiguous channel planes `[2D][H][W]` (a model's NCHW input for a batch of one), with its occupancy mask, origin, step and a recurrent law's memory |
//! | [`update`] | the update rule, the physics after the model (unitary multiply, decay, normalisation, existence threshold), written once for both engines; the checks of gamma and threshold |
//! | [`DenseEngine`], [`StepOptions`] | one forward over the whole grid per step: what the PyTorch engine computes |
//! | [`sparse`]: [`SparseEngine`], [`SparseOptions`], [`Vacuum`] | an unbounded lattice (i32 per axis) of tiles whose step costs what its matter costs |
//! | [`recurrent`]: [`Memory`] | a recurrent law's memory beside the field (`unet_convlstm`'s `h_state`, `c_state`), kept by the dense engine between steps and saved in state files |
//! | [`init`], [`InitKind`] | seeded initial fields |
//! | [`state_file`] | the safetensors state file, read and written atomically |
//! | [`output`] | the one writer of output files: atomic replacement with unique temporary names, links followed, devices written through, read-only and hard-linked files refused |
//! | [`summary`] | the delta summary: five numbers per cell about the last step (energy, flow, physics) that pictures and readouts use |
//! | [`rng`] | the workspace's one random generator: counter-based, so a value depends only on its key |
//! | [`StepStats`], [`StepTimes`] | what a step did and where its time went |
//! | [`check_size`], [`DEFAULT_MAX_CELLS`], [`zeroed`] | limits on what a state may hold; buffers whose allocation failure is an error, not an abort |
//! | [`memory`] | how much memory this process may still use (free memory, cgroup, `ulimit -v`) |
//!
//! **The threading rule** (ARCHITECTURE.md): engines parallelise their own
//! loops with rayon, on the global pool or on one they were given
//! (`with_pool`), and call the backend only from the thread that calls
//! `step`, never from a rayon worker. A step called from inside a rayon
//! worker returns [`engine_api::Error::NestedPool`] and changes nothing.

#![warn(missing_docs)]

mod dense;
pub mod init;
pub mod memory;
pub mod output;
mod pool;
pub mod recurrent;
pub mod rng;
pub mod sparse;
mod state;
pub mod state_file;
mod stats;
pub mod summary;
pub mod update;

pub use dense::{fit_state, DenseEngine, StepOptions};
pub use init::InitKind;
pub use recurrent::Memory;
pub use sparse::{SparseEngine, SparseOptions, Vacuum};
pub use state::{check_cell_values, check_size, zeroed, DenseState, Zeroable, DEFAULT_MAX_CELLS};
pub use stats::{StepStats, StepTimes};
