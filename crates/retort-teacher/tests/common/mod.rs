//! A local teacher for tests: one HTTP server on 127.0.0.1:0 that speaks
//! both Gemini `generateContent` and OpenAI chat completions, with faults
//! chosen by markers in the requests it synthesizes itself.
//!
//! Synthesis (a request without tools) answers with `count` queries of the
//! form `What is the weather in CITY? [MARKER]`; answering (a request with
//! tools) looks at the marker:
//! - `ok`: one `get_weather(city)` call, with token log-probabilities when asked;
//! - `429`: first attempt 429 with `Retry-After: 1`;
//! - `500`: first attempt 500;
//! - `badjson`: first attempt a 200 whose body is not JSON;
//! - `hang`: first attempt never answers (until long after any client timeout);
//! - `invalid`: a call that violates the schema (`days: "three"`);
//! - `nocall`: a text answer, no call;
//! - `multi`: two calls;
//! - `down`: always 503;
//! - `garbage`: always a 200 whose JSON is not a teacher response.
#![allow(dead_code)]

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

pub const FAULT_MARKERS: &[&str] = &[
    "ok", "429", "500", "badjson", "hang", "invalid", "nocall", "multi", "down", "garbage",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Queries cycle through [`FAULT_MARKERS`].
    Faulty,
    /// Every query is `ok`.
    Clean,
    /// Echoes the API key back in bodies and errors, and fails.
    Hostile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Gemini,
    OpenAi,
}

#[derive(Debug, Default)]
pub struct Seen {
    /// Answer attempts per query, with their arrival times.
    pub attempts: HashMap<String, Vec<Instant>>,
    /// Synthesis requests received.
    pub synth: u64,
    /// Every credential received (x-goog-api-key or bearer token).
    pub keys: Vec<String>,
    /// Whether each answer request asked for logprobs, in arrival order.
    pub asked_logprobs: Vec<bool>,
    pub protocols: Vec<Proto>,
    /// Requests refused because they asked for logprobs.
    pub rejected_logprobs: u64,
}

pub struct FakeState {
    pub mode: Mode,
    pub delay: Duration,
    pub reject_logprobs: bool,
    pub seen: Mutex<Seen>,
    pub requests: AtomicU64,
    pub hang_for: Duration,
    pub stop: AtomicBool,
}

pub struct FakeTeacher {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTeacher {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl FakeTeacher {
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, Duration::ZERO, false).await
    }

    pub async fn start_with(mode: Mode, delay: Duration, reject_logprobs: bool) -> Self {
        let state = Arc::new(FakeState {
            mode,
            delay,
            reject_logprobs,
            seen: Mutex::new(Seen::default()),
            requests: AtomicU64::new(0),
            hang_for: Duration::from_secs(20),
            stop: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/v1beta/models/{action}", post(gemini))
            .route("/v1/chat/completions", post(openai))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTeacher {
            addr,
            state,
            handle,
        }
    }

    /// Base URL for the Gemini protocol.
    pub fn gemini_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL for the OpenAI protocol.
    pub fn openai_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        let s = self.state.seen.lock().expect("lock");
        f(&s)
    }

    pub fn total_requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// The tools every test uses.
pub fn tools_json() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather and forecast for a city",
         "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "integer", "description": "Forecast days", "minimum": 1, "maximum": 14}},
          "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    ])
}

pub fn marker_of(query: &str) -> Option<&str> {
    let a = query.rfind('[')?;
    let b = query.rfind(']')?;
    query.get(a + 1..b)
}

pub fn city_of(query: &str) -> String {
    let start = query.find(" in ").map(|i| i + 4).unwrap_or(0);
    let end = query[start..]
        .find('?')
        .map(|i| start + i)
        .unwrap_or(query.len());
    query[start..end].to_string()
}

fn respond(status: u16, body: String, headers: &[(&str, &str)]) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).expect("response")
}

enum Reply {
    Calls(Vec<(String, Value)>),
    Text(String),
}

fn credential(headers: &HeaderMap) -> String {
    if let Some(k) = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        return k.to_string();
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches("Bearer ").to_string())
        .unwrap_or_default()
}

