//! The model configuration (`config.json` next to the weights).

use serde::{Deserialize, Serialize};

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
    /// Added to the logits of copying a value piece from the query while
    /// decoding (0: the trained distribution). Tuned on held-out
    /// validation data, never on test data.
    #[serde(default)]
    pub copy_bias: f64,
    /// While decoding, a value piece copied right after another copied
    /// piece must come from the next query position. Chosen on validation
    /// data.
    #[serde(default)]
    pub contiguous_copy: bool,
    /// While decoding, copies keep whole words: a value never starts with
    /// a copied word-piece continuation (`##...`), and after a copied piece
    /// whose next query piece continues the same word, that piece is the
    /// only copy allowed and the value cannot end there. Chosen on
    /// validation data.
    #[serde(default)]
    pub whole_word_copy: bool,
    /// Logit added to refusing (`STOP` before any call) while decoding;
    /// negative values make the model refuse less. 0: as trained. Tuned on
    /// held-out validation data, never on test data.
    #[serde(default)]
    pub refusal_bias: f64,
    /// Logit added to `STOP` after the first call while decoding: positive
    /// values make further (parallel) calls rarer. 0: as trained. Tuned on
    /// held-out validation data, never on test data.
    #[serde(default)]
    pub extra_call_bias: f64,
    /// Word-overlap prior on choosing the first call's function: each tool
    /// gets this logit times (the distinct word pieces of at least three
    /// characters it shares with the query, in its name, description or
    /// parameter names, minus the most any tool shares). Refusing is left
    /// as it is. 0: off. Tuned on held-out validation data, never on test
    /// data.
    #[serde(default)]
    pub overlap_bias: f64,
    /// Logit added to `END_CALL` once every required parameter is given:
    /// positive values leave optional parameters out more often. 0: as
    /// trained. Tuned on held-out validation data, never on test data.
    #[serde(default)]
    pub end_call_bias: f64,
    /// While decoding a value that is not an enum member, pieces are copied
    /// from the query only, never from the tools' text (a description's
    /// words are not argument values). Chosen on validation data.
    #[serde(default)]
    pub query_copies_only: bool,
    /// After decoding, a further call of a function already called is kept
    /// only if it copies some query position that no earlier call of that
    /// function copied (a repeat must be about something new). Chosen on
    /// validation data.
    #[serde(default)]
    pub novel_repeat_calls: bool,
    /// An array value has at least one element: ending an array before
    /// its first element is not allowed (an empty list is almost never
    /// what a request asks for). Chosen on validation data.
    #[serde(default)]
    pub non_empty_arrays: bool,
    /// A number copied from the query keeps its thousands separators
    /// ("$12,000" gives 12000, not 12): right after copied digits that are
    /// followed in the query by `,` and a group of three digits (no spaces),
    /// the copy goes on through them. Not inside lists.
    #[serde(default)]
    pub thousands_separators: bool,
    /// A call's parameters are decoded in the order its schema lists them:
    /// an optional one may be left out, a required one may not, and none
    /// comes after a later one. The model tends to give the first value the
    /// query states to the first parameter it writes; requests mostly state
    /// values in the schema's order. Measured neutral on validation, so off
    /// in the shipped model.
    #[serde(default)]
    pub schema_order_params: bool,
    /// A call's required parameters are all given before any optional one.
    /// The model tends to fill an optional parameter early with a value the
    /// query meant for a required one ("base 10, height 5" giving
    /// `unit: "10"`), which then leaves the required one a guess.
    #[serde(default)]
    pub required_first_params: bool,
    /// Logit added, at the first piece of a value that is not an enum
    /// member, to the query positions its parameter's name points at: the
    /// piece right after a query mention of one of the name's words
    /// (skipping "=", ":", "is", "of", ...), and for numbers also the number
    /// right before one ("3 passengers"). 0: off. Tuned on validation data.
    #[serde(default)]
    pub name_anchor_bias: f64,
    /// For a number, a name mention also points at the first number within
    /// this many query pieces after it, past other words ("final
    /// temperature of 400K" points `final_temp` at 400); stops at `,`, `;`,
    /// `.`, `?` and `!`. 0: off.
    #[serde(default)]
    pub anchor_window: usize,
    /// Logit subtracted from refusing (at the first decision) per word
    /// piece the best-sharing tool shares with the request (the count
    /// `overlap_bias` uses): a request that names much of a tool is rarely
    /// one no tool fits. 0: off.
    #[serde(default)]
    pub refusal_overlap_bias: f64,
    /// Logit subtracted from stopping after a call per word piece the
    /// best-sharing tool not called yet shares with the request. 0: off.
    #[serde(default)]
    pub extra_call_overlap_bias: f64,
    /// Word-overlap prior on the function of every call after the first:
    /// counting, for each tool, the word pieces it shares with the request
    /// that no tool called so far shares, a tool loses this logit per
    /// piece fewer than the tool with the most. A request that asks for
    /// several things moves on to the tool for the part not yet answered.
    /// 0: off.
    #[serde(default)]
    pub later_overlap_bias: f64,
    /// Logit subtracted from stopping after a call per word piece (the
    /// most any tool has) that a tool shares with the request and no tool
    /// called so far does. 0: off.
    #[serde(default)]
    pub stop_rest_overlap_bias: f64,
    /// Logit subtracted, at the first piece of a number, from the query
    /// numbers that another parameter of the call, not given yet and
    /// numeric too, points at by its name (and this one does not): "3
    /// meters away from a charge of 2" keeps `distance` off the 2 that
    /// `charge` points at. 0: off.
    #[serde(default)]
    pub rival_anchor_bias: f64,
    /// Lists read in order: when a copied array element is followed in
    /// the request by a list separator (`,` `;` "and" "or" `&` "plus") and
    /// an item of the same kind (a number after a number, a capitalised
    /// word after a capitalised word, a lower-case word after one), adding
    /// another element gains this logit, and the next element's first
    /// piece gains it at that item ("85, 90 and 88" reads as three
    /// elements, in that order). 0: off.
    #[serde(default)]
    pub next_item_bias: f64,
    /// The same reading between calls: logit subtracted from stopping when
    /// a value the last call copied is followed in the request by a list
    /// separator and an item of the same kind that no call has copied yet
    /// ("weather in Paris, London and Berlin" asks for three calls). 0: off.
    #[serde(default)]
    pub next_call_item_bias: f64,
    /// Optional parameters the request names: while a call chooses its
    /// next parameter (or ends), an optional parameter not given yet gains
    /// this logit when a word of its name (three letters or more, not a
    /// word of the function's name nor a general one such as "include",
    /// "max" or "type") is a word of the request, or shares its first five
    /// letters or more with one ("including human impact" names
    /// `include_human_impact`, "detailed" names `details`). 0: off.
    #[serde(default)]
    pub mentioned_param_bias: f64,
    /// Names are copied whole: in a text value that began with a
    /// capitalised word, at the end of a word, copying on into the next
    /// word gains this logit when it is capitalised too ("Santa Clara")
    /// and loses it when it is lower-case ("Los Angeles court"). 0: off.
    #[serde(default)]
    pub capital_run_bias: f64,
    /// Logit added, at the first piece of a text value that is not an enum
    /// member, to the start of the word right before a query mention of
    /// one of its parameter's name words, when that word is not a filler
    /// ("grunge style" points `style` at "grunge", "comprehensive
    /// coverage" `coverage_type` at "comprehensive"). 0: off.
    #[serde(default)]
    pub name_before_bias: f64,
    /// Dates from the request: after decoding, a string argument that
    /// reads as a numeric date ("2023-04-15") takes its month and day, and
    /// its year when the request gives one, from a date the request writes
    /// ("April 25th", "25/04/2023"), and is written in the layout its
    /// parameter's description names ("MM-DD-YYYY"), else as the model
    /// wrote it (see [`crate::dates`]). Off in older configurations.
    #[serde(default)]
    pub request_dates: bool,
    /// Percentages as fractions: after decoding, a `number` argument equal
    /// to a number the request writes as a percentage ("5%", "5 percent")
    /// becomes its hundredth (0.05) when its parameter's description asks
    /// for a decimal or a fraction (see [`crate::percent`]). Off in older
    /// configurations.
    #[serde(default)]
    pub percent_fractions: bool,
    /// Places in the layout a description asks for: after decoding, a
    /// string argument without a comma whose description asks for "City,
    /// State" or "City, Country" is completed with the state or country
    /// the request writes right after it, else from a small gazetteer
    /// (see [`crate::places`]). Off in older configurations.
    #[serde(default)]
    pub place_format: bool,
    /// Bracketed lists end at their bracket: in an array, an element
    /// copied up to the query piece before a `]` or `)` that closes a
    /// bracket opened before the element is the last one ("[18, 16, 22]
    /// and 3" gives three elements, "A(3,4) and B(1,2)" two). Off in older
    /// configurations.
    #[serde(default)]
    pub bracket_lists: bool,
    /// Logit subtracted, in a text value, from copying on into a query
    /// word written in lower case that is a word of the parameter's name
    /// ("New York court" for `court_location` stops before "court",
    /// "renewable energy" for `energy_type` before "energy"). 0: off.
    #[serde(default)]
    pub kind_word_bias: f64,
    /// A text value (or text array element) does not start by copying a
    /// lower-case "the", "a" or "an" from the query ("the neutron" reads
    /// "neutron"; "The Hague" keeps its capital). Off in older
    /// configurations.
    #[serde(default)]
    pub no_leading_articles: bool,
    /// The longest input (tokens) while two or more tools are rendered:
    /// beyond it, tool descriptions are shortened and the least relevant
    /// tools left out, as they are beyond `max_positions`; a lone tool may
    /// still use all `max_positions`. The trainer renders at most
    /// `--max-src-len` tokens (192 for the shipped weights), so a cap near
    /// it keeps inference inputs like the training ones. 0 (older
    /// configurations): `max_positions`. Chosen on validation data.
    #[serde(default)]
    pub max_input_tokens: usize,
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
            copy_bias: 0.0,
            contiguous_copy: false,
            whole_word_copy: false,
            refusal_bias: 0.0,
            extra_call_bias: 0.0,
            end_call_bias: 0.0,
            overlap_bias: 0.0,
            query_copies_only: false,
            novel_repeat_calls: false,
            non_empty_arrays: false,
            thousands_separators: false,
            schema_order_params: false,
            required_first_params: false,
            name_anchor_bias: 0.0,
            anchor_window: 0,
            refusal_overlap_bias: 0.0,
            extra_call_overlap_bias: 0.0,
            later_overlap_bias: 0.0,
            stop_rest_overlap_bias: 0.0,
            rival_anchor_bias: 0.0,
            next_item_bias: 0.0,
            next_call_item_bias: 0.0,
            mentioned_param_bias: 0.0,
            capital_run_bias: 0.0,
            name_before_bias: 0.0,
            request_dates: false,
            percent_fractions: false,
            place_format: false,
            bracket_lists: false,
            kind_word_bias: 0.0,
            no_leading_articles: false,
            max_input_tokens: 0,
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
        for (name, b) in [
            ("refusal_bias", self.refusal_bias),
            ("copy_bias", self.copy_bias),
            ("extra_call_bias", self.extra_call_bias),
            ("end_call_bias", self.end_call_bias),
            ("overlap_bias", self.overlap_bias),
            ("name_anchor_bias", self.name_anchor_bias),
            ("rival_anchor_bias", self.rival_anchor_bias),
            ("next_item_bias", self.next_item_bias),
            ("next_call_item_bias", self.next_call_item_bias),
            ("mentioned_param_bias", self.mentioned_param_bias),
            ("capital_run_bias", self.capital_run_bias),
            ("name_before_bias", self.name_before_bias),
            ("kind_word_bias", self.kind_word_bias),
            ("refusal_overlap_bias", self.refusal_overlap_bias),
            ("extra_call_overlap_bias", self.extra_call_overlap_bias),
            ("later_overlap_bias", self.later_overlap_bias),
            ("stop_rest_overlap_bias", self.stop_rest_overlap_bias),
            ("rank_weight", self.rank_weight),
        ] {
            if !(b.is_finite() && b.abs() <= 50.0) {
                return bad(format!("{name} must be within -50..50, got {b}"));
            }
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
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let cfg: ModelConfig =
            serde_json::from_slice(bytes).map_err(|e| ModelError::Config(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }
}
