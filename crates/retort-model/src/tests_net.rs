//! Tests of the network, the MiniLM import and the model files.

use burn::tensor::Device;
use retort_core::{CallOptions, Tool, ToolFormat};
use serde_json::json;

use crate::config::ModelConfig;
use crate::model::Model;
use crate::net::{EncBatch, HostParams, Layout, Net};
use crate::testutil::{minilm_dir, tokenizer_json};
use crate::weights::{self, Storage};

#[test]
fn model_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
}

#[test]
fn shipped_shape_is_within_budget() {
    let layout = Layout::new(&ModelConfig::minilm(vec![0; 2048]));
    let total = layout.count();
    assert!(total <= 26_500_000, "{total}");
    // MiniLM without its pooler: 22,565,376.
    let enc: usize = layout
        .count_by_part()
        .iter()
        .filter(|(p, _)| matches!(p, crate::net::Part::Embeddings | crate::net::Part::Encoder))
        .map(|x| x.1)
        .sum();
    assert_eq!(enc, 22_565_376);
}

/// Reference: a numpy BERT forward over the same safetensors (erf GELU,
/// eps 1e-12) for `[CLS] hello world [SEP]` with segments 0,0,1,1.
#[test]
fn minilm_encoder_matches_reference() {
    let Some(dir) = minilm_dir() else { return };
    let cfg = ModelConfig::minilm(vec![0]);
    let device = Device::flex();
    let net = Net::new(cfg, &device).expect("net");
    let mut host = HostParams::init(&net.layout, 1);
    let n = weights::import_minilm(&net.layout, &mut host, &dir).expect("import");
    assert_eq!(n, 101);
    let p = host.to_device(&net.layout, &device, None);
    let x = EncBatch::new(&[(&[101, 7592, 2088, 102], &[0, 0, 1, 1])], 0, &device);
    let h = net
        .encode(&p, &x)
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    let cls = [0.180679, 0.061421, 0.071763, 0.273216, -0.135695, -0.387857];
    let tok2 = [
        -0.235497, 0.330782, -0.306917, -0.177373, 0.277979, -1.800741,
    ];
    for i in 0..6 {
        assert!(
            (h[i] - cls[i]).abs() < 1e-4,
            "cls[{i}] {} vs {}",
            h[i],
            cls[i]
        );
        assert!(
            (h[2 * 384 + i] - tok2[i]).abs() < 1e-4,
            "tok2[{i}] {} vs {}",
            h[2 * 384 + i],
            tok2[i]
        );
    }
}

fn weather_tools() -> Vec<Tool> {
    Tool::parse_many(
        &json!([{"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "units": {"type": "string", "enum": ["c", "f"]}},
          "required": ["city"]}}]),
        ToolFormat::Auto,
    )
    .expect("tools")
}

#[test]
fn save_then_load_gives_identical_outputs() {
    let Some(tj) = tokenizer_json() else { return };
    let cfg = ModelConfig::tiny(vec![1012, 1015, 1016]);
    let layout = Layout::new(&cfg);
    let host = HostParams::init(&layout, 7);
    let m = Model::from_parts(cfg, &host, &tj).expect("model");
    let dir = tempfile::tempdir().expect("tmp");
    m.save(dir.path(), Storage::F32).expect("save");
    let back = Model::load(dir.path()).expect("load");
    assert_eq!(back.params.to_host().expect("host"), host);
    let tools = weather_tools();
    let q = "What is the weather in San Francisco?";
    let a = m.predict(q, &tools, &CallOptions::default()).expect("a");
    let b = back.predict(q, &tools, &CallOptions::default()).expect("b");
    assert_eq!(a, b);
    // Random weights still give schema-valid output (constrained decoding).
    retort_core::validate_all(&a.calls, &tools).expect("valid");
}

#[test]
fn compact_storage_is_close_and_small() {
    let cfg = ModelConfig::tiny(vec![1012]);
    let layout = Layout::new(&cfg);
    let host = HostParams::init(&layout, 3);
    let f32b = weights::serialize_params(&layout, &host, Storage::F32).expect("f32");
    let cb = weights::serialize_params(&layout, &host, Storage::Compact).expect("compact");
    assert!(
        cb.len() * 100 < f32b.len() * 55,
        "{} vs {}",
        cb.len(),
        f32b.len()
    );
    let back = weights::params_from_bytes(&layout, &cb).expect("read");
    for (a, b) in host.values.iter().zip(&back.values) {
        let m = a.iter().fold(0f32, |x, y| x.max(y.abs()));
        for (x, y) in a.iter().zip(b) {
            // int8 per row: at most half a step of the row's scale (m/127).
            assert!(
                (x - y).abs() <= m / 127.0 * 0.51 + 1e-3 * x.abs().max(1e-3),
                "{x} vs {y}"
            );
        }
    }
    let exact = weights::params_from_bytes(&layout, &f32b).expect("read");
    assert_eq!(exact, host);
}

#[test]
fn embedded_model_loads_or_says_why() {
    match Model::embedded() {
        Ok(m) => assert!(Layout::new(&m.cfg).count() <= 26_500_000),
        Err(e) => assert!(e.to_string().contains("--model"), "{e}"),
    }
}

#[test]
fn bad_model_files_are_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    assert!(Model::load(dir.path()).is_err());
    std::fs::write(dir.path().join("config.json"), b"{not json").expect("w");
    std::fs::write(dir.path().join("tokenizer.json"), b"{}").expect("w");
    std::fs::write(dir.path().join("model.safetensors"), b"garbage").expect("w");
    assert!(Model::load(dir.path()).is_err());
    let cfg = ModelConfig::tiny(vec![1]);
    assert!(Model::from_bytes(&serde_json::to_vec(&cfg).expect("j"), b"{}", b"garbage").is_err());
}

