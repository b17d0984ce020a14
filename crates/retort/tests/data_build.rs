//! Drives the real `retort data build` binary on a tiny fake teacher folder
//! and a fake BFCL folder written inside the test.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

fn write(p: &Path, text: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, text).expect("write");
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// A fake teacher folder: Seal-Tools with a handful of tools and queries, a
/// ToolRL file with one example, and a MetaTool pool.
fn fake_teacher(dir: &Path) {
    let cities = [
        "Paris", "Lyon", "Berlin", "Madrid", "Rome", "Oslo", "Vienna", "Dublin",
    ];
    let mut tools = String::new();
    for (i, name) in [
        "getWeather",
        "bookHotel",
        "findFlights",
        "convertCurrency",
        "getNews",
        "translateText",
    ]
    .iter()
    .enumerate()
    {
        tools.push_str(
            &json!({"api_name": name, "api_description": format!("Tool number {i} about {name}"),
                "parameters": {"city": {"type": "str", "description": "the city"},
                               "days": {"type": "int", "description": "how many days"}},
                "required": ["city"]})
            .to_string(),
        );
        tools.push('\n');
    }
    let mut queries = String::new();
    for (i, c) in cities.iter().enumerate() {
        let name = ["getWeather", "bookHotel", "findFlights", "convertCurrency"][i % 4];
        queries.push_str(
            &json!({"id": format!("dev-{i}"), "query": format!("Please use {name} for {c} over {} days", i + 2),
                "calling": [{"api": name, "parameters": {"city": c, "days": i + 2}}]})
            .to_string(),
        );
        queries.push('\n');
    }
    // A parallel example and a query that BFCL also asks.
    queries.push_str(
        &json!({"id": "dev-par", "query": "Weather in Oslo and news for Rome",
            "calling": [{"api": "getWeather", "parameters": {"city": "Oslo"}}, {"api": "getNews", "parameters": {"city": "Rome"}}]})
        .to_string(),
    );
    queries.push('\n');
    queries.push_str(
        &json!({"id": "dev-bfcl", "query": "What's the weather like in Boston, MA?",
            "calling": [{"api": "getWeather", "parameters": {"city": "Boston"}}]})
        .to_string(),
    );
    queries.push('\n');
    write(&dir.join("seal/Seal-Tools_Dataset_tool.jsonl"), &tools);
    write(&dir.join("seal/Seal-Tools_Dataset_dev.jsonl"), &queries);
    write(
        &dir.join("metatool/all_clean_data.csv"),
        "Query,Tool\nFind me a paper,ResearchHelper\n\"Plan a trip, cheap\",TripTool\n",
    );
    write(
        &dir.join("metatool/plugin_info.json"),
        &json!([{"name_for_model": "ResearchHelper", "description_for_model": "Finds papers"},
                {"name_for_model": "TripTool", "description_for_model": "Plans trips"}])
        .to_string(),
    );
}

fn fake_bfcl(dir: &Path) {
    write(
        &dir.join("BFCL_v4_simple_python.json"),
        &format!(
            "{}\n",
            json!({"id": "simple_0", "question": [[{"role": "user", "content": "What's the weather like in Boston MA"}]],
                "function": [{"name": "get_current_weather", "parameters": {"type": "dict", "properties": {}}}]})
        ),
    );
}

fn run(teacher: &Path, bfcl: &Path, out: &Path, seed: &str) -> std::process::Output {
    run_with(teacher, bfcl, out, seed, &[])
}

fn run_with(
    teacher: &Path,
    bfcl: &Path,
    out: &Path,
    seed: &str,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(["data", "build", "--teacher-dir"])
        .arg(teacher)
        .arg("--bfcl")
        .arg(bfcl)
        .arg("--out")
        .arg(out)
        .args([
            "--augment",
            "6",
            "--seed",
            seed,
            "--val-fraction",
            "0.15",
            "--no-progress",
        ])
        .args(extra)
        .output()
        .expect("run retort")
}

