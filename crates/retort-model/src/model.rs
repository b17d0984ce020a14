//! [`Model`]: load a model directory (or the embedded default model) and
//! answer requests with schema-constrained greedy decoding.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use retort_core::{Call, CallOptions, CallerError, Prediction, Tool, ToolCaller};

use crate::cache::{EmbedCache, ToolCache};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::fastdec::{HostDecoder, HostPrepared};
use crate::grammar::{Choice, Grammar, State};
use crate::net::{EncBatch, HostParams, Net, Params, action, kind};
use crate::render::{RTool, RenderLimits, Rendered, Tok, render_ranked};
use crate::targets::next_input;
use crate::weights;

/// Temperatures at which every decoding also reports the sequence
/// log-probability (used to fit the confidence temperature).
pub const TEMPERATURES: [f64; 14] = [
    0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0,
];

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub calls: Vec<Call>,
    /// Calibrated confidence (the sequence probability at the model's temperature).
    pub confidence: f64,
    /// Sequence log-probability at each of [`TEMPERATURES`] (empty unless
    /// [`Aids::all_temperatures`] asked for it).
    pub logp: Vec<f64>,
    /// Number of decoder steps taken.
    pub steps: usize,
}

/// A loaded student model. Immutable after loading, so one instance can
/// serve many threads at once.
pub struct Model {
    pub cfg: ModelConfig,
    pub net: Net,
    pub params: Params,
    pub tok: Tok,
    pub device: Device,
    tokenizer_json: Vec<u8>,
    /// Encodings of recently seen tools (used under a block mask).
    pub tool_cache: ToolCache,
    /// Sentence embeddings of recent queries and tools (tool ranking).
    pub embed_cache: EmbedCache,
    /// The decoder's weights on the host, for fast greedy steps.
    pub(crate) host_dec: HostDecoder,
}

/// Default size of the tool-encoding cache: about 50 BFCL-sized tools.
pub const DEFAULT_TOOL_CACHE_BYTES: usize = 64 << 20;

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("cfg", &self.cfg).finish()
    }
}

#[cfg(retort_embedded)]
mod embedded {
    pub const CONFIG: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/config.json"
    ));
    pub const TOKENIZER: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tokenizer.json"
    ));
    pub const WEIGHTS: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/model.safetensors"
    ));
}

/// Ask the kernel to reclaim the resident pages of `bytes`, a static in
/// the executable's read-only data: once the model is built from them the
/// embedded weights are not read again, yet their 26 MB of pages would stay
/// in the process's resident set. Measured: a freshly loaded `retort
/// serve` went from 126 to 100 MB resident (`RssFile` 36 -> 10 MB). A hint
/// only; nothing changes where it is unsupported.
#[cfg(all(retort_embedded, target_os = "linux"))]
fn release_pages(bytes: &'static [u8]) {
    const PAGE: usize = 4096;
    let start = bytes.as_ptr() as usize;
    let first = start.div_ceil(PAGE) * PAGE;
    let end = (start + bytes.len()) / PAGE * PAGE;
    if end <= first {
        return;
    }
    // SAFETY: [first, end) is made of whole pages inside `bytes`, a
    // `'static` read-only array that lives in the executable's file-backed,
    // never-written mapping. MADV_PAGEOUT only asks the kernel to reclaim
    // those pages; it changes no memory contents (a later read faults the
    // same bytes back in from the file), so no Rust reference or invariant
    // is affected. Errors (an older kernel without MADV_PAGEOUT) are
    // ignored: the pages then simply stay resident.
    let rc = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_PAGEOUT) };
    if rc != 0 {
        tracing::debug!("madvise(MADV_PAGEOUT) on the embedded weights failed");
    }
}

