//! The endpoints.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::app::{AppState, ok_json, text};
use crate::engine::{Answer, Query, Source, answer, approx_tokens};
use crate::error::ApiError;
use crate::request::{
    Fields, ToolChoice, ToolStyle, check_query, content_text, json_object, parse_any_tools,
    parse_openai_tools,
};

/// Text of the assistant message when no tool fits.
pub const NO_CALL_TEXT: &str = "No tool fits this request.";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

fn max_steps(v: Option<u64>) -> Option<usize> {
    v.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// retort's own details, added to OpenAI-shaped responses as `retort`.
fn retort_info(a: &Answer) -> Value {
    json!({
        "confidence": a.confidence,
        "source": a.source,
        "teacher_model": a.teacher_model,
        "latency_ms": a.latency_ms,
    })
}

fn arguments_string(call: &retort_core::Call) -> String {
    Value::Object(call.arguments.clone()).to_string()
}

/// `GET /healthz`.
pub async fn healthz() -> Response {
    ok_json(json!({"status": "ok"}))
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    use std::fmt::Write as _;
    let mut out = state.metrics.render();
    for (name, help, kind, value) in state.caller.counters() {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    text(out, "text/plain; version=0.0.4; charset=utf-8")
}

/// `POST /tool-call`: `{prompt, available_functions, max_tokens}` →
/// `{function_name, parameters, confidence, calls, latency_ms, source}`.
pub async fn tool_call(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let obj = json_object(req, state.config.max_body_bytes).await?;
    let f = Fields::new(&obj);
    let prompt = f.req_str("prompt")?;
    check_query(prompt, "prompt")?;
    let tools = parse_any_tools(f.required("available_functions")?, "available_functions")?;
    let steps = max_steps(f.opt_positive("max_tokens")?);
    let choice = ToolChoice::parse(f.get("tool_choice"), &tools)?;
    let parallel = f.opt_bool("parallel_tool_calls")?.unwrap_or(true);
    let a = answer(
        &state,
        Query {
            text: prompt.to_string(),
            tools,
            choice,
            parallel,
            max_steps: steps,
        },
    )
    .await?;
    let first = a.calls.first();
    let mut out = json!({
        "function_name": first.map(|c| c.name.clone()),
        "parameters": first.map(|c| Value::Object(c.arguments.clone())),
        "confidence": a.confidence,
        "calls": a.calls,
        "latency_ms": a.latency_ms,
        "source": a.source,
    });
    if let Some(m) = &a.teacher_model {
        out["teacher_model"] = Value::from(m.clone());
    }
    Ok(ok_json(out))
}

/// The last user message's text; every message is type-checked.
fn chat_query(messages: &Value) -> Result<String, ApiError> {
    let arr = match messages {
        Value::Array(a) if !a.is_empty() => a,
        Value::Array(_) => {
            return Err(ApiError::param("messages", "'messages' must not be empty")
                .with_code("empty_messages"));
        }
        other => {
            return Err(ApiError::param(
                "messages",
                format!(
                    "'messages' must be an array, got {}",
                    retort_core::json_kind(other)
                ),
            )
            .with_code("wrong_type"));
        }
    };
    let mut query = None;
    for (i, m) in arr.iter().enumerate() {
        let p = format!("messages[{i}]");
        let obj = m.as_object().ok_or_else(|| {
            ApiError::param(
                &p,
                format!("'{p}' must be an object, got {}", retort_core::json_kind(m)),
            )
            .with_code("wrong_type")
        })?;
        let f = Fields::nested(obj, format!("{p}."));
        let role = f.req_str("role")?;
        let content_param = format!("{p}.content");
        match role {
            "user" => {
                let text = content_text(f.required("content")?, &content_param)?;
                query = Some((i, text));
            }
            "system" | "developer" | "assistant" | "tool" | "function" => {
                if let Some(c) = f.get("content") {
                    content_text(c, &content_param)?;
                }
            }
            other => {
                return Err(ApiError::param(
                    format!("{p}.role"),
                    format!("'{p}.role' must be one of system, developer, user, assistant, tool; got {other:?}"),
                )
                .with_code("invalid_role"));
            }
        }
    }
    last_user_text(query, "messages")
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let obj = json_object(req, state.config.max_body_bytes).await?;
    let f = Fields::new(&obj);
    let model = f.req_str("model")?.to_string();
    f.refuse_if(
        "stream",
        f.opt_bool("stream")? == Some(true),
        "streaming is not implemented; send \"stream\": false",
    )?;
    f.refuse_if(
        "n",
        f.opt_positive("n")?.is_some_and(|n| n > 1),
        "only one choice (n = 1) is produced",
    )?;
    f.refuse_if(
        "functions",
        f.get("functions").is_some(),
        "the deprecated 'functions' field is not supported; use 'tools'",
    )?;
    f.refuse_if(
        "function_call",
        f.get("function_call").is_some(),
        "the deprecated 'function_call' field is not supported; use 'tool_choice'",
    )?;
    f.opt_positive("max_tokens")?;
    f.opt_positive("max_completion_tokens")?;
    f.opt_number("temperature")?;
    f.opt_number("top_p")?;
    let query = chat_query(f.required("messages")?)?;
    let tools = parse_openai_tools(f.get("tools"), ToolStyle::Chat)?;
    let choice = ToolChoice::parse(f.get("tool_choice"), &tools)?;
    let parallel = f.opt_bool("parallel_tool_calls")?.unwrap_or(true);
    let prompt_tokens = approx_tokens(&query)
        + tools
            .iter()
            .map(|t| approx_tokens(&t.to_json().to_string()))
            .sum::<u64>();
    let a = answer(
        &state,
        Query {
            text: query,
            tools,
            choice,
            parallel,
            max_steps: None,
        },
    )
    .await?;
    let tool_calls: Vec<Value> = a
        .calls
        .iter()
        .map(|c| {
            json!({
                "id": new_id("call_"),
                "type": "function",
                "function": {"name": c.name, "arguments": arguments_string(c)},
            })
        })
        .collect();
    let completion_tokens: u64 = if tool_calls.is_empty() {
        approx_tokens(NO_CALL_TEXT)
    } else {
        a.calls
            .iter()
            .map(|c| approx_tokens(&c.name) + approx_tokens(&arguments_string(c)))
            .sum()
    };
    let (message, finish) = if tool_calls.is_empty() {
        (
            json!({"role": "assistant", "content": NO_CALL_TEXT, "refusal": null}),
            "stop",
        )
    } else {
        (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": tool_calls}),
            "tool_calls",
        )
    };
    let model_out = match (&a.source, &a.teacher_model) {
        (Source::Fallback, Some(m)) => m.clone(),
        _ => model,
    };
    Ok(ok_json(json!({
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model_out,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": null,
        "retort": retort_info(&a),
    })))
}

/// The last user message of a Responses `input`.
fn responses_query(input: &Value) -> Result<String, ApiError> {
    let items = match input {
        Value::String(s) => {
            check_query(s, "input")?;
            return Ok(s.clone());
        }
        Value::Array(a) => a,
        other => {
            return Err(ApiError::param(
                "input",
                format!(
                    "'input' must be a string or an array of input items, got {}",
                    retort_core::json_kind(other)
                ),
            )
            .with_code("wrong_type"));
        }
    };
    let mut query = None;
    for (i, item) in items.iter().enumerate() {
        let p = format!("input[{i}]");
        let obj = item.as_object().ok_or_else(|| {
            ApiError::param(
                &p,
                format!(
                    "'{p}' must be an object, got {}",
                    retort_core::json_kind(item)
                ),
            )
            .with_code("wrong_type")
        })?;
        let f = Fields::nested(obj, format!("{p}."));
        match f.opt_str("type")? {
            None | Some("message") => {
                let role = f.req_str("role")?;
                let text = content_text(f.required("content")?, &format!("{p}.content"))?;
                match role {
                    "user" => query = Some((i, text)),
                    "system" | "developer" | "assistant" => {}
                    other => {
                        return Err(ApiError::param(
                            format!("{p}.role"),
                            format!("'{p}.role' must be one of system, developer, user, assistant; got {other:?}"),
                        )
                        .with_code("invalid_role"));
                    }
                }
            }
            // Earlier turns of a conversation: context only.
            Some("function_call" | "function_call_output" | "reasoning" | "item_reference") => {}
            Some(other) => {
                return Err(ApiError::param(
                    format!("{p}.type"),
                    format!("{p}: unsupported input item type {other:?}"),
                )
                .with_code("unsupported_input_item"));
            }
        }
    }
    last_user_text(query, "input")
}

/// `POST /v1/responses` (the function-calling subset of the Responses API).
pub async fn responses(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let obj = json_object(req, state.config.max_body_bytes).await?;
    let f = Fields::new(&obj);
    let model = f.req_str("model")?.to_string();
    f.refuse_if(
        "stream",
        f.opt_bool("stream")? == Some(true),
        "streaming is not implemented; send \"stream\": false",
    )?;
    f.refuse_if(
        "background",
        f.opt_bool("background")? == Some(true),
        "background responses are not implemented",
    )?;
    f.refuse_if(
        "previous_response_id",
        f.opt_str("previous_response_id")?.is_some(),
        "the server keeps no conversation state; send the whole conversation in 'input'",
    )?;
    let instructions = f.opt_str("instructions")?.map(str::to_string);
    let max_output_tokens = f.opt_positive("max_output_tokens")?;
    let temperature = f.opt_number("temperature")?;
    let top_p = f.opt_number("top_p")?;
    let query = responses_query(f.required("input")?)?;
    let tools = parse_openai_tools(f.get("tools"), ToolStyle::Responses)?;
    let choice = ToolChoice::parse(f.get("tool_choice"), &tools)?;
    let parallel = f.opt_bool("parallel_tool_calls")?.unwrap_or(true);
    let input_tokens = approx_tokens(&query)
        + tools
            .iter()
            .map(|t| approx_tokens(&t.to_json().to_string()))
            .sum::<u64>();
    let tools_echo: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({"type": "function", "name": t.name, "description": t.description,
                "parameters": t.parameters.to_json(), "strict": false})
        })
        .collect();
    let choice_echo = choice.to_responses_json();
    let a = answer(
        &state,
        Query {
            text: query,
            tools,
            choice,
            parallel,
            max_steps: None,
        },
    )
    .await?;
    let output: Vec<Value> = if a.calls.is_empty() {
        vec![json!({
            "type": "message",
            "id": new_id("msg_"),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": NO_CALL_TEXT, "annotations": []}],
        })]
    } else {
        a.calls
            .iter()
            .map(|c| {
                json!({
                    "type": "function_call",
                    "id": new_id("fc_"),
                    "call_id": new_id("call_"),
                    "name": c.name,
                    "arguments": arguments_string(c),
                    "status": "completed",
                })
            })
            .collect()
    };
    let output_tokens: u64 = if a.calls.is_empty() {
        approx_tokens(NO_CALL_TEXT)
    } else {
        a.calls
            .iter()
            .map(|c| approx_tokens(&c.name) + approx_tokens(&arguments_string(c)))
            .sum()
    };
    let model_out = match (&a.source, &a.teacher_model) {
        (Source::Fallback, Some(m)) => m.clone(),
        _ => model,
    };
    Ok(ok_json(json!({
        "id": new_id("resp_"),
        "object": "response",
        "created_at": unix_now(),
        "status": "completed",
        "error": null,
        "incomplete_details": null,
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "model": model_out,
        "output": output,
        "parallel_tool_calls": parallel,
        "previous_response_id": null,
        "temperature": temperature,
        "top_p": top_p,
        "text": {"format": {"type": "text"}},
        "tool_choice": choice_echo,
        "tools": tools_echo,
        "truncation": "disabled",
        "metadata": {},
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "retort": retort_info(&a),
    })))
}

