//! `atheria_native._native`: the Python extension module over the
//! [`atheria`] library.
//!
//! One class, [`PySimulation`] (Python's `atheria_native.Simulation`), wraps
//! an [`atheria::Simulation`] behind a mutex:
//!
//! - every call does its Rust work with the GIL released (`Python::detach`),
//!   so other Python threads run meanwhile and two simulations step on two
//!   threads at once;
//! - `step(n)` runs in slices of at most `SLICE` (50 ms): between slices it takes
//!   the GIL back for a moment to let Python handle signals, so Ctrl-C
//!   raises `KeyboardInterrupt` promptly, after a whole step;
//! - psi and fields are returned as numpy arrays that own their memory (a
//!   copy: changing them changes nothing in the simulation).
//!
//! Errors are the library's [`atheria::Error`] turned into the exception
//! classes of `atheria_native._errors` (`to_py`), with its one-line
//! message.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use atheria::instruments::metrics::EPOCH_NAMES;
use atheria::instruments::parse::parse_tool;
use atheria::{
    BackendKind, CellBox, DenseState, EngineKind, Error, Experiment, InitialState, Simulation, Viz,
};
use numpy::{Complex32, PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString, PyTuple, PyType};
use rayon::prelude::*;

/// Longest stretch `step(n)` runs without the GIL before it checks for
/// signals (Ctrl-C) and gives other Python threads their turn.
const SLICE: Duration = Duration::from_millis(50);

/// Which exception class of `atheria_native._errors` an error becomes.
#[derive(Clone, Copy)]
enum Kind {
    /// `AtheriaError`: anything else.
    Base,
    /// `InvalidInput` (a `ValueError`): the caller's input cannot be used.
    Input,
    /// `StepFailed` (a `RuntimeError`): a step (or the backend) failed.
    Step,
}

static ATHERIA_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INVALID_INPUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static STEP_FAILED: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The Python exception of class `kind` with message `message`.
fn exception(kind: Kind, message: String) -> PyErr {
    Python::attach(|py| {
        let (cell, name) = match kind {
            Kind::Base => (&ATHERIA_ERROR, "AtheriaError"),
            Kind::Input => (&INVALID_INPUT, "InvalidInput"),
            Kind::Step => (&STEP_FAILED, "StepFailed"),
        };
        match cell.import(py, "atheria_native._errors", name) {
            Ok(ty) => PyErr::from_type(ty.clone(), message),
            // The package is broken; say so rather than hide the message.
            Err(e) => e,
        }
    })
}

/// The library's error as a Python exception with its message (which
/// already carries the cause: a failed step names what failed underneath).
fn to_py(error: Error) -> PyErr {
    let kind = match error.cause() {
        _ if matches!(error, Error::Step { .. } | Error::TornStep { .. }) => Kind::Step,
        Error::Backend { .. }
        | Error::NonFinite { .. }
        | Error::NestedPool { .. }
        | Error::Timeout { .. }
        | Error::Torn { .. } => Kind::Step,
        Error::Io { .. }
        | Error::Model { .. }
        | Error::State { .. }
        | Error::InvalidArgument(_)
        | Error::BackendUnavailable { .. }
        | Error::TooManyCells { .. }
        | Error::OutOfMemory { .. } => Kind::Input,
        _ => Kind::Base,
    };
    exception(kind, error.to_string())
}

/// An `InvalidInput` with `message`.
fn invalid(message: impl Into<String>) -> PyErr {
    exception(Kind::Input, message.into())
}

/// A neural quantum-cellular-automaton simulation: a law, an engine and its
/// lattice (Python: `atheria_native.Simulation`, over `atheria::Simulation`).
///
/// Arguments: `model`, a model package directory (with model.json), or
/// None for the built-in law (candle only); `backend`, "candle", "tch" or
/// "onnx" (compiled in: `atheria_native.backends()`); `engine`, "dense" or
/// "sparse"; `grid`, the side of the initial square field; `init`,
/// "random", "complex_noise", "zeros" or a state file's path; `seed`, the
/// initial field's; `gamma`, the decay term; `threads`, the backend's
/// (default one per core); `threshold`, the existence threshold (default
/// off for dense, 0.01 for sparse).
///
/// Every call runs with the GIL released. One simulation may be used from
/// several threads (calls take turns); several simulations step at once.
#[pyclass(name = "Simulation", module = "atheria_native", frozen)]
pub struct PySimulation {
    /// The simulation; locked only with the GIL released.
    sim: Mutex<Simulation>,
}

