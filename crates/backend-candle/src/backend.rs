//! [`CandleBackend`]: the [`ComputeBackend`] the rest of Atheria sees.

use std::path::PathBuf;

use engine_api::{
    check_forward_args, Architecture, BackendOptions, BatchShape, ComputeBackend, Device, Error,
    ModelPackage, ModelSpec, Result,
};

use crate::kernels::Dims;
use crate::net::Network;
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
    /// Loads `package.file("safetensors")` for conv3x3, mlp, deep_qca, unet
    /// or unet_unitary, checking every tensor against the architecture.
    pub fn load(package: &ModelPackage, options: &BackendOptions) -> Result<Self> {
        refuse_unsupported(&package.spec, options)?;
        let path = package.file("safetensors")?;
        let weights = Weights::read(&path)?;
        Self::build(package.spec.clone(), weights, options)
    }

    /// The same from in-memory `(name, shape, values)` tensors, for the
    /// engine's embedded default law.
    pub fn from_tensors(
        spec: ModelSpec,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
        options: &BackendOptions,
    ) -> Result<Self> {
        refuse_unsupported(&spec, options)?;
        let origin = PathBuf::from(format!("<embedded model `{}`>", spec.name));
        spec.validate().map_err(|m| Error::model(&origin, m))?;
        let weights = Weights::from_tensors(origin, tensors)?;
        Self::build(spec, weights, options)
    }

    fn build(spec: ModelSpec, mut weights: Weights, options: &BackendOptions) -> Result<Self> {
        weights.check(&spec)?;
        let network = Network::build(&spec, &mut weights)?;
        let threads = match options.threads {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "threads must be at least 1 (leave it unset for one per core)".into(),
                ))
            }
            Some(n) => n,
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

/// Refuses what this backend cannot run, before any file is read.
fn refuse_unsupported(spec: &ModelSpec, options: &BackendOptions) -> Result<()> {
    if spec.architecture == Architecture::Custom {
        return Err(Error::BackendUnavailable {
            backend: NAME,
            message: format!(
                "model `{}` has architecture `custom`: custom models run on tch or onnx only (use --backend tch or --backend onnx)",
                spec.name
            ),
        });
    }
    if let Device::Cuda(n) = options.device {
        return Err(Error::BackendUnavailable {
            backend: NAME,
            message: format!(
                "cuda:{n} requested but the candle backend runs on the CPU only: use --device cpu, or the tch or onnx backend for CUDA"
            ),
        });
    }
    Ok(())
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

    fn forward(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        check_forward_args(&self.spec, input, shape, output)?;
        if shape.checked_len()? == 0 {
            return Ok(());
        }
        let d = Dims::new(shape.batch, shape.channels, shape.height, shape.width);
        self.workspaces.with(|ws| {
            self.pool
                .install(|| self.network.forward(input, d, output, ws))
        });
        Ok(())
    }

    fn describe(&self) -> String {
        format!("candle (gemm kernels) on cpu, {} threads", self.threads)
    }
}
