//! [`Runtime`]: a backend factory as API (tract's `Runtime`), and the one
//! place where the arguments of a load are checked.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use crate::{
    BackendOptions, ComputeBackend, Device, Error, ModelFile, ModelPackage, ModelSpec, PackageFile,
    Result,
};

/// An inference runtime: says whether it works here, and loads models into
/// [`ComputeBackend`]s.
///
/// Each backend crate provides one (candle, ONNX Runtime, and the tch library
/// loaded at run time); `atheria::BackendKind::runtime` hands out the ones a
/// build has. A program chooses a runtime, asks [`check`](Self::check) where
/// it wants to say early what is missing, and calls [`load`](Self::load).
///
/// Implementations describe themselves ([`name`](Self::name),
/// [`model_file`](Self::model_file), [`supports_device`](Self::supports_device),
/// [`supports_model`](Self::supports_model)) and build a backend from a
/// [`LoadRequest`] in [`prepare`](Self::prepare). Everything a load checks
/// before that is checked by [`LoadRequest::new`], the only way to make a
/// request, so no backend repeats (or forgets) a check.
pub trait Runtime: Send + Sync {
    /// Short name: `candle`, `tch` or `onnx`.
    fn name(&self) -> &'static str;

    /// The package file this runtime runs.
    fn model_file(&self) -> ModelFile;

    /// Whether the runtime can work here, and its version (e.g.
    /// `onnxruntime 1.22.0 from /usr/lib/libonnxruntime.so`), or an
    /// [`Error::BackendUnavailable`] saying what is missing and how to get it.
    ///
    /// May load the runtime's native library and run a small computation.
    fn check(&self) -> Result<String>;

    /// Loads the runtime's native library, if it has one, once per process.
    /// [`LoadRequest::new`] calls this before it reads the model file, so a
    /// missing library is reported before anything about the package.
    fn load_library(&self) -> Result<()> {
        Ok(())
    }

    /// Whether this build of the runtime can run on `device`; `Err` says why
    /// not, in words for a program's user. Whether that device exists on this
    /// machine is for [`prepare`](Self::prepare) to find out. The default:
    /// the CPU only.
    fn supports_device(&self, device: Device) -> std::result::Result<(), String> {
        match device {
            Device::Cpu => Ok(()),
            other => Err(format!(
                "{other} requested but the {} backend runs on the CPU only: use the cpu device",
                self.name()
            )),
        }
    }

    /// Whether the runtime can run this kind of model at all (before any
    /// file is read); `Err` says why not. The default: every model.
    fn supports_model(&self, spec: &ModelSpec) -> std::result::Result<(), String> {
        let _ = spec;
        Ok(())
    }

    /// Builds a backend from a checked request. Called by [`load`](Self::load).
    fn prepare(&self, request: LoadRequest) -> Result<Arc<dyn ComputeBackend>>;

    /// Loads the model in `package` with `options`: checks every argument
    /// ([`LoadRequest::new`]), then [`prepare`](Self::prepare)s the backend.
    fn load(
        &self,
        package: &ModelPackage,
        options: &BackendOptions,
    ) -> Result<Arc<dyn ComputeBackend>> {
        self.prepare(LoadRequest::new(self, package, options)?)
    }
}

/// Checks load options against a runtime and a model, the same way for every
/// backend: a thread count [`check_threads`](crate::check_threads) accepts, a device this runtime supports, a model it
/// can run. [`LoadRequest::new`] calls it; a backend that builds models from
/// something other than a package (candle's in-memory tensors) calls it too.
pub fn check_load_args<R: Runtime + ?Sized>(
    runtime: &R,
    spec: &ModelSpec,
    options: &BackendOptions,
) -> Result<()> {
    if let Some(threads) = options.threads {
        crate::check_threads(threads)?;
    }
    let unavailable = |message: String| Error::BackendUnavailable {
        backend: runtime.name(),
        message,
    };
    runtime
        .supports_device(options.device)
        .map_err(unavailable)?;
    runtime.supports_model(spec).map_err(unavailable)?;
    Ok(())
}

/// A load whose arguments have been checked: what [`Runtime::prepare`] gets.
///
/// Only [`LoadRequest::new`] makes one, so a backend holding a request knows
/// the options are valid for it and its model file has been read.
#[derive(Debug)]
pub struct LoadRequest {
    spec: ModelSpec,
    file: PackageFile,
    device: Device,
    threads: Option<NonZeroUsize>,
}

impl LoadRequest {
    /// Checks a load of `package` with `options` on `runtime`, in this order:
    /// the options ([`check_load_args`]), the runtime's native library
    /// ([`Runtime::load_library`]), then the package's file for this runtime,
    /// which it reads.
    pub fn new<R: Runtime + ?Sized>(
        runtime: &R,
        package: &ModelPackage,
        options: &BackendOptions,
    ) -> Result<Self> {
        check_load_args(runtime, package.spec(), options)?;
        runtime.load_library()?;
        let file = package.file(runtime.model_file())?;
        Ok(Self {
            spec: package.spec().clone(),
            file,
            device: options.device,
            threads: options.threads.and_then(NonZeroUsize::new),
        })
    }

    /// The model's description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The model file's contents.
    pub fn bytes(&self) -> &[u8] {
        self.file.bytes()
    }

