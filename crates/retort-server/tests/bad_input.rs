//! Every client mistake is a 4xx JSON error that names the problem.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use retort_server::ServerConfig;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies() {
    let s = TestServer::default_double().await;
    let c = client();
    for ep in ["/tool-call", "/v1/chat/completions", "/v1/responses"] {
        let url = s.url(ep);
        let (st, v) = post_raw(&c, &url, b"{\"prompt\": ".to_vec()).await;
        assert_error(st, &v, 400, "malformed JSON");
        assert_eq!(v["error"]["code"], "invalid_json");
        let (st, v) = post_raw(&c, &url, b"".to_vec()).await;
        assert_error(st, &v, 400, "request body is empty");
        let (st, v) = post_raw(&c, &url, b"[1, 2]".to_vec()).await;
        assert_error(st, &v, 400, "must be a JSON object, got array");
        let (st, v) = post_raw(&c, &url, b"{\"prompt\": \"caf\xe9\"}".to_vec()).await;
        assert_error(st, &v, 400, "not valid UTF-8");
        let mut deep = "[".repeat(10_000);
        deep.push_str(&"]".repeat(10_000));
        let (st, v) = post_raw(&c, &url, deep.into_bytes()).await;
        assert_eq!(st, 400, "{v}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_mistyped_fields() {
    let s = TestServer::default_double().await;
    let c = client();
    let tc = s.url("/tool-call");
    let cases = [
        (
            json!({"available_functions": [get_weather()]}),
            "missing required field 'prompt'",
        ),
        (
            json!({"prompt": "hi"}),
            "missing required field 'available_functions'",
        ),
        (
            json!({"prompt": 5, "available_functions": []}),
            "'prompt' must be a string, got number",
        ),
        (
            json!({"prompt": "   ", "available_functions": [get_weather()]}),
            "'prompt' must not be empty",
        ),
        (
            json!({"prompt": "hi", "available_functions": "get_weather"}),
            "'available_functions' must be an array",
        ),
        (
            json!({"prompt": "hi", "available_functions": [get_weather()], "max_tokens": 0}),
            "'max_tokens' must be an integer >= 1",
        ),
        (
            json!({"prompt": "hi", "available_functions": [get_weather()], "max_tokens": "many"}),
            "'max_tokens' must be an integer >= 1, got string",
        ),
        (
            json!({"prompt": "hi", "available_functions": [{"description": "no name"}]}),
            "has no \"name\"",
        ),
    ];
    for (body, needle) in cases {
        let (st, v) = post(&c, &tc, &body).await;
        assert_error(st, &v, 400, needle);
    }
    let chat = s.url("/v1/chat/completions");
    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "missing required field 'model'",
        ),
        (json!({"model": "m"}), "missing required field 'messages'"),
        (
            json!({"model": "m", "messages": []}),
            "'messages' must not be empty",
        ),
        (
            json!({"model": "m", "messages": {"role": "user"}}),
            "'messages' must be an array",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user"}]}),
            "missing required field 'messages[0].content'",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 7}]}),
            "'messages[0].content' must be a string or an array of content parts",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": ""}]}),
            "'messages[0].content' must not be empty",
        ),
        (
            json!({"model": "m", "messages": [{"role": "system", "content": "x"}]}),
            "no user message",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": {"a": 1}}),
            "'tools' must be an array, got object",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": chat_tools(), "tool_choice": "maybe"}),
            "'tool_choice' must be",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}),
            "no tools were offered",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": chat_tools(), "parallel_tool_calls": "yes"}),
            "'parallel_tool_calls' must be a boolean, got string",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
            "'stream' is not supported",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "functions": []}),
            "use 'tools'",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "code_interpreter"}]}),
            "unsupported tool type \"code_interpreter\"",
        ),
    ];
    for (body, needle) in cases {
        let (st, v) = post(&c, &chat, &body).await;
        assert_error(st, &v, 400, needle);
    }
    let resp = s.url("/v1/responses");
    let cases = [
        (json!({"model": "m"}), "missing required field 'input'"),
        (
            json!({"model": "m", "input": 3}),
            "'input' must be a string or an array",
        ),
        (
            json!({"model": "m", "input": ""}),
            "'input' must not be empty",
        ),
        (
            json!({"model": "m", "input": "hi", "stream": true}),
            "'stream' is not supported",
        ),
        (
            json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
            "keeps no conversation state",
        ),
        (
            json!({"model": "m", "input": [{"type": "computer_call"}]}),
            "unsupported input item type \"computer_call\"",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}),
            "unsupported tool type \"web_search\"",
        ),
    ];
    for (body, needle) in cases {
        let (st, v) = post(&c, &resp, &body).await;
        assert_error(st, &v, 400, needle);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_schemas_are_named() {
    let s = TestServer::default_double().await;
    let c = client();
    let tool = |props: Value| json!({"name": "f", "description": "d", "parameters": {"type": "object", "properties": props}});
    let cases = [
        (
            tool(json!({"x": {"type": "strnig"}})),
            "$.properties.x: unknown type \"strnig\"",
        ),
        (
            tool(json!({"x": {"type": "string", "enum": []}})),
            "$.properties.x: invalid value for \"enum\": must not be empty",
        ),
        (
            tool(json!({"x": {"type": "string", "enum": "abc"}})),
            "invalid value for \"enum\": must be an array",
        ),
        (
            tool(json!({"x": {"type": "integer", "enum": ["one", "two"]}})),
            "$.properties.x: enum member \"one\" does not fit the schema",
        ),
        (
            tool(json!({"x": {"$ref": "#/properties/x"}})),
            "$.properties.x: unsupported schema keyword \"$ref\"",
        ),
        (
            tool(json!({"x": {"anyOf": [{"type": "string"}]}})),
            "unsupported schema keyword \"anyOf\"",
        ),
        (
            json!({"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["x"]}}),
            "required property \"x\" is not declared",
        ),
        (
            json!({"name": "f", "parameters": {"type": "string"}}),
            "parameters must be an object schema",
        ),
        (
            tool(json!({"x": {"type": "string", "minLength": 9, "maxLength": 3}})),
            "minLength 9 is greater than maxLength 3",
        ),
    ];
    for (t, needle) in cases {
        let (st, v) = post(
            &c,
            &s.url("/tool-call"),
            &json!({"prompt": "hi", "available_functions": [t.clone()]}),
        )
        .await;
        assert_error(st, &v, 400, needle);
        assert_eq!(v["error"]["param"], "available_functions");
        let (st, v) = post(
            &c,
            &s.url("/v1/chat/completions"),
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": t.clone()}]}),
        )
        .await;
        assert_error(st, &v, 400, needle);
        assert_eq!(v["error"]["param"], "tools[0]");
    }
    // Duplicate names and too many tools.
    let (st, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "hi", "available_functions": [get_weather(), get_weather()]}),
    )
    .await;
    assert_error(st, &v, 400, "duplicate tool name \"get_weather\"");
    let many: Vec<Value> = (0..257)
        .map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}}))
        .collect();
    let (st, v) = post(
        &c,
        &s.url("/v1/chat/completions"),
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": many}),
    )
    .await;
    assert_error(st, &v, 400, "too many tools: 257 (the limit is 256)");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_json() {
    let s = TestServer::default_double().await;
    let c = client();
    // 10 MB: a prompt of 10 million characters.
    let big =
        json!({"prompt": "a".repeat(10 * 1000 * 1000), "available_functions": [get_weather()]});
    for ep in ["/tool-call", "/v1/chat/completions", "/v1/responses"] {
        let (st, v) = post(&c, &s.url(ep), &big).await;
        assert_error(st, &v, 413, "too large");
        assert_eq!(v["error"]["code"], "body_too_large");
    }
    s.stop().await;

    // The limit is configurable.
    let cfg = ServerConfig {
        max_body_bytes: 1000,
        ..ServerConfig::default()
    };
    let s = TestServer::start(Arc::new(WordOverlap::default()), cfg).await;
    let body = json!({"prompt": "x".repeat(2000), "available_functions": [get_weather()]});
    let (st, v) = post(&c, &s.url("/tool-call"), &body).await;
    assert_error(st, &v, 413, "too large");
    let small =
        json!({"prompt": "What is the weather in Rome?", "available_functions": [get_weather()]});
    let (st, v) = post(&c, &s.url("/tool-call"), &small).await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_json() {
    let cfg = ServerConfig {
        timeout: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let s = TestServer::start(Arc::new(Slow(Duration::from_millis(600))), cfg).await;
    let c = client();
    let (st, v) = post(
        &c,
        &s.url("/tool-call"),
        &json!({"prompt": "What is the weather in San Francisco?", "available_functions": [get_weather()]}),
    )
    .await;
    assert_error(st, &v, 408, "time limit");
    assert_eq!(v["error"]["type"], "timeout_error");
    s.stop().await;
}
