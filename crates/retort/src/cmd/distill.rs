//! `retort distill`: a live teacher (Gemini or any OpenAI-compatible API)
//! writes user requests for your tools and answers them with function
//! calling; the answers become examples. See `crates/retort-teacher/README.md`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use retort_core::{Tool, ToolFormat};
use retort_teacher::{
    ApiKey, Cache, DistillConfig, DistillReport, Price, Protocol, RetryPolicy, Teacher,
    TeacherConfig, distill,
};

/// Which API the teacher speaks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeacherKind {
    /// Gemini `generateContent`; key from GEMINI_API_KEY.
    Gemini,
    /// OpenAI-compatible chat completions (OpenAI, Gemini's OpenAI endpoint,
    /// Ollama, vLLM, llama.cpp); key from OPENAI_API_KEY.
    Openai,
}

#[derive(clap::Args, Debug)]
pub struct DistillArgs {
    /// Which API the teacher speaks.
    #[arg(long, value_enum)]
    pub teacher: TeacherKind,
    /// Tool definitions (JSON): OpenAI, Gemini, MCP or BFCL style, a list or
    /// an object with `tools`.
    #[arg(long)]
    pub tools: PathBuf,
    /// User requests to synthesize and answer (the request budget).
    #[arg(long)]
    pub n: usize,
    /// Output JSONL. An existing file is resumed: done requests are skipped.
    #[arg(long)]
    pub out: PathBuf,
    /// API base URL, e.g. http://localhost:11434/v1 for Ollama.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Teacher model [default: gemini-2.5-flash / gpt-4.1-mini].
    #[arg(long)]
    pub model: Option<String>,
    /// Teacher requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Response cache directory [default: OUT.cache].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Stop sending paid requests once the estimated cost reaches this (USD).
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Seed of the synthesis plan (personas, styles, featured tools).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Requests asked for per synthesis call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Top alternatives per token to record (0: no log-probabilities).
    #[arg(long, default_value_t = 5)]
    pub top_logprobs: u8,
    /// Input price override, USD per million tokens.
    #[arg(long, requires = "price_output")]
    pub price_input: Option<f64>,
    /// Output price override, USD per million tokens.
    #[arg(long, requires = "price_input")]
    pub price_output: Option<f64>,
    /// Seconds for one HTTP attempt; a hung connection is abandoned after it.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Attempts per request (429, 5xx, timeouts and garbage are retried).
    #[arg(long, default_value_t = 6)]
    pub max_attempts: u32,
    /// First retry backoff in milliseconds (doubles, with jitter).
    #[arg(long, default_value_t = 500)]
    pub retry_base_ms: u64,
}

fn positive(name: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        bail!("{name} must be a positive number, got {v}")
    }
}

pub fn run(args: DistillArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.tools)
        .with_context(|| format!("reading tools from {}", args.tools.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.tools.display()))?;
    let tools = Tool::parse_many(&value, ToolFormat::Auto)
        .with_context(|| format!("reading tools from {}", args.tools.display()))?;
    if tools.is_empty() {
        bail!("{} holds no tools", args.tools.display());
    }
    if args.concurrency == 0 || args.batch_size == 0 {
        bail!("--concurrency and --batch-size must be at least 1");
    }
    let timeout = positive("--timeout", args.timeout)?;
    let max_cost = args
        .max_cost
        .map(|c| positive("--max-cost", c))
        .transpose()?;
    let price = match (args.price_input, args.price_output) {
        (Some(i), Some(o)) if i >= 0.0 && o >= 0.0 && i.is_finite() && o.is_finite() => {
            Some(Price {
                input_per_mtok: i,
                output_per_mtok: o,
            })
        }
        (None, None) => None,
        _ => bail!(
            "--price-input and --price-output must be given together, as non-negative numbers"
        ),
    };
    let protocol = match args.teacher {
        TeacherKind::Gemini => Protocol::Gemini,
        TeacherKind::Openai => Protocol::OpenAi,
    };
    let config = TeacherConfig {
        protocol,
        model: args.model.clone(),
        base_url: args.base_url.clone(),
        api_key: ApiKey::from_env(protocol.key_env()),
        retry: RetryPolicy {
            max_attempts: args.max_attempts.max(1),
            base_delay: Duration::from_millis(args.retry_base_ms),
            request_timeout: Duration::from_secs_f64(timeout),
            connect_timeout: Duration::from_secs_f64(timeout.min(10.0)),
            ..RetryPolicy::default()
        },
        top_logprobs: args.top_logprobs,
        price,
        max_cost,
    };
    let cache_dir = args.cache_dir.clone().unwrap_or_else(|| {
        let mut p = args.out.clone().into_os_string();
        p.push(".cache");
        PathBuf::from(p)
    });
    let cache = Cache::open(&cache_dir)?;
    let teacher = Teacher::new(config, Some(cache))?;
    eprintln!(
        "distilling {} requests on {} tools with {} model {} (cache: {})",
        args.n,
        tools.len(),
        protocol.name(),
        teacher.model(),
        cache_dir.display()
    );
    let cfg = DistillConfig {
        tools,
        n: args.n,
        out: args.out.clone(),
        concurrency: args.concurrency,
        seed: args.seed,
        batch_size: args.batch_size,
        source: "distill".into(),
        synth_temperature: 1.0,
        progress: std::io::stderr().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(distill(Arc::new(teacher), cfg))?;
    print_report(&report, &args);
    Ok(())
}

fn print_report(r: &DistillReport, args: &DistillArgs) {
    println!(
        "wrote {} examples to {} ({} were already there; {} in the file)",
        r.written,
        args.out.display(),
        r.already_done,
        r.total_in_output
    );
    if !r.dropped.is_empty() {
        let reasons: Vec<String> = r.dropped.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("dropped {}: {}", r.dropped_total(), reasons.join(", "));
    }
    if !r.synthesis_failures.is_empty() {
        let reasons: Vec<String> = r
            .synthesis_failures
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "synthesis calls failed: {} of {}",
            reasons.join(", "),
            r.synthesis_batches
        );
    }
    let m = &r.meter;
    let cost = m.cost_usd.map_or_else(
        || "unknown (model not in the price table)".to_string(),
        |c| format!("${c:.4} (estimate)"),
    );
    println!(
        "teacher: {} paid requests, {} from the cache, {} retries, {} input + {} output tokens, cost {cost}",
        m.paid_requests, m.cache_hits, m.retries, m.input_tokens, m.output_tokens
    );
    if r.stopped_by_budget {
        println!(
            "stopped early: the --max-cost budget is spent; re-run with a larger one to continue"
        );
    } else if r.planned < args.n {
        println!(
            "the teacher wrote only {} distinct requests of the {} asked for; re-run with another --seed for more",
            r.planned, args.n
        );
    }
}
