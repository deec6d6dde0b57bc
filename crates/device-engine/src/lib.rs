//! Atheria's device-resident dense engine: the lattice, the law and the
//! update rule as candle tensors on one device, the CPU or (with the `cuda`
//! feature) a CUDA GPU. Between steps nothing crosses to the host but two
//! numbers (the delta's energy, which is also its non-finite check, and the
//! occupied count); the state, pictures and readouts are downloaded only
//! when asked for.
//!
//! - [`DeviceLaw`]: a model package (or in-memory weights) on a device,
//!   checked by the host's candle backend, its network built from candle ops
//!   (`net`: every architecture the candle backend runs).
//! - [`DeviceEngine`]: a dense state on the device, stepped by a law; the
//!   state in and out as [`sparse_grid::DenseState`].
//! - [`open_device`]: the candle device for an [`engine_api::Device`], with
//!   one clear error where CUDA is missing or not compiled in.

mod device;
mod engine;
mod law;
mod net;

pub use device::open as open_device;
pub use engine::DeviceEngine;
pub use law::DeviceLaw;

/// Weights as `(state_dict name, shape, values)`, as the candle backend
/// takes them from memory.
pub type NamedTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The name errors give this engine's backend.
pub const NAME: &str = "candle-device";

/// A candle error as this workspace's error type.
fn candle_err(e: candle_core::Error) -> engine_api::Error {
    engine_api::Error::backend(NAME, e)
}
