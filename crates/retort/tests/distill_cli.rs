//! The `retort distill` and `retort data import-log` binaries against a local
//! two-protocol teacher on 127.0.0.1: SIGKILL and resume, key hygiene, and
//! log import.

#[path = "../../retort-teacher/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{FakeTeacher, Mode, tools_json};
use retort_core::{Example, validate_all};
use serde_json::json;

const KEY: &str = "AIza-retort-cli-7b1e9f40-NEVER-PRINT";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn retort() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retort"));
    c.env_remove("GEMINI_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG");
    c
}

fn read_examples(path: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Example>(l).expect("every line is an example"))
        .collect()
}

fn distill_args(cmd: &mut Command, teacher: &str, base: &str, tools: &Path, out: &Path, n: usize) {
    cmd.args(["distill", "--teacher", teacher, "--tools"])
        .arg(tools)
        .args(["--n", &n.to_string(), "--out"])
        .arg(out)
        .args(["--base-url", base, "--concurrency", "2", "--timeout", "3"])
        .args(["--retry-base-ms", "10", "--max-attempts", "3"]);
}

#[test]
fn sigkill_and_resume() {
    let rt = runtime();
    let server = rt.block_on(FakeTeacher::start_with(
        Mode::Clean,
        Duration::from_millis(40),
        false,
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = dir.path().join("tools.json");
    std::fs::write(&tools, tools_json().to_string()).expect("tools");
    let out = dir.path().join("out.jsonl");
    let n = 40;

    let mut cmd = retort();
    distill_args(&mut cmd, "gemini", &server.gemini_base(), &tools, &out, n);
    let mut child = cmd
        .env("GEMINI_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn retort");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 5 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("retort exited early: {status}");
        }
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    let killed_at = Instant::now();
    // Every complete line survived the kill; a torn one may follow.
    let text = std::fs::read_to_string(&out).expect("out");
    let partial: Vec<Example> = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).expect("complete lines are examples"))
        .collect();
    assert!(partial.len() < n, "killed too late to test anything");

    let mut cmd = retort();
    distill_args(&mut cmd, "gemini", &server.gemini_base(), &tools, &out, n);
    let done = cmd.env("GEMINI_API_KEY", KEY).output().expect("resume");
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let all = read_examples(&out);
    assert_eq!(all.len(), n, "{stdout}");
    let ids: HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), n, "duplicates after resume");
    for ex in &all {
        validate_all(&ex.calls, &ex.tools).expect("valid calls");
        assert_eq!(ex.calls.len(), 1);
    }
    for ex in &partial {
        assert!(all.contains(ex), "lost {}", ex.id);
    }
    assert!(
        stdout.contains(&format!("{} were already there", partial.len())),
        "{stdout}"
    );
    // What the killed run finished was not paid for again.
    server.seen(|s| {
        for ex in &partial {
            assert!(
                s.attempts[&ex.query].iter().all(|t| *t < killed_at),
                "{} asked again",
                ex.query
            );
        }
    });
}

fn files_text(dir: &Path) -> String {
    let mut text = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                text.push_str(&String::from_utf8_lossy(&std::fs::read(&p).expect("read")));
            }
        }
    }
    text
}

#[test]
fn keys_never_appear_in_output_logs_or_errors() {
    let rt = runtime();
    let server = rt.block_on(FakeTeacher::start(Mode::Hostile));
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = dir.path().join("tools.json");
    std::fs::write(&tools, tools_json().to_string()).expect("tools");
    let mut everything = String::new();
    for (teacher, env, base) in [
        ("gemini", "GEMINI_API_KEY", server.gemini_base()),
        ("openai", "OPENAI_API_KEY", server.openai_base()),
        // Nothing listens there: connection errors.
        (
            "openai",
            "OPENAI_API_KEY",
            "http://127.0.0.1:1/v1".to_string(),
        ),
    ] {
        let out = dir
            .path()
            .join(format!("{teacher}-{}.jsonl", everything.len()));
        let mut cmd = retort();
        distill_args(&mut cmd, teacher, &base, &tools, &out, 4);
        let o = cmd
            .args(["--log", "trace"])
            .env(env, KEY)
            .output()
            .expect("run");
        everything.push_str(&String::from_utf8_lossy(&o.stdout));
        everything.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    everything.push_str(&files_text(dir.path()));
    assert!(
        server.seen(|s| s.keys.iter().filter(|k| *k == KEY).count()) > 4,
        "the key was sent"
    );
    assert!(
        everything.contains("[REDACTED]"),
        "echoes were redacted: {everything}"
    );
    assert!(everything.contains("dropped"), "{everything}");
    assert!(!everything.contains(KEY), "the key leaked:\n{everything}");
}

#[test]
fn import_log_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.jsonl");
    let request = |q: &str| {
        json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": q}],
               "tools": tools_json(), "tool_choice": "auto"})
    };
    let call = json!({"id": "c", "object": "chat.completion", "model": "gpt-4.1-mini-2025-04-14",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": "t", "type": "function", "function": {"name": "get_time", "arguments": "{\"city\":\"Lima\"}"}}]}}]});
    let text_only = json!({"id": "d", "object": "chat.completion", "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Which city?"}}]});
    let lines = [
        json!({"request": request("time in Lima?"), "response": call}).to_string(),
        "{\"request\": {\"messages\": [".to_string(),
        json!({"request": request("what time is it"), "response": text_only}).to_string(),
    ];
    std::fs::write(&log, lines.join("\n") + "\n").expect("log");
    let out = dir.path().join("examples.jsonl");
    let o = retort()
        .args(["data", "import-log", "--format", "openai"])
        .arg(&log)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("imported 2 examples from 3 lines"),
        "{stdout}"
    );
    assert!(stdout.contains("log.jsonl:2: not_json"), "{stdout}");
    let ex = read_examples(&out);
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].calls[0].name, "get_time");
    assert_eq!(ex[0].calls[0].arguments["city"], "Lima");
    assert!(ex[1].calls.is_empty());

    let strict = retort()
        .args(["data", "import-log", "--strict"])
        .arg(&log)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert!(!strict.status.success());
    assert!(String::from_utf8_lossy(&strict.stderr).contains("log.jsonl:2:"));
}