/// The inference path (prepared encoder states, heads on the last step only)
/// gives the same logits as the training path.
#[test]
fn prepared_last_step_matches_full_decode() {
    use crate::net::{DecBatch, kind};
    let cfg = ModelConfig::tiny(vec![1012, 1015, 2000]);
    let device = Device::flex();
    let net = Net::new(cfg, &device).expect("net");
    let host = HostParams::init(&net.layout, 11);
    let p = host.to_device(&net.layout, &device, None);
    let x = EncBatch::new(
        &[(&[101, 7592, 2088, 2003, 102], &[0, 0, 0, 1, 1])],
        0,
        &device,
    );
    let enc = net.encode(&p, &x);
    let steps = vec![
        (0, kind::BOS, None),
        (2088, kind::FUNCTION, Some(2)),
        (7592, kind::PARAM, Some(1)),
        (1012, kind::VALUE, None),
    ];
    let y = DecBatch::new(&[steps], 5, &device);
    let full = net.decode(&p, enc.clone(), x.pad_bias.clone(), &y);
    let [_, t, v] = full.dims();
    let last_full = full
        .slice([0..1, t - 1..t, 0..v])
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    let prep = net.prepare(&p, enc, x.pad_bias.clone());
    let last = net
        .decode_prepared(&p, &prep, &y, true)
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    assert_eq!(last.len(), v);
    for (a, b) in last.iter().zip(&last_full) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn required_call_without_tools_is_a_request_error() {
    let Some(tj) = tokenizer_json() else { return };
    let cfg = ModelConfig::tiny(vec![1012]);
    let host = HostParams::init(&Layout::new(&cfg), 5);
    let m = Model::from_parts(cfg, &host, &tj).expect("model");
    let opts = CallOptions {
        require_call: true,
        ..Default::default()
    };
    assert!(matches!(
        m.predict("hi", &[], &opts),
        Err(crate::ModelError::InvalidRequest(_))
    ));
    // Without the requirement, no tools simply means no call.
    let d = m
        .predict("hi", &[], &CallOptions::default())
        .expect("predict");
    assert!(d.calls.is_empty());
}

/// `[CLS] query [SEP]` (segment 0) then two tools, `2000 2001 2002 [SEP]`
/// and `3000 3001 [SEP]` (segment 1): ids, segments and the query's length.
fn two_tool_row(query: &[u32]) -> (Vec<u32>, Vec<u32>, usize) {
    let sep = 102u32;
    let mut ids = vec![101u32];
    ids.extend_from_slice(query);
    ids.push(sep);
    let q = ids.len();
    ids.extend_from_slice(&[2000, 2001, 2002, sep, 3000, 3001, sep]);
    let mut segs = vec![0u32; q];
    segs.resize(ids.len(), 1);
    (ids, segs, q)
}

/// Under the block mask a tool's encoder states do not depend on the query
/// (or on the other tools): they equal the tool encoded on its own, with
/// positions from 1. The query's states do see the tools.
#[test]
fn block_mask_isolates_tool_encodings() {
    let mut cfg = ModelConfig::tiny(vec![1012]);
    cfg.block_mask = true;
    let device = Device::flex();
    let net = Net::new(cfg.clone(), &device).expect("net");
    let host = HostParams::init(&net.layout, 5);
    let p = host.to_device(&net.layout, &device, None);
    let sep = 102u32;
    let tool_a = [2000u32, 2001, 2002, sep];
    let row = |query: &[u32]| two_tool_row(query);
    let enc = |ids: &[u32], segs: &[u32]| -> Vec<f32> {
        let x = EncBatch::for_config(&cfg, &[(ids, segs)], 0, sep, &device);
        net.encode(&p, &x)
            .into_data()
            .try_into_vec::<f32>()
            .expect("vec")
    };
    let d = cfg.hidden;
    let (ids1, segs1, q1) = row(&[7592, 2088]);
    let (ids2, segs2, q2) = row(&[4000, 4001, 4002, 4003]);
    let h1 = enc(&ids1, &segs1);
    let h2 = enc(&ids2, &segs2);
    // Tool rows agree across the two queries.
    let t1 = &h1[q1 * d..];
    let t2 = &h2[q2 * d..];
    assert_eq!(t1.len(), t2.len());
    for (a, b) in t1.iter().zip(t2) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // Tool A alone (positions from 1: a leading dummy that it cannot see is
    // not needed; build the positions explicitly).
    let x = EncBatch::build(&[(&tool_a, &[1, 1, 1, 1])], 0, None, &device);
    let x = EncBatch {
        pos: burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(vec![1i64, 2, 3, 4], [1, 4]),
            &device,
        ),
        ..x
    };
    let alone = net
        .encode(&p, &x)
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    for (a, b) in alone.iter().zip(&t1[..4 * d]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // The query's [CLS] state changes when a tool changes.
    let mut ids3 = ids1.clone();
    ids3[q1] = 2500;
    let h3 = enc(&ids3, &segs1);
    let diff: f32 = h1[..d]
        .iter()
        .zip(&h3[..d])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 1e-4, "query states should see the tools ({diff})");
}

/// The cached-tool path (tools encoded one by one, the query against them)
/// gives the joint block-masked encoding.
#[test]
fn hand_written_full_pass_matches_the_encoder() {
    let mut cfg = ModelConfig::tiny(vec![1012]);
    cfg.block_mask = false;
    cfg.enc_layers = 2;
    let device = Device::flex();
    let net = Net::new(cfg.clone(), &device).expect("net");
    let host = HostParams::init(&net.layout, 5);
    let p = host.to_device(&net.layout, &device, None);
    let sep = 102u32;
    let ids = vec![
        101u32, 7592, 2088, 2003, sep, 2000, 2001, 2002, sep, 3000, 3001, sep,
    ];
    let mut segs = vec![0u32; 5];
    segs.resize(ids.len(), 1);
    let x = EncBatch::for_config(&cfg, &[(&ids, &segs)], 0, sep, &device);
    let burn_path = net
        .encode(&p, &x)
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    let fast = crate::fastenc::full_pass(&net, &p, &ids, &segs, sep, &device)
        .expect("fast")
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    assert_eq!(burn_path.len(), fast.len());
    let mut worst = 0f32;
    for (a, b) in burn_path.iter().zip(&fast) {
        worst = worst.max((a - b).abs());
    }
    assert!(worst < 1e-4, "largest difference {worst}");
    // The segments matter: the same ids as one segment encode differently.
    let same_seg = crate::fastenc::full_pass(&net, &p, &ids, &[0; 12], sep, &device)
        .expect("fast")
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    assert!(
        same_seg
            .iter()
            .zip(&fast)
            .any(|(a, b)| (a - b).abs() > 1e-3)
    );
}

