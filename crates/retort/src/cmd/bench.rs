//! `retort bench`: end-to-end latency (p50/p95/p99) over BFCL simple_python
//! requests, in-process and over HTTP against an in-process server on a
//! loopback port; throughput at several client counts; model load time;
//! peak resident memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use retort_core::{CallOptions, Tool, ToolCaller, ToolFormat};
use serde::Serialize;
use serde_json::{Value, json};

/// The BFCL file the benchmark reads.
pub const SIMPLE_PYTHON: &str = "BFCL_v4_simple_python.json";

/// Measure latency, throughput and memory.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model directory; the embedded default model when absent.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// BFCL v4 data directory (holding BFCL_v4_simple_python.json).
    #[arg(long, env = "RETORT_BFCL_DIR", value_name = "DIR")]
    pub bfcl: Option<PathBuf>,
    /// Requests of each latency run (cycling over the BFCL entries).
    #[arg(long, default_value_t = 400)]
    pub requests: usize,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Concurrent HTTP clients of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub concurrency: Vec<usize>,
    /// Use only the first N BFCL entries (cycled). With a small N the same
    /// tool sets come back, as they do for an application with a fixed
    /// catalogue, so cached tool encodings are reused; with all 400 (the
    /// default) and a cache smaller than their tools, nearly every request
    /// encodes its tools afresh.
    #[arg(long, value_name = "N")]
    pub distinct: Option<usize>,
    /// Memory for cached tool encodings, in MiB (0 turns caching off), as
    /// `retort serve --tool-cache-mb`.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub tool_cache_mb: usize,
    /// Most model calls admitted at once in the HTTP runs, as `retort serve
    /// --max-concurrent-calls`. Default: the number of CPUs plus one.
    #[arg(long, value_name = "N")]
    pub max_concurrent_calls: Option<usize>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub decode: super::decode::DecodeArgs,
}

/// One benchmark request.
#[derive(Debug, Clone)]
pub struct BenchInput {
    pub id: String,
    pub query: String,
    pub tools: Vec<Tool>,
    /// The `/tool-call` body, serialised once.
    pub body: Vec<u8>,
}

/// Read BFCL simple_python: `question[0]`'s last user message and the
/// `function` list (BFCL dialect), only as benchmark inputs.
pub fn load_bfcl(dir: &Path) -> anyhow::Result<Vec<BenchInput>> {
    let path = dir.join(SIMPLE_PYTHON);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value =
            serde_json::from_str(line).map_err(|e| anyhow!("{}: not valid JSON: {e}", at()))?;
        let id = v["id"].as_str().unwrap_or("?").to_string();
        let query = v["question"][0]
            .as_array()
            .and_then(|turn| {
                turn.iter()
                    .rev()
                    .find(|m| m["role"] == "user")
                    .and_then(|m| m["content"].as_str())
            })
            .ok_or_else(|| anyhow!("{}: no user message in question[0]", at()))?
            .to_string();
        let tools = Tool::parse_many(&v["function"], ToolFormat::Bfcl)
            .map_err(|e| anyhow!("{}: {e}", at()))?;
        let body = serde_json::to_vec(&json!({
            "prompt": query,
            "available_functions": tools.iter().map(Tool::to_json).collect::<Vec<_>>(),
        }))?;
        out.push(BenchInput {
            id,
            query,
            tools,
            body,
        });
    }
    if out.is_empty() {
        bail!("{} holds no entries", path.display());
    }
    Ok(out)
}

/// Latency statistics of one run, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn from_samples(mut ms: Vec<f64>, errors: usize) -> Latency {
        ms.sort_by(f64::total_cmp);
        let mean = if ms.is_empty() {
            0.0
        } else {
            ms.iter().sum::<f64>() / ms.len() as f64
        };
        Latency {
            requests: ms.len() + errors,
            errors,
            p50_ms: percentile(&ms, 0.50),
            p95_ms: percentile(&ms, 0.95),
            p99_ms: percentile(&ms, 0.99),
            mean_ms: mean,
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// Nearest-rank percentile of sorted samples (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub clients: usize,
    pub seconds: f64,
    pub ok: usize,
    pub errors: usize,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Resident memory of this process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// VmHWM: peak resident set size.
    pub peak_rss_mb: Option<f64>,
    /// VmRSS at the end of the run.
    pub rss_mb: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub entries: usize,
    pub model_load_ms: f64,
    pub in_process: Latency,
    pub http: Latency,
    pub http_endpoint: &'static str,
    pub throughput: Vec<Throughput>,
    pub memory: Memory,
    pub cpus: usize,
}

