//! The training loop: batches, loss, AdamW, validation, checkpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use retort_core::Example;
use retort_model::ModelConfig;
use retort_model::net::{HostParams, Layout, Net, Params, Part};
use retort_model::render::{RenderLimits, Tok};
use retort_model::targets::{Item, ItemLimits, build_gen_vocab};
use retort_model::weights::{self, Storage, write_atomic};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::data::{self, Batch, build_items, epoch_plan, make_batch};
use crate::eval::{self, calibrate};
use crate::loss::{LossWeights, loss, set_ce, teacher_probs};
use crate::optim::{AdamW, AdamWConfig};
use crate::plot;

/// Everything `retort train` can set.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub train: PathBuf,
    pub val: PathBuf,
    pub out: PathBuf,
    /// Start from this model directory instead of MiniLM + random decoder.
    pub init: Option<PathBuf>,
    /// MiniLM directory (model.safetensors, tokenizer.json).
    pub minilm: PathBuf,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    /// Stop (after a checkpoint) when this much wall time has passed.
    pub max_minutes: Option<f64>,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub loss: LossWeights,
    pub teacher_model: Option<PathBuf>,
    pub resume: bool,
    pub seed: u64,
    /// Longest rendered input while training.
    pub max_src_len: usize,
    /// Longest action sequence while training.
    pub max_dec_steps: usize,
    pub freeze_embeddings: bool,
    /// Encoder layers (from the bottom) kept frozen.
    pub freeze_layers: usize,
    /// Run the frozen lower encoder layers on the host, with their matrices
    /// as int8 and integer products (as the exported model serves them),
    /// instead of burn's f32 operations. Applies with frozen word
    /// embeddings, at least one frozen layer and no block mask.
    pub frozen_on_host: bool,
    pub checkpoint_every: usize,
    pub gen_vocab_size: usize,
    /// Validation examples decoded per epoch for exact-call accuracy.
    pub val_decode_limit: usize,
    /// Validation items scored for the validation loss.
    pub val_loss_limit: usize,
    /// Also validate every this many steps (0: only at epoch ends).
    pub val_every: usize,
    /// Use at most this many training examples.
    pub limit_train: Option<usize>,
    /// Tiny random network (tests, smoke runs).
    pub tiny: bool,
    /// Log a line every this many steps.
    pub log_every: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop as if interrupted when this step is reached (`--stop-at-step`).
    pub stop_at_step: Option<usize>,
    /// Threads computing gradients: with N >= 2 each batch is cut into N
    /// slices, each on its own thread (data parallel); 1: one graph per batch.
    pub threads: usize,
    /// Set the encoder's block attention mask (`ModelConfig::block_mask`);
    /// `None` keeps what `--init` has (fresh models: on, tiny: off).
    pub block_mask: Option<bool>,
    /// Set the block mask of the lowest layers only
    /// (`ModelConfig::block_layers`); `None` keeps what `--init` has.
    pub block_layers: Option<usize>,
    /// Give the model lexical features (`ModelConfig::lexical_features`);
    /// `None` keeps what `--init` has. An `--init` model without them gets
    /// zero feature vectors, so it starts out answering as before.
    pub lexical_features: Option<bool>,
}

impl TrainOptions {
    pub fn new(train: PathBuf, val: PathBuf, out: PathBuf) -> Self {
        TrainOptions {
            train,
            val,
            out,
            init: None,
            minilm: PathBuf::from(".cache/minilm"),
            epochs: 1,
            max_steps: None,
            max_minutes: None,
            batch_size: 16,
            lr: 3e-4,
            warmup: 100,
            weight_decay: 0.01,
            clip_norm: 1.0,
            loss: LossWeights {
                temperature: 4.0,
                alpha: 0.7,
                beta: 0.3,
            },
            teacher_model: None,
            resume: false,
            seed: 17,
            max_src_len: 192,
            max_dec_steps: 64,
            freeze_embeddings: true,
            freeze_layers: 0,
            frozen_on_host: true,
            checkpoint_every: 200,
            gen_vocab_size: 2048,
            val_decode_limit: 300,
            val_loss_limit: 500,
            val_every: 0,
            limit_train: None,
            tiny: false,
            log_every: 20,
            progress: true,
            stop_at_step: None,
            block_mask: None,
            lexical_features: None,
            block_layers: None,
            threads: 1,
        }
    }
}