impl PySimulation {
    /// Runs `f` on the simulation with the GIL released (waiting for the
    /// lock included), so a step on another thread never blocks Python.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Simulation) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.lock()?;
            f(&mut guard).map_err(Failure::Atheria)
        })
        .map_err(Failure::into_py)
    }

    /// The lock; an error once a panic left the simulation half-changed.
    fn lock(&self) -> Result<MutexGuard<'_, Simulation>, Failure> {
        self.sim.lock().map_err(|_| {
            Failure::Other(
                Kind::Step,
                "the simulation is unusable: an earlier call panicked inside the engine".into(),
            )
        })
    }
}

/// An error made without the GIL, turned into an exception after.
enum Failure {
    Atheria(Error),
    Other(Kind, String),
}

impl Failure {
    fn into_py(self) -> PyErr {
        match self {
            Failure::Atheria(e) => to_py(e),
            Failure::Other(kind, message) => exception(kind, message),
        }
    }
}

#[pymethods]
impl PySimulation {
    /// Builds a simulation (loads the law, makes the initial state).
    ///
    /// `experiment` is an Atheria experiment folder
    /// (`output/experiments/<name>`): its law from the checkpoint Atheria
    /// would load, and its gamma, grid and initial state where `gamma`,
    /// `grid` and `init` are not given (otherwise they default to 0, 128
    /// and `random`). `tile` and `atomic_steps` are the sparse engine's
    /// (`SimulationBuilder::tile`, `SimulationBuilder::atomic_steps`).
    #[new]
    #[pyo3(signature = (model=None, backend="candle", engine="dense", grid=None, init=None, seed=0, gamma=None, threads=None, threshold=None, experiment=None, tile=None, atomic_steps=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        backend: &str,
        engine: &str,
        grid: Option<i64>,
        init: Option<&str>,
        seed: u64,
        gamma: Option<f64>,
        threads: Option<i64>,
        threshold: Option<f64>,
        experiment: Option<PathBuf>,
        tile: Option<i64>,
        atomic_steps: bool,
    ) -> PyResult<Self> {
        let backend: BackendKind = backend.parse().map_err(to_py)?;
        let engine: EngineKind = engine.parse().map_err(to_py)?;
        if model.is_some() && experiment.is_some() {
            return Err(invalid("give model or experiment, not both".to_string()));
        }
        let experiment = experiment
            .map(|dir| py.detach(|| Experiment::open(dir)))
            .transpose()
            .map_err(to_py)?;
        let size = match grid {
            Some(grid) => usize::try_from(grid)
                .ok()
                .filter(|&g| g >= 1)
                .ok_or_else(|| invalid(format!("grid must be at least 1 cell, got {grid}")))?,
            None => experiment.as_ref().map_or(128, |e| e.config.grid_size),
        };
        let init = init.map(str::to_string).unwrap_or_else(|| {
            experiment
                .as_ref()
                .map_or("random".into(), |e| e.config.initial_mode.clone())
        });
        let initial = InitialState::from_arg(&init, seed, size).map_err(to_py)?;
        let gamma = match gamma {
            Some(g) => to_f32("gamma", g)?,
            None => experiment.as_ref().map_or(0.0, |e| e.config.gamma),
        };
        let mut builder = Simulation::builder();
        builder = match (&experiment, model) {
            (Some(e), _) if backend == BackendKind::Candle => builder.experiment(e),
            (Some(e), _) => {
                // tch and onnx run files only PyTorch writes: this
                // interpreter (which has torch where the project's
                // environment is) converts the checkpoint with the exporter.
                let python: PathBuf = py.import("sys")?.getattr("executable")?.extract()?;
                let dir = py.detach(|| e.convert(&python)).map_err(to_py)?;
                builder.experiment(e).model_dir(dir)
            }
            (None, Some(dir)) => builder.model_dir(dir),
            (None, None) => builder.default_law(),
        };
        builder = builder
            .backend_kind(backend)
            .engine(engine)
            .initial(initial)
            .gamma(gamma)
            .threshold(threshold.map(|t| to_f32("threshold", t)).transpose()?)
            .atomic_steps(atomic_steps);
        if let Some(tile) = tile {
            // The engine checks the value (a power of two from 4 to 1024).
            let t = usize::try_from(tile).map_err(|_| {
                invalid(format!(
                    "tile must be a power of two from 4 to 1024, got {tile}"
                ))
            })?;
            builder = builder.tile(t);
        }
        if let Some(threads) = threads {
            let n = usize::try_from(threads)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| invalid(format!("threads must be at least 1, got {threads}")))?;
            builder = builder.threads(n);
        }
        let sim = py.detach(|| builder.build()).map_err(to_py)?;
        Ok(Self {
            sim: Mutex::new(sim),
        })
    }

    /// Advances `n` steps with the GIL released; returns the step count.
    #[pyo3(signature = (n=1))]
    fn step(&self, py: Python<'_>, n: i64) -> PyResult<u64> {
        let mut left =
            u64::try_from(n).map_err(|_| invalid(format!("n must be at least 0, got {n}")))?;
        loop {
            let (done, count) = py
                .detach(|| {
                    let mut sim = self.lock()?;
                    let started = Instant::now();
                    let mut done = 0u64;
                    while done < left {
                        sim.step().map_err(Failure::Atheria)?;
                        done += 1;
                        if started.elapsed() >= SLICE {
                            break;
                        }
                    }
                    Ok((done, sim.step_count()))
                })
                .map_err(Failure::into_py)?;
            left -= done;
            if left == 0 {
                return Ok(count);
            }
            // Python's signal handlers run here; Ctrl-C raises
            // KeyboardInterrupt between two whole steps.
            py.check_signals()?;
        }
    }

    /// Steps taken since the run began (a loaded state's count included).
    #[getter]
    fn step_count(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |s| Ok(s.step_count()))
    }

    /// Complex channels per cell (D).
    #[getter]
    fn d_state(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| Ok(s.d_state()))
    }

    /// `"dense"` or `"sparse"`.
    #[getter]
    fn engine(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.with(py, |s| Ok(s.engine_kind().name()))
    }

    /// The decay term of the next steps.
    #[getter]
    fn gamma(&self, py: Python<'_>) -> PyResult<f32> {
        self.with(py, |s| Ok(s.gamma()))
    }

    /// Changes the decay term from the next step on.
    #[setter]
    fn set_gamma(&self, py: Python<'_>, gamma: f64) -> PyResult<()> {
        let gamma = to_f32("gamma", gamma)?;
        self.with(py, |s| s.set_gamma(gamma))
    }

    /// Cells holding matter.
    #[getter]
    fn occupied_count(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| Ok(s.occupied_count()))
    }

    /// Psi as a new complex64 numpy array `[H, W, D]`: the dense grid, or
    /// the sparse lattice over its bounding box.
    #[getter]
    fn psi<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (data, shape) = self.with(py, |s| {
            Ok(match s.dense() {
                Some(e) => interleave(e.state()),
                None => interleave(&s.state()?),
            })
        })?;
        Ok(PyArray1::from_vec(py, data).reshape(shape)?.into_any())
    }

    /// Reads psi into `out`, a writable C-ordered complex64 array of psi's
    /// shape, and returns it: the read of `psi` without a new array each
    /// time (no allocation, no fresh pages for a loop that reads every
    /// step). Without `out`, the same as `psi`.
    #[pyo3(signature = (out=None))]
    fn read_psi<'py>(
        &self,
        py: Python<'py>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(out) = out else {
            return self.psi(py);
        };
        let array = out
            .cast::<numpy::PyArray3<Complex32>>()
            .map_err(|_| invalid("out must be a complex64 numpy array [H, W, D]".to_string()))?;
        // as_slice_mut takes Fortran order too: it would fill it as C order.
        if !array.is_c_contiguous() {
            return Err(invalid(
                "out must be C-contiguous (np.empty(shape, np.complex64))".to_string(),
            ));
        }
        let mut view = array
            .try_readwrite()
            .map_err(|e| invalid(format!("out cannot be written: {e}")))?;
        let shape = view.shape().to_vec();
        let slice = view.as_slice_mut().map_err(|_| {
            invalid("out must be C-contiguous (np.empty(shape, np.complex64))".to_string())
        })?;
        let target = SendSlice(slice.as_mut_ptr(), slice.len());
        self.with(py, move |s| {
            let fill = |state: &DenseState| {
                let want = [state.height(), state.width(), state.d_state()];
                if shape != want {
                    return Err(Error::InvalidArgument(format!(
                        "out has shape {shape:?}, psi is {want:?}"
                    )));
                }
                // SAFETY: `target` is the data of `out`, a C-contiguous
                // complex64 array of exactly `want` elements, kept alive
                // (and borrowed read-write against other Rust borrowers) by
                // `view` until this call returns. Python code on another
                // thread may touch it meanwhile, as with any numpy buffer
                // filled without the GIL; that changes values, not memory.
                let out = unsafe { target.slice() };
                interleave_into(state, out);
                Ok(())
            };
            match s.dense() {
                Some(e) => fill(e.state()),
                None => fill(&s.state()?),
            }
        })?;
        Ok(out)
    }

    /// Replaces the state with `value`, an array `[H, W, D]` of complex (or
    /// real) numbers converted to complex64 in C order. The dense engine
    /// needs its grid's shape; the sparse engine takes the cells that are
    /// not all zero as matter, placed at its bounding box's corner.
    #[setter]
    fn set_psi(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let array = complex_array(py, value, "psi")?;
        let array = array.readonly();
        let shape = array.shape().to_vec();
        let data = array.as_slice()?;
        let (h, w, d) = match shape[..] {
            [h, w, d] => (h, w, d),
            _ => {
                return Err(invalid(format!(
                    "psi must have 3 dimensions [H, W, D], got shape {shape:?}"
                )))
            }
        };
        if let Some(i) = data
            .iter()
            .position(|v| !v.re.is_finite() || !v.im.is_finite())
        {
            let (cell, c) = (i / d.max(1), i % d.max(1));
            return Err(invalid(format!(
                "psi must be finite: cell (x = {}, y = {}) channel {c} is {}",
                cell % w.max(1),
                cell / w.max(1),
                data[i]
            )));
        }
        let planes = deinterleave(data, h, w, d);
        self.with(py, move |s| {
            if d != s.d_state() {
                return Err(Error::InvalidArgument(format!(
                    "psi has {d} channels but the law has d_state {}",
                    s.d_state()
                )));
            }
            // Psi is replaced; a recurrent law's memory stays, as in
            // Atheria, where writing psi leaves h and c alone (the sparse
            // engine's with the window it lies over).
            let (memory, memory_origin) = match (s.dense(), s.sparse().and_then(|e| e.memory())) {
                (Some(e), _) => (e.state().memory.clone(), None),
                (None, Some((m, w))) => (m.clone(), Some((w.min_x, w.min_y))),
                (None, None) => Default::default(),
            };
            let origin = match s.dense() {
                Some(e) => {
                    let cur = e.state();
                    if (cur.height(), cur.width()) != (h, w) {
                        return Err(Error::InvalidArgument(format!(
                            "psi must have shape [{}, {}, {d}] (the grid's), got [{h}, {w}, {d}]",
                            cur.height(),
                            cur.width()
                        )));
                    }
                    cur.origin
                }
                None => s.extent().map_or((0, 0), |b| (b.min_x, b.min_y)),
            };
            let occupied: Vec<u8> = if s.dense().is_some() {
                vec![1; h * w]
            } else {
                (0..h * w)
                    .map(|i| (0..2 * d).any(|c| planes[c * h * w + i] != 0.0) as u8)
                    .collect()
            };
            let mut state = DenseState::from_planes(h, w, d, planes, occupied)?;
            state.origin = origin;
            state.step = s.step_count();
            state.memory = memory;
            state.memory_origin = memory_origin;
            s.set_state(state)
        })
    }

    /// Applies a tool: `apply_tool("vortex", x=40, y=40, radius=6)` (or a
    /// whole tool string, `apply_tool("vortex:x=40,y=40")`).
    #[pyo3(signature = (name, **params))]
    fn apply_tool(
        &self,
        py: Python<'_>,
        name: &str,
        params: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let spec = tool_spec(name, params)?;
        self.with(py, move |s| {
            let scheduled = parse_tool(&spec, s.max_cells())?;
            if scheduled.step.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "tool `{spec}`: `@step` schedules a tool for the CLI; call apply_tool just before that step instead"
                )));
            }
            s.apply(&scheduled.tool)
        })
    }

    /// A visualization as a float32 numpy array: `[H, W]`, `[H, W, 3]` for
    /// RGB maps, `[5, H, W]` for `holographic_bulk`.
    #[pyo3(signature = (viz, mask=true))]
    fn field<'py>(&self, py: Python<'py>, viz: &str, mask: bool) -> PyResult<Bound<'py, PyAny>> {
        let viz: Viz = viz.parse().map_err(to_py)?;
        let map = self.with(py, move |s| {
            let area = s.extent().unwrap_or_else(|| CellBox::new(0, 0, 0, 0));
            s.field_with(viz, area, mask)
        })?;
        let mut shape = Vec::with_capacity(4);
        if map.layers != 1 {
            shape.push(map.layers);
        }
        shape.extend([map.height, map.width]);
        if map.channels != 1 {
            shape.push(map.channels);
        }
        Ok(PyArray1::from_vec(py, map.data).reshape(shape)?.into_any())
    }

    /// The readouts now, as a dict: the fields of [`atheria::Metrics`]
    /// (docs/instruments.md, "Readouts") and `epoch_name`.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let metrics = self.with(py, |s| s.metrics())?;
        let m = metrics;
        let dict = PyDict::new(py);
        dict.set_item("step", m.step)?;
        dict.set_item("norm", m.norm)?;
        dict.set_item("mean_density", m.mean_density)?;
        dict.set_item("max_density", m.max_density)?;
        dict.set_item("matter_cells", m.matter_cells)?;
        dict.set_item("energy", m.energy)?;
        dict.set_item("fidelity", m.fidelity)?;
        dict.set_item("entropy", m.entropy)?;
        dict.set_item("clustering", m.clustering)?;
        dict.set_item("symmetry", m.symmetry)?;
        dict.set_item("epoch", m.epoch)?;
        let name = EPOCH_NAMES.get(usize::from(m.epoch)).copied();
        dict.set_item("epoch_name", name)?;
        Ok(dict)
    }

    /// Writes the state to a state file (safetensors), atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with(py, move |s| s.save(&path))
    }

    /// Replaces the state (step count included) with a state file's.
    fn load(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with(py, move |s| s.load(&path))
    }

    /// Makes cell (x, y) matter holding `values` (D complex numbers).
    fn insert(&self, py: Python<'_>, x: i32, y: i32, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let array = complex_array(py, values, "values")?;
        let array = array.readonly();
        if array.ndim() != 1 {
            return Err(invalid(format!(
                "values must be one complex number per channel (1 dimension), got shape {:?}",
                array.shape()
            )));
        }
        let values: Vec<(f32, f32)> = array.as_slice()?.iter().map(|v| (v.re, v.im)).collect();
        self.with(py, move |s| s.set_cell(x, y, &values))
    }

    /// Psi at cell (x, y) as a complex64 array `[D]`, or `None` for vacuum.
    fn get<'py>(&self, py: Python<'py>, x: i32, y: i32) -> PyResult<Option<Bound<'py, PyAny>>> {
        let values = self.with(py, move |s| Ok(s.cell(x, y)))?;
        Ok(values.map(|v| complex_vec(py, &v)))
    }

    /// Removes the matter at (x, y) (sparse engine); returns what it held,
    /// or `None` when the cell was vacuum.
    fn remove<'py>(&self, py: Python<'py>, x: i32, y: i32) -> PyResult<Option<Bound<'py, PyAny>>> {
        let values = self.with(py, move |s| Ok(sparse_only(s, "remove")?.remove(x, y)))?;
        Ok(values.map(|v| complex_vec(py, &v)))
    }

    /// The cells of matter within Euclidean distance `radius` of (x, y)
    /// (sparse engine): `(coords, values)`, int32 `[N, 2]` of (x, y) and
    /// complex64 `[N, D]`, in the lattice's order.
    fn cells_within<'py>(
        &self,
        py: Python<'py>,
        x: i32,
        y: i32,
        radius: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let radius = u32::try_from(radius).map_err(|_| {
            invalid(format!(
                "radius must be from 0 to {}, got {radius}",
                u32::MAX
            ))
        })?;
        let (coords, values, n, d) = self.with(py, move |s| {
            let d = s.d_state();
            let engine = s.sparse().ok_or_else(|| not_sparse("cells_within"))?;
            let (mut coords, mut values) = (Vec::new(), Vec::new());
            for (cx, cy, v) in engine.cells_within(x, y, radius) {
                coords.extend([cx, cy]);
                values.extend((0..d).map(|c| {
                    let (re, im) = v.get(c);
                    Complex32::new(re, im)
                }));
            }
            let n = coords.len() / 2;
            Ok((coords, values, n, d))
        })?;
        let coords = PyArray1::from_vec(py, coords).reshape([n, 2])?;
        let values = PyArray1::from_vec(py, values).reshape([n, d])?;
        PyTuple::new(py, [coords.into_any(), values.into_any()])
    }

    /// The smallest box `(min_x, min_y, max_x, max_y)` (inclusive) holding
    /// the matter, or the dense grid's box; `None` for an empty lattice.
    fn bounding_box(&self, py: Python<'_>) -> PyResult<Option<(i32, i32, i32, i32)>> {
        let extent = self.with(py, |s| Ok(s.extent()))?;
        Ok(extent.map(|b| (b.min_x, b.min_y, b.max_x, b.max_y)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |s| {
            let shape = s.extent().map_or("empty".to_string(), |b| {
                format!("{} x {}", b.height(), b.width())
            });
            Ok(format!(
                "Simulation(model={:?}, engine={:?}, {shape}, d_state={}, step={})",
                s.spec().name,
                s.engine_kind().name(),
                s.d_state(),
                s.step_count()
            ))
        })
    }
}

