//! `retort data-import-log`.

/// Not built yet (issue #6).
#[derive(clap::Args, Debug)]
pub struct ImportLogArgs {
    /// Arguments are accepted once this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn run(_args: ImportLogArgs) -> anyhow::Result<()> {
    Err(super::not_built("data import-log", 6))
}
