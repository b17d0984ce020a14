//! Property test: 1,000 randomly mutated request bodies (seeded, so the run
//! is deterministic) always get a JSON 2xx or 4xx answer, never a 5xx, and
//! the server stays up.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

const CASES: usize = 1000;
const SEED: u64 = 0x5eed_7001;

/// `RETORT_FUZZ_SEED` / `RETORT_FUZZ_CASES` override the fixed seed and count
/// for exploratory runs; the default run is always the same.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeds() -> Vec<(&'static str, Value)> {
    let schema_tool = json!({"name": "book_flight", "description": "Book a flight between two cities",
        "parameters": {"type": "object", "properties": {
            "from": {"type": "string", "minLength": 2, "maxLength": 40},
            "to": {"type": "string"},
            "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
            "class": {"type": "string", "enum": ["economy", "business"]},
            "price": {"type": "number", "minimum": 0.5},
            "flexible": {"type": "boolean"},
            "dates": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "meta": {"type": "object", "properties": {"seat": {"type": "string"}}, "required": ["seat"]}
        }, "required": ["from", "to", "passengers", "class", "price", "dates", "meta"]}});
    vec![
        (
            "/tool-call",
            json!({"prompt": "What is the weather in San Francisco?",
                "available_functions": [get_weather(), send_email()], "max_tokens": 64}),
        ),
        (
            "/tool-call",
            json!({"prompt": "Book a flight from New York to Paris", "available_functions": [schema_tool.clone()],
                "tool_choice": "required"}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "retort", "messages": [{"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "Book a flight from Berlin to Rome"}]}],
                "tools": [{"type": "function", "function": schema_tool.clone()}, {"type": "function", "function": get_weather()}],
                "tool_choice": "auto", "parallel_tool_calls": false}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "retort", "messages": [{"role": "user", "content": "Email Bob Jones the report"}],
                "tools": chat_tools(), "tool_choice": {"type": "function", "function": {"name": "send_email"}}}),
        ),
        (
            "/v1/responses",
            json!({"model": "retort", "input": [{"role": "user", "content": "What is the weather in Oslo?"}],
                "tools": responses_tools(), "tool_choice": "required", "instructions": "x"}),
        ),
        (
            "/v1/responses",
            json!({"model": "retort", "input": "Book a flight from Lima to Quito",
                "tools": [{"type": "function", "name": "book_flight", "description": "Book a flight",
                    "parameters": schema_tool["parameters"].clone()}]}),
        ),
    ]
}

