//! The two wire protocols: Gemini `generateContent` and OpenAI-compatible
//! chat completions. Request bodies are built here and responses parsed into
//! protocol-free types; nothing here touches the network.

use retort_core::Tool;
use serde_json::{Map, Value, json};

use crate::error::TeacherError;

/// Which API a teacher speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST {base}/v1beta/models/{model}:generateContent`, key in `x-goog-api-key`.
    Gemini,
    /// `POST {base}/chat/completions`, key as a bearer token.
    OpenAi,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Gemini => "gemini",
            Protocol::OpenAi => "openai",
        }
    }
    pub fn default_base_url(self) -> &'static str {
        match self {
            Protocol::Gemini => "https://generativelanguage.googleapis.com",
            Protocol::OpenAi => "https://api.openai.com/v1",
        }
    }
    pub fn default_model(self) -> &'static str {
        match self {
            Protocol::Gemini => "gemini-2.5-flash",
            Protocol::OpenAi => "gpt-4.1-mini",
        }
    }
    pub fn key_env(self) -> &'static str {
        match self {
            Protocol::Gemini => "GEMINI_API_KEY",
            Protocol::OpenAi => "OPENAI_API_KEY",
        }
    }
}

/// Whether the teacher may answer without calling a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// The teacher decides (Gemini `AUTO`, OpenAI `"auto"`): "no tool fits"
    /// answers are collected too.
    Auto,
    /// At least one call is forced (Gemini `ANY`, OpenAI `"required"`).
    Any,
}

/// Optional request fields; servers that reject one get it switched off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Options {
    pub temperature: Option<f64>,
    /// Top alternatives per token to ask for; 0 = no logprobs.
    pub top_logprobs: u8,
    /// Ask for JSON output (Gemini `responseMimeType`, OpenAI `response_format`).
    pub json_mode: bool,
}

/// One token the teacher produced, with its log-probability and the top
/// alternatives at that position (the chosen one may or may not be among them).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub top: Vec<(String, f64)>,
}

/// A function call as the teacher wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCall {
    pub name: String,
    /// `Err(text)` when OpenAI-style string arguments were not JSON.
    pub arguments: Result<Value, String>,
}

/// Token counts of one exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    /// Output tokens, thinking tokens included (they are billed as output).
    pub output_tokens: u64,
}

/// A parsed teacher answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub calls: Vec<RawCall>,
    /// Text parts, concatenated.
    pub text: String,
    pub tokens: Vec<TokenLogprob>,
    pub usage: Usage,
    /// The model the server says answered.
    pub model: Option<String>,
}

fn user_text(system: &str, user: &str) -> (Value, Value) {
    (
        json!({"parts": [{"text": system}]}),
        json!([{"role": "user", "parts": [{"text": user}]}]),
    )
}

/// Gemini `generateContent` body.
pub(crate) fn gemini_body(
    system: &str,
    user: &str,
    tools: &[Tool],
    mode: CallMode,
    opts: Options,
) -> Value {
    let (system_instruction, contents) = user_text(system, user);
    let mut body = Map::new();
    body.insert("systemInstruction".into(), system_instruction);
    body.insert("contents".into(), contents);
    if !tools.is_empty() {
        let decls: Vec<Value> = tools.iter().map(Tool::to_gemini).collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        let mode = match mode {
            CallMode::Auto => "AUTO",
            CallMode::Any => "ANY",
        };
        body.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": {"mode": mode}}),
        );
    }
    let mut gen_config = Map::new();
    if let Some(t) = opts.temperature {
        gen_config.insert("temperature".into(), json!(t));
    }
    if opts.top_logprobs > 0 {
        gen_config.insert("responseLogprobs".into(), json!(true));
        gen_config.insert("logprobs".into(), json!(opts.top_logprobs));
    }
    if opts.json_mode {
        gen_config.insert("responseMimeType".into(), json!("application/json"));
    }
    if !gen_config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gen_config));
    }
    Value::Object(body)
}