#[test]
fn tool_blocks_match_joint_block_encoding() {
    let mut cfg = ModelConfig::tiny(vec![1012]);
    cfg.block_mask = true;
    cfg.enc_layers = 2;
    let device = Device::flex();
    let net = Net::new(cfg.clone(), &device).expect("net");
    let host = HostParams::init(&net.layout, 9);
    let p = host.to_device(&net.layout, &device, None);
    let sep = 102u32;
    let ids = vec![
        101u32, 7592, 2088, 2003, sep, 2000, 2001, 2002, sep, 3000, 3001, sep,
    ];
    let mut segs = vec![0u32; 5];
    segs.resize(ids.len(), 1);
    let x = EncBatch::for_config(&cfg, &[(&ids, &segs)], 0, sep, &device);
    let joint = net
        .encode(&p, &x)
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    let ranges = crate::net::block_ranges(&ids, sep);
    assert_eq!(ranges, vec![0..5, 5..9, 9..12]);
    let blocks: Vec<crate::net::ToolBlock> = ranges[1..]
        .iter()
        .map(|r| {
            net.encode_tool_block(&p, &ids[r.clone()], &device)
                .expect("block")
        })
        .collect();
    // The served blocks (hand-written) hold the same states.
    for (r, b) in ranges[1..].iter().zip(&blocks) {
        let host = crate::fastenc::tool_block(&net, &p, &ids[r.clone()], &device).expect("block");
        assert_eq!(host.kv.len(), b.kv.len());
        let (x, y) = (host.out.into_data(), b.out.clone().into_data());
        let (x, y) = (
            x.try_into_vec::<f32>().expect("vec"),
            y.try_into_vec::<f32>().expect("vec"),
        );
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-4));
    }
    let refs: Vec<&crate::net::ToolBlock> = blocks.iter().collect();
    let q = &ids[ranges[0].clone()];
    let reference = net
        .encode_with_blocks_reference(&p, q, &refs, &device)
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    let fast = net
        .encode_with_blocks(&p, q, &refs, &device)
        .expect("fast")
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    assert_eq!(joint.len(), reference.len());
    assert_eq!(joint.len(), fast.len());
    for (i, ((a, b), c)) in joint.iter().zip(&reference).zip(&fast).enumerate() {
        assert!((a - b).abs() < 1e-4, "element {i}: {a} vs {b} (burn path)");
        assert!(
            (a - c).abs() < 1e-4,
            "element {i}: {a} vs {c} (hand-written path)"
        );
    }
}

/// The block mask in the lower layers only (`block_layers`): the joint
/// encoding (burn), the hand-written pass over the whole row, the frozen
/// lower layers of training followed by burn's upper layers, and the
/// cached path (tools through the lower layers one by one, the query
/// against them, then every row through the upper layers) all agree; the
/// lower layers' tool states do not depend on the query, the output's do.
#[test]
fn lower_block_layers_paths_agree() {
    let mut cfg = ModelConfig::tiny(vec![1012]);
    cfg.block_mask = false;
    cfg.enc_layers = 3;
    cfg.block_layers = 2;
    let device = Device::flex();
    let net = Net::new(cfg.clone(), &device).expect("net");
    let host = HostParams::init(&net.layout, 11);
    let p = host.to_device(&net.layout, &device, None);
    let sep = 102u32;
    let (tool_a, tool_b) = ([2000u32, 2001, 2002, sep], [3000u32, 3001, sep]);
    let row = |query: &[u32]| two_tool_row(query);
    let vec3 = |t: burn::tensor::Tensor<3>| t.into_data().try_into_vec::<f32>().expect("vec");
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{what}: largest difference {worst}");
    };
    let (ids, segs, q) = row(&[7592, 2088, 2003]);
    let x = EncBatch::for_config(&cfg, &[(&ids, &segs)], 0, sep, &device);
    assert_eq!(x.masked_layers, 2);
    let joint = vec3(net.encode(&p, &x));
    let fast = vec3(crate::fastenc::full_pass(&net, &p, &ids, &segs, sep, &device).expect("fast"));
    close(&joint, &fast, "hand-written pass");
    let lower =
        crate::fastenc::lower_layers(&net, &p, &ids, &segs, sep, 2, &device).expect("lower");
    let d = cfg.hidden;
    let h = burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(lower.clone(), [1, ids.len(), d]),
        &device,
    );
    close(
        &joint,
        &vec3(net.encode_from(&p, h, &x, 2)),
        "host lower layers",
    );
    let blocks: Vec<crate::net::ToolBlock> = [&tool_a[..], &tool_b[..]]
        .iter()
        .map(|t| crate::fastenc::tool_block(&net, &p, t, &device).expect("block"))
        .collect();
    assert!(blocks.iter().all(|b| b.kv.len() == 2));
    // A block holds the lower layers' states of its rows.
    close(
        &vec3(blocks[0].out.clone()),
        &lower[q * d..(q + 4) * d],
        "tool block",
    );
    let refs: Vec<&crate::net::ToolBlock> = blocks.iter().collect();
    let cached =
        vec3(crate::fastenc::upper_pass(&net, &p, &ids[..q], &refs, &device).expect("cached"));
    close(&joint, &cached, "cached tools");
    // Another query: the same lower tool states, different outputs for
    // the tool rows (the upper layer attends to the query).
    let (ids2, segs2, q2) = row(&[4000, 4001]);
    let lower2 =
        crate::fastenc::lower_layers(&net, &p, &ids2, &segs2, sep, 2, &device).expect("lower");
    close(&lower[q * d..], &lower2[q2 * d..], "lower tool states");
    let out2 =
        vec3(crate::fastenc::full_pass(&net, &p, &ids2, &segs2, sep, &device).expect("fast"));
    let diff: f32 = joint[q * d..]
        .iter()
        .zip(&out2[q2 * d..])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(
        diff > 1e-3,
        "upper layers should mix the query into tool rows ({diff})"
    );
}

