//! [`TchBackend`]: loading a TorchScript package and running its forward.

use std::path::Path;
use std::sync::Arc;

use engine_api::pool::Pool;
use engine_api::{
    check_interior_rewrite, interior_shape, run_interior_by_crop, BackendOptions, BatchShape,
    ComputeBackend, Device, Error, LoadRequest, MemoryTensor, ModelFile, ModelPackage, ModelSpec,
    Result, Runtime,
};
use tch::{CModule, IValue, Kind, Tensor};

use crate::error::{run_error, torch_message, NAME};
use crate::interior::Chain;
use crate::pool::{load_module, module_pool, Slot, Staged};
use crate::runtime::{apply_threads, intra_op_threads, torch_device, LIBTORCH_VERSION};

/// A TorchScript model run by libtorch.
///
/// `Send + Sync` without one lock around every forward: each forward checks
/// a module out of a bounded pool (see the crate docs for the figures), so
/// threads that step different engines on one backend run their forwards in
/// parallel.
pub struct TchBackend {
    spec: ModelSpec,
    device: Device,
    torch_device: tch::Device,
    threads: Option<i32>,
    output: OutputKind,
    pool: Pool<Slot>,
    /// The margin whose interior the module's layers run without padding
    /// compute alone (module `interior`), when the law's layers are known
    /// and agreed with its forward at load.
    interior_margin: Option<usize>,
}

/// The tch [`Runtime`] in a program that links libtorch (this crate's tests
/// and examples, and the tch library `libatheria_tch.so`, which the
/// `atheria` library loads at run time and wraps in a runtime of its own).
#[derive(Debug, Clone, Copy, Default)]
pub struct TchRuntime;

/// The tch runtime, for programs that hand out `&'static dyn Runtime`.
pub static RUNTIME: TchRuntime = TchRuntime;

impl Runtime for TchRuntime {
    fn name(&self) -> &'static str {
        NAME
    }

    fn model_file(&self) -> ModelFile {
        ModelFile::TorchScript
    }

    fn check(&self) -> Result<String> {
        crate::check()
    }

    fn supports_device(&self, device: Device) -> std::result::Result<(), String> {
        crate::runtime::supports_device(device)
    }

    fn prepare(&self, request: LoadRequest) -> Result<Arc<dyn ComputeBackend>> {
        Ok(Arc::new(TchBackend::prepare(request)?))
    }
}

/// What the module's `forward` returns, found by the probe at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    /// A tensor: called through `forward_ts`, the cheaper path.
    Tensor,
    /// A tuple whose first element is the tensor.
    TupleFirst,
    /// A recurrent law's tuple `(delta, <memory>_next...)`, called with the
    /// memory tensors after the field (model.json lists memory).
    Memory,
}

impl TchBackend {
    /// Loads the package's `torchscript` file on `options.device` and checks,
    /// with one forward on zeros, that the model maps `2 * d_state` channels
    /// to `2 * d_state` channels and keeps height and width: [`TchRuntime`]'s
    /// load, returning the concrete backend.
    ///
    /// For a recurrent law (model.json lists `memory`) the check forward
    /// passes zero memory too, as `forward(x, <memory>...)`, and checks that
    /// the module returns the tuple `(delta, <memory>_next...)` with every
    /// memory output shaped as its input.
    ///
    /// Also applies `options.threads` to libtorch (process-wide; see the crate
    /// docs).
    pub fn load(package: &ModelPackage, options: &BackendOptions) -> Result<Self> {
        Self::prepare(LoadRequest::new(&TchRuntime, package, options)?)
    }

    /// Builds the backend from a checked request.
    pub fn prepare(request: LoadRequest) -> Result<Self> {
        Self::prepare_with_cap(request, Pool::<Slot>::default_max())
    }

