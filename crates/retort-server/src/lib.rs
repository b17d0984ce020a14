//! retort-server: the HTTP server of retort.
//!
//! Endpoints (see README.md for the full reference):
//! - `POST /tool-call`: the seed contract `{prompt, available_functions,
//!   max_tokens}` → `{function_name, parameters, confidence, calls,
//!   latency_ms}`.
//! - `POST /v1/chat/completions`: OpenAI Chat Completions with `tools`.
//! - `POST /v1/responses`: the function-calling subset of the OpenAI
//!   Responses API.
//! - `GET /healthz`, `GET /metrics` (Prometheus text).
//!
//! The server is generic over any [`retort_core::ToolCaller`]; it does not
//! know the model. Every answer is re-validated before it is sent
//! ([`check`]); an invalid answer is a bug, counted and answered with a 500.
//! Client mistakes are 4xx JSON errors that name the problem.

pub mod app;
pub mod check;
pub mod engine;
pub mod error;
pub mod fallback;
pub mod handlers;
pub mod metrics;
pub mod request;
pub mod schema_check;

pub use app::{
    AppState, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, ServeError, ServerConfig, app,
    default_concurrency, router, serve, shutdown_signal, state,
};
pub use check::{OutputError, check_calls, check_confidence};
pub use error::ApiError;
pub use fallback::{ApiKey, FallbackConfig, FallbackError};
pub use request::{MAX_TOOLS, ToolChoice};
pub use schema_check::{SchemaProblem, check_tool};