/// Incremental decoding (cached self-attention keys and values) gives, at
/// every step, the logits of a full pass over the prefix.
#[test]
fn incremental_decoding_matches_full_prefix() {
    use crate::net::{DecBatch, kind};
    let mut cfg = ModelConfig::tiny(vec![1012, 1015, 2000]);
    cfg.dec_layers = 2;
    let device = Device::flex();
    let net = Net::new(cfg, &device).expect("net");
    let host = HostParams::init(&net.layout, 13);
    let p = host.to_device(&net.layout, &device, None);
    let x = EncBatch::new(
        &[(&[101, 7592, 2088, 2003, 102, 2000], &[0, 0, 0, 1, 1, 1])],
        0,
        &device,
    );
    let enc = net.encode(&p, &x);
    let prep = net.prepare(&p, enc, x.pad_bias.clone());
    let steps = [
        (0, kind::BOS, None),
        (2088, kind::FUNCTION, Some(2)),
        (7592, kind::PARAM, Some(1)),
        (1012, kind::VALUE, None),
        (2000, kind::VALUE, Some(5)),
    ];
    let mut st = net.start_decoding();
    let hd = crate::fastdec::HostDecoder::new(&net, &p).expect("host decoder");
    let mut hp = hd.prepare(&net, &p, &prep).expect("host prepare");
    for n in 1..=steps.len() {
        let y = DecBatch::new(&[steps[..n].to_vec()], 6, &device);
        let full = net
            .decode_prepared(&p, &prep, &y, true)
            .into_data()
            .try_into_vec::<f32>()
            .expect("vec");
        let inc = net
            .decode_step(&p, &prep, &mut st, steps[n - 1])
            .into_data()
            .try_into_vec::<f32>()
            .expect("vec");
        // The hand-written host step (what inference runs).
        let fast = hp.step(steps[n - 1]).expect("host step");
        assert_eq!(full.len(), inc.len());
        assert_eq!(full.len(), fast.len());
        for (i, ((a, b), c)) in full.iter().zip(&inc).zip(&fast).enumerate() {
            assert!((a - b).abs() < 1e-4, "step {n}, output {i}: {a} vs {b}");
            assert!(
                (a - c).abs() < 1e-4,
                "step {n}, output {i}: {a} vs {c} (host)"
            );
        }
    }
}

/// A tiny random model (seed `seed`) that generates only `gen_vocab` and
/// never wants to end a value: its `END_VAL` logit is lowered by 40, so a
/// value goes on to its 40-piece cap unless a rule ends it. `None` without
/// a tokenizer.
fn unending_values_model(gen_vocab: Vec<u32>, seed: u64) -> Option<Model> {
    let tj = tokenizer_json()?;
    let cfg = ModelConfig::tiny(gen_vocab);
    let layout = Layout::new(&cfg);
    let mut host = HostParams::init(&layout, seed);
    let bias = layout.index_of("head.action.bias").expect("action bias");
    host.values[bias][crate::net::action::END_VAL] = -40.0;
    Some(Model::from_parts(cfg, &host, &tj).expect("model"))
}

/// The text of `weather_tools` that a value may copy besides the query.
const WEATHER_TOOL_TEXT: &str = "get_weather Weather in a city units c f";

/// With the contiguous-copy rule, a value copied from the input is one
/// span of it: every piece comes from the position after the last.
#[test]
fn contiguous_copies_keep_a_value_one_span_of_the_query() {
    // Nothing can be generated, so every piece of a value is a piece of
    // the query or of the tool's text.
    let Some(mut m) = unending_values_model(vec![], 21) else {
        return;
    };
    let q = "What is the weather in Reykjavik today?";
    let opts = CallOptions {
        require_call: true,
        ..Default::default()
    };
    let city = |m: &Model| -> String {
        let d = m.predict(q, &weather_tools(), &opts).expect("predict");
        retort_core::validate_all(&d.calls, &weather_tools()).expect("valid");
        d.calls[0].arguments["city"]
            .as_str()
            .expect("string")
            .to_string()
    };
    let scattered = city(&m);
    for word in scattered.split(|c: char| !c.is_alphanumeric()) {
        assert!(
            q.contains(word) || WEATHER_TOOL_TEXT.contains(word),
            "{scattered:?} is not copied from the input"
        );
    }
    assert!(
        !q.contains(scattered.as_str()) && !WEATHER_TOOL_TEXT.contains(scattered.as_str()),
        "without the rule this network copies from here and there: {scattered:?}"
    );
    m.update_config(|c| c.decode.contiguous_copy = true)
        .expect("rule");
    let span = city(&m);
    assert!(!span.is_empty());
    assert!(
        q.contains(span.as_str()) || WEATHER_TOOL_TEXT.contains(span.as_str()),
        "{span:?} is not one span of {q:?} or the tool's text"
    );
}

/// With the whole-word rule, copied values start and end on word
/// boundaries of the query: every word of the value is a whole query word.
#[test]
fn whole_word_copies_keep_words_intact() {
    // Only "." can be generated, so every word of a value is copied (from
    // the query or the tool's text).
    let Some(mut m) = unending_values_model(vec![1012], 21) else {
        return;
    };
    m.update_config(|c| {
        c.decode.contiguous_copy = true;
        c.decode.whole_word_copy = true;
    })
    .expect("rules");
    let opts = CallOptions {
        require_call: true,
        ..Default::default()
    };
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    for q in [
        "What is the weather in Reykjavik today?",
        "Weather for Ouagadougou and Tegucigalpa please",
        "forecast: Thiruvananthapuram, Kerala",
    ] {
        let d = m.predict(q, &weather_tools(), &opts).expect("predict");
        retort_core::validate_all(&d.calls, &weather_tools()).expect("valid");
        let city = d.calls[0].arguments["city"].as_str().expect("string");
        let mut qw = words(q);
        qw.extend(words(WEATHER_TOOL_TEXT));
        // The value goes on until its 40-piece cap or the end of the
        // query; the cap may cut the last word, every other one is whole.
        let vw = words(city);
        assert!(vw.len() > 1, "{city:?}");
        for w in &vw[..vw.len() - 1] {
            assert!(
                qw.contains(w),
                "{w:?} of {city:?} is not a whole word of {q:?} or the tool's text"
            );
        }
    }
}

/// A tiny random model (seed 9), or `None` without a tokenizer.
fn tiny_model() -> Option<Model> {
    let tj = tokenizer_json()?;
    let cfg = ModelConfig::tiny(vec![1012, 1015, 1016]);
    let host = HostParams::init(&Layout::new(&cfg), 9);
    Some(Model::from_parts(cfg, &host, &tj).expect("model"))
}

/// Two unrelated one-parameter tools.
fn flight_and_weather_tools() -> Vec<Tool> {
    Tool::parse_many(
        &json!([
          {"name": "book_flight", "description": "Reserve a seat on a plane",
           "parameters": {"type": "object", "properties": {"seat": {"type": "string"}},
           "required": ["seat"]}},
          {"name": "get_weather", "description": "Weather forecast in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
           "required": ["city"]}}]),
        ToolFormat::Auto,
    )
    .expect("tools")
}

