//! Running a model (or the answer key) over BFCL entries, and the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use rayon::prelude::*;
use retort_core::{Call, CallOptions, ToolCaller};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::category::Category;
use crate::checker::{self, Failure, Reason};
use crate::gold;
use crate::loader::Entry;

/// The verdict on one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryResult {
    pub id: String,
    pub category: Category,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The answer key (`ground_truth`), when the category has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Vec<Value>>,
    /// What the model called.
    pub got: Vec<Call>,
    /// Wall time of the model call, in milliseconds.
    pub latency_ms: f64,
    /// Predicted calls that `retort_core::validate` rejects against the
    /// entry's tools.
    pub schema_invalid_calls: usize,
}

/// Latency over entries, in milliseconds (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    pub fn from_samples(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return LatencyStats::default();
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let k = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[k.clamp(1, v.len()) - 1]
        };
        LatencyStats {
            count: v.len(),
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
            p50_ms: rank(50.0),
            p95_ms: rank(95.0),
            max_ms: v[v.len() - 1],
        }
    }
}

/// Accuracy of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryScore {
    pub category: Category,
    pub total: usize,
    pub correct: usize,
    /// Percent, 0–100.
    pub accuracy: f64,
    /// Failures by reason.
    pub reasons: BTreeMap<Reason, usize>,
    pub latency: LatencyStats,
}

/// BFCL's summary figures, in percent; `None` where a needed category was
/// not run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    /// Unweighted mean of simple_python, simple_java, simple_javascript.
    pub simple: Option<f64>,
    /// Unweighted mean of simple, multiple, parallel, parallel_multiple.
    pub non_live: Option<f64>,
    /// live_simple, live_multiple, live_parallel, live_parallel_multiple,
    /// weighted by entry count.
    pub live: Option<f64>,
    pub irrelevance: Option<f64>,
    pub live_irrelevance: Option<f64>,
    pub live_relevance: Option<f64>,
}

/// How many predicted calls pass `retort_core::validate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValidity {
    pub calls: usize,
    pub valid: usize,
    pub invalid: usize,
}

impl SchemaValidity {
    /// Percent of calls that are schema-valid (100 when there were none).
    pub fn percent(&self) -> f64 {
        if self.calls == 0 {
            100.0
        } else {
            100.0 * self.valid as f64 / self.calls as f64
        }
    }
}

/// The result of an evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was evaluated (a model path, or "gold").
    pub model: String,
    pub categories: Vec<CategoryScore>,
    pub aggregates: Aggregates,
    pub latency: LatencyStats,
    pub schema: SchemaValidity,
    pub entries: Vec<EntryResult>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Load(#[from] crate::loader::LoadError),
}

/// Score predicted calls for one entry.
pub fn score_entry(entry: &Entry, calls: &[Call]) -> Result<(), Failure> {
    checker::check(
        entry.category,
        &entry.functions,
        entry.answer.as_deref(),
        calls,
    )
}

fn result_for(entry: &Entry, got: Result<Vec<Call>, Failure>, latency_ms: f64) -> EntryResult {
    let (verdict, got) = match got {
        Ok(calls) => (score_entry(entry, &calls), calls),
        Err(f) => (Err(f), Vec::new()),
    };
    let schema_invalid_calls = got
        .iter()
        .filter(|c| retort_core::validate(c, &entry.tools).is_err())
        .count();
    EntryResult {
        id: entry.id.clone(),
        category: entry.category,
        ok: verdict.is_ok(),
        failure: verdict.err(),
        expected: entry.answer.clone(),
        got,
        latency_ms,
        schema_invalid_calls,
    }
}