/// Position and history, saved with every checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub batch_in_epoch: usize,
    pub seed: u64,
    pub train_curve: Vec<(usize, f64)>,
    pub val_curve: Vec<(usize, f64)>,
    pub val_acc: Vec<(usize, f64)>,
    pub best_val_acc: Option<f64>,
    pub examples_seen: usize,
    pub train_seconds: f64,
}

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub examples_per_second: f64,
    pub train_items: usize,
    pub val_items: usize,
    pub last_val_loss: Option<f64>,
    pub last_val_accuracy: Option<f64>,
    pub interrupted: bool,
}

fn trainable_mask(layout: &Layout, cfg: &ModelConfig, opts: &TrainOptions) -> Vec<bool> {
    let frozen_layers = opts.freeze_layers.min(cfg.enc_layers);
    layout
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == layout.word {
                return !opts.freeze_embeddings;
            }
            if s.part == Part::Embeddings {
                return frozen_layers == 0;
            }
            if let Some(rest) = s.name.strip_prefix("encoder.layer.")
                && let Some(n) = rest.split('.').next().and_then(|x| x.parse::<usize>().ok())
            {
                return n >= frozen_layers;
            }
            true
        })
        .collect()
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Write a checkpoint directory atomically (write `checkpoint.new`, then swap).
fn save_checkpoint(
    out: &Path,
    cfg: &ModelConfig,
    layout: &Layout,
    params: &Params,
    opt: &AdamW,
    state: &TrainState,
    tokenizer_json: &[u8],
) -> Result<(), TrainError> {
    let new = out.join("checkpoint.new");
    let _ = std::fs::remove_dir_all(&new);
    let host = params.to_host()?;
    weights::save_model_dir(&new, cfg, layout, &host, tokenizer_json, Storage::F32)?;
    let moments = opt.to_host(layout)?;
    let items: Vec<(String, [usize; 2], &[f32])> = moments
        .iter()
        .map(|(n, s, v)| (n.clone(), *s, v.as_slice()))
        .collect();
    let bytes = weights::serialize_tensors(&items, Storage::F32)?;
    write_atomic(&new.join("optim.safetensors"), &bytes)?;
    let st = serde_json::to_vec_pretty(&(state, opt.t))
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_atomic(&new.join("state.json"), &st)?;
    let cur = checkpoint_dir(out);
    let old = out.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&old);
    if cur.exists() {
        std::fs::rename(&cur, &old).map_err(|e| TrainError::io(&cur, e))?;
    }
    std::fs::rename(&new, &cur).map_err(|e| TrainError::io(&new, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// Validation loss (mean CE over steps) of items, batched.
fn val_loss(
    net: &Net,
    params: &Params,
    items: &[Item],
    n_gen: usize,
    (pad, sep): (u32, u32),
    device: &Device,
    batch: usize,
) -> f64 {
    let block = net.cfg.block(sep);
    let mut total = 0.0;
    let mut weight = 0.0;
    for chunk in items.chunks(batch.max(1)) {
        let refs: Vec<&Item> = chunk.iter().collect();
        let b = make_batch(&refs, n_gen, pad, block, device);
        let enc = net.encode(params, &b.enc);
        let enc = net.add_features(params, enc, Some(b.feats.clone()));
        let logits = net.decode(params, enc, b.enc.pad_bias.clone(), &b.dec);
        let w: f64 = b.weight.clone().sum().into_scalar::<f32>() as f64;
        let ce =
            set_ce(logits, b.allowed_bias, b.target_bias, b.weight).into_scalar::<f32>() as f64;
        total += ce * w;
        weight += w;
    }
    if weight > 0.0 { total / weight } else { 0.0 }
}

fn inference_params(p: &Params) -> Params {
    Params {
        t: p.t.iter().map(|t| t.clone().inner()).collect(),
        words: p.words.clone(),
        int8: p.int8.clone(),
    }
}

/// Validation loss and exact-call accuracy; keeps the best model in `out/best`.
#[allow(clippy::too_many_arguments)]
fn validate(
    net: &Net,
    params: &Params,
    val_items: &[Item],
    val_decode: &[Example],
    tok: &Tok,
    opts: &TrainOptions,
    state: &mut TrainState,
    cfg: &ModelConfig,
    layout: &Layout,
    tokenizer_json: &[u8],
) -> Result<(f64, f64), TrainError> {
    let device = Device::flex();
    let ip = inference_params(params);
    let n_gen = cfg.gen_vocab.len();
    let limit = opts.val_loss_limit.min(val_items.len());
    let vl = val_loss(
        net,
        &ip,
        &val_items[..limit],
        n_gen,
        (tok.pad, tok.sep),
        &device,
        opts.batch_size,
    );
    let rep = eval::evaluate(net, &ip, tok, val_decode);
    state.val_curve.push((state.step, vl));
    state.val_acc.push((state.step, rep.accuracy()));
    println!(
        "validation at step {} (epoch {}): loss {:.4} over {} items, exact-call accuracy {:.1}% ({}/{}, {} decode failures, {:.0} ms/example)",
        state.step,
        state.epoch,
        vl,
        limit,
        100.0 * rep.accuracy(),
        rep.exact,
        rep.n,
        rep.failures,
        rep.millis / rep.n.max(1) as f64
    );
    if state.best_val_acc.is_none_or(|b| rep.accuracy() >= b) {
        state.best_val_acc = Some(rep.accuracy());
        let host = ip.to_host()?;
        weights::save_model_dir(
            &opts.out.join("best"),
            cfg,
            layout,
            &host,
            tokenizer_json,
            Storage::F32,
        )?;
    }
    Ok((vl, rep.accuracy()))
}

/// What one gradient computation needs besides its parameters and items.
struct StepCtx<'a> {
    net: &'a Net,
    teacher: Option<&'a retort_model::Model>,
    trainable: &'a [bool],
    n_gen: usize,
    tok: &'a Tok,
    lw: LossWeights,
    device: &'a Device,
    /// The frozen lower layers run on the host: parameters with those
    /// layers' matrices as int8, and how many layers.
    lower: Option<(&'a Params, usize)>,
}

/// Gradients (per parameter; `None` when frozen), loss and CE step weight
/// of one group of items.
struct HalfOut {
    grads: Vec<Option<burn::tensor::Tensor<2>>>,
    loss: f64,
    weight: f64,
}

fn half_grads(ctx: &StepCtx<'_>, params: &Params, refs: &[&Item]) -> Result<HalfOut, TrainError> {
    let net = ctx.net;
    let cfg = &net.cfg;
    let tok = ctx.tok;
    let b: Batch = make_batch(refs, ctx.n_gen, tok.pad, cfg.block(tok.sep), ctx.device);
    let soft = match ctx.teacher {
        Some(tm) => {
            let enc = if tm.cfg.block(tok.sep) == cfg.block(tok.sep) {
                tm.net.encode(&tm.params, &b.enc)
            } else {
                let rows: Vec<(&[u32], &[u32])> =
                    refs.iter().map(|it| (&it.ids[..], &it.segs[..])).collect();
                let te = retort_model::net::EncBatch::for_config(
                    &tm.cfg, &rows, tok.pad, tok.sep, ctx.device,
                );
                tm.net.encode(&tm.params, &te)
            };
            let enc = tm.net.add_features(&tm.params, enc, Some(b.feats.clone()));
            let tl = tm
                .net
                .decode(&tm.params, enc, b.enc.pad_bias.clone(), &b.dec);
            Some((
                teacher_probs(tl, b.allowed_bias.clone(), ctx.lw.temperature),
                b.weight.clone(),
            ))
        }
        None => b.soft.clone(),
    };
    let weight = b.weight.clone().sum().into_scalar::<f32>() as f64;
    let enc = match ctx.lower {
        Some((lp, n)) => {
            let s = b.enc.ids.dims()[1];
            let h = lower_states(net, lp, refs, (n, s), tok.sep, ctx.device)?;
            net.encode_from(params, h, &b.enc, n)
        }
        None => net.encode(params, &b.enc),
    };
    let enc = net.add_features(params, enc, Some(b.feats.clone()));
    let logits = net.decode(params, enc, b.enc.pad_bias.clone(), &b.dec);
    let parts = loss(
        logits,
        b.allowed_bias,
        b.target_bias,
        b.weight,
        soft,
        ctx.lw,
    );
    let grads = parts.total.backward();
    let lval = parts.total.clone().into_scalar::<f32>() as f64;
    let gs = params
        .t
        .iter()
        .zip(ctx.trainable)
        .map(|(p, &tr)| if tr { p.grad(&grads) } else { None })
        .collect();
    Ok(HalfOut {
        grads: gs,
        loss: lval,
        weight,
    })
}

/// The states of `refs` after the first `n` encoder layers, each row run on
/// the host ([`retort_model::fastenc::lower_layers`]) and padded with zeros
/// to the batch's length `s` (`[B, S, D]`; padded positions are masked as
/// keys, and their own states are never read).
fn lower_states(
    net: &Net,
    lp: &Params,
    refs: &[&Item],
    (n, s): (usize, usize),
    sep: u32,
    device: &Device,
) -> Result<burn::tensor::Tensor<3>, TrainError> {
    let d = net.cfg.hidden;
    let s = s.max(1);
    let mut h = vec![0f32; refs.len() * s * d];
    for (it, out) in refs.iter().zip(h.chunks_exact_mut(s * d)) {
        let row = retort_model::fastenc::lower_layers(net, lp, &it.ids, &it.segs, sep, n, device)?;
        let len = row.len().min(out.len());
        out[..len].copy_from_slice(&row[..len]);
    }
    Ok(burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(h, [refs.len(), s, d]),
        device,
    ))
}

/// The same weights with fresh autodiff leaves (no copy of the data), so
/// another thread can build its own graph over them.
fn fork_params(params: &Params, trainable: &[bool]) -> Params {
    Params {
        t: params
            .t
            .iter()
            .zip(trainable)
            .map(|(t, &tr)| {
                if tr {
                    burn::tensor::Tensor::from_inner(t.clone().inner()).require_grad()
                } else {
                    t.clone()
                }
            })
            .collect(),
        words: params.words.clone(),
        int8: params.int8.clone(),
    }
}

fn join(
    h: std::thread::ScopedJoinHandle<'_, Result<HalfOut, TrainError>>,
) -> Result<HalfOut, TrainError> {
    h.join()
        .unwrap_or_else(|_| Err(TrainError::Invalid("a training thread panicked".into())))
}

/// Gradients and loss of the whole batch from its parts: each part's mean
/// weighted by its share of the CE steps.
fn combine(parts: Vec<HalfOut>) -> (Vec<Option<burn::tensor::Tensor<2>>>, f64) {
    let total: f64 = parts.iter().map(|p| p.weight).sum::<f64>().max(1e-9);
    let n = parts.first().map(|p| p.grads.len()).unwrap_or(0);
    let mut gs: Vec<Option<burn::tensor::Tensor<2>>> = vec![None; n];
    let mut lval = 0.0;
    for part in parts {
        let share = part.weight / total;
        lval += part.loss * share;
        for (acc, g) in gs.iter_mut().zip(part.grads) {
            let Some(g) = g else { continue };
            let g = g * share;
            *acc = Some(match acc.take() {
                Some(a) => a + g,
                None => g,
            });
        }
    }
    (gs, lval)
}

/// Run training. `stop` is set by the caller's Ctrl-C handler.
pub fn train(opts: &TrainOptions, stop: Arc<AtomicBool>) -> Result<TrainSummary, TrainError> {
    let device = Device::flex();
    std::fs::create_dir_all(&opts.out).map_err(|e| TrainError::io(&opts.out, e))?;
    let (mut train_ex, bad_t) = data::load_jsonl(&opts.train)?;
    let (val_ex, bad_v) = data::load_jsonl(&opts.val)?;
    if let Some(n) = opts.limit_train
        && n < train_ex.len()
    {
        // A seeded random sample (files are often grouped by source).
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5EED);
        train_ex.shuffle(&mut rng);
        train_ex.truncate(n);
    }
    println!(
        "data: {} train examples ({} unreadable lines), {} validation examples ({} unreadable)",
        train_ex.len(),
        bad_t,
        val_ex.len(),
        bad_v
    );
    if train_ex.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: no examples",
            opts.train.display()
        )));
    }
    // Model configuration, tokenizer and initial weights.
    let ckpt = checkpoint_dir(&opts.out);
    let resume_dir = if opts.resume {
        if ckpt.join("state.json").is_file() {
            Some(ckpt.clone())
        } else if opts.out.join("checkpoint.old/state.json").is_file() {
            Some(opts.out.join("checkpoint.old"))
        } else {
            return Err(TrainError::Invalid(format!(
                "--resume: no checkpoint in {}",
                opts.out.display()
            )));
        }
    } else {
        None
    };
    let (cfg, host, tokenizer_json, from) =
        if let Some(dir) = resume_dir.as_ref().or(opts.init.as_ref()) {
            let cfg = ModelConfig::from_json(&read(&dir.join("config.json"))?)?;
            let layout = Layout::new(&cfg);
            let host = weights::params_from_bytes(&layout, &read(&dir.join("model.safetensors"))?)?;
            (
                cfg,
                host,
                read(&dir.join("tokenizer.json"))?,
                dir.display().to_string(),
            )
        } else {
            let tj = read(&opts.minilm.join("tokenizer.json")).map_err(|e| {
                TrainError::Invalid(format!(
                    "{e}; fetch MiniLM with scripts/fetch-minilm.sh or pass --minilm DIR"
                ))
            })?;
            let tok = Tok::from_bytes(&tj)?;
            let gen_vocab = build_gen_vocab(&tok, &train_ex, opts.gen_vocab_size);
            let cfg = if opts.tiny {
                ModelConfig::tiny(gen_vocab)
            } else {
                ModelConfig::minilm(gen_vocab)
            };
            let layout = Layout::new(&cfg);
            let mut host = HostParams::init(&layout, opts.seed);
            let from = if opts.tiny {
                "random init (tiny)".to_string()
            } else {
                let n = weights::import_minilm(&layout, &mut host, &opts.minilm)?;
                format!("MiniLM ({n} tensors) + random decoder")
            };
            (cfg, host, tj, from)
        };
    let mut cfg = cfg;
    let mut host = host;
    if let Some(lf) = opts.lexical_features
        && resume_dir.is_none()
        && lf != cfg.lexical_features
    {
        let old = Layout::new(&cfg);
        cfg.lexical_features = lf;
        host = host.relayout(&old, &Layout::new(&cfg), opts.seed);
    }
    if let Some(bm) = opts.block_mask
        && resume_dir.is_none()
    {
        cfg.block_mask = bm;
    }
    if let Some(k) = opts.block_layers
        && resume_dir.is_none()
    {
        cfg.block_layers = k;
        cfg.check()?;
    }
    let tok = Tok::from_bytes(&tokenizer_json)?;
    let net = Net::new(cfg.clone(), &device)?;
    let layout = net.layout.clone();
    let n_gen = cfg.gen_vocab.len();
    println!(
        "model: {} parameters, generation vocabulary {}, from {}",
        layout.count(),
        n_gen,
        from
    );
    let teacher = match &opts.teacher_model {
        Some(dir) => {
            let m = retort_model::Model::load(dir)?;
            if m.cfg.gen_vocab != cfg.gen_vocab {
                return Err(TrainError::Invalid(
                    "--teacher-model must share the student's generation vocabulary (train the student with --init from it, or from the same data)".into(),
                ));
            }
            Some(m)
        }
        None => None,
    };
    // Items.
    let lim = ItemLimits {
        render: RenderLimits {
            max_len: opts.max_src_len.min(cfg.max_positions),
            choice_len: opts.max_src_len.min(cfg.max_positions),
            tool_desc_tokens: cfg.tool_desc_tokens,
            param_desc_tokens: cfg.param_desc_tokens,
        },
        max_steps: opts.max_dec_steps.min(cfg.max_steps),
        max_value_tokens: cfg.max_value_tokens,
    };
    let t0 = Instant::now();
    let built = build_items(&tok, &train_ex, &cfg.gen_vocab, lim);
    let vbuilt = build_items(&tok, &val_ex, &cfg.gen_vocab, lim);
    println!(
        "items: {} train (skipped {:?}), {} validation (skipped {:?}) in {:.1}s",
        built.items.len(),
        built.skipped,
        vbuilt.items.len(),
        vbuilt.skipped,
        t0.elapsed().as_secs_f64()
    );
    let has_soft = built
        .items
        .iter()
        .any(|it| it.steps.iter().any(|s| s.soft.is_some()));
    let mut lw = opts.loss;
    if teacher.is_none() && !has_soft && lw.alpha > 0.0 {
        println!(
            "note: no teacher log-probabilities in the data and no --teacher-model: alpha set to 0 (sequence-level distillation on hard targets)"
        );
        lw.alpha = 0.0;
    }
    let items = built.items;
    if items.is_empty() {
        return Err(TrainError::Invalid("no usable training items".into()));
    }
    let val_items = vbuilt.items;
    let val_decode: Vec<Example> = val_ex.iter().take(opts.val_decode_limit).cloned().collect();
    let trainable = trainable_mask(&layout, &cfg, opts);
    let n_trainable: usize = layout
        .specs
        .iter()
        .zip(&trainable)
        .filter(|x| *x.1)
        .map(|(s, _)| s.shape[0] * s.shape[1])
        .sum();
    let batches_per_epoch = items.len().div_ceil(opts.batch_size.max(1));
    let total_steps = opts
        .max_steps
        .unwrap_or(batches_per_epoch * opts.epochs.max(1))
        .max(1);
    println!(
        "training: {} trainable parameters, {} batches/epoch of {}, {} steps, lr {} (warmup {}), T={} alpha={} beta={}",
        n_trainable,
        batches_per_epoch,
        opts.batch_size,
        total_steps,
        opts.lr,
        opts.warmup,
        lw.temperature,
        lw.alpha,
        lw.beta
    );
    let mut params = host.to_device(&layout, &device, Some(&trainable));
    let lower_n = opts.freeze_layers.min(cfg.enc_layers);
    let lower = if opts.frozen_on_host && opts.freeze_embeddings && lower_n > 0 {
        println!(
            "frozen layers: embeddings and encoder layers 0..{lower_n} run on the host with int8 matrices (integer products, as served)"
        );
        Some((params.with_int8_layers(&layout, lower_n)?, lower_n))
    } else {
        None
    };
    let mut opt = AdamW::new(
        AdamWConfig {
            lr: opts.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: opts.weight_decay,
            clip_norm: opts.clip_norm,
            warmup: opts.warmup,
            total_steps,
            min_lr_frac: 0.1,
        },
        layout.specs.len(),
    );
    let mut state = TrainState {
        seed: opts.seed,
        ..Default::default()
    };
    if let Some(dir) = &resume_dir {
        let (st, t): (TrainState, usize) = serde_json::from_slice(&read(&dir.join("state.json"))?)
            .map_err(|e| TrainError::Invalid(format!("state.json: {e}")))?;
        let map = weights::read_tensors(&read(&dir.join("optim.safetensors"))?)?;
        opt.load_host(&layout, &map, &device);
        opt.t = t;
        state = st;
        println!(
            "resumed at step {} (epoch {}, batch {})",
            state.step, state.epoch, state.batch_in_epoch
        );
    }
    let seed = state.seed;
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total_steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {msg}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(state.step as u64);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let run_start = Instant::now();
    let seconds_before = state.train_seconds;
    let examples_before = state.examples_seen;
    let mut interrupted = false;
    let mut window_loss = 0.0;
    let mut window_n = 0usize;
    let mut last_val: Option<(f64, f64)> = None;
    'outer: while state.step < total_steps {
        let plan = epoch_plan(&items, opts.batch_size, seed, state.epoch);
        while state.batch_in_epoch < plan.len() {
            if state.step >= total_steps {
                break 'outer;
            }
            if stop.load(Ordering::SeqCst) || opts.stop_at_step.is_some_and(|s| state.step >= s) {
                interrupted = true;
                break 'outer;
            }
            if let Some(m) = opts.max_minutes
                && run_start.elapsed().as_secs_f64() > m * 60.0
            {
                println!("time budget of {m} minutes reached");
                interrupted = true;
                break 'outer;
            }
            let refs: Vec<&Item> = plan[state.batch_in_epoch]
                .iter()
                .map(|&i| &items[i])
                .collect();
            let step_start = Instant::now();
            let ctx = StepCtx {
                net: &net,
                teacher: teacher.as_ref(),
                trainable: &trainable,
                n_gen,
                tok: &tok,
                lw,
                device: &device,
                lower: lower.as_ref().map(|(p, n)| (p, *n)),
            };
            let shape = (
                refs.iter().map(|it| it.ids.len()).max().unwrap_or(0),
                refs.iter().map(|it| it.steps.len()).max().unwrap_or(0),
            );
            let parts = opts.threads.clamp(1, refs.len().max(1));
            let (gs, lval) = if parts >= 2 {
                // Data parallel: each slice of the (length-sorted) batch on
                // its own thread with its own autodiff leaves over the same
                // weights; gradients combined as the whole batch's mean.
                let chunks: Vec<&[&Item]> = refs.chunks(refs.len().div_ceil(parts)).collect();
                let forks: Vec<Params> = chunks
                    .iter()
                    .map(|_| fork_params(&params, &trainable))
                    .collect();
                let outs = std::thread::scope(|sc| {
                    let hs: Vec<_> = chunks
                        .iter()
                        .zip(&forks)
                        .map(|(c, p)| {
                            let ctx = &ctx;
                            sc.spawn(move || half_grads(ctx, p, c))
                        })
                        .collect();
                    hs.into_iter().map(join).collect::<Vec<_>>()
                });
                combine(outs.into_iter().collect::<Result<Vec<_>, _>>()?)
            } else {
                let h = half_grads(&ctx, &params, &refs)?;
                (h.grads, h.loss)
            };
            let info = opt.step_grads(&mut params, gs, &layout);
            state.step += 1;
            state.batch_in_epoch += 1;
            state.examples_seen += refs.len();
            state.train_seconds = seconds_before + run_start.elapsed().as_secs_f64();
            if lval.is_finite() {
                window_loss += lval;
                window_n += 1;
            }
            let eps = (state.examples_seen - examples_before) as f64
                / run_start.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(state.step as u64);
            bar.set_message(format!("loss {lval:.3}, {eps:.1} ex/s"));
            if state.step.is_multiple_of(opts.log_every.max(1)) || state.step == total_steps {
                let avg = window_loss / window_n.max(1) as f64;
                state.train_curve.push((state.step, avg));
                let left =
                    (total_steps - state.step) as f64 * opts.batch_size as f64 / eps.max(1e-9);
                tracing::info!(
                    "step {}/{} epoch {} loss {:.4} lr {:.2e} grad_norm {:.2} {:.1} ex/s (step {:.0} ms, S={} T={}) ETA {:.0} min",
                    state.step,
                    total_steps,
                    state.epoch,
                    avg,
                    info.lr,
                    info.grad_norm,
                    eps,
                    step_start.elapsed().as_secs_f64() * 1000.0,
                    shape.0,
                    shape.1,
                    left / 60.0
                );
                window_loss = 0.0;
                window_n = 0;
            }
            if opts.val_every > 0
                && state.step.is_multiple_of(opts.val_every)
                && state.step < total_steps
            {
                last_val = Some(validate(
                    &net,
                    &params,
                    &val_items,
                    &val_decode,
                    &tok,
                    opts,
                    &mut state,
                    &cfg,
                    &layout,
                    &tokenizer_json,
                )?);
            }
            if opts.checkpoint_every > 0 && state.step.is_multiple_of(opts.checkpoint_every) {
                save_checkpoint(
                    &opts.out,
                    &cfg,
                    &layout,
                    &params,
                    &opt,
                    &state,
                    &tokenizer_json,
                )?;
                let _ = plot::loss_curve(
                    &opts.out.join("loss.svg"),
                    &state.train_curve,
                    &state.val_curve,
                );
            }
        }
        // End of epoch: validation.
        last_val = Some(validate(
            &net,
            &params,
            &val_items,
            &val_decode,
            &tok,
            opts,
            &mut state,
            &cfg,
            &layout,
            &tokenizer_json,
        )?);
        state.epoch += 1;
        state.batch_in_epoch = 0;
        save_checkpoint(
            &opts.out,
            &cfg,
            &layout,
            &params,
            &opt,
            &state,
            &tokenizer_json,
        )?;
        let _ = plot::loss_curve(
            &opts.out.join("loss.svg"),
            &state.train_curve,
            &state.val_curve,
        );
    }
    bar.finish_and_clear();
    if !interrupted && state.val_curve.last().is_none_or(|v| v.0 != state.step) {
        last_val = Some(validate(
            &net,
            &params,
            &val_items,
            &val_decode,
            &tok,
            opts,
            &mut state,
            &cfg,
            &layout,
            &tokenizer_json,
        )?);
    }
    save_checkpoint(
        &opts.out,
        &cfg,
        &layout,
        &params,
        &opt,
        &state,
        &tokenizer_json,
    )?;
    let host = params.to_host()?;
    weights::save_model_dir(
        &opts.out.join("final"),
        &cfg,
        &layout,
        &host,
        &tokenizer_json,
        Storage::F32,
    )?;
    plot::loss_curve(
        &opts.out.join("loss.svg"),
        &state.train_curve,
        &state.val_curve,
    )?;
    let secs = run_start.elapsed().as_secs_f64().max(1e-9);
    let summary = TrainSummary {
        steps: state.step,
        examples_per_second: (state.examples_seen - examples_before) as f64 / secs,
        train_items: items.len(),
        val_items: val_items.len(),
        last_val_loss: last_val.map(|x| x.0),
        last_val_accuracy: last_val.map(|x| x.1),
        interrupted,
    };
    if interrupted {
        println!(
            "stopped at step {}; checkpoint in {} (continue with --resume)",
            state.step,
            checkpoint_dir(&opts.out).display()
        );
    }
    Ok(summary)
}

