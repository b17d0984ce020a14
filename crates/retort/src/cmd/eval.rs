//! `retort eval`.

#[derive(clap::Subcommand, Debug)]
pub enum EvalCommand {
    /// Score a model on BFCL v4 with BFCL's AST-checker rules (issue #3).
    Bfcl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Bfcl { .. } => Err(super::not_built("eval bfcl", 3)),
    }
}
