//! [`OnnxBackend`]: a model package's ONNX graph behind [`ComputeBackend`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine_api::pool::{Factory, Pool};
use engine_api::{
    check_interior_rewrite, interior_shape, run_interior_by_crop, BackendOptions, BatchShape,
    ComputeBackend, Device, Error, LoadRequest, ModelFile, ModelPackage, ModelSpec, Result,
    Runtime,
};
use ort::session::builder::{BuilderResult, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::interior;
use crate::provider;
use crate::runtime::{runtime, OrtRuntime};

/// A model's ONNX graph run by ONNX Runtime.
///
/// `Send + Sync`: concurrent [`forward`](ComputeBackend::forward) calls each
/// run on their own session from a small bounded pool
/// ([`engine_api::pool::Pool`]), so threads sharing one backend do not queue
/// behind a single lock.
pub struct OnnxBackend {
    spec: ModelSpec,
    device: Device,
    provider: &'static str,
    threads: Option<usize>,
    version: &'static str,
    pool: Pool<Session>,
    /// The graph's names for a recurrent law's field, delta and memory
    /// (found at load); `None` for a law without memory.
    memory_io: Option<MemoryIo>,
    /// The graph rewritten to return each field's interior (module
    /// `interior`), when the law is a chain of padded convolutions and the
    /// rewritten graph agreed with the original at load.
    interior: Option<Interior>,
}

/// Sessions of the graph without its convolutions' padding, which return
/// each field's interior without its outer `margin` cells.
struct Interior {
    /// The law's receptive radius: the cells the graph trims on every side.
    margin: usize,
    pool: Pool<Session>,
}

/// A recurrent law's graph: which input is the field and which output the
/// delta (the ones not named after a memory tensor), and the memory outputs
/// `<name>_next` in model.json order (the memory inputs are named as
/// model.json names them).
#[derive(Debug, Clone)]
struct MemoryIo {
    /// The field input (`x` in graphs Atheria's exporter writes).
    field: String,
    /// The delta output (`delta`).
    delta: String,
    /// `<name>_next` for each memory tensor, in model.json order.
    next: Vec<String>,
}

/// Session settings, kept so the pool can build more sessions like the first.
#[derive(Clone)]
struct Recipe {
    /// The graph's bytes (sessions are built from memory, so a package in
    /// memory and one on disk load the same way).
    model: Arc<[u8]>,
    /// What errors call the graph.
    origin: PathBuf,
    device: Device,
    threads: Option<usize>,
}

/// The ONNX Runtime [`Runtime`]: loads the library at run time
/// ([`set_library`](crate::set_library) says where from), runs a package's
/// `onnx` file on the CPU, or on CUDA with the `cuda` feature.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnnxRuntime;

/// The ONNX Runtime runtime, for programs that hand out `&'static dyn Runtime`.
pub static RUNTIME: OnnxRuntime = OnnxRuntime;

impl Runtime for OnnxRuntime {
    fn name(&self) -> &'static str {
        "onnx"
    }

    fn model_file(&self) -> ModelFile {
        ModelFile::Onnx
    }

    fn check(&self) -> Result<String> {
        crate::check()
    }

    fn load_library(&self) -> Result<()> {
        runtime().map(|_| ())
    }

    fn supports_device(&self, device: Device) -> std::result::Result<(), String> {
        provider::supports(device)
    }

    fn prepare(&self, request: LoadRequest) -> Result<Arc<dyn ComputeBackend>> {
        Ok(Arc::new(OnnxBackend::prepare(request)?))
    }
}

impl OnnxBackend {
    /// Loads `package`'s `onnx` file and checks it against `model.json` with
    /// one small forward: [`OnnxRuntime`]'s load, returning the concrete
    /// backend.
    ///
    /// For a recurrent law (model.json lists `memory`) the graph must take
    /// the field and one input per memory tensor, named as model.json names
    /// it, and return the delta and `<name>_next` per memory tensor; the
    /// check forward passes zero memory and checks every output's shape.
    pub fn load(package: &ModelPackage, options: &BackendOptions) -> Result<Self> {
        Self::prepare(LoadRequest::new(&OnnxRuntime, package, options)?)
    }

