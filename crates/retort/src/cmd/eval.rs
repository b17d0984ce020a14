//! `retort eval`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use retort_core::Call;
use retort_eval::{Category, Failure, Reason, Report};

#[derive(clap::Subcommand, Debug)]
pub enum EvalCommand {
    /// Score a model on BFCL v4 with BFCL's AST-checker rules (issue #3).
    ///
    /// Prints a per-category table (correct/total, accuracy, latency, the
    /// commonest failure reasons) and BFCL's aggregates: non-live =
    /// unweighted mean of simple (itself the mean of python/java/javascript),
    /// multiple, parallel and parallel_multiple; live = the four live AST
    /// categories weighted by entry count; irrelevance, live_irrelevance and
    /// live_relevance separately.
    Bfcl(BfclArgs),
}

#[derive(clap::Args, Debug)]
pub struct BfclArgs {
    /// The BFCL v4 data directory (`bfcl_eval/data` of the bfcl-eval
    /// package: `BFCL_v4_<category>.json` files plus `possible_answer/`).
    /// Fetch it with `scripts/fetch-bfcl.sh DIR`.
    #[arg(long, value_name = "DIR", env = "RETORT_BFCL_DIR")]
    data: PathBuf,
    /// Model directory to evaluate; without it (and without --gold or
    /// --predictions) the embedded default model is used.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["gold", "predictions"])]
    model: Option<PathBuf>,
    /// Score the answer key itself (the first acceptable value of each
    /// parameter) instead of a model: a self-check of the scorer.
    /// live_relevance has no answer key and is left out.
    #[arg(long, conflicts_with = "predictions")]
    gold: bool,
    /// Score saved predictions instead of running a model: a JSONL file of
    /// `{"id": ..., "calls": [{"name": ..., "arguments": {..}}]}`, one line
    /// per entry. Entries without a line fail with reason model_error.
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
    /// Comma-separated categories to run (default: all 13): simple_python,
    /// simple_java, simple_javascript, multiple, parallel,
    /// parallel_multiple, irrelevance, live_simple, live_multiple,
    /// live_parallel, live_parallel_multiple, live_irrelevance,
    /// live_relevance.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    categories: Vec<Category>,
    /// Run only the first N entries of each category (for quick checks).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Write the full report (per-category scores, aggregates, latency,
    /// schema validity, every entry's verdict) as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Write one JSON line per failed entry (id, category, reason, detail,
    /// expected, got) to this file, for error analysis.
    #[arg(long, value_name = "OUT.jsonl")]
    failures: Option<PathBuf>,
    /// Draw an SVG bar chart of the results beside the published reference
    /// numbers (FunctionGemma-270M, Qwen3-0.6B FC, Hammer2.1-0.5B FC).
    #[arg(long, value_name = "OUT.svg")]
    chart: Option<PathBuf>,
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Bfcl(args) => bfcl(args),
    }
}

fn bfcl(args: BfclArgs) -> anyhow::Result<()> {
    let categories = if args.categories.is_empty() {
        Category::ALL.to_vec()
    } else {
        args.categories.clone()
    };
    if args.limit == Some(0) {
        anyhow::bail!("--limit must be at least 1");
    }
    let entries = retort_eval::load_limited(&args.data, &categories, args.limit)
        .with_context(|| format!("loading BFCL data from {}", args.data.display()))?;
    tracing::info!(
        entries = entries.len(),
        categories = categories.len(),
        "loaded BFCL"
    );
    let report = if args.gold {
        if categories.contains(&Category::LiveRelevance) {
            eprintln!("note: live_relevance has no answer key; --gold leaves it out");
        }
        retort_eval::evaluate_gold(&entries)
    } else if let Some(path) = &args.predictions {
        let preds = read_predictions(path)?;
        score_predictions(&entries, &preds, &path.display().to_string())
    } else {
        let caller = super::serve::load_caller(args.model.as_deref())?;
        let name = args
            .model
            .as_ref()
            .map_or_else(|| "default".to_string(), |m| m.display().to_string());
        retort_eval::evaluate_entries(caller.as_ref(), &entries, &name)
    };
    print!("{}", report.table());
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        retort_eval::write_atomic(p, text.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.failures {
        retort_eval::write_atomic(p, report.failures_jsonl().as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.chart {
        let refs = retort_eval::reference_models()?;
        let svg = retort_eval::svg_chart(&report, &refs)?;
        retort_eval::write_atomic(p, svg.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct PredictionLine {
    id: String,
    #[serde(default)]
    calls: Vec<Call>,
}

fn read_predictions(path: &Path) -> anyhow::Result<HashMap<String, Vec<Call>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: PredictionLine = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a prediction line", path.display(), i + 1))?;
        out.insert(p.id, p.calls);
    }
    Ok(out)
}

fn score_predictions(
    entries: &[retort_eval::Entry],
    preds: &HashMap<String, Vec<Call>>,
    name: &str,
) -> Report {
    let results = entries
        .iter()
        .map(|e| {
            let got = preds.get(&e.id).cloned();
            let verdict = match &got {
                Some(calls) => retort_eval::score_entry(e, calls),
                None => Err(Failure::new(
                    Reason::ModelError,
                    "no prediction for this entry",
                )),
            };
            let got = got.unwrap_or_default();
            retort_eval::EntryResult {
                id: e.id.clone(),
                category: e.category,
                ok: verdict.is_ok(),
                failure: verdict.err(),
                expected: e.answer.clone(),
                schema_invalid_calls: got
                    .iter()
                    .filter(|c| retort_core::validate(c, &e.tools).is_err())
                    .count(),
                got,
                latency_ms: 0.0,
            }
        })
        .collect();
    Report::from_results(name, results)
}
