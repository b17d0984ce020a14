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
    /// Measure tool ranking for big catalogues: how often a query's gold
    /// tool is among the top k of a whole catalogue.
    ///
    /// The catalogue is every distinct tool (by name) of the examples file,
    /// or of the BFCL categories; each query with a call ranks all of it.
    /// Compares ranking by shared word pieces with sentence-embedding
    /// cosine after 1..6 encoder layers (`rank_layers` in config.json, which
    /// decides which tools are left out when a request's tools do not fit).
    /// Prints recall@k and the mean reciprocal rank.
    Rank(RankArgs),
    /// Score a model on a validation file (canonical JSONL, held-out tools):
    /// exact calls overall and by gold shape (single, multiple_choice,
    /// parallel, no_call), with the standard error, the confidence
    /// calibration, and optionally JSON and a failures file.
    ///
    /// This is where models, decoding settings and thresholds are chosen;
    /// BFCL is for scoring a shipped model once.
    Val(super::eval_val::ValArgs),
}

#[derive(clap::Args, Debug)]
pub struct RankArgs {
    /// Canonical examples (JSONL, as `retort data build` writes), e.g. the
    /// held-out-tool `val.jsonl`.
    #[arg(long, value_name = "FILE", required_unless_present = "bfcl")]
    examples: Option<PathBuf>,
    /// A BFCL v4 data directory instead of --examples (testing only).
    #[arg(long, value_name = "DIR", conflicts_with = "examples")]
    bfcl: Option<PathBuf>,
    /// With --bfcl: categories whose entries and tools to use.
    #[arg(
        long,
        value_name = "A,B",
        value_delimiter = ',',
        default_value = "simple_python"
    )]
    categories: Vec<Category>,
    /// Model directory (default: the embedded model).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Rankings to measure: 0 is shared word pieces, N >= 1 is embeddings
    /// after N encoder layers.
    #[arg(
        long,
        value_name = "N,M",
        value_delimiter = ',',
        default_value = "0,1,2,3,4,5,6"
    )]
    layers: Vec<usize>,
    /// Also measure each embedding ranking mixed with word pieces: shared
    /// word pieces + W x cosine (`rank_weight` in config.json).
    #[arg(
        long,
        value_name = "W,V",
        value_delimiter = ',',
        default_value = "0.5,1,2"
    )]
    mix: Vec<f64>,
    /// The k of recall@k.
    #[arg(
        long,
        value_name = "K,L",
        value_delimiter = ',',
        default_value = "1,3,5,10"
    )]
    k: Vec<usize>,
    /// Rank, for each query, only the tools it came with (what a request
    /// whose tools do not fit ranks) instead of the whole catalogue.
    #[arg(long)]
    own_tools: bool,
    /// Use only the first N queries.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
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
    #[command(flatten)]
    decode: super::decode::DecodeArgs,
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Bfcl(args) => bfcl(args),
        EvalCommand::Rank(args) => rank(args),
        EvalCommand::Val(args) => super::eval_val::run(args),
    }
}

/// A query, the tools it came with, and the names of the tools it calls.
type RankPair = (String, Vec<retort_core::Tool>, Vec<String>);

/// Scores of tools for a query.
type ScoreFn<'a> =
    dyn FnMut(&str, &[retort_core::Tool]) -> Result<Vec<f32>, retort_model::ModelError> + 'a;