    /// Builds the backend from a checked request.
    pub fn prepare(request: LoadRequest) -> Result<Self> {
        let rt = runtime()?;
        let recipe = Recipe {
            model: request.shared_bytes(),
            origin: request.origin().to_path_buf(),
            device: request.device(),
            threads: request.threads().map(|n| n.get()),
        };
        let (mut first, provider) = build_session(rt, &recipe)?;
        let memory_io = if request.spec().is_recurrent() {
            Some(verify_recurrent(
                &mut first,
                request.spec(),
                &recipe.origin,
            )?)
        } else {
            verify(&mut first, request.spec(), &recipe.origin)?;
            None
        };
        let interior = match memory_io {
            None => prepare_interior(rt, &recipe, &mut first, request.spec()),
            Some(_) => None,
        };
        Ok(Self {
            spec: request.spec().clone(),
            device: recipe.device,
            provider,
            threads: recipe.threads,
            version: &rt.version,
            pool: session_pool(first, recipe.clone()),
            memory_io,
            interior,
        })
    }

    /// Sessions built so far (one per concurrent caller seen, at most the cap).
    pub fn sessions(&self) -> usize {
        self.pool.live()
    }
}

impl ComputeBackend for OnnxBackend {
    fn name(&self) -> &'static str {
        "onnx"
    }

    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn device(&self) -> Device {
        self.device
    }

    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        let mut session = self.pool.checkout()?;
        run_into(&mut session, input, shape, shape, output)
            .map_err(|failure| forward_error(shape, shape, failure))
    }

    fn computes_interior(&self, margin: usize) -> bool {
        self.interior.as_ref().is_some_and(|i| i.margin == margin)
    }

    fn run_interior(
        &self,
        input: &[f32],
        shape: BatchShape,
        margin: usize,
        output: &mut [f32],
    ) -> Result<()> {
        let interior = self.interior.as_ref().filter(|i| i.margin == margin);
        // forward_interior checked that the margin leaves cells.
        let (Some(interior), Some(inner)) = (interior, interior_shape(shape, margin)) else {
            return run_interior_by_crop(self, input, shape, margin, output);
        };
        let mut session = interior.pool.checkout()?;
        run_into(&mut session, input, shape, inner, output)
            .map_err(|failure| forward_error(shape, inner, failure))
    }

    fn run_with_memory(
        &self,
        input: &[f32],
        shape: BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> Result<()> {
        let Some(io) = &self.memory_io else {
            // Only a spec with memory calls this, and such a spec's load
            // resolved the names.
            return Err(Error::backend(
                "onnx",
                "the graph's memory names were not resolved at load",
            ));
        };
        let mut session = self.pool.checkout()?;
        let buffers = Buffers {
            input,
            memory,
            output,
            next_memory,
        };
        run_memory_into(&mut session, io, &self.spec, shape, buffers).map_err(|failure| {
            match failure {
                RunFailure::Ort(message) => {
                    Error::backend("onnx", format!("forward on {shape} failed: {message}"))
                }
                RunFailure::Shape(got) => Error::backend(
                    "onnx",
                    format!(
                        "the model returned delta {got:?} for input {shape}; it must return the input's shape"
                    ),
                ),
                RunFailure::MemoryShape { output, got, want } => Error::backend(
                    "onnx",
                    format!(
                        "for input {shape} the model returned `{output}` of shape {got:?}; it must be {want:?}, the memory's shape"
                    ),
                ),
            }
        })
    }

    fn describe(&self) -> String {
        let threads = match self.threads {
            Some(n) => format!("{n} intra-op threads"),
            None => "intra-op threads: one per core".to_string(),
        };
        let interior = match &self.interior {
            Some(i) => format!(
                ", interiors by a graph without padding (margin {})",
                i.margin
            ),
            None => String::new(),
        };
        format!(
            "onnx on {} ({}, onnxruntime {}, {threads}, up to {} sessions{interior})",
            self.device,
            self.provider,
            self.version,
            self.pool.max()
        )
    }
}

