use crate::{BatchShape, Device, ModelSpec, Result};

/// What a user asks of a backend when loading a model.
///
/// Build one from the default (CPU, one thread per core) and change what you
/// need: `BackendOptions::default().with_threads(2)`. The options are checked
/// when a model is loaded ([`check_load_args`](crate::check_load_args)), the
/// same way for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendOptions {
    /// Where to run.
    pub device: Device,
    /// Intra-op threads the backend may use; `None` means "one per core".
    ///
    /// Backends own these threads. Engines never call a backend from inside
    /// their own rayon workers, so the two pools never nest (ARCHITECTURE.md).
    pub threads: Option<usize>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            threads: None,
        }
    }
}

impl BackendOptions {
    /// These options on `device`.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// These options with `threads` intra-op threads (at least 1 and at most
    /// [`max_threads`], checked at load).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// These options with one intra-op thread per core (the default).
    pub fn with_default_threads(mut self) -> Self {
        self.threads = None;
        self
    }
}

/// Threads a user may ask for, per core of this machine: a thread count is
/// capped at this many times the cores (and never below
/// [`MIN_THREAD_CAP`]), so that a typo (`--threads 1000000`) is an error at
/// once instead of a program spawning threads until the machine runs out.
pub const THREADS_PER_CORE_CAP: usize = 4;

/// The lowest cap, for machines with one or two cores, where oversubscribing
/// on purpose (to test, to overlap I/O) is still allowed.
pub const MIN_THREAD_CAP: usize = 16;

/// The most threads [`check_threads`] accepts here:
/// [`THREADS_PER_CORE_CAP`] times the cores, at least [`MIN_THREAD_CAP`].
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * THREADS_PER_CORE_CAP).max(MIN_THREAD_CAP)
}

/// Checks a requested thread count: at least 1 and at most [`max_threads`].
/// The one check behind every place a thread count is given (backend
/// options, the simulation's threads, the programs' `--threads`).
pub fn check_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(crate::Error::InvalidArgument(
            "threads must be at least 1 (leave it unset for one per core)".into(),
        ));
    }
    let cap = max_threads();
    if threads > cap {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Err(crate::Error::InvalidArgument(format!(
            "threads {threads} is more than this machine allows: at most {cap} \
             ({THREADS_PER_CORE_CAP} per core, {cores} cores; leave it unset for one per core)"
        )));
    }
    Ok(())
}

/// A loaded model that turns a batch of fields into a batch of deltas.
///
/// Implementations are immutable once loaded and shareable between threads
/// (`Send + Sync`): several engines may step on several threads while sharing
/// one backend. Any per-thread mutable state (scratch buffers, non-`Sync`
/// library handles) lives behind the implementation's own synchronisation.
///
/// Callers call [`forward`](Self::forward), which checks its arguments
/// ([`check_forward_args`]) and then calls the implementation's
/// [`run`](Self::run): the checks are written once, here, and every backend
/// gets the same errors. Implementations provide `run` and leave `forward`
/// as it is.
///
/// # The threading rule
/// A backend owns its intra-op threads. Callers must invoke [`forward`] from an
/// ordinary thread, never from inside a rayon worker: a backend that runs its
/// own pool inside another pool's worker is the nesting that froze the C++
/// engine this project replaces.
///
/// [`forward`]: ComputeBackend::forward
pub trait ComputeBackend: Send + Sync {
    /// Short backend name: `candle`, `tch` or `onnx`.
    fn name(&self) -> &'static str;

    /// The model this backend runs.
    fn spec(&self) -> &ModelSpec;

    /// Where the model runs.
    fn device(&self) -> Device;

    /// Runs the model on `input` (f32, NCHW `shape`, channels = `2 * d_state`)
    /// and writes the delta, of the same shape, into `output`.
    ///
    /// Checks the arguments against the spec first ([`check_forward_args`]:
    /// channels, `spatial_multiple`, buffer lengths) and returns an
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a wrong
    /// call; an empty batch returns at once. The check allocates nothing
    /// unless it fails. Not meant to be overridden: implement [`run`](Self::run).
    fn forward(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        check_forward_args(self.spec(), input, shape, output)?;
        refuse_recurrent(self.spec())?;
        if input.is_empty() {
            return Ok(());
        }
        self.run(input, shape, output)
    }