/// OpenAI chat-completions body.
pub(crate) fn openai_body(
    model: &str,
    system: &str,
    user: &str,
    tools: &[Tool],
    mode: CallMode,
    opts: Options,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "messages".into(),
        json!([
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]),
    );
    if !tools.is_empty() {
        let ts: Vec<Value> = tools.iter().map(Tool::to_openai_tool).collect();
        body.insert("tools".into(), Value::Array(ts));
        let choice = match mode {
            CallMode::Auto => "auto",
            CallMode::Any => "required",
        };
        body.insert("tool_choice".into(), json!(choice));
    }
    if let Some(t) = opts.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if opts.top_logprobs > 0 {
        body.insert("logprobs".into(), json!(true));
        body.insert("top_logprobs".into(), json!(opts.top_logprobs));
    }
    if opts.json_mode {
        body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    Value::Object(body)
}

fn malformed(message: impl Into<String>) -> TeacherError {
    TeacherError::Malformed {
        attempts: 1,
        message: message.into(),
    }
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Parse a Gemini `GenerateContentResponse`.
pub(crate) fn parse_gemini(v: &Value) -> Result<Answer, TeacherError> {
    if let Some(err) = v.get("error") {
        return Err(malformed(format!("error object: {err}")));
    }
    let obj = v
        .as_object()
        .ok_or_else(|| malformed("response is not a JSON object"))?;
    let candidates = obj.get("candidates").and_then(Value::as_array);
    if candidates.is_none() && obj.get("promptFeedback").is_none() {
        return Err(malformed(
            "neither \"candidates\" nor \"promptFeedback\" in the response",
        ));
    }
    let cand = match candidates.and_then(|c| c.first()) {
        Some(c) => c,
        None => {
            let why = v
                .pointer("/promptFeedback/blockReason")
                .and_then(Value::as_str)
                .map(|r| format!("prompt blocked ({r})"))
                .unwrap_or_else(|| "no candidates".to_string());
            return Err(TeacherError::NoCandidate(why));
        }
    };
    let finish = cand
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or("");
    if finish == "MALFORMED_FUNCTION_CALL" || finish == "UNEXPECTED_TOOL_CALL" {
        return Err(TeacherError::MalformedFunctionCall);
    }
    let parts = cand.pointer("/content/parts").and_then(Value::as_array);
    let parts = match parts {
        Some(p) => p,
        None if !finish.is_empty() && finish != "STOP" => {
            return Err(TeacherError::NoCandidate(format!("finish reason {finish}")));
        }
        None => return Err(malformed("candidate has no content parts")),
    };
    let mut answer = Answer::default();
    for part in parts {
        if let Some(fc) = part.get("functionCall") {
            let name = fc
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("functionCall without a name"))?;
            let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
            answer.calls.push(RawCall {
                name: name.to_string(),
                arguments: Ok(args),
            });
        } else if let Some(t) = part.get("text").and_then(Value::as_str)
            && part.get("thought").and_then(Value::as_bool) != Some(true)
        {
            answer.text.push_str(t);
        }
    }
    if let Some(lp) = cand.get("logprobsResult") {
        let chosen = lp.get("chosenCandidates").and_then(Value::as_array);
        let top = lp.get("topCandidates").and_then(Value::as_array);
        if let Some(chosen) = chosen {
            for (i, c) in chosen.iter().enumerate() {
                let alts = top
                    .and_then(|t| t.get(i))
                    .and_then(|t| t.get("candidates"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| {
                                Some((
                                    x.get("token")?.as_str()?.to_string(),
                                    x.get("logProbability")?.as_f64()?,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let (Some(token), Some(logprob)) = (
                    c.get("token").and_then(Value::as_str),
                    c.get("logProbability").and_then(Value::as_f64),
                ) {
                    answer.tokens.push(TokenLogprob {
                        token: token.to_string(),
                        logprob,
                        top: alts,
                    });
                }
            }
        }
    }
    if let Some(u) = v.get("usageMetadata") {
        answer.usage = Usage {
            input_tokens: u64_at(u, "promptTokenCount"),
            output_tokens: u64_at(u, "candidatesTokenCount") + u64_at(u, "thoughtsTokenCount"),
        };
    }
    answer.model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(answer)
}

/// The arguments of an OpenAI tool call: a JSON string (as the API sends
/// them), an object (some servers), or missing/empty (no arguments).
pub fn parse_openai_arguments(v: Option<&Value>) -> Result<Value, String> {
    match v {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| s.clone()),
        Some(other) => Ok(other.clone()),
    }
}

/// The calls of an OpenAI assistant message (`tool_calls`, or the legacy
/// `function_call`).
pub fn openai_message_calls(msg: &Value) -> Result<Vec<RawCall>, String> {
    let mut calls = Vec::new();
    if let Some(tcs) = msg.get("tool_calls").filter(|t| !t.is_null()) {
        let tcs = tcs
            .as_array()
            .ok_or_else(|| "tool_calls is not an array".to_string())?;
        for tc in tcs {
            let f = tc
                .get("function")
                .ok_or_else(|| "tool call without \"function\"".to_string())?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| "tool call without a function name".to_string())?;
            calls.push(RawCall {
                name: name.to_string(),
                arguments: parse_openai_arguments(f.get("arguments")),
            });
        }
    } else if let Some(f) = msg.get("function_call").filter(|f| !f.is_null()) {
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| "function_call without a name".to_string())?;
        calls.push(RawCall {
            name: name.to_string(),
            arguments: parse_openai_arguments(f.get("arguments")),
        });
    }
    Ok(calls)
}

/// The token log-probabilities of an OpenAI choice (`logprobs.content`).
pub fn openai_choice_tokens(choice: &Value) -> Vec<TokenLogprob> {
    let Some(content) = choice
        .pointer("/logprobs/content")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    content
        .iter()
        .filter_map(|t| {
            let top = t
                .get("top_logprobs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| {
                            Some((
                                x.get("token")?.as_str()?.to_string(),
                                x.get("logprob")?.as_f64()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(TokenLogprob {
                token: t.get("token")?.as_str()?.to_string(),
                logprob: t.get("logprob")?.as_f64()?,
                top,
            })
        })
        .collect()
}

/// Parse an OpenAI chat completion.
pub(crate) fn parse_openai(v: &Value) -> Result<Answer, TeacherError> {
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(malformed(format!("error object: {err}")));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| malformed("no choices"))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| malformed("choice without a message"))?;
    let calls = openai_message_calls(msg).map_err(malformed)?;
    let mut answer = Answer {
        calls,
        ..Answer::default()
    };
    match msg.get("content") {
        Some(Value::String(s)) => answer.text = s.clone(),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    answer.text.push_str(t);
                }
            }
        }
        _ => {}
    }
    answer.tokens = openai_choice_tokens(choice);
    if let Some(u) = v.get("usage") {
        answer.usage = Usage {
            input_tokens: u64_at(u, "prompt_tokens"),
            output_tokens: u64_at(u, "completion_tokens"),
        };
    }
    answer.model = v.get("model").and_then(Value::as_str).map(str::to_string);
    Ok(answer)
}

