//! Greedy decoding steps on the host.
//!
//! A decoder step works on one row: every weight product is a
//! vector-matrix product of a few hundred thousand multiply-adds, which
//! burn ran as one of ~60 small operations per step, each with its own
//! fixed cost (about 0.9 ms a step in all). Here the decoder's weights are
//! copied to plain vectors once per model ([`HostDecoder`]), the
//! per-request encoder products once per request ([`HostPrepared`]), and a
//! step is plain loops that the compiler vectorises. Tests hold it to
//! [`Net::decode_step`].

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::ModelError;
use crate::fastenc::{dot, fast_exp, gelu_in_place};
use crate::net::{Lin, Ln, Net, Params, Prepared};

fn host(t: Tensor<2>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Weights(format!("{e:?}")))
}

/// A matrix on the host, `[rows, cols]` row-major: plain f32, or int8 with
/// one scale per row when every element is exactly `q · scale` (as in a
/// model loaded from its compact file), which streams a quarter of the
/// bytes. A decoder step reads every weight once, so its time is set by
/// memory traffic, not arithmetic.
#[derive(Debug, Clone)]
pub(crate) enum HMat {
    F32 {
        w: Vec<f32>,
        cols: usize,
    },
    I8 {
        q: Vec<i8>,
        scale: Vec<f32>,
        cols: usize,
    },
}

impl HMat {
    /// Int8 when lossless, else f32.
    pub(crate) fn new(w: Vec<f32>, rows: usize, cols: usize) -> Self {
        match exact_int8(&w, rows, cols) {
            Some((q, scale)) => HMat::I8 { q, scale, cols },
            None => HMat::F32 { w, cols },
        }
    }

    fn from_tensor(t: Tensor<2>) -> Result<Self, ModelError> {
        let [rows, cols] = t.dims();
        Ok(Self::new(host(t)?, rows, cols))
    }

    /// `y += x · M` (`x` has `rows` entries, `y` has `cols`).
    fn vecmat_add(&self, x: &[f32], y: &mut [f32]) {
        // Compiled for the widest vector instructions this CPU has, chosen
        // at run time (pulp; a plain loop on baseline x86-64 gets SSE2).
        pulp::Arch::new().dispatch(|| match self {
            HMat::F32 { w, cols } => {
                for (xi, row) in x.iter().zip(w.chunks_exact(*cols)) {
                    for (yj, wj) in y.iter_mut().zip(row) {
                        *yj += xi * wj;
                    }
                }
            }
            HMat::I8 { q, scale, cols } => {
                for ((xi, s), row) in x.iter().zip(scale).zip(q.chunks_exact(*cols)) {
                    let xs = xi * s;
                    for (yj, &qj) in y.iter_mut().zip(row) {
                        *yj += xs * qj as f32;
                    }
                }
            }
        })
    }

    /// `M · x` (`x` has `cols` entries; one output per row).
    fn matvec(&self, x: &[f32]) -> Vec<f32> {
        pulp::Arch::new().dispatch(|| match self {
            HMat::F32 { w, cols } => w.chunks_exact(*cols).map(|row| dot(row, x)).collect(),
            HMat::I8 { q, scale, cols } => q
                .chunks_exact(*cols)
                .zip(scale)
                .map(|(row, s)| {
                    let mut acc = [0f32; 16];
                    let rows = row.chunks_exact(16);
                    let xs = x.chunks_exact(16);
                    let tail: f32 = rows
                        .remainder()
                        .iter()
                        .zip(xs.remainder())
                        .map(|(&a, b)| a as f32 * b)
                        .sum();
                    for (r, xx) in rows.zip(xs) {
                        for k in 0..16 {
                            acc[k] += r[k] as f32 * xx[k];
                        }
                    }
                    (acc.iter().sum::<f32>() + tail) * s
                })
                .collect(),
        })
    }
}

