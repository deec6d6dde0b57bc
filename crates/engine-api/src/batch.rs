use std::fmt;

use crate::{Error, Result};

/// The NCHW shape of a batch handed to [`crate::ComputeBackend::forward`].
///
/// `channels` is always `2 * d_state`: the real planes of the D complex
/// channels first, then the imaginary planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchShape {
    /// Number of independent fields (tiles, or 1 for a dense grid).
    pub batch: usize,
    /// Channels per field: `2 * d_state`.
    pub channels: usize,
    /// Rows per field.
    pub height: usize,
    /// Columns per field.
    pub width: usize,
}

impl BatchShape {
    /// A shape; no checks (see [`BatchShape::checked_len`]).
    pub fn new(batch: usize, channels: usize, height: usize, width: usize) -> Self {
        Self {
            batch,
            channels,
            height,
            width,
        }
    }

    /// Number of f32 values in a buffer of this shape.
    ///
    /// Panics on overflow; use [`BatchShape::checked_len`] on sizes a user chose.
    pub fn len(&self) -> usize {
        self.checked_len().expect("batch shape overflows usize")
    }

    /// True when the batch holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of f32 values, or an error when the product overflows.
    pub fn checked_len(&self) -> Result<usize> {
        self.batch
            .checked_mul(self.channels)
            .and_then(|n| n.checked_mul(self.height))
            .and_then(|n| n.checked_mul(self.width))
            .ok_or_else(|| Error::InvalidArgument(format!("batch shape {self} is too large")))
    }

    /// Values in one field (one batch entry).
    pub fn field_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The shape as i64 dimensions, for libraries that want them.
    pub fn dims_i64(&self) -> [i64; 4] {
        [
            self.batch as i64,
            self.channels as i64,
            self.height as i64,
            self.width as i64,
        ]
    }
}

impl fmt::Display for BatchShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {}, {}, {}]",
            self.batch, self.channels, self.height, self.width
        )
    }
}
