//! `retort data`.

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Import every teacher corpus, clean, deduplicate, decontaminate against
    /// BFCL and augment into train.jsonl / val.jsonl / stats.json (issue #2).
    Build {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
    /// Turn logged OpenAI chat-completions traffic into examples.
    ImportLog(super::import_log::ImportLogArgs),
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Build { .. } => Err(super::not_built("data build", 2)),
        DataCommand::ImportLog(a) => super::import_log::run(a),
    }
}