    /// [`prepare`](Self::prepare) with a pool of at most `max_modules`
    /// modules (forwards beyond that many at once wait for a module).
    pub fn prepare_with_cap(request: LoadRequest, max_modules: usize) -> Result<Self> {
        let path = request.origin();
        let threads = intra_op_threads(request.threads())?;
        let torch_device = torch_device(request.device())?;
        apply_threads(threads);
        let module = load_module(request.bytes(), torch_device, path)?;
        let output = if request.spec().is_recurrent() {
            probe_recurrent(&module, request.spec(), torch_device, path)?;
            OutputKind::Memory
        } else {
            probe(&module, request.spec(), torch_device, path)?
        };
        let interior_margin = match output {
            OutputKind::Tensor => interior_margin(&module, request.spec(), torch_device),
            _ => None,
        };
        Ok(Self {
            spec: request.spec().clone(),
            device: request.device(),
            torch_device,
            threads,
            output,
            pool: module_pool(
                module,
                request.shared_bytes(),
                torch_device,
                path.to_path_buf(),
                max_modules,
            ),
            interior_margin,
        })
    }

    /// How many copies of the module the pool holds: the most forwards that
    /// ran at once on this backend, at most [`max_modules`](Self::max_modules).
    pub fn pooled_modules(&self) -> usize {
        self.pool.live()
    }

    /// The most modules the pool will load.
    pub fn max_modules(&self) -> usize {
        self.pool.max()
    }

    /// The margin whose interior
    /// [`forward_interior`](ComputeBackend::forward_interior) computes alone
    /// (the law's layers without padding), if any: what
    /// [`computes_interior`](ComputeBackend::computes_interior) answers
    /// `true` for.
    pub fn interior_margin(&self) -> Option<usize> {
        self.interior_margin
    }
}

impl ComputeBackend for TchBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn device(&self) -> Device {
        self.device
    }

    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        apply_threads(self.threads);
        let mut slot = self.pool.checkout()?;
        let Slot {
            module,
            input: staged,
            ..
        } = &mut *slot;
        let io = Io {
            input,
            shape,
            want: shape,
            output,
        };
        forward_staged(staged, io, self.torch_device, |x| {
            run_module(module, x, self.output)
        })
    }

    fn computes_interior(&self, margin: usize) -> bool {
        self.interior_margin == Some(margin)
    }

    fn run_interior(
        &self,
        input: &[f32],
        shape: BatchShape,
        margin: usize,
        output: &mut [f32],
    ) -> Result<()> {
        // forward_interior checked that the margin leaves cells.
        let inner = interior_shape(shape, margin).filter(|_| self.computes_interior(margin));
        let Some(inner) = inner else {
            return run_interior_by_crop(self, input, shape, margin, output);
        };
        apply_threads(self.threads);
        let mut slot = self.pool.checkout()?;
        let Slot {
            module,
            input: staged,
            chain,
            ..
        } = &mut *slot;
        let chain = match chain {
            Some(chain) => chain,
            None => {
                chain.insert(Chain::of(module, &self.spec).map_err(|e| Error::backend(NAME, e))?)
            }
        };
        let io = Io {
            input,
            shape,
            want: inner,
            output,
        };
        forward_staged(staged, io, self.torch_device, |x| run_chain(chain, x))
    }

    fn run_with_memory(
        &self,
        input: &[f32],
        shape: BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> Result<()> {
        apply_threads(self.threads);
        let spec = &self.spec;
        let dims = shape.dims_i64();
        let mut slot = self.pool.checkout()?;
        let slot = &mut *slot;
        let _no_grad = tch::no_grad_guard();
        // One handle per argument: tch takes the arguments as a slice of
        // IValues, each a new reference to a staged tensor (no data copied).
        let mut args = Vec::with_capacity(1 + spec.memory.len());
        // A recurrent law keeps NCHW: its memory comes and goes in NCHW,
        // and its cell mixes the input with it.
        let staged = stage_input(
            &mut slot.input,
            input,
            dims,
            self.torch_device,
            Layout::Nchw,
        )?;
        args.push(IValue::Tensor(staged.shallow_clone()));
        slot.memory.resize_with(spec.memory.len(), || None);
        let mut offset = 0;
        for (tensor, staged) in spec.memory.iter().zip(slot.memory.iter_mut()) {
            let part = memory_part(memory, &mut offset, tensor, shape)?;
            // Staged (copied) rather than viewed for the reason the field
            // is: a forward may update its memory arguments in place, and
            // `memory` must stay as it was (a failed step keeps it).
            let dims = memory_dims(tensor, shape);
            let staged = stage_input(staged, part, dims, self.torch_device, Layout::Nchw)?;
            args.push(IValue::Tensor(staged.shallow_clone()));
        }
        let out = slot
            .module
            .forward_is(&args)
            .map_err(|e| run_error("forward failed", &e))?;
        drop(args);
        // The load checked this tuple; a module whose forward changes what
        // it returns is reported the same way, as a backend error.
        let results = memory_outputs(out, spec).map_err(|what| Error::backend(NAME, what))?;
        let (delta, next) = results
            .split_first()
            .ok_or_else(|| Error::backend(NAME, "forward returned an empty tuple"))?;
        check_output(delta, dims, dims)?;
        copy_out(delta, output, dims)?;
        let mut offset = 0;
        for (tensor, result) in spec.memory.iter().zip(next) {
            let mdims = memory_dims(tensor, shape);
            check_memory_output(result, tensor, mdims)
                .map_err(|what| Error::backend(NAME, format!("for a batch {shape}, {what}")))?;
            let len = tensor.len(shape);
            let held = next_memory.len();
            let part = next_memory.get_mut(offset..offset + len).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "next_memory holds {held} values, too few for memory `{}` of a batch {shape}",
                    tensor.name
                ))
            })?;
            offset += len;
            copy_out(result, part, mdims)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let threads = self
            .threads
            .map_or_else(|| "default".to_string(), |n| n.to_string());
        let interior = match self.interior_margin {
            Some(m) => format!(", interiors by its layers without padding (margin {m})"),
            None => String::new(),
        };
        format!(
            "tch (libtorch {LIBTORCH_VERSION}) on {}, intra-op threads {threads}, {} pooled module(s) of at most {}{interior}",
            self.device,
            self.pool.live(),
            self.pool.max()
        )
    }
}

