//! Confidence-gated fallback: when the model is unsure, ask an
//! OpenAI-compatible teacher, answer with its calls, and append the pair to a
//! JSONL file of canonical [`Example`]s for the next training round.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use retort_core::{Call, Example, TeacherInfo, Tool};
use serde_json::{Map, Value, json};

use crate::request::ToolChoice;

/// An API key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// `None` for an empty or whitespace-only key.
    pub fn new(key: impl Into<String>) -> Option<ApiKey> {
        let k = key.into();
        if k.trim().is_empty() {
            None
        } else {
            Some(ApiKey(k.trim().to_string()))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "[redacted]")
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// Settings of the fallback.
#[derive(Debug, Clone)]
pub struct FallbackConfig {
    /// The teacher's base URL (`https://host/v1`) or its full
    /// `.../chat/completions` URL.
    pub url: String,
    /// Answers with confidence below this go to the teacher.
    pub threshold: f64,
    /// The teacher model sent in requests.
    pub model: String,
    /// Where to append the (query, tools, teacher calls) examples.
    pub log_path: Option<PathBuf>,
    pub api_key: Option<ApiKey>,
    /// Whole-request time limit for the teacher.
    pub timeout: Duration,
}

/// Why the fallback could not be set up or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("fallback threshold {0} is not in [0, 1]")]
    BadThreshold(f64),
    #[error("fallback URL {0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error("cannot open the fallback log {path}: {source}")]
    OpenLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("teacher request failed: {0}")]
    Http(String),
    #[error("teacher answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("teacher answer is not usable: {0}")]
    BadAnswer(String),
    #[error("cannot append to the fallback log: {0}")]
    WriteLog(String),
}

/// A teacher's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherAnswer {
    pub calls: Vec<Call>,
    pub model: String,
}

/// A ready fallback: HTTP client plus the open log.
#[derive(Debug)]
pub struct Fallback {
    pub config: FallbackConfig,
    endpoint: String,
    client: reqwest::Client,
    log: Option<Mutex<File>>,
}

impl Fallback {
    /// Check the settings, build the client and open (create) the log.
    pub fn new(config: FallbackConfig) -> Result<Fallback, FallbackError> {
        if !(config.threshold.is_finite() && (0.0..=1.0).contains(&config.threshold)) {
            return Err(FallbackError::BadThreshold(config.threshold));
        }
        let url = config.url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(FallbackError::BadUrl(config.url.clone()));
        }
        let endpoint = if url.ends_with("/chat/completions") {
            url
        } else {
            format!("{url}/chat/completions")
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(config.timeout))
            .timeout(config.timeout)
            .build()
            .map_err(|e| FallbackError::Client(e.to_string()))?;
        let log = match &config.log_path {
            None => None,
            Some(p) => Some(Mutex::new(open_log(p)?)),
        };
        Ok(Fallback {
            config,
            endpoint,
            client,
            log,
        })
    }

    /// The full chat-completions URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn redact(&self, s: &str) -> String {
        match &self.config.api_key {
            Some(k) => k.redact(s),
            None => s.to_string(),
        }
    }

    /// Ask the teacher. The query is sent as one user message, with the
    /// tools in OpenAI form.
    pub async fn ask(
        &self,
        query: &str,
        tools: &[Tool],
        choice: &ToolChoice,
        parallel: bool,
    ) -> Result<TeacherAnswer, FallbackError> {
        let body = json!({
            "model": self.config.model,
            "messages": [{"role": "user", "content": query}],
            "tools": tools.iter().map(Tool::to_openai_tool).collect::<Vec<_>>(),
            "tool_choice": choice.to_chat_json(),
            "parallel_tool_calls": parallel,
        });
        let mut req = self.client.post(&self.endpoint).json(&body);
        if let Some(k) = &self.config.api_key {
            req = req.bearer_auth(k.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| FallbackError::Http(self.redact(&e.without_url().to_string())))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| FallbackError::Http(self.redact(&e.without_url().to_string())))?;
        if !status.is_success() {
            let snippet: String = text.chars().take(300).collect();
            return Err(FallbackError::Status {
                status: status.as_u16(),
                body: self.redact(&snippet),
            });
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| FallbackError::BadAnswer(format!("not JSON: {e}")))?;
        parse_teacher_answer(&v, &self.config.model)
    }

    /// Append one example to the log (no-op without a log). Blocking: call
    /// from a blocking context.
    pub fn append(&self, example: &Example) -> Result<(), FallbackError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let mut line =
            serde_json::to_string(example).map_err(|e| FallbackError::WriteLog(e.to_string()))?;
        line.push('\n');
        let mut f = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|e| FallbackError::WriteLog(e.to_string()))
    }
}

fn open_log(path: &Path) -> Result<File, FallbackError> {
    let err = |source| FallbackError::OpenLog {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)
}