/// The pool of sessions a backend runs `recipe` on, starting from `first`.
fn session_pool(first: Session, recipe: Recipe) -> Pool<Session> {
    let factory: Factory<Session> = Box::new(move || {
        // The runtime is initialised by now; `runtime()` only reads it.
        build_session(runtime()?, &recipe).map(|(session, _)| session)
    });
    Pool::new(first, factory, Pool::<Session>::default_max())
}

/// A forward's failure as the one-line error the caller sees: `shape` the
/// input, `want` the output it should have returned.
fn forward_error(shape: BatchShape, want: BatchShape, failure: RunFailure) -> Error {
    match failure {
        RunFailure::Ort(message) => {
            Error::backend("onnx", format!("forward on {shape} failed: {message}"))
        }
        RunFailure::Shape(got) => Error::backend(
            "onnx",
            format!("the model returned {got:?} for input {shape}; it must return {want}"),
        ),
        // Only `run_memory_into` reports memory outputs.
        RunFailure::MemoryShape { output, .. } => Error::backend(
            "onnx",
            format!("the model returned memory `{output}` to a forward without memory"),
        ),
    }
}

/// The law's graph rewritten to return each field's interior (module
/// `interior`), if the law is local and its graph a chain of padded
/// convolutions, and if the rewritten graph returns what `full` returns on
/// the interior of a probe batch. `None` otherwise: the backend then crops
/// `full`'s output, as every backend may.
fn prepare_interior(
    rt: &OrtRuntime,
    recipe: &Recipe,
    full: &mut Session,
    spec: &ModelSpec,
) -> Option<Interior> {
    let radius = spec.receptive_radius.filter(|&r| r > 0)?;
    let rewritten = match interior::rewrite(&recipe.model) {
        Ok(rewritten) => rewritten,
        Err(why) => {
            tracing::debug!("onnx: fields are cropped after the forward: {why}");
            return None;
        }
    };
    if rewritten.margin != radius {
        tracing::debug!(
            "onnx: fields are cropped after the forward: the graph's convolutions pad {} cells, \
             model.json's receptive radius is {radius}",
            rewritten.margin
        );
        return None;
    }
    let recipe = Recipe {
        model: rewritten.model.into(),
        ..recipe.clone()
    };
    let checked = build_session(rt, &recipe)
        .map_err(|e| e.to_string())
        .and_then(|(mut session, _)| {
            // ONNX Runtime may pick another convolution algorithm for the
            // smaller output: equal within float32 rounding, not bit for bit.
            check_interior_rewrite(
                spec,
                radius,
                |x, shape, y| {
                    run_into(full, x, shape, shape, y).map_err(|f| forward_error(shape, shape, f))
                },
                |x, shape, inner, y| {
                    run_into(&mut session, x, shape, inner, y)
                        .map_err(|f| forward_error(shape, inner, f))
                },
            )
            .map(|()| session)
        });
    match checked {
        Ok(session) => Some(Interior {
            margin: radius,
            pool: session_pool(session, recipe),
        }),
        Err(why) => {
            tracing::warn!("onnx: fields are cropped after the forward: the graph without padding failed its check: {why}");
            None
        }
    }
}