/// The margin whose interior `module`'s layers without padding compute
/// ([`Chain`]): the law's receptive radius, if its layers are known and
/// agree with its forward on a probe batch. `None` otherwise (the backend
/// then crops the forward's output, as every backend may).
fn interior_margin(module: &CModule, spec: &ModelSpec, device: tch::Device) -> Option<usize> {
    let radius = spec.receptive_radius.filter(|&r| r > 0)?;
    let chain = match Chain::of(module, spec) {
        Ok(chain) => chain,
        Err(why) => {
            tracing::debug!("tch: fields are cropped after the forward: {why}");
            return None;
        }
    };
    if chain.margin() != radius {
        tracing::debug!(
            "tch: fields are cropped after the forward: the layers trim {} cells, model.json's receptive radius is {radius}",
            chain.margin()
        );
        return None;
    }
    // Staged as every forward stages its input (channels-last), so the
    // probe runs the kernels the forwards will.
    let checked = check_interior_rewrite(
        spec,
        radius,
        |input, shape, output| {
            let io = Io {
                input,
                shape,
                want: shape,
                output,
            };
            forward_staged(&mut None, io, device, |x| {
                run_module(module, x, OutputKind::Tensor)
            })
        },
        |input, shape, inner, output| {
            let io = Io {
                input,
                shape,
                want: inner,
                output,
            };
            forward_staged(&mut None, io, device, |x| run_chain(&chain, x))
        },
    );
    match checked {
        Ok(()) => Some(radius),
        Err(why) => {
            tracing::warn!("tch: fields are cropped after the forward: the layers without padding failed their check: {why}");
            None
        }
    }
}

/// Runs the probe forward and returns how to read the module's output.
fn probe(
    module: &CModule,
    spec: &ModelSpec,
    device: tch::Device,
    path: &Path,
) -> Result<OutputKind> {
    let _no_grad = tch::no_grad_guard();
    let (d, c) = (spec.d_state, spec.channels() as i64);
    let m = probe_side(spec.spatial_multiple) as i64;
    let x = Tensor::f_zeros([1, c, m, m], (Kind::Float, device))
        .map_err(|e| run_error("cannot allocate the probe input", &e))?;
    let out = module.forward_is(&[IValue::Tensor(x)]).map_err(|e| {
        Error::model(
            path,
            format!(
                "model.json says d_state {d}, but the model fails on a [1, {c}, {m}, {m}] input: {}",
                torch_message(&e)
            ),
        )
    })?;
    let (kind, y) = first_tensor(out).map_err(|what| {
        Error::model(
            path,
            format!("forward returns {what}; it must return a Tensor or a tuple whose first element is one"),
        )
    })?;
    let size = y.size();
    let [_, y_c, y_h, y_w] = size[..] else {
        return Err(Error::model(
            path,
            format!("forward returns a tensor of shape {size:?}; it must be 4-D NCHW"),
        ));
    };
    if y_c != c {
        return Err(Error::model(
            path,
            format!(
                "model.json says d_state {d} ({c} channels) but the model returns {y_c} channels; \
                 fix d_state in model.json or export the model again"
            ),
        ));
    }
    if size[..] != [1, c, m, m] {
        return Err(Error::model(
            path,
            format!(
                "for a [1, {c}, {m}, {m}] input the model returns [{}, {y_c}, {y_h}, {y_w}]; \
                 it must keep batch, height and width",
                size[0]
            ),
        ));
    }
    Ok(kind)
}