fn rank(args: RankArgs) -> anyhow::Result<()> {
    use retort_model::rank::{RankCase, Ranker, evaluate_ranking};
    if args.k.is_empty() || args.k.contains(&0) {
        anyhow::bail!("--k needs values of at least 1");
    }
    let (source, pairs): (String, Vec<RankPair>) = match (&args.examples, &args.bfcl) {
        (Some(path), _) => {
            // The error names the file already.
            let (examples, bad) = retort_train::data::load_jsonl(path)?;
            if bad > 0 {
                eprintln!("note: {bad} lines of {} are not examples", path.display());
            }
            let pairs = examples
                .into_iter()
                .map(|e| {
                    let gold = e.calls.iter().map(|c| c.name.clone()).collect();
                    (e.query, e.tools, gold)
                })
                .collect();
            (path.display().to_string(), pairs)
        }
        (None, Some(dir)) => {
            let entries = retort_eval::load_limited(dir, &args.categories, None)
                .with_context(|| format!("loading BFCL data from {}", dir.display()))?;
            let pairs = entries
                .into_iter()
                .map(|e| {
                    let gold = e
                        .answer
                        .iter()
                        .flatten()
                        .filter_map(|a| a.as_object())
                        .flat_map(|o| o.keys().cloned())
                        .collect();
                    (e.query, e.tools, gold)
                })
                .collect();
            (format!("BFCL {}", dir.display()), pairs)
        }
        (None, None) => anyhow::bail!("give --examples FILE or --bfcl DIR"),
    };
    let mut catalogue: Vec<retort_core::Tool> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (_, tools, _) in &pairs {
        for t in tools {
            if names.insert(t.name.clone()) {
                catalogue.push(t.clone());
            }
        }
    }
    let mut own: Vec<(RankCase, Vec<retort_core::Tool>)> = pairs
        .into_iter()
        .filter(|(_, _, gold)| !gold.is_empty())
        .map(|(query, tools, gold)| (RankCase { query, gold }, tools))
        .collect();
    if let Some(n) = args.limit {
        own.truncate(n);
    }
    let cases: Vec<RankCase> = own.iter().map(|(c, _)| c.clone()).collect();
    if cases.is_empty() || catalogue.is_empty() {
        anyhow::bail!("{source} has no queries with calls to rank");
    }
    let model = match &args.model {
        Some(dir) => retort_model::Model::load(dir)
            .with_context(|| format!("cannot load the model in {}", dir.display()))?,
        None => {
            retort_model::Model::embedded().context("cannot load the embedded default model")?
        }
    };
    let max_layers = model.cfg.enc_layers;
    if let Some(&bad) = args.layers.iter().find(|&&n| n > max_layers) {
        anyhow::bail!("--layers {bad}: the model has {max_layers} encoder layers");
    }
    println!(
        "{source}: {} queries ranking a catalogue of {} tools (model rank_layers: {})",
        cases.len(),
        catalogue.len(),
        model.cfg.rank_layers
    );
    let ks: Vec<String> = args.k.iter().map(|k| format!("R@{k}")).collect();
    println!(
        "{:<22} {} {:>7} {:>10}",
        "ranking",
        ks.iter().map(|k| format!("{k:>7}")).collect::<String>(),
        "MRR",
        "ms/query"
    );
    let overlap = retort_model::render::OverlapIndex::new(&model.tok, &catalogue)?;
    let row = |label: String, score: &mut ScoreFn<'_>| -> anyhow::Result<()> {
        let t0 = std::time::Instant::now();
        let report = if args.own_tools {
            // Each query ranks only the tools it came with.
            let (mut golds, mut rr) = (0usize, 0f64);
            let mut hits = vec![0f64; args.k.len()];
            for (case, tools) in &own {
                let r = evaluate_ranking(tools, std::slice::from_ref(case), &args.k, &mut |q| {
                    score(q, tools)
                })?;
                golds += r.golds;
                rr += r.mrr * r.golds as f64;
                for (h, (_, x)) in hits.iter_mut().zip(&r.recall) {
                    *h += x * r.golds as f64;
                }
            }
            let g = golds.max(1) as f64;
            retort_model::rank::RankReport {
                golds,
                recall: args
                    .k
                    .iter()
                    .zip(&hits)
                    .map(|(&k, &h)| (k, h / g))
                    .collect(),
                mrr: rr / g,
            }
        } else {
            evaluate_ranking(&catalogue, &cases, &args.k, &mut |q| score(q, &catalogue))?
        };
        let ms = t0.elapsed().as_secs_f64() * 1e3 / cases.len() as f64;
        let cells: String = report
            .recall
            .iter()
            .map(|(_, r)| format!("{:>7.3}", r))
            .collect();
        println!("{label:<22} {cells} {:>7.3} {ms:>10.2}", report.mrr);
        Ok(())
    };
    for &n in &args.layers {
        if n == 0 {
            row("word pieces".into(), &mut |q, ts| {
                if args.own_tools {
                    retort_model::render::OverlapIndex::new(&model.tok, ts)?.scores(q)
                } else {
                    overlap.scores(q)
                }
            })?;
            continue;
        }
        let cache = retort_model::cache::EmbedCache::new(64 << 20);
        let ranker = Ranker {
            net: &model.net,
            params: &model.params,
            tok: &model.tok,
            device: &model.device,
            layers: n,
            cache: Some(&cache),
        };
        // The catalogue is embedded once, untimed; the time per query
        // covers embedding the query and scoring the whole catalogue.
        let embedded = ranker.embed_tools(&catalogue)?;
        let cosines = |q: &str, ts: &[retort_core::Tool]| {
            if args.own_tools {
                ranker.scores(q, ts)
            } else {
                ranker.scores_against(q, &embedded)
            }
        };
        row(format!("embedding({n})"), &mut |q, ts| cosines(q, ts))?;
        for &w in &args.mix {
            row(format!("words + {w} x emb({n})"), &mut |q, ts| {
                let o = if args.own_tools {
                    retort_model::render::OverlapIndex::new(&model.tok, ts)?.scores(q)?
                } else {
                    overlap.scores(q)?
                };
                let e = cosines(q, ts)?;
                Ok(o.iter().zip(&e).map(|(a, b)| a + w as f32 * b).collect())
            })?;
        }
    }
    Ok(())
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
    if (args.gold || args.predictions.is_some()) && !args.decode.decode.is_empty() {
        anyhow::bail!(
            "--decode sets a model's decoding rules; --gold and --predictions run no model"
        );
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
        let caller = super::serve::load_caller(args.model.as_deref(), &args.decode)?;
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
