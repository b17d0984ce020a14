//! `retort data build`: import every corpus, clean, decontaminate, split by
//! held-out tools, augment, and write `train.jsonl`, `val.jsonl`,
//! `unlabelled.jsonl`, `tool_pool.jsonl` and `stats.json` (each atomically).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use retort_core::{Category, Example, Tool, normalize_text};

use crate::augment::{AugmentConfig, AugmentReport, Augmenter, ToolPool, ValueBank};
use crate::bfcl::BfclIndex;
use crate::clean::{CleanConfig, CleanReport, clean, dedupe_key, truncate_descriptions};
use crate::error::DataError;
use crate::import::{Drops, Imported, POOL_SOURCES, TEACHER_SOURCES, Unlabelled, import_source};
use crate::io::{read_jsonl, write_json_pretty, write_jsonl};
use crate::split::split_by_tools;

/// Options of a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub teacher_dir: PathBuf,
    pub bfcl_dir: PathBuf,
    pub out_dir: PathBuf,
    /// Augmented variants per training example.
    pub augment: usize,
    /// Augmented variants per validation example (at most `augment`).
    pub val_augment: usize,
    pub seed: u64,
    pub val_fraction: f64,
    pub max_tools: usize,
    pub max_description_chars: usize,
    /// Multi-call composites added to the training set, as a fraction of
    /// it (see [`crate::compose`]; 0 turns composition off). Validation is
    /// never composed, so its figures stay comparable.
    pub compose: f64,
    /// Examples written from the pool's tool schemas per pool tool (see
    /// [`crate::synth`]; 0 turns synthesis off), each augmented with
    /// `synth_augment` variants. They join training only, after the
    /// shuffles, so validation is the same with or without them.
    pub synth_per_tool: usize,
    /// Augmented variants per synthesized example.
    pub synth_augment: usize,
    /// Draw progress bars on stderr (hidden anyway when it is not a terminal).
    pub progress: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            teacher_dir: PathBuf::new(),
            bfcl_dir: PathBuf::new(),
            out_dir: PathBuf::new(),
            augment: 10,
            val_augment: 2,
            seed: 1,
            val_fraction: 0.05,
            max_tools: 8,
            max_description_chars: 300,
            compose: 0.1,
            synth_per_tool: 0,
            synth_augment: 2,
            progress: true,
        }
    }
}

/// Counts of examples by category (all four keys always present).
pub fn categories(examples: &[Example]) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = Category::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), 0))
        .collect();
    for e in examples {
        *m.entry(e.category().as_str().to_string()).or_default() += 1;
    }
    m
}

/// Counts of examples by source.
pub fn by_source(examples: &[Example]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in examples {
        *m.entry(e.source.clone()).or_default() += 1;
    }
    m
}

/// Counts and categories of one set of examples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetStats {
    pub total: usize,
    pub by_source: BTreeMap<String, usize>,
    pub by_category: BTreeMap<String, usize>,
}

impl SetStats {
    pub fn of(examples: &[Example]) -> SetStats {
        SetStats {
            total: examples.len(),
            by_source: by_source(examples),
            by_category: categories(examples),
        }
    }
}

