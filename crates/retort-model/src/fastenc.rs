//! The query pass of a block-masked encoder, written for a few rows.
//!
//! With the tools' keys and values cached ([`ToolBlock`]), a request only
//! encodes its ~20 query tokens. Done with burn operations, that pass was
//! dominated by the fixed cost of its ~60 small operations per layer (layer
//! norms, head splits, softmax, concatenations), not by arithmetic. Here the
//! six weight products of a layer stay burn matmuls (the `gemm` kernels),
//! and everything else runs as plain loops over host vectors. Tests hold it
//! to [`Net::encode_with_blocks_reference`].

use burn::tensor::{Device, Tensor, TensorData, activation};

use crate::error::ModelError;
use crate::net::{Lin, Ln, Net, Params, ToolBlock};

fn host2(t: Tensor<2>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Weights(format!("{e:?}")))
}

fn host3(t: Tensor<3>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Weights(format!("{e:?}")))
}

fn upload(x: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(x.to_vec(), [rows, cols]), device)
}

/// `x · W + b` for `rows` rows.
fn linear(
    p: &Params,
    l: Lin,
    x: &[f32],
    rows: usize,
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    let w = p.get(l.w);
    let [d_in, d_out] = w.dims();
    let mut y = host2(upload(x, rows, d_in, device).matmul(w))?;
    let b = host2(p.get(l.b))?;
    for row in y.chunks_mut(d_out) {
        for (v, bj) in row.iter_mut().zip(&b) {
            *v += bj;
        }
    }
    Ok(y)
}

/// Layer norm of each row of `x` (population variance, as the encoder).
fn layer_norm(p: &Params, l: Ln, x: &mut [f32], d: usize, eps: f64) -> Result<(), ModelError> {
    let g = host2(p.get(l.g))?;
    let b = host2(p.get(l.b))?;
    for row in x.chunks_mut(d) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| {
                let c = v as f64 - mean;
                c * c
            })
            .sum::<f64>()
            / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, gj), bj) in row.iter_mut().zip(&g).zip(&b) {
            *v = ((*v as f64 - mean) * inv) as f32 * gj + bj;
        }
    }
    Ok(())
}

/// Dot product with eight partial sums, so the compiler vectorises it (a
/// plain `sum()` must keep the sequential order and stays scalar).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Multi-head attention of the `q` query rows over their own keys and
/// values plus every block's (all `[n, D]`, heads side by side).
fn attention(
    qm: &[f32],
    own: (&[f32], &[f32]),
    blocks: &[&ToolBlock],
    layer: usize,
    q: usize,
    d: usize,
    heads: usize,
) -> Vec<f32> {
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let mut sources: Vec<(&[f32], &[f32], usize)> = vec![(own.0, own.1, q)];
    for b in blocks {
        if let Some((k, v)) = b.kv.get(layer) {
            sources.push((k, v, b.len));
        }
    }
    let total: usize = sources.iter().map(|s| s.2).sum();
    let mut ctx = vec![0f32; q * d];
    let mut scores = vec![0f32; total];
    for h in 0..heads {
        let hs = h * dh..(h + 1) * dh;
        for i in 0..q {
            let qi = &qm[i * d..][hs.clone()];
            let mut at = 0;
            for (k, _, n) in &sources {
                for j in 0..*n {
                    scores[at] = dot(qi, &k[j * d..][hs.clone()]) * scale;
                    at += 1;
                }
            }
            let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - m).exp();
                sum += *s;
            }
            let out = &mut ctx[i * d..][hs.clone()];
            let mut at = 0;
            for (_, v, n) in &sources {
                for j in 0..*n {
                    let w = scores[at] / sum;
                    at += 1;
                    for (o, vj) in out.iter_mut().zip(&v[j * d..][hs.clone()]) {
                        *o += w * vj;
                    }
                }
            }
        }
    }
    ctx
}

/// The encoder states `[1, q, D]` of the query block against cached tools.
pub fn query_pass(
    net: &Net,
    p: &Params,
    query_ids: &[u32],
    blocks: &[&ToolBlock],
    device: &Device,
) -> Result<Tensor<3>, ModelError> {
    let c = &net.cfg;
    let d = c.hidden;
    let q = query_ids.len().max(1);
    let mut x = host3(net.embed_block(p, query_ids, 0, 0, device))?;
    for (li, layer) in net.layout.enc.iter().enumerate() {
        let qm = linear(p, layer.attn.q, &x, q, device)?;
        let km = linear(p, layer.attn.k, &x, q, device)?;
        let vm = linear(p, layer.attn.v, &x, q, device)?;
        let ctx = attention(&qm, (&km, &vm), blocks, li, q, d, c.heads);
        let a = linear(p, layer.attn.o, &ctx, q, device)?;
        for (xi, ai) in x.iter_mut().zip(&a) {
            *xi += ai;
        }
        layer_norm(p, layer.ln1, &mut x, d, c.layer_norm_eps)?;
        let hidden = activation::gelu(
            upload(&x, q, d, device).matmul(p.get(layer.ff1.w)) + p.get(layer.ff1.b),
        );
        let f = p.get(layer.ff2.w);
        let mut fo = host2(hidden.matmul(f))?;
        let b2 = host2(p.get(layer.ff2.b))?;
        for row in fo.chunks_mut(d) {
            for (v, bj) in row.iter_mut().zip(&b2) {
                *v += bj;
            }
        }
        for (xi, fi) in x.iter_mut().zip(&fo) {
            *xi += fi;
        }
        layer_norm(p, layer.ln2, &mut x, d, c.layer_norm_eps)?;
    }
    Ok(Tensor::from_data(TensorData::new(x, [1, q, d]), device))
}