#[cfg(all(retort_embedded, not(target_os = "linux")))]
fn release_pages(_bytes: &'static [u8]) {}

impl Model {
    /// Load `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Model, ModelError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| ModelError::io(&p, e))
        };
        Self::from_bytes(
            &read("config.json")?,
            &read("tokenizer.json")?,
            &read("model.safetensors")?,
        )
    }

    /// The default model compiled into this binary (from `models/`).
    pub fn embedded() -> Result<Model, ModelError> {
        #[cfg(retort_embedded)]
        {
            let m = Self::from_bytes(embedded::CONFIG, embedded::TOKENIZER, embedded::WEIGHTS)?;
            release_pages(embedded::WEIGHTS);
            Ok(m)
        }
        #[cfg(not(retort_embedded))]
        {
            Err(ModelError::NoEmbeddedModel(
                "models/model.safetensors was absent when this binary was built; pass --model DIR",
            ))
        }
    }

    /// Build from the three files' contents.
    pub fn from_bytes(
        config: &[u8],
        tokenizer: &[u8],
        weights_bytes: &[u8],
    ) -> Result<Model, ModelError> {
        let cfg = ModelConfig::from_json(config)?;
        let device = Device::flex();
        let net = Net::new(cfg.clone(), &device)?;
        // The word table and the encoder's weight matrices stay int8 when
        // the file stores them so (the shipped model): the same values in a
        // quarter of the memory; requests dequantize the matrices as they go.
        let layout = &net.layout;
        let mut wanted: Vec<usize> = vec![layout.word];
        for layer in &layout.enc {
            let a = layer.attn;
            wanted.extend([a.q.w, a.k.w, a.v.w, a.o.w, layer.ff1.w, layer.ff2.w]);
        }
        let name = |i: usize| layout.specs.get(i).map(|s| s.name.as_str());
        let names: Vec<&str> = wanted.iter().filter_map(|&i| name(i)).collect();
        let mut found = weights::int8_tensors(weights_bytes, &names)?;
        let Some(q) = name(layout.word).and_then(|n| found.remove(n)) else {
            let host = weights::params_from_bytes(layout, weights_bytes)?;
            return Self::from_host(cfg, host, tokenizer);
        };
        let mats: Vec<(usize, crate::net::QuantRows)> = wanted
            .iter()
            .filter_map(|&i| Some((i, found.remove(name(i)?)?)))
            .collect();
        let mut skip: Vec<usize> = mats.iter().map(|(i, _)| *i).collect();
        skip.push(layout.word);
        let host = weights::params_from_bytes_except(layout, weights_bytes, &skip)?;
        let params = host.into_device_quantized(layout, &device, q, &cfg.gen_vocab, mats)?;
        Self::assemble(cfg, net, params, device, tokenizer)
    }

    /// Like [`Model::from_parts`], consuming the host parameters (lower peak
    /// memory while loading).
    pub fn from_host(
        cfg: ModelConfig,
        host: HostParams,
        tokenizer: &[u8],
    ) -> Result<Model, ModelError> {
        let device = Device::flex();
        let net = Net::new(cfg.clone(), &device)?;
        if host.values.len() != net.layout.specs.len() {
            return Err(ModelError::Weights("parameter count mismatch".into()));
        }
        let params = host.into_device(&net.layout, &device);
        Self::assemble(cfg, net, params, device, tokenizer)
    }

    /// Build from a configuration, host parameters and a tokenizer.json.
    pub fn from_parts(
        cfg: ModelConfig,
        host: &HostParams,
        tokenizer: &[u8],
    ) -> Result<Model, ModelError> {
        let device = Device::flex();
        let net = Net::new(cfg.clone(), &device)?;
        if host.values.len() != net.layout.specs.len() {
            return Err(ModelError::Weights("parameter count mismatch".into()));
        }
        let params = host.to_device(&net.layout, &device, None);
        Self::assemble(cfg, net, params, device, tokenizer)
    }

    fn assemble(
        cfg: ModelConfig,
        net: Net,
        mut params: Params,
        device: Device,
        tokenizer: &[u8],
    ) -> Result<Model, ModelError> {
        let tok = Tok::from_bytes(tokenizer)?;
        if tok.vocab.len() != cfg.vocab_size {
            return Err(ModelError::Config(format!(
                "tokenizer has {} word pieces, config says {}",
                tok.vocab.len(),
                cfg.vocab_size
            )));
        }
        if !cfg.eight_bit_activations.is_empty() && !crate::qgemm::eight_bit_fast() {
            tracing::info!(
                "eight_bit_activations needs AVX-512 VNNI, which this CPU lacks: the encoder's products stay 16-bit (answers as without the setting)"
            );
        }
        params.set_activations(&net.layout, active_eight_bit(&cfg));
        let host_dec = HostDecoder::new(&net, &params)?;
        Ok(Model {
            cfg,
            net,
            params,
            tok,
            device,
            tokenizer_json: tokenizer.to_vec(),
            tool_cache: ToolCache::new(DEFAULT_TOOL_CACHE_BYTES),
            embed_cache: EmbedCache::new(crate::rank::DEFAULT_EMBED_CACHE_BYTES),
            host_dec,
        })
    }

    /// Change the configuration (the model's and the network's copy alike),
    /// e.g. its decoding settings; a change that breaks its invariants is
    /// refused and changes nothing.
    pub fn update_config(&mut self, f: impl FnOnce(&mut ModelConfig)) -> Result<(), ModelError> {
        let mut cfg = self.cfg.clone();
        f(&mut cfg);
        cfg.check()?;
        let rebuild = cfg.integer_products != self.cfg.integer_products;
        if cfg.eight_bit_activations != self.cfg.eight_bit_activations {
            self.params
                .set_activations(&self.net.layout, active_eight_bit(&cfg));
        }
        self.cfg = cfg.clone();
        self.net.cfg = cfg;
        if rebuild {
            // The host decoder's matrices are packed for the products in use.
            self.host_dec = HostDecoder::new(&self.net, &self.params)?;
        }
        Ok(())
    }

    /// Replace the tool-encoding cache with an empty one of `max_bytes`
    /// (0 turns caching off).
    pub fn set_tool_cache_bytes(&mut self, max_bytes: usize) {
        self.tool_cache = ToolCache::new(max_bytes);
    }

    pub fn tokenizer_json(&self) -> &[u8] {
        &self.tokenizer_json
    }

    /// Save as a model directory.
    pub fn save(&self, dir: &Path, storage: weights::Storage) -> Result<(), ModelError> {
        let host = self.params.to_host()?;
        weights::save_model_dir(
            dir,
            &self.cfg,
            &self.net.layout,
            &host,
            &self.tokenizer_json,
            storage,
        )
    }

    /// Decode one request.
    pub fn predict(
        &self,
        query: &str,
        tools: &[Tool],
        opts: &CallOptions,
    ) -> Result<Decoded, ModelError> {
        let run = || {
            greedy(
                &self.net,
                &self.params,
                &self.tok,
                query,
                tools,
                opts,
                &self.device,
                Aids {
                    tool_cache: Some(&self.tool_cache),
                    host_dec: Some(&self.host_dec),
                    embed_cache: Some(&self.embed_cache),
                    all_temperatures: false,
                },
            )
        };
        // The whole call runs on a thread of the rayon pool, so that its
        // many small parallel loops are joins between the pool's threads,
        // not a hand-off from this thread (a wake-up, then a sleep) each.
        if rayon::current_thread_index().is_some() {
            run()
        } else {
            rayon::scope(|_| run())
        }
    }
}