/// A Python float as f32, refusing what f32 cannot hold.
fn to_f32(name: &str, v: f64) -> PyResult<f32> {
    let f = v as f32;
    if v.is_finite() && !f.is_finite() {
        return Err(invalid(format!("{name} = {v} does not fit a 32-bit float")));
    }
    Ok(f)
}

fn not_sparse(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "{what} needs the sparse engine (Simulation(engine=\"sparse\")); this simulation is dense"
    ))
}

fn sparse_only<'a>(
    s: &'a mut Simulation,
    what: &str,
) -> Result<&'a mut atheria::SparseEngine, Error> {
    s.sparse_mut().ok_or_else(|| not_sparse(what))
}

/// `values` as a complex64 numpy array.
fn complex_vec<'py>(py: Python<'py>, values: &[(f32, f32)]) -> Bound<'py, PyAny> {
    let v: Vec<Complex32> = values
        .iter()
        .map(|&(re, im)| Complex32::new(re, im))
        .collect();
    PyArray1::from_vec(py, v).into_any()
}

/// `value` as a C-ordered complex64 numpy array: complex and real floating
/// arrays (any order, any strides) are converted by numpy; anything else is
/// an `InvalidInput` naming `what`.
fn complex_array<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Bound<'py, numpy::PyArrayDyn<Complex32>>> {
    let np = py.import("numpy")?;
    let array = np.call_method1("asarray", (value,)).map_err(|e| {
        invalid(format!(
            "{what} must be a numpy array of complex numbers: {e}"
        ))
    })?;
    let dtype = array.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    if kind != "c" && kind != "f" {
        return Err(invalid(format!(
            "{what} must be complex (complex64, complex128) or real floating, got dtype {}",
            dtype.str()?
        )));
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", np.getattr("complex64")?)?;
    let converted = np.call_method("ascontiguousarray", (array,), Some(&kwargs))?;
    converted
        .cast_into::<numpy::PyArrayDyn<Complex32>>()
        .map_err(|e| {
            invalid(format!(
                "{what}: numpy did not convert it to complex64: {e}"
            ))
        })
}