/// Ask `caller` every entry (in parallel with rayon) and score the answers.
pub fn evaluate_entries(caller: &dyn ToolCaller, entries: &[Entry], model: &str) -> Report {
    let options = CallOptions::default();
    let results: Vec<EntryResult> = entries
        .par_iter()
        .map(|e| {
            let start = Instant::now();
            let out = caller.call(&e.query, &e.tools, &options);
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let got = out
                .map(|p| p.calls)
                .map_err(|err| Failure::new(Reason::ModelError, err.to_string()));
            result_for(e, got, ms)
        })
        .collect();
    Report::from_results(model, results)
}

/// Score the answer key itself (see [`gold::gold_calls`]). Entries without
/// a key (`live_relevance`) are left out.
pub fn evaluate_gold(entries: &[Entry]) -> Report {
    let results = entries
        .iter()
        .filter_map(|e| gold::gold_calls(e).map(|calls| result_for(e, Ok(calls), 0.0)))
        .collect();
    Report::from_results("gold", results)
}

/// Load `categories` from the BFCL directory `data_dir` (at most `limit`
/// entries of each) and evaluate `caller` on them.
pub fn evaluate(
    caller: &dyn ToolCaller,
    data_dir: &std::path::Path,
    categories: &[Category],
    limit: Option<usize>,
    model: &str,
) -> Result<Report, EvalError> {
    let entries = load_limited(data_dir, categories, limit)?;
    Ok(evaluate_entries(caller, &entries, model))
}