/// One session with the backend's settings, and the provider it runs on.
fn build_session(rt: &OrtRuntime, recipe: &Recipe) -> Result<(Session, &'static str)> {
    let model = &recipe.origin;
    let setting =
        |r: BuilderResult| r.map_err(|e| Error::backend("onnx", format!("session options: {e}")));
    let builder = Session::builder(&rt.env).map_err(|e| Error::backend("onnx", e))?;
    // 0 asks ONNX Runtime for its default, one thread per physical core.
    let builder = setting(builder.with_intra_threads(recipe.threads.unwrap_or(0)))?;
    // The graphs are chains of convolutions: nothing to run side by side, so a
    // sequential plan and no inter-op pool.
    let builder = setting(builder.with_parallel_execution(false))?;
    let builder = setting(builder.with_inter_threads(1))?;
    // ONNX Runtime's pool threads spin (busy-wait) for a while after each
    // parallel section by default. Between two forwards the engine runs its
    // own rayon workers on the same cores; spinning ORT threads would steal
    // those cores and slow every step, so they must sleep instead.
    let builder = setting(builder.with_intra_op_spinning(false))?;
    let builder = setting(builder.with_inter_op_spinning(false))?;
    // ONNX Runtime's memory pattern plans one arena per input shape it has
    // seen; the sparse engine's last chunk of a step has its own shape, so
    // the plan held a second chunk's worth (128 MiB more at 1e6 cells,
    // D = 64). Without it the peak is as candle's and tch's, no slower in
    // alternating runs (README, Performance, round two).
    let builder = setting(builder.with_memory_pattern(false))?;
    let (mut builder, provider): (SessionBuilder, _) = provider::register(builder, recipe.device)?;
    let session = builder.commit_from_memory(&recipe.model).map_err(|e| {
        Error::model(
            model,
            format!(
                "ONNX Runtime cannot load this as an ONNX model ({e}); re-export the package with python/export.py"
            ),
        )
    })?;
    Ok((session, provider))
}

/// Checks the graph's signature, then runs `[1, 2D, m, m]` through it.
fn verify(session: &mut Session, spec: &ModelSpec, path: &Path) -> Result<()> {
    let (inputs, outputs) = (session.inputs().len(), session.outputs().len());
    if inputs != 1 || outputs != 1 {
        return Err(Error::model(
            path,
            format!(
                "the graph has {inputs} inputs ({}) and {outputs} outputs; an Atheria model has one input \
                 [batch, 2 x d_state, height, width] and one output of the same shape{}",
                outlet_names(session.inputs()),
                if inputs > 1 {
                    " (a recurrent law lists its memory in model.json's \"memory\")"
                } else {
                    ""
                }
            ),
        ));
    }
    let channels = spec.channels();
    check_signature("input", session.inputs()[0].dtype(), spec, path)?;
    check_signature("output", session.outputs()[0].dtype(), spec, path)?;

    let m = spec.spatial_multiple.max(1);
    let shape = BatchShape::new(1, channels, m, m);
    // Varied values rather than zeros, so a graph that ignores its input or
    // produces NaN for ordinary inputs shows up here, not mid-simulation.
    let input: Vec<f32> = (0..shape.len())
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 12.0)
        .collect();
    let mut output = vec![0.0f32; shape.len()];
    match run_into(session, &input, shape, shape, &mut output) {
        Ok(()) => {}
        Err(RunFailure::Ort(message)) => {
            return Err(Error::model(
                path,
                format!(
                    "the check forward on {shape} (2 x d_state {} channels from model.json) failed: {message}",
                    spec.d_state
                ),
            ))
        }
        Err(RunFailure::MemoryShape { output, .. }) => {
            return Err(Error::model(
                path,
                format!("the check forward returned memory `{output}`, but model.json lists no memory"),
            ))
        }
        Err(RunFailure::Shape(got)) => {
            let (got_c, got_hw) = (
                got.get(1).copied().unwrap_or(-1),
                got.get(2..).unwrap_or(&[]),
            );
            return Err(Error::model(
                path,
                format!(
                    "the check forward on {shape} returned {got:?}: {got_c} channels and height, width {got_hw:?}, \
                     but model.json (d_state {}) needs {channels} channels and height, width [{m}, {m}]",
                    spec.d_state
                ),
            ));
        }
    }
    if output.iter().any(|v| !v.is_finite()) {
        return Err(Error::model(
            path,
            format!("the check forward on {shape} produced NaN or infinite values"),
        ));
    }
    Ok(())
}

