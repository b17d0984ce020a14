//! retort-train: distillation training of the retort student.
//!
//! - [`data`]: JSONL loading, item building, length-bucketed batches.
//! - [`loss`]: the KD + CE loss over the constrained output space.
//! - [`optim`]: AdamW with warmup + cosine decay and global-norm clipping,
//!   its state kept in plain tensors so checkpoints resume exactly.
//! - [`eval`]: exact-call accuracy, confidence calibration (ECE, temperature).
//! - [`trainer`]: the loop, checkpoints, progress, loss curve.

pub mod data;
pub mod eval;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod trainer;

use std::path::PathBuf;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] retort_model::ModelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

pub use trainer::{TrainOptions, train};

#[cfg(test)]
mod tests;
