//! The model configuration (`config.json` next to the weights).

use serde::{Deserialize, Serialize};

pub use crate::decode_config::DecodeConfig;
use crate::error::ModelError;

/// Architecture and decoding settings of a student model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// WordPiece vocabulary size of the encoder (MiniLM: 30,522).
    pub vocab_size: usize,
    /// Model width (MiniLM: 384).
    pub hidden: usize,
    /// Encoder layers (MiniLM: 6).
    pub enc_layers: usize,
    /// Attention heads of encoder and decoder.
    pub heads: usize,
    /// Encoder feed-forward width (MiniLM: 1536).
    pub enc_ffn: usize,
    /// Encoder position embeddings (MiniLM: 512): the longest rendered input.
    pub max_positions: usize,
    /// Segment (token type) embeddings (MiniLM: 2).
    pub type_vocab: usize,
    pub layer_norm_eps: f64,
    /// Decoder layers.
    pub dec_layers: usize,
    /// Decoder feed-forward width.
    pub dec_ffn: usize,
    /// Longest action sequence (decoder position embeddings).
    pub max_steps: usize,
    /// Word-piece ids the decoder may generate (the restricted, tied output
    /// vocabulary); everything else must be copied from the input.
    pub gen_vocab: Vec<u32>,
    /// Tokens of a tool description kept in the rendered input.
    pub tool_desc_tokens: usize,
    /// Tokens of a parameter description kept in the rendered input.
    pub param_desc_tokens: usize,
    /// Longest value (in word pieces) the decoder may emit.
    pub max_value_tokens: usize,
    /// Temperature of the confidence (fitted on validation data).
    pub confidence_temperature: f64,
    /// Block attention mask in the encoder: tool tokens attend only to
    /// their own tool and their positions restart at every tool, so a
    /// tool's encoding does not depend on the query and is cached across
    /// requests. Query tokens attend to everything. Absent in older
    /// configurations (full attention).
    #[serde(default)]
    pub block_mask: bool,
    /// The block mask in the lowest `block_layers` encoder layers only
    /// (0: none; ignored when `block_mask` puts it in every layer). Tool
    /// positions restart at every tool, the lower layers' tool states are
    /// cached as under `block_mask`, and the layers above attend fully, so
    /// a request runs only its query through the lower layers and the
    /// whole input through the few upper ones.
    #[serde(default)]
    pub block_layers: usize,
    /// Lexical features ([`crate::features`]) as learned inputs: a vector
    /// per feature bit is added to the encoder states the decoder reads.
    /// Absent in older configurations (no features).
    #[serde(default)]
    pub lexical_features: bool,
    /// The hand-set decoding rules (the `"decode"` object; see
    /// [`DecodeConfig`]). Absent, or a rule absent from it: off.
    #[serde(default)]
    pub decode: DecodeConfig,
    /// When the tools do not fit into the input, the least relevant are
    /// left out. Relevance is the number of word pieces a tool shares with
    /// the query plus `rank_weight` times the cosine between their sentence
    /// embeddings, the mean of the token states after `rank_layers` encoder
    /// layers (see [`crate::rank`]). `rank_layers` 0 (older
    /// configurations): shared word pieces only. Chosen on validation data
    /// with `retort eval rank`.
    #[serde(default)]
    pub rank_layers: usize,
    /// See `rank_layers`.
    #[serde(default)]
    pub rank_weight: f64,
    /// Multiply the int8-stored matrices of the encoder and of the host
    /// decoder (its steps and its per-request projections of the encoder
    /// states) in integers: each row of activations is quantized to 16-bit
    /// integers on the fly (one step per row) and the sums are exact (see
    /// [`crate::qgemm`]). Faster, above all on CPUs with AVX-512 VNNI, at
    /// the cost of rounding the activations to 1/11,000 of each row's
    /// peak. Off (older configurations): the matrices are dequantized and
    /// multiplied in f32. Has no effect on matrices stored as f32.
    #[serde(default)]
    pub integer_products: bool,
    /// With `integer_products`, the encoder matrices whose products round
    /// their activations to 8 bits (asymmetric, one step and zero point
    /// per group of 256 channels of a row) instead of 16: twice the
    /// arithmetic rate on AVX-512 VNNI (`vpdpbusd`), at a coarser rounding
    /// (1/255 of each group's range).
    /// Any of `"attention"` (the query, key, value and output matrices),
    /// `"ffn_in"` (the first feed-forward matrix) and `"ffn_out"` (the
    /// second, whose GELU inputs are the most sensitive to the rounding:
    /// crates/retort-model/README.md). Empty (older configurations): all
    /// 16-bit. Only on CPUs with AVX-512 VNNI: elsewhere the products stay
    /// 16-bit (the portable 8-bit loop is no faster), so answers there are
    /// those without this setting.
    #[serde(default)]
    pub eight_bit_activations: Vec<EncoderMatrix>,
}