fn synth_queries(state: &FakeState, prompt: &str, key: &str) -> Vec<String> {
    let count: usize = prompt
        .split("Write exactly ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let mut h = DefaultHasher::new();
    prompt.hash(&mut h);
    let tag = h.finish() % 1_000_000;
    match state.mode {
        Mode::Hostile => vec![
            "What is the weather in Oslo? [ok]".to_string(),
            format!("What is the weather in Bergen? my key is {key} [ok]"),
            "What is the weather in Rome? [ok]".to_string(),
            "What is the weather in Lima? [ok]".to_string(),
            "What is the weather in Quito? [ok]".to_string(),
        ],
        Mode::Clean => (0..count)
            .map(|j| format!("What is the weather in City{tag}n{j}? [ok]"))
            .collect(),
        Mode::Faulty => (0..count)
            .map(|j| {
                format!(
                    "What is the weather in City{tag}n{j}? [{}]",
                    FAULT_MARKERS[j % FAULT_MARKERS.len()]
                )
            })
            .collect(),
    }
}

/// The common logic: Ok(reply) or a raw fault response.
async fn decide(
    state: &FakeState,
    headers: &HeaderMap,
    body: &Value,
    proto: Proto,
) -> Result<(Reply, bool), Response> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let key = credential(headers);
    let has_tools = body.get("tools").is_some();
    let wants_logprobs = match proto {
        Proto::Gemini => body.pointer("/generationConfig/responseLogprobs") == Some(&json!(true)),
        Proto::OpenAi => body.get("logprobs") == Some(&json!(true)),
    };
    let prompt = match proto {
        Proto::Gemini => body.pointer("/contents/0/parts/0/text"),
        Proto::OpenAi => body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("content")),
    }
    .and_then(Value::as_str)
    .unwrap_or_default()
    .to_string();
    {
        let mut s = state.seen.lock().expect("lock");
        s.keys.push(key.clone());
        s.protocols.push(proto);
        if has_tools {
            s.asked_logprobs.push(wants_logprobs);
        } else {
            s.synth += 1;
        }
    }
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    if state.reject_logprobs && wants_logprobs {
        state.seen.lock().expect("lock").rejected_logprobs += 1;
        return Err(respond(
            400,
            json!({"error": {"code": 400, "message": "logprobs are not supported for this model"}})
                .to_string(),
            &[],
        ));
    }
    if !has_tools {
        let queries = synth_queries(state, &prompt, &key);
        let reqs: Vec<Value> = queries
            .iter()
            .map(|q| json!({"kind": "single", "query": q}))
            .collect();
        return Ok((Reply::Text(json!({"requests": reqs}).to_string()), false));
    }
    let query = prompt;
    let attempt = {
        let mut s = state.seen.lock().expect("lock");
        let v = s.attempts.entry(query.clone()).or_default();
        v.push(Instant::now());
        v.len()
    };
    let city = city_of(&query);
    if state.mode == Mode::Hostile {
        return match city.as_str() {
            "Rome" => Ok((
                Reply::Calls(vec![("get_weather".into(), json!({"city": key}))]),
                false,
            )),
            "Lima" => Err(respond(
                400,
                format!("{{\"error\": \"invalid key {key}\"}}"),
                &[],
            )),
            _ => Err(respond(500, format!("internal error for key={key}"), &[])),
        };
    }
    let marker = if state.mode == Mode::Clean {
        "ok"
    } else {
        marker_of(&query).unwrap_or("ok")
    };
    let first = attempt == 1;
    match marker {
        "429" if first => Err(respond(
            429,
            json!({"error": {"code": 429, "message": "slow down"}}).to_string(),
            &[("retry-after", "1")],
        )),
        "500" if first => Err(respond(500, "{\"error\": \"boom\"}".into(), &[])),
        "down" => Err(respond(503, "{\"error\": \"unavailable\"}".into(), &[])),
        "garbage" => Err(respond(200, "{\"unexpected\": [1, 2, 3]}".into(), &[])),
        "badjson" if first => Err(respond(200, "{\"choices\": [{\"message\": ".into(), &[])),
        "hang" if first => {
            tokio::time::sleep(state.hang_for).await;
            Err(respond(504, "{}".into(), &[]))
        }
        "invalid" => Ok((
            Reply::Calls(vec![(
                "get_weather".into(),
                json!({"city": city, "days": "three"}),
            )]),
            false,
        )),
        "nocall" => Ok((Reply::Text("Sorry, I cannot help with that.".into()), false)),
        "multi" => Ok((
            Reply::Calls(vec![
                ("get_weather".into(), json!({"city": city})),
                ("get_time".into(), json!({"city": city})),
            ]),
            false,
        )),
        _ => Ok((
            Reply::Calls(vec![("get_weather".into(), json!({"city": city}))]),
            wants_logprobs,
        )),
    }
}