/// The first JSON value in a model's text: the whole text, or a fenced
/// ```json block, or the span from the first `{`/`[` to the last `}`/`]`.
pub fn extract_json(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    if let Some(start) = t.find("```") {
        let rest = &t[start + 3..];
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        if let Some(end) = rest.find("```")
            && let Ok(v) = serde_json::from_str(rest[..end].trim())
        {
            return Some(v);
        }
    }
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(a), Some(b)) = (t.find(open), t.rfind(close))
            && a < b
            && let Ok(v) = serde_json::from_str(&t[a..=b])
        {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::ToolFormat;

    fn tools() -> Vec<Tool> {
        Tool::parse_many(
            &json!([{"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]),
            ToolFormat::Auto,
        )
        .expect("tools")
    }

    const OPTS: Options = Options {
        temperature: Some(0.0),
        top_logprobs: 3,
        json_mode: false,
    };

    #[test]
    fn gemini_request_shape() {
        let b = gemini_body("sys", "hi", &tools(), CallMode::Any, OPTS);
        assert_eq!(b["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
        assert_eq!(
            b["tools"][0]["functionDeclarations"][0]["name"],
            "get_weather"
        );
        assert_eq!(b["generationConfig"]["responseLogprobs"], true);
        assert_eq!(b["generationConfig"]["logprobs"], 3);
        assert_eq!(b["contents"][0]["parts"][0]["text"], "hi");
        let j = gemini_body(
            "s",
            "u",
            &[],
            CallMode::Auto,
            Options {
                temperature: None,
                top_logprobs: 0,
                json_mode: true,
            },
        );
        assert!(j.get("tools").is_none());
        assert_eq!(
            j["generationConfig"]["responseMimeType"],
            "application/json"
        );
    }

    #[test]
    fn openai_request_shape() {
        let b = openai_body("m", "sys", "hi", &tools(), CallMode::Auto, OPTS);
        assert_eq!(b["tool_choice"], "auto");
        assert_eq!(b["tools"][0]["type"], "function");
        assert_eq!(b["logprobs"], true);
        assert_eq!(b["top_logprobs"], 3);
        assert_eq!(b["messages"][1]["content"], "hi");
    }

    #[test]
    fn gemini_parse() {
        let v = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather"}}]},
            "finishReason": "STOP",
            "logprobsResult": {"chosenCandidates": [{"token": "get", "logProbability": -0.1}],
                "topCandidates": [{"candidates": [{"token": "get", "logProbability": -0.1}, {"token": "set", "logProbability": -2.0}]}]}}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7},
            "modelVersion": "gemini-x"});
        let a = parse_gemini(&v).expect("parse");
        assert_eq!(a.calls.len(), 2);
        assert_eq!(a.calls[0].arguments, Ok(json!({"city": "Paris"})));
        assert_eq!(a.calls[1].arguments, Ok(json!({})));
        assert_eq!(a.text, "");
        assert_eq!(
            a.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 12
            }
        );
        assert_eq!(a.tokens[0].top[1], ("set".to_string(), -2.0));
        assert_eq!(a.model.as_deref(), Some("gemini-x"));

        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert!(
            matches!(parse_gemini(&blocked), Err(TeacherError::NoCandidate(m)) if m.contains("SAFETY"))
        );
        let bad = json!({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]});
        assert!(matches!(
            parse_gemini(&bad),
            Err(TeacherError::MalformedFunctionCall)
        ));
        assert!(parse_gemini(&json!([1, 2])).is_err());
        assert!(
            parse_gemini(
                &json!({"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]})
            )
            .is_err()
        );
    }

    #[test]
    fn openai_parse() {
        let v = json!({"model": "gpt-x", "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
                           {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{oops"}}]},
            "logprobs": {"content": [{"token": "get", "logprob": -0.2, "top_logprobs": [{"token": "get", "logprob": -0.2}]}]},
            "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 30, "completion_tokens": 9}});
        let a = parse_openai(&v).expect("parse");
        assert_eq!(a.calls[0].arguments, Ok(json!({"city": "Oslo"})));
        assert_eq!(a.calls[1].arguments, Err("{oops".to_string()));
        assert_eq!(a.usage.output_tokens, 9);
        assert_eq!(a.tokens.len(), 1);
        assert!(parse_openai(&json!({"choices": []})).is_err());
        assert!(parse_openai(&json!({"error": {"message": "x"}})).is_err());
        let legacy =
            json!({"choices": [{"message": {"function_call": {"name": "f", "arguments": ""}}}]});
        assert_eq!(
            parse_openai(&legacy).expect("legacy").calls[0].arguments,
            Ok(json!({}))
        );
    }

    #[test]
    fn json_extraction() {
        assert_eq!(extract_json(" {\"a\": 1} "), Some(json!({"a": 1})));
        assert_eq!(
            extract_json("Sure!\n```json\n[1, 2]\n```\nDone."),
            Some(json!([1, 2]))
        );
        assert_eq!(
            extract_json("Here: {\"requests\": []} hope it helps"),
            Some(json!({"requests": []}))
        );
        assert_eq!(extract_json("no json here"), None);
    }
}
