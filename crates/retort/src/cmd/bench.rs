//! `retort bench`.

/// Not built yet (issue #3).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Arguments are accepted once this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    Err(super::not_built("bench", 3))
}
