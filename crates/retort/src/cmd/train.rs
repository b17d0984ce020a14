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
    /// With --export/--eval-only: decode with this bias towards copying
    /// values from the query (logits added; 0 = as trained). It is stored
    /// in the exported config. Tune it on validation data only.
    #[arg(long, value_name = "B")]
    copy_bias: Option<f64>,
    /// With --export/--eval-only: decode with the contiguous-copy rule on
    /// or off (a copied value piece right after another must come from the
    /// next query position); stored in the exported config.
    #[arg(long, value_name = "BOOL")]
    contiguous_copy: Option<bool>,
    /// With --export/--eval-only: decode with the whole-word copy rule on
    /// or off (copied values start and end on word boundaries); stored in
    /// the exported config.
    #[arg(long, value_name = "BOOL")]
    whole_word_copy: Option<bool>,
    /// With --export/--eval-only: decode with this logit added to refusing
    /// (no call); negative refuses less. Stored in the exported config.
    /// Tune it on validation data only.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    refusal_bias: Option<f64>,
    /// With --export/--eval-only: decode with this logit added to stopping
    /// after the first call; positive makes further (parallel) calls rarer.
    /// Stored in the exported config. Tune it on validation data only.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    extra_call_bias: Option<f64>,
    /// With --export/--eval-only: decode with this logit added to ending a
    /// call once its required parameters are given; positive leaves
    /// optional parameters out more often. Stored in the exported config.
    /// Tune it on validation data only.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    end_call_bias: Option<f64>,
    /// With --export/--eval-only: word-overlap prior on the first call's
    /// function: each tool gets B times (the word pieces it shares with the
    /// query minus the most any tool shares); 0 is off. Stored in the
    /// exported config; tune it on validation data only.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    overlap_bias: Option<f64>,
    /// With --export/--eval-only: decode with the query-copies-only rule on
    /// or off (values that are not enum members copy pieces from the query
    /// only, never from the tools' text); stored in the exported config.
    #[arg(long, value_name = "BOOL")]
    query_copies_only: Option<bool>,
    /// With --export/--eval-only: decode with the novel-repeat rule on or
    /// off (a further call of an already called function is kept only if it
    /// copies query text no earlier call of it copied); stored in the
    /// exported config.
    #[arg(long, value_name = "BOOL")]
    novel_repeat_calls: Option<bool>,
    /// With --export/--eval-only: decode with the non-empty-array rule on
    /// or off (an array value gets at least one element); stored in the
    /// exported config.
    #[arg(long, value_name = "BOOL")]
    non_empty_arrays: Option<bool>,
    /// With --export/--eval-only: decode with the thousands-separator rule
    /// on or off (a number copied from the query goes on through ",000"
    /// groups: "$12,000" gives 12000); stored in the exported config.
    #[arg(long, value_name = "BOOL")]
    thousands_separators: Option<bool>,
    /// With --export/--eval-only: dates from the request on or off (a
    /// string argument that reads as a numeric date takes its day and
    /// month, and year if given, from a date the request writes, in the
    /// layout its description names, e.g. "MM-DD-YYYY"); stored in the
    /// exported config.
    #[arg(long, value_name = "BOOL")]
    request_dates: Option<bool>,
    /// With --export/--eval-only: percentages as fractions on or off (a
    /// number argument the request writes as "5%" becomes 0.05 when its
    /// parameter's description asks for a decimal or a fraction); stored
    /// in the exported config.
    #[arg(long, value_name = "BOOL")]
    percent_fractions: Option<bool>,
    /// With --export/--eval-only: places in the layout a description asks
    /// for on or off (a string argument whose description asks for "City,
    /// State" or "City, Country" is completed from the request, else from
    /// a small gazetteer: "Berkeley" -> "Berkeley, CA"); stored in the
    /// exported config.
    #[arg(long, value_name = "BOOL")]
    place_format: Option<bool>,
    /// With --export/--eval-only: bracketed lists end at their bracket on
    /// or off (an array element copied up to a `]` or `)` that closes a
    /// bracket opened before it is the array's last); stored in the
    /// exported config.
    #[arg(long, value_name = "BOOL")]
    bracket_lists: Option<bool>,
    /// With --export/--eval-only: logit subtracted, in a text value, from
    /// copying on into a lower-case query word that is a word of the
    /// parameter's name ("New York court" for `court_location`); 0 is off.
    /// Stored in the exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    kind_word_bias: Option<f64>,
    /// With --export/--eval-only: a text value does not start with a
    /// lower-case "the", "a" or "an" copied from the query, on or off;
    /// stored in the exported config.
    #[arg(long, value_name = "BOOL")]
    no_leading_articles: Option<bool>,
    /// With --export/--eval-only: decode each call's parameters in the
    /// order its schema lists them (any may be left out) on or off; stored
    /// in the exported config.
    #[arg(long, value_name = "BOOL")]
    schema_order_params: Option<bool>,
    /// With --export/--eval-only: give each call's required parameters
    /// before any optional one, on or off; stored in the exported config.
    #[arg(long, value_name = "BOOL")]
    required_first_params: Option<bool>,
    /// With --export/--eval-only: logit added, at a value's first piece,
    /// to the query positions next to a mention of its parameter's name
    /// ("height 4", "a = 3", "3 passengers"); 0 is off. Stored in the
    /// exported config; tune it on validation data.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    name_anchor_bias: Option<f64>,
    /// With --export/--eval-only: for numbers, a parameter-name mention
    /// also points at the first number within this many query pieces after
    /// it, past other words, within its clause ("final temperature of
    /// 400K"); 0 is off. Stored in the exported config.
    #[arg(long, value_name = "N")]
    anchor_window: Option<usize>,
    /// With --export/--eval-only: logit subtracted from refusing, at the
    /// first decision, per word piece the best-sharing tool shares with the
    /// request; 0 is off. Stored in the exported config; tune it with
    /// --refusal-bias on validation data.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    refusal_overlap_bias: Option<f64>,
    /// With --export/--eval-only: logit subtracted from stopping after a
    /// call per word piece the best-sharing tool not called yet shares with
    /// the request; 0 is off. Stored in the exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    extra_call_overlap_bias: Option<f64>,
    /// With --export/--eval-only: word-overlap prior on every call after
    /// the first: a tool loses this logit per word piece, shared with the
    /// request and by no tool called so far, fewer than the tool with the
    /// most such pieces; 0 is off. Stored in the exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    later_overlap_bias: Option<f64>,
    /// With --export/--eval-only: logit subtracted from stopping after a
    /// call per word piece that a tool shares with the request and no tool
    /// called so far does (the most any tool has); 0 is off. Stored in the
    /// exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    stop_rest_overlap_bias: Option<f64>,
    /// With --export/--eval-only: logit subtracted, at a number's first
    /// piece, from query numbers that another numeric parameter of the call
    /// (not given yet) points at by its name; 0 is off. Stored in the
    /// exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    rival_anchor_bias: Option<f64>,
    /// With --export/--eval-only: a copied array element followed in the
    /// request by a list separator ("," "and" "or" ...) and an item of the
    /// same kind makes another element this logit likelier, starting at
    /// that item; 0 is off. Stored in the exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    next_item_bias: Option<f64>,
    /// With --export/--eval-only: logit subtracted from stopping while a
    /// value the last call copied is followed by a list separator and an
    /// item of the same kind that no call has copied, and added to that
    /// item for the same parameter of the next call of the function; 0 is
    /// off. Stored in the exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    next_call_item_bias: Option<f64>,
    /// With --export/--eval-only: an optional parameter not given yet gains
    /// this logit, when a call picks its next parameter, if the request
    /// names it (a distinctive word of its name is a request word, or
    /// shares its first five letters with one); 0 is off. Stored in the
    /// exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    mentioned_param_bias: Option<f64>,
    /// With --export/--eval-only: in a text value that began with a
    /// capitalised word, copying on into the next word gains this logit if
    /// it is capitalised and loses it if it is lower-case; 0 is off. Stored
    /// in the exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    capital_run_bias: Option<f64>,
    /// With --export/--eval-only: a text value's first piece gains this
    /// logit at the start of the word right before a query mention of its
    /// parameter's name ("grunge style" for `style`); 0 is off. Stored in
    /// the exported config.
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    name_before_bias: Option<f64>,
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
    /// With --export/--eval-only: the longest input (tokens) while two or
    /// more tools are rendered; beyond it descriptions shorten and the
    /// least relevant tools are left out (a lone tool may use the whole
    /// 512). 0: no cap. Stored in the exported config; tune it on
    /// validation data.
    #[arg(long, value_name = "N")]
    max_input_tokens: Option<usize>,
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
            retort_train::trainer::DecodingOverrides {
                copy_bias: a.copy_bias,
                contiguous_copy: a.contiguous_copy,
                whole_word_copy: a.whole_word_copy,
                refusal_bias: a.refusal_bias,
                extra_call_bias: a.extra_call_bias,
                end_call_bias: a.end_call_bias,
                overlap_bias: a.overlap_bias,
                query_copies_only: a.query_copies_only,
                novel_repeat_calls: a.novel_repeat_calls,
                non_empty_arrays: a.non_empty_arrays,
                thousands_separators: a.thousands_separators,
                request_dates: a.request_dates,
                percent_fractions: a.percent_fractions,
                place_format: a.place_format,
                bracket_lists: a.bracket_lists,
                kind_word_bias: a.kind_word_bias,
                no_leading_articles: a.no_leading_articles,
                schema_order_params: a.schema_order_params,
                required_first_params: a.required_first_params,
                name_anchor_bias: a.name_anchor_bias,
                anchor_window: a.anchor_window,
                refusal_overlap_bias: a.refusal_overlap_bias,
                extra_call_overlap_bias: a.extra_call_overlap_bias,
                later_overlap_bias: a.later_overlap_bias,
                stop_rest_overlap_bias: a.stop_rest_overlap_bias,
                rival_anchor_bias: a.rival_anchor_bias,
                next_item_bias: a.next_item_bias,
                next_call_item_bias: a.next_call_item_bias,
                mentioned_param_bias: a.mentioned_param_bias,
                capital_run_bias: a.capital_run_bias,
                name_before_bias: a.name_before_bias,
                tool_desc_tokens: a.tool_desc_tokens,
                param_desc_tokens: a.param_desc_tokens,
                max_input_tokens: a.max_input_tokens,
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