/// Evaluate a model directory on a JSONL file, fit the confidence
/// temperature, and optionally export it (compact storage) to `export`.
pub fn evaluate_and_export(
    model_dir: &Path,
    val: &Path,
    export: Option<&Path>,
    limit: Option<usize>,
    overrides: &ConfigOverrides,
    failures: Option<&Path>,
) -> Result<(eval::EvalReport, eval::Calibration), TrainError> {
    let mut model = retort_model::Model::load(model_dir)?;
    let mut cfg = model.cfg.clone();
    overrides.apply(&mut cfg)?;
    model.update_config(|c| *c = cfg)?;
    let (mut ex, _) = data::load_jsonl(val)?;
    if let Some(n) = limit {
        ex.truncate(n);
    }
    let rep = eval::evaluate(&model.net, &model.params, &model.tok, &ex);
    let cal = calibrate(&rep.outcomes);
    if let Some(path) = failures {
        let text = eval::failures_jsonl(&ex, &rep, cal.temperature);
        retort_core::fsutil::write_atomic(path, text.as_bytes())
            .map_err(|e| TrainError::io(path, e))?;
    }
    if let Some(dir) = export {
        let mut cfg = model.cfg.clone();
        cfg.confidence_temperature = cal.temperature;
        let host = model.params.to_host()?;
        weights::save_model_dir(
            dir,
            &cfg,
            &model.net.layout,
            &host,
            model.tokenizer_json(),
            Storage::Compact,
        )?;
    }
    Ok((rep, cal))
}

