//! `retort data import-log --format openai`: logged chat completions become
//! examples. Each line of the log is `{"request": ..., "response": ...}`,
//! the request and response bodies exactly as the OpenAI API takes and sends
//! them.
//!
//! - query: the last user message (text parts joined);
//! - context: the messages before it (tool calls rendered as JSON);
//! - tools: the request's `tools` (or legacy `functions`);
//! - calls: `choices[0].message.tool_calls` with their JSON-string arguments
//!   parsed (no tool calls: `calls: []`, "no tool fits");
//! - teacher: the response's `model`, and decision log-probabilities when the
//!   response carries `logprobs`.
//!
//! A line that cannot be turned into a valid example is skipped and counted
//! by reason, with its file and line number logged (or, with `strict`, the
//! import stops with an error naming them).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;

use retort_core::{
    Call, Example, Message, TeacherInfo, Tool, ToolFormat, normalize_text, validate_all,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::TeacherError;
use crate::logprobs::map_decisions;
use crate::protocol::{openai_choice_tokens, openai_message_calls};

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Non-blank lines read.
    pub lines: usize,
    pub imported: usize,
    /// Skipped lines by reason.
    pub skipped: BTreeMap<String, u64>,
    /// `file:line: reason: detail` of the first skipped lines (at most 20).
    pub first_skips: Vec<String>,
}

/// Why one log entry gives no example.
#[derive(Debug, Clone, PartialEq)]
pub struct Skip {
    pub reason: &'static str,
    pub detail: String,
}

fn skip(reason: &'static str, detail: impl Into<String>) -> Skip {
    Skip {
        reason,
        detail: detail.into(),
    }
}

/// The text of a message's `content`: a string, or the text parts of an array.
fn content_text(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// A body that may be wrapped as `{"body": {...}}` by a logging proxy.
fn unwrap_body<'a>(v: &'a Value, marker: &str) -> &'a Value {
    if v.get(marker).is_none()
        && let Some(b) = v.get("body").filter(|b| b.get(marker).is_some())
    {
        return b;
    }
    v
}

/// Turn one logged `{request, response}` into an example.
pub fn example_from_entry(entry: &Value) -> Result<Example, Skip> {
    let request = entry
        .get("request")
        .ok_or_else(|| skip("missing_request", "no \"request\" field"))?;
    let response = entry
        .get("response")
        .ok_or_else(|| skip("missing_response", "no \"response\" field"))?;
    let request = unwrap_body(request, "messages");
    let response = unwrap_body(response, "choices");
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| skip("no_messages", "request has no \"messages\" array"))?;
    let last_user = messages
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or_else(|| skip("no_user_message", "no message with role \"user\""))?;
    let query = content_text(messages[last_user].get("content"))
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .ok_or_else(|| skip("empty_query", "the last user message has no text"))?;
    let mut context = Vec::new();
    for m in &messages[..last_user] {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("unknown");
        let text = content_text(m.get("content")).or_else(|| {
            let calls = openai_message_calls(m).ok()?;
            if calls.is_empty() {
                return None;
            }
            let rendered: Vec<Value> = calls
                .iter()
                .map(|c| {
                    serde_json::json!({"name": c.name, "arguments": c.arguments.clone().unwrap_or_else(Value::String)})
                })
                .collect();
            Some(Value::Array(rendered).to_string())
        });
        if let Some(content) = text {
            context.push(Message {
                role: role.to_string(),
                content,
            });
        }
    }
    let tools_value = match (request.get("tools"), request.get("functions")) {
        (Some(t @ Value::Array(_)), _) => t.clone(),
        (_, Some(f @ Value::Array(_))) => f.clone(),
        _ => return Err(skip("no_tools", "request has no \"tools\"")),
    };
    let tools = Tool::parse_many(&tools_value, ToolFormat::OpenAi)
        .map_err(|e| skip("bad_tools", e.to_string()))?;
    if tools.is_empty() {
        return Err(skip("no_tools", "request has an empty \"tools\" list"));
    }
    if response.get("error").is_some_and(|e| !e.is_null()) {
        return Err(skip("error_response", "the response is an API error"));
    }
    let choice = response
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| skip("no_choices", "response has no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| skip("no_message", "choice has no message"))?;
    let raw = openai_message_calls(message).map_err(|e| skip("bad_tool_calls", e))?;
    let mut calls = Vec::with_capacity(raw.len());
    for rc in raw {
        match rc.arguments {
            Ok(Value::Object(m)) => calls.push(Call::new(rc.name, m)),
            Ok(_) => {
                return Err(skip(
                    "arguments_not_object",
                    format!("arguments of {:?}", rc.name),
                ));
            }
            Err(_) => {
                return Err(skip(
                    "malformed_arguments",
                    format!("arguments of {:?} are not JSON", rc.name),
                ));
            }
        }
    }
    validate_all(&calls, &tools).map_err(|e| skip(e.kind.reason(), e.to_string()))?;
    let tokens = openai_choice_tokens(choice);
    let logprobs = map_decisions(&tokens, &calls, &tools);
    let model = response
        .get("model")
        .or_else(|| request.get("model"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut h = Sha256::new();
    h.update(normalize_text(&query).as_bytes());
    for m in &context {
        h.update(b"\n");
        h.update(m.role.as_bytes());
        h.update(b":");
        h.update(m.content.as_bytes());
    }
    for t in &tools {
        h.update(b"\n");
        h.update(t.to_json().to_string().as_bytes());
    }
    let id = format!("log-{}", &hex::encode(h.finalize())[..16]);
    Ok(Example {
        id,
        source: "log".into(),
        query,
        tools,
        calls,
        teacher: Some(TeacherInfo { model, logprobs }),
        context,
    })
}

/// Import `input` into `out` (written whole to a temporary file, then
/// renamed over `out`). With `strict`, the first bad line is an error.
pub fn import_openai_log(
    input: &Path,
    out: &Path,
    strict: bool,
) -> Result<ImportReport, TeacherError> {
    let file = std::fs::File::open(input).map_err(|e| TeacherError::io(input, e))?;
    let reader = BufReader::new(file);
    let mut report = ImportReport::default();
    let mut ids = HashSet::new();
    let mut buf = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| TeacherError::io(input, e))?;
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let result = serde_json::from_str::<Value>(&text)
            .map_err(|e| skip("not_json", e.to_string()))
            .and_then(|v| example_from_entry(&v))
            .and_then(|ex| {
                if ids.insert(ex.id.clone()) {
                    Ok(ex)
                } else {
                    Err(skip(
                        "duplicate",
                        format!("same request as an earlier line ({})", ex.id),
                    ))
                }
            });
        match result {
            Ok(ex) => {
                serde_json::to_writer(&mut buf, &ex)
                    .map_err(|e| TeacherError::Config(e.to_string()))?;
                buf.push(b'\n');
                report.imported += 1;
            }
            Err(s) => {
                if strict {
                    return Err(TeacherError::BadLine {
                        path: input.to_path_buf(),
                        line: lineno,
                        message: format!("{}: {}", s.reason, s.detail),
                    });
                }
                let msg = format!("{}:{lineno}: {}: {}", input.display(), s.reason, s.detail);
                tracing::warn!("skipped {msg}");
                if report.first_skips.len() < 20 {
                    report.first_skips.push(msg);
                }
                *report.skipped.entry(s.reason.to_string()).or_default() += 1;
            }
        }
    }
    write_atomically(out, &buf)?;
    Ok(report)
}

fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), TeacherError> {
    retort_core::fsutil::write_atomic(out, bytes).map_err(|e| TeacherError::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> Value {
        json!({"model": "gpt-4.1-mini", "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "sunny"},
            {"role": "user", "content": [{"type": "text", "text": "And in Oslo, in fahrenheit?"}]}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}, "units": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"]}}}]})
    }

    fn response(args: &str) -> Value {
        json!({"id": "x", "object": "chat.completion", "model": "gpt-4.1-mini-2025-04-14",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10}})
    }

    #[test]
    fn entry_to_example() {
        let ex = example_from_entry(&json!({"request": request(), "response": response("{\"city\": \"Oslo\", \"units\": \"f\"}")}))
            .expect("example");
        assert_eq!(ex.query, "And in Oslo, in fahrenheit?");
        assert_eq!(ex.calls[0].arguments["units"], "f");
        assert_eq!(ex.context.len(), 4);
        assert_eq!(ex.context[2].role, "assistant");
        assert!(ex.context[2].content.contains("Rome"));
        assert_eq!(
            ex.teacher.as_ref().and_then(|t| t.model.as_deref()),
            Some("gpt-4.1-mini-2025-04-14")
        );
        assert!(ex.id.starts_with("log-"));
    }

    #[test]
    fn no_tool_calls_is_no_call() {
        let resp = json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": "Which city?"}}]});
        let ex =
            example_from_entry(&json!({"request": request(), "response": resp})).expect("example");
        assert!(ex.calls.is_empty());
    }

    #[test]
    fn skip_reasons() {
        let cases = [
            (json!({"response": response("{}")}), "missing_request"),
            (json!({"request": request()}), "missing_response"),
            (
                json!({"request": request(), "response": response("{\"city\": ")}),
                "malformed_arguments",
            ),
            (
                json!({"request": request(), "response": response("{\"city\": \"Oslo\", \"units\": \"k\"}")}),
                "not_in_enum",
            ),
            (
                json!({"request": request(), "response": {"choices": []}}),
                "no_choices",
            ),
            (
                json!({"request": {"messages": [{"role": "user", "content": "x"}]}, "response": response("{}")}),
                "no_tools",
            ),
            (
                json!({"request": {"messages": [{"role": "system", "content": "x"}], "tools": []}, "response": response("{}")}),
                "no_user_message",
            ),
        ];
        for (entry, reason) in cases {
            assert_eq!(example_from_entry(&entry).expect_err(reason).reason, reason);
        }
    }

    #[test]
    fn file_import_counts_and_names_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("log.jsonl");
        let good =
            json!({"request": request(), "response": response("{\"city\": \"Oslo\"}")}).to_string();
        let text = format!("{good}\n\nnot json\n{good}\n{{\"request\": 1, \"response\": 1}}\n");
        std::fs::write(&input, text).expect("write");
        let out = dir.path().join("o/out.jsonl");
        let r = import_openai_log(&input, &out, false).expect("import");
        assert_eq!(r.lines, 4);
        assert_eq!(r.imported, 1);
        assert_eq!(r.skipped.get("not_json"), Some(&1));
        assert_eq!(r.skipped.get("duplicate"), Some(&1));
        assert_eq!(r.skipped.get("no_messages"), Some(&1));
        assert!(
            r.first_skips[0].contains("log.jsonl:3: not_json"),
            "{:?}",
            r.first_skips
        );
        let written = std::fs::read_to_string(&out).expect("out");
        assert_eq!(written.lines().count(), 1);
        let e = import_openai_log(&input, &out, true).expect_err("strict");
        assert!(e.to_string().contains("log.jsonl:3:"), "{e}");
    }
}