/// The load-time check of a recurrent law: one forward of a zero field and
/// zero memory, `forward(x, <memory>...)`, which must return the tuple
/// `(delta, <memory>_next...)` with delta shaped as the field and every
/// memory output shaped as its input.
fn probe_recurrent(
    module: &CModule,
    spec: &ModelSpec,
    device: tch::Device,
    path: &Path,
) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    let (d, c) = (spec.d_state, spec.channels() as i64);
    let m = probe_side(spec.spatial_multiple);
    let shape = BatchShape::new(1, spec.channels(), m, m);
    let zeros = |dims: [i64; 4]| {
        Tensor::f_zeros(dims, (Kind::Float, device))
            .map_err(|e| run_error("cannot allocate the probe input", &e))
    };
    let mut args = vec![IValue::Tensor(zeros(shape.dims_i64())?)];
    for tensor in &spec.memory {
        args.push(IValue::Tensor(zeros(memory_dims(tensor, shape))?));
    }
    let memory_shapes = spec
        .memory
        .iter()
        .map(|t| format!("{} {:?}", t.name, memory_dims(t, shape)))
        .collect::<Vec<_>>()
        .join(", ");
    let call = signature(spec);
    let m = m as i64;
    let out = module.forward_is(&args).map_err(|e| {
        Error::model(
            path,
            format!(
                "model.json says d_state {d} and memory {memory_shapes}, but {call} fails on a \
                 [1, {c}, {m}, {m}] field with zero memory: {}; export the model with that forward",
                torch_message(&e)
            ),
        )
    })?;
    let results = memory_outputs(out, spec).map_err(|what| Error::model(path, what))?;
    let Some((delta, next)) = results.split_first() else {
        return Err(Error::model(path, "forward returns an empty tuple"));
    };
    let size = delta.size();
    if size[..] != [1, c, m, m] {
        return Err(Error::model(
            path,
            format!(
                "for a [1, {c}, {m}, {m}] field the model returns delta of shape {size:?}; \
                 it must be the field's (d_state {d} in model.json)"
            ),
        ));
    }
    for (tensor, result) in spec.memory.iter().zip(next) {
        check_memory_output(result, tensor, memory_dims(tensor, shape)).map_err(|what| {
            Error::model(path, format!("for a [1, {c}, {m}, {m}] field, {what}"))
        })?;
    }
    Ok(())
}

/// `forward(x, h_state, c_state) -> (delta, h_state_next, c_state_next)`:
/// the signature model.json's memory asks of the module, for errors.
fn signature(spec: &ModelSpec) -> String {
    let names: Vec<&str> = spec.memory.iter().map(|t| t.name.as_str()).collect();
    let outputs: Vec<String> = names.iter().map(|n| format!("{n}_next")).collect();
    format!(
        "forward(x, {}) -> (delta, {})",
        names.join(", "),
        outputs.join(", ")
    )
}

/// A memory tensor's NCHW shape for a batch of `shape`, as libtorch takes it.
fn memory_dims(tensor: &MemoryTensor, shape: BatchShape) -> [i64; 4] {
    tensor.dims(shape).map(|d| d as i64)
}

/// The slice of the flat memory buffer holding `tensor`, starting at
/// `*offset`, which moves past it.
fn memory_part<'a>(
    memory: &'a [f32],
    offset: &mut usize,
    tensor: &MemoryTensor,
    shape: BatchShape,
) -> Result<&'a [f32]> {
    let len = tensor.len(shape);
    let part = memory.get(*offset..*offset + len).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "memory holds {} values, too few for memory `{}` of a batch {shape}",
            memory.len(),
            tensor.name
        ))
    })?;
    *offset += len;
    Ok(part)
}

