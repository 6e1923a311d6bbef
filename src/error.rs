//! The library's one error type: every failure keeps its source and, where there is one, the path.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in aigc, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, train state) could not be parsed.
    #[error("parsing {path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration failed validation.
    #[error("invalid config: {0}")]
    Config(String),
    /// A checkpoint directory is missing pieces or does not match its config.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A tokenizer could not be built, loaded, saved or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Training data could not be used.
    #[error("data {path}: {message}")]
    Data {
        /// The file or folder involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A generation request cannot be served (prompt too long, unknown characters, ...).
    #[error("{0}")]
    Input(String),
    /// Training diverged (NaN or infinite loss or gradient); nothing of that step is saved.
    #[error(
        "training diverged at step {step}: {what} is {value}; the last checkpoint is intact \
         (try a lower lr or grad_clip, then --resume)"
    )]
    Diverged {
        /// The optimizer step at which it happened.
        step: usize,
        /// "loss" or "gradient norm".
        what: &'static str,
        /// The offending value.
        value: f32,
    },
}

impl Error {
    /// Wraps an I/O error with the action and path it happened on.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
