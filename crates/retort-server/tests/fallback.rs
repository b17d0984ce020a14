//! Confidence-gated fallback against a fake OpenAI-compatible teacher
//! started on loopback inside the test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::*;
use retort_core::Example;
use retort_server::{ApiKey, FallbackConfig, ServerConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-test-fallback-key-0123456789";

/// What the fake teacher does.
#[derive(Clone)]
enum Teacher {
    /// Call `get_weather` with this city.
    Weather(&'static str),
    /// Call a function that was not offered.
    Invalid,
    /// Answer 401 echoing the key, like some providers do.
    Unauthorized,
}

#[derive(Clone)]
struct Fake {
    mode: Teacher,
    seen: Arc<Mutex<Vec<Value>>>,
}

async fn fake_chat(
    State(f): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Ok(mut seen) = f.seen.lock() {
        seen.push(json!({"auth": auth, "body": body}));
    }
    if auth != format!("Bearer {KEY}") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "bad key"}})),
        )
            .into_response();
    }
    let call = match f.mode {
        Teacher::Weather(city) => {
            json!({"name": "get_weather", "arguments": json!({"city": city, "units": "celsius"}).to_string()})
        }
        Teacher::Invalid => json!({"name": "launch_rocket", "arguments": "{}"}),
        Teacher::Unauthorized => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}})),
            )
                .into_response();
        }
    };
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "teacher-big-1",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": call}]}}]
    }))
    .into_response()
}

async fn start_teacher(
    mode: Teacher,
) -> (
    String,
    Arc<Mutex<Vec<Value>>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(fake_chat))
        .with_state(Fake {
            mode,
            seen: seen.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (format!("http://{addr}/v1"), seen, tx)
}

fn config(url: &str, log: Option<std::path::PathBuf>, threshold: f64) -> ServerConfig {
    ServerConfig {
        fallback: Some(FallbackConfig {
            url: url.to_string(),
            threshold,
            model: "teacher-big".to_string(),
            log_path: log,
            api_key: ApiKey::new(KEY),
            timeout: Duration::from_secs(5),
        }),
        ..ServerConfig::default()
    }
}

async fn metric(c: &reqwest::Client, s: &TestServer, name: &str) -> String {
    let m = c
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    m.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_confidence_goes_to_the_teacher_and_is_logged() {
    let (url, seen, stop_teacher) = start_teacher(Teacher::Weather("Teacher City")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("new/dir/fallback.jsonl");
    // The double reports confidence 0.3; the threshold is 0.5.
    let caller = Arc::new(WordOverlap {
        confidence: Some(0.3),
    });
    let s = TestServer::start(caller, config(&url, Some(log.clone()), 0.5)).await;
    let c = client();
    let (st, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["source"], "fallback");
    assert_eq!(v["teacher_model"], "teacher-big-1");
    assert_eq!(v["parameters"]["city"], "Teacher City");
    let (st, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "retort", "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
            "tools": chat_tools()}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "teacher-big-1");
    assert_eq!(v["retort"]["source"], "fallback");
    let args = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .expect("string");
    assert_eq!(
        serde_json::from_str::<Value>(args).expect("json")["city"],
        "Teacher City"
    );

    // The teacher got the tools in OpenAI form, the key as a bearer token.
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0]["auth"], format!("Bearer {KEY}"));
        assert_eq!(seen[0]["body"]["model"], "teacher-big");
        assert_eq!(seen[0]["body"]["tools"][0]["type"], "function");
        assert_eq!(
            seen[0]["body"]["tools"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(
            seen[0]["body"]["messages"][0]["content"],
            "What is the weather in San Francisco?"
        );
    }
    // Both pairs are canonical examples in the log.
    let text = std::fs::read_to_string(&log).expect("log written");
    let examples: Vec<Example> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("canonical example line"))
        .collect();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[0].query, "What is the weather in San Francisco?");
    assert_eq!(examples[0].source, "fallback");
    assert_eq!(examples[0].calls[0].arguments["city"], "Teacher City");
    assert_eq!(examples[0].tools[0].name, "get_weather");
    assert_eq!(
        examples[1]
            .teacher
            .as_ref()
            .and_then(|t| t.model.as_deref()),
        Some("teacher-big-1")
    );
    assert_eq!(
        metric(&c, &s, "retort_fallbacks_total").await,
        "retort_fallbacks_total 2"
    );
    s.stop().await;
    let _ = stop_teacher.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confident_answers_stay_local() {
    let (url, seen, stop_teacher) = start_teacher(Teacher::Weather("Teacher City")).await;
    let caller = Arc::new(WordOverlap {
        confidence: Some(0.9),
    });
    let s = TestServer::start(caller, config(&url, None, 0.5)).await;
    let c = client();
    let (st, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["source"], "model");
    assert_eq!(v["parameters"]["city"], "San Francisco");
    assert!(seen.lock().expect("lock").is_empty());
    s.stop().await;
    let _ = stop_teacher.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_invalid_teachers_fall_back_to_the_model() {
    for mode in [Teacher::Invalid, Teacher::Unauthorized] {
        let (url, seen, stop_teacher) = start_teacher(mode).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("fallback.jsonl");
        let caller = Arc::new(WordOverlap {
            confidence: Some(0.1),
        });
        let s = TestServer::start(caller, config(&url, Some(log.clone()), 0.5)).await;
        let c = client();
        let (st, v) = post(
            &c,
            &s.url("/tool-call"),
            &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["source"], "model");
        assert_eq!(v["parameters"]["city"], "San Francisco");
        assert!(!v.to_string().contains(KEY));
        assert_eq!(seen.lock().expect("lock").len(), 1);
        assert_eq!(std::fs::read_to_string(&log).expect("log exists"), "");
        assert_eq!(
            metric(&c, &s, "retort_fallback_failures_total").await,
            "retort_fallback_failures_total 1"
        );
        s.stop().await;
        let _ = stop_teacher.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_teacher_falls_back_to_the_model() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let caller = Arc::new(WordOverlap {
        confidence: Some(0.1),
    });
    let s = TestServer::start(
        caller,
        config(&format!("http://127.0.0.1:{port}/v1"), None, 0.5),
    )
    .await;
    let c = client();
    let (st, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["source"], "model");
    s.stop().await;
}