/// Everything `stats.json` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub options: Value,
    pub sources_read: Vec<String>,
    pub sources_missing: Vec<String>,
    pub bfcl: Value,
    /// Examples as imported, before cleaning.
    pub imported: SetStats,
    /// Imported examples with at least one call, by source.
    pub imported_with_calls: BTreeMap<String, usize>,
    /// Records the importers dropped, by source and reason.
    pub import_drops: BTreeMap<String, BTreeMap<String, usize>>,
    /// Records kept after a repair (e.g. a call sequence cut before a
    /// placeholder), by source.
    pub import_notes: BTreeMap<String, BTreeMap<String, usize>>,
    /// Tools (not examples) that could not be parsed, by source and reason.
    pub skipped_tools: BTreeMap<String, BTreeMap<String, usize>>,
    /// Examples dropped while cleaning, by source and reason.
    pub clean_drops: BTreeMap<String, BTreeMap<String, usize>>,
    pub clean: CleanReport,
    pub cleaned: SetStats,
    pub cleaned_with_calls: usize,
    pub held_out_tools: usize,
    /// Training examples before augmentation.
    pub train_base: SetStats,
    pub val_base: SetStats,
    pub augment_train: AugmentReport,
    pub augment_val: AugmentReport,
    /// Multi-call composites added to training.
    pub compose_train: crate::compose::ComposeReport,
    /// Examples written from pool schemas (before augmentation).
    pub synth_train: crate::synth::SynthReport,
    /// Augmentation of the synthesized examples.
    pub augment_synth: AugmentReport,
    /// Variants dropped after augmentation (duplicates, contamination).
    pub post_augment_drops: BTreeMap<String, usize>,
    /// The written files.
    pub train: SetStats,
    pub val: SetStats,
    pub train_category_share: BTreeMap<String, f64>,
    pub tool_pool: BTreeMap<String, usize>,
    pub unlabelled: BTreeMap<String, usize>,
    pub unlabelled_drops: BTreeMap<String, usize>,
    /// Result of re-reading train.jsonl and val.jsonl against BFCL.
    pub check: Value,
}

fn bar(progress: bool, len: u64, msg: &'static str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(msg);
    pb
}

/// Count train/val examples that still match BFCL, by re-reading the files.
pub fn check_files_against_bfcl(
    files: &[&Path],
    bfcl: &BfclIndex,
) -> Result<BTreeMap<String, usize>, DataError> {
    let mut out = BTreeMap::new();
    for f in files {
        let mut questions = 0;
        let mut tool_sets = 0;
        for (line, v) in read_jsonl(f)? {
            let ex: Example = serde_json::from_value(v)
                .map_err(|e| DataError::format(f, line, format!("not a canonical example: {e}")))?;
            match bfcl.check(&ex) {
                Some(crate::bfcl::Contamination::Question) => questions += 1,
                Some(crate::bfcl::Contamination::ToolSet) => tool_sets += 1,
                None => {}
            }
        }
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(format!("{name}:bfcl_questions"), questions);
        out.insert(format!("{name}:bfcl_tool_sets"), tool_sets);
    }
    Ok(out)
}

#[derive(Serialize)]
struct PoolLine<'a> {
    source: &'a str,
    #[serde(flatten)]
    tool: Value,
}

