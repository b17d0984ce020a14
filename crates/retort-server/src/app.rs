//! The server: shared state, the router with its layers (auth, metrics,
//! body limit, timeout, JSON errors), and serving with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use retort_core::ToolCaller;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::{self, ApiError, ErrorKind};
use crate::fallback::{ApiKey, Fallback, FallbackConfig, FallbackError};
use crate::handlers;
use crate::metrics::{Metrics, endpoint_label};

/// Default request body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default per-request time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token clients must send; `None` for an open server.
    pub api_key: Option<ApiKey>,
    pub max_body_bytes: usize,
    pub timeout: Duration,
    /// The model name reported when a request does not name one.
    pub model_name: String,
    /// Most model calls admitted at once: running on the model's threads
    /// (one per CPU) or queued there; further requests wait their turn.
    /// Default: the number of CPUs plus one, so that a thread that
    /// finishes a call finds the next one ready.
    pub max_concurrent_calls: usize,
    pub fallback: Option<FallbackConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            model_name: "retort".to_string(),
            max_concurrent_calls: default_concurrency(),
            fallback: None,
        }
    }
}

/// The number of CPUs (at least 1): the model's threads.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default `max_concurrent_calls`: one call per CPU plus one queued,
/// so that no core waits for the next call to be handed over (2 CPUs:
/// 159-160 -> 172-175 requests/s at 64 clients, `retort bench`).
pub fn default_concurrency() -> usize {
    cpus() + 1
}

/// What every request shares: the model, settings and metrics. Nothing in
/// here is per-request.
pub struct AppState {
    pub caller: Arc<dyn ToolCaller>,
    pub config: ServerConfig,
    pub metrics: Metrics,
    pub fallback: Option<Fallback>,
    /// Permits for model calls (`max_concurrent_calls`).
    pub model_slots: Arc<tokio::sync::Semaphore>,
    /// The threads that run model calls, one per CPU. Each call is one job;
    /// a thread between calls steals the split halves of another call's
    /// products. The server's own pool, so that nothing else (another
    /// server in the same process, say) competes for it.
    pub model_pool: rayon::ThreadPool,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Fallback(#[from] FallbackError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot start the model's threads: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

/// Build the shared state (checks the fallback settings and opens its log).
pub fn state(
    caller: Arc<dyn ToolCaller>,
    config: ServerConfig,
) -> Result<Arc<AppState>, ServeError> {
    let fallback = match &config.fallback {
        Some(c) => Some(Fallback::new(c.clone())?),
        None => None,
    };
    let slots = config.max_concurrent_calls.max(1);
    let model_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cpus())
        .thread_name(|i| format!("retort-model-{i}"))
        .build()?;
    Ok(Arc::new(AppState {
        caller,
        config,
        metrics: Metrics::new(),
        fallback,
        model_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
        model_pool,
    }))
}

/// The router of a server.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/tool-call", post(handlers::tool_call))
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/v1/responses", post(handlers::responses))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.timeout,
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), auth))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), record))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Build state and router in one step.
pub fn app(caller: Arc<dyn ToolCaller>, config: ServerConfig) -> Result<Router, ServeError> {
    Ok(router(state(caller, config)?))
}

/// Serve `app` on `listener` until `shutdown` resolves, then finish the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn not_found(req: Request) -> ApiError {
    ApiError::invalid(format!(
        "no such endpoint: {} {} (see GET /healthz, POST /tool-call, POST /v1/chat/completions, POST /v1/responses, GET /metrics)",
        req.method(),
        req.uri().path()
    ))
    .with_status(StatusCode::NOT_FOUND)
    .with_code("not_found")
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::invalid(format!(
        "method {} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .with_code("method_not_allowed")
}

/// Turn any error response that is not JSON yet (axum's own rejections,
/// the timeout layer's 408) into the JSON error shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty());
    let e = if status == StatusCode::REQUEST_TIMEOUT {
        ApiError::invalid("the request took longer than the server's time limit (--timeout-ms)")
            .with_kind(error::TIMEOUT)
            .with_code("timeout")
    } else if status.is_server_error() {
        ApiError::server("internal", text.unwrap_or_else(|| "internal error".into()))
    } else {
        ApiError::invalid(text.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_string()
        }))
    };
    let mut out = e.with_status(status).into_response();
    // Keep headers such as `Allow` on a 405.
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// Bearer-token check (all endpoints but `/healthz`).
async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = &state.config.api_key else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let err = match presented {
        None => "missing API key: send the header 'Authorization: Bearer <key>'",
        Some(p) if constant_time_eq(p.as_bytes(), key.expose().as_bytes()) => {
            return next.run(req).await;
        }
        Some(_) => "invalid API key",
    };
    let mut resp = ApiError::invalid(err)
        .with_status(StatusCode::UNAUTHORIZED)
        .with_kind(error::AUTHENTICATION)
        .with_code("invalid_api_key")
        .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Count every request by endpoint and status, its latency, and errors by
/// type.
async fn record(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = endpoint_label(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    state
        .metrics
        .observe_request(endpoint, status.as_u16(), start.elapsed().as_secs_f64());
    if status.is_client_error() || status.is_server_error() {
        let kind = resp
            .extensions()
            .get::<ErrorKind>()
            .map_or(error::INVALID_REQUEST, |k| k.0);
        state.metrics.observe_error(kind);
    }
    resp
}

/// Used by handlers: a JSON 200.
pub fn ok_json(v: serde_json::Value) -> Response {
    axum::Json(v).into_response()
}

/// Used by the `/metrics` handler.
pub fn text(body: String, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