/// The tensors of a recurrent law's result: `(delta, <memory>_next...)`, one
/// tuple element per output, or what is wrong with it.
fn memory_outputs(out: IValue, spec: &ModelSpec) -> std::result::Result<Vec<Tensor>, String> {
    let expected = 1 + spec.memory.len();
    let wanted = || {
        format!(
            "model.json lists memory, so the module must be {}",
            signature(spec)
        )
    };
    let items = match out {
        IValue::Tuple(items) => items,
        IValue::Tensor(_) => {
            return Err(format!(
                "forward returns only a tensor (the delta) and no memory outputs; {}",
                wanted()
            ))
        }
        other => {
            let what = first_tensor(other).err().unwrap_or("an unsupported value");
            return Err(format!("forward returns {what}; {}", wanted()));
        }
    };
    if items.len() != expected {
        let missing: Vec<String> = spec
            .memory
            .iter()
            .skip(items.len().saturating_sub(1))
            .map(|t| format!("{}_next", t.name))
            .collect();
        let detail = if missing.is_empty() {
            String::new()
        } else {
            format!(" (missing {})", missing.join(", "))
        };
        return Err(format!(
            "forward returns a tuple of {} values, not {expected}{detail}; {}",
            items.len(),
            wanted()
        ));
    }
    let names = std::iter::once("delta".to_string())
        .chain(spec.memory.iter().map(|t| format!("{}_next", t.name)));
    items
        .into_iter()
        .zip(names)
        .map(|(item, name)| match item {
            IValue::Tensor(t) => Ok(t),
            other => {
                let what = first_tensor(other).err().unwrap_or("a tuple");
                Err(format!("forward's output `{name}` is {what}, not a tensor"))
            }
        })
        .collect()
}

/// Checks a memory output's shape and type against its memory tensor; the
/// error names the output.
fn check_memory_output(
    result: &Tensor,
    tensor: &MemoryTensor,
    dims: [i64; 4],
) -> std::result::Result<(), String> {
    let size = result.size();
    let name = &tensor.name;
    if size[..] != dims[..] {
        return Err(format!(
            "the model's output `{name}_next` has shape {size:?}, but memory `{name}` \
             ({} channels, stride {}) is {dims:?}; it must keep the memory's shape",
            tensor.channels, tensor.stride
        ));
    }
    match result.f_kind() {
        Ok(Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) => Ok(()),
        Ok(kind) => Err(format!(
            "the model's output `{name}_next` is a {kind:?} tensor; it must be floating point"
        )),
        Err(e) => Err(format!(
            "cannot read the type of output `{name}_next`: {}",
            torch_message(&e)
        )),
    }
}

/// Side of the probe field: a small multiple of `spatial_multiple`, at least
/// 4 so that 3x3 convolutions see interior cells.
fn probe_side(spatial_multiple: usize) -> usize {
    let m = spatial_multiple.max(1);
    m * 4usize.div_ceil(m).max(2)
}

/// The tensor a forward returned, or what it returned instead, for errors.
fn first_tensor(out: IValue) -> std::result::Result<(OutputKind, Tensor), &'static str> {
    match out {
        IValue::Tensor(t) => Ok((OutputKind::Tensor, t)),
        IValue::Tuple(items) => match items.into_iter().next() {
            Some(IValue::Tensor(t)) => Ok((OutputKind::TupleFirst, t)),
            _ => Err("a tuple that does not start with a Tensor"),
        },
        IValue::None => Err("None"),
        IValue::TensorList(_) => Err("a list of tensors"),
        IValue::GenericList(_)
        | IValue::IntList(_)
        | IValue::DoubleList(_)
        | IValue::BoolList(_)
        | IValue::StringList(_) => Err("a list"),
        IValue::GenericDict(_) => Err("a dict"),
        IValue::Double(_) | IValue::Int(_) | IValue::Bool(_) => Err("a number"),
        IValue::String(_) => Err("a string"),
        IValue::Object(_) => Err("an object"),
        IValue::Device(_) => Err("a device"),
        _ => Err("an unsupported value"),
    }
}

