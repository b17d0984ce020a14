//! Test doubles and helpers shared by the integration tests.
//!
//! [`WordOverlap`] is a TEST DOUBLE, not a model: a small deterministic
//! `ToolCaller` that picks the tool sharing most words with the prompt and
//! fills required parameters (strings from the prompt's longest run of
//! capitalised words, other types from their constraints). The contract
//! tests check the server's behaviour, which must hold for any caller.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use retort_core::{
    Call, CallOptions, CallerError, Prediction, Schema, SchemaType, Tool, ToolCaller,
};
use retort_server::ServerConfig;
use serde_json::{Map, Value, json};

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "what", "whats", "in", "of", "for", "to", "and", "or", "me",
    "my", "please", "get", "set", "with", "on", "at", "by", "be", "it", "this", "that", "i", "you",
    "how", "can", "do", "does", "will", "from", "given", "current",
];

/// Lower-case words, with snake_case and camelCase split
/// ([`retort_core::split_words`]), stopwords left out.
pub fn words(s: &str) -> Vec<String> {
    let mut out = retort_core::split_words(s);
    out.retain(|w| !STOPWORDS.contains(&w.as_str()));
    out
}

/// The longest run of capitalised words of the prompt (the last on ties).
pub fn capitalised(s: &str) -> Option<String> {
    let mut best: Vec<&str> = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for w in s.split_whitespace() {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        if w.chars().next().is_some_and(char::is_uppercase) {
            cur.push(w);
        } else {
            if !cur.is_empty() && cur.len() >= best.len() {
                best = cur.clone();
            }
            cur.clear();
        }
    }
    if !cur.is_empty() && cur.len() >= best.len() {
        best = cur;
    }
    if best.is_empty() {
        None
    } else {
        Some(best.join(" "))
    }
}

/// A value that satisfies `s` (the server guarantees every accepted schema
/// is satisfiable).
pub fn value_for(s: &Schema, query: &str) -> Value {
    if let Some(e) = s.enum_values.as_ref().and_then(|e| e.first()) {
        return e.clone();
    }
    match s.ty {
        SchemaType::String => {
            let mut v: String = capitalised(query).unwrap_or_else(|| "unknown".to_string());
            let min = s.min_length.unwrap_or(0) as usize;
            while v.chars().count() < min {
                v.push('x');
            }
            if let Some(max) = s.max_length {
                v = v.chars().take(max as usize).collect();
            }
            Value::from(v)
        }
        SchemaType::Integer => {
            let mut v = 0.0f64;
            if let Some(lo) = s.minimum {
                v = v.max(lo.ceil());
            }
            if let Some(hi) = s.maximum {
                v = v.min(hi.floor());
            }
            Value::from(v as i64)
        }
        // A number satisfies an untyped node: length and item bounds only
        // constrain strings and arrays.
        SchemaType::Number | SchemaType::Any => {
            let mut v = 0.0f64;
            if let Some(lo) = s.minimum {
                v = v.max(lo);
            }
            if let Some(hi) = s.maximum {
                v = v.min(hi);
            }
            serde_json::Number::from_f64(v).map_or(Value::from(0), Value::Number)
        }
        SchemaType::Boolean => Value::Bool(true),
        SchemaType::Array => {
            let n = s.min_items.unwrap_or(0) as usize;
            let item = match &s.items {
                Some(i) => value_for(i, query),
                None => Value::from("x"),
            };
            Value::Array(vec![item; n])
        }
        SchemaType::Object => Value::Object(required_args(s, query)),
    }
}

fn required_args(s: &Schema, query: &str) -> Map<String, Value> {
    s.required
        .iter()
        .filter_map(|r| {
            s.properties
                .get(r)
                .map(|p| (r.clone(), value_for(p, query)))
        })
        .collect()
}

/// TEST DOUBLE: word-overlap tool selection (see the module docs).
#[derive(Debug, Default)]
pub struct WordOverlap {
    /// Report this confidence instead of the score-based one.
    pub confidence: Option<f64>,
}

impl ToolCaller for WordOverlap {
    fn call(
        &self,
        query: &str,
        tools: &[Tool],
        options: &CallOptions,
    ) -> Result<Prediction, CallerError> {
        let q = words(query);
        let score = |t: &Tool| {
            let mut tw = words(&t.name);
            tw.extend(words(&t.description));
            q.iter().filter(|w| tw.contains(w)).count()
        };
        let mut best: Option<(&Tool, usize)> = None;
        for t in tools {
            let s = score(t);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((t, s));
            }
        }
        let chosen = match &options.force_function {
            Some(name) => tools
                .iter()
                .find(|t| &t.name == name)
                .map(|t| (t, score(t))),
            None => best,
        };
        let chosen = match chosen {
            Some((t, s)) if s > 0 || options.require_call => Some((t, s)),
            _ => None,
        };
        let Some((tool, s)) = chosen else {
            return Ok(Prediction {
                calls: Vec::new(),
                confidence: self.confidence.unwrap_or(0.8),
            });
        };
        let call = Call::new(tool.name.clone(), required_args(&tool.parameters, query));
        Ok(Prediction {
            calls: vec![call],
            confidence: self.confidence.unwrap_or((0.5 + 0.1 * s as f64).min(0.95)),
        })
    }
}

