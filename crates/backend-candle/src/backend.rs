//! [`CandleBackend`]: the [`ComputeBackend`] the rest of Atheria sees.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use engine_api::{
    check_load_args, run_interior_by_crop, Architecture, BackendOptions, BatchShape,
    ComputeBackend, Device, Error, LoadRequest, ModelFile, ModelPackage, ModelSpec, Result,
    Runtime,
};

use crate::kernels::Dims;
use crate::net::Network;
use crate::unet::Memory;
use crate::weights::Weights;
use crate::workspace::WorkspacePool;

const NAME: &str = "candle";

/// A model loaded for the pure-Rust backend: candle reads the weights, gemm
/// kernels run them on a rayon pool the backend owns.
#[derive(Debug)]
pub struct CandleBackend {
    spec: ModelSpec,
    network: Network,
    pool: rayon::ThreadPool,
    threads: usize,
    workspaces: WorkspacePool,
}

impl CandleBackend {
    /// Loads the package's `safetensors` file for conv3x3, mlp, deep_qca,
    /// unet, unet_unitary, unet_unitary_rmsnorm or unet_convlstm (recurrent:
    /// run it with `forward_with_memory`), checking every tensor against the architecture:
    /// [`CandleRuntime`]'s load, returning the concrete backend.
    pub fn load(package: &ModelPackage, options: &BackendOptions) -> Result<Self> {
        Self::prepare(LoadRequest::new(&CandleRuntime, package, options)?)
    }

    /// Builds the backend from a checked request.
    pub fn prepare(request: LoadRequest) -> Result<Self> {
        let weights = Weights::from_bytes(request.origin(), request.bytes())?;
        Self::build(request.spec().clone(), weights, request.threads())
    }

    /// The same from in-memory `(name, shape, values)` tensors, for the
    /// engine's embedded default law. `options` are checked as a load
    /// checks them ([`check_load_args`]).
    pub fn from_tensors(
        spec: ModelSpec,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
        options: &BackendOptions,
    ) -> Result<Self> {
        check_load_args(&CandleRuntime, &spec, options)?;
        let origin = PathBuf::from(format!("<embedded model `{}`>", spec.name));
        spec.validate().map_err(|m| Error::model(&origin, m))?;
        let weights = Weights::from_tensors(origin, tensors)?;
        Self::build(spec, weights, options.threads.and_then(NonZeroUsize::new))
    }

    fn build(spec: ModelSpec, mut weights: Weights, threads: Option<NonZeroUsize>) -> Result<Self> {
        weights.check(&spec)?;
        let network = Network::build(&spec, &mut weights)?;
        let threads = match threads {
            Some(n) => n.get(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("atheria-candle-{i}"))
            .build()
            .map_err(|e| Error::backend(NAME, format!("cannot start {threads} threads: {e}")))?;
        Ok(Self {
            spec,
            network,
            pool,
            threads,
            workspaces: WorkspacePool::default(),
        })
    }

    /// Intra-op threads in this backend's pool.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// The candle [`Runtime`]: pure Rust, nothing to load, CPU only, every
/// architecture but `custom`, from the package's safetensors weights.
#[derive(Debug, Clone, Copy, Default)]
pub struct CandleRuntime;

/// The candle runtime, for programs that hand out `&'static dyn Runtime`.
pub static RUNTIME: CandleRuntime = CandleRuntime;

impl Runtime for CandleRuntime {
    fn name(&self) -> &'static str {
        NAME
    }

    fn model_file(&self) -> ModelFile {
        ModelFile::Safetensors
    }

    fn check(&self) -> Result<String> {
        crate::check()
    }

    fn supports_device(&self, device: Device) -> std::result::Result<(), String> {
        match device {
            Device::Cpu => Ok(()),
            other => Err(format!(
                "{other} requested but the candle backend runs on the CPU only: use the cpu device, or the tch or onnx backend for CUDA"
            )),
        }
    }

    fn supports_model(&self, spec: &ModelSpec) -> std::result::Result<(), String> {
        if spec.architecture == Architecture::Custom {
            return Err(format!(
                "model `{}` has architecture `custom`: custom models run on tch or onnx only (choose one of those backends)",
                spec.name
            ));
        }
        Ok(())
    }

    fn prepare(&self, request: LoadRequest) -> Result<Arc<dyn ComputeBackend>> {
        Ok(Arc::new(CandleBackend::prepare(request)?))
    }
}

impl ComputeBackend for CandleBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        let d = Dims::new(shape.batch, shape.channels, shape.height, shape.width);
        self.workspaces.with(|ws| {
            self.pool
                .install(|| self.network.forward(input, d, output, ws, None))
        })
    }

    fn run_with_memory(
        &self,
        input: &[f32],
        shape: BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> Result<()> {
        let d = Dims::new(shape.batch, shape.channels, shape.height, shape.width);
        let memory = Memory {
            state: memory,
            next: next_memory,
        };
        self.workspaces.with(|ws| {
            self.pool
                .install(|| self.network.forward(input, d, output, ws, Some(memory)))
        })
    }

    fn computes_interior(&self, margin: usize) -> bool {
        margin > 0 && self.network.has_interior()
    }

    fn run_interior(
        &self,
        input: &[f32],
        shape: BatchShape,
        margin: usize,
        output: &mut [f32],
    ) -> Result<()> {
        if !self.network.has_interior() {
            return run_interior_by_crop(self, input, shape, margin, output);
        }
        let d = Dims::new(shape.batch, shape.channels, shape.height, shape.width);
        self.workspaces.with(|ws| {
            self.pool
                .install(|| self.network.forward_interior(input, d, margin, output, ws))
        })
    }

    fn describe(&self) -> String {
        format!("candle (gemm kernels) on cpu, {} threads", self.threads)
    }
}
