//! Reading request bodies: JSON decoding, typed field access with errors
//! that name the field, tools, and `tool_choice`.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use http_body_util::BodyExt;
use retort_core::{CallOptions, Tool, ToolFormat, json_kind};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::schema_check::check_tool;

/// Most tools one request may offer.
pub const MAX_TOOLS: usize = 256;

/// Most bytes read (and thrown away) from an oversized body before the 413
/// is sent, so that a client still writing its body reads the answer
/// instead of a broken pipe.
pub const DRAIN_CAP: usize = 64 << 20;

fn too_large(limit: usize) -> ApiError {
    ApiError::invalid(format!(
        "request body is too large: the limit is {limit} bytes (the server's --max-body-bytes)"
    ))
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    .with_code("body_too_large")
}

/// Read a request body of at most `limit` bytes.
pub async fn read_body(req: Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_CAP as u64) {
        return Err(too_large(limit));
    }
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::invalid(format!("could not read the request body: {e}"))
                .with_code("unreadable_body")
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            if !buf.is_empty() {
                buf = Vec::new();
            }
            if seen > DRAIN_CAP {
                return Err(too_large(limit));
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if seen > limit {
        return Err(too_large(limit));
    }
    Ok(buf)
}

/// Read the body of `req` as a JSON object.
pub async fn json_object(req: Request, limit: usize) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_body(req, limit).await?;
    parse_object(&bytes)
}

/// Decode bytes as a UTF-8 JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(
            ApiError::invalid("request body is empty; expected a JSON object")
                .with_code("empty_body"),
        );
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::invalid(format!(
            "request body is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
        .with_code("invalid_utf8"));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(format!("malformed JSON in request body: {e}")).with_code("invalid_json")
    })?;
    match value {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid(format!(
            "request body must be a JSON object, got {}",
            json_kind(&other)
        ))
        .with_code("invalid_json")),
    }
}

/// Typed access to the fields of a JSON object. `prefix` is prepended to
/// field names in errors (e.g. `messages[2].`).
pub struct Fields<'a> {
    pub obj: &'a Map<String, Value>,
    pub prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(obj: &'a Map<String, Value>) -> Self {
        Fields {
            obj,
            prefix: String::new(),
        }
    }

    pub fn nested(obj: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Fields {
            obj,
            prefix: prefix.into(),
        }
    }

    pub fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The field, treating `null` as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub fn required(&self, key: &str) -> Result<&'a Value, ApiError> {
        self.get(key).ok_or_else(|| {
            let name = self.name(key);
            ApiError::param(&name, format!("missing required field '{name}'"))
                .with_code("missing_field")
        })
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> ApiError {
        let name = self.name(key);
        ApiError::param(
            &name,
            format!("'{name}' must be {expected}, got {}", json_kind(got)),
        )
        .with_code("wrong_type")
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, ApiError> {
        let v = self.required(key)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", v))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a string", v)),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a boolean", v)),
        }
    }

    /// An optional integer >= 1.
    pub fn opt_positive(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Ok(Some(n)),
                _ => Err(self.wrong_type(key, "an integer >= 1", v)),
            },
        }
    }

    /// An optional number (range not checked).
    pub fn opt_number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a number", v)),
        }
    }

    /// Refuse a feature retort does not support.
    pub fn refuse_if(&self, key: &str, unsupported: bool, why: &str) -> Result<(), ApiError> {
        if unsupported {
            let name = self.name(key);
            return Err(
                ApiError::param(&name, format!("'{name}' is not supported: {why}"))
                    .with_code("unsupported_parameter"),
            );
        }
        Ok(())
    }
}

/// Refuse requests with too many tools.
fn check_count(n: usize, param: &str) -> Result<(), ApiError> {
    if n > MAX_TOOLS {
        return Err(ApiError::param(
            param,
            format!("too many tools: {n} (the limit is {MAX_TOOLS})"),
        )
        .with_code("too_many_tools"));
    }
    Ok(())
}