/// TEST DOUBLE: counts calls, then delegates.
#[derive(Debug, Default)]
pub struct Counting {
    pub inner: WordOverlap,
    pub calls: AtomicUsize,
}

impl Counting {
    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ToolCaller for Counting {
    fn call(
        &self,
        query: &str,
        tools: &[Tool],
        options: &CallOptions,
    ) -> Result<Prediction, CallerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.call(query, tools, options)
    }
}

/// TEST DOUBLE: a model with a bug that panics on prompts containing
/// "panic"; otherwise WordOverlap.
#[derive(Debug, Default)]
pub struct Panicking;

impl ToolCaller for Panicking {
    fn call(
        &self,
        query: &str,
        tools: &[Tool],
        options: &CallOptions,
    ) -> Result<Prediction, CallerError> {
        assert!(!query.contains("panic"), "test double: a model bug");
        WordOverlap::default().call(query, tools, options)
    }
}

/// TEST DOUBLE: a buggy model that calls the first tool with a number for
/// every declared parameter.
#[derive(Debug, Default)]
pub struct Broken;

impl ToolCaller for Broken {
    fn call(&self, _: &str, tools: &[Tool], _: &CallOptions) -> Result<Prediction, CallerError> {
        let Some(t) = tools.first() else {
            return Ok(Prediction {
                calls: vec![],
                confidence: 1.0,
            });
        };
        let args = t
            .parameters
            .properties
            .keys()
            .map(|k| (k.clone(), json!(42)))
            .collect();
        Ok(Prediction {
            calls: vec![Call::new(t.name.clone(), args)],
            confidence: 0.9,
        })
    }
}

/// TEST DOUBLE: sleeps before answering like WordOverlap.
#[derive(Debug)]
pub struct Slow(pub Duration);

impl ToolCaller for Slow {
    fn call(
        &self,
        query: &str,
        tools: &[Tool],
        options: &CallOptions,
    ) -> Result<Prediction, CallerError> {
        std::thread::sleep(self.0);
        WordOverlap::default().call(query, tools, options)
    }
}

/// TEST DOUBLE: sleeps, and records the most calls ever in flight at once.
#[derive(Debug, Default)]
pub struct Gauge {
    pub now: AtomicUsize,
    pub peak: AtomicUsize,
    pub sleep_ms: u64,
}

impl ToolCaller for Gauge {
    fn call(
        &self,
        query: &str,
        tools: &[Tool],
        options: &CallOptions,
    ) -> Result<Prediction, CallerError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(self.sleep_ms));
        self.now.fetch_sub(1, Ordering::SeqCst);
        WordOverlap::default().call(query, tools, options)
    }
}

/// A server running on a loopback port for one test.
pub struct TestServer {
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), retort_server::ServeError>>>,
}

impl TestServer {
    pub async fn start(caller: Arc<dyn ToolCaller>, config: ServerConfig) -> TestServer {
        let app = retort_server::app(caller, config).expect("server config is valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(retort_server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn default_double() -> TestServer {
        TestServer::start(Arc::new(WordOverlap::default()), ServerConfig::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Ask for a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Graceful shutdown; fails the test if the server errored.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ran cleanly");
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// POST a JSON value; returns status and parsed JSON body.
pub async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    post_raw(c, url, body.to_string().into_bytes()).await
}

/// POST raw bytes; returns status and parsed JSON body (the test fails when
/// the body is not JSON).
pub async fn post_raw(c: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("body");
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    assert!(
        ct.starts_with("application/json"),
        "status {status}: content-type {ct:?}"
    );
    (status, v)
}

/// Assert a 4xx JSON error whose message contains `needle`.
pub fn assert_error(status: u16, body: &Value, want_status: u16, needle: &str) {
    assert_eq!(status, want_status, "body: {body}");
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message in {body}"));
    assert!(
        msg.contains(needle),
        "error message {msg:?} does not contain {needle:?}"
    );
    assert!(body["error"]["type"].is_string(), "{body}");
}

/// The seed's tool.
pub fn get_weather() -> Value {
    json!({
        "name": "get_weather",
        "description": "Get the current weather in a given city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. San Francisco"},
                "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            },
            "required": ["city"]
        }
    })
}

/// A second tool.
pub fn send_email() -> Value {
    json!({
        "name": "send_email",
        "description": "Send an email message to a recipient",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "urgent": {"type": "boolean"}
            },
            "required": ["to", "subject"]
        }
    })
}

pub fn chat_tools() -> Value {
    json!([
        {"type": "function", "function": get_weather()},
        {"type": "function", "function": send_email()}
    ])
}

pub fn responses_tools() -> Value {
    let flat = |f: Value| {
        let mut o = f;
        o["type"] = json!("function");
        o
    };
    json!([flat(get_weather()), flat(send_email())])
}