    /// Runs the model on `input` and its memory: writes the delta into
    /// `output` and the memory for the next step into `next_memory`,
    /// leaving `memory` as it was (so a caller that drops a failed step
    /// keeps the memory from before it).
    ///
    /// `memory` and `next_memory` hold the model's memory tensors
    /// ([`ModelSpec::memory`]) one after another, each
    /// `[B, channels, H / stride, W / stride]`: [`ModelSpec::memory_len`]
    /// floats, none for a law without memory. This is the call engines
    /// make: for a law without memory it is [`forward`](Self::forward), so
    /// an engine never asks whether the law it runs is recurrent, and the
    /// next recurrent law is a model change, not an engine change.
    ///
    /// Checks as [`forward`](Self::forward) does, and the memory lengths
    /// ([`check_memory_args`]). Not meant to be overridden: implement
    /// [`run_with_memory`](Self::run_with_memory).
    ///
    /// [`ModelSpec::memory`]: crate::ModelSpec::memory
    /// [`ModelSpec::memory_len`]: crate::ModelSpec::memory_len
    fn forward_with_memory(
        &self,
        input: &[f32],
        shape: BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> Result<()> {
        let spec = self.spec();
        check_forward_args(spec, input, shape, output)?;
        check_memory_args(spec, shape, memory, next_memory)?;
        if input.is_empty() {
            return Ok(());
        }
        if !spec.is_recurrent() {
            return self.run(input, shape, output);
        }
        self.run_with_memory(input, shape, memory, output, next_memory)
    }

    /// The backend's forward of a recurrent law, called by
    /// [`forward_with_memory`](Self::forward_with_memory) only with checked
    /// arguments and a non-empty batch. A backend that cannot run recurrent
    /// laws keeps this default, which says so.
    fn run_with_memory(
        &self,
        input: &[f32],
        shape: BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> Result<()> {
        let _ = (input, shape, memory, output, next_memory);
        let spec = self.spec();
        Err(crate::Error::BackendUnavailable {
            backend: self.name(),
            message: format!(
                "model `{}` ({}) carries memory, which this backend does not run",
                spec.name, spec.architecture
            ),
        })
    }

    /// The backend's own forward, called by [`forward`](Self::forward) only
    /// with arguments that passed [`check_forward_args`] and a non-empty
    /// batch: `input.len() == output.len() == shape.len() > 0`.
    ///
    /// Steady-state calls with the same shape should not allocate on the Rust
    /// side. Failures are errors, never panics.
    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()>;

    /// Whether [`forward_interior`](Self::forward_interior) with this
    /// `margin` computes less than [`forward`](Self::forward): `true` when
    /// the backend's kernels skip (most of) the margin's work (candle's
    /// Winograd 3x3 convolution and per-cell layers; ONNX Runtime's graph and
    /// tch's layers without padding), so that an engine which drops
    /// every field's halo (the sparse engine) asks for the interior alone.
    /// The default, `false`, tells the engine to call `forward` and read
    /// the interior itself, which costs the same and allocates nothing.
    fn computes_interior(&self, margin: usize) -> bool {
        let _ = margin;
        false
    }

    /// Runs the model on `input` (NCHW `shape`) as [`forward`](Self::forward)
    /// does, but writes only each field's interior: the delta without its
    /// outer `margin` rows and columns, into `output` shaped
    /// `[B, C, H - 2 margin, W - 2 margin]` ([`interior_shape`]).
    ///
    /// The values are `forward`'s at those cells up to float32 rounding (a
    /// backend may sum in another order when it skips the margin). Checks
    /// as `forward` does ([`check_interior_args`]); a recurrent law is
    /// refused as `forward` refuses it. Not meant to be overridden:
    /// implement [`run_interior`](Self::run_interior).
    fn forward_interior(
        &self,
        input: &[f32],
        shape: BatchShape,
        margin: usize,
        output: &mut [f32],
    ) -> Result<()> {
        check_interior_args(self.spec(), input, shape, margin, output)?;
        refuse_recurrent(self.spec())?;
        if input.is_empty() {
            return Ok(());
        }
        self.run_interior(input, shape, margin, output)
    }

    /// The backend's interior forward, called by
    /// [`forward_interior`](Self::forward_interior) only with checked
    /// arguments and a non-empty batch. The default runs [`run`](Self::run)
    /// into a buffer it allocates and copies the interior out
    /// ([`run_interior_by_crop`]); a backend that can skip the margin's work
    /// overrides this and says so in
    /// [`computes_interior`](Self::computes_interior).
    fn run_interior(
        &self,
        input: &[f32],
        shape: BatchShape,
        margin: usize,
        output: &mut [f32],
    ) -> Result<()> {
        run_interior_by_crop(self, input, shape, margin, output)
    }

    /// A one-line description for logs (backend, device, provider in use).
    fn describe(&self) -> String {
        format!("{} on {}", self.name(), self.device())
    }
}

/// Checks the arguments of a [`ComputeBackend::forward`] call against a spec.
///
/// [`ComputeBackend::forward`] calls this before every backend's own
/// [`run`](ComputeBackend::run), so that a wrong call is one clear error, the
/// same on every backend. Allocates only to describe a failure.
pub fn check_forward_args(
    spec: &ModelSpec,
    input: &[f32],
    shape: BatchShape,
    output: &[f32],
) -> Result<()> {
    let expected = 2 * spec.d_state;
    if shape.channels != expected {
        return Err(crate::Error::InvalidArgument(format!(
            "batch {shape} has {} channels but model `{}` takes {expected} (2 x d_state {})",
            shape.channels, spec.name, spec.d_state
        )));
    }
    let m = spec.spatial_multiple.max(1);
    if !shape.height.is_multiple_of(m) || !shape.width.is_multiple_of(m) {
        return Err(crate::Error::InvalidArgument(format!(
            "batch {shape}: height and width must be multiples of {m} for model `{}`",
            spec.name
        )));
    }
    let len = shape.checked_len()?;
    if input.len() != len || output.len() != len {
        return Err(crate::Error::InvalidArgument(format!(
            "batch {shape} needs {len} values but input has {} and output {}",
            input.len(),
            output.len()
        )));
    }
    Ok(())
}

/// The error of a forward without memory asked of a recurrent law, which
/// must be stepped with its memory.
fn refuse_recurrent(spec: &ModelSpec) -> Result<()> {
    if spec.is_recurrent() {
        return Err(crate::Error::InvalidArgument(format!(
            "model `{}` ({}) is recurrent: call forward_with_memory with its memory",
            spec.name, spec.architecture
        )));
    }
    Ok(())
}

/// The shape of [`ComputeBackend::forward_interior`]'s output: `shape`
/// without `margin` rows and columns on each side (`None` when a margin
/// would leave nothing; a margin of 0 is the shape itself, even an empty one).
pub fn interior_shape(shape: BatchShape, margin: usize) -> Option<BatchShape> {
    if margin == 0 {
        return Some(shape);
    }
    let cut = margin.checked_mul(2)?;
    if cut >= shape.height || cut >= shape.width {
        return None;
    }
    Some(BatchShape::new(
        shape.batch,
        shape.channels,
        shape.height - cut,
        shape.width - cut,
    ))
}

/// Checks the arguments of a [`ComputeBackend::forward_interior`] call: the
/// input as [`check_forward_args`] checks it, a margin that leaves at least
/// one cell, and an output of [`interior_shape`]'s length. Allocates only
/// to describe a failure.
pub fn check_interior_args(
    spec: &ModelSpec,
    input: &[f32],
    shape: BatchShape,
    margin: usize,
    output: &[f32],
) -> Result<()> {
    // The input alone (given twice): the output has the interior's length.
    check_forward_args(spec, input, shape, input)?;
    let Some(inner) = interior_shape(shape, margin) else {
        return Err(crate::Error::InvalidArgument(format!(
            "batch {shape} has no interior with a margin of {margin} (at most {} for these fields)",
            (shape.height.min(shape.width).max(1) - 1) / 2
        )));
    };
    if output.len() != inner.len() {
        return Err(crate::Error::InvalidArgument(format!(
            "the interior {inner} of batch {shape} needs {} values but output has {}",
            inner.len(),
            output.len()
        )));
    }
    Ok(())
}

/// Copies the interior of `full` (`shape`, NCHW) without its outer `margin`
/// rows and columns into `output` ([`interior_shape`]).
///
/// # Panics
/// If the lengths do not match the shapes.
pub fn copy_interior(full: &[f32], shape: BatchShape, margin: usize, output: &mut [f32]) {
    let inner = interior_shape(shape, margin).expect("copy_interior: a margin that leaves cells");
    let (h, w, iw) = (shape.height, shape.width, inner.width);
    assert_eq!(full.len(), shape.len());
    assert_eq!(output.len(), inner.len());
    for (plane, out) in full
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(inner.height * iw))
    {
        for (row, dst) in plane[margin * w..]
            .chunks_exact(w)
            .zip(out.chunks_exact_mut(iw))
        {
            dst.copy_from_slice(&row[margin..margin + iw]);
        }
    }
}

/// Checks, at load, a backend's own way of computing interiors (a rewritten
/// graph, a law's layers without padding) against its whole forward: both
/// run on one probe batch (two fields of `spec`'s channels, non-square,
/// with room for `margin` on every side, varied values with no short
/// period), and every interior value must lie within 1e-4 relative of the
/// whole forward's, cropped ([`copy_interior`]). `whole` gets the input,
/// its shape and an output buffer of that shape; `interior` the input, its
/// shape, the interior's shape ([`interior_shape`]) and an output buffer of
/// the interior's shape. Returns why not in one line: the backend then
/// keeps cropping.
pub fn check_interior_rewrite(
    spec: &ModelSpec,
    margin: usize,
    whole: impl FnOnce(&[f32], BatchShape, &mut [f32]) -> Result<()>,
    interior: impl FnOnce(&[f32], BatchShape, BatchShape, &mut [f32]) -> Result<()>,
) -> std::result::Result<(), String> {
    let m = spec.spatial_multiple.max(1);
    let side = |extra: usize| (2 * margin + extra).div_ceil(m) * m;
    let shape = BatchShape::new(2, spec.channels(), side(3), side(5));
    let inner = interior_shape(shape, margin).ok_or_else(|| format!("{shape} has no interior"))?;
    let input: Vec<f32> = (0..shape.len())
        .map(|i| ((i * 7919 % 1031) as f32 / 1031.0 - 0.5) * 2.0)
        .collect();
    let mut full = vec![0.0f32; shape.len()];
    whole(&input, shape, &mut full)
        .map_err(|e| format!("the whole forward on {shape} failed: {e}"))?;
    let mut want = vec![0.0f32; inner.len()];
    copy_interior(&full, shape, margin, &mut want);
    let mut got = vec![0.0f32; inner.len()];
    interior(&input, shape, inner, &mut got)
        .map_err(|e| format!("the interior forward on {shape} failed: {e}"))?;
    let worst = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs() / (1.0 + a.abs()))
        // A NaN anywhere fails too (f32::max would skip it).
        .map(|d| if d.is_nan() { f32::INFINITY } else { d })
        .fold(0.0f32, f32::max);
    if worst > 1e-4 {
        return Err(format!(
            "on {shape} it differs from the whole forward's interior by {worst:e} (relative)"
        ));
    }
    Ok(())
}

