//! The `serve`, `call` and `bench` command lines: bad input ends with a
//! non-zero exit and a message naming the file or flag and the problem.

use std::process::{Command, Output};

fn retort(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(args)
        .env_remove("RETORT_API_KEY")
        .env_remove("RETORT_BFCL_DIR")
        .env("RUST_LOG", "error")
        .output()
        .expect("retort runs")
}

fn fails_with(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    for n in needles {
        assert!(
            stderr.contains(n),
            "stderr {stderr:?} does not contain {n:?}"
        );
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn call_names_a_missing_tools_file() {
    let out = retort(&["call", "hi", "--tools", "/nonexistent/tools.json"]);
    fails_with(&out, &["cannot read tools file /nonexistent/tools.json"]);
}

#[test]
fn call_names_bad_json_and_bad_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_json = write(&dir, "bad.json", "[{\"name\": ");
    fails_with(
        &retort(&["call", "hi", "--tools", &bad_json]),
        &[&bad_json, "is not valid JSON"],
    );
    let bad_type = write(
        &dir,
        "type.json",
        r#"[{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "wat"}}}}]"#,
    );
    fails_with(
        &retort(&["call", "hi", "--tools", &bad_type]),
        &[&bad_type, "$.properties.x: unknown type \"wat\""],
    );
    let bad_enum = write(
        &dir,
        "enum.json",
        r#"[{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer", "enum": ["a"]}}}}]"#,
    );
    fails_with(
        &retort(&["call", "hi", "--tools", &bad_enum]),
        &[&bad_enum, "enum member \"a\" does not fit"],
    );
}

#[test]
fn call_checks_tool_choice_and_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = write(
        &dir,
        "tools.json",
        r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#,
    );
    fails_with(
        &retort(&[
            "call",
            "weather?",
            "--tools",
            &tools,
            "--tool-choice",
            "launch_rocket",
        ]),
        &["--tool-choice", "\"launch_rocket\""],
    );
    fails_with(
        &retort(&["call", "  ", "--tools", &tools]),
        &["prompt is empty"],
    );
    // tool_choice none needs no model: no call, printed as JSON.
    let out = retort(&[
        "call",
        "weather in Paris?",
        "--tools",
        &tools,
        "--tool-choice",
        "none",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v, serde_json::json!({"calls": [], "confidence": 1.0}));
}

#[test]
fn serve_refuses_bad_settings() {
    fails_with(
        &retort(&[
            "serve",
            "--fallback-url",
            "http://127.0.0.1:9/v1",
            "--fallback-threshold",
            "1.5",
        ]),
        &["--fallback-threshold must be between 0 and 1"],
    );
    // The URL without a threshold is a usage error.
    let out = retort(&["serve", "--fallback-url", "http://127.0.0.1:9/v1"]);
    assert!(!out.status.success());
    fails_with(
        &retort(&["serve", "--addr", "not-an-address"]),
        &["not-an-address"],
    );
    fails_with(
        &retort(&["serve", "--model", "/nonexistent/model-dir"]),
        &["error:"],
    );
}

#[test]
fn bench_names_missing_data() {
    fails_with(&retort(&["bench"]), &["--bfcl"]);
    fails_with(
        &retort(&["bench", "--bfcl", "/nonexistent/bfcl"]),
        &["/nonexistent/bfcl/BFCL_v4_simple_python.json"],
    );
}

#[test]
fn api_keys_stay_hidden() {
    let out = Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(["serve", "--help"])
        .env("RETORT_API_KEY", "sk-super-secret-42")
        .output()
        .expect("retort runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--api-key"), "{help}");
    assert!(!help.contains("sk-super-secret-42"), "{help}");
    fails_with(
        &retort(&["serve", "--api-key", " "]),
        &["the API key is empty"],
    );
    // A failing start never echoes the key.
    let out = retort(&[
        "serve",
        "--api-key",
        "sk-super-secret-42",
        "--model",
        "/nonexistent/m",
    ]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sk-super-secret-42"));
}

/// `--decode` names an unknown rule and lists the known ones, before any
/// model is loaded, in every command that takes it.
#[test]
fn decode_refuses_unknown_rules_and_bad_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = write(&dir, "tools.json", "[]");
    let data = dir.path().display().to_string();
    for cmd in [
        vec!["call", "hi", "--tools", &tools],
        vec!["serve"],
        vec!["bench", "--bfcl", &data],
        vec!["eval", "bfcl", "--data", &data],
        vec!["train", "--val", &tools, "--init", &data, "--eval-only"],
    ] {
        let mut args = cmd.clone();
        args.extend(["--decode", "copy_bias=1"]);
        fails_with(
            &retort(&args),
            &["copy_bias", "contiguous_copy", "later_overlap_bias"],
        );
        let mut args = cmd.clone();
        args.extend(["--decode", "contiguous_copy=1"]);
        fails_with(&retort(&args), &["contiguous_copy", "true|false"]);
        let mut args = cmd;
        args.extend(["--decode", "overlap_bias"]);
        fails_with(&retort(&args), &["KEY=VALUE"]);
    }
    let help = retort(&["train", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--decode <KEY=VALUE>"), "{text}");
    assert!(text.contains("later_overlap_bias=NUMBER"), "{text}");
    assert!(!text.contains("--refusal-bias"), "{text}");
}