    /// The model file's contents, shared (kept by backends that build more
    /// instances of the model later).
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        self.file.shared_bytes()
    }

    /// Where the model file came from, for error messages.
    pub fn origin(&self) -> &Path {
        self.file.origin()
    }

    /// The device to run on (supported by the runtime in this build).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Intra-op threads; `None` for one per core.
    pub fn threads(&self) -> Option<NonZeroUsize> {
        self.threads
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{BatchShape, ModelFile};

    /// A runtime that counts its library loads and preparations.
    #[derive(Default)]
    struct Fake {
        libraries: AtomicUsize,
        prepared: AtomicUsize,
    }

    struct Echo(ModelSpec);

    impl ComputeBackend for Echo {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn spec(&self) -> &ModelSpec {
            &self.0
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn run(&self, input: &[f32], _: BatchShape, output: &mut [f32]) -> Result<()> {
            assert!(!input.is_empty(), "run is never called on an empty batch");
            output.copy_from_slice(input);
            Ok(())
        }
    }

    impl Runtime for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn model_file(&self) -> ModelFile {
            ModelFile::Onnx
        }
        fn check(&self) -> Result<String> {
            Ok("fake 1".into())
        }
        fn load_library(&self) -> Result<()> {
            self.libraries.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn supports_model(&self, spec: &ModelSpec) -> std::result::Result<(), String> {
            match spec.d_state {
                3 => Err("no odd models".into()),
                _ => Ok(()),
            }
        }
        fn prepare(&self, request: LoadRequest) -> Result<Arc<dyn ComputeBackend>> {
            self.prepared.fetch_add(1, Ordering::SeqCst);
            assert_eq!(request.bytes(), b"graph");
            Ok(Arc::new(Echo(request.spec().clone())))
        }
    }

    fn package(d_state: usize) -> ModelPackage {
        let spec = ModelSpec::from_json(
            &format!(
                r#"{{"format":"atheria-model/1","name":"m","architecture":"custom","d_state":{d_state},
                   "update":"additive","receptive_radius":0,"files":{{}}}}"#
            ),
            Path::new("model.json"),
        )
        .unwrap();
        ModelPackage::from_bytes(spec, [(ModelFile::Onnx, &b"graph"[..])]).unwrap()
    }

    #[test]
    fn every_argument_is_checked_before_the_runtime_prepares_anything() {
        let fake = Fake::default();
        let runtime: &dyn Runtime = &fake;
        let cases: [(ModelPackage, BackendOptions, &str); 5] = [
            (package(2), BackendOptions::default().with_threads(0), "threads must be at least 1"),
            (
                package(2),
                BackendOptions::default().with_threads(1_000_000),
                "threads 1000000 is more than this machine allows",
            ),
            (
                package(2),
                BackendOptions::default().with_device(Device::Cuda(1)),
                "backend fake is unavailable: cuda:1 requested but the fake backend runs on the CPU only",
            ),
            (package(3), BackendOptions::default(), "no odd models"),
            (
                ModelPackage::from_bytes(package(2).spec().clone(), [(ModelFile::TorchScript, &b"x"[..])])
                    .unwrap(),
                BackendOptions::default(),
                "holds no `onnx` file",
            ),
        ];
        for (package, options, expected) in cases {
            let err = runtime.load(&package, &options).err().expect("refused");
            assert!(err.to_string().contains(expected), "{err}");
        }
        assert_eq!(fake.prepared.load(Ordering::SeqCst), 0);
        assert_eq!(
            fake.libraries.load(Ordering::SeqCst),
            1,
            "only the file check came after it"
        );

        let backend = runtime
            .load(&package(2), &BackendOptions::default().with_threads(3))
            .unwrap();
        assert_eq!(fake.prepared.load(Ordering::SeqCst), 1);
        let shape = BatchShape::new(1, 4, 2, 2);
        let mut out = vec![0.0; 16];
        backend.forward(&[1.5; 16], shape, &mut out).unwrap();
        assert_eq!(out, [1.5; 16]);
        let wrong = backend.forward(&[1.5; 16], BatchShape::new(1, 2, 2, 4), &mut out);
        assert!(matches!(wrong, Err(Error::InvalidArgument(_))));
        let empty = BatchShape::new(0, 4, 2, 2);
        backend.forward(&[], empty, &mut []).unwrap();
    }

    /// A backend that does not override `run_interior` gets the default:
    /// its whole forward, cropped; the arguments are checked first.
    #[test]
    fn the_default_interior_is_the_forward_cropped() {
        let backend = Echo(package(1).spec().clone());
        assert!(!backend.computes_interior(1));
        // Two fields of 2 channels, 4 x 5, each value its own index.
        let shape = BatchShape::new(2, 2, 4, 5);
        let input: Vec<f32> = (0..shape.len()).map(|i| i as f32).collect();
        let inner = crate::interior_shape(shape, 1).unwrap();
        assert_eq!(inner, BatchShape::new(2, 2, 2, 3));
        let mut out = vec![f32::NAN; inner.len()];
        backend
            .forward_interior(&input, shape, 1, &mut out)
            .unwrap();
        // Plane p's interior: rows 1..3, columns 1..4.
        let want: Vec<f32> = (0..4)
            .flat_map(|p| {
                (1..3).flat_map(move |y| (1..4).map(move |x| (p * 20 + y * 5 + x) as f32))
            })
            .collect();
        assert_eq!(out, want);
        // Margin 0 is the whole forward.
        let mut all = vec![0.0; shape.len()];
        backend
            .forward_interior(&input, shape, 0, &mut all)
            .unwrap();
        assert_eq!(all, input);

        let refused = |margin: usize, out_len: usize, expected: &str| {
            let mut out = vec![0.0; out_len];
            let err = backend
                .forward_interior(&input, shape, margin, &mut out)
                .expect_err("refused");
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        };
        refused(
            2,
            0,
            "has no interior with a margin of 2 (at most 1 for these fields)",
        );
        refused(1, inner.len() + 1, "needs 24 values but output has 25");
        assert_eq!(crate::interior_shape(shape, usize::MAX), None);
    }
}