/// The text of the last user message found at `field[i]`, or the error that
/// names why there is none.
fn last_user_text(query: Option<(usize, Option<String>)>, field: &str) -> Result<String, ApiError> {
    match query {
        None => Err(ApiError::param(
            field,
            format!("'{field}' contains no user message to answer"),
        )
        .with_code("no_user_message")),
        Some((i, None)) => Err(ApiError::param(
            format!("{field}[{i}].content"),
            format!("the last user message ({field}[{i}]) has no text"),
        )
        .with_code("empty_prompt")),
        Some((i, Some(t))) => {
            check_query(&t, &format!("{field}[{i}].content"))?;
            Ok(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_query_takes_the_last_user_message() {
        let m = json!([{"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "user", "content": [{"type": "text", "text": "second"}]}]);
        assert_eq!(chat_query(&m).expect("ok"), "second");
        let e = chat_query(&json!([{"role": "system", "content": "x"}])).unwrap_err();
        assert_eq!(e.code, Some("no_user_message"));
        let e = chat_query(&json!([{"role": "user", "content": "  "}])).unwrap_err();
        assert_eq!(e.code, Some("empty_prompt"));
        let e = chat_query(&json!([{"role": "wizard", "content": "x"}])).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = chat_query(&json!([{"content": "x"}])).unwrap_err();
        assert_eq!(e.message, "missing required field 'messages[0].role'");
        assert!(chat_query(&json!([])).is_err());
    }

    #[test]
    fn responses_query_forms() {
        assert_eq!(responses_query(&json!("hi")).expect("ok"), "hi");
        let items = json!([{"role": "user", "content": "old"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "new"}]}]);
        assert_eq!(responses_query(&items).expect("ok"), "new");
        assert!(responses_query(&json!("")).is_err());
        let e = responses_query(&json!([{"type": "web_search_call"}])).unwrap_err();
        assert_eq!(e.code, Some("unsupported_input_item"));
        assert!(responses_query(&json!(5)).is_err());
    }
}
