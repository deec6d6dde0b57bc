//! What a cell without matter looks like to the model.

use crate::init::stream;
use crate::rng::{cell_key, normal};

/// The value the model sees at a vacuum cell. Vacuum never changes the
/// update itself: a vacuum cell's psi is zero there, so only its neighbours
/// (through the model) notice the difference.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Vacuum {
    /// psi = 0 in every channel: the dense engine's vacuum.
    #[default]
    Zero,
    /// psi = cos theta + i sin theta per channel, theta = N(0, 1) * strength,
    /// drawn afresh each step from the counter-based generator keyed by
    /// (seed, x, y, step, channel): the same cell at the same step gets the
    /// same value on every thread, in every tile and in every window.
    Harmonic {
        /// Standard deviation of the phase.
        strength: f32,
    },
}

impl Vacuum {
    /// The harmonic vacuum with phase noise of standard deviation `strength`.
    pub fn harmonic(strength: f32) -> Self {
        Vacuum::Harmonic { strength }
    }

    /// True for the zero vacuum, whose gather is a plain copy.
    pub fn is_zero(&self) -> bool {
        matches!(self, Vacuum::Zero)
    }

    /// The vacuum's (re, im) at channel `c` of lattice cell (x, y) at `step`.
    #[inline]
    pub fn value(&self, seed: u64, x: i64, y: i64, step: u64, c: usize) -> (f32, f32) {
        match *self {
            Vacuum::Zero => (0.0, 0.0),
            Vacuum::Harmonic { strength } => {
                let theta = normal(&cell_key(seed, x, y, step, c, stream::VACUUM)) * strength;
                (theta.cos(), theta.sin())
            }
        }
    }
}