/// The kinds of encoder matrix, for [`ModelConfig::eight_bit_activations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderMatrix {
    /// The attention's query, key, value and output matrices.
    Attention,
    /// The first feed-forward matrix (hidden -> ffn).
    FfnIn,
    /// The second feed-forward matrix (ffn -> hidden).
    FfnOut,
}

impl ModelConfig {
    /// MiniLM-L6 encoder plus a 2-layer pointer decoder: the shipped shape.
    pub fn minilm(gen_vocab: Vec<u32>) -> Self {
        ModelConfig {
            vocab_size: 30522,
            hidden: 384,
            enc_layers: 6,
            heads: 12,
            enc_ffn: 1536,
            max_positions: 512,
            type_vocab: 2,
            layer_norm_eps: 1e-12,
            dec_layers: 2,
            dec_ffn: 512,
            max_steps: 96,
            gen_vocab,
            tool_desc_tokens: 24,
            param_desc_tokens: 10,
            max_value_tokens: 40,
            confidence_temperature: 1.0,
            block_mask: true,
            block_layers: 0,
            lexical_features: false,
            decode: DecodeConfig::default(),
            rank_layers: 0,
            rank_weight: 0.0,
            integer_products: false,
            eight_bit_activations: Vec::new(),
        }
    }

    /// A tiny configuration for tests (random init, same vocabulary): the
    /// shipped shape's settings with small layers and no block mask.
    pub fn tiny(gen_vocab: Vec<u32>) -> Self {
        ModelConfig {
            hidden: 32,
            enc_layers: 1,
            heads: 2,
            enc_ffn: 64,
            dec_layers: 1,
            dec_ffn: 64,
            block_mask: false,
            ..Self::minilm(gen_vocab)
        }
    }

    /// Encoder layers (from the bottom) under the block mask: all of them
    /// with `block_mask`, else `block_layers`.
    pub fn masked_layers(&self) -> usize {
        if self.block_mask {
            self.enc_layers
        } else {
            self.block_layers.min(self.enc_layers)
        }
    }

    /// The block mask of this network's encoder, if any.
    pub fn block(&self, sep: u32) -> Option<crate::net::BlockMask> {
        let layers = self.masked_layers();
        (layers > 0).then_some(crate::net::BlockMask { sep, layers })
    }

    /// Check the invariants the network relies on.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.hidden == 0 || self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return bad(format!(
                "hidden ({}) must be a positive multiple of heads ({})",
                self.hidden, self.heads
            ));
        }
        if self.vocab_size == 0 || self.max_positions < 8 || self.type_vocab < 2 {
            return bad("vocab_size, max_positions and type_vocab are too small".into());
        }
        if self.max_steps < 4 || self.enc_ffn == 0 || self.dec_ffn == 0 {
            return bad("max_steps, enc_ffn and dec_ffn must be positive".into());
        }
        if let Some(t) = self
            .gen_vocab
            .iter()
            .find(|&&t| t as usize >= self.vocab_size)
        {
            return bad(format!("gen_vocab id {t} is outside the vocabulary"));
        }
        self.decode.check()?;
        let w = self.rank_weight;
        if !(w.is_finite() && w.abs() <= 50.0) {
            return bad(format!("rank_weight must be within -50..50, got {w}"));
        }
        if !(self.confidence_temperature.is_finite() && self.confidence_temperature > 0.0) {
            return bad("confidence_temperature must be positive".into());
        }
        if self.block_layers > self.enc_layers {
            return bad(format!(
                "block_layers ({}) exceeds the {} encoder layers",
                self.block_layers, self.enc_layers
            ));
        }
        if self.rank_layers > self.enc_layers {
            return bad(format!(
                "rank_layers ({}) exceeds the {} encoder layers",
                self.rank_layers, self.enc_layers
            ));
        }
        Ok(())
    }

    /// Parse and check a `config.json`.
    /// Decoding rules at the top level (configurations older than the
    /// `"decode"` object) are read into `decode`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ModelError::Config(e.to_string()))?;
        crate::decode_config::lift_flat_rules(&mut v)?;
        let cfg: ModelConfig =
            serde_json::from_value(v).map_err(|e| ModelError::Config(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }
}
