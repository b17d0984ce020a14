//! One module per subcommand.

pub mod bench;
pub mod call;
pub mod data;
pub mod distill;
pub mod eval;
pub mod import_log;
pub mod info;
pub mod serve;
pub mod train;

/// The error for a subcommand whose stage has not landed yet.
pub fn not_built(what: &str, issue: u32) -> anyhow::Error {
    anyhow::anyhow!(
        "`retort {what}` is not built yet (tracked in issue #{issue}); nothing was done"
    )
}
