//! retort-data: the data stage of retort.
//!
//! - [`import`]: one importer per teacher corpus into canonical
//!   [`retort_core::Example`]s, plus the distractor-tool and unlabelled-query
//!   pools.
//! - [`clean`]: validation, size limits, deduplication.
//! - [`bfcl`]: the BFCL contamination filter.
//! - [`augment`]: deterministic augmentation.
//! - [`compose`]: multi-call examples joined from single-call ones.
//! - [`split`]: validation split by held-out tools.
//! - [`synth`]: single-call examples written from the tool pool's schemas.
//! - [`build`]: the whole `retort data build` pipeline.

pub mod augment;
pub mod bfcl;
pub mod build;
pub mod clean;
pub mod compose;
pub mod error;
pub mod import;
pub mod io;
pub mod pylit;
pub mod rng;
pub mod schema_fix;
pub mod split;
pub mod synth;

pub use build::{BuildOptions, Stats, build};
pub use error::DataError;
