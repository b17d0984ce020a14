//! Tests of the loss, the optimizer schedule, evaluation and the trainer.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use burn::tensor::{Device, Tensor, TensorData};
use retort_core::{Call, Example, Tool, ToolFormat};
use serde_json::json;

use crate::eval::{calls_match, ece, json_eq};
use crate::loss::{LossWeights, kd_term, loss, set_ce};
use crate::optim::AdamWConfig;
use crate::{TrainOptions, train};

fn t3(v: Vec<f32>, shape: [usize; 3]) -> Tensor<3> {
    Tensor::from_data(TensorData::new(v, shape), &Device::flex())
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

// Reference values computed by hand (python, math module):
// z = [1, 2, 0.5], p = [0.2, 0.5, 0.3], T = 2:
//   T^2 * KL(p || softmax(z/T)) = 0.10873821091930735
//   -log((e^1 + e^0.5) / (e^1 + e^2 + e^0.5)) = 0.990291799927838
//   -log(e^0.5 / (e^1 + e^0.5)) = 0.9740769841801068
#[test]
fn kd_loss_matches_hand_computed_value() {
    let z = t3(vec![1.0, 2.0, 0.5], [1, 1, 3]);
    let zero = t3(vec![0.0; 3], [1, 1, 3]);
    let p = t3(vec![0.2, 0.5, 0.3], [1, 1, 3]);
    let w = Tensor::<2>::ones([1, 1], &Device::flex());
    let kd = scalar(kd_term(z.clone(), zero.clone(), p.clone(), w.clone(), 2.0));
    assert!((kd - 0.10873821091930735).abs() < 1e-5, "{kd}");
    let gold = t3(vec![0.0, -1.0e4, 0.0], [1, 1, 3]);
    let ce = scalar(set_ce(z.clone(), zero.clone(), gold.clone(), w.clone()));
    assert!((ce - 0.990291799927838).abs() < 1e-5, "{ce}");
    // With output 1 disallowed by the schema, and gold = {2}.
    let allowed = t3(vec![0.0, -1.0e4, 0.0], [1, 1, 3]);
    let gold2 = t3(vec![-1.0e4, -1.0e4, 0.0], [1, 1, 3]);
    let cem = scalar(set_ce(z.clone(), allowed, gold2, w.clone()));
    assert!((cem - 0.9740769841801068).abs() < 1e-5, "{cem}");
    let lw = LossWeights {
        temperature: 2.0,
        alpha: 0.7,
        beta: 0.3,
    };
    let total = scalar(loss(z, zero, gold, w.clone(), Some((p, w)), lw).total);
    let want = 0.7 * 0.10873821091930735 + 0.3 * 0.990291799927838;
    assert!((total - want).abs() < 1e-5, "{total} vs {want}");
}

#[test]
fn padded_steps_do_not_count() {
    let z = t3(vec![1.0, 2.0, 0.5, 9.0, -3.0, 4.0], [1, 2, 3]);
    let zero = t3(vec![0.0; 6], [1, 2, 3]);
    let gold = t3(vec![0.0, -1.0e4, 0.0, 0.0, -1.0e4, -1.0e4], [1, 2, 3]);
    let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &Device::flex());
    let ce = scalar(set_ce(z, zero, gold, w));
    assert!((ce - 0.990291799927838).abs() < 1e-5, "{ce}");
}

#[test]
fn schedule_warms_up_then_decays() {
    let c = AdamWConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        clip_norm: 1.0,
        warmup: 10,
        total_steps: 110,
        min_lr_frac: 0.1,
    };
    assert!((c.lr_at(5) - 5e-4).abs() < 1e-12);
    assert!((c.lr_at(10) - 1e-3).abs() < 1e-12);
    assert!((c.lr_at(60) - 5.5e-4).abs() < 1e-9);
    assert!((c.lr_at(110) - 1e-4).abs() < 1e-12);
}