/// Render limits for inference.
pub fn infer_limits(cfg: &ModelConfig) -> RenderLimits {
    RenderLimits {
        max_len: cfg.max_positions,
        choice_len: cfg.max_positions,
        tool_desc_tokens: cfg.tool_desc_tokens,
        param_desc_tokens: cfg.param_desc_tokens,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Group {
    Action(usize),
    Pointer(usize),
    Token(u32),
}

/// Encoder output `[1, S, D]` and the decoder's padding mask of one
/// rendered request. A block-masked model with a cache encodes each tool
/// once (or takes it from the cache) and then only the query.
fn encode_request(
    net: &Net,
    params: &Params,
    tok: &Tok,
    r: &crate::render::Rendered,
    device: &Device,
    cache: Option<&ToolCache>,
) -> Result<(Tensor<3>, Tensor<4>), ModelError> {
    let cfg = &net.cfg;
    let rows = [(&r.ids[..], &r.segs[..])];
    let masked = cfg.masked_layers();
    match cache {
        Some(cache) if masked > 0 => {
            // Only the decoder's padding mask is needed here, not the
            // encoder's S x S block mask.
            let pad_bias = EncBatch::new(&rows, tok.pad, device).pad_bias;
            let ranges = crate::net::block_ranges(&r.ids, tok.sep);
            let Some((q, rest)) = ranges.split_first() else {
                let enc = crate::fastenc::full_pass(net, params, &r.ids, &r.segs, tok.sep, device)?;
                return Ok((enc, pad_bias));
            };
            let blocks: Vec<std::sync::Arc<crate::net::ToolBlock>> = rest
                .iter()
                .map(|rg| {
                    let ids = &r.ids[rg.clone()];
                    cache.get_or_try_insert(ids, || {
                        crate::fastenc::tool_block(net, params, ids, device)
                    })
                })
                .collect::<Result<_, _>>()?;
            let refs: Vec<&crate::net::ToolBlock> = blocks.iter().map(|b| b.as_ref()).collect();
            let enc = net.encode_with_blocks(params, &r.ids[q.clone()], &refs, device)?;
            Ok((enc, pad_bias))
        }
        _ => {
            // One unpadded row: no padding bias inside the encoder, and the
            // hand-written pass (parity-tested against `Net::encode`).
            let pad_bias = EncBatch::new(&rows, tok.pad, device).pad_bias;
            let enc = crate::fastenc::full_pass(net, params, &r.ids, &r.segs, tok.sep, device)?;
            Ok((enc, pad_bias))
        }
    }
}

/// Where decoder steps run.
enum Stepper<'a> {
    Host(Box<HostPrepared<'a>>),
    Burn(crate::net::DecState),
}

/// What speeds up [`greedy`] without changing its answers (all optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct Aids<'a> {
    /// Tool encodings to reuse (block-masked models only; `None` encodes
    /// everything).
    pub tool_cache: Option<&'a ToolCache>,
    /// The decoder's weights on the host, for hand-written decoder steps
    /// (the same logits as burn's within float rounding; `None` decodes
    /// with burn operations).
    pub host_dec: Option<&'a HostDecoder>,
    /// Sentence embeddings of queries and tools, for ranking catalogues
    /// that do not fit (`ModelConfig::rank_layers`).
    pub embed_cache: Option<&'a EmbedCache>,
    /// Also sum the sequence log-probability at each of [`TEMPERATURES`]
    /// (`Decoded::logp`, which calibration fits a temperature on); off,
    /// `logp` is empty and each decoder step does one softmax over the
    /// allowed choices instead of fifteen.
    pub all_temperatures: bool,
}

/// Schema-constrained greedy decoding of one request.
#[allow(clippy::too_many_arguments)]
pub fn greedy(
    net: &Net,
    params: &Params,
    tok: &Tok,
    query: &str,
    tools: &[Tool],
    opts: &CallOptions,
    device: &Device,
    aids: Aids<'_>,
) -> Result<Decoded, ModelError> {
    let (cache, fast) = (aids.tool_cache, aids.host_dec);
    let cfg = &net.cfg;
    if let Some(f) = &opts.force_function
        && !tools.iter().any(|t| &t.name == f)
    {
        return Err(ModelError::InvalidRequest(format!(
            "forced function {f:?} is not among the tools"
        )));
    }
    if (opts.require_call || opts.force_function.is_some()) && tools.is_empty() {
        return Err(ModelError::InvalidRequest(
            "a call is required but no tools were given".into(),
        ));
    }
    let keep: Vec<usize> = opts
        .force_function
        .as_ref()
        .and_then(|f| tools.iter().position(|t| &t.name == f))
        .into_iter()
        .collect();
    let t0 = std::time::Instant::now();
    // Tool relevance for leaving tools out, computed only when they do not
    // all fit: the weighted embedding cosine, added to shared word pieces.
    let mut rank = || -> Result<Option<Vec<f32>>, ModelError> {
        if cfg.rank_layers == 0 || cfg.rank_weight == 0.0 {
            return Ok(None);
        }
        let ranker = crate::rank::Ranker {
            net,
            params,
            tok,
            device,
            layers: cfg.rank_layers,
            cache: aids.embed_cache,
        };
        let w = cfg.rank_weight as f32;
        Ok(Some(
            ranker.scores(query, tools)?.iter().map(|c| w * c).collect(),
        ))
    };
    let r = render_ranked(tok, query, tools, infer_limits(cfg), &keep, &mut rank)?;
    let t_render = t0.elapsed();
    let (enc, pad_bias) = encode_request(net, params, tok, &r, device, cache)?;
    let enc = net.add_features(params, enc, net.request_features(&r, device));
    let t_enc_only = t0.elapsed();
    // The decoder's per-request projections: on the host in integers when
    // the host decoder can, else burn's `prepare` (which burn steps need).
    let mut prep = None;
    let mut stepper = match fast {
        Some(hd) if hd.prepares_on_host() => {
            Stepper::Host(Box::new(hd.prepare_host(net, params, enc, pad_bias)?))
        }
        _ => {
            let pr = net.prepare(params, enc, pad_bias);
            let st = match fast {
                Some(hd) => Stepper::Host(Box::new(hd.prepare(net, params, &pr)?)),
                None => Stepper::Burn(net.start_decoding()),
            };
            prep = Some(pr);
            st
        }
    };
    let t_encode = t0.elapsed();
    let mut g = Grammar::new(tok, &r, tools, &cfg.gen_vocab, opts, cfg.max_value_tokens);
    // The hand-set decoding rules (all off in a configuration without them).
    let rules = &cfg.decode;
    let max_steps = opts.max_steps.unwrap_or(cfg.max_steps).min(cfg.max_steps);
    let mut inputs = vec![(tok.pad, kind::BOS, None)];
    let temps: &[f64] = if aids.all_temperatures {
        &TEMPERATURES
    } else {
        &[]
    };
    let mut logp = vec![0f64; temps.len()];
    let mut logp_cfg = 0f64;
    let mut last_copy: Option<usize> = None;
    let mut used_in_call: Vec<usize> = Vec::new();
    let mut cur_value: Vec<usize> = Vec::new();
    let mut steps = 0;
    // The most word pieces any rendered tool shares with the query (as
    // `render` counted them), for the overlap prior.
    let top_overlap = r.tools.iter().map(|t| t.overlap()).max().unwrap_or(0);
    while !g.is_done() && steps < max_steps {
        // Feed the newest input; earlier steps live in `dec`.
        let Some(&newest) = inputs.last() else { break };
        let mut z = match &mut stepper {
            Stepper::Host(hp) => hp.step(newest)?,
            Stepper::Burn(dec) => net
                .decode_step(
                    params,
                    prep.as_ref().ok_or_else(|| {
                        ModelError::InvalidOutput("burn decoding without prepared states".into())
                    })?,
                    dec,
                    newest,
                )
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| ModelError::Weights(format!("{e:?}")))?,
        };
        // Every decision between calls (which tool next, or stop) is
        // steered by the overlap priors below, but its share of the confidence is the model's own
        // probability of what was chosen (`z_model`, taken before this
        // step's decoding biases), with or without the priors.
        let between = matches!(g.state, State::Between);
        let first = between && g.calls.is_empty();
        let z_model: Option<Vec<f32>> = between.then(|| z.clone());
        // Word-overlap prior on the first call's function: each tool loses
        // `overlap_bias` per word piece it shares with the query fewer than
        // the tool sharing most (refusing is left as it is).
        if first && rules.overlap_bias != 0.0 {
            for rt in &r.tools {
                if let Some(x) = z.get_mut(g.space.src_index(rt.start)) {
                    *x += rules.overlap_bias as f32 * (rt.overlap() as f32 - top_overlap as f32);
                }
            }
        }
        // After a call: how many word pieces each tool shares with the
        // request that no tool called so far shares (the part of the
        // request the calls have not yet spoken to).
        let later = between && !first;
        let rest: Vec<usize> = if later && rules.later_overlap_bias != 0.0 {
            rest_overlaps(&r, tools, &g.calls)
        } else {
            Vec::new()
        };
        let top_rest = rest.iter().copied().max().unwrap_or(0);
        // Word-overlap prior on every later call's function, by those
        // counts: a tool loses `later_overlap_bias` per piece fewer than
        // the tool with the most.
        if later && rules.later_overlap_bias != 0.0 {
            for (rt, &n) in r.tools.iter().zip(&rest) {
                if let Some(x) = z.get_mut(g.space.src_index(rt.start)) {
                    *x += rules.later_overlap_bias as f32 * (n as f32 - top_rest as f32);
                }
            }
        }
        let mask = g.mask();
        let allowed: Vec<(usize, Choice)> = mask
            .iter()
            .enumerate()
            .filter(|x| *x.1)
            .filter_map(|(i, _)| g.choice_of(i).map(|c| (i, c)))
            .filter(|(_, c)| g.allowed(*c))
            .collect();
        // Coverage: a query position copied by an earlier argument of this
        // call is not copied again (the same word piece stays available
        // from other positions and the generation vocabulary).
        let allowed = narrow(
            allowed,
            |c| !matches!(c, Choice::Token(_, Some(p)) if used_in_call.contains(&p)),
        );
        // Contiguous copies: right after a piece copied from position p,
        // another copied piece of the same value must come from p + 1 (a
        // value is one span of the query, not pieces from here and there).
        let allowed = match last_copy {
            Some(p) if rules.contiguous_copy => narrow(
                allowed,
                |c| !matches!(c, Choice::Token(_, Some(q)) if q != p + 1),
            ),
            _ => allowed,
        };
        // Whole words: inside a word the next piece of that word is the only
        // copy and the value cannot end; a run of copies (at the start of a
        // value or after a generated piece) does not start mid-word.
        let allowed = if rules.whole_word_copy {
            match last_copy {
                Some(p) if continues_word(&r, tok, p) => narrow(
                    allowed,
                    |c| matches!(c, Choice::Token(_, Some(q)) if q == p + 1),
                ),
                None => narrow(
                    allowed,
                    |c| !matches!(c, Choice::Token(_, Some(q)) if starts_mid_word(&r, tok, q)),
                ),
                // A copied number is not extended by generated digits
                // ("1000" + "##0").
                Some(_) if numeric_value(&g) => {
                    narrow(allowed, |c| !matches!(c, Choice::Token(_, None)))
                }
                _ => allowed,
            }
        } else {
            allowed
        };
        if allowed.is_empty() {
            break;
        }
        let group_of = |c: Choice| match c {
            Choice::Action(a) => Group::Action(a),
            Choice::Function(t) => Group::Pointer(t),
            Choice::Param(k) => Group::Pointer(k),
            Choice::Token(t, _) => Group::Token(t),
        };
        // Marginal probability of each group at temperature 1.
        let zmax = allowed
            .iter()
            .map(|(i, _)| z[*i])
            .fold(f32::NEG_INFINITY, f32::max);
        // Summed every step over up to a few thousand choices: an Fx map
        // (the order of its entries does not matter: `tie` breaks ties).
        let mut mass: rustc_hash::FxHashMap<Group, f64> =
            rustc_hash::FxHashMap::with_capacity_and_hasher(allowed.len(), Default::default());
        for (i, c) in &allowed {
            *mass.entry(group_of(*c)).or_default() += ((z[*i] - zmax) as f64).exp();
        }
        let best = mass
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| tie(b.0).cmp(&tie(a.0))))
            .map(|x| *x.0);
        let Some(best) = best else { break };
        // The concrete choice of the group.
        let choice = match best {
            Group::Token(tid) => {
                let next = last_copy.map(|p| p + 1).filter(|&p| {
                    r.ids.get(p) == Some(&tid) && mask.get(s_index(&g, p)).copied().unwrap_or(false)
                });
                let pos = next.or_else(|| {
                    allowed
                        .iter()
                        .filter(|(_, c)| group_of(*c) == best)
                        .max_by(|a, b| z[a.0].total_cmp(&z[b.0]))
                        .and_then(|(_, c)| match c {
                            Choice::Token(_, p) => *p,
                            _ => None,
                        })
                });
                Choice::Token(tid, pos)
            }
            _ => match allowed.iter().find(|(_, c)| group_of(*c) == best) {
                Some((_, c)) => *c,
                None => break,
            },
        };
        let zc = z_model.as_deref().unwrap_or(&z);
        for (k, &temp) in temps.iter().enumerate() {
            logp[k] += group_logp(zc, &allowed, |c| group_of(c) == best, temp);
        }
        logp_cfg += group_logp(
            zc,
            &allowed,
            |c| group_of(c) == best,
            cfg.confidence_temperature,
        );
        last_copy = match choice {
            Choice::Token(_, p) => p,
            _ => None,
        };
        match choice {
            Choice::Token(_, Some(p)) if r.segs.get(p) == Some(&0) => cur_value.push(p),
            // A finished value or array element is not copied again.
            Choice::Action(action::END_VAL | action::NEXT_ELEM) => {
                used_in_call.append(&mut cur_value)
            }
            Choice::Action(action::END_CALL) => {
                used_in_call.clear();
                cur_value.clear();
            }
            Choice::Function(_) => {
                used_in_call.clear();
                cur_value.clear();
            }
            _ => {}
        }
        tracing::trace!(?choice, "decode step");
        let input = next_input(&r, &g, choice, tok);
        g.step(choice)
            .map_err(|e| ModelError::InvalidOutput(e.to_string()))?;
        inputs.push(input);
        steps += 1;
        if inputs.len() > cfg.max_steps {
            break;
        }
    }
    tracing::debug!(
        tokens = r.len(),
        steps,
        render_ms = t_render.as_secs_f64() * 1e3,
        encode_ms = (t_enc_only - t_render).as_secs_f64() * 1e3,
        prepare_ms = (t_encode - t_enc_only).as_secs_f64() * 1e3,
        decode_ms = (t0.elapsed() - t_encode).as_secs_f64() * 1e3,
        "decoded"
    );
    // A decoding cut short keeps only its finished calls.
    let calls = drop_repeats(std::mem::take(&mut g.calls));
    let _ = matches!(g.state, State::Done);
    let calls = repair_calls(calls, tools);
    retort_core::validate_all(&calls, tools)
        .map_err(|e| ModelError::InvalidOutput(e.to_string()))?;
    Ok(Decoded {
        calls,
        confidence: logp_cfg.exp().clamp(0.0, 1.0),
        logp,
        steps,
    })
}