/// Load categories, keeping at most `limit` entries of each.
pub fn load_limited(
    data_dir: &std::path::Path,
    categories: &[Category],
    limit: Option<usize>,
) -> Result<Vec<Entry>, crate::loader::LoadError> {
    let mut out = Vec::new();
    for c in categories {
        let mut e = crate::loader::load_category(data_dir, *c)?;
        if let Some(n) = limit {
            e.truncate(n);
        }
        out.extend(e);
    }
    Ok(out)
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

impl Report {
    /// Build the report from per-entry results (categories in BFCL order).
    pub fn from_results(model: &str, entries: Vec<EntryResult>) -> Report {
        let mut categories = Vec::new();
        for c in Category::ALL {
            let rs: Vec<&EntryResult> = entries.iter().filter(|e| e.category == c).collect();
            if rs.is_empty() {
                continue;
            }
            let correct = rs.iter().filter(|r| r.ok).count();
            let mut reasons = BTreeMap::new();
            for r in &rs {
                if let Some(f) = &r.failure {
                    *reasons.entry(f.reason).or_insert(0) += 1;
                }
            }
            let lat: Vec<f64> = rs.iter().map(|r| r.latency_ms).collect();
            categories.push(CategoryScore {
                category: c,
                total: rs.len(),
                correct,
                accuracy: 100.0 * correct as f64 / rs.len() as f64,
                reasons,
                latency: LatencyStats::from_samples(&lat),
            });
        }
        let acc = |c: Category| {
            categories
                .iter()
                .find(|s| s.category == c)
                .map(|s| s.accuracy)
        };
        let all = |cs: &[Category]| -> Option<Vec<f64>> { cs.iter().map(|c| acc(*c)).collect() };
        let simple = all(&[
            Category::SimplePython,
            Category::SimpleJava,
            Category::SimpleJavascript,
        ])
        .map(|v| mean(&v));
        let non_live = simple.and_then(|s| {
            all(&[
                Category::Multiple,
                Category::Parallel,
                Category::ParallelMultiple,
            ])
            .map(|mut v| {
                v.push(s);
                mean(&v)
            })
        });
        let live_cats = [
            Category::LiveSimple,
            Category::LiveMultiple,
            Category::LiveParallel,
            Category::LiveParallelMultiple,
        ];
        let live_scores: Option<Vec<&CategoryScore>> = live_cats
            .iter()
            .map(|c| categories.iter().find(|s| s.category == *c))
            .collect();
        let live = live_scores.map(|v| {
            let total: usize = v.iter().map(|s| s.total).sum();
            let correct: usize = v.iter().map(|s| s.correct).sum();
            100.0 * correct as f64 / total as f64
        });
        let aggregates = Aggregates {
            simple,
            non_live,
            live,
            irrelevance: acc(Category::Irrelevance),
            live_irrelevance: acc(Category::LiveIrrelevance),
            live_relevance: acc(Category::LiveRelevance),
        };
        let lat: Vec<f64> = entries.iter().map(|r| r.latency_ms).collect();
        let calls: usize = entries.iter().map(|e| e.got.len()).sum();
        let invalid: usize = entries.iter().map(|e| e.schema_invalid_calls).sum();
        Report {
            model: model.to_string(),
            categories,
            aggregates,
            latency: LatencyStats::from_samples(&lat),
            schema: SchemaValidity {
                calls,
                valid: calls - invalid,
                invalid,
            },
            entries,
        }
    }

    /// The score of one category, if it was run.
    pub fn category(&self, c: Category) -> Option<&CategoryScore> {
        self.categories.iter().find(|s| s.category == c)
    }

    /// A plain-text table: one row per category, then the aggregates.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<24} {:>7} {:>7} {:>8} {:>9} {:>9}  top failure reasons",
            "category", "correct", "total", "acc %", "p50 ms", "p95 ms"
        );
        for c in &self.categories {
            let mut reasons: Vec<(&Reason, &usize)> = c.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let top: Vec<String> = reasons
                .iter()
                .take(3)
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(
                s,
                "{:<24} {:>7} {:>7} {:>8.2} {:>9.1} {:>9.1}  {}",
                c.category.as_str(),
                c.correct,
                c.total,
                c.accuracy,
                c.latency.p50_ms,
                c.latency.p95_ms,
                top.join(", ")
            );
        }
        let fmt = |x: Option<f64>| x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
        let a = &self.aggregates;
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "non-live (unweighted; simple = mean of 3 languages): {}",
            fmt(a.non_live)
        );
        let _ = writeln!(
            s,
            "  simple (python/java/javascript mean):            {}",
            fmt(a.simple)
        );
        let _ = writeln!(
            s,
            "live (weighted by entry count):                     {}",
            fmt(a.live)
        );
        let _ = writeln!(
            s,
            "irrelevance:                                        {}",
            fmt(a.irrelevance)
        );
        let _ = writeln!(
            s,
            "live_irrelevance:                                   {}",
            fmt(a.live_irrelevance)
        );
        let _ = writeln!(
            s,
            "live_relevance:                                     {}",
            fmt(a.live_relevance)
        );
        let _ = writeln!(
            s,
            "schema-valid calls: {}/{} ({:.2}%)   latency per entry: p50 {:.1} ms, p95 {:.1} ms",
            self.schema.valid,
            self.schema.calls,
            self.schema.percent(),
            self.latency.p50_ms,
            self.latency.p95_ms
        );
        s
    }

    /// One JSON object per failed entry: id, category, reason, detail,
    /// expected, got.
    pub fn failures_jsonl(&self) -> String {
        let mut s = String::new();
        for e in self.entries.iter().filter(|e| !e.ok) {
            let (reason, detail) = e
                .failure
                .as_ref()
                .map(|f| (f.reason.as_str(), f.detail.as_str()))
                .unwrap_or(("unknown", ""));
            let line = serde_json::json!({
                "id": e.id,
                "category": e.category,
                "reason": reason,
                "detail": detail,
                "expected": e.expected,
                "got": e.got,
            });
            let _ = writeln!(s, "{line}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers `f(n)` with the integer from the query, `"bad"` as a string
    /// (schema-invalid), and fails on `"boom"`.
    struct Mock;

    impl ToolCaller for Mock {
        fn call(
            &self,
            query: &str,
            _tools: &[retort_core::Tool],
            _options: &CallOptions,
        ) -> Result<retort_core::Prediction, retort_core::CallerError> {
            if query == "boom" {
                return Err(retort_core::CallerError::Model("exploded".into()));
            }
            let n = query
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(query));
            let mut args = serde_json::Map::new();
            args.insert("n".into(), n);
            Ok(retort_core::Prediction {
                calls: vec![Call::new("f", args)],
                confidence: 0.5,
            })
        }
    }

    fn entry(id: &str, query: &str) -> Entry {
        let f = serde_json::json!({"name": "f", "description": "d", "parameters": {"type": "dict",
            "properties": {"n": {"type": "integer", "description": "n"}}, "required": ["n"]}});
        Entry {
            id: id.into(),
            category: Category::SimplePython,
            query: query.into(),
            context: Vec::new(),
            tools: vec![retort_core::Tool::parse(&f, retort_core::ToolFormat::Bfcl).expect("tool")],
            functions: vec![f],
            answer: Some(vec![serde_json::json!({"f": {"n": [3]}})]),
        }
    }

    #[test]
    fn evaluates_a_caller() {
        let entries = [
            entry("a", "3"),
            entry("b", "4"),
            entry("c", "bad"),
            entry("d", "boom"),
        ];
        let r = evaluate_entries(&Mock, &entries, "mock");
        let s = r.category(Category::SimplePython).expect("ran");
        assert_eq!((s.correct, s.total), (1, 4));
        assert_eq!(s.reasons.get(&Reason::WrongValue), Some(&1));
        assert_eq!(s.reasons.get(&Reason::WrongType), Some(&1));
        assert_eq!(s.reasons.get(&Reason::ModelError), Some(&1));
        // Results keep the entries' order whatever rayon did.
        let ids: Vec<&str> = r.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        // Three calls made, one ("bad" for an integer) schema-invalid.
        assert_eq!(
            r.schema,
            SchemaValidity {
                calls: 3,
                valid: 2,
                invalid: 1
            }
        );
        assert_eq!(r.latency.count, 4);
        assert!(r.entries.iter().all(|e| e.latency_ms >= 0.0));
        assert_eq!(r.model, "mock");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = LatencyStats::from_samples(&v);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(LatencyStats::from_samples(&[]).count, 0);
        assert_eq!(LatencyStats::from_samples(&[7.0]).p95_ms, 7.0);
    }

    fn res(c: Category, ok: bool) -> EntryResult {
        EntryResult {
            id: "x".into(),
            category: c,
            ok,
            failure: (!ok).then(|| Failure::new(Reason::WrongValue, "")),
            expected: None,
            got: Vec::new(),
            latency_ms: 1.0,
            schema_invalid_calls: 0,
        }
    }

    #[test]
    fn aggregates_follow_bfcl() {
        let rs = vec![
            // simple: python 100%, java 50%, javascript 0% -> 50
            res(Category::SimplePython, true),
            res(Category::SimpleJava, true),
            res(Category::SimpleJava, false),
            res(Category::SimpleJavascript, false),
            // multiple 100, parallel 0, parallel_multiple 100 -> non-live (50+100+0+100)/4
            res(Category::Multiple, true),
            res(Category::Parallel, false),
            res(Category::ParallelMultiple, true),
            // live: 3 of 4 entries right, whatever the category sizes
            res(Category::LiveSimple, true),
            res(Category::LiveMultiple, true),
            res(Category::LiveMultiple, true),
            res(Category::LiveParallel, false),
            res(Category::LiveParallelMultiple, true),
        ];
        let r = Report::from_results("t", rs);
        assert_eq!(r.aggregates.simple, Some(50.0));
        assert_eq!(r.aggregates.non_live, Some(62.5));
        assert_eq!(r.aggregates.live, Some(80.0));
        assert_eq!(r.aggregates.irrelevance, None);
        let only_python = Report::from_results("t", vec![res(Category::SimplePython, true)]);
        assert_eq!(only_python.aggregates.non_live, None);
        assert!(r.table().contains("live_parallel_multiple"));
        assert_eq!(r.failures_jsonl().lines().count(), 4);
    }
}