/// The precondition of viewing `values` as a tensor of `dims`: exactly that
/// many values. One comparison; allocates only to describe a failure.
fn holds_exactly(values: &[f32], dims: [i64; 4]) -> Result<()> {
    let len = dims.iter().try_fold(1i64, |n, &d| n.checked_mul(d));
    if len.and_then(|n| usize::try_from(n).ok()) != Some(values.len()) {
        return Err(Error::InvalidArgument(format!(
            "a buffer of {} values cannot hold a batch of shape {dims:?}",
            values.len()
        )));
    }
    Ok(())
}

/// How a staged input lies in memory.
#[derive(Clone, Copy)]
enum Layout {
    /// Contiguous NCHW, as the caller's slices.
    Nchw,
    /// NHWC in memory ([`channels_last_strides`]).
    ChannelsLast,
}

/// Contiguous NCHW strides.
fn strides(dims: [i64; 4]) -> [i64; 4] {
    [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1]
}

/// Channels-last (NHWC in memory) strides of an NCHW shape: the layout in
/// which the model's input is staged. libtorch's CPU convolution (oneDNN)
/// costs the same per image at every batch size in this layout, while on
/// NCHW its cost per image jumps with the batch (measured with PyTorch 2.13
/// on 2 threads, a 128-channel 3x3 conv on 18 x 18 images: 0.30-0.73 ms per
/// image over batches of 13 to 208 on NCHW, 0.30-0.42 on channels-last);
/// see README, "Two blobs on tch". The copy into the staged tensor
/// transposes on the way, so the layout costs no extra copy.
fn channels_last_strides(dims: [i64; 4]) -> [i64; 4] {
    [dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]]
}

/// Copies the caller's input into a module's input tensor, (re)allocating
/// it only when the shape changed, and returns that tensor.
///
/// The model gets a tensor libtorch owns rather than a view of `input`: a
/// TorchScript forward may write to its input in place, and `input` is a
/// shared borrow.
fn stage_input<'a>(
    staged: &'a mut Staged,
    input: &[f32],
    dims: [i64; 4],
    device: tch::Device,
    layout: Layout,
) -> Result<&'a Tensor> {
    if !matches!(staged, Some((d, _)) if *d == dims) {
        let stride = match layout {
            Layout::Nchw => strides(dims),
            Layout::ChannelsLast => channels_last_strides(dims),
        };
        let t = Tensor::f_empty_strided(dims, stride, (Kind::Float, device))
            .map_err(|e| run_error("cannot allocate the input tensor", &e))?;
        *staged = Some((dims, t));
    }
    let Some((_, staged)) = staged.as_mut() else {
        return Err(Error::backend(NAME, "input tensor missing"));
    };
    holds_exactly(input, dims)?;
    // SAFETY: `input` holds exactly `dims` f32 values (checked just above;
    // `ComputeBackend::forward` checked it too, but `run` is callable on its
    // own), is contiguous, and outlives `src`, which is only read by the
    // synchronous copy below and dropped before this function returns.
    let src = unsafe {
        Tensor::f_from_blob(
            input.as_ptr().cast(),
            &dims,
            &strides(dims),
            Kind::Float,
            tch::Device::Cpu,
        )
    }
    .map_err(|e| run_error("cannot view the input", &e))?;
    staged
        .f_copy_(&src)
        .map_err(|e| run_error("cannot copy the input to libtorch", &e))?;
    Ok(staged)
}

/// A forward's input (NCHW `shape`) and its output buffer, which the result
/// must fill in shape `want`: the input's for a whole forward, its
/// interior's for an interior forward.
struct Io<'a> {
    input: &'a [f32],
    shape: BatchShape,
    want: BatchShape,
    output: &'a mut [f32],
}

/// One forward without gradients: stages the input channels-last in
/// `staged` ([`stage_input`]), runs `forward` on it, checks the result
/// ([`check_output`]) and copies it into the output buffer.
fn forward_staged(
    staged: &mut Staged,
    io: Io<'_>,
    device: tch::Device,
    forward: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    let dims = io.shape.dims_i64();
    let staged = stage_input(staged, io.input, dims, device, Layout::ChannelsLast)?;
    let result = forward(staged)?;
    let want = io.want.dims_i64();
    check_output(&result, dims, want)?;
    copy_out(&result, io.output, want)
}

/// The law's layers without padding ([`Chain::forward`]), errors worded as
/// the backend's.
fn run_chain(chain: &Chain, input: &Tensor) -> Result<Tensor> {
    chain
        .forward(input)
        .map_err(|e| run_error("interior forward failed", &e))
}