/// The encoder matrices that take 8-bit activations on this CPU: those
/// `cfg` names where the 8-bit kernel exists (AVX-512 VNNI), none
/// elsewhere, where the portable 8-bit loop would be slower than the
/// 16-bit kernels.
fn active_eight_bit(cfg: &ModelConfig) -> &[crate::config::EncoderMatrix] {
    if crate::qgemm::eight_bit_fast() {
        &cfg.eight_bit_activations
    } else {
        &[]
    }
}

/// For each rendered tool, the word pieces it shares with the request
/// (`RTool::shared`) that no tool called in `calls` shares.
fn rest_overlaps(r: &Rendered, tools: &[Tool], calls: &[Call]) -> Vec<usize> {
    let called = |rt: &RTool| {
        tools
            .get(rt.index)
            .is_some_and(|d| calls.iter().any(|c| c.name == d.name))
    };
    let spoken: Vec<u32> = r
        .tools
        .iter()
        .filter(|rt| called(rt))
        .flat_map(|rt| rt.shared.iter().copied())
        .collect();
    r.tools
        .iter()
        .map(|rt| rt.shared.iter().filter(|id| !spoken.contains(id)).count())
        .collect()
}

/// The last line of defence behind constrained decoding: a value the grammar
/// could not shape into its type (e.g. a nested object read back from word
/// pieces) must not reach the caller. An invalid optional argument is
/// removed; a call whose required argument is invalid is dropped. Every call
/// returned validates.
fn repair_calls(calls: Vec<Call>, tools: &[Tool]) -> Vec<Call> {
    let mut out = Vec::with_capacity(calls.len());
    'calls: for mut call in calls {
        // Each round removes one argument, so this ends.
        for _ in 0..=call.arguments.len() {
            let Err(e) = retort_core::validate(&call, tools) else {
                out.push(call);
                continue 'calls;
            };
            let arg = e
                .path
                .strip_prefix("$.arguments.")
                .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest).to_string());
            let required = tools
                .iter()
                .find(|t| t.name == call.name)
                .is_none_or(|t| arg.as_deref().is_none_or(|a| t.parameters.is_required(a)));
            match arg {
                Some(a) if !required && call.arguments.contains_key(&a) => {
                    tracing::debug!(function = %call.name, argument = %a, error = %e, "dropping an invalid optional argument");
                    call.arguments.remove(&a);
                }
                _ => {
                    tracing::debug!(function = %call.name, error = %e, "dropping an invalid call");
                    continue 'calls;
                }
            }
        }
    }
    out
}