/// A `/proc/self/status` field in MB.
fn proc_status_mb(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line
        .trim_start_matches(key)
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub requests: usize,
    pub duration: Duration,
    pub concurrency: Vec<usize>,
    /// The server's model-call slots (`None`: its default).
    pub max_concurrent_calls: Option<usize>,
}

/// Run the benchmark against `caller` (already loaded).
pub fn run_bench(
    caller: Arc<dyn ToolCaller>,
    inputs: &[BenchInput],
    opts: &BenchOptions,
    model_load_ms: f64,
) -> anyhow::Result<Report> {
    if inputs.is_empty() {
        bail!("no benchmark inputs");
    }
    // In-process: the caller directly, one request at a time.
    let call_opts = CallOptions::default();
    for inp in inputs.iter().take(10) {
        let _ = caller.call(&inp.query, &inp.tools, &call_opts);
    }
    let (mut samples, mut errors) = (Vec::with_capacity(opts.requests), 0usize);
    for i in 0..opts.requests {
        let inp = &inputs[i % inputs.len()];
        let t = Instant::now();
        match caller.call(&inp.query, &inp.tools, &call_opts) {
            Ok(_) => samples.push(t.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                errors += 1;
                tracing::warn!(id = %inp.id, error = %e, "in-process call failed");
            }
        }
    }
    let in_process = Latency::from_samples(samples, errors);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (http, throughput) = rt.block_on(http_runs(caller, inputs, opts))?;
    Ok(Report {
        entries: inputs.len(),
        model_load_ms,
        in_process,
        http,
        http_endpoint: "/tool-call",
        throughput,
        memory: Memory {
            peak_rss_mb: proc_status_mb("VmHWM"),
            rss_mb: proc_status_mb("VmRSS"),
        },
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

async fn one_request(client: &reqwest::Client, url: &str, body: &[u8]) -> Result<f64, String> {
    let t = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(200)
                .collect::<String>()
        ));
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

async fn http_runs(
    caller: Arc<dyn ToolCaller>,
    inputs: &[BenchInput],
    opts: &BenchOptions,
) -> anyhow::Result<(Latency, Vec<Throughput>)> {
    let largest = inputs.iter().map(|i| i.body.len()).max().unwrap_or(0);
    let config = retort_server::ServerConfig {
        max_body_bytes: retort_server::DEFAULT_MAX_BODY_BYTES.max(largest + 1),
        timeout: Duration::from_secs(120),
        max_concurrent_calls: opts
            .max_concurrent_calls
            .unwrap_or_else(retort_server::default_concurrency)
            .max(1),
        ..retort_server::ServerConfig::default()
    };
    let app = retort_server::app(caller, config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let url = format!("http://{}/tool-call", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(retort_server::serve(listener, app, async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()?;

    for inp in inputs.iter().take(10) {
        one_request(&client, &url, &inp.body)
            .await
            .map_err(|e| anyhow!("warm-up request {} failed: {e}", inp.id))?;
    }
    let (mut samples, mut errors) = (Vec::with_capacity(opts.requests), 0usize);
    for i in 0..opts.requests {
        let inp = &inputs[i % inputs.len()];
        match one_request(&client, &url, &inp.body).await {
            Ok(ms) => samples.push(ms),
            Err(e) => {
                errors += 1;
                tracing::warn!(id = %inp.id, error = %e, "HTTP request failed");
            }
        }
    }
    let http = Latency::from_samples(samples, errors);

    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(inputs.iter().map(|i| i.body.clone()).collect());
    let mut throughput = Vec::new();
    for &clients in &opts.concurrency {
        let clients = clients.max(1);
        let start = Instant::now();
        let deadline = start + opts.duration;
        let mut tasks = Vec::with_capacity(clients);
        for k in 0..clients {
            let (client, url, bodies) = (client.clone(), url.clone(), Arc::clone(&bodies));
            tasks.push(tokio::spawn(async move {
                let (mut ms, mut errs, mut i) = (Vec::new(), 0usize, k);
                while Instant::now() < deadline {
                    match one_request(&client, &url, &bodies[i % bodies.len()]).await {
                        Ok(x) => ms.push(x),
                        Err(e) => {
                            errs += 1;
                            tracing::warn!(error = %e, "HTTP request failed");
                        }
                    }
                    i += clients;
                }
                (ms, errs)
            }));
        }
        let (mut all, mut errs) = (Vec::new(), 0usize);
        for t in tasks {
            let (ms, e) = t.await.context("benchmark client task failed")?;
            all.extend(ms);
            errs += e;
        }
        let secs = start.elapsed().as_secs_f64();
        let ok = all.len();
        let lat = Latency::from_samples(all, errs);
        throughput.push(Throughput {
            clients,
            seconds: secs,
            ok,
            errors: errs,
            requests_per_s: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            p50_ms: lat.p50_ms,
            p99_ms: lat.p99_ms,
        });
    }
    let _ = stop_tx.send(());
    server.await.context("server task failed")??;
    Ok((http, throughput))
}

/// The human-readable table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let mb = |x: Option<f64>| x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1} MB"));
    s.push_str(&format!(
        "retort bench: {} BFCL simple_python entries, {} CPUs, model load {:.1} ms\n\n",
        r.entries, r.cpus, r.model_load_ms
    ));
    s.push_str(&format!(
        "{:<22}{:>9}{:>8}{:>10}{:>10}{:>10}{:>10}\n",
        "latency", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "mean ms"
    ));
    for (name, l) in [("in-process", &r.in_process), ("HTTP /tool-call", &r.http)] {
        s.push_str(&format!(
            "{:<22}{:>9}{:>8}{:>10.3}{:>10.3}{:>10.3}{:>10.3}\n",
            name, l.requests, l.errors, l.p50_ms, l.p95_ms, l.p99_ms, l.mean_ms
        ));
    }
    s.push_str(&format!(
        "\n{:<22}{:>9}{:>8}{:>10}{:>10}{:>10}{:>10}\n",
        "throughput (HTTP)", "seconds", "errors", "ok", "req/s", "p50 ms", "p99 ms"
    ));
    for t in &r.throughput {
        s.push_str(&format!(
            "{:<22}{:>9.1}{:>8}{:>10}{:>10.1}{:>10.3}{:>10.3}\n",
            format!("{} client(s)", t.clients),
            t.seconds,
            t.errors,
            t.ok,
            t.requests_per_s,
            t.p50_ms,
            t.p99_ms
        ));
    }
    s.push_str(&format!(
        "\npeak resident memory (VmHWM): {}; resident now: {}\n",
        mb(r.memory.peak_rss_mb),
        mb(r.memory.rss_mb)
    ));
    s
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = args.bfcl.as_deref().ok_or_else(|| {
        anyhow!(
            "no BFCL data: pass --bfcl DIR (or set RETORT_BFCL_DIR), the BFCL v4 data directory holding {SIMPLE_PYTHON}"
        )
    })?;
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    if !(args.duration_s.is_finite() && args.duration_s > 0.0) {
        bail!("--duration-s must be a positive number of seconds");
    }
    let mut inputs = load_bfcl(dir)?;
    if let Some(n) = args.distinct {
        if n == 0 {
            bail!("--distinct must be at least 1");
        }
        inputs.truncate(n);
    }
    let start = Instant::now();
    let caller = super::serve::load_caller_with_cache(
        args.model.as_deref(),
        args.tool_cache_mb.saturating_mul(1 << 20),
        &args.decode,
    )?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let opts = BenchOptions {
        requests: args.requests,
        duration: Duration::from_secs_f64(args.duration_s),
        concurrency: args.concurrency.clone(),
        max_concurrent_calls: args.max_concurrent_calls,
    };
    let report = run_bench(caller, &inputs, &opts, load_ms)?;
    print!("{}", table(&report));
    if let Some(out) = &args.json {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Call, CallerError, Prediction};

    /// TEST DOUBLE: calls the first tool with its required arguments taken
    /// from the enum's first member or a fixed string/number.
    struct FirstTool;

    impl ToolCaller for FirstTool {
        fn call(
            &self,
            _q: &str,
            tools: &[Tool],
            _o: &CallOptions,
        ) -> Result<Prediction, CallerError> {
            let t = tools
                .first()
                .ok_or_else(|| CallerError::InvalidRequest("no tools".into()))?;
            let args = t
                .parameters
                .required
                .iter()
                .filter_map(|r| t.parameters.properties.get(r).map(|s| (r, s)))
                .map(|(r, s)| {
                    let v = match (&s.enum_values, s.ty) {
                        (Some(e), _) => e[0].clone(),
                        (None, retort_core::SchemaType::Integer) => json!(1),
                        (None, retort_core::SchemaType::Number) => json!(1.5),
                        (None, retort_core::SchemaType::Boolean) => json!(true),
                        (None, retort_core::SchemaType::Array) => json!([]),
                        (None, retort_core::SchemaType::Object) => json!({}),
                        _ => json!("x"),
                    };
                    (r.clone(), v)
                })
                .collect();
            Ok(Prediction {
                calls: vec![Call::new(t.name.clone(), args)],
                confidence: 0.9,
            })
        }
    }

    const LINES: &str = r#"{"id": "simple_python_0", "question": [[{"role": "user", "content": "Find the area of a triangle with a base of 10 units and height of 5 units."}]], "function": [{"name": "calculate_triangle_area", "description": "Calculate the area of a triangle.", "parameters": {"type": "dict", "properties": {"base": {"type": "integer", "description": "b"}, "height": {"type": "integer", "description": "h"}, "unit": {"type": "string", "description": "u"}}, "required": ["base", "height"]}}]}
{"id": "simple_python_1", "question": [[{"role": "user", "content": "Calculate the factorial of 5."}]], "function": [{"name": "math.factorial", "description": "Factorial.", "parameters": {"type": "dict", "properties": {"number": {"type": "integer", "description": "n"}}, "required": ["number"]}}]}
"#;

    fn bfcl_dir(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(SIMPLE_PYTHON), text).expect("write");
        dir
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn loads_bfcl_lines() {
        let dir = bfcl_dir(LINES);
        let inputs = load_bfcl(dir.path()).expect("loads");
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[1].query, "Calculate the factorial of 5.");
        assert_eq!(inputs[1].tools[0].name, "math.factorial");
        let body: Value = serde_json::from_slice(&inputs[0].body).expect("json");
        assert_eq!(
            body["available_functions"][0]["parameters"]["type"],
            "object"
        );
        let bad = bfcl_dir(&format!("{LINES}{{\"id\": \"x\", \"question\": []}}\n"));
        let e = load_bfcl(bad.path()).expect_err("bad line");
        assert!(e.to_string().contains(":3: no user message"), "{e}");
        let e = load_bfcl(Path::new("/nonexistent-bfcl")).expect_err("missing");
        assert!(e.to_string().contains(SIMPLE_PYTHON), "{e}");
    }

    #[test]
    fn benchmark_runs_end_to_end_over_loopback() {
        let dir = bfcl_dir(LINES);
        let inputs = load_bfcl(dir.path()).expect("loads");
        let opts = BenchOptions {
            requests: 20,
            duration: Duration::from_millis(300),
            concurrency: vec![1, 4],
            max_concurrent_calls: Some(2),
        };
        let r = run_bench(Arc::new(FirstTool), &inputs, &opts, 1.0).expect("runs");
        assert_eq!(r.in_process.requests, 20);
        assert_eq!(r.in_process.errors, 0);
        assert_eq!(r.http.requests, 20);
        assert_eq!(r.http.errors, 0, "{r:?}");
        assert!(r.http.p50_ms > 0.0 && r.http.p50_ms <= r.http.p99_ms);
        assert_eq!(r.throughput.len(), 2);
        for t in &r.throughput {
            assert_eq!(t.errors, 0, "{t:?}");
            assert!(t.ok > 0 && t.requests_per_s > 0.0, "{t:?}");
        }
        if cfg!(target_os = "linux") {
            assert!(r.memory.peak_rss_mb.is_some_and(|m| m > 0.0));
        }
        let j = serde_json::to_value(&r).expect("json");
        assert!(j["throughput"][1]["requests_per_s"].is_number());
        let t = table(&r);
        assert!(
            t.contains("HTTP /tool-call") && t.contains("4 client(s)"),
            "{t}"
        );
    }
}
