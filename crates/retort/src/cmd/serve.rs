//! `retort serve`.

/// Not built yet (issue #5).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Arguments are accepted once this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    Err(super::not_built("serve", 5))
}