/// The text of query piece `p` (without a `##` mark), or `None` outside the
/// query.
fn query_piece<'a>(r: &crate::render::Rendered, tok: &'a Tok, p: usize) -> Option<&'a str> {
    if r.segs.get(p) != Some(&0) {
        return None;
    }
    let t = tok.text(*r.ids.get(p)?);
    Some(t.strip_prefix("##").unwrap_or(t))
}

/// The value being decoded is an integer or a number.
fn numeric_value(g: &Grammar<'_>) -> bool {
    matches!(
        &g.state,
        State::InValue { v, .. } if matches!(v.kind, crate::grammar::VKind::Integer | crate::grammar::VKind::Number)
    )
}

/// Query pieces `p` and `p + 1` touch in the text (no space between them).
fn attached(r: &crate::render::Rendered, p: usize) -> bool {
    match (r.spans.get(p), r.spans.get(p + 1)) {
        (Some(a), Some(b)) => a.1 == b.0 && a.1 != 0,
        _ => false,
    }
}

fn alnum(x: &str) -> bool {
    x.chars().next().is_some_and(char::is_alphanumeric)
}

fn connector(x: &str) -> bool {
    matches!(x, "." | "-" | "/" | ":" | "_")
}

/// The allowed choices that `keep` accepts, or all of them when it accepts
/// none (a decoding rule narrows the choice, it never empties it).
fn narrow(allowed: Vec<(usize, Choice)>, keep: impl Fn(Choice) -> bool) -> Vec<(usize, Choice)> {
    let kept: Vec<(usize, Choice)> = allowed.iter().copied().filter(|(_, c)| keep(*c)).collect();
    if kept.is_empty() { allowed } else { kept }
}