/// Checks a graph input or output as far as its declared type allows: f32,
/// rank 4, `2 x d_state` channels when fixed, and dynamic batch, height and
/// width (engines pick all three at run time).
fn check_signature(role: &str, dtype: &ValueType, spec: &ModelSpec, path: &Path) -> Result<()> {
    let bad = |what: String| Err(Error::model(path, format!("the graph's {role} {what}")));
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return bad(format!("is {dtype:?}, not a tensor"));
    };
    if *ty != TensorElementType::Float32 {
        return bad(format!(
            "has element type {ty:?}; Atheria models take and return f32"
        ));
    }
    if shape.len() != 4 {
        return bad(format!(
            "has rank {} ({shape}); it must be NCHW [batch, 2 x d_state, height, width]",
            shape.len()
        ));
    }
    let channels = spec.channels() as i64;
    if shape[1] >= 0 && shape[1] != channels {
        return bad(format!(
            "has {} channels but model.json says d_state {}, i.e. {channels} channels",
            shape[1], spec.d_state
        ));
    }
    for (axis, name) in [(0, "batch"), (2, "height"), (3, "width")] {
        if shape[axis] >= 0 {
            return bad(format!(
                "has a fixed {name} of {} ({shape}); export with dynamic batch, height and width \
                 (python/export.py does)",
                shape[axis]
            ));
        }
    }
    Ok(())
}

/// Why [`run_into`] or [`run_memory_into`] failed.
enum RunFailure {
    /// ONNX Runtime's own error.
    Ort(String),
    /// The output's shape differs from the input's.
    Shape(Vec<i64>),
    /// A memory output's shape differs from its memory tensor's.
    MemoryShape {
        /// The output's name, `<name>_next`.
        output: String,
        got: Vec<i64>,
        want: [i64; 4],
    },
}

