//! The interface between a model and everything that uses one.

use serde::{Deserialize, Serialize};

use crate::example::Call;
use crate::tool::Tool;

/// What a model answers for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The calls, in order; empty when no tool fits.
    pub calls: Vec<Call>,
    /// Calibrated probability in [0, 1] that `calls` is exactly right.
    pub confidence: f64,
}

/// Options of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Force at least one call (`tool_choice: "required"`).
    pub require_call: bool,
    /// Force this function (`tool_choice: {"function": {"name": ..}}`).
    pub force_function: Option<String>,
    /// Allow more than one call (`parallel_tool_calls`). Default true.
    pub single_call_only: bool,
    /// Maximum number of decoding steps; `None` for the model's default.
    pub max_steps: Option<usize>,
}

/// Why a model could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("model error: {0}")]
    Model(String),
}

/// Tools plus a query in, calls plus confidence out.
pub trait ToolCaller: Send + Sync {
    fn call(
        &self,
        query: &str,
        tools: &[Tool],
        options: &CallOptions,
    ) -> Result<Prediction, CallerError>;

    /// The model's own counters for a metrics endpoint: `(name, help,
    /// type, value)` with a Prometheus metric name and type (`counter` or
    /// `gauge`). None by default.
    fn counters(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        Vec::new()
    }
}
