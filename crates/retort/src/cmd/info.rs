//! `retort info`.

/// Not built yet (issue #4).
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Arguments are accepted once this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn run(_args: InfoArgs) -> anyhow::Result<()> {
    Err(super::not_built("info", 4))
}
