//! The query pass of a block-masked encoder, written for a few rows.
//!
//! With the tools' keys and values cached ([`ToolBlock`]), a request only
//! encodes its ~20 query tokens. Done with burn operations, that pass was
//! dominated by the fixed cost of its ~60 small operations per layer (layer
//! norms, head splits, softmax, concatenations), not by arithmetic. Here the
//! six weight products of a layer stay burn matmuls (the `gemm` kernels),
//! and everything else runs as plain loops over host vectors. Tests hold it
//! to [`Net::encode_with_blocks_reference`].

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

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

/// `x · W + b` for `rows` rows; with `integer`, a matrix held as int8 is
/// multiplied in integers ([`crate::qgemm`]).
fn linear(
    p: &Params,
    l: Lin,
    x: &[f32],
    rows: usize,
    integer: bool,
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    let (mut y, d_out) = match p.int8.get(&l.w) {
        Some(q) if integer => (q.matmul(x, rows), q.n),
        _ => {
            let w = p.get(l.w);
            let [d_in, d_out] = w.dims();
            (host2(upload(x, rows, d_in, device).matmul(w))?, d_out)
        }
    };
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
    pulp::Arch::new().dispatch(LayerNorm {
        x,
        g: &g,
        b: &b,
        d,
        eps,
    });
    Ok(())
}

/// `Σ f(v)` over `row` in f64 with eight partial sums, so the loop
/// vectorises.
#[inline(always)]
fn sum8_f64(row: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = row.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Layer norm rows, compiled for the CPU's widest vector instructions:
/// mean and variance are summed in f64 with eight partial sums (a plain
/// `sum()` keeps its sequential order and stays scalar).
struct LayerNorm<'a> {
    x: &'a mut [f32],
    g: &'a [f32],
    b: &'a [f32],
    d: usize,
    eps: f64,
}

impl pulp::WithSimd for LayerNorm<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let LayerNorm { x, g, b, d, eps } = self;
        for row in x.chunks_mut(d.max(1)) {
            let mean = sum8_f64(row, |v| v as f64) / d as f64;
            let var = sum8_f64(row, |v| {
                let c = v as f64 - mean;
                c * c
            }) / d as f64;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, gj), bj) in row.iter_mut().zip(g).zip(b) {
                *v = ((*v as f64 - mean) * inv) as f32 * gj + bj;
            }
        }
    }
}