/// Values above which `interleave` splits its rows among rayon's threads:
/// below it, waking them costs more than the copy (a 128 x 128 x 4 psi
/// takes ~50 us on one thread, ~1 ms when rayon's sleeping workers must
/// wake first).
const PARALLEL_VALUES: usize = 1 << 20;

/// Planes `[2D][H][W]` as a new interleaved complex `[H][W][D]`, and that shape.
fn interleave(state: &DenseState) -> (Vec<Complex32>, [usize; 3]) {
    let (h, w, d) = (state.height(), state.width(), state.d_state());
    let mut out = vec![Complex32::new(0.0, 0.0); h * w * d];
    interleave_into(state, &mut out);
    (out, [h, w, d])
}

/// A raw `[Complex32]` that crosses into the GIL-free closure of `read_psi`.
struct SendSlice(*mut Complex32, usize);

// SAFETY: see `read_psi`: the buffer outlives the call that uses it.
unsafe impl Send for SendSlice {}

impl SendSlice {
    /// The slice. (A method, so that a closure captures the whole
    /// `SendSlice`, which is `Send`, not its raw pointer field.)
    ///
    /// # Safety
    /// The buffer must be alive and not used through another Rust reference
    /// for as long as the slice is.
    unsafe fn slice<'a>(&self) -> &'a mut [Complex32] {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.0, self.1) }
    }
}

