//! Drives the real `retort train` binary on a tiny model: a run stopped by
//! `--stop-at-step` and continued with `--resume` ends with the same weights
//! as an unbroken run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Eight single-call examples over two tools, as JSONL.
fn examples(path: &Path) {
    let tools = json!([
        {"name": "get_weather", "description": "Current weather for a city",
         "parameters": {"type": "object",
           "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "add", "description": "Add two integers",
         "parameters": {"type": "object",
           "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
           "required": ["a", "b"]}}
    ]);
    let mut lines = Vec::new();
    for (i, city) in ["Paris", "Oslo", "Rome", "Lima"].iter().enumerate() {
        lines.push(json!({"id": format!("w{i}"), "source": "test",
            "query": format!("What is the weather in {city}?"), "tools": tools,
            "calls": [{"name": "get_weather", "arguments": {"city": city}}]}));
        lines.push(json!({"id": format!("a{i}"), "source": "test",
            "query": format!("Add {} and {}", i + 2, i + 5), "tools": tools,
            "calls": [{"name": "add", "arguments": {"a": i + 2, "b": i + 5}}]}));
    }
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(path, text.join("\n")).expect("write examples");
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let out_s = out.to_string_lossy().into_owned();
    let data_s = data.to_string_lossy().into_owned();
    let minilm = root().join("models").to_string_lossy().into_owned();
    let mut args = vec![
        "train",
        "--train",
        &data_s,
        "--val",
        &data_s,
        "--out",
        &out_s,
        "--minilm",
        &minilm,
        "--tiny",
        "--batch-size",
        "4",
        "--lr",
        "0.01",
        "--warmup",
        "1",
        "--max-steps",
        "4",
        "--epochs",
        "2",
        "--checkpoint-every",
        "0",
        "--val-decode-limit",
        "0",
        "--gen-vocab-size",
        "64",
    ];
    args.extend_from_slice(extra);
    retort(&args)
}

/// Run the retort binary; it must succeed.
fn retort<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(args)
        .output()
        .expect("run retort");
    assert!(
        o.status.success(),
        "retort {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A temporary folder with the examples (`d.jsonl`) and a tiny model
/// trained on them (`a/`); `None` (test skipped) without the tokenizer.
fn trained_tiny_model() -> Option<(tempfile::TempDir, PathBuf)> {
    if !root().join("models/tokenizer.json").is_file() {
        eprintln!("skipped: no models/tokenizer.json");
        return None;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("d.jsonl");
    examples(&data);
    train(&data, &dir.path().join("a"), &[]);
    Some((dir, data))
}

#[test]
fn stop_at_step_then_resume_matches_an_unbroken_run() {
    let Some((dir, data)) = trained_tiny_model() else {
        return;
    };
    let b = dir.path().join("b");
    train(&data, &b, &["--stop-at-step", "2"]);
    let state: Value = serde_json::from_slice(
        &std::fs::read(b.join("checkpoint/state.json")).expect("checkpoint state"),
    )
    .expect("state json");
    assert_eq!(state[0]["step"], 2, "stopped at step 2: {state}");
    train(&data, &b, &["--resume"]);
    let wa = std::fs::read(dir.path().join("a/final/model.safetensors")).expect("a");
    let wb = std::fs::read(b.join("final/model.safetensors")).expect("b");
    assert!(wa == wb, "resumed run differs from the unbroken run");
}

/// `--export` with decoding and rendering flags writes a model directory
/// whose config carries the given values and the rest of --init's config,
/// and `--eval-only` accepts the same flags.
#[test]
fn export_stores_the_given_decoding_and_rendering_settings() {
    let Some((dir, data)) = trained_tiny_model() else {
        return;
    };
    let init = dir.path().join("a/final");
    let exported = dir.path().join("e");
    let flags = [
        "--tool-desc-tokens",
        "8",
        "--param-desc-tokens",
        "1",
        "--decode",
        "overlap_bias=2.5",
        "--decode",
        "contiguous_copy=true",
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "train".into(),
            "--val".into(),
            data.to_string_lossy().into_owned(),
            "--init".into(),
            init.to_string_lossy().into_owned(),
            "--limit-train".into(),
            "8".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(flags.iter().map(|s| s.to_string()));
        String::from_utf8_lossy(&retort(&args).stdout).into_owned()
    };
    let out = run(&["--eval-only"]);
    assert!(out.contains("exact-call accuracy"), "{out}");
    run(&["--export", &exported.to_string_lossy()]);
    let read = |p: PathBuf| -> Value {
        serde_json::from_slice(&std::fs::read(p).expect("config")).expect("config json")
    };
    let before = read(init.join("config.json"));
    let after = read(exported.join("config.json"));
    assert_eq!(after["tool_desc_tokens"], 8);
    assert_eq!(after["param_desc_tokens"], 1);
    assert_eq!(after["decode"]["overlap_bias"], 2.5);
    assert_eq!(after["decode"]["contiguous_copy"], true);
    assert_eq!(after["hidden"], before["hidden"]);
    assert_eq!(after["gen_vocab"], before["gen_vocab"]);
    assert_ne!(
        before["tool_desc_tokens"], 8,
        "the tiny model's default differs"
    );
}