/// Read the calls out of a chat.completion object.
pub fn parse_teacher_answer(
    v: &Value,
    default_model: &str,
) -> Result<TeacherAnswer, FallbackError> {
    let bad = |m: &str| FallbackError::BadAnswer(m.to_string());
    let message = v
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .ok_or_else(|| bad("no choices[0].message"))?;
    let mut calls = Vec::new();
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tcs)) => {
            for (i, tc) in tcs.iter().enumerate() {
                let f = tc
                    .get("function")
                    .ok_or_else(|| bad(&format!("tool_calls[{i}] has no function")))?;
                let name = f
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(&format!("tool_calls[{i}].function has no name")))?;
                let arguments: Map<String, Value> = match f.get("arguments") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
                    Some(Value::String(s)) => match serde_json::from_str(s) {
                        Ok(Value::Object(m)) => m,
                        _ => {
                            return Err(bad(&format!(
                                "tool_calls[{i}].function.arguments is not a JSON object"
                            )));
                        }
                    },
                    Some(Value::Object(m)) => m.clone(),
                    Some(_) => {
                        return Err(bad(&format!(
                            "tool_calls[{i}].function.arguments is not a JSON object"
                        )));
                    }
                };
                calls.push(Call::new(name, arguments));
            }
        }
        Some(_) => return Err(bad("tool_calls is not an array")),
    }
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(default_model)
        .to_string();
    Ok(TeacherAnswer { calls, model })
}

/// The canonical example recording a teacher's answer.
pub fn example(query: &str, tools: &[Tool], answer: &TeacherAnswer) -> Example {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Example {
        id: format!("fallback-{ms}-{:08x}", rand::random::<u32>()),
        source: "fallback".to_string(),
        query: query.to_string(),
        tools: tools.to_vec(),
        calls: answer.calls.clone(),
        teacher: Some(TeacherInfo {
            model: Some(answer.model.clone()),
            logprobs: Vec::new(),
        }),
        context: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::ToolFormat;

    fn config(url: &str, log: Option<PathBuf>) -> FallbackConfig {
        FallbackConfig {
            url: url.to_string(),
            threshold: 0.5,
            model: "teacher-1".to_string(),
            log_path: log,
            api_key: ApiKey::new("sk-secret-123"),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn key_never_printed() {
        let k = ApiKey::new("sk-secret-123").expect("key");
        assert_eq!(format!("{k:?}"), "ApiKey([redacted])");
        assert_eq!(k.redact("bad key sk-secret-123!"), "bad key [redacted]!");
        assert!(ApiKey::new("  ").is_none());
        let dbg = format!("{:?}", config("http://x", None));
        assert!(!dbg.contains("sk-secret-123"), "{dbg}");
    }

    #[test]
    fn settings_are_checked() {
        let mut c = config("http://127.0.0.1:9/v1/", None);
        let f = Fallback::new(c.clone()).expect("valid");
        assert_eq!(f.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
        c.threshold = 1.5;
        assert!(matches!(
            Fallback::new(c),
            Err(FallbackError::BadThreshold(_))
        ));
        assert!(matches!(
            Fallback::new(config("ftp://x", None)),
            Err(FallbackError::BadUrl(_))
        ));
    }

    #[test]
    fn parses_teacher_answers() {
        let v = json!({"model": "gpt-x", "choices": [{"message": {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}]});
        let a = parse_teacher_answer(&v, "d").expect("ok");
        assert_eq!(a.model, "gpt-x");
        assert_eq!(a.calls[0].arguments["a"], json!(1));
        let none = json!({"choices": [{"message": {"content": "no"}}]});
        let a = parse_teacher_answer(&none, "d").expect("ok");
        assert!(a.calls.is_empty());
        assert_eq!(a.model, "d");
        let bad = json!({"choices": [{"message": {"tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}}]});
        assert!(parse_teacher_answer(&bad, "d").is_err());
        assert!(parse_teacher_answer(&json!({}), "d").is_err());
    }

    #[test]
    fn appends_canonical_examples() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/dir/fallback.jsonl");
        let f = Fallback::new(config("http://127.0.0.1:9", Some(path.clone()))).expect("valid");
        let tools = Tool::parse_many(&json!([{"name": "f"}]), ToolFormat::Auto).expect("tools");
        let ans = TeacherAnswer {
            calls: vec![Call::new("f", Map::new())],
            model: "teacher-1".into(),
        };
        f.append(&example("q1", &tools, &ans)).expect("append");
        f.append(&example("q2", &tools, &ans)).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Example> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("canonical example"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].query, "q2");
        assert_eq!(lines[0].source, "fallback");
        assert_eq!(
            lines[0].teacher.as_ref().and_then(|t| t.model.as_deref()),
            Some("teacher-1")
        );
    }
}
