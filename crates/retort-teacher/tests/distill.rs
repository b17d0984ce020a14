//! End-to-end runs against a local two-protocol teacher (real sockets on
//! 127.0.0.1), with faults.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FakeTeacher, Mode, marker_of, tools_json};
use retort_core::{Example, Tool, ToolFormat, validate_all};
use retort_teacher::{
    ApiKey, Cache, CallMode, DistillConfig, DistillReport, Protocol, RetryPolicy, Teacher,
    TeacherConfig, distill,
};

const KEY: &str = "sk-retort-test-9f3c2d7e-DO-NOT-LEAK";

fn tools() -> Vec<Tool> {
    Tool::parse_many(&tools_json(), ToolFormat::Auto).expect("tools")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(800),
    }
}

fn teacher(server: &FakeTeacher, protocol: Protocol, cache: Option<&Path>) -> Arc<Teacher> {
    teacher_with(server, protocol, cache, None)
}

fn teacher_with(
    server: &FakeTeacher,
    protocol: Protocol,
    cache: Option<&Path>,
    max_cost: Option<f64>,
) -> Arc<Teacher> {
    let (base, model) = match protocol {
        Protocol::Gemini => (server.gemini_base(), "gemini-2.5-flash"),
        Protocol::OpenAi => (server.openai_base(), "gpt-4.1-mini"),
    };
    let config = TeacherConfig {
        protocol,
        model: Some(model.into()),
        base_url: Some(base),
        api_key: ApiKey::new(KEY),
        retry: fast_retry(),
        top_logprobs: 3,
        price: None,
        max_cost,
    };
    let cache = cache.map(|c| Cache::open(c).expect("cache"));
    Arc::new(Teacher::new(config, cache).expect("teacher"))
}

fn read_examples(path: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).expect("output");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output ends mid-line"
    );
    text.lines()
        .map(|l| serde_json::from_str::<Example>(l).expect("every line is an example"))
        .collect()
}

/// Output is valid and free of duplicates (ids and queries).
fn check_output(examples: &[Example]) {
    let mut ids = HashSet::new();
    let mut queries = HashSet::new();
    for ex in examples {
        assert!(ids.insert(ex.id.clone()), "duplicate id {}", ex.id);
        assert!(
            queries.insert(ex.query.clone()),
            "duplicate query {}",
            ex.query
        );
        validate_all(&ex.calls, &ex.tools).expect("calls are valid");
        assert_eq!(ex.tools, tools());
    }
}

