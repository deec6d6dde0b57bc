//! The device engine inside a simulation (`atheria-device-engine`, with the
//! `candle` feature): its law is loaded here from the simulation's model
//! source, and without the `candle` feature an engine that cannot exist
//! stands in, so that `Simulation`'s matches need no feature gates.

#[cfg(feature = "candle")]
pub(super) use atheria_device_engine::{DeviceEngine, DeviceLaw};

#[cfg(feature = "candle")]
mod load {
    use std::sync::Arc;

    use engine_api::{Device, Error, ModelPackage, Result};

    use super::DeviceLaw;
    use crate::default_law;
    use crate::simulation::ModelSource;

    /// The law of `model` on `device`, for the device engine.
    pub(in crate::simulation) fn law(
        model: &ModelSource,
        device: Device,
    ) -> Result<Arc<DeviceLaw>> {
        let law = match model {
            ModelSource::Default => {
                DeviceLaw::from_tensors(default_law::spec(), default_law::tensors(), device)?
            }
            ModelSource::Dir(dir) => DeviceLaw::from_package(&ModelPackage::load(dir)?, device)?,
            ModelSource::Package(p) => DeviceLaw::from_package(p, device)?,
            ModelSource::Experiment(e) => DeviceLaw::from_package(&e.package()?, device)?,
            ModelSource::Loaded(_) => {
                return Err(Error::InvalidArgument(
                    "the device engine uploads its law's weights itself: give it the model (a package or directory), not a loaded backend".into(),
                ))
            }
        };
        Ok(Arc::new(law))
    }
}
#[cfg(feature = "candle")]
pub(super) use load::law;

#[cfg(not(feature = "candle"))]
pub(super) use absent::*;

/// Without candle there is no device engine: the type has no values, and
/// asking for the engine says what to rebuild with.
#[cfg(not(feature = "candle"))]
mod absent {
    use std::sync::Arc;

    use engine_api::{ComputeBackend, Device, Error, ModelSpec, Result};
    use sparse_grid::{DenseState, StepOptions, StepStats};

    use crate::simulation::ModelSource;

    /// No law can be had without candle.
    pub enum DeviceLaw {}

    impl DeviceLaw {
        pub fn host_backend(&self) -> &Arc<dyn ComputeBackend> {
            match *self {}
        }
        pub fn spec(&self) -> &ModelSpec {
            match *self {}
        }
    }

    /// No engine can be had without candle.
    pub enum DeviceEngine {}

    #[allow(clippy::missing_errors_doc)]
    impl DeviceEngine {
        pub fn new(law: Arc<DeviceLaw>, _: DenseState, _: StepOptions) -> Result<Self> {
            match *law {}
        }
        pub fn law(&self) -> &Arc<DeviceLaw> {
            match *self {}
        }
        pub fn step(&mut self) -> Result<StepStats> {
            match *self {}
        }
        pub fn step_count(&self) -> u64 {
            match *self {}
        }
        pub fn occupied_count(&self) -> usize {
            match *self {}
        }
        pub fn extent(&self) -> ((usize, usize), (i32, i32)) {
            match *self {}
        }
        pub fn gamma(&self) -> f32 {
            match *self {}
        }
        pub fn set_gamma(&mut self, _: f32) -> Result<()> {
            match *self {}
        }
        pub fn options(&self) -> StepOptions {
            match *self {}
        }
        pub fn last_delta_energy(&self) -> Option<f64> {
            match *self {}
        }
        pub fn state(&self) -> Result<DenseState> {
            match *self {}
        }
        pub fn set_state(&mut self, _: DenseState) -> Result<()> {
            match *self {}
        }
        pub fn delta_summary(&self) -> Result<Option<Vec<f32>>> {
            match *self {}
        }
    }

    pub(in crate::simulation) fn law(_: &ModelSource, device: Device) -> Result<Arc<DeviceLaw>> {
        Err(Error::BackendUnavailable {
            backend: "candle",
            message: format!(
                "the device engine ({device}) runs on candle: rebuild with the `candle` feature"
            ),
        })
    }
}
