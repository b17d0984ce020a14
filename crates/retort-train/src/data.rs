//! Examples in, training items and batches out.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use retort_core::Example;
use retort_model::net::{BlockMask, DecBatch, EncBatch, OutSpace};
use retort_model::render::Tok;
use retort_model::targets::{Item, ItemLimits, Skip, build_item};

use crate::TrainError;

/// Read a canonical JSONL file. Lines that do not parse are reported and skipped.
pub fn load_jsonl(path: &Path) -> Result<(Vec<Example>, usize), TrainError> {
    let f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    let mut bad = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Example>(&line) {
            Ok(ex) => out.push(ex),
            Err(e) => {
                if bad < 3 {
                    tracing::warn!("{}:{}: skipped: {e}", path.display(), i + 1);
                }
                bad += 1;
            }
        }
    }
    Ok((out, bad))
}

/// Items built from examples, with the reasons of the skipped ones.
pub struct Built {
    pub items: Vec<Item>,
    /// Index of each item's example.
    pub source: Vec<usize>,
    pub skipped: HashMap<String, usize>,
}

pub fn build_items(tok: &Tok, examples: &[Example], gen_vocab: &[u32], lim: ItemLimits) -> Built {
    let gi = retort_model::targets::gen_index(gen_vocab);
    let mut items = Vec::new();
    let mut source = Vec::new();
    let mut skipped: HashMap<String, usize> = HashMap::new();
    for (i, ex) in examples.iter().enumerate() {
        match build_item(tok, ex, gen_vocab, &gi, lim) {
            Ok(it) => {
                items.push(it);
                source.push(i);
            }
            Err(e) => {
                let key = match e {
                    Skip::Render(m) => {
                        format!("render: {}", m.chars().take(60).collect::<String>())
                    }
                    other => other.to_string(),
                };
                *skipped.entry(key).or_default() += 1;
            }
        }
    }
    Built {
        items,
        source,
        skipped,
    }
}

/// The batches of one epoch: shuffled, then bucketed by length inside
/// windows of 32 batches, then the batch order shuffled. Deterministic in
/// `(seed, epoch)`.
pub fn epoch_plan(items: &[Item], batch: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.shuffle(&mut rng);
    let batch = batch.max(1);
    let window = batch * 32;
    let mut batches = Vec::new();
    for chunk in order.chunks(window) {
        let mut c = chunk.to_vec();
        c.sort_by_key(|&i| (items[i].ids.len(), items[i].steps.len()));
        for b in c.chunks(batch) {
            batches.push(b.to_vec());
        }
    }
    batches.shuffle(&mut rng);
    batches
}

/// Tensors of one batch.
pub struct Batch {
    pub enc: EncBatch,
    pub dec: DecBatch,
    /// 0 where allowed, -1e4 elsewhere, `[B, T, V]`.
    pub allowed_bias: Tensor<3>,
    /// 0 on gold outputs, -1e4 elsewhere.
    pub target_bias: Tensor<3>,
    /// 1 on real steps, `[B, T]`.
    pub weight: Tensor<2>,
    /// Teacher probabilities `[B, T, V]` and their step weights, when any step has them.
    pub soft: Option<(Tensor<3>, Tensor<2>)>,
    pub space: OutSpace,
    pub steps: usize,
    /// Lexical feature rows `[B, S, features::COUNT]` (zeros on padding).
    pub feats: Tensor<3>,
}

/// Tensors of a batch. `block`: the network's block attention mask, if
/// any (see `EncBatch::build`).
pub fn make_batch(
    items: &[&Item],
    n_gen: usize,
    pad: u32,
    block: Option<BlockMask>,
    device: &Device,
) -> Batch {
    let rows: Vec<(&[u32], &[u32])> = items.iter().map(|it| (&it.ids[..], &it.segs[..])).collect();
    let enc = EncBatch::build(&rows, pad, block, device);
    let s = items
        .iter()
        .map(|it| it.ids.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let t = items
        .iter()
        .map(|it| it.steps.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let b = items.len();
    let space = OutSpace { n_gen, src: s };
    let v = space.size();
    let dec_rows: Vec<Vec<(u32, u32, Option<usize>)>> = items
        .iter()
        .map(|it| it.steps.iter().map(|st| st.input).collect())
        .collect();
    let dec = DecBatch::new(&dec_rows, s, device);
    let k = retort_model::features::COUNT;
    let mut feats = vec![0f32; b * s * k];
    for (it, row) in items.iter().zip(feats.chunks_exact_mut(s * k)) {
        let dense = retort_model::features::dense(&it.feats);
        let n = dense.len().min(row.len());
        row[..n].copy_from_slice(&dense[..n]);
    }
    let feats = Tensor::from_data(TensorData::new(feats, [b, s, k]), device);
    let mut allowed = vec![-1.0e4f32; b * t * v];
    let mut target = vec![-1.0e4f32; b * t * v];
    let mut weight = vec![0f32; b * t];
    let any_soft = items
        .iter()
        .any(|it| it.steps.iter().any(|s| s.soft.is_some()));
    let mut soft = if any_soft {
        vec![0f32; b * t * v]
    } else {
        Vec::new()
    };
    let mut soft_w = if any_soft {
        vec![0f32; b * t]
    } else {
        Vec::new()
    };
    // Output indices do not depend on the source length (pointers come
    // last), so an item's indices are valid in the batch's wider space.
    let remap = |i: u32, _src: usize| -> usize { i as usize };
    for (bi, it) in items.iter().enumerate() {
        let src = it.ids.len();
        for ti in 0..t {
            let row = (bi * t + ti) * v;
            match it.steps.get(ti) {
                Some(st) => {
                    weight[bi * t + ti] = 1.0;
                    for a in retort_model::targets::bits(&st.allowed) {
                        allowed[row + remap(a as u32, src)] = 0.0;
                    }
                    for &g in &st.target {
                        target[row + remap(g, src)] = 0.0;
                    }
                    if let Some(sf) = &st.soft {
                        soft_w[bi * t + ti] = 1.0;
                        for &(i, p) in sf {
                            soft[row + remap(i, src)] = p;
                        }
                    }
                }
                None => {
                    allowed[row] = 0.0;
                    target[row] = 0.0;
                }
            }
        }
    }
    let soft = if any_soft {
        Some((
            Tensor::from_data(TensorData::new(soft, [b, t, v]), device),
            Tensor::from_data(TensorData::new(soft_w, [b, t]), device),
        ))
    } else {
        None
    };
    Batch {
        enc,
        dec,
        allowed_bias: Tensor::from_data(TensorData::new(allowed, [b, t, v]), device),
        target_bias: Tensor::from_data(TensorData::new(target, [b, t, v]), device),
        weight: Tensor::from_data(TensorData::new(weight, [b, t]), device),
        soft,
        space,
        steps: t,
        feats,
    }
}