/// Parse `available_functions` of `/tool-call`: OpenAI, Gemini, MCP, BFCL
/// or bare function definitions, as a list (or one Gemini
/// `{"functionDeclarations": [..]}` wrapper).
pub fn parse_any_tools(v: &Value, param: &str) -> Result<Vec<Tool>, ApiError> {
    match v {
        Value::Array(a) => check_count(a.len(), param)?,
        Value::Object(_) => {}
        other => {
            return Err(ApiError::param(
                param,
                format!(
                    "'{param}' must be an array of function definitions, got {}",
                    json_kind(other)
                ),
            )
            .with_code("wrong_type"));
        }
    }
    let tools = Tool::parse_many(v, ToolFormat::Auto).map_err(|e| {
        ApiError::param(param, format!("invalid tool in '{param}': {e}")).with_code("invalid_tool")
    })?;
    check_count(tools.len(), param)?;
    for t in &tools {
        check_tool(t).map_err(|e| {
            ApiError::param(param, format!("invalid tool in '{param}': {e}"))
                .with_code("invalid_tool")
        })?;
    }
    Ok(tools)
}

/// How OpenAI tool entries are written in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStyle {
    /// Chat Completions: `{"type": "function", "function": {name, ..}}`.
    Chat,
    /// Responses: `{"type": "function", name, description, parameters}`.
    Responses,
}

/// Parse an OpenAI `tools` array (absent or null means no tools).
pub fn parse_openai_tools(v: Option<&Value>, style: ToolStyle) -> Result<Vec<Tool>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let arr = v.as_array().ok_or_else(|| {
        ApiError::param(
            "tools",
            format!("'tools' must be an array, got {}", json_kind(v)),
        )
        .with_code("wrong_type")
    })?;
    check_count(arr.len(), "tools")?;
    let mut tools: Vec<Tool> = Vec::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let param = format!("tools[{i}]");
        let obj = item.as_object().ok_or_else(|| {
            ApiError::param(
                &param,
                format!("'{param}' must be an object, got {}", json_kind(item)),
            )
            .with_code("invalid_tool")
        })?;
        match obj.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "function" => {}
            Some(Value::String(t)) => {
                return Err(ApiError::param(
                    format!("{param}.type"),
                    format!("{param}: unsupported tool type {t:?}; only \"function\" tools are supported"),
                )
                .with_code("unsupported_tool_type"));
            }
            Some(other) => {
                return Err(ApiError::param(
                    format!("{param}.type"),
                    format!("'{param}.type' must be a string, got {}", json_kind(other)),
                )
                .with_code("wrong_type"));
            }
        }
        if style == ToolStyle::Chat {
            match obj.get("function") {
                Some(Value::Object(_)) => {}
                None | Some(Value::Null) => {
                    return Err(ApiError::param(
                        format!("{param}.function"),
                        format!("missing required field '{param}.function'"),
                    )
                    .with_code("missing_field"));
                }
                Some(other) => {
                    return Err(ApiError::param(
                        format!("{param}.function"),
                        format!(
                            "'{param}.function' must be an object, got {}",
                            json_kind(other)
                        ),
                    )
                    .with_code("wrong_type"));
                }
            }
        }
        let tool = Tool::parse(item, ToolFormat::Auto).map_err(|e| {
            ApiError::param(&param, format!("invalid tool in '{param}': {e}"))
                .with_code("invalid_tool")
        })?;
        check_tool(&tool).map_err(|e| {
            ApiError::param(&param, format!("invalid tool in '{param}': {e}"))
                .with_code("invalid_tool")
        })?;
        if tools.iter().any(|t| t.name == tool.name) {
            return Err(ApiError::param(
                &param,
                format!("duplicate tool name {:?} in '{param}'", tool.name),
            )
            .with_code("invalid_tool"));
        }
        tools.push(tool);
    }
    Ok(tools)
}

/// OpenAI `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Never call a tool; the model is not consulted.
    None,
    /// The model decides.
    Auto,
    /// At least one call.
    Required,
    /// Call this function.
    Named(String),
}

