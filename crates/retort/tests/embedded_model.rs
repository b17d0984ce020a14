//! End-to-end tests of the shipped default model: the real binary, the model
//! compiled in from `models/`, and the real HTTP server on a loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retort"));
    c.env_remove("RETORT_API_KEY").env("RUST_LOG", "warn");
    c
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "units": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature units"}
        }, "required": ["city"]}}}])
}

/// `retort call PROMPT --tools FILE` with the embedded model: its JSON
/// answer, after checking it exits 0.
fn call(prompt: &str, tools: &Value) -> Value {
    call_with(prompt, tools, &[])
}

/// [`call`] with further arguments (`--decode KEY=VALUE`, ...).
fn call_with(prompt: &str, tools: &Value, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tools.json");
    std::fs::write(&path, tools.to_string()).expect("write");
    let out = bin()
        .args(["call", prompt, "--tools"])
        .arg(&path)
        .args(extra)
        .output()
        .expect("retort runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Does this build carry a default model? (`retort info` without --model.)
fn has_embedded_model() -> bool {
    let out = bin().arg("info").output().expect("retort runs");
    if !out.status.success() {
        eprintln!(
            "SKIPPED: no embedded model in this build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

#[test]
fn call_answers_the_seed_example_with_the_embedded_model() {
    if !has_embedded_model() {
        return;
    }
    let v = call("What is the weather in San Francisco?", &weather_tools());
    assert_eq!(v["calls"][0]["name"], "get_weather", "{v}");
    assert_eq!(v["calls"][0]["arguments"]["city"], "San Francisco", "{v}");
    let c = v["confidence"].as_f64().expect("confidence");
    assert!((0.0..=1.0).contains(&c), "{v}");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn post(port: u16, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).expect("status line");
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut rest = String::new();
    r.read_to_string(&mut rest).expect("body");
    (code, serde_json::from_str(&rest).expect("JSON body"))
}

#[test]
fn server_answers_with_the_embedded_model() {
    if !has_embedded_model() {
        return;
    }
    let port = free_port();
    let child = bin()
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let _server = Server(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let tools: Vec<Value> = weather_tools()
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["function"].clone())
        .collect();
    // The seed contract.
    let (code, v) = post(
        port,
        "/tool-call",
        &json!({"prompt": "What is the weather in San Francisco?",
                "available_functions": tools, "max_tokens": 64}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["function_name"], "get_weather", "{v}");
    assert_eq!(v["parameters"]["city"], "San Francisco", "{v}");
    // OpenAI chat completions; tool_choice none never calls.
    let req = json!({"model": "retort", "tools": weather_tools(),
        "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}]});
    let (code, v) = post(port, "/v1/chat/completions", &req);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather", "{v}");
    let args: Value =
        serde_json::from_str(call["arguments"].as_str().expect("arguments string")).expect("JSON");
    assert_eq!(args["city"], "San Francisco", "{v}");
    let mut none = req.clone();
    none["tool_choice"] = json!("none");
    let (code, v) = post(port, "/v1/chat/completions", &none);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    // Bad input from the client is a 4xx with a JSON error.
    let (code, v) = post(
        port,
        "/tool-call",
        &json!({"prompt": "", "available_functions": tools}),
    );
    assert!((400..500).contains(&code), "{code} {v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

/// `retort info` names the shipped model's parameter budget and how its
/// encoder products run on this CPU.
#[test]
fn info_describes_the_embedded_model() {
    if !has_embedded_model() {
        return;
    }
    let out = bin().arg("info").output().expect("retort runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(budget 26,500,000)"), "{text}");
    let products = text
        .lines()
        .find(|l| l.starts_with("encoder products: "))
        .unwrap_or_else(|| panic!("no products line: {text}"));
    assert!(products.contains("int8 weights"), "{products}");
    if retort_model::qgemm::eight_bit_fast() {
        assert!(
            products.contains("8-bit activations into attention, ffn_in"),
            "{products}"
        );
    } else {
        assert!(products.contains("need AVX-512 VNNI"), "{products}");
    }
}

/// `retort eval val` scores a validation file with the embedded model and
/// writes `exact_pct` overall and per gold shape; a bad `--decode` key is a
/// clear error.
#[test]
fn eval_val_reports_exact_pct_by_category() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = json!([{"name": "get_weather", "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"]}}]);
    let lines = [
        json!({"id": "a", "source": "test", "query": "What is the weather in Paris?",
               "tools": tools, "calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}),
        json!({"id": "b", "source": "test", "query": "Tell me a joke about cats",
               "tools": tools, "calls": []}),
    ];
    let data = dir.path().join("val.jsonl");
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&data, text.join("\n")).expect("write");
    let json_out = dir.path().join("val.json");
    let fails = dir.path().join("fails.jsonl");
    let out = bin()
        .args(["eval", "val", "--data"])
        .arg(&data)
        .arg("--json")
        .arg(&json_out)
        .arg("--failures")
        .arg(&fails)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).expect("json")).expect("parse");
    assert_eq!(rep["n"], 2);
    let exact = rep["exact"].as_u64().expect("exact");
    let pct = rep["exact_pct"].as_f64().expect("exact_pct");
    assert!((pct - 50.0 * exact as f64).abs() < 1e-9, "{rep}");
    for shape in ["single", "no_call"] {
        assert_eq!(rep["categories"][shape]["n"], 1, "{rep}");
        assert!(rep["categories"][shape]["exact_pct"].is_number(), "{rep}");
    }
    let failed = std::fs::read_to_string(&fails).expect("failures");
    assert_eq!(failed.lines().count() as u64, 2 - exact);
    let bad = bin()
        .args(["eval", "val", "--data"])
        .arg(&data)
        .args(["--decode", "no_such_rule=1"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no_such_rule"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
