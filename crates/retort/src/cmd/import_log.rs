//! `retort data import-log`: logged chat completions become examples.

use std::path::PathBuf;

use anyhow::Result;

/// The format of a log.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One `{"request": ..., "response": ...}` per line: OpenAI chat
    /// completions bodies as the API takes and sends them.
    Openai,
}

#[derive(clap::Args, Debug)]
pub struct ImportLogArgs {
    /// The log's format.
    #[arg(long, value_enum, default_value = "openai")]
    pub format: LogFormat,
    /// The log (JSONL).
    #[arg(value_name = "LOG.jsonl")]
    pub input: PathBuf,
    /// Output JSONL of examples (replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Stop at the first line that cannot be imported instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: ImportLogArgs) -> Result<()> {
    let report = match args.format {
        LogFormat::Openai => {
            retort_teacher::import_openai_log(&args.input, &args.out, args.strict)?
        }
    };
    println!(
        "imported {} examples from {} lines of {} into {}",
        report.imported,
        report.lines,
        args.input.display(),
        args.out.display()
    );
    if !report.skipped.is_empty() {
        let reasons: Vec<String> = report
            .skipped
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("skipped: {}", reasons.join(", "));
        for s in &report.first_skips {
            println!("  {s}");
        }
    }
    Ok(())
}
