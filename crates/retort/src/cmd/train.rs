//! `retort train`: distill the student from teacher examples.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use retort_train::loss::LossWeights;
use retort_train::{TrainOptions, train};

/// Train the student by distillation (see crates/retort-train/README.md).
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training examples (canonical JSONL).
    #[arg(long)]
    train: Option<PathBuf>,
    /// Validation examples (canonical JSONL; held-out tools).
    #[arg(long)]
    val: PathBuf,
    /// Output directory (checkpoint/, best/, final/, loss.svg).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start from this model directory instead of MiniLM + a random decoder.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Directory with all-MiniLM-L6-v2 (scripts/fetch-minilm.sh).
    #[arg(long, default_value = ".cache/minilm")]
    minilm: PathBuf,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Stop after this many optimizer steps (also sets the LR schedule length).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Stop (with a checkpoint) after this many minutes.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Stop (with a checkpoint, as on Ctrl-C) once this step is reached,
    /// without changing the LR schedule that --max-steps sets. A run that
    /// --max-minutes stopped at step N is replayed on any machine with
    /// --stop-at-step N, and continued with --resume.
    #[arg(long, value_name = "N")]
    stop_at_step: Option<usize>,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Distillation temperature T.
    #[arg(long, default_value_t = 4.0)]
    temperature: f64,
    /// Weight of the soft-target (KL) term.
    #[arg(long, default_value_t = 0.7)]
    alpha: f64,
    /// Weight of the hard-target (CE) term.
    #[arg(long, default_value_t = 0.3)]
    beta: f64,
    /// A trained model directory used as the teacher for soft targets.
    #[arg(long)]
    teacher_model: Option<PathBuf>,
    /// Continue from OUT/checkpoint exactly where it stopped.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Longest rendered input while training (tokens).
    #[arg(long, default_value_t = 192)]
    max_src_len: usize,
    /// Longest action sequence while training.
    #[arg(long, default_value_t = 64)]
    max_dec_steps: usize,
    /// Also train the word embeddings (frozen by default).
    #[arg(long)]
    train_embeddings: bool,
    /// Keep the lowest N encoder layers frozen.
    #[arg(long, default_value_t = 0)]
    freeze_layers: usize,
    /// Run the frozen layers (and the embeddings) on the host with their
    /// matrices as int8 and integer products, the arithmetic of the
    /// exported model, instead of burn's f32 operations: faster, and no
    /// padding. Applies with --freeze-layers >= 1, frozen word embeddings
    /// and no block mask; `false` keeps them in burn.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    frozen_on_host: bool,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    #[arg(long, default_value_t = 2048)]
    gen_vocab_size: usize,
    /// Validation examples decoded after each epoch for exact-call accuracy.
    #[arg(long, default_value_t = 300)]
    val_decode_limit: usize,
    /// Validation items scored for the validation loss.
    #[arg(long, default_value_t = 500)]
    val_loss_limit: usize,
    /// Also validate every N steps (0: only at epoch ends).
    #[arg(long, default_value_t = 0)]
    val_every: usize,
    /// Use a seeded random sample of N training examples.
    #[arg(long)]
    limit_train: Option<usize>,
    /// Tiny random network (smoke tests).
    #[arg(long)]
    tiny: bool,
    /// Instead of training: evaluate --init on --val, fit the confidence
    /// temperature, and write the model there in compact storage.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Threads computing gradients: each batch is cut into this many slices,
    /// one thread each (data parallel; burn's element-wise ops are
    /// single-threaded, so this is what keeps every core busy).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Encoder block attention mask (tool tokens attend only to their own
    /// tool, so tool encodings are cached at inference): `true` or `false`.
    /// Default: what --init has; a fresh model gets `true`, --tiny `false`.
    #[arg(long)]
    block_mask: Option<bool>,
    /// Lexical features as learned inputs (a request word matching a
    /// schema word, capitalisation, digits, list position, quoting; see
    /// retort-model's `features`): `true` or `false`. Default: what --init
    /// has. An --init model without them starts with zero feature vectors.
    #[arg(long)]
    lexical_features: Option<bool>,
    /// The block mask in the lowest N encoder layers only (0 = none;
    /// --block-mask true puts it in all): tool positions restart at every
    /// tool, those layers' tool encodings are cached at inference, and the
    /// layers above attend fully, so a request runs its query through the
    /// lower layers and the whole input through the upper ones. Default:
    /// what --init has. With --eval-only it evaluates other weights so.
    #[arg(long)]
    block_layers: Option<usize>,
    // With --export/--eval-only: decoding rules instead of --init's
    // (`--decode KEY=VALUE`, repeatable), stored in the exported config.
    // Tune them on validation data only.
    #[command(flatten)]
    decode: super::decode::DecodeArgs,
    /// With --export/--eval-only: render at most this many word pieces of
    /// each tool's description (fewer when the tools do not fit the
    /// input). Stored in the exported config; tune it on validation data.
    #[arg(long, value_name = "N")]
    tool_desc_tokens: Option<usize>,
    /// With --export/--eval-only: render at most this many word pieces of
    /// each parameter's description (0 leaves them out). Stored in the
    /// exported config; tune it on validation data.
    #[arg(long, value_name = "N")]
    param_desc_tokens: Option<usize>,
    /// With --export: when a request's tools do not fit into the input,
    /// rank them by shared word pieces plus --rank-weight times the cosine
    /// of sentence embeddings after this many encoder layers (0: shared
    /// word pieces only). Stored in the exported config; choose both with
    /// `retort eval rank --examples VAL`.
    #[arg(long, value_name = "N")]
    rank_layers: Option<usize>,
    /// With --export: see --rank-layers.
    #[arg(long, value_name = "W")]
    rank_weight: Option<f64>,
    /// With --export/--eval-only: multiply the int8-stored matrices of the
    /// encoder and decoder in integers, quantizing activations row by row
    /// to 16-bit integers (faster, above all on CPUs with AVX-512 VNNI);
    /// stored in the exported config.
    #[arg(long, value_name = "BOOL")]
    integer_products: Option<bool>,
    /// Instead of training: evaluate --init on --val only.
    #[arg(long)]
    eval_only: bool,
    /// With --export/--eval-only: write every validation example whose
    /// decoded calls are not exactly its gold calls to this JSONL file
    /// (id, gold shape, query, expected, got, decoding error, and the
    /// confidence at the temperature fitted here, the one --export stores).
    #[arg(long, value_name = "FILE")]
    failures: Option<PathBuf>,
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    if a.export.is_some() || a.eval_only {
        let init = a
            .init
            .as_ref()
            .context("--export/--eval-only need --init MODEL_DIR")?;
        let (rep, cal) = retort_train::trainer::evaluate_and_export(
            init,
            &a.val,
            a.export.as_deref(),
            a.limit_train,
            &retort_train::trainer::ConfigOverrides {
                decode: a.decode.decode.clone(),
                tool_desc_tokens: a.tool_desc_tokens,
                param_desc_tokens: a.param_desc_tokens,
                rank_layers: a.rank_layers,
                rank_weight: a.rank_weight,
                integer_products: a.integer_products,
                block_layers: a.block_layers,
            },
            a.failures.as_deref(),
        )?;
        println!(
            "{}: exact-call accuracy {:.2}% ({}/{}), {} decode failures, {:.1} ms/example",
            a.val.display(),
            100.0 * rep.accuracy(),
            rep.exact,
            rep.n,
            rep.failures,
            rep.millis / rep.n.max(1) as f64
        );
        println!("by gold shape: {}", rep.category_summary());
        println!(
            "confidence: temperature {} (ECE {:.4} -> {:.4}, log loss {:.4} -> {:.4})",
            cal.temperature, cal.ece_before, cal.ece_after, cal.nll_before, cal.nll_after
        );
        if let Some(dir) = &a.export {
            println!("exported to {}", dir.display());
        }
        return Ok(());
    }
    if !a.decode.decode.is_empty() {
        anyhow::bail!(
            "--decode sets the decoding rules of --eval-only or --export; training keeps --init's (set them on the trained model with --export)"
        );
    }
    if a.failures.is_some() {
        anyhow::bail!(
            "--failures FILE lists validation failures of --eval-only or --export; it does nothing while training"
        );
    }
    let train_path = a.train.clone().context("--train FILE is required")?;
    let out = a.out.clone().context("--out DIR is required")?;
    let mut o = TrainOptions::new(train_path, a.val.clone(), out);
    o.init = a.init;
    o.minilm = a.minilm;
    o.epochs = a.epochs;
    o.max_steps = a.max_steps;
    o.max_minutes = a.max_minutes;
    o.stop_at_step = a.stop_at_step;
    o.batch_size = a.batch_size;
    o.lr = a.lr;
    o.warmup = a.warmup;
    o.weight_decay = a.weight_decay;
    o.loss = LossWeights {
        temperature: a.temperature,
        alpha: a.alpha,
        beta: a.beta,
    };
    o.teacher_model = a.teacher_model;
    o.resume = a.resume;
    o.seed = a.seed;
    o.max_src_len = a.max_src_len;
    o.max_dec_steps = a.max_dec_steps;
    o.freeze_embeddings = !a.train_embeddings;
    o.freeze_layers = a.freeze_layers;
    o.frozen_on_host = a.frozen_on_host;
    o.checkpoint_every = a.checkpoint_every;
    o.gen_vocab_size = a.gen_vocab_size;
    o.val_decode_limit = a.val_decode_limit;
    o.limit_train = a.limit_train;
    o.val_loss_limit = a.val_loss_limit;
    o.val_every = a.val_every;
    o.tiny = a.tiny;
    o.block_mask = a.block_mask;
    o.lexical_features = a.lexical_features;
    o.block_layers = a.block_layers;
    o.threads = a.threads.max(1);
    o.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    ctrlc_handler(move || s2.store(true, Ordering::SeqCst))?;
    let summary = train(&o, stop)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn ctrlc_handler(f: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    retort_train::trainer::on_interrupt(f).context("installing the Ctrl-C handler")
}
