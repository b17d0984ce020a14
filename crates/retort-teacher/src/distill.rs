//! A distillation run: synthesize requests with the teacher, answer each
//! with function calling, clean, and append to a resumable JSONL file.
//!
//! Resumption: synthesis batch `b` is a pure function of (tools, seed, b),
//! its response is cached before it is used, and an example's id is a hash
//! of its normalised query and tools. A re-run therefore plans the same
//! requests (from the cache, free), skips those whose id is already in the
//! output, and answers the rest (from the cache when the previous run got
//! that far). A run killed at any moment loses nothing that was written and
//! writes nothing twice.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use retort_core::{Call, Example, TeacherInfo, Tool, normalize_text, validate_all};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::error::TeacherError;
use crate::logprobs::map_decisions;
use crate::output::ExampleLog;
use crate::protocol::{Answer, CallMode, extract_json};
use crate::synth::{ANSWER_SYSTEM, SYNTH_SYSTEM, SynthBatch, SynthRequest, parse_requests};
use crate::teacher::{Meter, Teacher};

/// What to distill and where to.
#[derive(Debug, Clone)]
pub struct DistillConfig {
    pub tools: Vec<Tool>,
    /// User requests to synthesize and answer (the request budget).
    pub n: usize,
    pub out: PathBuf,
    /// Teacher requests in flight at once.
    pub concurrency: usize,
    pub seed: u64,
    /// Requests asked for per synthesis call.
    pub batch_size: usize,
    /// The examples' `source`.
    pub source: String,
    /// Temperature of synthesis (answers use 0).
    pub synth_temperature: f64,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

impl DistillConfig {
    pub fn new(tools: Vec<Tool>, n: usize, out: impl Into<PathBuf>) -> Self {
        DistillConfig {
            tools,
            n,
            out: out.into(),
            concurrency: 4,
            seed: 0,
            batch_size: 8,
            source: "distill".into(),
            synth_temperature: 1.0,
            progress: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct DistillReport {
    /// Distinct requests planned (at most `n`).
    pub planned: usize,
    /// Planned requests whose example an earlier run already wrote.
    pub already_done: usize,
    /// Examples written by this run.
    pub written: usize,
    /// Requests without an example, by reason (`wrong_type`,
    /// `teacher:http_5xx`, `duplicate_query`, ...).
    pub dropped: BTreeMap<String, u64>,
    /// Synthesis calls made, and those that failed, by reason.
    pub synthesis_batches: u64,
    pub synthesis_failures: BTreeMap<String, u64>,
    /// The `--max-cost` budget stopped the run early.
    pub stopped_by_budget: bool,
    /// Examples in the output file at the end.
    pub total_in_output: usize,
    pub meter: Meter,
}

impl DistillReport {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// The id of a distilled example: a hash of the normalised query and the
/// tools, so the same request is never written twice.
pub fn example_id(prefix: &str, query: &str, tools: &[Tool]) -> String {
    let mut h = Sha256::new();
    h.update(normalize_text(query).as_bytes());
    h.update(b"\n");
    for t in tools {
        h.update(t.to_json().to_string().as_bytes());
        h.update(b"\n");
    }
    format!("{prefix}-{}", &hex::encode(h.finalize())[..16])
}

/// Turn a teacher answer into a clean example, or the reason it is dropped.
pub fn build_example(
    id: String,
    source: &str,
    query: &str,
    tools: &[Tool],
    answer: &Answer,
    model: &str,
) -> Result<Example, String> {
    if query.trim().is_empty() {
        return Err("empty_query".into());
    }
    let mut calls = Vec::with_capacity(answer.calls.len());
    for rc in &answer.calls {
        match &rc.arguments {
            Err(_) => return Err("malformed_arguments".into()),
            Ok(Value::Object(m)) => calls.push(Call::new(rc.name.clone(), m.clone())),
            Ok(_) => return Err("arguments_not_object".into()),
        }
    }
    validate_all(&calls, tools).map_err(|e| e.kind.reason().to_string())?;
    let logprobs = map_decisions(&answer.tokens, &calls, tools);
    Ok(Example {
        id,
        source: source.to_string(),
        query: query.trim().to_string(),
        tools: tools.to_vec(),
        calls,
        teacher: Some(TeacherInfo {
            model: Some(answer.model.clone().unwrap_or_else(|| model.to_string())),
            logprobs,
        }),
        context: Vec::new(),
    })
}

enum Outcome {
    Example(Box<Example>),
    Dropped(String),
}

struct WriterResult {
    written: usize,
    dropped: BTreeMap<String, u64>,
    total: usize,
}

fn progress_bar(cfg: &DistillConfig) -> ProgressBar {
    let pb = ProgressBar::new(cfg.n as u64);
    if cfg.progress {
        pb.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
        {
            pb.set_style(style);
        }
    } else {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb
}

fn progress_message(teacher: &Teacher, written: usize, dropped: u64) -> String {
    let m = teacher.meter();
    let cost = m
        .cost_usd
        .map_or_else(|| "n/a".to_string(), |c| format!("${c:.4}"));
    format!(
        "kept {written} dropped {dropped} | paid {} cached {} | cost {cost}",
        m.paid_requests, m.cache_hits
    )
}

async fn write_loop(
    mut log: ExampleLog,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    pb: ProgressBar,
    teacher: Arc<Teacher>,
) -> Result<WriterResult, TeacherError> {
    let mut written = 0;
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut examples = Vec::new();
        for o in batch {
            match o {
                Outcome::Example(e) => examples.push(*e),
                Outcome::Dropped(r) => *dropped.entry(r).or_default() += 1,
            }
        }
        let n = log.append(&examples)?;
        if n < examples.len() {
            *dropped.entry("duplicate_query".into()).or_default() += (examples.len() - n) as u64;
        }
        written += n;
        let d: u64 = dropped.values().sum();
        pb.set_position(log.existing() as u64 + written as u64 + d);
        pb.set_message(progress_message(&teacher, written, d));
    }
    Ok(WriterResult {
        written,
        dropped,
        total: log.len(),
    })
}

async fn synthesize(
    teacher: Arc<Teacher>,
    sem: Arc<Semaphore>,
    tools: Arc<Vec<Tool>>,
    plan: SynthBatch,
    temperature: f64,
) -> Result<Vec<SynthRequest>, String> {
    let _permit = sem
        .acquire_owned()
        .await
        .map_err(|_| "cancelled".to_string())?;
    let reply = teacher
        .generate_json(SYNTH_SYSTEM, &plan.prompt(&tools), temperature)
        .await
        .map_err(|e| {
            tracing::warn!("synthesis batch {} failed: {e}", plan.index);
            format!("teacher:{}", e.reason())
        })?;
    let v = extract_json(&reply.answer.text).ok_or_else(|| "not_json".to_string())?;
    parse_requests(&v).ok_or_else(|| "no_request_list".to_string())
}

#[allow(clippy::too_many_arguments)]
async fn answer_one(
    teacher: Arc<Teacher>,
    sem: Arc<Semaphore>,
    tools: Arc<Vec<Tool>>,
    id: String,
    query: String,
    source: String,
    tx: mpsc::UnboundedSender<Outcome>,
) {
    let Ok(_permit) = sem.acquire_owned().await else {
        return;
    };
    if tx.is_closed() {
        return;
    }
    let outcome = match teacher
        .answer(ANSWER_SYSTEM, &query, &tools, CallMode::Auto)
        .await
    {
        Ok(reply) => {
            match build_example(id, &source, &query, &tools, &reply.answer, teacher.model()) {
                Ok(ex) => {
                    let text = serde_json::to_string(&ex).unwrap_or_default();
                    if teacher.leaks_key(&text) {
                        Outcome::Dropped("contains_api_key".into())
                    } else {
                        Outcome::Example(Box::new(ex))
                    }
                }
                Err(reason) => {
                    tracing::debug!("dropped {:?}: {reason}", teacher.redact(&query));
                    Outcome::Dropped(reason)
                }
            }
        }
        Err(e) => {
            tracing::warn!("request {:?} failed: {e}", teacher.redact(&query));
            Outcome::Dropped(match e {
                TeacherError::BudgetExhausted(_) => "budget_exhausted".into(),
                e => format!("teacher:{}", e.reason()),
            })
        }
    };
    let _ = tx.send(outcome);
}

/// Run a distillation (see the module documentation). Dropping the returned
/// future cancels the run; what was written stays valid and is resumed by
/// the next run.
pub async fn distill(
    teacher: Arc<Teacher>,
    cfg: DistillConfig,
) -> Result<DistillReport, TeacherError> {
    if cfg.tools.is_empty() {
        return Err(TeacherError::Config("no tools to distill".into()));
    }
    if cfg.concurrency == 0 || cfg.batch_size == 0 {
        return Err(TeacherError::Config(
            "concurrency and batch size must be at least 1".into(),
        ));
    }
    let log = ExampleLog::open(&cfg.out)?;
    let tools = Arc::new(cfg.tools.clone());
    let sem = Arc::new(Semaphore::new(cfg.concurrency));
    let pb = progress_bar(&cfg);
    let mut report = DistillReport::default();

    // Ids planned so far and whether each is already in the output.
    let mut plan_ids: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut dropped_at_plan: BTreeMap<String, u64> = BTreeMap::new();
    let bs = cfg.batch_size;
    let max_batches = (2 * cfg.n.div_ceil(bs) + 2) as u64;
    let mut next_batch = 0u64;
    let mut already = Vec::new();

    // Plan first (synthesis, mostly one wave); answering starts per wave.
    let (tx, rx) = mpsc::unbounded_channel::<Outcome>();
    let mut writer: JoinSet<Result<WriterResult, TeacherError>> = JoinSet::new();
    let mut answers: JoinSet<()> = JoinSet::new();
    let existing_ids: HashSet<String> = log.ids().clone();
    writer.spawn(write_loop(log, rx, pb.clone(), teacher.clone()));

    while plan_ids.len() < cfg.n && next_batch < max_batches {
        if teacher.budget_exhausted() {
            report.stopped_by_budget = true;
            break;
        }
        if tx.is_closed() {
            break;
        }
        let need = cfg.n - plan_ids.len();
        let wave = (need.div_ceil(bs) as u64).min(max_batches - next_batch);
        let mut synth: JoinSet<(u64, Result<Vec<SynthRequest>, String>)> = JoinSet::new();
        for b in next_batch..next_batch + wave {
            let plan = SynthBatch::plan(&tools, cfg.seed, b, bs);
            let (t, s, ts, temp) = (
                teacher.clone(),
                sem.clone(),
                tools.clone(),
                cfg.synth_temperature,
            );
            synth.spawn(async move { (b, synthesize(t, s, ts, plan, temp).await) });
        }
        next_batch += wave;
        let mut results = Vec::new();
        while let Some(r) = synth.join_next().await {
            match r {
                Ok(x) => results.push(x),
                Err(e) => {
                    return Err(TeacherError::Config(format!(
                        "a synthesis task failed: {e}"
                    )));
                }
            }
        }
        results.sort_by_key(|(b, _)| *b);
        for (_, result) in results {
            report.synthesis_batches += 1;
            let requests = match result {
                Ok(r) => r,
                Err(reason) => {
                    if reason == "teacher:budget_exhausted" {
                        report.stopped_by_budget = true;
                    }
                    *report.synthesis_failures.entry(reason).or_default() += 1;
                    continue;
                }
            };
            for req in requests {
                if plan_ids.len() >= cfg.n {
                    break;
                }
                if teacher.leaks_key(&req.query) {
                    *dropped_at_plan
                        .entry("contains_api_key".into())
                        .or_default() += 1;
                    continue;
                }
                let id = example_id(&cfg.source, &req.query, &tools);
                if !seen.insert(id.clone()) {
                    *dropped_at_plan.entry("duplicate_query".into()).or_default() += 1;
                    continue;
                }
                plan_ids.push((id.clone(), req.query.clone()));
                if existing_ids.contains(&id) {
                    already.push(id);
                    pb.inc(1);
                    continue;
                }
                answers.spawn(answer_one(
                    teacher.clone(),
                    sem.clone(),
                    tools.clone(),
                    id,
                    req.query,
                    cfg.source.clone(),
                    tx.clone(),
                ));
            }
        }
    }
    drop(tx);
    while let Some(r) = answers.join_next().await {
        if let Err(e) = r {
            return Err(TeacherError::Config(format!("an answer task failed: {e}")));
        }
    }
    let w = match writer.join_next().await {
        Some(Ok(w)) => w?,
        Some(Err(e)) => return Err(TeacherError::Config(format!("the writer failed: {e}"))),
        None => return Err(TeacherError::Config("the writer vanished".into())),
    };
    pb.finish_and_clear();
    report.planned = plan_ids.len();
    report.already_done = already.len();
    report.written = w.written;
    report.dropped = w.dropped;
    for (k, v) in dropped_at_plan {
        *report.dropped.entry(k).or_default() += v;
    }
    if report.dropped.contains_key("budget_exhausted") {
        report.stopped_by_budget = true;
    }
    report.total_in_output = w.total;
    report.meter = teacher.meter();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RawCall;
    use retort_core::ToolFormat;
    use serde_json::json;

    fn tools() -> Vec<Tool> {
        Tool::parse_many(
            &json!([{"name": "get_weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}]),
            ToolFormat::Auto,
        )
        .expect("tools")
    }

    fn answer(calls: Vec<RawCall>) -> Answer {
        Answer {
            calls,
            ..Answer::default()
        }
    }

    #[test]
    fn ids_are_stable_and_normalised() {
        let t = tools();
        let a = example_id("distill", "Weather in Paris?", &t);
        assert_eq!(a, example_id("distill", "weather in  paris", &t));
        assert_ne!(a, example_id("distill", "weather in rome", &t));
        assert!(a.starts_with("distill-") && a.len() == "distill-".len() + 16);
    }

    #[test]
    fn cleaning_reasons() {
        let t = tools();
        let ok = build_example(
            "i".into(),
            "s",
            "weather in Oslo",
            &t,
            &answer(vec![RawCall {
                name: "get_weather".into(),
                arguments: Ok(json!({"city": "Oslo"})),
            }]),
            "m",
        )
        .expect("valid");
        assert_eq!(ok.calls[0].arguments["city"], "Oslo");
        assert_eq!(
            ok.teacher.as_ref().and_then(|t| t.model.as_deref()),
            Some("m")
        );
        let none = build_example("i".into(), "s", "hi", &t, &answer(vec![]), "m").expect("no call");
        assert!(none.calls.is_empty());
        let cases = [
            (
                RawCall {
                    name: "get_weather".into(),
                    arguments: Ok(json!({"city": 3})),
                },
                "wrong_type",
            ),
            (
                RawCall {
                    name: "nope".into(),
                    arguments: Ok(json!({})),
                },
                "unknown_function",
            ),
            (
                RawCall {
                    name: "get_weather".into(),
                    arguments: Ok(json!({})),
                },
                "missing_required",
            ),
            (
                RawCall {
                    name: "get_weather".into(),
                    arguments: Err("{x".into()),
                },
                "malformed_arguments",
            ),
            (
                RawCall {
                    name: "get_weather".into(),
                    arguments: Ok(json!([1])),
                },
                "arguments_not_object",
            ),
        ];
        for (c, reason) in cases {
            let e =
                build_example("i".into(), "s", "q", &t, &answer(vec![c]), "m").expect_err(reason);
            assert_eq!(e, reason);
        }
        assert_eq!(
            build_example("i".into(), "s", "  ", &t, &answer(vec![]), "m").expect_err("empty"),
            "empty_query"
        );
    }
}