#[test]
fn exact_match_ignores_order_and_number_form() {
    let a = Call::new(
        "f",
        json!({"x": 5, "y": ["a"]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let b = Call::new(
        "f",
        json!({"y": ["a"], "x": 5.0})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let c = Call::new("g", serde_json::Map::new());
    assert!(json_eq(&json!(5), &json!(5.0)));
    assert!(calls_match(
        &[a.clone(), c.clone()],
        &[c.clone(), b.clone()]
    ));
    assert!(!calls_match(
        std::slice::from_ref(&a),
        &[a.clone(), c.clone()]
    ));
    assert!(!calls_match(&[a.clone(), a.clone()], &[a, c]));
    assert!(calls_match(&[], &[]));
}

#[test]
fn ece_of_perfect_and_overconfident() {
    assert!(ece(&[1.0, 0.0], &[true, false], 10) < 1e-12);
    assert!((ece(&[0.9, 0.9], &[false, false], 10) - 0.9).abs() < 1e-12);
}

fn tools() -> Vec<Tool> {
    Tool::parse_many(
        &json!([
            {"name": "get_weather", "description": "Current weather in a city",
             "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
              "required": ["city"]}},
            {"name": "set_timer", "description": "Start a timer",
             "parameters": {"type": "object", "properties": {
                "minutes": {"type": "integer"}}, "required": ["minutes"]}}
        ]),
        ToolFormat::Auto,
    )
    .unwrap_or_default()
}

fn dozen() -> Vec<Example> {
    let ts = tools();
    let mut out = Vec::new();
    let cities = ["San Francisco", "Oslo", "New York", "Lima"];
    for (i, c) in cities.iter().enumerate() {
        let units = if i % 2 == 0 { "celsius" } else { "fahrenheit" };
        out.push(Example {
            id: format!("w{i}"),
            source: "test".into(),
            query: format!("What's the weather in {c} in {units}?"),
            tools: ts.clone(),
            calls: vec![Call::new(
                "get_weather",
                json!({"city": c, "units": units})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )],
            teacher: None,
            context: Vec::new(),
        });
    }
    for (i, m) in [5, 12, 30, 45].iter().enumerate() {
        out.push(Example {
            id: format!("t{i}"),
            source: "test".into(),
            query: format!("set a timer for {m} minutes"),
            tools: ts.clone(),
            calls: vec![Call::new(
                "set_timer",
                json!({"minutes": m})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )],
            teacher: None,
            context: Vec::new(),
        });
    }
    // Two calls of one function, each city a span of the request.
    for (i, (a, b)) in [("Oslo", "Lima"), ("New York", "San Francisco")]
        .iter()
        .enumerate()
    {
        let call = |c: &str| {
            Call::new(
                "get_weather",
                json!({"city": c}).as_object().cloned().unwrap_or_default(),
            )
        };
        out.push(Example {
            id: format!("p{i}"),
            source: "test".into(),
            query: format!("Weather in {a} and in {b}?"),
            tools: ts.clone(),
            calls: vec![call(a), call(b)],
            teacher: None,
            context: Vec::new(),
        });
    }
    for (i, q) in [
        "tell me a joke",
        "who wrote hamlet",
        "hello there",
        "sing a song",
    ]
    .iter()
    .enumerate()
    {
        out.push(Example {
            id: format!("n{i}"),
            source: "test".into(),
            query: q.to_string(),
            tools: ts.clone(),
            calls: Vec::new(),
            teacher: None,
            context: Vec::new(),
        });
    }
    out
}

/// A tiny random network with lexical features learns a dozen examples
/// (multi-word copies with original casing, enum members the request
/// names, integers, two calls of one function, refusals) to 100% exact
/// calls.
#[test]
fn tiny_model_overfits_a_dozen_examples() {
    let Some(_) = retort_model::testutil::tokenizer_json() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = dozen_file(dir.path());
    let mut o = TrainOptions::new(data.clone(), data.clone(), dir.path().join("out"));
    o.minilm = tokenizer_dir();
    o.tiny = true;
    o.epochs = 60;
    o.batch_size = 4;
    o.lr = 1e-2;
    o.warmup = 5;
    o.weight_decay = 0.0;
    o.freeze_embeddings = false;
    o.checkpoint_every = 0;
    o.val_decode_limit = 0;
    o.progress = false;
    o.gen_vocab_size = 64;
    o.lexical_features = Some(true);
    train(&o, Arc::new(AtomicBool::new(false))).expect("train");
    let (rep, _) = crate::trainer::evaluate_and_export(
        &dir.path().join("out/final"),
        &data,
        None,
        None,
        &Default::default(),
        Some(&dir.path().join("failures.jsonl")),
    )
    .expect("eval");
    let failures = std::fs::read_to_string(dir.path().join("failures.jsonl")).expect("failures");
    assert_eq!(failures, "", "every example is exact, so none is listed");
    assert_eq!(rep.n, 14);
    assert_eq!(rep.exact, 14, "exact {}/{}", rep.exact, rep.n);
}

/// [`dozen`] written as a JSONL file in `dir`.
fn dozen_file(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("d.jsonl");
    let lines: Vec<String> = dozen()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    std::fs::write(&data, lines.join("\n")).expect("write");
    data
}

fn tokenizer_dir() -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for d in [root.join("models"), root.join(".cache/minilm")] {
        if d.join("tokenizer.json").is_file() {
            return d;
        }
    }
    root.join(".cache/minilm")
}

/// Options of a short tiny run on `data` into `dir/out` (no checkpoints,
/// no decoding validation, no progress bar); tests set what they vary.
fn tiny_run(data: &std::path::Path, dir: &std::path::Path, out: &str) -> TrainOptions {
    let mut o = TrainOptions::new(data.to_path_buf(), data.to_path_buf(), dir.join(out));
    o.minilm = tokenizer_dir();
    o.tiny = true;
    o.batch_size = 4;
    o.lr = 1e-2;
    o.warmup = 2;
    o.max_steps = Some(4);
    o.checkpoint_every = 0;
    o.val_decode_limit = 0;
    o.progress = false;
    o.gen_vocab_size = 64;
    o
}

/// `--teacher-model`: a trained model's distribution is the soft target, and
/// `--resume` continues a stopped run to the same weights as an unbroken one.
#[test]
fn teacher_model_and_exact_resume() {
    let Some(_) = retort_model::testutil::tokenizer_json() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = dozen_file(dir.path());
    let base = |out: &str| {
        let mut o = tiny_run(&data, dir.path(), out);
        o.max_steps = Some(6);
        o.epochs = 2;
        o.checkpoint_every = 2;
        o.val_decode_limit = 2;
        o
    };
    let stop = || Arc::new(AtomicBool::new(false));
    train(&base("teacher"), stop()).expect("teacher");
    let mut s = base("student");
    s.teacher_model = Some(dir.path().join("teacher/final"));
    s.loss = LossWeights {
        temperature: 2.0,
        alpha: 0.5,
        beta: 0.5,
    };
    let sum = train(&s, stop()).expect("student");
    assert_eq!(sum.steps, 6);
    // Resume: stop after 3 steps (mid-epoch), continue, compare with the unbroken run.
    let mut a = base("a");
    a.max_steps = Some(6);
    train(&a, stop()).expect("a");
    let mut b1 = base("b");
    b1.stop_at_step = Some(3);
    train(&b1, stop()).expect("b1");
    let mut b2 = base("b");
    b2.resume = true;
    train(&b2, stop()).expect("b2");
    let wa = std::fs::read(dir.path().join("a/final/model.safetensors")).expect("a");
    let wb = std::fs::read(dir.path().join("b/final/model.safetensors")).expect("b");
    assert!(wa == wb, "resumed run differs from the unbroken run");
}

/// Data-parallel gradients (`--threads 2`, with the block mask) train to
/// the same weights as one graph per batch, up to float rounding.
#[test]
fn data_parallel_matches_single_thread() {
    let Some(_) = retort_model::testutil::tokenizer_json() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = dozen_file(dir.path());
    let run = |out: &str, threads: usize| {
        let mut o = tiny_run(&data, dir.path(), out);
        o.block_mask = Some(true);
        o.threads = threads;
        train(&o, Arc::new(AtomicBool::new(false))).expect("train");
        let m = retort_model::Model::load(&dir.path().join(out).join("final")).expect("load");
        assert!(m.cfg.block_mask);
        m.params.to_host().expect("host")
    };
    let one = run("one", 1);
    let two = run("two", 2);
    // Adam divides by the gradients' size, so a rounding difference in a
    // gradient near zero can move that one weight by up to lr: compare the
    // mean difference.
    let again = run("again", 1);
    let mean_diff = |a: &retort_model::net::HostParams, b: &retort_model::net::HostParams| {
        let (mut s, mut n) = (0f64, 0usize);
        for (x, y) in a.values.iter().zip(&b.values) {
            for (p, q) in x.iter().zip(y) {
                s += (p - q).abs() as f64;
                n += 1;
            }
        }
        s / n.max(1) as f64
    };
    let d = mean_diff(&one, &two);
    assert!(d < 1e-6, "mean difference {d}");
    assert_eq!(mean_diff(&one, &again), 0.0, "same settings, same weights");
}

/// `frozen_on_host`: the frozen lower layer runs on the host with int8
/// matrices. It stays frozen, and training moves the other weights as the
/// all-burn path does, up to the int8 rounding of the frozen matrices.
#[test]
fn frozen_layers_on_host_train_like_burn() {
    let Some(_) = retort_model::testutil::tokenizer_json() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = dozen_file(dir.path());
    let run = |out: &str, on_host: bool| {
        let mut o = tiny_run(&data, dir.path(), out);
        o.block_mask = Some(false);
        o.freeze_layers = 1;
        o.frozen_on_host = on_host;
        o.lr = 1e-3;
        o.threads = 2;
        train(&o, Arc::new(AtomicBool::new(false))).expect("train");
        let m = retort_model::Model::load(&dir.path().join(out).join("final")).expect("load");
        (
            m.net.layout.clone(),
            m.params.to_host().expect("host"),
            o.seed,
        )
    };
    let (layout, burn_path, seed) = run("burn", false);
    let (_, host_path, _) = run("host", true);
    let init = retort_model::net::HostParams::init(&layout, seed);
    let mut moved = 0f64;
    let mut differ = 0f64;
    let mut n = 0usize;
    for (i, spec) in layout.specs.iter().enumerate() {
        let frozen = spec.name.starts_with("encoder.layer.0.")
            || spec.part == retort_model::net::Part::Embeddings;
        for ((a, b), c) in burn_path.values[i]
            .iter()
            .zip(&host_path.values[i])
            .zip(&init.values[i])
        {
            if frozen {
                assert_eq!(a, c, "{} moved (burn path)", spec.name);
                assert_eq!(b, c, "{} moved (host path)", spec.name);
            } else {
                moved += (a - c).abs() as f64;
                differ += (a - b).abs() as f64;
                n += 1;
            }
        }
    }
    let (moved, differ) = (moved / n as f64, differ / n as f64);
    assert!(moved > 1e-5, "training did not move the weights ({moved})");
    assert!(
        differ < 1e-3 * moved,
        "host path moved weights differently: {differ} vs {moved}"
    );
}
