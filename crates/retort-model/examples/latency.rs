//! Latency of `Model::predict` over BFCL-style entries (one JSON object per
//! line with `question` and `function`), batch size 1, this process only.
//!
//! `cargo run --release -p retort-model --example latency -- MODEL_DIR FILE [N] [REPEATS]`
//! (each entry once cold, then REPEATS warm calls that are timed)

use std::time::Instant;

use retort_core::{CallOptions, Tool, ToolFormat};
use retort_model::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: latency MODEL_DIR FILE [N]");
        std::process::exit(2);
    };
    let n: usize = args.get(3).and_then(|x| x.parse().ok()).unwrap_or(50);
    let repeats: usize = args.get(4).and_then(|x| x.parse().ok()).unwrap_or(1);
    // RUST_LOG=retort_model=debug prints each request's render/encode/decode split.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let model = Model::load(std::path::Path::new(dir))?;
    let text = std::fs::read_to_string(file)?;
    let mut times = Vec::new();
    let mut tokens = Vec::new();
    let mut enc_times = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(n) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let query = v["question"]
            .as_array()
            .and_then(|turns| turns.last())
            .and_then(|t| t.as_array())
            .and_then(|msgs| msgs.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let tools: Vec<Tool> = Tool::parse_many(&v["function"], ToolFormat::Bfcl)?;
        let r = retort_model::render::render(
            &model.tok,
            &query,
            &tools,
            retort_model::model::infer_limits(&model.cfg),
            &[],
        )?;
        tokens.push(r.len());
        // The encoder pass of a request whose tools are not cached yet
        // (hand-written, under the model's block mask if it has one);
        // block-masked models' warm requests reuse cached tools instead.
        let t = Instant::now();
        let enc = retort_model::fastenc::full_pass(
            &model.net,
            &model.params,
            &r.ids,
            &r.segs,
            model.tok.sep,
            &model.device,
        )?;
        let _ = enc.into_data();
        enc_times.push(t.elapsed().as_secs_f64() * 1000.0);
        // Twice: the second call finds the tools in the cache (block-masked
        // models); the figure kept is the warm one.
        let _ = model.predict(&query, &tools, &CallOptions::default())?;
        for _ in 0..repeats {
            let t = Instant::now();
            let _ = model.predict(&query, &tools, &CallOptions::default())?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    enc_times.sort_by(f64::total_cmp);
    tokens.sort_unstable();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "{} requests: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms; median input {} tokens",
        times.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        tokens[tokens.len() / 2]
    );
    println!(
        "encoder alone: p50 {:.1} ms",
        enc_times[enc_times.len() / 2]
    );
    Ok(())
}