/// `overlap_bias` moves the first call's function choice towards the tools
/// that share word pieces with the query (and, negative, away from them);
/// 0 leaves the random model's own choice.
#[test]
fn overlap_bias_steers_the_first_function_choice() {
    let Some(mut m) = tiny_model() else { return };
    let tools = flight_and_weather_tools();
    let opts = CallOptions {
        require_call: true,
        ..Default::default()
    };
    let q = "weather forecast for Oslo";
    let first = |m: &Model| -> String {
        let d = m.predict(q, &tools, &opts).expect("predict");
        retort_core::validate_all(&d.calls, &tools).expect("valid");
        d.calls[0].name.clone()
    };
    m.update_config(|c| c.decode.overlap_bias = 40.0)
        .expect("bias");
    assert_eq!(first(&m), "get_weather");
    m.update_config(|c| c.decode.overlap_bias = -40.0)
        .expect("bias");
    assert_eq!(first(&m), "book_flight");
    // The prior steers the choice only: where it agrees with the model's
    // own choice, the answer and its confidence are those without it.
    m.update_config(|c| c.decode.overlap_bias = 0.0)
        .expect("bias");
    let own = m.predict(q, &tools, &opts).expect("predict");
    let agree = if own.calls[0].name == "get_weather" {
        40.0
    } else {
        -40.0
    };
    m.update_config(|c| c.decode.overlap_bias = agree)
        .expect("bias");
    let steered = m.predict(q, &tools, &opts).expect("predict");
    assert_eq!(steered.calls, own.calls);
    assert_eq!(steered.confidence, own.confidence);
}

/// A two-part request for `flight_and_weather_tools`.
const PLANE_THEN_WEATHER: &str = "reserve a plane seat, then the weather forecast in Oslo";

/// `tiny_model`'s network set to call (stopping, and so refusing, lowered
/// by 30 in its action head), to end a call early (`END_CALL` raised by
/// 30) and to keep values short, so that the step budget holds several
/// calls.
fn short_calls_model() -> Option<Model> {
    let tj = tokenizer_json()?;
    let mut cfg = ModelConfig::tiny(vec![1012, 1015, 1016]);
    cfg.max_value_tokens = 2;
    let layout = Layout::new(&cfg);
    let mut host = HostParams::init(&layout, 9);
    let bias = layout.index_of("head.action.bias").expect("action bias");
    host.values[bias][crate::net::action::STOP] -= 30.0;
    host.values[bias][crate::net::action::END_CALL] += 30.0;
    Some(Model::from_parts(cfg, &host, &tj).expect("model"))
}

/// `later_overlap_bias` moves a later call to the tool sharing the words of
/// the request that the calls so far have not: after `book_flight` (plane,
/// seat), `get_weather` (weather, forecast).
#[test]
fn later_overlap_bias_moves_on_to_the_part_not_yet_answered() {
    let Some(mut m) = short_calls_model() else {
        return;
    };
    let tools = flight_and_weather_tools();
    let opts = CallOptions::default();
    let q = PLANE_THEN_WEATHER;
    m.update_config(|c| c.decode.overlap_bias = 40.0)
        .expect("bias");
    let names = |m: &Model| -> Vec<String> {
        let d = m.predict(q, &tools, &opts).expect("predict");
        retort_core::validate_all(&d.calls, &tools).expect("valid");
        d.calls.into_iter().map(|c| c.name).collect()
    };
    m.update_config(|c| c.decode.later_overlap_bias = 40.0)
        .expect("bias");
    let on = names(&m);
    assert_eq!(
        on.get(..2),
        Some(&["book_flight".to_string(), "get_weather".to_string()][..]),
        "{on:?}"
    );
    // Negative, it keeps to the tool already called.
    m.update_config(|c| c.decode.later_overlap_bias = -40.0)
        .expect("bias");
    let off = names(&m);
    assert!(
        !off.is_empty() && off.iter().all(|n| n == "book_flight"),
        "{off:?}"
    );
    assert!(
        m.update_config(|c| c.decode.later_overlap_bias = f64::NAN)
            .is_err()
    );
}

/// A compact model file keeps its int8 word table and encoder matrices as
/// int8 in memory; the outputs equal those of the same file fully
/// dequantized to f32.
#[test]
fn int8_word_table_gives_the_outputs_of_dequantized_weights() {
    let Some(tj) = tokenizer_json() else { return };
    let mut cfg = ModelConfig::tiny(vec![1012, 1015, 1016, 2047, 3000]);
    cfg.hidden = 64; // wide enough for int8 storage of the word table
    cfg.enc_ffn = 1024; // and of the encoder's feed-forward matrices
    let layout = Layout::new(&cfg);
    let host = HostParams::init(&layout, 11);
    let dir = tempfile::tempdir().expect("tmp");
    Model::from_parts(cfg.clone(), &host, &tj)
        .expect("model")
        .save(dir.path(), Storage::Compact)
        .expect("save");
    let q = Model::load(dir.path()).expect("load");
    assert!(q.params.words.is_some(), "the word table stays int8");
    // So do the encoder matrices big enough to be stored as int8 (the
    // feed-forward ones: 64 x 1024).
    assert_eq!(q.params.int8.len(), 2, "{:?}", q.params.int8.keys());
    let bytes = std::fs::read(dir.path().join("model.safetensors")).expect("read");
    let f32_host = weights::params_from_bytes(&layout, &bytes).expect("f32");
    let f = Model::from_parts(cfg, &f32_host, &tj).expect("f32 model");
    assert!(f.params.words.is_none());
    assert_eq!(q.params.to_host().expect("host"), f32_host);
    let tools = weather_tools();
    for query in [
        "What is the weather in San Francisco?",
        "weather for Reykjavik in f please",
        "nothing to do with tools",
    ] {
        let a = q
            .predict(query, &tools, &CallOptions::default())
            .expect("a");
        let b = f
            .predict(query, &tools, &CallOptions::default())
            .expect("b");
        assert_eq!(a.calls, b.calls, "{query}");
        assert!((a.confidence - b.confidence).abs() < 1e-9, "{query}");
    }
}

/// A model of `cfg` with random weights (`seed`), saved in the compact
/// storage (big matrices int8) and loaded back, as shipped models are.
fn compact_model(cfg: ModelConfig, seed: u64, tj: &[u8]) -> (tempfile::TempDir, Model) {
    let host = HostParams::init(&Layout::new(&cfg), seed);
    let dir = tempfile::tempdir().expect("tmp");
    Model::from_parts(cfg, &host, tj)
        .expect("model")
        .save(dir.path(), Storage::Compact)
        .expect("save");
    let m = Model::load(dir.path()).expect("load");
    (dir, m)
}