/// Runs the module's forward and returns the output tensor.
fn run_module(module: &CModule, input: &Tensor, kind: OutputKind) -> Result<Tensor> {
    let failed = |e: tch::TchError| run_error("forward failed", &e);
    match kind {
        OutputKind::Tensor => module.forward_ts(&[input]).map_err(failed),
        OutputKind::TupleFirst => {
            let out = module
                .forward_is(&[IValue::Tensor(input.shallow_clone())])
                .map_err(failed)?;
            first_tensor(out).map(|(_, t)| t).map_err(|what| {
                Error::backend(
                    NAME,
                    format!("forward returned {what}, not the tuple it returned at load"),
                )
            })
        }
        // `ComputeBackend::forward` refuses recurrent laws before `run`;
        // this is for a direct call of `run`.
        OutputKind::Memory => Err(Error::InvalidArgument(
            "the model is recurrent: call forward_with_memory with its memory".into(),
        )),
    }
}

/// Checks that the output has the shape `want` (the input's, `dims`, for a
/// whole forward; its interior's for an interior forward) and a
/// floating-point type.
fn check_output(result: &Tensor, dims: [i64; 4], want: [i64; 4]) -> Result<()> {
    let size = result.size();
    if size[..] != want[..] {
        let rule = if want == dims {
            "it must keep the shape".to_string()
        } else {
            format!("its interior forward must return {want:?}")
        };
        return Err(Error::backend(
            NAME,
            format!("the model returned shape {size:?} for input {dims:?}; {rule}"),
        ));
    }
    let kind = result
        .f_kind()
        .map_err(|e| run_error("cannot read the output type", &e))?;
    if !matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ) {
        return Err(Error::backend(
            NAME,
            format!("the model returned a {kind:?} tensor; it must return floating point"),
        ));
    }
    Ok(())
}

/// Copies the model's output into the caller's buffer, converting type,
/// layout and device in the one copy.
fn copy_out(result: &Tensor, output: &mut [f32], dims: [i64; 4]) -> Result<()> {
    holds_exactly(output, dims)?;
    // SAFETY: `output` holds exactly `dims` f32 values (checked just above),
    // is contiguous, exclusively borrowed for this call, and outlives `dst`,
    // which is written only by the synchronous copy below and dropped before
    // return.
    let mut dst = unsafe {
        Tensor::f_from_blob(
            output.as_mut_ptr().cast_const().cast(),
            &dims,
            &strides(dims),
            Kind::Float,
            tch::Device::Cpu,
        )
    }
    .map_err(|e| run_error("cannot view the output buffer", &e))?;
    dst.f_copy_(result)
        .map_err(|e| run_error("cannot copy the output from libtorch", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_field_is_a_small_multiple_of_spatial_multiple() {
        assert_eq!(probe_side(1), 4);
        assert_eq!(probe_side(3), 6);
        assert_eq!(probe_side(4), 8);
        assert_eq!(probe_side(8), 16);
        assert_eq!(strides([2, 8, 3, 5]), [120, 15, 5, 1]);
    }

    #[test]
    fn the_input_is_staged_channels_last_with_its_values() {
        let dims = [2, 3, 4, 5];
        let input: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let mut staged = None;
        let t = stage_input(
            &mut staged,
            &input,
            dims,
            tch::Device::Cpu,
            Layout::ChannelsLast,
        )
        .unwrap();
        assert_eq!(t.stride(), [60, 1, 15, 3]);
        // Every value where NCHW indexing puts it: the copy transposed.
        for (n, c, y, x) in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 2, 3), (1, 0, 3, 1)] {
            let want = input[((n * 3 + c) * 4 + y) * 5 + x];
            let got = t.double_value(&[n as i64, c as i64, y as i64, x as i64]) as f32;
            assert_eq!(got, want, "at {:?}", (n, c, y, x));
        }
        let mut out = vec![0.0f32; 120];
        copy_out(t, &mut out, dims).unwrap();
        assert_eq!(out, input, "back to NCHW in the output copy");
        let nchw = stage_input(&mut None, &input, dims, tch::Device::Cpu, Layout::Nchw)
            .unwrap()
            .stride();
        assert_eq!(nchw, strides(dims));
    }
}
