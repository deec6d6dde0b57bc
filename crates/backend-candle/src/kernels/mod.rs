//! The f32 NCHW kernels the networks are built from.
//!
//! Candle's stock CPU convolution runs at about a fifth of PyTorch's speed, so
//! the hot paths here call `gemm` (the matrix kernel candle itself uses)
//! directly, on work items sized to stay in cache and spread over the
//! backend's own rayon pool. Every kernel must be called inside that pool.

mod conv;
mod depthwise;
mod lstm;
mod norm;
mod plan;
mod resample;
mod scratch;
mod winograd;

pub use conv::Conv2d;
pub use depthwise::Depthwise3x3;
pub use lstm::conv_lstm_cell;
pub use norm::{elu_in_place, GroupNormElu, RmsNormElu};
pub use plan::Dims;
pub use resample::{max_pool2, ConvTranspose2x2};

#[cfg(test)]
pub use conv::naive_conv2d;