async fn faults(protocol: Protocol) {
    let server = FakeTeacher::start(Mode::Faulty).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let cache = dir.path().join("cache");
    let mut cfg = DistillConfig::new(tools(), 20, &out);
    cfg.batch_size = 10;
    cfg.concurrency = 4;
    cfg.seed = 7;
    let t = teacher(&server, protocol, Some(&cache));
    let report = distill(t, cfg.clone()).await.expect("run");

    // 2 batches x 10 markers: `invalid` is dropped for its schema violation,
    // `down` after its retries, `garbage` as a malformed response; every
    // other fault is retried into an example.
    assert_eq!(report.planned, 20);
    assert_eq!(report.written, 14, "{report:?}");
    assert_eq!(report.dropped.get("wrong_type"), Some(&2), "{report:?}");
    assert_eq!(
        report.dropped.get("teacher:http_5xx"),
        Some(&2),
        "{report:?}"
    );
    assert_eq!(
        report.dropped.get("teacher:malformed_response"),
        Some(&2),
        "{report:?}"
    );
    assert_eq!(report.dropped_total(), 6);
    assert_eq!(report.total_in_output, 14);
    let examples = read_examples(&out);
    assert_eq!(examples.len(), 14);
    check_output(&examples);
    let mut markers: Vec<&str> = examples
        .iter()
        .filter_map(|e| marker_of(&e.query))
        .collect();
    markers.sort_unstable();
    let mut expected: Vec<&str> = ["ok", "429", "500", "badjson", "hang", "nocall", "multi"]
        .iter()
        .flat_map(|m| [*m, *m])
        .collect();
    expected.sort_unstable();
    assert_eq!(markers, expected);
    for ex in &examples {
        match marker_of(&ex.query) {
            Some("nocall") => assert!(ex.calls.is_empty()),
            Some("multi") => assert_eq!(ex.calls.len(), 2),
            _ => assert_eq!(ex.calls.len(), 1),
        }
        let teacher = ex.teacher.as_ref().expect("teacher info");
        assert!(teacher.model.is_some());
        if marker_of(&ex.query) == Some("ok") {
            // Token logprobs mapped onto the decisions.
            let f = teacher
                .logprobs
                .iter()
                .find(|d| d.decision == "call0:function")
                .expect("function decision");
            assert_eq!(f.top[0], ("get_weather".to_string(), -0.1));
            assert_eq!(f.top[1], ("get_time".to_string(), -2.5));
            let city = teacher
                .logprobs
                .iter()
                .find(|d| d.decision == "call0:arg:city")
                .expect("city decision");
            assert_eq!(city.top[1], ("Paris".to_string(), -2.0));
        }
    }

    // 429: the retry waited for Retry-After (1 s) although the backoff is
    // 10-40 ms. A hung answer was abandoned and retried.
    server.seen(|s| {
        for (q, times) in &s.attempts {
            match marker_of(q) {
                Some("429") => {
                    assert_eq!(times.len(), 2, "{q}");
                    let waited = times[1] - times[0];
                    assert!(waited >= Duration::from_millis(990), "{q}: {waited:?}");
                }
                Some("hang" | "500" | "badjson") => assert_eq!(times.len(), 2, "{q}"),
                Some("down") => assert_eq!(times.len(), 3, "{q}"),
                _ => assert_eq!(times.len(), 1, "{q}"),
            }
        }
        assert!(s.keys.iter().all(|k| k == KEY), "the key is sent");
    });
    // Synthesis, 16 usable answers and 2 garbage ones (answered, so billed).
    assert_eq!(report.meter.paid_requests, 2 + 16 + 2, "{report:?}");
    assert!(report.meter.retries >= 8, "{report:?}");
    let cost = report.meter.cost_usd.expect("priced model");
    assert!(cost > 0.0);

    // A re-run pays for nothing twice: only requests that never got a usable
    // answer (`down`, 3 attempts each, and `garbage`) go out again.
    let before = server.total_requests();
    let t2 = teacher(&server, protocol, Some(&cache));
    let again = distill(t2, cfg.clone()).await.expect("re-run");
    assert_eq!(again.written, 0);
    assert_eq!(again.already_done, 14);
    assert_eq!(again.meter.paid_requests, 2);
    // Synthesis and the dropped `invalid` answers come from the cache; done
    // examples are not even looked up.
    assert_eq!(again.meter.cache_hits, 2 + 2);
    assert_eq!(server.total_requests() - before, 2 * 3 + 2);
    assert_eq!(read_examples(&out), examples);

    // With the output gone, everything is rebuilt from the cache alone.
    std::fs::remove_file(&out).expect("rm");
    let before = server.total_requests();
    let t3 = teacher(&server, protocol, Some(&cache));
    let rebuilt = distill(t3, cfg).await.expect("rebuild");
    assert_eq!(rebuilt.written, 14);
    assert_eq!(rebuilt.meter.paid_requests, 2);
    assert_eq!(rebuilt.meter.cache_hits, 2 + 16);
    assert_eq!(server.total_requests() - before, 2 * 3 + 2);
    let mut a = read_examples(&out);
    let mut b = examples.clone();
    a.sort_by(|x, y| x.id.cmp(&y.id));
    b.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(a, b, "the same examples, from the cache");
}

#[tokio::test]
async fn gemini_faults_are_survived() {
    faults(Protocol::Gemini).await;
}

