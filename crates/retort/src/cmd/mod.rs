//! One module per subcommand.

pub mod bench;
pub mod call;
pub mod data;
pub mod decode;
pub mod distill;
pub mod eval;
pub mod eval_val;
pub mod import_log;
pub mod info;
pub mod serve;
pub mod train;
