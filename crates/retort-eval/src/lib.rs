//! retort-eval: BFCL v4 evaluation.
//!
//! - [`loader`]: reads the BFCL v4 data directory (JSON lines, answer keys
//!   under `possible_answer/`) into [`Entry`]s with retort [`retort_core::Tool`]s.
//! - [`checker`]: a rule-for-rule reimplementation of BFCL's AST checker,
//!   with a [`Reason`] for every failure; [`convert`] ports its Java and
//!   JavaScript type converters.
//! - [`report`]: runs a [`retort_core::ToolCaller`] (or the answer key
//!   itself) over entries and builds a [`Report`] with per-category
//!   accuracy, BFCL's aggregates, latency and schema validity.
//! - [`chart`]: the published reference numbers and an SVG bar chart.

pub mod category;
pub mod chart;
pub mod checker;
pub mod convert;
pub mod gold;
pub mod loader;
pub mod py;
pub mod report;

pub use category::{Category, Language, Scoring};
pub use chart::{ReferenceModel, reference_models, svg_chart};
pub use checker::{Failure, Reason, check};
pub use gold::gold_calls;
pub use loader::{Entry, LoadError, load, load_category};
pub use report::{
    Aggregates, CategoryScore, EntryResult, EvalError, LatencyStats, Report, SchemaValidity,
    evaluate, evaluate_entries, evaluate_gold, load_limited, score_entry,
};

/// Write `bytes` to `path` atomically (its folder is created if needed).
pub use retort_core::fsutil::write_atomic;

#[cfg(test)]
mod tests {
    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("out.json");
        super::write_atomic(&p, b"one").expect("write");
        super::write_atomic(&p, b"two").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1);
    }
}
