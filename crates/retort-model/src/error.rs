//! Errors of the model crate.

use std::path::PathBuf;

/// Why a model could not be built, loaded, saved or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model config: {0}")]
    Config(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("no embedded default model in this build: {0}")]
    NoEmbeddedModel(&'static str),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("decoding produced an invalid call (a bug): {0}")]
    InvalidOutput(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