fn random_value(rng: &mut ChaCha8Rng, depth: usize) -> Value {
    let pick = if depth > 2 {
        rng.random_range(0..7)
    } else {
        rng.random_range(0..10)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => Value::from(rng.random_range(-1_000_000i64..1_000_000)),
        3 => Value::from(rng.random_range(-1e6f64..1e6)),
        4 => Value::from(
            [
                "",
                " ",
                "object",
                "string",
                "integer",
                "dict",
                "$ref",
                "enum",
                "none",
                "required",
                "user",
                "function",
                "\u{0}",
                "é",
                "San Francisco",
            ][rng.random_range(0..15)],
        ),
        5 => Value::from(u64::MAX),
        6 => Value::from(1e300),
        7 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "type",
                "properties",
                "required",
                "enum",
                "name",
                "items",
                "minimum",
                "maxLength",
                "role",
                "content",
                "function",
                "parameters",
                "x",
            ];
            let mut m = Map::new();
            for _ in 0..rng.random_range(0..4) {
                m.insert(
                    keys[rng.random_range(0..keys.len())].to_string(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// JSON pointers of every node of `v`.
fn pointers(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(
                    x,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(prefix);
}

/// A random node of `v` (the root included).
fn random_node<'a>(rng: &mut ChaCha8Rng, v: &'a mut Value) -> Option<&'a mut Value> {
    let mut ptrs = Vec::new();
    pointers(v, String::new(), &mut ptrs);
    let p = ptrs[rng.random_range(0..ptrs.len())].clone();
    v.pointer_mut(&p)
}

fn mutate_json(rng: &mut ChaCha8Rng, mut v: Value) -> Value {
    for _ in 0..rng.random_range(1..4) {
        let Some(node) = random_node(rng, &mut v) else {
            continue;
        };
        match rng.random_range(0..5) {
            0 => *node = random_value(rng, 0),
            1 => {
                if let Value::Object(m) = node
                    && !m.is_empty()
                {
                    let k = rng.random_range(0..m.len());
                    if let Some(key) = m.keys().nth(k).cloned() {
                        m.remove(&key);
                    }
                }
            }
            2 => {
                if let Value::Object(m) = node {
                    let v = random_value(rng, 1);
                    m.insert(
                        [
                            "type",
                            "enum",
                            "required",
                            "stream",
                            "tool_choice",
                            "$ref",
                            "minItems",
                        ][rng.random_range(0..7)]
                        .to_string(),
                        v,
                    );
                }
            }
            3 => {
                if let Value::Array(a) = node
                    && !a.is_empty()
                {
                    let i = rng.random_range(0..a.len());
                    let dup = a[i].clone();
                    a.push(dup);
                }
            }
            _ => {
                if let Value::String(s) = node {
                    *s = [
                        "", "  ", "OBJECT", "number", "tuple", "any", "none", "required",
                    ][rng.random_range(0..8)]
                    .to_string();
                }
            }
        }
    }
    v
}

fn mutate_bytes(rng: &mut ChaCha8Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..6) {
        if b.is_empty() {
            b.push(b'{');
        }
        let i = rng.random_range(0..b.len());
        match rng.random_range(0..5) {
            0 => b[i] = rng.random(),
            1 => {
                let j = (i + rng.random_range(1..16)).min(b.len());
                b.drain(i..j);
            }
            2 => {
                let tok = [
                    &b"\xff\xfe"[..],
                    b"null",
                    b"{",
                    b"]",
                    b"\"",
                    b",",
                    b"\\u0000",
                    b"1e999",
                ][rng.random_range(0..8)];
                b.splice(i..i, tok.iter().copied());
            }
            3 => b.truncate(i),
            _ => {
                let j = (i + rng.random_range(1..32)).min(b.len());
                let chunk = b[i..j].to_vec();
                b.splice(j..j, chunk);
            }
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_bodies_never_get_5xx() {
    let s = TestServer::default_double().await;
    let c = client();
    let seeds = seeds();
    let seed = env_or("RETORT_FUZZ_SEED", SEED);
    let cases = env_or("RETORT_FUZZ_CASES", CASES as u64) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut ok, mut client_err) = (0usize, 0usize);
    for case in 0..cases {
        let (ep, seed) = &seeds[rng.random_range(0..seeds.len())];
        // Sometimes send the body to another endpoint than its own.
        let ep = if rng.random_range(0..10) == 0 {
            seeds[rng.random_range(0..seeds.len())].0
        } else {
            ep
        };
        let body = if rng.random_range(0..2) == 0 {
            mutate_json(&mut rng, seed.clone()).to_string().into_bytes()
        } else {
            mutate_bytes(&mut rng, seed.to_string().into_bytes())
        };
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(400)
            .collect::<String>();
        let (status, v) = post_raw(&c, &s.url(ep), body).await;
        assert!(
            status < 500,
            "case {case}: {ep} answered {status}: {v}\nbody: {shown}"
        );
        if (400..500).contains(&status) {
            client_err += 1;
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "case {case}: 4xx without error.message: {v}"
            );
        } else {
            assert_eq!(status, 200, "case {case}: {v}");
            ok += 1;
        }
    }
    eprintln!(
        "seed {seed:#x}: {cases} mutated bodies: {ok} answered 200, {client_err} answered 4xx"
    );
    // Both outcomes occur: the mutations are neither all fatal nor all harmless.
    assert!(
        cases < 1000 || (ok > 50 && client_err > 50),
        "ok {ok}, 4xx {client_err}"
    );
    let r = c.get(s.url("/healthz")).send().await.expect("still up");
    assert_eq!(r.status().as_u16(), 200);
    s.stop().await;
}
