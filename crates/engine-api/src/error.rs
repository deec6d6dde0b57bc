use std::path::PathBuf;

/// Result with Atheria's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure an engine or a backend reports.
///
/// Messages are written for the person at the terminal: each says what is
/// wrong and, where there is one, how to fix it, on one line, in words that
/// do not assume a command line (a program adds its own hints). Programs
/// match on the variant: a failed step is [`Error::Step`] whose
/// [`source`](std::error::Error::source) is the cause ([`Error::cause`]
/// reaches it directly), so a NaN ([`Error::NonFinite`]), a backend failure
/// and a bad argument stay distinguishable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A model package is malformed (model.json, weights, or their agreement).
    #[error("model package {path}: {message}")]
    Model {
        /// The package directory or file.
        path: PathBuf,
        /// What is wrong, and how to fix it.
        message: String,
    },
    /// A state file is malformed or disagrees with the model.
    #[error("state file {path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong, and how to fix it.
        message: String,
    },
    /// A value the caller chose is out of range or inconsistent.
    #[error("{0}")]
    InvalidArgument(String),
    /// A backend is not compiled in, or its native library cannot be used here.
    #[error("backend {backend} is unavailable: {message}")]
    BackendUnavailable {
        /// Backend name (`candle`, `tch`, `onnx`).
        backend: &'static str,
        /// What is missing and how to get it.
        message: String,
    },
    /// The backend failed while running the model.
    #[error("backend {backend}: {message}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// The backend's own message.
        message: String,
    },
    /// A size the caller asked for exceeds a limit the caller set (or the
    /// default one), checked before anything is allocated.
    #[error("{what} exceeds the limit of {limit} cells (raise the cell limit to allow it)")]
    TooManyCells {
        /// What would be too large, in words ("grid 100000 x 100000").
        what: String,
        /// The limit in force.
        limit: usize,
    },
    /// Memory for `what` could not be had: more than the machine, its
    /// cgroup or the address-space limit (`ulimit -v`) allows. Returned
    /// instead of the allocator's abort.
    #[error("cannot allocate {} for {what}: more than this process may use (free memory, a cgroup or ulimit -v limit); ask for fewer cells", human_bytes(*.bytes))]
    OutOfMemory {
        /// What the memory was for, in words ("the state of 100000 x 100000 cells").
        what: String,
        /// Bytes asked for.
        bytes: u64,
    },
    /// The model returned a non-finite value (NaN or infinity).
    #[error("the model returned a non-finite delta at x = {x}, y = {y} ({} part of channel {channel})", if *.imaginary { "imaginary" } else { "real" })]
    NonFinite {
        /// Lattice column of the cell (dense grids: the column from the
        /// grid's origin).
        x: i64,
        /// Lattice row of the cell.
        y: i64,
        /// The complex channel.
        channel: usize,
        /// True for the imaginary part.
        imaginary: bool,
    },
    /// A step could not complete; the state is exactly as it was before it.
    /// The cause is the [`source`](std::error::Error::source), for programs
    /// to match; the message repeats it, for people who print only the top
    /// error (a printer of the whole chain sees the cause text twice unless
    /// it skips a cause already contained, as the `atheria` program does).
    #[error("step {step} failed: {source} (state left as it was before this step)")]
    Step {
        /// The step that failed, counting from 1 (completed steps + 1), the
        /// same in every engine.
        step: u64,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A step whose writes are not held back until it has succeeded (the
    /// sparse engine with atomic steps off) failed after writing part of
    /// the lattice: the lattice is now part before and part after this
    /// step. The cause is the [`source`](std::error::Error::source); the
    /// engine refuses to step or export from then on ([`Error::Torn`]).
    #[error("step {step} failed after writing {written} of {active} tiles: {source} (atomic steps are off, so the lattice is now part before and part after this step and cannot be stepped or exported: load the last saved state; atomic steps, the default, leave it as it was)")]
    TornStep {
        /// The step that failed, counting from 1.
        step: u64,
        /// Tiles already written when it failed.
        written: usize,
        /// Tiles the step had to write.
        active: usize,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// An engine whose lattice a [`Error::TornStep`] left part stepped was
    /// asked to step or export it.
    #[error("the lattice was left part stepped by step {step}, which failed part-way with atomic steps off: it can no longer be stepped or exported; load the last saved state into a new engine")]
    Torn {
        /// The step that failed part-way.
        step: u64,
    },
    /// An engine was stepped from inside a rayon worker thread, where the
    /// backend's own thread pool would nest inside rayon's: the deadlock
    /// that froze the C++ engine (ARCHITECTURE.md, the threading rule).
    #[error("an engine was stepped from inside a rayon worker thread ({pool}); step it from an ordinary thread (give the engine its own rayon pool for its loops instead of calling it inside `install`)")]
    NestedPool {
        /// Which pool the caller was in, in words.
        pool: String,
    },
    /// Another process of a computation shared across processes (an MPI
    /// rank of a distributed run) failed; this is its error, as text.
    #[error("rank {rank} failed: {message}")]
    Rank {
        /// The rank that failed.
        rank: usize,
        /// Its error message.
        message: String,
    },
    /// A stage did not finish within its time limit.
    #[error("stage `{stage}` did not finish within {seconds:.1} s")]
    Timeout {
        /// The stage that hung.
        stage: String,
        /// The limit that passed.
        seconds: f64,
    },
}

impl Error {
    /// What went wrong underneath any [`Error::Step`] (or [`Error::TornStep`])
    /// wrapping: for a failed
    /// step its cause, for anything else the error itself.
    pub fn cause(&self) -> &Error {
        match self {
            Error::Step { source, .. } | Error::TornStep { source, .. } => source.cause(),
            other => other,
        }
    }

    /// An [`Error::Step`] for `step` caused by `cause`.
    pub fn step(step: u64, cause: Error) -> Self {
        Error::Step {
            step,
            source: Box::new(cause),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Model`] for `path`.
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::State`] for `path`.
    pub fn state(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::State {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Backend`] from any displayable backend error.
    pub fn backend(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Error::Backend {
            backend,
            message: message.to_string(),
        }
    }
}

/// `bytes` in the largest binary unit that keeps it at least 1 (`1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