impl ToolChoice {
    /// Parse `tool_choice` (absent means `auto`). Accepts the Chat form
    /// `{"type": "function", "function": {"name": ..}}` and the Responses
    /// form `{"type": "function", "name": ..}`. A named function must be one
    /// of `tools`; `required` needs at least one tool.
    pub fn parse(v: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
        let bad =
            |msg: String| ApiError::param("tool_choice", msg).with_code("invalid_tool_choice");
        let choice = match v {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(bad(format!(
                        "'tool_choice' must be \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ..}}}}, got {other:?}"
                    )));
                }
            },
            Some(Value::Object(o)) => {
                match o.get("type").and_then(Value::as_str) {
                    Some("function") => {}
                    Some(t) => {
                        return Err(bad(format!(
                            "unsupported 'tool_choice' type {t:?}; only \"function\" is supported"
                        )));
                    }
                    None => return Err(bad("'tool_choice.type' must be \"function\"".into())),
                }
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| o.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("'tool_choice' names no function: expected 'tool_choice.function.name' (a string)".into()))?;
                ToolChoice::Named(name.to_string())
            }
            Some(other) => {
                return Err(bad(format!(
                    "'tool_choice' must be a string or an object, got {}",
                    json_kind(other)
                )));
            }
        };
        choice.check(tools).map_err(bad)?;
        Ok(choice)
    }

    /// Parse the command-line form: `none`, `auto`, `required` or a function name.
    pub fn from_cli(s: &str, tools: &[Tool]) -> Result<ToolChoice, String> {
        let choice = match s {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            name => ToolChoice::Named(name.to_string()),
        };
        choice.check(tools)?;
        Ok(choice)
    }

    fn check(&self, tools: &[Tool]) -> Result<(), String> {
        match self {
            ToolChoice::Named(name) if !tools.iter().any(|t| &t.name == name) => Err(format!(
                "tool_choice names function {name:?}, which is not among the offered tools"
            )),
            ToolChoice::Required | ToolChoice::Named(_) if tools.is_empty() => {
                Err("tool_choice requires a call, but no tools were offered".to_string())
            }
            _ => Ok(()),
        }
    }

    /// The call options of this choice.
    pub fn options(&self, parallel: bool, max_steps: Option<usize>) -> CallOptions {
        CallOptions {
            require_call: matches!(self, ToolChoice::Required | ToolChoice::Named(_)),
            force_function: match self {
                ToolChoice::Named(n) => Some(n.clone()),
                _ => None,
            },
            single_call_only: !parallel,
            max_steps,
        }
    }

    /// The Chat Completions JSON form.
    pub fn to_chat_json(&self) -> Value {
        match self {
            ToolChoice::None => Value::from("none"),
            ToolChoice::Auto => Value::from("auto"),
            ToolChoice::Required => Value::from("required"),
            ToolChoice::Named(n) => {
                serde_json::json!({"type": "function", "function": {"name": n}})
            }
        }
    }

    /// The Responses JSON form.
    pub fn to_responses_json(&self) -> Value {
        match self {
            ToolChoice::Named(n) => serde_json::json!({"type": "function", "name": n}),
            other => other.to_chat_json(),
        }
    }
}

/// Text of an OpenAI message `content`: a string, or an array of parts
/// whose text parts (`text`, `input_text`, `output_text`) are joined.
/// Returns `None` when the content has no text.
pub fn content_text(v: &Value, param: &str) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let pp = format!("{param}[{i}]");
                let obj = p.as_object().ok_or_else(|| {
                    ApiError::param(
                        &pp,
                        format!("'{pp}' must be a content part object, got {}", json_kind(p)),
                    )
                    .with_code("wrong_type")
                })?;
                let f = Fields::nested(obj, format!("{pp}."));
                let ty = f.req_str("type")?;
                match ty {
                    "text" | "input_text" | "output_text" => texts.push(f.req_str("text")?),
                    // Images, audio and files carry no text for the model.
                    _ => {}
                }
            }
            if texts.is_empty() {
                Ok(None)
            } else {
                Ok(Some(texts.join("\n")))
            }
        }
        other => Err(ApiError::param(
            param,
            format!(
                "'{param}' must be a string or an array of content parts, got {}",
                json_kind(other)
            ),
        )
        .with_code("wrong_type")),
    }
}

