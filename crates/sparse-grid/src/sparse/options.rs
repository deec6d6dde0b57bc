//! What a user chooses about a sparse run, apart from the model.

use engine_api::{Error, Result};

use super::Vacuum;
use crate::update::{check_gamma, check_threshold};
use crate::DEFAULT_MAX_CELLS;

/// Cells per tile side unless the caller chooses: small enough that a lone
/// cell costs little, large enough that the halo (r = 1) adds only 27%.
pub const DEFAULT_TILE: usize = 16;

/// Existence threshold unless the caller chooses.
pub const DEFAULT_THRESHOLD: f32 = 0.01;

/// Bytes of model input handed to one `forward` call unless the caller
/// chooses: bounds the backend's working memory on large worlds.
pub const DEFAULT_FORWARD_BYTES: usize = 64 << 20;

/// Options of a [`super::SparseEngine`]. Build them from the default:
/// `SparseOptions::default().with_tile(32).with_threshold(0.05)` (fields may
/// be added, so there is no struct literal outside this crate).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SparseOptions {
    /// Tile side T in cells: a power of two from 4 to 1024.
    pub tile: usize,
    /// Existence threshold: a cell whose norm before normalisation is below
    /// it becomes vacuum. Must be > 0: it is what keeps the lattice sparse.
    pub threshold: f32,
    /// What a cell without matter looks like to the model.
    pub vacuum: Vacuum,
    /// Decay term (0 = off), as in [`crate::StepOptions::gamma`].
    pub gamma: f32,
    /// The most cells that may hold matter; an insert or a step that would
    /// exceed it fails (changing nothing) instead of growing without bound.
    /// A global model's window is held to it too.
    pub max_cells: usize,
    /// Seed of the harmonic vacuum's noise.
    pub seed: u64,
    /// Upper bound on the bytes of model input per `forward` call; the
    /// active tiles go through the model in chunks of at most this size
    /// (at least one tile per chunk).
    pub forward_bytes: usize,
    /// Whether a local law's step holds every write back until the whole
    /// step has succeeded (the default). Then a failed step (a NaN, a
    /// backend error, too much matter) leaves the lattice exactly as it
    /// was, at the price of a staged copy of every active tile: a step's
    /// peak memory is about twice the state. `false` writes each row of
    /// tiles as soon as no tile still to be gathered reads it, so a step
    /// holds only a few rows of staged tiles (peak about the state plus
    /// one chunk's buffers); a step that fails after its first write
    /// leaves the lattice part stepped ([`engine_api::Error::TornStep`])
    /// and the engine refuses to step or export it again. Results are the
    /// same bit for bit either way. Global laws and steps shared across
    /// processes are always atomic.
    pub atomic_steps: bool,
}

impl Default for SparseOptions {
    fn default() -> Self {
        Self {
            tile: DEFAULT_TILE,
            threshold: DEFAULT_THRESHOLD,
            vacuum: Vacuum::Zero,
            gamma: 0.0,
            max_cells: DEFAULT_MAX_CELLS,
            seed: 0,
            forward_bytes: DEFAULT_FORWARD_BYTES,
            atomic_steps: true,
        }
    }
}

impl SparseOptions {
    /// These options with tile side `tile` (a power of two from 4 to 1024).
    pub fn with_tile(mut self, tile: usize) -> Self {
        self.tile = tile;
        self
    }

    /// These options with existence threshold `threshold` (> 0).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// These options with `vacuum`.
    pub fn with_vacuum(mut self, vacuum: Vacuum) -> Self {
        self.vacuum = vacuum;
        self
    }

    /// These options with decay term `gamma` (0 = off).
    pub fn with_gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }

    /// These options with a limit of `max_cells` cells of matter.
    pub fn with_max_cells(mut self, max_cells: usize) -> Self {
        self.max_cells = max_cells;
        self
    }

    /// These options with `seed` for the harmonic vacuum's noise.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// These options with at most `forward_bytes` of model input per
    /// `forward` call.
    pub fn with_forward_bytes(mut self, forward_bytes: usize) -> Self {
        self.forward_bytes = forward_bytes;
        self
    }

    /// These options with atomic steps on (the default) or off; see
    /// [`SparseOptions::atomic_steps`].
    pub fn with_atomic_steps(mut self, atomic: bool) -> Self {
        self.atomic_steps = atomic;
        self
    }

    /// Checks the values against each other; one clear error per mistake.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !self.tile.is_power_of_two() || !(4..=1024).contains(&self.tile) {
            return bad(format!(
                "tile size {} must be a power of two from 4 to 1024 (16 is a good default)",
                self.tile
            ));
        }
        check_threshold(self.threshold)?;
        if self.threshold == 0.0 {
            return bad(
                "threshold 0: the sparse engine needs a threshold > 0; it turns cells below it into vacuum, which keeps the lattice sparse".into(),
            );
        }
        check_gamma(self.gamma)?;
        if let Vacuum::Harmonic { strength } = self.vacuum {
            if !strength.is_finite() {
                return bad(format!(
                    "harmonic vacuum strength {strength} must be finite"
                ));
            }
        }
        if self.max_cells == 0 {
            return bad("max_cells must be at least 1".into());
        }
        Ok(())
    }
}

/// A per-cell quantity to read over a window ([`super::SparseEngine::field`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Sum over channels of |psi|^2 (0 for vacuum).
    Density,
    /// The phase of channel `c` in (-pi, pi] (0 for vacuum).
    Phase(usize),
    /// |delta| over all 2D channels, of the model output at the last step
    /// (before the update rule); 0 where the model did not run.
    DeltaMagnitude,
}