/// The rendered request "weather for Reykjavik in f please" over
/// [`weather_tools`], for model `m`.
fn reykjavik_request(m: &Model) -> crate::render::Rendered {
    crate::render::render(
        &m.tok,
        "weather for Reykjavik in f please",
        &weather_tools(),
        crate::model::infer_limits(&m.cfg),
        &[],
    )
    .expect("render")
}

/// With `integer_products`, the encoder's int8 matrices are multiplied in
/// integers: the states move (the path is taken) but stay close to the
/// f32 products', and the calls stay valid.
#[test]
fn integer_products_stay_close_to_f32_products() {
    let Some(tj) = tokenizer_json() else { return };
    let mut cfg = ModelConfig::tiny(vec![1012, 1015, 1016, 2047, 3000]);
    cfg.hidden = 64;
    cfg.enc_ffn = 1024;
    let (_dir, mut m) = compact_model(cfg, 12, &tj);
    assert_eq!(m.params.int8.len(), 2);
    let r = reykjavik_request(&m);
    let states = |m: &Model| -> Vec<f32> {
        crate::fastenc::full_pass(&m.net, &m.params, &r.ids, &r.segs, m.tok.sep, &m.device)
            .expect("pass")
            .into_data()
            .try_to_vec::<f32>()
            .expect("host")
    };
    let f = states(&m);
    m.update_config(|c| c.integer_products = true).expect("cfg");
    let q = states(&m);
    let diff = f
        .iter()
        .zip(&q)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = f.iter().map(|a| a.abs()).fold(0f32, f32::max);
    assert!(diff > 0.0, "the integer path was not taken");
    assert!(diff < 1e-3 * scale, "{diff} vs {scale}");
    let tools = weather_tools();
    let d = m
        .predict(
            "weather for Reykjavik in f please",
            &tools,
            &CallOptions::default(),
        )
        .expect("predict");
    retort_core::validate_all(&d.calls, &tools).expect("valid");
}

/// A model with the block mask in its lower layer answers the same from
/// cached tools as when it encodes the whole input at once, with integer
/// products; the second request takes the tool from the cache.
#[test]
fn lower_block_layers_answer_the_same_from_the_cache() {
    let Some(tj) = tokenizer_json() else { return };
    let mut cfg = ModelConfig::tiny(vec![1012, 1015, 1016, 2047, 3000]);
    cfg.enc_layers = 2;
    cfg.block_layers = 1;
    cfg.integer_products = true;
    let (_dir, m) = compact_model(cfg, 21, &tj);
    let tools = weather_tools();
    let query = "weather for Reykjavik in f please";
    let opts = CallOptions::default();
    let aids = crate::model::Aids {
        host_dec: Some(&m.host_dec),
        ..Default::default()
    };
    let whole = crate::model::greedy(
        &m.net, &m.params, &m.tok, query, &tools, &opts, &m.device, aids,
    )
    .expect("whole input");
    let first = m.predict(query, &tools, &opts).expect("predict");
    let second = m.predict(query, &tools, &opts).expect("predict");
    let s = m.tool_cache.stats();
    assert_eq!((s.entries, s.misses, s.hits), (1, 1, 1), "{s:?}");
    for d in [&first, &second] {
        assert_eq!(d.calls, whole.calls);
        assert!((d.confidence - whole.confidence).abs() < 1e-4);
    }
    retort_core::validate_all(&first.calls, &tools).expect("valid");
}

/// `eight_bit_activations` re-lays the named encoder matrices out for
/// 8-bit activations: the states move from the 16-bit ones but stay close
/// to the f32 products', and turning it off again gives the 16-bit states
/// back exactly. On a CPU without AVX-512 VNNI the products stay 16-bit.
#[test]
fn eight_bit_activations_stay_close_and_switch_back() {
    use crate::config::EncoderMatrix;
    use crate::qgemm::Activations;
    let Some(tj) = tokenizer_json() else { return };
    let mut cfg = ModelConfig::tiny(vec![1012, 1015, 1016, 2047, 3000]);
    cfg.hidden = 64;
    cfg.enc_ffn = 1024;
    let (_dir, mut m) = compact_model(cfg, 12, &tj);
    let r = reykjavik_request(&m);
    let states = |m: &Model| -> Vec<f32> {
        crate::fastenc::full_pass(&m.net, &m.params, &r.ids, &r.segs, m.tok.sep, &m.device)
            .expect("pass")
            .into_data()
            .try_to_vec::<f32>()
            .expect("host")
    };
    let f = states(&m);
    m.update_config(|c| c.integer_products = true).expect("cfg");
    let q16 = states(&m);
    let widths = |m: &Model| -> Vec<Activations> {
        m.params.int8.values().map(|p| p.activations()).collect()
    };
    assert_eq!(widths(&m), [Activations::I16; 2]);
    m.update_config(|c| {
        c.eight_bit_activations = vec![EncoderMatrix::FfnIn, EncoderMatrix::FfnOut]
    })
    .expect("cfg");
    if !crate::qgemm::eight_bit_fast() {
        // Without AVX-512 VNNI the products stay 16-bit.
        assert_eq!(widths(&m), [Activations::I16; 2]);
        assert_eq!(states(&m), q16);
        return;
    }
    assert_eq!(widths(&m), [Activations::U8; 2]);
    let q8 = states(&m);
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let scale = f.iter().map(|a| a.abs()).fold(0f32, f32::max);
    assert!(max_diff(&q8, &q16) > 0.0, "the 8-bit path was not taken");
    let diff = max_diff(&q8, &f);
    assert!(diff < 2e-2 * scale, "{diff} vs {scale}");
    let tools = weather_tools();
    let d = m
        .predict(
            "weather for Reykjavik in f please",
            &tools,
            &CallOptions::default(),
        )
        .expect("predict");
    retort_core::validate_all(&d.calls, &tools).expect("valid");
    m.update_config(|c| c.eight_bit_activations.clear())
        .expect("cfg");
    assert_eq!(widths(&m), [Activations::I16; 2]);
    assert_eq!(states(&m), q16);
}

