//! retort-model: the student network and everything around it.
//!
//! - [`render`]: the MiniLM tokenizer and the input rendering (query + tools).
//! - [`net`]: the BERT encoder and the pointer decoder (burn, `flex` backend).
//! - [`qgemm`]: int8 products of the encoder's int8-stored matrices.
//! - [`features`]: lexical features of the input, read by the network.
//! - [`grammar`]: the schema state machine of constrained decoding.
//! - [`decode_config`]: the hand-set decoding rules (`config.json`'s `decode`).
//! - [`targets`]: gold calls turned into training steps and masks.
//! - [`weights`]: MiniLM import, model files (safetensors + config + tokenizer).
//! - [`cache`]: the tool-encoding cache (block-masked models) and the ranking embeddings'.
//! - [`rank`]: tools ranked by sentence-embedding cosine, for big catalogues.
//! - [`model`]: [`Model`], which implements [`retort_core::ToolCaller`].

pub mod cache;
pub mod config;
pub mod decode_config;
pub mod error;
pub mod fastdec;
pub mod fastenc;
pub mod features;
pub mod grammar;
pub mod model;
pub mod net;
pub mod qgemm;
pub mod rank;
pub mod render;
pub mod targets;
pub mod weights;

pub use config::ModelConfig;
pub use decode_config::DecodeConfig;
pub use error::ModelError;
pub use model::{Decoded, Model};
pub mod testutil;

#[cfg(test)]
mod tests_grammar;
#[cfg(test)]
mod tests_net;
