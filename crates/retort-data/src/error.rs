//! Errors of the data stage. Every error names the file (and the line for
//! JSONL) it comes from.

use std::path::PathBuf;

/// Why the data stage failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON document (or one JSON line) did not parse.
    #[error("{path}:{line}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// The content parsed but is not what the format expects.
    #[error("{path}:{line}: {message}")]
    Format {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A required input file or folder is missing.
    #[error("{path}: not found ({what})")]
    Missing { path: PathBuf, what: String },
    #[error("invalid option: {0}")]
    Options(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn format(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}