/// With integer products, the host decoder prepares and steps in integers
/// (every decoder matrix int8 in the file): its logits stay close to burn's
/// f32 steps over the same weights.
#[test]
fn integer_decoder_steps_stay_close_to_f32_steps() {
    use crate::net::kind;
    let Some(tj) = tokenizer_json() else { return };
    let mut cfg = ModelConfig::tiny(vec![1012, 1015, 1016, 2047, 3000]);
    // Big enough that the file stores every decoder matrix as int8.
    cfg.hidden = 256;
    cfg.heads = 4;
    cfg.dec_ffn = 256;
    cfg.enc_ffn = 256;
    cfg.integer_products = true;
    let (_dir, m) = compact_model(cfg, 5, &tj);
    assert!(m.host_dec.prepares_on_host());
    let r = reykjavik_request(&m);
    let enc = crate::fastenc::full_pass(&m.net, &m.params, &r.ids, &r.segs, m.tok.sep, &m.device)
        .expect("pass");
    let pad = EncBatch::new(&[(&r.ids[..], &r.segs[..])], m.tok.pad, &m.device).pad_bias;
    let prep = m.net.prepare(&m.params, enc.clone(), pad.clone());
    let mut hp = m
        .host_dec
        .prepare_host(&m.net, &m.params, enc, pad)
        .expect("host prepare");
    let mut st = m.net.start_decoding();
    for step in [
        (0, kind::BOS, None),
        (2088, kind::FUNCTION, Some(2)),
        (7592, kind::PARAM, Some(1)),
        (1012, kind::VALUE, None),
    ] {
        let want = m
            .net
            .decode_step(&m.params, &prep, &mut st, step)
            .into_data()
            .try_into_vec::<f32>()
            .expect("vec");
        let got = hp.step(step).expect("host step");
        assert_eq!(want.len(), got.len());
        let diff = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = want.iter().map(|a| a.abs()).fold(0f32, f32::max);
        assert!(diff > 0.0, "the integer path was not taken");
        assert!(diff < 1e-3 * scale.max(1.0), "{diff} vs {scale}");
    }
}

/// The tokenizer and the rendering of `q` with `tools` (a tiny
/// configuration's limits), or `None` without the tokenizer.
fn rendered(q: &str, tools: &[Tool]) -> Option<(crate::render::Tok, crate::render::Rendered)> {
    let tj = tokenizer_json()?;
    let tok = crate::render::Tok::from_bytes(&tj).expect("tok");
    let cfg = ModelConfig::tiny(vec![1012]);
    let r = crate::render::render(&tok, q, tools, crate::model::infer_limits(&cfg), &[])
        .expect("render");
    Some((tok, r))
}

/// Which query pieces a copied value may not end or start at.
#[test]
fn word_boundaries_follow_the_query_text() {
    let q = "Magnus Carlsen ran 9.8 km in 2019-2020, New York.";
    let Some((tok, r)) = rendered(q, &weather_tools()) else {
        return;
    };
    let piece = |p: usize| tok.text(r.ids[p]).to_string();
    let find = |s: &str, from: usize| (from..r.ids.len()).find(|&p| piece(p) == s).expect(s);
    let carl = find("carl", 0);
    assert_eq!(piece(carl + 1), "##sen");
    assert!(crate::model::continues_word(&r, &tok, carl));
    assert!(
        !crate::model::continues_word(&r, &tok, carl + 1),
        "ends at carlsen"
    );
    assert!(crate::model::starts_mid_word(&r, &tok, carl + 1));
    assert!(!crate::model::starts_mid_word(&r, &tok, carl));
    let nine = find("9", 0);
    assert!(crate::model::continues_word(&r, &tok, nine), "9 . 8");
    assert!(crate::model::continues_word(&r, &tok, nine + 1));
    assert!(
        !crate::model::continues_word(&r, &tok, nine + 2),
        "9.8 then a space"
    );
    let y = find("2019", 0);
    assert!(crate::model::continues_word(&r, &tok, y), "2019-2020");
    assert!(
        !crate::model::continues_word(&r, &tok, y + 2),
        "a comma ends it"
    );
    let york = find("york", 0);
    assert!(
        !crate::model::continues_word(&r, &tok, york),
        "the final period"
    );
    // Tool text is never a query piece.
    let tool_piece = (0..r.ids.len()).find(|&p| r.segs[p] == 1).expect("tool");
    assert!(!crate::model::continues_word(&r, &tok, tool_piece));
}