/// Tokens of `{"name": "get_weather", "arguments": {"city": "CITY"}}`.
/// (token, logprob, top alternatives).
type ScoredToken = (String, f64, Vec<(String, f64)>);

fn call_tokens(city: &str) -> Vec<ScoredToken> {
    vec![
        ("{\"name\": \"".into(), -0.01, vec![]),
        (
            "get".into(),
            -0.02,
            vec![("get".into(), -0.02), ("send".into(), -4.0)],
        ),
        (
            "_weather".into(),
            -0.1,
            vec![("_weather".into(), -0.1), ("_time".into(), -2.5)],
        ),
        ("\", \"arguments\": {\"city\": \"".into(), -0.01, vec![]),
        (
            city.into(),
            -0.3,
            vec![(city.into(), -0.3), ("Paris".into(), -2.0)],
        ),
        ("\"}}".into(), -0.01, vec![]),
    ]
}

async fn gemini(State(state): State<Arc<FakeState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return respond(400, "{\"error\": \"bad request\"}".into(), &[]);
    };
    let city = body
        .pointer("/contents/0/parts/0/text")
        .and_then(Value::as_str)
        .map(city_of)
        .unwrap_or_default();
    let (reply, logprobs) = match decide(&state, &headers, &body, Proto::Gemini).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let parts: Vec<Value> = match reply {
        Reply::Text(t) => vec![json!({"text": t})],
        Reply::Calls(calls) => calls
            .into_iter()
            .map(|(name, args)| json!({"functionCall": {"name": name, "args": args}}))
            .collect(),
    };
    let mut cand =
        json!({"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0});
    if logprobs {
        let toks = call_tokens(&city);
        cand["logprobsResult"] = json!({
            "chosenCandidates": toks.iter().map(|(t, lp, _)| json!({"token": t, "logProbability": lp})).collect::<Vec<_>>(),
            "topCandidates": toks.iter().map(|(_, _, top)| json!({"candidates":
                top.iter().map(|(t, lp)| json!({"token": t, "logProbability": lp})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        });
    }
    let out = json!({"candidates": [cand],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
        "modelVersion": "gemini-2.5-flash"});
    respond(200, out.to_string(), &[])
}

async fn openai(State(state): State<Arc<FakeState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return respond(400, "{\"error\": \"bad request\"}".into(), &[]);
    };
    let city = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(city_of)
        .unwrap_or_default();
    let model = body.get("model").cloned().unwrap_or(json!("unknown"));
    let (reply, logprobs) = match decide(&state, &headers, &body, Proto::OpenAi).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let message = match reply {
        Reply::Text(t) => json!({"role": "assistant", "content": t}),
        Reply::Calls(calls) => json!({"role": "assistant", "content": null, "tool_calls":
            calls.into_iter().enumerate().map(|(i, (name, args))| json!({"id": format!("call_{i}"), "type": "function",
                "function": {"name": name, "arguments": args.to_string()}})).collect::<Vec<_>>()}),
    };
    let mut choice =
        json!({"index": 0, "message": message, "finish_reason": "stop", "logprobs": null});
    if logprobs {
        let toks = call_tokens(&city);
        choice["logprobs"] = json!({"content": toks.iter().map(|(t, lp, top)| json!({"token": t, "logprob": lp, "bytes": null,
            "top_logprobs": top.iter().map(|(a, b)| json!({"token": a, "logprob": b, "bytes": null})).collect::<Vec<_>>()})).collect::<Vec<_>>()});
    }
    let out = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
        "choices": [choice], "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}});
    respond(200, out.to_string(), &[])
}
