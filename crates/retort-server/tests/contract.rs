//! The server's contract over a real loopback connection: the seed example,
//! the OpenAI-compatible endpoints, tool_choice, auth, metrics.

mod common;

use std::sync::Arc;

use common::*;
use retort_server::{ApiKey, ServerConfig};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_calls_get_weather_with_the_city() {
    let s = TestServer::default_double().await;
    let c = client();
    let (status, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?",
            "available_functions": [get_weather()], "max_tokens": 64}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["function_name"], "get_weather");
    assert_eq!(v["parameters"]["city"], "San Francisco");
    assert_eq!(v["calls"][0]["name"], "get_weather");
    assert_eq!(v["calls"][0]["arguments"]["city"], "San Francisco");
    let conf = v["confidence"].as_f64().expect("confidence");
    assert!((0.0..=1.0).contains(&conf));
    assert!(v["latency_ms"].as_f64().expect("latency") >= 0.0);
    assert_eq!(v["source"], "model");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_call_accepts_every_tool_format() {
    let s = TestServer::default_double().await;
    let c = client();
    let forms = [
        json!([{"type": "function", "function": get_weather()}]),
        json!([get_weather()]),
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "weather in a city",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}]),
        json!({"functionDeclarations": [{"name": "get_weather", "description": "weather in a city",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}),
        json!([{"name": "get_weather", "description": "weather in a city",
            "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]),
        json!([{"name": "get_weather", "description": "weather in a city",
            "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]),
    ];
    for tools in forms {
        let (status, v) = post(
            &c,
            &s.url("/tool-call"),
            &json!({"prompt": "What is the weather in San Francisco?", "available_functions": tools}),
        )
        .await;
        assert_eq!(status, 200, "{tools}: {v}");
        assert_eq!(v["function_name"], "get_weather", "{tools}");
        assert_eq!(v["parameters"]["city"], "San Francisco", "{tools}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tool_fits_gives_null_function() {
    let s = TestServer::default_double().await;
    let c = client();
    let (status, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "Tell me a joke about penguins", "available_functions": [get_weather()]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["function_name"], Value::Null);
    assert_eq!(v["parameters"], Value::Null);
    assert_eq!(v["calls"], json!([]));
    // No tools at all: no call, the model is not consulted.
    let (status, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in Paris?", "available_functions": []}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["function_name"], Value::Null);
    assert_eq!(v["source"], "skipped");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_returns_tool_calls() {
    let s = TestServer::default_double().await;
    let c = client();
    let (status, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "retort", "messages": [
            {"role": "system", "content": "You call tools."},
            {"role": "user", "content": "What is the weather in San Francisco?"}],
            "tools": chat_tools()}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert!(v["created"].is_u64());
    assert_eq!(v["model"], "retort");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    let tc = &choice["message"]["tool_calls"][0];
    assert_eq!(tc["type"], "function");
    assert!(tc["id"].as_str().is_some_and(|id| id.starts_with("call_")));
    assert_eq!(tc["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(tc["function"]["arguments"].as_str().expect("string"))
        .expect("arguments is a JSON string");
    assert_eq!(args["city"], "San Francisco");
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(
            u["prompt_tokens"].as_u64().unwrap_or(0) + u["completion_tokens"].as_u64().unwrap_or(0)
        )
    );
    assert_eq!(v["retort"]["source"], "model");

    // Content parts in the user message work too.
    let (status, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "retort", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Send an email to Alice Smith about the meeting"}]}],
            "tools": chat_tools()}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "send_email"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_no_call_is_a_stop_message() {
    let s = TestServer::default_double().await;
    let c = client();
    let (status, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "Tell me a joke about penguins"}],
            "tools": chat_tools()}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["tool_calls"].is_null());
    assert!(v["choices"][0]["message"]["content"].is_string());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_choice_none_never_runs_the_model() {
    let counting = Arc::new(Counting::default());
    let s = TestServer::start(counting.clone(), ServerConfig::default()).await;
    let c = client();
    let (status, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}],
            "tools": chat_tools(), "tool_choice": "none"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["tool_calls"].is_null());
    let (status, v) = post(
        &c,
        &s.url("/v1/responses"),
        &json!({"model": "m", "input": "What is the weather in San Francisco?",
            "tools": responses_tools(), "tool_choice": "none"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"][0]["type"], "message");
    let (status, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?",
            "available_functions": [get_weather()], "tool_choice": "none"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["function_name"], Value::Null);
    assert_eq!(
        counting.count(),
        0,
        "tool_choice none must not call the model"
    );
    // auto does run it.
    let (status, _) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "weather in Paris"}],
            "tools": chat_tools()}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(counting.count(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_and_named_tool_choice_are_honoured() {
    let s = TestServer::default_double().await;
    let c = client();
    // No word overlap, but a call is required.
    let (status, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "Tell me a joke about Penguins"}],
            "tools": chat_tools(), "tool_choice": "required"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert!(v["choices"][0]["message"]["tool_calls"][0]["function"]["name"].is_string());
    // Named: the weather prompt, but send_email is forced.
    let (status, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}],
            "tools": chat_tools(),
            "tool_choice": {"type": "function", "function": {"name": "send_email"}},
            "parallel_tool_calls": false}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "send_email");
    // Responses form of a named choice.
    let (status, v) = post(
        &c,
        &s.url("/v1/responses"),
        &json!({"model": "m", "input": "What is the weather in San Francisco?",
            "tools": responses_tools(), "tool_choice": {"type": "function", "name": "send_email"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"][0]["name"], "send_email");
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "name": "send_email"})
    );
    // Naming a function that was not offered is the client's mistake.
    let (status, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": chat_tools(),
            "tool_choice": {"type": "function", "function": {"name": "launch_rocket"}}}),
    )
    .await;
    assert_error(status, &v, 400, "\"launch_rocket\"");
    assert_eq!(v["error"]["param"], "tool_choice");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_returns_function_call_items() {
    let s = TestServer::default_double().await;
    let c = client();
    let (status, v) = post(
        &c,
        &s.url("/v1/responses"),
        &json!({"model": "retort", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "What is the weather in San Francisco?"}]}],
            "tools": responses_tools(), "instructions": "Use tools."}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
    assert!(v["created_at"].is_u64());
    assert_eq!(v["instructions"], "Use tools.");
    let item = &v["output"][0];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "get_weather");
    assert!(
        item["call_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_"))
    );
    assert!(item["id"].as_str().is_some_and(|id| id.starts_with("fc_")));
    let args: Value =
        serde_json::from_str(item["arguments"].as_str().expect("string")).expect("JSON string");
    assert_eq!(args["city"], "San Francisco");
    // A no-call answer is a message item.
    let (status, v) = post(
        &c,
        &s.url("/v1/responses"),
        &json!({"model": "retort", "input": "Tell me a joke about penguins", "tools": responses_tools()}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_model_output_is_a_counted_500() {
    let s = TestServer::start(Arc::new(Broken), ServerConfig::default()).await;
    let c = client();
    let (status, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
    )
    .await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(v["error"]["code"], "invalid_model_output");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains("$.calls[0].arguments.city: wrong type"),
        "{msg}"
    );
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("retort_invalid_outputs_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("retort_errors_total{type=\"server_error\"} 1\n"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics() {
    let s = TestServer::default_double().await;
    let c = client();
    let r = c.get(s.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["status"], "ok");
    let _ = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
    )
    .await;
    let _ = post(&c, &s.url("/tool-call"), &json!({"prompt": ""})).await;
    let r = c.get(s.url("/metrics")).send().await.expect("metrics");
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    let m = r.text().await.expect("text");
    assert!(
        m.contains("retort_http_requests_total{endpoint=\"/tool-call\",status=\"200\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("retort_http_requests_total{endpoint=\"/tool-call\",status=\"400\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("retort_http_request_duration_seconds_count{endpoint=\"/tool-call\"} 2\n"),
        "{m}"
    );
    assert!(m.contains("retort_model_calls_total 1\n"), "{m}");
    assert!(
        m.contains("retort_errors_total{type=\"invalid_request_error\"} 1\n"),
        "{m}"
    );
    assert!(m.contains("retort_fallbacks_total 0\n"), "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_enforced() {
    let cfg = ServerConfig {
        api_key: ApiKey::new("s3cret"),
        ..ServerConfig::default()
    };
    let s = TestServer::start(Arc::new(WordOverlap::default()), cfg).await;
    let c = client();
    let body = json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]});
    let (status, v) = post(&c, &s.url("/tool-call"), &body).await;
    assert_error(status, &v, 401, "missing API key");
    assert_eq!(v["error"]["type"], "authentication_error");
    let r = c
        .post(s.url("/tool-call"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["message"],
        "invalid API key"
    );
    let r = c
        .post(s.url("/tool-call"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    // /healthz stays open for probes; /metrics does not.
    let r = c.get(s.url("/healthz")).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    let r = c.get(s.url("/metrics")).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_are_json() {
    let s = TestServer::default_double().await;
    let c = client();
    let (status, v) = post(&c, &s.url("/v1/embeddings"), &json!({})).await;
    assert_error(status, &v, 404, "no such endpoint");
    let r = c.get(s.url("/tool-call")).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.expect("405 body is JSON");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("GET")),
        "{v}"
    );
    s.stop().await;
}

/// A model that panics gets a 500 naming the bug, and the server goes on
/// answering with the same threads (more panics than threads first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_model_gets_a_500_and_the_server_goes_on() {
    let s = TestServer::start(Arc::new(Panicking), ServerConfig::default()).await;
    let c = client();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..threads + 2 {
        let (status, v) = post(
            &c,
            &s.url("/tool-call"),
            &json!({"prompt": "panic about the weather", "available_functions": [get_weather()]}),
        )
        .await;
        assert_eq!(status, 500, "{v}");
        assert_eq!(v["error"]["code"], "model_panic");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("this is a bug in retort"), "{v}");
    }
    let (status, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["parameters"]["city"], "San Francisco");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_calls_are_limited_to_the_configured_concurrency() {
    let gauge = Arc::new(Gauge {
        sleep_ms: 40,
        ..Gauge::default()
    });
    let cfg = ServerConfig {
        max_concurrent_calls: 2,
        ..ServerConfig::default()
    };
    let s = TestServer::start(gauge.clone(), cfg).await;
    let c = client();
    let body = json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]});
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, url, body) = (c.clone(), s.url("/tool-call"), body.clone());
        tasks.push(tokio::spawn(async move { post(&c, &url, &body).await }));
    }
    for t in tasks {
        let (status, v) = t.await.expect("task");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["parameters"]["city"], "San Francisco");
    }
    let peak = gauge.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&peak), "peak concurrency {peak}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let mut s = TestServer::start(
        Arc::new(Slow(std::time::Duration::from_millis(300))),
        ServerConfig::default(),
    )
    .await;
    let c = client();
    let url = s.url("/tool-call");
    let body = json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]});
    let in_flight = tokio::spawn({
        let c = c.clone();
        async move { post(&c, &url, &body).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.begin_shutdown();
    let (status, v) = in_flight.await.expect("task");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["function_name"], "get_weather");
    let base = s.base.clone();
    s.stop().await;
    // Nothing listens any more.
    assert!(
        client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}