/// Dot product with eight partial sums, so the compiler vectorises it (a
/// plain `sum()` must keep the sequential order and stays scalar).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// The sum of `xs` in eight partial sums (vectorisable, unlike `sum()`).
#[inline(always)]
pub(crate) fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = xs.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for k in 0..8 {
            acc[k] += x[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The largest of `xs` (`-inf` when empty) in sixteen partial maxima, so
/// that it vectorises. NaNs are skipped, as by `f32::max`.
#[inline(always)]
pub(crate) fn max8(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let c = xs.chunks_exact(16);
    let tail = c
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for x in c {
        for k in 0..16 {
            acc[k] = acc[k].max(x[k]);
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// `e^x` in f32 arithmetic that the compiler can vectorise (no library
/// call): `2^k · e^r` with `|r| <= ln2/2` and a degree-6 Taylor polynomial
/// (relative error below 2e-7 over the clamped range [-87, 88]).
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and removing 1.5·2^23 (`round()` is a
    // library call on baseline x86-64, which would stop vectorisation).
    const MAGIC: f32 = 12_582_912.0;
    let shifted = x * LOG2E + MAGIC;
    let k = shifted - MAGIC;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `shifted` is 1.5·2^23 + k, so its low mantissa bits hold the integer
    // k (two's complement around 0x4B40_0000): integer operations only,
    // where `k as i32` (a saturating conversion) kept the loop from
    // vectorising well. k is in [-126, 127], so the biased exponent is a
    // normal number's.
    let ki = shifted.to_bits().wrapping_sub(0x4B40_0000);
    p * f32::from_bits(ki.wrapping_add(127) << 23)
}

/// The error function, Abramowitz and Stegun 7.1.26 (absolute error below
/// 1.5e-7), branch-free so that it vectorises.
#[inline(always)]
pub(crate) fn fast_erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - poly * fast_exp(-a * a)).copysign(x)
}

/// Exact (erf) GELU in place, `0.5·x·(1 + erf(x/√2))` as burn's `gelu`,
/// split over the thread pool for long inputs.
pub(crate) fn gelu_in_place(xs: &mut [f32]) {
    let f = |c: &mut [f32]| pulp::Arch::new().dispatch(Gelu(c));
    if xs.len() >= 32_768 {
        xs.par_chunks_mut(8_192).for_each(f);
    } else {
        f(xs);
    }
}

/// GELU over a slice, compiled for the CPU's widest vector instructions
/// (see the kernels of [`crate::fastdec`]).
struct Gelu<'a>(&'a mut [f32]);

impl pulp::WithSimd for Gelu<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        for v in self.0.iter_mut() {
            *v = 0.5 * *v * (1.0 + fast_erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// Multi-head attention of the `q` query rows over their own keys and
/// values plus every block's (all `[n, D]`, heads side by side).
/// With `groups`, own row `i` sees own row `j` only when `groups[i]` is 0
/// (the query) or equals `groups[j]` (the same tool): the block mask.
#[allow(clippy::too_many_arguments)]
fn attention(
    qm: &[f32],
    own: (&[f32], &[f32]),
    blocks: &[&ToolBlock],
    layer: usize,
    q: usize,
    d: usize,
    heads: usize,
    groups: Option<&[usize]>,
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
    // One head per task: its context columns for every query row.
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            pulp::Arch::new().dispatch(HeadAttention {
                qm,
                sources: &sources,
                h,
                q,
                d,
                dh,
                total,
                scale,
                groups,
            })
        })
        .collect();
    let mut ctx = vec![0f32; q * d];
    for (h, out) in per_head.iter().enumerate() {
        for i in 0..q {
            ctx[i * d + h * dh..i * d + (h + 1) * dh].copy_from_slice(&out[i * dh..(i + 1) * dh]);
        }
    }
    ctx
}

/// One head's attention for every query row: its `[q, dh]` context.
struct HeadAttention<'a> {
    qm: &'a [f32],
    sources: &'a [(&'a [f32], &'a [f32], usize)],
    h: usize,
    q: usize,
    d: usize,
    dh: usize,
    total: usize,
    scale: f32,
    groups: Option<&'a [usize]>,
}

impl pulp::WithSimd for HeadAttention<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        let HeadAttention {
            qm,
            sources,
            h,
            q,
            d,
            dh,
            total,
            scale,
            groups,
        } = self;
        // This head's keys transposed (`[dh, tp]`, zero beyond `total`)
        // and values (`[total, dh]`), contiguous. Scores and context are
        // then summed in register tiles (fixed-size `[f32; N]`
        // accumulators, which the compiler keeps in vector registers)
        // instead of being read and written back once per term.
        const T: usize = 64;
        let tp = total.div_ceil(T) * T;
        let mut kt = vec![0f32; dh * tp];
        let mut vh = vec![0f32; total * dh];
        let mut at = 0;
        for (k, v, n) in sources {
            for j in 0..*n {
                let base = j * d + h * dh;
                for (t, &x) in k[base..base + dh].iter().enumerate() {
                    kt[t * tp + at] = x;
                }
                vh[at * dh..(at + 1) * dh].copy_from_slice(&v[base..base + dh]);
                at += 1;
            }
        }
        let mut out = vec![0f32; q * dh];
        let mut scores = vec![0f32; tp];
        for (i, o) in out.chunks_exact_mut(dh).enumerate().take(q) {
            let qi = &qm[i * d + h * dh..i * d + (h + 1) * dh];
            for (jc, s) in scores.chunks_exact_mut(T).enumerate() {
                let mut acc = [0f32; T];
                for (&qt, row) in qi.iter().zip(kt.chunks_exact(tp)) {
                    if let Ok(r) = <&[f32; T]>::try_from(&row[jc * T..jc * T + T]) {
                        for l in 0..T {
                            acc[l] += qt * r[l];
                        }
                    }
                }
                for l in 0..T {
                    s[l] = acc[l] * scale;
                }
            }
            let scores = &mut scores[..total];
            if let Some(g) = groups
                && let Some(&gi) = g.get(i)
                && gi != 0
            {
                // The own rows come first among the sources.
                for (s, &gj) in scores.iter_mut().zip(g.iter().take(q)) {
                    if gj != gi {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
            let m = max8(scores);
            for s in scores.iter_mut() {
                *s = fast_exp(*s - m);
            }
            let inv = 1.0 / sum8(scores);
            for s in scores.iter_mut() {
                *s *= inv;
            }
            match dh {
                16 => context::<16>(scores, &vh, o),
                32 => context::<32>(scores, &vh, o),
                64 => context::<64>(scores, &vh, o),
                _ => {
                    for (&w, vr) in scores.iter().zip(vh.chunks_exact(dh)) {
                        for (oj, &vj) in o.iter_mut().zip(vr) {
                            *oj += w * vj;
                        }
                    }
                }
            }
        }
        out
    }
}

/// `o = Σ_j w[j] · v[j]` over the rows `v[j]` (`D` wide) of `vh`, in a
/// register tile.
#[inline(always)]
fn context<const D: usize>(w: &[f32], vh: &[f32], o: &mut [f32]) {
    let mut acc = [0f32; D];
    for (&wj, vr) in w.iter().zip(vh.chunks_exact(D)) {
        if let Ok(r) = <&[f32; D]>::try_from(vr) {
            for l in 0..D {
                acc[l] += wj * r[l];
            }
        }
    }
    for (oj, a) in o.iter_mut().zip(acc) {
        *oj = a;
    }
}

/// The encoder states `[q, D]` (row-major) of the query block against
/// cached tools, after the network's block-masked layers (all of them with
/// `block_mask`, the lowest `block_layers` otherwise).
fn query_states(
    net: &Net,
    p: &Params,
    query_ids: &[u32],
    blocks: &[&ToolBlock],
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    let x = host3(net.embed_block(p, query_ids, 0, 0, device))?;
    let q = query_ids.len().max(1);
    let pass = Pass {
        blocks,
        ..Pass::first(net.cfg.masked_layers(), net.cfg.integer_products)
    };
    layers(net, p, x, q, pass, None, device)
}

/// One tool block (its tokens up to and including its `[SEP]`, segment 1,
/// positions from 1) through the network's block-masked layers, on the
/// host with the served arithmetic: what the joint encoding computes for
/// those rows in those layers, so it can be cached and reused with any
/// query.
pub fn tool_block(
    net: &Net,
    p: &Params,
    ids: &[u32],
    device: &Device,
) -> Result<ToolBlock, ModelError> {
    let n = ids.len().max(1);
    let x = host3(net.embed_block(p, ids, 1, 1, device))?;
    let mut kv = Vec::new();
    let pass = Pass::first(net.cfg.masked_layers(), net.cfg.integer_products);
    let h = layers(net, p, x, n, pass, Some(&mut kv), device)?;
    Ok(ToolBlock {
        kv,
        out: Tensor::from_data(TensorData::new(h, [1, n, net.cfg.hidden]), device),
        len: n,
    })
}

/// The whole encoder output `[1, S, D]` of a request whose tools are
/// cached blocks: the query runs through the block-masked layers against
/// the blocks, then every row (query, then the blocks in order) through
/// the fully attending layers above (none under a full block mask).
pub fn upper_pass(
    net: &Net,
    p: &Params,
    query_ids: &[u32],
    blocks: &[&ToolBlock],
    device: &Device,
) -> Result<Tensor<3>, ModelError> {
    let d = net.cfg.hidden;
    let mut x = query_states(net, p, query_ids, blocks, device)?;
    for b in blocks {
        x.extend(host3(b.out.clone())?);
    }
    let n = x.len() / d.max(1);
    let pass = Pass {
        from: net.cfg.masked_layers(),
        ..Pass::first(usize::MAX, net.cfg.integer_products)
    };
    let x = layers(net, p, x, n, pass, None, device)?;
    Ok(Tensor::from_data(TensorData::new(x, [1, n, d]), device))
}

/// The encoding of one unpadded row (`segs[j]` is token `j`'s segment):
/// the same states as [`Net::encode`], `[1, n, D]`, under the network's
/// block mask if it has one. This is the request path when no tool cache
/// applies; with full attention burn's per-operation cost was about half
/// of the encoder's time at BFCL-simple lengths.
pub fn full_pass(
    net: &Net,
    p: &Params,
    ids: &[u32],
    segs: &[u32],
    sep: u32,
    device: &Device,
) -> Result<Tensor<3>, ModelError> {
    let n = ids.len().max(1);
    let block = net.cfg.block(sep);
    let x = states(
        net,
        p,
        ids,
        segs,
        block,
        usize::MAX,
        net.cfg.integer_products,
        device,
    )?;
    Ok(Tensor::from_data(
        TensorData::new(x, [1, n, net.cfg.hidden]),
        device,
    ))
}

/// The states `[n, D]` of one unpadded row after its first `n_layers`
/// encoder layers. Positions run from 0; under `block` they restart at
/// every tool and the lowest `block.layers` layers use the block mask.
#[allow(clippy::too_many_arguments)]
fn states(
    net: &Net,
    p: &Params,
    ids: &[u32],
    segs: &[u32],
    block: Option<crate::net::BlockMask>,
    n_layers: usize,
    int: bool,
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    let n = ids.len().max(1);
    let Some(m) = block else {
        let x = host3(net.embed_tokens(p, ids, segs, device))?;
        return layers(net, p, x, n, Pass::first(n_layers, int), None, device);
    };
    let (groups, pos) = crate::net::block_groups(ids, m.sep);
    let x = host3(net.embed_positioned(p, ids, segs, &pos, device))?;
    let pass = Pass {
        groups: Some(&groups),
        masked: m.layers,
        ..Pass::first(n_layers, int)
    };
    layers(net, p, x, n, pass, None, device)
}

/// A sentence embedding of `ids` (one segment-0 row): the mean of the
/// token states after the first `n_layers` encoder layers, scaled to unit
/// length (the MiniLM sentence-embedding recipe: mean pooling, then L2
/// normalisation). An all-zero mean stays zero.
pub fn pooled(
    net: &Net,
    p: &Params,
    ids: &[u32],
    n_layers: usize,
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    let n = ids.len().max(1);
    let segs = vec![0u32; ids.len()];
    let x = host3(net.embed_tokens(p, ids, &segs, device))?;
    let pass = Pass::first(n_layers, net.cfg.integer_products);
    let x = layers(net, p, x, n, pass, None, device)?;
    let d = net.cfg.hidden;
    let mut mean = vec![0f32; d];
    for row in x.chunks_exact(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for m in &mut mean {
            *m /= norm;
        }
    }
    Ok(mean)
}

/// The states of one unpadded row after the embeddings and the first
/// `n_layers` encoder layers (`segs[j]` is token `j`'s segment), `[n, D]`
/// row-major. Matrices that `p`
/// holds as int8 are multiplied in integers ([`Params::with_int8_layers`]).
/// Training runs its frozen lower layers here, then [`Net::encode_from`]:
/// no autodiff, no padding, and the arithmetic of the served model.
/// Without a block mask positions run from 0; under the network's block
/// mask (`sep` splits the blocks) they restart at every tool and the
/// masked layers see only their block.
pub fn lower_layers(
    net: &Net,
    p: &Params,
    ids: &[u32],
    segs: &[u32],
    sep: u32,
    n_layers: usize,
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    states(
        net,
        p,
        ids,
        segs,
        net.cfg.block(sep),
        n_layers,
        true,
        device,
    )
}

/// Which encoder layers [`layers`] runs and what their rows see.
#[derive(Clone, Copy)]
struct Pass<'a> {
    /// Layers `from..to` (clamped to the encoder).
    from: usize,
    to: usize,
    /// Cached blocks every row also attends to.
    blocks: &'a [&'a ToolBlock],
    /// The rows' block groups: the block mask in layers below `masked`.
    groups: Option<&'a [usize]>,
    masked: usize,
    /// Multiply int8-held matrices in integers.
    int: bool,
}

