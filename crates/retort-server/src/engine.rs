//! The answering pipeline shared by every endpoint: run the model off the
//! async runtime, re-validate its output, and fall back to the teacher when
//! the model is unsure.

use std::sync::Arc;
use std::time::Instant;

use retort_core::{Call, CallOptions, CallerError, Tool};
use serde::Serialize;

use crate::app::AppState;
use crate::check::{OutputError, check_calls, check_confidence};
use crate::error::ApiError;
use crate::fallback::Fallback;
use crate::request::ToolChoice;

/// One request, as every endpoint sees it.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    pub parallel: bool,
    pub max_steps: Option<usize>,
}

/// Who produced the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The local model.
    Model,
    /// The fallback teacher (the model's confidence was below the threshold).
    Fallback,
    /// Nobody: `tool_choice` was `none` or no tools were offered, so no call
    /// is possible and the model was not run.
    Skipped,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub calls: Vec<Call>,
    /// The model's confidence (1.0 when skipped). With a fallback answer this
    /// is still the model's confidence, the reason the teacher was asked.
    pub confidence: f64,
    pub source: Source,
    /// The teacher's model when `source` is `Fallback`.
    pub teacher_model: Option<String>,
    /// Time spent answering (model, validation and fallback), milliseconds.
    pub latency_ms: f64,
}

fn invalid_output(state: &AppState, who: &str, e: &OutputError, query: &Query) -> ApiError {
    state.metrics.inc_invalid_output();
    tracing::error!(
        error = %e,
        tools = query.tools.len(),
        "{who} produced an output that fails validation (a bug)"
    );
    ApiError::server(
        "invalid_model_output",
        format!(
            "internal error: the {who} produced an output that fails validation ({e}); this is a bug in retort, please report it"
        ),
    )
}

/// Answer one query.
pub async fn answer(state: &Arc<AppState>, query: Query) -> Result<Answer, ApiError> {
    let start = Instant::now();
    if query.choice == ToolChoice::None || query.tools.is_empty() {
        return Ok(Answer {
            calls: Vec::new(),
            confidence: 1.0,
            source: Source::Skipped,
            teacher_model: None,
            latency_ms: start.elapsed().as_secs_f64() * 1e3,
        });
    }
    let opts = query.choice.options(query.parallel, query.max_steps);
    let caller = Arc::clone(&state.caller);
    let (text, tools, o) = (query.text.clone(), query.tools.clone(), opts.clone());
    // Wait for a free model slot; the permit travels with the model's job,
    // so it is held until the model really finishes (even if the request
    // timed out meanwhile).
    let permit = Arc::clone(&state.model_slots)
        .acquire_owned()
        .await
        .map_err(|_| {
            ApiError::server("shutting_down", "the server is shutting down")
                .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        })?;
    // The call runs as one job of the server's model pool (one thread per
    // CPU), not on a blocking thread that hands it on to the pool: with
    // more calls than threads each thread runs one call on its own, and a
    // thread with nothing queued steals split halves of another call's
    // matrix products (a lone call gets every core) instead of sleeping
    // until the next request is handed over.
    let model_start = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.model_pool.spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            caller.call(&text, &tools, &o)
        }));
        drop(permit);
        // The request may have timed out and gone; its answer is dropped.
        let _ = tx.send(out);
    });
    let joined = rx.await;
    let model_secs = model_start.elapsed().as_secs_f64();
    let prediction = match joined {
        Ok(Ok(Ok(p))) => p,
        Ok(Ok(Err(CallerError::InvalidRequest(m)))) => {
            return Err(ApiError::invalid(m).with_code("rejected_by_model"));
        }
        Ok(Ok(Err(CallerError::Model(m)))) => {
            tracing::error!(error = %m, "model error");
            return Err(ApiError::server("model_error", format!("model error: {m}")));
        }
        Ok(Err(_)) | Err(_) => {
            tracing::error!("model task failed (panicked)");
            return Err(ApiError::server(
                "model_panic",
                "internal error: the model failed while answering; this is a bug in retort, please report it",
            ));
        }
    };
    state
        .metrics
        .observe_model_call(model_secs, prediction.calls.len());
    if let Err(e) = check_confidence(prediction.confidence)
        .and_then(|()| check_calls(&prediction.calls, &query.tools, &opts))
    {
        if let OutputError::SchemaCompile { .. } = e {
            return Err(ApiError::param("tools", e.to_string()).with_code("invalid_tool"));
        }
        return Err(invalid_output(state, "model", &e, &query));
    }
    let mut answer = Answer {
        calls: prediction.calls,
        confidence: prediction.confidence,
        source: Source::Model,
        teacher_model: None,
        latency_ms: 0.0,
    };
    if let Some(fb) = &state.fallback
        && answer.confidence < fb.config.threshold
    {
        try_fallback(state, fb, &query, &opts, &mut answer).await;
    }
    answer.latency_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(answer)
}

/// Ask the teacher; on a valid answer, serve it and log the pair. On any
/// failure the model's answer stays.
async fn try_fallback(
    state: &Arc<AppState>,
    fb: &Fallback,
    query: &Query,
    opts: &CallOptions,
    answer: &mut Answer,
) {
    let teacher = match fb
        .ask(&query.text, &query.tools, &query.choice, query.parallel)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            state.metrics.inc_fallback_failure();
            tracing::warn!(error = %e, "fallback failed; serving the model's answer");
            return;
        }
    };
    if let Err(e) = check_calls(&teacher.calls, &query.tools, opts) {
        state.metrics.inc_fallback_failure();
        tracing::warn!(error = %e, "fallback teacher's answer fails validation; serving the model's answer");
        return;
    }
    state.metrics.inc_fallback();
    let example = crate::fallback::example(&query.text, &query.tools, &teacher);
    let shared = Arc::clone(state);
    let logged = tokio::task::spawn_blocking(move || match &shared.fallback {
        Some(f) => f.append(&example),
        None => Ok(()),
    })
    .await;
    match logged {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "fallback log"),
        Err(e) => tracing::error!(error = %e, "fallback log task failed"),
    }
    answer.calls = teacher.calls;
    answer.source = Source::Fallback;
    answer.teacher_model = Some(teacher.model);
}

/// A rough token count (about four characters per token) for `usage`.
pub fn approx_tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}
