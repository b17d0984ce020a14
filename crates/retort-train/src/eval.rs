//! Exact-call accuracy and confidence calibration.

use retort_core::{Call, CallOptions, Category, Example};
use retort_model::model::{TEMPERATURES, greedy};
use retort_model::net::{Net, Params};
use retort_model::render::Tok;
use serde_json::Value;

/// JSON equality where numbers compare by value (`5` equals `5.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn call_eq(a: &Call, b: &Call) -> bool {
    a.name == b.name
        && a.arguments.len() == b.arguments.len()
        && a.arguments
            .iter()
            .all(|(k, v)| b.arguments.get(k).is_some_and(|w| json_eq(v, w)))
}

/// Same calls, in any order.
pub fn calls_match(pred: &[Call], gold: &[Call]) -> bool {
    if pred.len() != gold.len() {
        return false;
    }
    let mut used = vec![false; gold.len()];
    pred.iter().all(|p| {
        match gold
            .iter()
            .enumerate()
            .find(|(i, g)| !used[*i] && call_eq(p, g))
        {
            Some((i, _)) => {
                used[i] = true;
                true
            }
            None => false,
        }
    })
}

/// One decoded example.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub correct: bool,
    /// Sequence log-probability at each of [`TEMPERATURES`].
    pub logp: Vec<f64>,
    pub failed: bool,
    /// The decoded calls (empty when decoding failed).
    pub calls: Vec<Call>,
    /// Why decoding failed, if it did.
    pub error: Option<String>,
}

/// Results over a set of examples.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    pub n: usize,
    pub exact: usize,
    pub failures: usize,
    pub outcomes: Vec<Outcome>,
    pub millis: f64,
    /// Exact calls and examples per shape of the gold answer.
    pub by_category: std::collections::BTreeMap<Category, (usize, usize)>,
}