impl<'a> Pass<'a> {
    fn first(n_layers: usize, int: bool) -> Self {
        Pass {
            from: 0,
            to: n_layers,
            blocks: &[],
            groups: None,
            masked: 0,
            int,
        }
    }
}

/// Encoder layers `pass.from..pass.to` over `q` embedded rows `x` (`[q,
/// D]`, row-major) that attend to themselves and to every cached block.
/// With `kv_out`, each layer's keys and values of the rows are kept.
fn layers(
    net: &Net,
    p: &Params,
    mut x: Vec<f32>,
    q: usize,
    pass: Pass<'_>,
    mut kv_out: Option<&mut Vec<(Vec<f32>, Vec<f32>)>>,
    device: &Device,
) -> Result<Vec<f32>, ModelError> {
    let c = &net.cfg;
    let d = c.hidden;
    let int = pass.int;
    let span = pass.to.saturating_sub(pass.from);
    for (li, layer) in net.layout.enc.iter().enumerate().skip(pass.from).take(span) {
        let qm = linear(p, layer.attn.q, &x, q, int, device)?;
        let km = linear(p, layer.attn.k, &x, q, int, device)?;
        let vm = linear(p, layer.attn.v, &x, q, int, device)?;
        let groups = pass.groups.filter(|_| li < pass.masked);
        let ctx = attention(&qm, (&km, &vm), pass.blocks, li, q, d, c.heads, groups);
        if let Some(out) = kv_out.as_deref_mut() {
            out.push((km, vm));
        }
        let a = linear(p, layer.attn.o, &ctx, q, int, device)?;
        for (xi, ai) in x.iter_mut().zip(&a) {
            *xi += ai;
        }
        layer_norm(p, layer.ln1, &mut x, d, c.layer_norm_eps)?;
        let mut hidden = linear(p, layer.ff1, &x, q, int, device)?;
        gelu_in_place(&mut hidden);
        let fo = linear(p, layer.ff2, &hidden, q, int, device)?;
        for (xi, fi) in x.iter_mut().zip(&fo) {
            *xi += fi;
        }
        layer_norm(p, layer.ln2, &mut x, d, c.layer_norm_eps)?;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std_exp() {
        let mut worst = 0f32;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (a, b) = (fast_exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        // Far outside the range: clamped, finite, and the right side of 1.
        assert!(fast_exp(-1.0e4) >= 0.0 && fast_exp(-1.0e4) < 1e-37);
        assert!(fast_exp(1.0e4).is_finite());
    }

    #[test]
    fn layer_norm_matches_the_sequential_formula() {
        let d = 387; // not a multiple of 8: the tail is summed too
        let rows = 5;
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.01 + (i / d) as f32)
            .collect();
        let g: Vec<f32> = (0..d).map(|j| 1.0 + (j % 5) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..d).map(|j| (j % 3) as f32 * 0.01).collect();
        let eps = 1e-12;
        let mut got = x.clone();
        pulp::Arch::new().dispatch(LayerNorm {
            x: &mut got,
            g: &g,
            b: &b,
            d,
            eps,
        });
        for (row, out) in x.chunks(d).zip(got.chunks(d)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row
                .iter()
                .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                .sum::<f64>()
                / d as f64;
            let inv = 1.0 / (var + eps).sqrt();
            for (j, (&v, &o)) in row.iter().zip(out).enumerate() {
                let want = ((v as f64 - mean) * inv) as f32 * g[j] + b[j];
                assert!((want - o).abs() <= 1e-6, "{j}: {want} vs {o}");
            }
        }
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 400.0).collect();
        let want: Vec<f32> = xs
            .iter()
            .map(|&x| 0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2)))
            .collect();
        // Long enough for the parallel path.
        xs.extend(std::iter::repeat_n(1.5f32, 40_000));
        gelu_in_place(&mut xs);
        for (i, (a, b)) in xs.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-6, "x #{i}: {a} vs {b}");
        }
        let g15 = 0.5 * 1.5 * (1.0 + libm::erff(1.5 / std::f32::consts::SQRT_2));
        assert!(xs[8001..].iter().all(|v| (v - g15).abs() < 1e-6));
        assert!(fast_erf(0.0).abs() < 1e-6);
        assert!((fast_erf(-30.0) + 1.0).abs() < 1e-6);
    }
}