/// [`ComputeBackend::run_interior`]'s default: `backend.run` into a buffer
/// allocated here, then [`copy_interior`]. Backends that override
/// `run_interior` call it for the models they cannot run on the interior.
pub fn run_interior_by_crop<B: ComputeBackend + ?Sized>(
    backend: &B,
    input: &[f32],
    shape: BatchShape,
    margin: usize,
    output: &mut [f32],
) -> Result<()> {
    let mut full = vec![0.0f32; input.len()];
    backend.run(input, shape, &mut full)?;
    copy_interior(&full, shape, margin, output);
    Ok(())
}

/// Checks the memory buffers of a
/// [`ComputeBackend::forward_with_memory`] call: each holds
/// [`ModelSpec::memory_len`](crate::ModelSpec::memory_len) floats for
/// `shape`. Allocates only to describe a failure.
pub fn check_memory_args(
    spec: &ModelSpec,
    shape: BatchShape,
    memory: &[f32],
    next_memory: &[f32],
) -> Result<()> {
    let len = spec.memory_len(shape);
    if memory.len() != len || next_memory.len() != len {
        let names: Vec<_> = spec.memory.iter().map(|t| t.name.as_str()).collect();
        let what = if names.is_empty() {
            "no memory".to_string()
        } else {
            format!("memory {}", names.join(", "))
        };
        return Err(crate::Error::InvalidArgument(format!(
            "batch {shape} of model `{}` ({what}) needs {len} memory values but memory has {} and next_memory {}",
            spec.name,
            memory.len(),
            next_memory.len()
        )));
    }
    Ok(())
}