/// The graph-level checks of a recurrent law and its check forward: the
/// memory inputs and `<name>_next` outputs exist, exactly one other input
/// (the field) and output (the delta) remain, all are f32 NCHW, and a
/// forward of a varied `[1, 2D, m, m]` field with zero memory returns
/// finite values of the right shapes. Returns the names the forwards use.
fn verify_recurrent(session: &mut Session, spec: &ModelSpec, path: &Path) -> Result<MemoryIo> {
    let bad = |what: String| Error::model(path, what);
    let names = outlet_names;
    let wanted = || {
        let memory: Vec<&str> = spec.memory.iter().map(|t| t.name.as_str()).collect();
        let next: Vec<String> = memory.iter().map(|n| format!("{n}_next")).collect();
        format!(
            "model.json lists memory, so the graph must take inputs x, {} and return delta, {}",
            memory.join(", "),
            next.join(", ")
        )
    };
    let inputs = session.inputs();
    let outputs = session.outputs();
    for tensor in &spec.memory {
        let name = &tensor.name;
        let Some(input) = inputs.iter().find(|i| i.name() == name) else {
            return Err(bad(format!(
                "the graph has no input `{name}` (its inputs: {}); {}",
                names(inputs),
                wanted()
            )));
        };
        check_memory_signature(
            &format!("input `{name}`"),
            input.dtype(),
            tensor.channels,
            path,
        )?;
        let next = format!("{name}_next");
        let Some(output) = outputs.iter().find(|o| o.name() == next) else {
            return Err(bad(format!(
                "the graph has no output `{next}` (its outputs: {}); {}",
                names(outputs),
                wanted()
            )));
        };
        check_memory_signature(
            &format!("output `{next}`"),
            output.dtype(),
            tensor.channels,
            path,
        )?;
    }
    let is_memory = |n: &str| spec.memory.iter().any(|t| t.name == n);
    let is_next = |n: &str| {
        spec.memory
            .iter()
            .any(|t| n.strip_suffix("_next") == Some(t.name.as_str()))
    };
    let field: Vec<_> = inputs.iter().filter(|i| !is_memory(i.name())).collect();
    let delta: Vec<_> = outputs.iter().filter(|o| !is_next(o.name())).collect();
    let ([field], [delta]) = (&field[..], &delta[..]) else {
        return Err(bad(format!(
            "the graph has inputs {} and outputs {}: besides the memory it must take one field \
             input and return one delta output; {}",
            names(inputs),
            names(outputs),
            wanted()
        )));
    };
    check_signature(
        &format!("input `{}`", field.name()),
        field.dtype(),
        spec,
        path,
    )?;
    check_signature(
        &format!("output `{}`", delta.name()),
        delta.dtype(),
        spec,
        path,
    )?;
    let io = MemoryIo {
        field: field.name().to_string(),
        delta: delta.name().to_string(),
        next: spec
            .memory
            .iter()
            .map(|t| format!("{}_next", t.name))
            .collect(),
    };

    let m = spec.spatial_multiple.max(1);
    let shape = BatchShape::new(1, spec.channels(), m, m);
    // A varied field, as `verify`'s, and zero memory, as a simulation starts.
    let input: Vec<f32> = (0..shape.len())
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 12.0)
        .collect();
    let memory = vec![0.0f32; spec.memory_len(shape)];
    let mut output = vec![0.0f32; shape.len()];
    let mut next_memory = vec![0.0f32; memory.len()];
    let buffers = Buffers {
        input: &input,
        memory: &memory,
        output: &mut output,
        next_memory: &mut next_memory,
    };
    let d = spec.d_state;
    match run_memory_into(session, &io, spec, shape, buffers) {
        Ok(()) => {}
        Err(RunFailure::Ort(message)) => {
            return Err(bad(format!(
                "the check forward on {shape} (2 x d_state {d} channels from model.json) with zero memory failed: {message}"
            )))
        }
        Err(RunFailure::Shape(got)) => {
            return Err(bad(format!(
                "the check forward on {shape} returned delta {got:?}; model.json (d_state {d}) needs {:?}",
                shape.dims_i64()
            )))
        }
        Err(RunFailure::MemoryShape { output, got, want }) => {
            return Err(bad(format!(
                "the check forward on {shape} returned `{output}` of shape {got:?}; model.json's memory needs {want:?}"
            )))
        }
    }
    if output.iter().chain(&next_memory).any(|v| !v.is_finite()) {
        return Err(bad(format!(
            "the check forward on {shape} with zero memory produced NaN or infinite values"
        )));
    }
    Ok(io)
}

/// The names of a graph's inputs or outputs, for errors: `x, h_state`.
fn outlet_names(list: &[ort::value::Outlet]) -> String {
    list.iter()
        .map(|o| o.name().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a memory input or output as far as its declared type allows: f32,
/// rank 4, and `channels` when fixed.
fn check_memory_signature(
    role: &str,
    dtype: &ValueType,
    channels: usize,
    path: &Path,
) -> Result<()> {
    let bad = |what: String| Err(Error::model(path, format!("the graph's {role} {what}")));
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return bad(format!("is {dtype:?}, not a tensor"));
    };
    if *ty != TensorElementType::Float32 {
        return bad(format!("has element type {ty:?}; memory is f32"));
    }
    if shape.len() != 4 {
        return bad(format!(
            "has rank {} ({shape}); memory is NCHW [batch, channels, height / stride, width / stride]",
            shape.len()
        ));
    }
    if shape[1] >= 0 && shape[1] != channels as i64 {
        return bad(format!(
            "has {} channels but model.json's memory says {channels}",
            shape[1]
        ));
    }
    Ok(())
}

/// The caller's buffers for one forward of a recurrent law.
struct Buffers<'a> {
    input: &'a [f32],
    memory: &'a [f32],
    output: &'a mut [f32],
    next_memory: &'a mut [f32],
}