impl EvalReport {
    /// `single 40/100 (40.0%), multiple_choice ...`: exact calls per shape.
    pub fn category_summary(&self) -> String {
        self.by_category
            .iter()
            .map(|(c, &(ok, n))| {
                format!(
                    "{} {ok}/{n} ({:.1}%)",
                    c.as_str(),
                    100.0 * ok as f64 / n.max(1) as f64
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn accuracy(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.exact as f64 / self.n as f64
        }
    }
}

/// Greedy-decode every example and compare with its gold calls.
pub fn evaluate(net: &Net, params: &Params, tok: &Tok, examples: &[Example]) -> EvalReport {
    let device = burn::tensor::Device::flex();
    let start = std::time::Instant::now();
    let mut rep = EvalReport::default();
    // Fresh for these parameters: validation examples share their tools.
    let cache = retort_model::cache::ToolCache::new(retort_model::model::DEFAULT_TOOL_CACHE_BYTES);
    let embeds =
        retort_model::cache::EmbedCache::new(retort_model::rank::DEFAULT_EMBED_CACHE_BYTES);
    // Host copies of the decoder's weights for fast steps (burn's steps if
    // they cannot be made).
    let fast = retort_model::fastdec::HostDecoder::new(net, params)
        .map_err(|e| tracing::debug!("host decoder unavailable: {e}"))
        .ok();
    for ex in examples {
        rep.n += 1;
        let tally = rep.by_category.entry(ex.category()).or_default();
        tally.1 += 1;
        match greedy(
            net,
            params,
            tok,
            &ex.query,
            &ex.tools,
            &CallOptions::default(),
            &device,
            retort_model::model::Aids {
                tool_cache: Some(&cache),
                host_dec: fast.as_ref(),
                embed_cache: Some(&embeds),
                all_temperatures: true,
            },
        ) {
            Ok(d) => {
                let ok = calls_match(&d.calls, &ex.calls);
                rep.exact += ok as usize;
                tally.0 += ok as usize;
                rep.outcomes.push(Outcome {
                    correct: ok,
                    logp: d.logp,
                    failed: false,
                    calls: d.calls,
                    error: None,
                });
            }
            Err(e) => {
                tracing::debug!("{}: decoding failed: {e}", ex.id);
                rep.failures += 1;
                rep.outcomes.push(Outcome {
                    correct: false,
                    logp: vec![f64::NEG_INFINITY; TEMPERATURES.len()],
                    failed: true,
                    calls: Vec::new(),
                    error: Some(e.to_string()),
                });
            }
        }
    }
    rep.millis = start.elapsed().as_secs_f64() * 1000.0;
    rep
}

/// One JSON line per example whose decoded calls are not exactly its gold
/// calls: `{id, shape, query, expected, got, confidence, error}` (confidence
/// at `temperature`). `examples` and `rep` must be the same evaluation.
pub fn failures_jsonl(examples: &[Example], rep: &EvalReport, temperature: f64) -> String {
    let k = TEMPERATURES
        .iter()
        .position(|&t| (t - temperature).abs() < 1e-9);
    let mut out = String::new();
    for (ex, o) in examples.iter().zip(&rep.outcomes) {
        if o.correct {
            continue;
        }
        let confidence = k
            .and_then(|k| o.logp.get(k))
            .map(|l| l.exp().clamp(0.0, 1.0));
        let line = serde_json::json!({
            "id": ex.id,
            "shape": ex.category().as_str(),
            "query": ex.query,
            "expected": ex.calls,
            "got": o.calls,
            "confidence": confidence,
            "error": o.error,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// Expected calibration error with `bins` equal-width bins.
pub fn ece(conf: &[f64], correct: &[bool], bins: usize) -> f64 {
    let n = conf.len().min(correct.len());
    if n == 0 {
        return 0.0;
    }
    let bins = bins.max(1);
    let mut sum_c = vec![0f64; bins];
    let mut sum_a = vec![0f64; bins];
    let mut cnt = vec![0usize; bins];
    for i in 0..n {
        let c = conf[i].clamp(0.0, 1.0);
        let b = ((c * bins as f64) as usize).min(bins - 1);
        sum_c[b] += c;
        sum_a[b] += correct[i] as u8 as f64;
        cnt[b] += 1;
    }
    (0..bins)
        .filter(|&b| cnt[b] > 0)
        .map(|b| (sum_c[b] - sum_a[b]).abs() / n as f64)
        .sum()
}

/// The calibration fit: the temperature (from [`TEMPERATURES`]) minimising
/// the log loss of `confidence = exp(logp_T)` against exact correctness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub temperature: f64,
    pub ece_before: f64,
    pub ece_after: f64,
    pub nll_before: f64,
    pub nll_after: f64,
}

pub fn calibrate(outcomes: &[Outcome]) -> Calibration {
    let correct: Vec<bool> = outcomes.iter().map(|o| o.correct).collect();
    let conf_at = |k: usize| -> Vec<f64> {
        outcomes
            .iter()
            .map(|o| o.logp.get(k).copied().unwrap_or(f64::NEG_INFINITY).exp())
            .collect()
    };
    let nll = |conf: &[f64]| -> f64 {
        let n = conf.len().max(1) as f64;
        conf.iter()
            .zip(&correct)
            .map(|(&c, &y)| {
                let c = c.clamp(1e-6, 1.0 - 1e-6);
                if y { -c.ln() } else { -(1.0 - c).ln() }
            })
            .sum::<f64>()
            / n
    };
    let k1 = TEMPERATURES.iter().position(|&t| t == 1.0).unwrap_or(0);
    let before = conf_at(k1);
    let (mut best_k, mut best) = (k1, nll(&before));
    for k in 0..TEMPERATURES.len() {
        let v = nll(&conf_at(k));
        if v < best {
            best = v;
            best_k = k;
        }
    }
    let after = conf_at(best_k);
    Calibration {
        temperature: TEMPERATURES[best_k],
        ece_before: ece(&before, &correct, 10),
        ece_after: ece(&after, &correct, 10),
        nll_before: nll(&before),
        nll_after: best,
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use serde_json::json;

    fn example(id: &str, calls: Value) -> Example {
        serde_json::from_value(json!({
            "id": id,
            "source": "test",
            "query": "weather in Paris",
            "tools": [{"name": "get_weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "calls": calls,
        }))
        .expect("example")
    }

    #[test]
    fn failures_list_only_inexact_examples_with_what_was_decoded() {
        let paris = json!([{"name": "get_weather", "arguments": {"city": "Paris"}}]);
        let exs = vec![example("right", paris.clone()), example("wrong", paris)];
        let call: Call = serde_json::from_value(
            json!({"name": "get_weather", "arguments": {"city": "weather"}}),
        )
        .expect("call");
        let t = TEMPERATURES.iter().position(|&t| t == 1.0).expect("T = 1");
        let mut logp = vec![f64::NEG_INFINITY; TEMPERATURES.len()];
        logp[t] = 0.5f64.ln();
        let rep = EvalReport {
            n: 2,
            exact: 1,
            outcomes: vec![
                Outcome {
                    correct: true,
                    logp: logp.clone(),
                    failed: false,
                    calls: Vec::new(),
                    error: None,
                },
                Outcome {
                    correct: false,
                    logp,
                    failed: false,
                    calls: vec![call],
                    error: None,
                },
            ],
            ..Default::default()
        };
        let text = failures_jsonl(&exs, &rep, 1.0);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["id"], "wrong");
        assert_eq!(lines[0]["shape"], "single");
        assert_eq!(lines[0]["got"][0]["arguments"]["city"], "weather");
        assert_eq!(lines[0]["expected"][0]["arguments"]["city"], "Paris");
        assert!((lines[0]["confidence"].as_f64().expect("confidence") - 0.5).abs() < 1e-9);
    }
}
