//! The official `openai` Python client against a live server
//! (scripts/openai_client_check.py). Skipped, with a message, when
//! `python3 -c "import openai"` fails; scripts/setup-python-test-deps.sh
//! installs the client.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn openai_available() -> bool {
    Command::new(python())
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_client_gets_well_formed_tool_calls() {
    if !openai_available() {
        eprintln!(
            "SKIPPED official_openai_client_gets_well_formed_tool_calls: `{} -c \"import openai\"` failed; \
             run scripts/setup-python-test-deps.sh to install the client",
            python()
        );
        return;
    }
    let s = TestServer::default_double().await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai_client_check.py");
    let base = s.base.clone();
    let py = python();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(&script)
            .arg(&base)
            // Keep the client on loopback whatever the environment says.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("OPENAI_BASE_URL")
            .output()
    })
    .await
    .expect("join")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openai_client_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("chat.completions and responses OK"),
        "{stdout}"
    );
    s.stop().await;
}