/// `(q, scale)` with `w[r][c] == q[r][c] as f32 * scale[r]` exactly for
/// every element (scale = the row's largest magnitude / 127), or `None`.
pub(crate) fn exact_int8(w: &[f32], rows: usize, cols: usize) -> Option<(Vec<i8>, Vec<f32>)> {
    if rows == 0 || cols == 0 || w.len() != rows * cols {
        return None;
    }
    let mut q = Vec::with_capacity(w.len());
    let mut scale = Vec::with_capacity(rows);
    for row in w.chunks_exact(cols) {
        let m = row.iter().fold(0f32, |a, x| a.max(x.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        for &x in row {
            let k = (x / s).round();
            if !(-127.0..=127.0).contains(&k) || k * s != x {
                return None;
            }
            q.push(k as i8);
        }
        scale.push(s);
    }
    Some((q, scale))
}

/// A linear layer on the host: weight `[in, out]` and bias.
#[derive(Debug, Clone)]
struct HLin {
    w: HMat,
    b: Vec<f32>,
}

impl HLin {
    fn new(p: &Params, l: Lin) -> Result<Self, ModelError> {
        Ok(HLin {
            w: HMat::from_tensor(p.get(l.w))?,
            b: host(p.get(l.b))?,
        })
    }

    /// `x · W + b` for one row `x`.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut y = self.b.clone();
        self.w.vecmat_add(x, &mut y);
        y
    }
}

/// A layer norm on the host (population variance).
#[derive(Debug, Clone)]
struct HLn {
    g: Vec<f32>,
    b: Vec<f32>,
}

impl HLn {
    fn new(p: &Params, l: Ln) -> Result<Self, ModelError> {
        Ok(HLn {
            g: host(p.get(l.g))?,
            b: host(p.get(l.b))?,
        })
    }

    fn apply(&self, x: &[f32], eps: f32) -> Vec<f32> {
        let n = x.len().max(1) as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        x.iter()
            .zip(&self.g)
            .zip(&self.b)
            .map(|((v, g), b)| (v - mean) * inv * g + b)
            .collect()
    }
}

#[derive(Debug, Clone)]
struct HLayer {
    ln_self: HLn,
    sq: HLin,
    sk: HLin,
    sv: HLin,
    so: HLin,
    ln_cross: HLn,
    cq: HLin,
    co: HLin,
    ln_ff: HLn,
    ff1: HLin,
    ff2: HLin,
}

/// The decoder's weights as host vectors (about 15 MB for the shipped
/// model), for [`HostPrepared::step`].
#[derive(Debug, Clone)]
pub struct HostDecoder {
    layers: Vec<HLayer>,
    dec_ln: HLn,
    act: HLin,
    gen_q: HLin,
    ptr_q: HLin,
    gen_bias: Vec<f32>,
    /// The generation vocabulary's word embeddings, `[G, D]`.
    gen_table: HMat,
    dec_kind: Vec<f32>,
    dec_pos: Vec<f32>,
    d: usize,
    heads: usize,
    max_steps: usize,
}

const DEC_EPS: f32 = 1e-5;

impl HostDecoder {
    /// Copy the decoder's parameters out of `p`.
    pub fn new(net: &Net, p: &Params) -> Result<Self, ModelError> {
        let l = &net.layout;
        let layers = l
            .dec
            .iter()
            .map(|x| {
                Ok(HLayer {
                    ln_self: HLn::new(p, x.ln_self)?,
                    sq: HLin::new(p, x.self_attn.q)?,
                    sk: HLin::new(p, x.self_attn.k)?,
                    sv: HLin::new(p, x.self_attn.v)?,
                    so: HLin::new(p, x.self_attn.o)?,
                    ln_cross: HLn::new(p, x.ln_cross)?,
                    cq: HLin::new(p, x.cross.q)?,
                    co: HLin::new(p, x.cross.o)?,
                    ln_ff: HLn::new(p, x.ln_ff)?,
                    ff1: HLin::new(p, x.ff1)?,
                    ff2: HLin::new(p, x.ff2)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let gen_table = match &p.words {
            Some(w) => w.gen_table.clone(),
            None => p.get(l.word).select(0, net.gen_ids.clone()),
        };
        Ok(HostDecoder {
            layers,
            dec_ln: HLn::new(p, l.dec_ln)?,
            act: HLin::new(p, l.act)?,
            gen_q: HLin::new(p, l.gen_q)?,
            ptr_q: HLin::new(p, l.ptr_q)?,
            gen_bias: host(p.get(l.gen_bias))?,
            gen_table: HMat::from_tensor(gen_table)?,
            dec_kind: host(p.get(l.dec_kind))?,
            dec_pos: host(p.get(l.dec_pos))?,
            d: net.cfg.hidden,
            heads: net.cfg.heads,
            max_steps: net.cfg.max_steps,
        })
    }

    /// The per-request state of host decoding, from burn's prepared
    /// encoder products.
    pub fn prepare<'a>(
        &'a self,
        net: &'a Net,
        p: &'a Params,
        prep: &Prepared,
    ) -> Result<HostPrepared<'a>, ModelError> {
        let [_, s, d] = prep.enc.dims();
        let rows = |t: Tensor<4>| -> Result<Vec<f32>, ModelError> {
            host(t.swap_dims(1, 2).reshape([s, d]))
        };
        let cross = prep
            .cross_kv
            .iter()
            .map(|(k, v)| Ok((rows(k.clone())?, rows(v.clone())?)))
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(HostPrepared {
            dec: self,
            net,
            p,
            enc: host(prep.enc.clone().reshape([s, d]))?,
            ptr_k: host(prep.ptr_k.clone().reshape([s, d]))?,
            pad_bias: host(prep.pad_bias.clone().reshape([1, s]))?,
            cross,
            self_kv: vec![(Vec::new(), Vec::new()); self.layers.len()],
            s,
            t: 0,
            device: prep.enc.device(),
        })
    }
}

/// One request's decoding state on the host: the encoder states, the
/// cross-attention keys and values, the pointer keys, and the
/// self-attention keys and values of the steps so far.
#[derive(Debug)]
pub struct HostPrepared<'a> {
    dec: &'a HostDecoder,
    net: &'a Net,
    p: &'a Params,
    enc: Vec<f32>,
    ptr_k: Vec<f32>,
    pad_bias: Vec<f32>,
    cross: Vec<(Vec<f32>, Vec<f32>)>,
    self_kv: Vec<(Vec<f32>, Vec<f32>)>,
    s: usize,
    t: usize,
    device: Device,
}

/// Multi-head attention of one query row over `n` key/value rows (heads
/// side by side), with an optional additive bias per key.
fn attend_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    heads: usize,
) -> Vec<f32> {
    let d = q.len();
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let mut ctx = vec![0f32; d];
    let mut scores = vec![0f32; n];
    pulp::Arch::new().dispatch(|| {
        for h in 0..heads {
            let hs = h * dh..(h + 1) * dh;
            let qh = &q[hs.clone()];
            for (j, sc) in scores.iter_mut().enumerate() {
                *sc = dot(qh, &k[j * d..][hs.clone()]) * scale
                    + bias.and_then(|b| b.get(j)).copied().unwrap_or(0.0);
            }
            let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for sc in scores.iter_mut() {
                *sc = fast_exp(*sc - m);
                sum += *sc;
            }
            let inv = 1.0 / sum;
            let out = &mut ctx[hs.clone()];
            for (j, sc) in scores.iter().enumerate() {
                let w = sc * inv;
                for (o, vj) in out.iter_mut().zip(&v[j * d..][hs.clone()]) {
                    *o += w * vj;
                }
            }
        }
    });
    ctx
}

impl HostPrepared<'_> {
    /// One decoder step: feed `(token, kind, pointer position)` and get the
    /// logits of the next output (the layout of [`Net::decode_step`]'s).
    pub fn step(&mut self, input: (u32, u32, Option<usize>)) -> Result<Vec<f32>, ModelError> {
        let hd = self.dec;
        let d = hd.d;
        let (tok, knd, ptr) = input;
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(vec![tok as i64], [1, 1]), &self.device);
        let word = self.net.embed_words(self.p, ids).reshape([1, d]);
        let mut x = host(word)?;
        let pos = self.t.min(hd.max_steps.saturating_sub(1));
        let add = |x: &mut [f32], row: Option<&[f32]>| {
            if let Some(row) = row {
                for (a, b) in x.iter_mut().zip(row) {
                    *a += b;
                }
            }
        };
        add(
            &mut x,
            hd.dec_kind.get(knd as usize * d..(knd as usize + 1) * d),
        );
        add(&mut x, hd.dec_pos.get(pos * d..(pos + 1) * d));
        if let Some(q) = ptr.filter(|&q| q < self.s) {
            add(&mut x, self.enc.get(q * d..(q + 1) * d));
        }
        for ((layer, (ck, cv)), (sk, sv)) in hd
            .layers
            .iter()
            .zip(&self.cross)
            .zip(self.self_kv.iter_mut())
        {
            let hn = layer.ln_self.apply(&x, DEC_EPS);
            let q = layer.sq.apply(&hn);
            sk.extend(layer.sk.apply(&hn));
            sv.extend(layer.sv.apply(&hn));
            let ctx = attend_row(&q, sk, sv, sk.len() / d, None, hd.heads);
            add(&mut x, Some(&layer.so.apply(&ctx)));
            let hn = layer.ln_cross.apply(&x, DEC_EPS);
            let q = layer.cq.apply(&hn);
            let ctx = attend_row(&q, ck, cv, self.s, Some(&self.pad_bias), hd.heads);
            add(&mut x, Some(&layer.co.apply(&ctx)));
            let hn = layer.ln_ff.apply(&x, DEC_EPS);
            let mut f = layer.ff1.apply(&hn);
            gelu_in_place(&mut f);
            add(&mut x, Some(&layer.ff2.apply(&f)));
        }
        self.t += 1;
        let h = hd.dec_ln.apply(&x, DEC_EPS);
        let mut z = hd.act.apply(&h);
        let gq = hd.gen_q.apply(&h);
        let pq = hd.ptr_q.apply(&h);
        let scale = 1.0 / (d as f32).sqrt();
        z.extend(
            hd.gen_table
                .matvec(&gq)
                .into_iter()
                .zip(&hd.gen_bias)
                .map(|(v, b)| v + b),
        );
        pulp::Arch::new().dispatch(|| {
            z.extend(self.ptr_k.chunks_exact(d).map(|row| dot(row, &pq) * scale));
        });
        Ok(z)
    }
}