/// Drop exact repeats of an earlier call.
fn drop_repeats(decoded: Vec<Call>) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    for c in decoded {
        if !calls.contains(&c) {
            calls.push(c);
        }
    }
    calls
}

/// A copied value that ends at query piece `p` would cut a word: the next
/// piece is attached and alphanumeric ("carl|##sen", "2019|-|2020"), or
/// an attached connector followed by an attached alphanumeric piece
/// ("9|.|8").
pub(crate) fn continues_word(r: &crate::render::Rendered, tok: &Tok, p: usize) -> bool {
    let (Some(a), Some(b)) = (query_piece(r, tok, p), query_piece(r, tok, p + 1)) else {
        return false;
    };
    if !attached(r, p) || !(alnum(a) || connector(a)) {
        return false;
    }
    alnum(b)
        || (connector(b) && attached(r, p + 1) && query_piece(r, tok, p + 2).is_some_and(alnum))
}

/// Query piece `p` continues the word of the piece before it.
pub(crate) fn starts_mid_word(r: &crate::render::Rendered, tok: &Tok, p: usize) -> bool {
    let Some(b) = query_piece(r, tok, p) else {
        return false;
    };
    p > 0 && attached(r, p - 1) && alnum(b) && query_piece(r, tok, p - 1).is_some_and(alnum)
}