/// Run the whole build.
pub fn build(opts: &BuildOptions) -> Result<Stats, DataError> {
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(DataError::Options(format!(
            "--val-fraction must be in [0, 1), got {}",
            opts.val_fraction
        )));
    }
    if !(0.0..=1.0).contains(&opts.compose) {
        return Err(DataError::Options(format!(
            "--compose must be in [0, 1], got {}",
            opts.compose
        )));
    }
    if opts.max_tools < 3 {
        return Err(DataError::Options(
            "--max-tools must be at least 3 (multiple choice needs 3 tools)".into(),
        ));
    }
    if !opts.teacher_dir.is_dir() {
        return Err(DataError::Missing {
            path: opts.teacher_dir.clone(),
            what: "teacher directory".into(),
        });
    }
    let mut stats = Stats {
        options: json!({
            "augment": opts.augment, "val_augment": opts.val_augment, "seed": opts.seed,
            "val_fraction": opts.val_fraction, "max_tools": opts.max_tools,
            "max_description_chars": opts.max_description_chars, "compose": opts.compose,
            "synth_per_tool": opts.synth_per_tool, "synth_augment": opts.synth_augment,
        }),
        ..Default::default()
    };
    let bfcl = BfclIndex::load(&opts.bfcl_dir)?;
    stats.bfcl = json!({"files": bfcl.files, "entries": bfcl.entries,
        "distinct_questions": bfcl.questions.len(), "distinct_tool_sets": bfcl.tool_sets.len()});

    // 1. Import.
    let names: Vec<&str> = TEACHER_SOURCES
        .iter()
        .chain(POOL_SOURCES)
        .copied()
        .collect();
    let pb = bar(opts.progress, names.len() as u64, "import");
    let results: Vec<Result<Imported, DataError>> = names
        .par_iter()
        .map(|n| {
            let r = import_source(&opts.teacher_dir, n);
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    let mut imported = Imported::default();
    for r in results {
        imported.merge(r?);
    }
    if imported.examples.is_empty() {
        return Err(DataError::Missing {
            path: opts.teacher_dir.clone(),
            what: format!(
                "no teacher examples imported (looked for folders {})",
                TEACHER_SOURCES.join(", ")
            ),
        });
    }
    stats.sources_read = imported.sources_read.clone();
    stats.sources_read.sort();
    stats.sources_missing = imported.sources_missing.clone();
    stats.sources_missing.sort();
    stats.imported = SetStats::of(&imported.examples);
    for e in imported.examples.iter().filter(|e| !e.calls.is_empty()) {
        *stats
            .imported_with_calls
            .entry(e.source.clone())
            .or_default() += 1;
    }
    stats.import_drops = imported.drops.0.clone();
    stats.skipped_tools = imported.skipped_tools.0.clone();
    stats.import_notes = imported.notes.0.clone();

    // 2. Clean.
    let cfg = CleanConfig {
        max_tools: opts.max_tools,
        max_description_chars: opts.max_description_chars,
        seed: opts.seed,
    };
    let mut clean_drops = Drops::default();
    let (cleaned, report) = clean(
        std::mem::take(&mut imported.examples),
        &bfcl,
        &cfg,
        &mut clean_drops,
    );
    stats.clean_drops = clean_drops.0;
    stats.clean = report;
    stats.cleaned = SetStats::of(&cleaned);
    stats.cleaned_with_calls = cleaned.iter().filter(|e| !e.calls.is_empty()).count();

    // 3. Split by held-out tools.
    let split = split_by_tools(cleaned, opts.val_fraction, opts.seed);
    stats.held_out_tools = split.held_out_tools.len();
    stats.train_base = SetStats::of(&split.train);
    stats.val_base = SetStats::of(&split.val);
    let held = &split.held_out_tools;

    // 4. Distractor pool: pool corpora plus the training examples' tools,
    // never a held-out tool.
    let mut pool_sources: BTreeMap<String, usize> = BTreeMap::new();
    let mut pool_tools: Vec<(String, Tool)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let from_examples = split
        .train
        .iter()
        .flat_map(|e| e.tools.iter().map(move |t| (e.source.clone(), t.clone())));
    let from_pools = imported.pool.into_iter().map(|p| (p.source, p.tool));
    for (src, mut t) in from_pools.chain(from_examples) {
        if held.contains(&t.name) || !seen.insert(t.name.clone()) {
            continue;
        }
        truncate_descriptions(&mut t, opts.max_description_chars);
        *pool_sources.entry(src.clone()).or_default() += 1;
        pool_tools.push((src, t));
    }
    stats.tool_pool = pool_sources;
    let pool = ToolPool::new(pool_tools.iter().map(|(_, t)| t.clone()).collect());
    let bank = ValueBank::from_examples(&split.train);

    // 5. Augment (train with `augment` variants, val with `val_augment`).
    let mut post_drops: BTreeMap<String, usize> = BTreeMap::new();
    let run = |examples: &[Example], per: usize, label: &'static str| {
        let aug = Augmenter {
            pool: &pool,
            values: &bank,
            cfg: AugmentConfig {
                per_example: per,
                seed: opts.seed,
                max_tools: opts.max_tools,
                ..AugmentConfig::default()
            },
        };
        let pb = bar(opts.progress, examples.len() as u64, label);
        let parts: Vec<(Vec<Example>, AugmentReport)> = examples
            .par_iter()
            .map(|e| {
                let r = aug.variants(e);
                pb.inc(1);
                r
            })
            .collect();
        pb.finish_and_clear();
        let mut report = AugmentReport::default();
        let mut out: Vec<Example> = examples.to_vec();
        for (vs, r) in parts {
            out.extend(vs);
            report.merge(r);
        }
        (out, report)
    };
    let (train_all, train_report) = run(&split.train, opts.augment, "augment");
    let (val_all, val_report) = run(
        &split.val,
        opts.val_augment.min(opts.augment),
        "augment val",
    );
    stats.augment_train = train_report;
    stats.augment_val = val_report;

    // 6. Post-augmentation filter: duplicates, BFCL, held-out tools in train.
    let mut filter = |all: Vec<Example>, is_train: bool| -> Vec<Example> {
        let mut keys = HashSet::new();
        let mut out = Vec::with_capacity(all.len());
        for e in all {
            if let Some(c) = bfcl.check(&e) {
                *post_drops.entry(c.reason().to_string()).or_default() += 1;
                continue;
            }
            if is_train && e.tools.iter().any(|t| held.contains(&t.name)) {
                *post_drops
                    .entry("held_out_tool_in_train".into())
                    .or_default() += 1;
                continue;
            }
            if !keys.insert(dedupe_key(&e)) {
                *post_drops.entry("duplicate".into()).or_default() += 1;
                continue;
            }
            out.push(e);
        }
        out
    };
    let mut train = filter(train_all, true);
    let mut val = filter(val_all, false);
    // 6a. Examples written from the pool's schemas, augmented like the
    // others and filtered the same way. Like the composites they join
    // after the shuffles below.
    let synthesized = if opts.synth_per_tool > 0 {
        let pool_only: Vec<Tool> = pool_tools.iter().map(|(_, t)| t.clone()).collect();
        let (base, rep) = crate::synth::synthesize(
            &pool_only,
            &bank,
            &crate::synth::SynthConfig {
                per_tool: opts.synth_per_tool,
                seed: opts.seed,
                ..crate::synth::SynthConfig::default()
            },
        );
        stats.synth_train = rep;
        let (all, aug_rep) = run(&base, opts.synth_augment, "augment synth");
        stats.augment_synth = aug_rep;
        filter(all, true)
    } else {
        Vec::new()
    };
    // 6b. Multi-call composites of training examples (filtered the same
    // way). They join after the shuffles below, so the validation file is
    // the same with or without them.
    let composites = if opts.compose > 0.0 {
        let mut source = train.clone();
        source.extend(synthesized.iter().cloned());
        let (extra, rep) = crate::compose::compose(
            &source,
            &crate::compose::ComposeConfig {
                fraction: opts.compose,
                max_tools: opts.max_tools,
                seed: opts.seed,
                ..crate::compose::ComposeConfig::default()
            },
        );
        stats.compose_train = rep;
        filter(extra, true)
    } else {
        Vec::new()
    };
    stats.post_augment_drops = post_drops;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    train.shuffle(&mut rng);
    val.shuffle(&mut rng);
    if !composites.is_empty() || !synthesized.is_empty() {
        train.extend(synthesized);
        train.extend(composites);
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5eed_c0de);
        train.shuffle(&mut rng);
    }
    stats.train = SetStats::of(&train);
    stats.val = SetStats::of(&val);
    stats.train_category_share = stats
        .train
        .by_category
        .iter()
        .map(|(k, v)| {
            let share = if train.is_empty() {
                0.0
            } else {
                (*v as f64 / train.len() as f64 * 1000.0).round() / 1000.0
            };
            (k.clone(), share)
        })
        .collect();

    // 7. Unlabelled queries: decontaminated and deduplicated.
    let mut unl_drops: BTreeMap<String, usize> = BTreeMap::new();
    let mut unl_seen = HashSet::new();
    let mut unlabelled: Vec<Unlabelled> = Vec::new();
    for u in imported.unlabelled {
        if u.query.trim().is_empty() {
            *unl_drops.entry("empty_query".into()).or_default() += 1;
        } else if bfcl.has_question(&u.query) {
            *unl_drops.entry("bfcl_question".into()).or_default() += 1;
        } else if !unl_seen.insert(normalize_text(&u.query)) {
            *unl_drops.entry("duplicate".into()).or_default() += 1;
        } else {
            unlabelled.push(u);
        }
    }
    for u in &unlabelled {
        *stats.unlabelled.entry(u.source.clone()).or_default() += 1;
    }
    stats.unlabelled_drops = unl_drops;

    // 8. Write, then check what was written.
    let out = &opts.out_dir;
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let pb = bar(opts.progress, 5, "write");
    write_jsonl(&out.join("train.jsonl"), &train)?;
    pb.inc(1);
    write_jsonl(&out.join("val.jsonl"), &val)?;
    pb.inc(1);
    write_jsonl(&out.join("unlabelled.jsonl"), &unlabelled)?;
    pb.inc(1);
    let pool_lines: Vec<PoolLine> = pool_tools
        .iter()
        .map(|(s, t)| PoolLine {
            source: s,
            tool: t.to_json(),
        })
        .collect();
    write_jsonl(&out.join("tool_pool.jsonl"), &pool_lines)?;
    pb.inc(1);
    let check =
        check_files_against_bfcl(&[&out.join("train.jsonl"), &out.join("val.jsonl")], &bfcl)?;
    let held_in_train = train
        .iter()
        .filter(|e| e.tools.iter().any(|t| held.contains(&t.name)))
        .count();
    let contaminated: usize = check.values().sum();
    stats.check = json!({"bfcl": check, "held_out_tools_in_train": held_in_train,
        "held_out_tool_names_sample": held.iter().take(20).collect::<Vec<_>>()});
    write_json_pretty(&out.join("stats.json"), &stats)?;
    pb.finish_and_clear();
    if contaminated > 0 || held_in_train > 0 {
        return Err(DataError::Options(format!(
            "post-build check failed: {contaminated} BFCL matches, {held_in_train} train examples with held-out tools (see stats.json)"
        )));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Call, ToolFormat};

    fn ex(id: &str, query: &str, tool: &str) -> Example {
        Example {
            id: id.into(),
            source: "s".into(),
            query: query.into(),
            tools: vec![Tool::parse(&json!({"name": tool}), ToolFormat::Auto).expect("tool")],
            calls: vec![Call::new(tool, Default::default())],
            teacher: None,
            context: Vec::new(),
        }
    }

    #[test]
    fn file_check_counts_bfcl_matches() {
        let mut bfcl = BfclIndex::default();
        bfcl.add_entry(
            &json!({"question": [[{"role": "user", "content": "Find the area, please!"}]],
            "function": [{"name": "area_fn"}]}),
        )
        .expect("entry");
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("train.jsonl");
        write_jsonl(
            &p,
            &[
                ex("a", "find the AREA please", "x"),
                ex("b", "other", "area_fn"),
                ex("c", "clean", "y"),
            ],
        )
        .expect("write");
        let c = check_files_against_bfcl(&[&p], &bfcl).expect("check");
        assert_eq!(c["train.jsonl:bfcl_questions"], 1);
        assert_eq!(c["train.jsonl:bfcl_tool_sets"], 1);
        std::fs::write(&p, "{\"id\": 1}\n").expect("write");
        let e = check_files_against_bfcl(&[&p], &bfcl).expect_err("not an example");
        assert!(
            e.to_string()
                .contains("train.jsonl:1: not a canonical example"),
            "{e}"
        );
    }

    #[test]
    fn categories_always_list_all_four() {
        let c = categories(&[ex("a", "q", "t")]);
        assert_eq!(c.len(), 4);
        assert_eq!(c["single"], 1);
        assert_eq!(c["no_call"], 0);
    }

    #[test]
    fn bad_options_are_errors() {
        let opts = BuildOptions {
            val_fraction: 1.5,
            ..Default::default()
        };
        assert!(matches!(build(&opts), Err(DataError::Options(_))));
        let opts = BuildOptions {
            max_tools: 2,
            ..Default::default()
        };
        assert!(matches!(build(&opts), Err(DataError::Options(_))));
    }
}
