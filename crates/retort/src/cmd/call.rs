//! `retort call`.

/// Not built yet (issue #5).
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// Arguments are accepted once this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn run(_args: CallArgs) -> anyhow::Result<()> {
    Err(super::not_built("call", 5))
}