/// Refuse an empty or whitespace-only query.
pub fn check_query(q: &str, param: &str) -> Result<(), ApiError> {
    if q.trim().is_empty() {
        return Err(
            ApiError::param(param, format!("'{param}' must not be empty"))
                .with_code("empty_prompt"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> Vec<Tool> {
        parse_openai_tools(
            Some(&json!([{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])),
            ToolStyle::Chat,
        )
        .expect("valid")
    }

    #[test]
    fn body_errors_name_the_problem() {
        assert_eq!(parse_object(b"").unwrap_err().code, Some("empty_body"));
        assert_eq!(
            parse_object(b"{\"a\": \xff}").unwrap_err().code,
            Some("invalid_utf8")
        );
        let e = parse_object(b"{\"a\": ").unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        let e = parse_object(b"[1]").unwrap_err();
        assert_eq!(e.message, "request body must be a JSON object, got array");
        assert!(parse_object(b" {\"a\": 1} ").is_ok());
    }

    #[test]
    fn fields_name_the_field() {
        let o = json!({"a": 1, "b": "x", "n": null});
        let obj = o.as_object().expect("object");
        let f = Fields::nested(obj, "messages[0].");
        assert_eq!(
            f.req_str("a").unwrap_err().message,
            "'messages[0].a' must be a string, got number"
        );
        assert_eq!(
            f.req_str("n").unwrap_err().message,
            "missing required field 'messages[0].n'"
        );
        assert_eq!(f.opt_str("b").expect("ok"), Some("x"));
        assert_eq!(f.opt_positive("zz").expect("ok"), None);
        assert!(f.opt_positive("b").is_err());
    }

    #[test]
    fn tool_choice_forms() {
        let t = weather();
        assert_eq!(
            ToolChoice::parse(Some(&json!("none")), &t).expect("ok"),
            ToolChoice::None
        );
        assert_eq!(ToolChoice::parse(None, &t).expect("ok"), ToolChoice::Auto);
        assert_eq!(
            ToolChoice::parse(
                Some(&json!({"type": "function", "function": {"name": "get_weather"}})),
                &t
            )
            .expect("ok"),
            ToolChoice::Named("get_weather".into())
        );
        assert_eq!(
            ToolChoice::parse(
                Some(&json!({"type": "function", "name": "get_weather"})),
                &t
            )
            .expect("ok"),
            ToolChoice::Named("get_weather".into())
        );
        let e = ToolChoice::parse(
            Some(&json!({"type": "function", "function": {"name": "nope"}})),
            &t,
        )
        .unwrap_err();
        assert!(e.message.contains("\"nope\""), "{}", e.message);
        assert!(ToolChoice::parse(Some(&json!("required")), &[]).is_err());
        assert!(ToolChoice::parse(Some(&json!("sometimes")), &t).is_err());
        let o = ToolChoice::Named("get_weather".into()).options(false, Some(8));
        assert!(o.require_call && o.single_call_only);
        assert_eq!(o.force_function.as_deref(), Some("get_weather"));
    }

    #[test]
    fn openai_tools_errors() {
        let e = parse_openai_tools(Some(&json!([{"type": "web_search"}])), ToolStyle::Responses)
            .unwrap_err();
        assert_eq!(e.code, Some("unsupported_tool_type"));
        let e =
            parse_openai_tools(Some(&json!([{"type": "function"}])), ToolStyle::Chat).unwrap_err();
        assert_eq!(e.message, "missing required field 'tools[0].function'");
        let e = parse_openai_tools(
            Some(
                &json!([{"type": "function", "name": "f", "parameters": {"type": "object",
                "properties": {"x": {"$ref": "#/defs/x"}}}}]),
            ),
            ToolStyle::Responses,
        )
        .unwrap_err();
        assert!(
            e.message.contains("unsupported schema keyword \"$ref\""),
            "{}",
            e.message
        );
        let many: Vec<Value> = (0..300).map(|i| json!({"name": format!("f{i}")})).collect();
        let e = parse_any_tools(&Value::Array(many), "available_functions").unwrap_err();
        assert_eq!(e.code, Some("too_many_tools"));
    }

    #[test]
    fn content_parts() {
        assert_eq!(
            content_text(&json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "input_text", "text": "b"}]), "c")
                .expect("ok"),
            Some("a\nb".to_string())
        );
        assert_eq!(
            content_text(&json!([{"type": "image_url"}]), "c").expect("ok"),
            None
        );
        assert!(content_text(&json!(3), "c").is_err());
        assert!(content_text(&json!([{"type": "text"}]), "c").is_err());
    }
}
