//! `retort eval val`: exact-call accuracy on a validation file, by shape.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use super::decode::DecodeArgs;

#[derive(clap::Args, Debug)]
pub struct ValArgs {
    /// Canonical examples (JSONL, as `retort data build` writes), e.g. its
    /// held-out-tool `val.jsonl`. This is where models, settings and
    /// thresholds are chosen; BFCL is scored once per shipped model.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Model directory (default: the embedded model).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Score only the first N examples.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Write the report as JSON: `exact_pct` overall and per category
    /// (`single`, `multiple_choice`, `parallel`, `no_call`), with counts,
    /// the standard error, decode failures, milliseconds per example, the
    /// fitted confidence temperature and ECE, and the decoding settings.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Write one JSON line per example that is not exact (id, shape, query,
    /// expected, got, confidence).
    #[arg(long, value_name = "OUT.jsonl")]
    failures: Option<PathBuf>,
}

pub fn run(a: ValArgs) -> anyhow::Result<()> {
    let mut model = match &a.model {
        Some(dir) => retort_model::Model::load(dir)
            .with_context(|| format!("cannot load the model in {}", dir.display()))?,
        None => {
            retort_model::Model::embedded().context("cannot load the embedded default model")?
        }
    };
    let mut err = None;
    model.update_config(|c| err = a.decode.apply(&mut c.decode).err())?;
    if let Some(e) = err {
        return Err(e).context("--decode");
    }
    let (mut examples, bad) = retort_train::data::load_jsonl(&a.data)?;
    if let Some(n) = a.limit {
        examples.truncate(n);
    }
    anyhow::ensure!(
        !examples.is_empty(),
        "{}: no readable examples ({bad} unreadable lines)",
        a.data.display()
    );
    let rep = retort_train::eval::evaluate(&model.net, &model.params, &model.tok, &examples);
    let cal = retort_train::eval::calibrate(&rep.outcomes);
    let n = rep.n.max(1) as f64;
    let p = rep.exact as f64 / n;
    let se = 100.0 * (p * (1.0 - p) / n).sqrt();
    println!(
        "{}: exact calls {:.2}% ({}/{}, standard error {:.2} points), {} decode failures, {:.1} ms/example",
        a.data.display(),
        100.0 * p,
        rep.exact,
        rep.n,
        se,
        rep.failures,
        rep.millis / n
    );
    println!("by gold shape: {}", rep.category_summary());
    println!(
        "confidence: temperature {} fits best on these examples (ECE {:.4} at temperature 1, {:.4} at {})",
        cal.temperature, cal.ece_before, cal.ece_after, cal.temperature
    );
    if let Some(path) = &a.failures {
        let text = retort_train::eval::failures_jsonl(&examples, &rep, cal.temperature);
        retort_core::fsutil::write_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &a.json {
        let categories: serde_json::Map<String, serde_json::Value> = rep
            .by_category
            .iter()
            .map(|(c, &(ok, total))| {
                (
                    c.as_str().to_string(),
                    json!({
                        "exact": ok,
                        "n": total,
                        "exact_pct": 100.0 * ok as f64 / total.max(1) as f64,
                    }),
                )
            })
            .collect();
        let report = json!({
            "data": a.data.display().to_string(),
            "model": a.model.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "embedded".into()),
            "n": rep.n,
            "exact": rep.exact,
            "exact_pct": 100.0 * p,
            "standard_error_pct": se,
            "decode_failures": rep.failures,
            "ms_per_example": rep.millis / n,
            "categories": categories,
            "confidence": {
                "fitted_temperature": cal.temperature,
                "ece_at_1": cal.ece_before,
                "ece_fitted": cal.ece_after,
            },
            "decode": model.cfg.decode,
        });
        let text = serde_json::to_string_pretty(&report)?;
        retort_core::fsutil::write_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
