//! `retort serve`: the HTTP server (see crates/retort-server/README.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use retort_core::ToolCaller;
use retort_server::{ApiKey, FallbackConfig, ServerConfig};

/// Serve a model over HTTP.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Model directory; the embedded default model when absent.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Bearer token clients must send (`Authorization: Bearer KEY`).
    #[arg(
        long,
        env = "RETORT_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        value_parser = parse_api_key
    )]
    pub api_key: Option<ApiKey>,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, default_value_t = retort_server::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Time limit of one request, in milliseconds (then 408).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Memory for cached tool encodings, in MiB (models with the block
    /// attention mask encode each tool once and reuse it; 0 turns it off).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub tool_cache_mb: usize,
    /// Most model calls admitted at once (running on the model's threads, one per
    /// CPU, or queued there); others wait. Default: the number of CPUs plus one.
    #[arg(long, value_name = "N")]
    pub max_concurrent_calls: Option<usize>,
    #[command(flatten)]
    pub decode: super::decode::DecodeArgs,
    #[command(flatten)]
    pub fallback: FallbackArgs,
}

/// Confidence-gated fallback to an OpenAI-compatible teacher. Its key comes
/// from RETORT_FALLBACK_API_KEY (or OPENAI_API_KEY).
#[derive(clap::Args, Debug, Clone)]
pub struct FallbackArgs {
    /// Teacher base URL (`https://host/v1`) or its `/chat/completions` URL.
    #[arg(long, value_name = "URL", requires = "fallback_threshold")]
    pub fallback_url: Option<String>,
    /// Answers with confidence below this (0..1) go to the teacher.
    #[arg(long, value_name = "X", requires = "fallback_url")]
    pub fallback_threshold: Option<f64>,
    /// Teacher model name sent upstream.
    #[arg(long, default_value = "gpt-4o-mini", value_name = "M")]
    pub fallback_model: String,
    /// JSONL file the (query, tools, teacher calls) examples are appended to.
    #[arg(long, value_name = "FILE", requires = "fallback_url")]
    pub fallback_log: Option<PathBuf>,
    /// Time limit of one teacher request, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub fallback_timeout_ms: u64,
}

impl FallbackArgs {
    /// The fallback settings, with the key read from the environment.
    pub fn config(&self) -> anyhow::Result<Option<FallbackConfig>> {
        let (Some(url), Some(threshold)) = (&self.fallback_url, self.fallback_threshold) else {
            return Ok(None);
        };
        if !(threshold.is_finite() && (0.0..=1.0).contains(&threshold)) {
            bail!("--fallback-threshold must be between 0 and 1, got {threshold}");
        }
        let api_key = std::env::var("RETORT_FALLBACK_API_KEY")
            .ok()
            .and_then(ApiKey::new)
            .or_else(|| std::env::var("OPENAI_API_KEY").ok().and_then(ApiKey::new));
        if api_key.is_none() {
            tracing::warn!(
                "no RETORT_FALLBACK_API_KEY or OPENAI_API_KEY set: teacher requests are sent without a key"
            );
        }
        Ok(Some(FallbackConfig {
            url: url.clone(),
            threshold,
            model: self.fallback_model.clone(),
            log_path: self.fallback_log.clone(),
            api_key,
            timeout: Duration::from_millis(self.fallback_timeout_ms.max(1)),
        }))
    }
}

/// A bearer token from the command line or the environment; its `Debug`
/// never shows it.
fn parse_api_key(s: &str) -> Result<ApiKey, String> {
    ApiKey::new(s).ok_or_else(|| "the API key is empty".to_string())
}

/// The one place the CLI obtains a model (`serve`, `call`, `bench`, `eval
/// bfcl`): from `--model DIR`, or the embedded default model when `None`,
/// with the decoding rules `--decode` sets.
pub fn load_caller(
    model: Option<&Path>,
    decode: &super::decode::DecodeArgs,
) -> anyhow::Result<Arc<dyn ToolCaller>> {
    load_caller_with_cache(model, retort_model::model::DEFAULT_TOOL_CACHE_BYTES, decode)
}

/// [`load_caller`] with a tool-encoding cache of `cache_bytes`.
pub fn load_caller_with_cache(
    model: Option<&Path>,
    cache_bytes: usize,
    decode: &super::decode::DecodeArgs,
) -> anyhow::Result<Arc<dyn ToolCaller>> {
    let mut loaded = match model {
        Some(dir) => retort_model::Model::load(dir)
            .with_context(|| format!("cannot load the model in {}", dir.display()))?,
        None => {
            retort_model::Model::embedded().context("cannot load the embedded default model")?
        }
    };
    if !decode.decode.is_empty() {
        let mut rules = loaded.cfg.decode.clone();
        decode.apply(&mut rules).context("--decode")?;
        loaded
            .update_config(|c| c.decode = rules)
            .context("--decode")?;
    }
    loaded.set_tool_cache_bytes(cache_bytes);
    Ok(Arc::new(loaded))
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.max_body_bytes == 0 {
        bail!("--max-body-bytes must be at least 1");
    }
    if args.timeout_ms == 0 {
        bail!("--timeout-ms must be at least 1");
    }
    let fallback = args.fallback.config()?;
    let config = ServerConfig {
        api_key: args.api_key.clone(),
        max_body_bytes: args.max_body_bytes,
        timeout: Duration::from_millis(args.timeout_ms),
        model_name: "retort".to_string(),
        max_concurrent_calls: args
            .max_concurrent_calls
            .unwrap_or_else(retort_server::default_concurrency)
            .max(1),
        fallback,
    };
    let auth = if config.api_key.is_some() {
        "bearer token"
    } else {
        "none"
    };
    let start = Instant::now();
    let caller = load_caller_with_cache(
        args.model.as_deref(),
        args.tool_cache_mb.saturating_mul(1 << 20),
        &args.decode,
    )?;
    tracing::info!(
        "model loaded in {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let app = retort_server::app(caller, config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr().unwrap_or(args.addr);
        tracing::info!("listening on http://{addr} (auth: {auth})");
        retort_server::serve(listener, app, retort_server::shutdown_signal()).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}