#[test]
fn builds_a_tiny_dataset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let teacher = tmp.path().join("teacher");
    let bfcl = tmp.path().join("bfcl");
    fake_teacher(&teacher);
    fake_bfcl(&bfcl);
    let out = tmp.path().join("out");
    let o = run(&teacher, &bfcl, &out, "3");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("train:"), "{stdout}");
    for f in [
        "train.jsonl",
        "val.jsonl",
        "unlabelled.jsonl",
        "tool_pool.jsonl",
        "stats.json",
    ] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).expect("read"))
            .expect("stats json");
    assert_eq!(
        stats["clean_drops"]["seal"]["bfcl_question"], 1,
        "{stats:#}"
    );
    assert_eq!(stats["imported"]["total"], 10);
    assert!(
        stats["sources_missing"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s == "taubench"))
    );
    let train = lines(&out.join("train.jsonl"));
    let val = lines(&out.join("val.jsonl"));
    assert!(train.len() > 20, "augmented: {}", train.len());
    assert_eq!(stats["train"]["total"], train.len());
    // No BFCL question anywhere, and the held-out tools never reach training.
    for e in train.iter().chain(&val) {
        let q = e["query"].as_str().unwrap_or_default().to_lowercase();
        assert!(!q.contains("boston"), "contaminated: {e}");
    }
    let val_tools: std::collections::BTreeSet<String> = val
        .iter()
        .filter(|e| !e["id"].as_str().unwrap_or_default().contains("~aug"))
        .flat_map(|e| e["calls"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    assert!(!val_tools.is_empty(), "val holds out some tools");
    let unl = lines(&out.join("unlabelled.jsonl"));
    assert_eq!(unl.len(), 2);
    assert_eq!(unl[1]["query"], "Plan a trip, cheap");

    // Deterministic under --seed, different under another seed.
    let out2 = tmp.path().join("out2");
    assert!(run(&teacher, &bfcl, &out2, "3").status.success());
    let a = std::fs::read(out.join("train.jsonl")).expect("read");
    assert_eq!(a, std::fs::read(out2.join("train.jsonl")).expect("read"));
    let out3 = tmp.path().join("out3");
    assert!(run(&teacher, &bfcl, &out3, "4").status.success());
    assert_ne!(a, std::fs::read(out3.join("train.jsonl")).expect("read"));

    // Composition adds multi-call training examples whose calls all come
    // from the query, and leaves validation byte-identical.
    let composed: Vec<&Value> = train
        .iter()
        .filter(|e| e["id"].as_str().is_some_and(|i| i.starts_with("compose:")))
        .collect();
    assert!(!composed.is_empty(), "default --compose adds composites");
    assert_eq!(
        stats["compose_train"]["same_function"]
            .as_u64()
            .unwrap_or(0)
            + stats["compose_train"]["different_functions"]
                .as_u64()
                .unwrap_or(0),
        composed.len() as u64
    );
    for e in &composed {
        let calls = e["calls"].as_array().cloned().unwrap_or_default();
        assert!(calls.len() >= 2, "{e}");
        for c in &calls {
            let city = c["arguments"]["city"].as_str().unwrap_or_default();
            assert!(
                e["query"].as_str().unwrap_or_default().contains(city),
                "{e}"
            );
        }
    }
    let out4 = tmp.path().join("out4");
    let o = run_with(&teacher, &bfcl, &out4, "3", &["--compose", "0"]);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(out.join("val.jsonl")).expect("read"),
        std::fs::read(out4.join("val.jsonl")).expect("read")
    );
    let plain = lines(&out4.join("train.jsonl"));
    assert_eq!(plain.len() + composed.len(), train.len());
    // Schema synthesis adds training examples over pool tools, each call's
    // values mentioned in its request; validation stays the same.
    let out5 = tmp.path().join("out5");
    let o = run_with(&teacher, &bfcl, &out5, "3", &["--synth-per-tool", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("synthesized:"));
    assert_eq!(
        std::fs::read(out.join("val.jsonl")).expect("read"),
        std::fs::read(out5.join("val.jsonl")).expect("read")
    );
    let with_synth = lines(&out5.join("train.jsonl"));
    let synth: Vec<&Value> = with_synth
        .iter()
        .filter(|e| e["source"] == "synth")
        .collect();
    assert!(!synth.is_empty(), "no synthesized examples");
    assert!(with_synth.len() > train.len());
    for e in &synth {
        let q = e["query"].as_str().unwrap_or_default();
        for c in e["calls"].as_array().into_iter().flatten() {
            for v in c["arguments"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if let Some(s) = v.as_str() {
                    assert!(q.contains(s), "{s:?} not in {q:?}");
                }
            }
        }
    }
    let o = run_with(
        &teacher,
        &bfcl,
        &tmp.path().join("bad"),
        "3",
        &["--compose", "2"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--compose"));
}

#[test]
fn malformed_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let teacher = tmp.path().join("teacher");
    let bfcl = tmp.path().join("bfcl");
    fake_teacher(&teacher);
    fake_bfcl(&bfcl);
    write(
        &teacher.join("seal/Seal-Tools_Dataset_dev.jsonl"),
        "{\"id\": \"a\", \"query\": \"q\", \"calling\": []}\n{\"id\": \"b\", \"query\": \n",
    );
    let o = run(&teacher, &bfcl, &tmp.path().join("out"), "1");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Seal-Tools_Dataset_dev.jsonl:2: invalid JSON"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !tmp.path().join("out/train.jsonl").exists(),
        "nothing written on error"
    );
}