fn s_index(g: &Grammar<'_>, p: usize) -> usize {
    g.space.src_index(p)
}

/// Deterministic tie-break between groups of equal mass.
fn tie(g: &Group) -> (u8, u64) {
    match g {
        Group::Action(a) => (0, *a as u64),
        Group::Pointer(p) => (1, *p as u64),
        Group::Token(t) => (2, *t as u64),
    }
}

fn group_logp(
    z: &[f32],
    allowed: &[(usize, Choice)],
    in_group: impl Fn(Choice) -> bool,
    temp: f64,
) -> f64 {
    let zmax = allowed
        .iter()
        .map(|(i, _)| z[*i] as f64 / temp)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut all = 0f64;
    let mut grp = 0f64;
    for (i, c) in allowed {
        let e = (z[*i] as f64 / temp - zmax).exp();
        all += e;
        if in_group(*c) {
            grp += e;
        }
    }
    if grp <= 0.0 || all <= 0.0 {
        return f64::NEG_INFINITY;
    }
    (grp / all).ln()
}

impl ToolCaller for Model {
    fn call(
        &self,
        query: &str,
        tools: &[Tool],
        options: &CallOptions,
    ) -> Result<Prediction, CallerError> {
        match self.predict(query, tools, options) {
            Ok(d) => Ok(Prediction {
                calls: d.calls,
                confidence: d.confidence,
            }),
            Err(ModelError::InvalidRequest(m)) => Err(CallerError::InvalidRequest(m)),
            Err(e) => Err(CallerError::Model(e.to_string())),
        }
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        if self.cfg.masked_layers() == 0 {
            return Vec::new();
        }
        let s = self.tool_cache.stats();
        vec![
            (
                "retort_tool_cache_hits_total",
                "Tool encodings taken from the cache.",
                "counter",
                s.hits as f64,
            ),
            (
                "retort_tool_cache_misses_total",
                "Tool encodings computed (not in the cache).",
                "counter",
                s.misses as f64,
            ),
            (
                "retort_tool_cache_entries",
                "Tool encodings held in the cache.",
                "gauge",
                s.entries as f64,
            ),
            (
                "retort_tool_cache_bytes",
                "Bytes of encoder states held in the cache.",
                "gauge",
                s.bytes as f64,
            ),
        ]
    }
}

