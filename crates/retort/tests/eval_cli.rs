//! `retort eval bfcl` end to end, on a tiny BFCL-shaped directory.

use std::path::Path;
use std::process::Command;

fn retort() -> Command {
    Command::new(env!("CARGO_BIN_EXE_retort"))
}

/// Two categories of BFCL's shape, one entry each, written by the test.
fn tiny_bfcl(dir: &Path) {
    std::fs::create_dir_all(dir.join("possible_answer")).expect("mkdir");
    std::fs::write(
        dir.join("BFCL_v4_parallel.json"),
        concat!(
            r#"{"id": "parallel_0", "question": [[{"role": "user", "content": "weather in Paris and Rome"}]], "#,
            r#""function": [{"name": "weather.get", "description": "Weather", "parameters": {"type": "dict", "#,
            r#""properties": {"city": {"type": "string", "description": "c"}, "days": {"type": "integer", "description": "d"}}, "required": ["city"]}}]}"#,
            "\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("possible_answer/BFCL_v4_parallel.json"),
        concat!(
            r#"{"id": "parallel_0", "ground_truth": [{"weather.get": {"city": ["Paris"], "days": ["", 1]}}, "#,
            r#"{"weather.get": {"city": ["Rome"], "days": ["", 1]}}]}"#,
            "\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("BFCL_v4_irrelevance.json"),
        concat!(
            r#"{"id": "irrelevance_0", "question": [[{"role": "user", "content": "tell me a joke"}]], "#,
            r#""function": [{"name": "weather.get", "description": "Weather", "parameters": {"type": "dict", "#,
            r#""properties": {"city": {"type": "string", "description": "c"}}, "required": ["city"]}}]}"#,
            "\n"
        ),
    )
    .expect("write");
}

#[test]
fn gold_run_writes_table_json_failures_and_chart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("bfcl");
    tiny_bfcl(&data);
    let json = tmp.path().join("report.json");
    let failures = tmp.path().join("failures.jsonl");
    let chart = tmp.path().join("chart.svg");
    let out = retort()
        .args([
            "eval",
            "bfcl",
            "--gold",
            "--categories",
            "parallel,irrelevance",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--json")
        .arg(&json)
        .arg("--failures")
        .arg(&failures)
        .arg("--chart")
        .arg(&chart)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("parallel"), "{stdout}");
    assert!(stdout.contains("100.00"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    assert_eq!(report["categories"][0]["category"], "parallel");
    assert_eq!(report["categories"][0]["correct"], 1);
    assert_eq!(report["aggregates"]["irrelevance"], 100.0);
    assert_eq!(
        std::fs::read_to_string(&failures).expect("failures written"),
        ""
    );
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.contains("<svg") && svg.contains("FunctionGemma-270M"));
}

#[test]
fn predictions_are_scored_with_reasons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("bfcl");
    tiny_bfcl(&data);
    let preds = tmp.path().join("preds.jsonl");
    // Parallel: swapped order passes... but a float for the integer `days`
    // fails; irrelevance: a call fails.
    std::fs::write(
        &preds,
        concat!(
            r#"{"id": "parallel_0", "calls": [{"name": "weather_get", "arguments": {"city": "rome"}}, "#,
            r#"{"name": "weather.get", "arguments": {"city": "Paris", "days": 1.0}}]}"#,
            "\n",
            r#"{"id": "irrelevance_0", "calls": [{"name": "weather.get", "arguments": {"city": "x"}}]}"#,
            "\n"
        ),
    )
    .expect("write");
    let failures = tmp.path().join("failures.jsonl");
    let out = retort()
        .args(["eval", "bfcl", "--categories", "parallel,irrelevance"])
        .arg("--data")
        .arg(&data)
        .arg("--predictions")
        .arg(&preds)
        .arg("--failures")
        .arg(&failures)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&failures)
        .expect("failures written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "parallel_0");
    assert_eq!(lines[0]["reason"], "wrong_type");
    assert_eq!(lines[0]["got"][1]["arguments"]["days"], 1.0);
    assert!(lines[0]["expected"].is_array());
    assert_eq!(lines[1]["reason"], "unexpected_call");

    // Fixing the type makes the swapped order pass.
    std::fs::write(
        &preds,
        concat!(
            r#"{"id": "parallel_0", "calls": [{"name": "weather_get", "arguments": {"city": "rome"}}, "#,
            r#"{"name": "weather.get", "arguments": {"city": "Paris", "days": 1}}]}"#,
            "\n"
        ),
    )
    .expect("write");
    let out = retort()
        .args(["eval", "bfcl", "--categories", "parallel"])
        .arg("--data")
        .arg(&data)
        .arg("--predictions")
        .arg(&preds)
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("100.00"));
}

#[test]
fn errors_are_clear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("bfcl");
    tiny_bfcl(&data);
    let missing = tmp.path().join("no-such-model");
    let out = retort()
        .args(["eval", "bfcl", "--categories", "parallel"])
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(&missing)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot load the model in") && stderr.contains("no-such-model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A category whose file is missing names the file.
    let out = retort()
        .args(["eval", "bfcl", "--gold", "--categories", "multiple"])
        .arg("--data")
        .arg(&data)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BFCL_v4_multiple.json"));
    // An unknown category is refused with the list of known ones.
    let out = retort()
        .args(["eval", "bfcl", "--gold", "--categories", "simple"])
        .arg("--data")
        .arg(&data)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("simple_python"));
}

#[test]
fn help_explains_every_flag() {
    let out = retort()
        .args(["eval", "bfcl", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data",
        "--model",
        "--gold",
        "--predictions",
        "--categories",
        "--limit",
        "--json",
        "--failures",
        "--chart",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
}
