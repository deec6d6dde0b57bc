//! Seeded initial states. Values come from the counter-based generator keyed
//! by absolute lattice coordinates, so a seed gives the same field on every
//! backend and in both engines, whatever the block's size or position.

use std::str::FromStr;

use engine_api::{Error, Result};

use crate::rng::{cell_key, normal};
use crate::DenseState;

/// Streams of the generator, so that uses never share numbers.
pub(crate) mod stream {
    /// Phase noise of `complex_noise`.
    pub const NOISE: u64 = 1;
    /// Real part of `random`.
    pub const RANDOM_RE: u64 = 2;
    /// Imaginary part of `random`.
    pub const RANDOM_IM: u64 = 3;
    /// Phases of the sparse engine's harmonic vacuum.
    pub const VACUUM: u64 = 4;
}

/// The strength of `complex_noise`'s phase noise (theta ~ N(0,1) * 0.1).
pub const NOISE_STRENGTH: f32 = 0.1;

/// A generated initial state (parse one from its name with `str::parse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitKind {
    /// psi = e^{i theta}, theta ~ N(0, 1) * 0.1 per cell and channel.
    ComplexNoise,
    /// Normal real and imaginary parts, normalised per cell.
    Random,
    /// All zero (vacuum everywhere).
    Zeros,
}

impl FromStr for InitKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "complex_noise" => Ok(InitKind::ComplexNoise),
            "random" => Ok(InitKind::Random),
            "zeros" => Ok(InitKind::Zeros),
            _ => Err(Error::InvalidArgument(format!(
                "unknown initial state `{s}`: use complex_noise, random, zeros or a state file path"
            ))),
        }
    }
}

/// The value of channel `c` at lattice cell (x, y) for a generated state,
/// before per-cell normalisation.
pub fn init_value(kind: InitKind, seed: u64, x: i64, y: i64, c: usize) -> (f32, f32) {
    match kind {
        InitKind::ComplexNoise => {
            let theta = normal(&cell_key(seed, x, y, 0, c, stream::NOISE)) * NOISE_STRENGTH;
            (theta.cos(), theta.sin())
        }
        InitKind::Random => (
            normal(&cell_key(seed, x, y, 0, c, stream::RANDOM_RE)),
            normal(&cell_key(seed, x, y, 0, c, stream::RANDOM_IM)),
        ),
        InitKind::Zeros => (0.0, 0.0),
    }
}

/// Fills `state` (all cells) with a generated initial field, keyed by the
/// state's origin, and marks every cell as matter (except for `zeros`).
pub fn fill(state: &mut DenseState, kind: InitKind, seed: u64) {
    let (w, h, d) = (state.width(), state.height(), state.d_state());
    let (ox, oy) = (state.origin.0 as i64, state.origin.1 as i64);
    for y in 0..h {
        for x in 0..w {
            let (gx, gy) = (ox + x as i64, oy + y as i64);
            let values: Vec<(f32, f32)> =
                (0..d).map(|c| init_value(kind, seed, gx, gy, c)).collect();
            let scale = match kind {
                InitKind::Random => {
                    let norm = values
                        .iter()
                        .map(|(a, b)| a * a + b * b)
                        .sum::<f32>()
                        .sqrt();
                    1.0 / (norm + crate::update::NORM_EPS)
                }
                _ => 1.0,
            };
            for (c, (a, b)) in values.into_iter().enumerate() {
                state.set(x, y, c, (a * scale, b * scale));
            }
        }
    }
    let matter = (kind != InitKind::Zeros) as u8;
    state.occupied_mut().fill(matter);
}