/// Gathering int8 rows never panics: ids outside the table, or rows the
/// data does not hold, give zeros.
#[test]
fn quant_rows_gather_is_total() {
    let q = crate::net::QuantRows {
        rows: 2,
        cols: 2,
        q: vec![2, -4, 6],
        scale: vec![0.5, 1.0],
    };
    assert_eq!(
        q.gather(&[0, 1, 7, -1]),
        vec![1.0, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(q.dequantize().len(), 4);
}

/// The ranking embedding is the unit-length mean of what the encoder
/// computes (parity with `Net::encode` through the hand-written pass).
#[test]
fn ranking_embedding_is_the_normalised_mean_of_the_encoder_states() {
    let Some(tj) = tokenizer_json() else { return };
    let cfg = ModelConfig::tiny(vec![1012, 1015, 1016]);
    let host = HostParams::init(&Layout::new(&cfg), 5);
    let m = Model::from_parts(cfg, &host, &tj).expect("model");
    let ids = m.tok.ids("weather in oslo").expect("ids");
    let segs = vec![0u32; ids.len()];
    let full = crate::fastenc::full_pass(&m.net, &m.params, &ids, &segs, m.tok.sep, &m.device)
        .expect("pass")
        .into_data()
        .try_to_vec::<f32>()
        .expect("floats");
    let d = m.cfg.hidden;
    let mut mean = vec![0f32; d];
    for row in full.chunks_exact(d) {
        for (a, b) in mean.iter_mut().zip(row) {
            *a += b;
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    let e = crate::fastenc::pooled(&m.net, &m.params, &ids, usize::MAX, &m.device).expect("pooled");
    for (a, b) in mean.iter().zip(&e) {
        assert!((a / norm - b).abs() < 1e-5, "{a} / {norm} vs {b}");
    }
    let len = e.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((len - 1.0).abs() < 1e-5);
}

/// A catalogue too big for the input is ranked by embeddings when the
/// configuration says so; the embeddings are cached and reused.
#[test]
fn big_catalogues_are_ranked_with_cached_embeddings() {
    let Some(tj) = tokenizer_json() else { return };
    let cfg = ModelConfig::tiny(vec![1012, 1015, 1016]);
    let host = HostParams::init(&Layout::new(&cfg), 9);
    let mut m = Model::from_parts(cfg, &host, &tj).expect("model");
    let mut many = Vec::new();
    for i in 0..80 {
        many.push(serde_json::json!({
            "name": format!("tool_number_{i}"),
            "description": format!("does thing number {i} with several words of description"),
            "parameters": {"type": "object", "properties": {
                "first_argument": {"type": "string", "description": "the first argument"}},
              "required": ["first_argument"]}}));
    }
    let tools = Tool::parse_many(&serde_json::Value::Array(many), ToolFormat::Auto).expect("tools");
    let opts = CallOptions::default();
    // Word pieces only: no embeddings are computed.
    m.predict("do thing number 7", &tools, &opts)
        .expect("predict");
    assert_eq!(m.embed_cache.stats().entries, 0);
    m.update_config(|c| {
        c.rank_layers = 1;
        c.rank_weight = 8.0;
    })
    .expect("config");
    let d = m
        .predict("do thing number 7", &tools, &opts)
        .expect("predict");
    retort_core::validate_all(&d.calls, &tools).expect("valid");
    let s = m.embed_cache.stats();
    assert_eq!((s.entries, s.misses), (81, 81), "80 tools and the query");
    m.predict("do thing number 9", &tools, &opts)
        .expect("predict");
    let s = m.embed_cache.stats();
    assert_eq!(
        (s.entries, s.hits),
        (82, 80),
        "only the new query is embedded"
    );
}

/// Quantizing a matrix that was stored as int8 gives its stored integers
/// and scales back (training re-packs frozen layers read from a compact
/// file this way), and rows of zeros get scale 1.
#[test]
fn quantize_is_idempotent_on_stored_int8() {
    use crate::net::QuantRows;
    let (rows, cols) = (5, 7);
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013)
        .collect();
    let q = QuantRows::quantize(rows, cols, &v);
    assert!(q.q.iter().any(|&b| b == 127 || b == -127));
    let again = QuantRows::quantize(rows, cols, &q.dequantize());
    assert_eq!(again.q, q.q);
    for (a, b) in again.scale.iter().zip(&q.scale) {
        assert!((a - b).abs() <= 1e-7 * b.abs(), "{a} vs {b}");
    }
    let zeros = QuantRows::quantize(2, 3, &[0.0; 6]);
    assert_eq!(zeros.scale, vec![1.0, 1.0]);
    assert!(zeros.q.iter().all(|&b| b == 0));
}

/// Training's frozen lower layers on the host (int8 matrices, integer
/// products, unpadded rows) followed by [`Net::encode_from`] give the
/// states of [`Net::encode`] over the same int8-valued weights, for a
/// padded batch of two rows of different lengths.
#[test]
fn host_lower_layers_then_encode_from_match_encode() {
    use crate::net::QuantRows;
    let device = Device::flex();
    let mut cfg = ModelConfig::tiny(vec![1012, 1015]);
    cfg.enc_layers = 3;
    cfg.hidden = 64;
    cfg.heads = 4;
    cfg.enc_ffn = 128;
    let net = Net::new(cfg.clone(), &device).expect("net");
    let layout = net.layout.clone();
    let mut host = HostParams::init(&layout, 9);
    // Int8-valued weights (as in a shipped model), so the only difference
    // left is the rounding of activations.
    for layer in &layout.enc {
        let a = layer.attn;
        for lin in [a.q, a.k, a.v, a.o, layer.ff1, layer.ff2] {
            let [r, c] = layout.specs[lin.w].shape;
            host.values[lin.w] = QuantRows::quantize(r, c, &host.values[lin.w]).dequantize();
        }
    }
    let p = host.to_device(&layout, &device, None);
    let rows: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (
            vec![101, 2054, 2003, 1996, 4633, 102, 2131, 102],
            vec![0, 0, 0, 0, 0, 0, 1, 1],
        ),
        (vec![101, 7592, 102, 2131, 102], vec![0, 0, 0, 1, 1]),
    ];
    let refs: Vec<(&[u32], &[u32])> = rows.iter().map(|(a, b)| (&a[..], &b[..])).collect();
    let batch = EncBatch::new(&refs, 0, &device);
    let want = net
        .encode(&p, &batch)
        .into_data()
        .try_into_vec::<f32>()
        .expect("vec");
    for n in [1, 2, 3] {
        let lp = p.with_int8_layers(&layout, n).expect("int8");
        assert_eq!(lp.int8.len(), 6 * n);
        let (s, d) = (8, cfg.hidden);
        let mut h = vec![0f32; 2 * s * d];
        for ((ids, segs), out) in rows.iter().zip(h.chunks_exact_mut(s * d)) {
            let row =
                crate::fastenc::lower_layers(&net, &lp, ids, segs, 102, n, &device).expect("host");
            assert_eq!(row.len(), ids.len() * d);
            out[..row.len()].copy_from_slice(&row);
        }
        let h =
            burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(h, [2, s, d]), &device);
        let got = net
            .encode_from(&p, h, &batch, n)
            .into_data()
            .try_into_vec::<f32>()
            .expect("vec");
        // Compare the real (unpadded) positions only.
        let mut worst = 0f32;
        for (bi, (ids, _)) in rows.iter().enumerate() {
            for j in 0..ids.len() * d {
                let k = bi * s * d + j;
                worst = worst.max((want[k] - got[k]).abs());
            }
        }
        assert!(worst > 0.0, "the integer path was not taken ({n} layers)");
        assert!(worst < 1e-4, "{n} layers: worst difference {worst}");
    }
}

/// The log-probabilities at every calibration temperature are summed only
/// when asked for; the answer and its confidence are the same either way,
/// and the sum at the model's own temperature is the confidence.
#[test]
fn all_temperatures_only_when_asked() {
    let Some(m) = tiny_model() else { return };
    let tools = weather_tools();
    let opts = CallOptions::default();
    let q = "weather forecast for Oslo";
    let served = m.predict(q, &tools, &opts).expect("predict");
    assert!(served.logp.is_empty());
    let aids = crate::model::Aids {
        host_dec: Some(&m.host_dec),
        all_temperatures: true,
        ..Default::default()
    };
    let full = crate::model::greedy(&m.net, &m.params, &m.tok, q, &tools, &opts, &m.device, aids)
        .expect("greedy");
    assert_eq!(full.calls, served.calls);
    assert!((full.confidence - served.confidence).abs() < 1e-9);
    assert_eq!(full.logp.len(), crate::model::TEMPERATURES.len());
    let own = crate::model::TEMPERATURES
        .iter()
        .position(|&t| t == m.net.cfg.confidence_temperature)
        .expect("the tiny model's temperature is a calibration one");
    assert!((full.logp[own].exp() - full.confidence).abs() < 1e-9);
}