/// Planes `[2D][H][W]` written interleaved into `out`, complex `[H][W][D]`.
///
/// A transpose: each row goes in blocks of `BLOCK` cells, whose `BLOCK x D`
/// outputs (4 KiB at D = 64) stay in L1 while every channel's contiguous
/// run of `BLOCK` values is read into them. (Channel by channel over the
/// whole row wrote each cache line D times from afar: 2.1 ms instead of
/// 1.55 ms for a 128 x 128 x 64 psi.)
fn interleave_into(state: &DenseState, out: &mut [Complex32]) {
    const BLOCK: usize = 8;
    let (h, w, d) = (state.height(), state.width(), state.d_state());
    let n = h * w;
    assert_eq!(
        out.len(),
        n * d,
        "interleave_into: out does not fit the state"
    );
    if out.is_empty() {
        return;
    }
    let planes = state.planes();
    let fill_row = |(y, row): (usize, &mut [Complex32])| {
        for x0 in (0..w).step_by(BLOCK) {
            let cells = BLOCK.min(w - x0);
            let block = &mut row[x0 * d..(x0 + cells) * d];
            for c in 0..d {
                let re = &planes[c * n + y * w + x0..][..cells];
                let im = &planes[(c + d) * n + y * w + x0..][..cells];
                for (i, (&re, &im)) in re.iter().zip(im).enumerate() {
                    block[i * d + c] = Complex32::new(re, im);
                }
            }
        }
    };
    if n * d >= PARALLEL_VALUES {
        out.par_chunks_mut(w * d).enumerate().for_each(fill_row);
    } else {
        out.chunks_mut(w * d).enumerate().for_each(fill_row);
    }
}