#[tokio::test]
async fn openai_faults_are_survived() {
    faults(Protocol::OpenAi).await;
}

fn check_complete(report: &DistillReport, out: &Path, n: usize) -> Vec<Example> {
    let examples = read_examples(out);
    check_output(&examples);
    assert_eq!(examples.len(), n, "{report:?}");
    assert_eq!(report.total_in_output, n);
    examples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_run_resumes_without_loss_or_duplicates() {
    for protocol in [Protocol::Gemini, Protocol::OpenAi] {
        let server = FakeTeacher::start_with(Mode::Clean, Duration::from_millis(25), false).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let cache = dir.path().join("cache");
        let mut cfg = DistillConfig::new(tools(), 40, &out);
        cfg.concurrency = 3;
        cfg.batch_size = 8;
        let t = teacher(&server, protocol, Some(&cache));
        let run = tokio::spawn(distill(t, cfg.clone()));
        // Kill the run once some examples are on disk.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = std::fs::read_to_string(&out)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if n >= 6 {
                break;
            }
            assert!(Instant::now() < deadline, "the run made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        run.abort();
        let killed_at = Instant::now();
        assert!(run.await.expect_err("aborted").is_cancelled());
        // Aborting the run cancels its writer task at the writer's next
        // await; an append already under way on another worker thread
        // still finishes. Wait for the file to settle, as a second process
        // would only start after the first one had exited.
        let size = || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let mut last = size();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = size();
            if now == last {
                break;
            }
            last = now;
        }
        let partial = read_examples(&out);
        assert!(
            partial.len() < 40,
            "the abort came too late to test anything"
        );
        // And as if the kill had hit in the middle of a write.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&out)
                .expect("open");
            f.write_all(b"{\"id\": \"distill-0123\", \"source\": \"dis")
                .expect("torn");
        }

        let t = teacher(&server, protocol, Some(&cache));
        let report = distill(t, cfg.clone()).await.expect("resume");
        let all = check_complete(&report, &out, 40);
        assert_eq!(report.already_done, partial.len());
        assert_eq!(report.written, 40 - partial.len());
        for ex in &partial {
            assert!(all.contains(ex), "an example of the first run was lost");
        }
        // Nothing the first run wrote was asked again.
        server.seen(|s| {
            for ex in &partial {
                let times = &s.attempts[&ex.query];
                assert!(
                    times.iter().all(|t| *t < killed_at),
                    "{} asked again",
                    ex.query
                );
            }
        });
    }
}

#[tokio::test]
async fn budget_stops_the_run() {
    let server = FakeTeacher::start(Mode::Clean).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    // gpt-4.1-mini: 100 input + 20 output tokens = $0.000072 per request.
    let max = 0.0005;
    let t = teacher_with(&server, Protocol::OpenAi, None, Some(max));
    let mut cfg = DistillConfig::new(tools(), 40, &out);
    cfg.concurrency = 2;
    let report = distill(t, cfg).await.expect("run");
    assert!(report.stopped_by_budget, "{report:?}");
    let cost = report.meter.cost_usd.expect("priced");
    // Requests in flight when the budget ran out may finish: at most
    // `concurrency` of them beyond it.
    assert!(cost <= max + 2.0 * 0.000072 + 1e-12, "{cost}");
    assert!(report.written > 0 && report.written < 40, "{report:?}");
    assert_eq!(read_examples(&out).len(), report.written);
    assert_eq!(
        server.total_requests(),
        report.meter.paid_requests,
        "no request beyond those counted"
    );
}