/// Runs the field and the memory through `session` by name, and copies the
/// delta into `output` and each `<name>_next` into its place in
/// `next_memory`.
///
/// The input tensors borrow the caller's slices (no copy: ONNX Runtime does
/// not write to its inputs); the outputs live in ONNX Runtime's memory and
/// are copied once each.
fn run_memory_into(
    session: &mut Session,
    io: &MemoryIo,
    spec: &ModelSpec,
    shape: BatchShape,
    buffers: Buffers<'_>,
) -> std::result::Result<(), RunFailure> {
    let ort = |e: ort::Error| RunFailure::Ort(e.to_string());
    let too_short = |what: &str| {
        RunFailure::Ort(format!(
            "{what} is too short for the memory of a batch {shape}"
        ))
    };
    let Buffers {
        input,
        memory,
        output,
        next_memory,
    } = buffers;
    let dims = shape.dims_i64();
    let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
        Vec::with_capacity(1 + spec.memory.len());
    feeds.push((
        Cow::Borrowed(io.field.as_str()),
        TensorRef::from_array_view((dims, input))
            .map_err(ort)?
            .into(),
    ));
    let mut offset = 0;
    for tensor in &spec.memory {
        let len = tensor.len(shape);
        let part = memory
            .get(offset..offset + len)
            .ok_or_else(|| too_short("memory"))?;
        offset += len;
        let mdims = tensor.dims(shape).map(|d| d as i64);
        feeds.push((
            Cow::Borrowed(tensor.name.as_str()),
            TensorRef::from_array_view((mdims, part))
                .map_err(ort)?
                .into(),
        ));
    }
    let outputs = session.run(feeds).map_err(ort)?;
    let missing = |name: &str| RunFailure::Ort(format!("the model returned no output `{name}`"));
    let value = outputs.get(&io.delta).ok_or_else(|| missing(&io.delta))?;
    let (out_shape, data) = value.try_extract_tensor::<f32>().map_err(ort)?;
    if out_shape[..] != dims[..] || data.len() != output.len() {
        return Err(RunFailure::Shape(out_shape.to_vec()));
    }
    output.copy_from_slice(data);
    let mut offset = 0;
    for (tensor, name) in spec.memory.iter().zip(&io.next) {
        let want = tensor.dims(shape).map(|d| d as i64);
        let value = outputs.get(name).ok_or_else(|| missing(name))?;
        let (got, data) = value.try_extract_tensor::<f32>().map_err(ort)?;
        let len = tensor.len(shape);
        if got[..] != want[..] || data.len() != len {
            return Err(RunFailure::MemoryShape {
                output: name.clone(),
                got: got.to_vec(),
                want,
            });
        }
        next_memory
            .get_mut(offset..offset + len)
            .ok_or_else(|| too_short("next_memory"))?
            .copy_from_slice(data);
        offset += len;
    }
    Ok(())
}

/// Runs `input` (`shape`) through `session` and copies the single output,
/// which must have shape `want`, into `output`.
///
/// The input tensor borrows the caller's slice (no copy); the output lives in
/// ONNX Runtime's memory and is copied once.
fn run_into(
    session: &mut Session,
    input: &[f32],
    shape: BatchShape,
    want: BatchShape,
    output: &mut [f32],
) -> std::result::Result<(), RunFailure> {
    let ort = |e: ort::Error| RunFailure::Ort(e.to_string());
    let tensor = TensorRef::from_array_view((shape.dims_i64(), input)).map_err(ort)?;
    let dims = want.dims_i64();
    let outputs = session.run(ort::inputs![tensor]).map_err(ort)?;
    let value = outputs
        .values()
        .next()
        .ok_or_else(|| RunFailure::Ort("the model returned no output".into()))?;
    let (out_shape, data) = value.try_extract_tensor::<f32>().map_err(ort)?;
    if out_shape[..] != dims[..] || data.len() != output.len() {
        return Err(RunFailure::Shape(out_shape.to_vec()));
    }
    output.copy_from_slice(data);
    Ok(())
}