/// Settings to try (and store with `--export`) instead of the model's own:
/// decoding rules and a few rendering, ranking and arithmetic settings.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// Decoding rules as `(key, value)`, set in order with
    /// [`retort_model::DecodeConfig::set`] (a later one wins).
    pub decode: Vec<(String, String)>,
    /// Longest tool description rendered (word pieces).
    pub tool_desc_tokens: Option<usize>,
    /// Longest parameter description rendered (word pieces; 0 leaves them
    /// out).
    pub param_desc_tokens: Option<usize>,
    pub rank_layers: Option<usize>,
    pub rank_weight: Option<f64>,
    pub integer_products: Option<bool>,
    /// The encoder's block-masked lower layers (an experiment on weights
    /// trained another way; training sets it with `block_layers`).
    pub block_layers: Option<usize>,
}

impl ConfigOverrides {
    /// Write the settings that are given into `cfg`; an unknown decoding
    /// rule or a value of the wrong kind is refused.
    pub fn apply(
        &self,
        cfg: &mut retort_model::ModelConfig,
    ) -> Result<(), retort_model::ModelError> {
        let ConfigOverrides {
            decode,
            tool_desc_tokens,
            param_desc_tokens,
            rank_layers,
            rank_weight,
            integer_products,
            block_layers,
        } = self;
        for (key, value) in decode {
            cfg.decode.set(key, value)?;
        }
        cfg.tool_desc_tokens = tool_desc_tokens.unwrap_or(cfg.tool_desc_tokens);
        cfg.param_desc_tokens = param_desc_tokens.unwrap_or(cfg.param_desc_tokens);
        cfg.rank_layers = rank_layers.unwrap_or(cfg.rank_layers);
        cfg.rank_weight = rank_weight.unwrap_or(cfg.rank_weight);
        cfg.integer_products = integer_products.unwrap_or(cfg.integer_products);
        cfg.block_layers = block_layers.unwrap_or(cfg.block_layers);
        Ok(())
    }
}

/// Call `f` on Ctrl-C / SIGTERM (the trainer then checkpoints and stops).
pub fn on_interrupt(f: impl Fn() + Send + 'static) -> Result<(), TrainError> {
    ctrlc::set_handler(f).map_err(|e| TrainError::Invalid(format!("signal handler: {e}")))
}