#[tokio::test]
async fn rejected_logprobs_are_switched_off() {
    let server = FakeTeacher::start_with(Mode::Clean, Duration::ZERO, true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let t = teacher(&server, Protocol::Gemini, None);
    let mut cfg = DistillConfig::new(tools(), 8, &out);
    cfg.concurrency = 1;
    let report = distill(t, cfg).await.expect("run");
    let examples = check_complete(&report, &out, 8);
    assert!(
        examples
            .iter()
            .all(|e| e.teacher.as_ref().is_some_and(|t| t.logprobs.is_empty()))
    );
    server.seen(|s| {
        // Synthesis asks for none; the first answer asked, was refused
        // once, and nothing asked again.
        assert_eq!(s.rejected_logprobs, 1);
        assert_eq!(s.asked_logprobs.len(), 9);
        assert!(s.asked_logprobs[0]);
        assert!(
            s.asked_logprobs[1..].iter().all(|a| !a),
            "asked again after the 400"
        );
    });
}

#[tokio::test]
async fn forced_mode_and_direct_answers() {
    let server = FakeTeacher::start(Mode::Clean).await;
    let t = teacher(&server, Protocol::OpenAi, None);
    let reply = t
        .answer(
            "sys",
            "What is the weather in Kyiv? [ok]",
            &tools(),
            CallMode::Any,
        )
        .await
        .expect("answer");
    assert!(!reply.cached);
    assert_eq!(reply.answer.calls[0].name, "get_weather");
    assert_eq!(
        reply.answer.calls[0].arguments,
        Ok(serde_json::json!({"city": "Kyiv"}))
    );
    assert_eq!(reply.answer.usage.input_tokens, 100);
}

/// A writer that collects everything logged.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn all_files_text(dir: &Path) -> String {
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

#[tokio::test(flavor = "current_thread")]
async fn keys_never_leak() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut seen_text = String::new();
    for protocol in [Protocol::Gemini, Protocol::OpenAi] {
        let server = FakeTeacher::start(Mode::Hostile).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let t = teacher(&server, protocol, Some(&dir.path().join("cache")));
        seen_text.push_str(&format!("{t:?}"));
        let report = distill(t.clone(), DistillConfig::new(tools(), 4, &out))
            .await
            .expect("run");
        seen_text.push_str(&format!("{report:?}"));
        // Errors the hostile server provokes, echoing the key in their bodies.
        for q in [
            "What is the weather in Oslo? [ok]",
            "What is the weather in Lima? [ok]",
        ] {
            let e = t
                .answer("s", q, &tools(), CallMode::Auto)
                .await
                .expect_err("fails");
            seen_text.push_str(&format!("{e} {e:?}"));
        }
        let bad_base = TeacherConfig {
            base_url: Some(format!("http://{KEY}@127.0.0.1:1")),
            api_key: ApiKey::new(KEY),
            ..TeacherConfig::from_env(protocol)
        };
        if let Err(e) = Teacher::new(bad_base, None) {
            seen_text.push_str(&format!("{e} {e:?}"));
        } else {
            let t = Teacher::new(
                TeacherConfig {
                    base_url: Some(format!("http://{KEY}@127.0.0.1:1")),
                    api_key: ApiKey::new(KEY),
                    retry: fast_retry(),
                    ..TeacherConfig::from_env(protocol)
                },
                None,
            )
            .expect("teacher");
            let e = t
                .answer("s", "q", &tools(), CallMode::Auto)
                .await
                .expect_err("no server");
            seen_text.push_str(&format!("{e} {e:?}"));
        }
        seen_text.push_str(&all_files_text(dir.path()));
        assert_eq!(report.written, 0, "{report:?}");
        assert_eq!(report.planned, 4, "{report:?}");
        assert_eq!(
            report.dropped.get("contains_api_key"),
            Some(&2),
            "{report:?}"
        );
        assert!(
            server.seen(|s| s.keys.iter().any(|k| k == KEY)),
            "the key was sent"
        );
        assert!(
            seen_text.contains("[REDACTED]"),
            "the echoes were redacted, not absent"
        );
    }
    let logs = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
    assert!(logs.contains("failed"), "logs were captured: {logs}");
    assert!(!logs.contains(KEY), "key in logs: {logs}");
    assert!(!seen_text.contains(KEY), "key in output: {seen_text}");
}