#[cfg(test)]
mod repair_tests {
    use super::*;
    use retort_core::ToolFormat;
    use serde_json::json;

    #[test]
    fn exact_repeats_are_dropped() {
        let call = |v: serde_json::Value| -> Call { serde_json::from_value(v).expect("call") };
        let decoded = vec![
            call(json!({"name": "hcf", "arguments": {"a": 36, "b": 24}})),
            call(json!({"name": "hcf", "arguments": {"a": 24, "b": 36}})),
            call(json!({"name": "lcm", "arguments": {"a": 36, "b": 24}})),
            call(json!({"name": "hcf", "arguments": {"a": 36, "b": 24}})),
        ];
        assert_eq!(drop_repeats(decoded.clone()), decoded[..3].to_vec());
    }

    #[test]
    fn repair_keeps_valid_drops_bad_optional_and_bad_required() {
        let tools = vec![
            Tool::parse(
                &json!({"name": "f", "parameters": {"type": "object", "properties": {
                    "a": {"type": "integer"},
                    "o": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
                }, "required": ["a"]}}),
                ToolFormat::Auto,
            )
            .expect("tool"),
        ];
        let call = |v: serde_json::Value| -> Call { serde_json::from_value(v).expect("call") };
        let fixed = repair_calls(
            vec![
                call(json!({"name": "f", "arguments": {"a": 1}})),
                call(json!({"name": "f", "arguments": {"a": 2, "o": 5}})),
                call(json!({"name": "f", "arguments": {"a": "x"}})),
                call(json!({"name": "g", "arguments": {}})),
            ],
            &tools,
        );
        assert_eq!(
            fixed,
            vec![
                call(json!({"name": "f", "arguments": {"a": 1}})),
                call(json!({"name": "f", "arguments": {"a": 2}})),
            ]
        );
        assert!(retort_core::validate_all(&fixed, &tools).is_ok());
    }
}