/// Interleaved complex `[H][W][D]` as planes `[2D][H][W]`.
fn deinterleave(data: &[Complex32], h: usize, w: usize, d: usize) -> Vec<f32> {
    let n = h * w;
    let mut planes = vec![0.0f32; 2 * d * n];
    let (re, im) = planes.split_at_mut(d * n);
    for (i, cell) in data.chunks_exact(d.max(1)).enumerate() {
        for (c, v) in cell.iter().enumerate() {
            re[c * n + i] = v.re;
            im[c * n + i] = v.im;
        }
    }
    planes
}

/// The tool string `name:k=v,...` for `apply_tool`.
fn tool_spec(name: &str, params: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
    let params: Vec<(String, String)> = match params {
        None => Vec::new(),
        Some(dict) => dict
            .iter()
            .map(|(k, v)| Ok((k.extract::<String>()?, tool_value(&k.to_string(), &v)?)))
            .collect::<PyResult<_>>()?,
    };
    if params.is_empty() {
        return Ok(name.to_string());
    }
    if name.contains([':', '@', ',', '=']) {
        return Err(invalid(format!(
            "tool `{name}`: give either a whole tool string or a name and keyword arguments, not both"
        )));
    }
    let args: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(format!("{name}:{}", args.join(",")))
}

/// One keyword argument of a tool as text of the tool string.
fn tool_value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    if v.is_instance_of::<PyBool>() {
        return Ok(if v.extract::<bool>()? {
            "true"
        } else {
            "false"
        }
        .into());
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(v.str()?.to_string());
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(format!("{}", v.extract::<f64>()?));
    }
    let text = if v.is_instance_of::<PyString>() {
        v.extract::<String>()?
    } else if let Ok(path) = v.extract::<PathBuf>() {
        path.to_string_lossy().into_owned()
    } else if let Ok(x) = v.extract::<f64>() {
        // numpy scalars and other numbers.
        format!("{x}")
    } else {
        return Err(invalid(format!(
            "tool argument {key}: expected a number, a bool, a string or a path, got {}",
            v.get_type().name()?
        )));
    };
    if text.contains([',', '=', '@']) {
        return Err(invalid(format!(
            "tool argument {key} = `{text}`: it may not contain `,`, `=` or `@`"
        )));
    }
    Ok(text)
}

/// Backends compiled into this module (`candle`, `tch`, `onnx`).
#[pyfunction]
fn backends() -> Vec<&'static str> {
    BackendKind::available()
        .into_iter()
        .map(|k| k.name())
        .collect()
}

/// The extension module `atheria_native._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySimulation>()?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
