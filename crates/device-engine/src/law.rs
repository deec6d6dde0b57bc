//! A law on a device: its weights uploaded once, its network built from
//! candle ops, and the same law on the host's candle backend, which checked
//! the weights when it loaded and serves whoever asks for a
//! `ComputeBackend` (a simulation's `backend()`).

use std::sync::Arc;

use candle_core::Tensor;
use engine_api::{
    BackendOptions, ComputeBackend, Device, ModelFile, ModelPackage, ModelSpec, Result, Runtime,
};

use crate::net::{read_safetensors, DeviceWeights, Memory, Net};
use crate::{candle_err, device};

/// A law ready to step on one device.
pub struct DeviceLaw {
    net: Net,
    device: Device,
    candle: candle_core::Device,
    host: Arc<dyn ComputeBackend>,
}

impl std::fmt::Debug for DeviceLaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLaw")
            .field("model", &self.host.spec().name)
            .field("device", &self.device)
            .finish()
    }
}

impl DeviceLaw {
    /// The law of a model package (its safetensors file) on `device`.
    ///
    /// The package is loaded on the host's candle backend first, which
    /// checks it (names, shapes, d_state) and says what is wrong in one
    /// line; the device is opened before anything is read, so a missing
    /// GPU or CUDA library is the first error.
    pub fn from_package(package: &ModelPackage, device: Device) -> Result<Self> {
        let candle = device::open(device)?;
        let host = backend_candle::RUNTIME.load(package, &host_options())?;
        let file = package.file(ModelFile::Safetensors)?;
        let tensors = read_safetensors(file.origin(), file.bytes())?;
        Self::build(host, tensors, device, candle)
    }

    /// The law of in-memory `(name, shape, values)` tensors (the embedded
    /// default law) on `device`, checked as [`DeviceLaw::from_package`]
    /// checks a package.
    pub fn from_tensors(
        spec: ModelSpec,
        tensors: crate::NamedTensors,
        device: Device,
    ) -> Result<Self> {
        let candle = device::open(device)?;
        let host: Arc<dyn ComputeBackend> = Arc::new(backend_candle::CandleBackend::from_tensors(
            spec,
            tensors.clone(),
            &host_options(),
        )?);
        Self::build(host, tensors, device, candle)
    }

    fn build(
        host: Arc<dyn ComputeBackend>,
        tensors: crate::NamedTensors,
        device: Device,
        candle: candle_core::Device,
    ) -> Result<Self> {
        let weights = DeviceWeights::upload(&tensors, &candle)?;
        let net = Net::build(host.spec(), weights)?;
        Ok(Self {
            net,
            device,
            candle,
            host,
        })
    }

    /// The model's description.
    pub fn spec(&self) -> &ModelSpec {
        self.host.spec()
    }

    /// Where the law runs.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The candle device the law's tensors live on.
    pub fn candle_device(&self) -> &candle_core::Device {
        &self.candle
    }

    /// The same law on the host's candle backend (the one that checked the
    /// weights).
    pub fn host_backend(&self) -> &Arc<dyn ComputeBackend> {
        &self.host
    }

    /// The delta of `x` (`[1, 2D, H, W]` on this law's device) and, for a
    /// recurrent law, its next memory from `memory`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        memory: Option<&Memory>,
    ) -> Result<(Tensor, Option<Memory>)> {
        self.net.forward(x, memory).map_err(candle_err)
    }
}

/// The host law only checks weights and answers `backend()`: one thread.
fn host_options() -> BackendOptions {
    BackendOptions::default().with_threads(1)
}
