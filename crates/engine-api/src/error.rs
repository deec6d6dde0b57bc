use std::path::PathBuf;

/// Result with Atheria's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure an engine or a backend reports.
///
/// Messages are written for the person at the terminal: each says what is
/// wrong and, where there is one, how to fix it, on one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
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
    /// A step could not complete; the state is as it was before the step.
    #[error("step {step}: {message} (state left as it was before this step)")]
    Step {
        /// The step that failed, counting from 1 (completed steps + 1).
        step: u64,
        /// What went wrong.
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
