//! `retort data`.

use std::path::PathBuf;

use anyhow::Context;

/// Options of `retort data build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Folder holding the teacher corpora (seal/, apibank/, llamafactory/,
    /// toolrl/, callnavi/, nestful/, toolalpaca/, taubench/ and the pools
    /// livemcpbench/, metatool/, taskbench/); missing folders are skipped and
    /// listed in stats.json.
    #[arg(long, value_name = "DIR")]
    teacher_dir: PathBuf,
    /// Folder with BFCL's BFCL_v4_*.json files, read only for the
    /// contamination filter (examples whose query or tool-name set matches a
    /// BFCL entry are dropped).
    #[arg(long, value_name = "DIR")]
    bfcl: PathBuf,
    /// Output folder for train.jsonl, val.jsonl, unlabelled.jsonl,
    /// tool_pool.jsonl and stats.json (created if needed; files are replaced
    /// atomically).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Augmented variants generated per training example (0 turns
    /// augmentation off); the original example is always kept too.
    #[arg(long, default_value_t = 10, value_name = "N")]
    augment: usize,
    /// Augmented variants per validation example (capped at --augment).
    #[arg(long, default_value_t = 2, value_name = "N")]
    val_augment: usize,
    /// Seed of every random choice (tool capping, split, augmentation,
    /// shuffling): the same seed and inputs give the same files.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,
    /// Approximate fraction of cleaned examples sent to val.jsonl. The split
    /// holds out whole tools: every example offering a held-out tool goes to
    /// validation, never to training.
    #[arg(long, default_value_t = 0.05, value_name = "F")]
    val_fraction: f64,
    /// Most tools offered by one example (gold tools are always kept).
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_tools: usize,
    /// Tool and parameter descriptions longer than this many characters are
    /// cut.
    #[arg(long, default_value_t = 300, value_name = "N")]
    max_description_chars: usize,
    /// Multi-call training examples joined from single-call ones ("X. Also,
    /// Y" with both calls; the same function twice or different ones), as
    /// a fraction of the training set; 0 turns it off. Validation is never
    /// composed.
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    compose: f64,
    /// Examples written per pool tool from its own schema (arguments drawn
    /// from the schema and the corpora's values, a request that mentions
    /// each one); 0 turns it off. Gives training the thousands of pool
    /// tools no teacher example calls. Training only.
    #[arg(long, default_value_t = 0, value_name = "N")]
    synth_per_tool: usize,
    /// Augmented variants per synthesized example (distractors,
    /// irrelevance, name masking, noise).
    #[arg(long, default_value_t = 2, value_name = "N")]
    synth_augment: usize,
    /// Do not draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Import every teacher corpus, clean, deduplicate, decontaminate against
    /// BFCL and augment into train.jsonl / val.jsonl / stats.json (issue #2).
    Build(BuildArgs),
    /// Turn logged OpenAI chat-completions traffic into examples.
    ImportLog(super::import_log::ImportLogArgs),
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Build(a) => build(a),
        DataCommand::ImportLog(a) => super::import_log::run(a),
    }
}

fn build(a: BuildArgs) -> anyhow::Result<()> {
    let opts = retort_data::BuildOptions {
        teacher_dir: a.teacher_dir,
        bfcl_dir: a.bfcl,
        out_dir: a.out.clone(),
        augment: a.augment,
        val_augment: a.val_augment,
        seed: a.seed,
        val_fraction: a.val_fraction,
        max_tools: a.max_tools,
        max_description_chars: a.max_description_chars,
        compose: a.compose,
        synth_per_tool: a.synth_per_tool,
        synth_augment: a.synth_augment,
        progress: !a.no_progress,
    };
    let opts_compose = opts.compose;
    let opts_synth = opts.synth_per_tool;
    let s = retort_data::build(&opts).context("data build failed")?;
    let with_calls: usize = s.imported_with_calls.values().sum();
    println!(
        "imported {} examples ({} with calls) from {} sources; {} after cleaning",
        s.imported.total,
        with_calls,
        s.imported_with_calls.len(),
        s.cleaned.total
    );
    if !s.sources_missing.is_empty() {
        println!("missing corpora: {}", s.sources_missing.join(", "));
    }
    let cats = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "train: {} examples ({}) from {} base",
        s.train.total,
        cats(&s.train.by_category),
        s.train_base.total
    );
    if opts_compose > 0.0 {
        println!(
            "composed: {} multi-call training examples ({} repeating one function, {} with different functions)",
            s.compose_train.same_function + s.compose_train.different_functions,
            s.compose_train.same_function,
            s.compose_train.different_functions
        );
    }
    if opts_synth > 0 {
        println!(
            "synthesized: {} examples from {} pool tools, {} after augmentation",
            s.synth_train.examples,
            s.synth_train.tools_used,
            s.synth_train.examples + s.augment_synth.variants
        );
    }
    println!(
        "val: {} examples over {} held-out tools ({})",
        s.val.total,
        s.held_out_tools,
        cats(&s.val.by_category)
    );
    let bfcl_drops: usize = s
        .clean_drops
        .values()
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.starts_with("bfcl_"))
        .map(|(_, v)| v)
        .sum();
    println!(
        "dropped as BFCL-contaminated: {bfcl_drops}; tool pool: {} tools; unlabelled: {} queries",
        s.tool_pool.values().sum::<usize>(),
        s.unlabelled.values().sum::<usize>()
    );
    println!("wrote {}", a.out.display());
    Ok(())
}
