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
use crate::fastenc::{dot, fast_exp, gelu_in_place, sum8};
use crate::net::{Lin, Ln, Net, Params, Prepared, QuantRows};
use crate::qgemm::PackedI8;

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
    /// Integer products (the config's `integer_products`): the int8
    /// matrix packed for [`PackedI8::matmul`], in the orientation of the
    /// one product it serves ([`HMat::integer`]).
    Int(PackedI8),
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

    /// The same matrix for integer products: an int8 matrix is packed for
    /// `x · M` ([`HMat::vecmat_add`]) or, with `for_matvec`, for `M · x`
    /// ([`HMat::matvec`]) and then serves only that product; an f32
    /// matrix stays as it is.
    fn integer(self, for_matvec: bool) -> Self {
        match self {
            HMat::I8 { q, scale, cols } => {
                let w = QuantRows {
                    rows: scale.len(),
                    cols,
                    q,
                    scale,
                };
                HMat::Int(if for_matvec {
                    PackedI8::transposed(&w)
                } else {
                    PackedI8::new(&w)
                })
            }
            other => other,
        }
    }

    /// `y += x · M` (`x` has `rows` entries, `y` has `cols`).
    fn vecmat_add(&self, x: &[f32], y: &mut [f32]) {
        pulp::Arch::new().dispatch(VecMatAdd { m: self, x, y })
    }

    /// `M · x` (`x` has `cols` entries; one output per row).
    fn matvec(&self, x: &[f32]) -> Vec<f32> {
        pulp::Arch::new().dispatch(MatVec { m: self, x })
    }

    fn is_integer(&self) -> bool {
        matches!(self, HMat::Int(_))
    }
}

// The kernels below run through `pulp::Arch::dispatch`, which compiles an
// `#[inline(always)]` `with_simd` body inside a function built for the
// widest vector instructions the CPU has (chosen at run time: AVX-512,
// AVX2+FMA, ...), so the plain loops are vectorised for it. A closure
// would be compiled on its own for baseline x86-64 (SSE2), as measured
// with `perf annotate`.

struct VecMatAdd<'a> {
    m: &'a HMat,
    x: &'a [f32],
    y: &'a mut [f32],
}

impl pulp::WithSimd for VecMatAdd<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let VecMatAdd { m, x, y } = self;
        match m {
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
            HMat::Int(p) => {
                for (yj, v) in y.iter_mut().zip(p.matmul(x, 1)) {
                    *yj += v;
                }
            }
        }
    }
}

struct MatVec<'a> {
    m: &'a HMat,
    x: &'a [f32],
}

impl pulp::WithSimd for MatVec<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        let MatVec { m, x } = self;
        match m {
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
            HMat::Int(p) => p.matmul(x, 1),
        }
    }
}

/// `scale · (row · x)` for each `d`-wide row of `keys`.
struct RowDots<'a> {
    keys: &'a [f32],
    x: &'a [f32],
    scale: f32,
}

impl pulp::WithSimd for RowDots<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        let RowDots { keys, x, scale } = self;
        keys.chunks_exact(x.len().max(1))
            .map(|row| dot(row, x) * scale)
            .collect()
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
        // `m / 127` can land one unit in the last place away from the scale
        // the row was made with.
        let exact = |s: f32| -> Option<Vec<i8>> {
            row.iter()
                .map(|&x| {
                    let k = (x / s).round();
                    ((-127.0..=127.0).contains(&k) && k * s == x).then_some(k as i8)
                })
                .collect()
        };
        let (row_q, s) = [s, s.next_up(), s.next_down()]
            .into_iter()
            .find_map(|s| exact(s).map(|r| (r, s)))?;
        q.extend(row_q);
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

    fn integer(self) -> Self {
        HLin {
            w: self.w.integer(false),
            b: self.b,
        }
    }

    /// `x · W + b` for the `m` rows of `x`, in one product when the
    /// matrix is packed for integer products.
    fn apply_rows(&self, x: &[f32], m: usize) -> Vec<f32> {
        let HMat::Int(p) = &self.w else {
            let d_in = x.len() / m.max(1);
            return x
                .chunks_exact(d_in.max(1))
                .take(m)
                .flat_map(|r| self.apply(r))
                .collect();
        };
        let mut y = p.matmul(x, m);
        for row in y.chunks_exact_mut(self.b.len().max(1)) {
            for (v, b) in row.iter_mut().zip(&self.b) {
                *v += b;
            }
        }
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
    /// With integer products: the per-request projections of the encoder
    /// states, so that [`HostDecoder::prepare_host`] needs no burn pass.
    host_prep: Option<HostPrep>,
}

/// The cross-attention key and value projections of every decoder layer
/// and the pointer-key projection, packed for integer products.
#[derive(Debug, Clone)]
struct HostPrep {
    cross: Vec<(HLin, HLin)>,
    ptr_k: HLin,
}

impl HLayer {
    fn integer(self) -> Self {
        HLayer {
            sq: self.sq.integer(),
            sk: self.sk.integer(),
            sv: self.sv.integer(),
            so: self.so.integer(),
            cq: self.cq.integer(),
            co: self.co.integer(),
            ff1: self.ff1.integer(),
            ff2: self.ff2.integer(),
            ..self
        }
    }
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
        let hd = HostDecoder {
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
            host_prep: None,
        };
        if !net.cfg.integer_products {
            return Ok(hd);
        }
        // Integer products: every int8 matrix is packed (f32 ones stay
        // f32), and the encoder-side projections are kept on the host when
        // all of them are int8.
        let cross = l
            .dec
            .iter()
            .map(|x| {
                Ok((
                    HLin::new(p, x.cross.k)?.integer(),
                    HLin::new(p, x.cross.v)?.integer(),
                ))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let ptr_k = HLin::new(p, l.ptr_k)?.integer();
        let all_int = ptr_k.w.is_integer()
            && cross
                .iter()
                .all(|(k, v)| k.w.is_integer() && v.w.is_integer());
        Ok(HostDecoder {
            layers: hd.layers.into_iter().map(HLayer::integer).collect(),
            act: hd.act.integer(),
            gen_q: hd.gen_q.integer(),
            ptr_q: hd.ptr_q.integer(),
            gen_table: hd.gen_table.integer(true),
            host_prep: all_int.then_some(HostPrep { cross, ptr_k }),
            ..hd
        })
    }

    /// Whether [`HostDecoder::prepare_host`] is available (integer
    /// products over int8 matrices).
    pub fn prepares_on_host(&self) -> bool {
        self.host_prep.is_some()
    }

    /// The per-request state of host decoding straight from the encoder
    /// states `[1, S, D]` and the padding bias `[1, 1, 1, S]`, the
    /// projections done as integer products (what [`Net::prepare`] does in
    /// f32). Falls back to [`Net::prepare`] when not
    /// [`HostDecoder::prepares_on_host`].
    pub fn prepare_host<'a>(
        &'a self,
        net: &'a Net,
        p: &'a Params,
        enc: Tensor<3>,
        pad_bias: Tensor<4>,
    ) -> Result<HostPrepared<'a>, ModelError> {
        let Some(hp) = &self.host_prep else {
            let prep = net.prepare(p, enc, pad_bias);
            return self.prepare(net, p, &prep);
        };
        let [_, s, d] = enc.dims();
        let device = enc.device();
        let enc = host(enc.reshape([s, d]))?;
        let cross = hp
            .cross
            .iter()
            .map(|(k, v)| (k.apply_rows(&enc, s), v.apply_rows(&enc, s)))
            .collect();
        Ok(HostPrepared {
            dec: self,
            net,
            p,
            ptr_k: hp.ptr_k.apply_rows(&enc, s),
            enc,
            pad_bias: host(pad_bias.reshape([1, s]))?,
            cross,
            self_kv: vec![(Vec::new(), Vec::new()); self.layers.len()],
            s,
            t: 0,
            device,
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
    pulp::Arch::new().dispatch(AttendRow {
        q,
        k,
        v,
        n,
        bias,
        heads,
    })
}

struct AttendRow<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    n: usize,
    bias: Option<&'a [f32]>,
    heads: usize,
}

impl pulp::WithSimd for AttendRow<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        let AttendRow {
            q,
            k,
            v,
            n,
            bias,
            heads,
        } = self;
        let d = q.len();
        let dh = d / heads.max(1);
        let scale = 1.0 / (dh as f32).sqrt();
        let mut ctx = vec![0f32; d];
        let mut scores = vec![0f32; n];
        for h in 0..heads {
            let hs = h * dh..(h + 1) * dh;
            let qh = &q[hs.clone()];
            for (j, sc) in scores.iter_mut().enumerate() {
                *sc = dot(qh, &k[j * d..][hs.clone()]) * scale
                    + bias.and_then(|b| b.get(j)).copied().unwrap_or(0.0);
            }
            let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for sc in scores.iter_mut() {
                *sc = fast_exp(*sc - m);
            }
            let inv = 1.0 / sum8(&scores);
            let out = &mut ctx[hs.clone()];
            for (j, sc) in scores.iter().enumerate() {
                let w = sc * inv;
                for (o, vj) in out.iter_mut().zip(&v[j * d..][hs.clone()]) {
                    *o += w * vj;
                }
            }
        }
        ctx
    }
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
        z.extend(pulp::Arch::new().dispatch(RowDots {
            keys: &self.ptr_k,
            x: &pq,
            scale,
        }));
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
        // Each row holds +-127, as rows quantized by their largest magnitude.
        let q: Vec<i8> = (0..rows * cols)
            .map(|i| match i % cols {
                0 if i % 2 == 0 => 127,
                0 => -127,
                _ => ((i * 37 + 11) % 255) as i32 - 127,
            })
            .map(|v| v as i8)
            .collect();
        let scale: Vec<f32> = (0..rows).map(|r| 0.003 + r as f32 * 1e-4).collect();
        let w: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * scale[i / cols])
            .collect();
        (q, scale, w)
    }

    #[test]
    fn int8_storage_is_used_only_when_exact() {
        let (rows, cols) = (40, 24);
        let (q, _, w) = matrix(rows, cols);
        match HMat::new(w.clone(), rows, cols) {
            HMat::I8 { q: got, .. } => assert_eq!(got, q),
            _ => panic!("a dequantized int8 matrix should stay int8"),
        }
        let mut off = w;
        off[5] += 1e-4;
        assert!(matches!(HMat::new(off, rows, cols), HMat::F32 { .. }));
        assert!(exact_int8(&[1.0, 2.0], 3, 1).is_none());
    }

    #[test]
    fn int8_products_match_f32_products() {
        let (rows, cols) = (40, 24);
        let (_, _, w) = matrix(rows, cols);
        let i8m = HMat::new(w.clone(), rows, cols);
        let f32m = HMat::F32 { w: w.clone(), cols };
        assert!(matches!(i8m, HMat::I8 { .. }));
        let x: Vec<f32> = (0..rows).map(|i| (i as f32 * 0.37).sin()).collect();
        let (mut a, mut b) = (vec![0.5f32; cols], vec![0.5f32; cols]);
        i8m.vecmat_add(&x, &mut a);
        f32m.vecmat_add(&x, &mut b);
        // By hand: y_j = 0.5 + sum_i x_i w_ij.
        for j in 0..cols {
            let want: f32 = 0.5 + (0..rows).map(|i| x[i] * w[i * cols + j]).sum::<f32>();
            assert!((a[j] - want).abs() < 1e-4 && (b[j] - want).abs() < 1e-4);
        }
        let xc: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.21).cos()).collect();
        // Integer products: each activation rounded to 1/32767 of the
        // largest, so within 1e-3 here.
        let (iv, im) = (i8m.clone().integer(false), i8m.clone().integer(true));
        assert!(iv.is_integer() && im.is_integer());
        let mut c = vec![0.5f32; cols];
        iv.vecmat_add(&x, &mut c);
        for j in 0..cols {
            assert!((a[j] - c[j]).abs() < 1e-3, "{j}: {} vs {}", a[j], c[j]);
        }
        for (r, (u, v)) in im.matvec(&xc).iter().zip(i8m.matvec(&xc)).enumerate() {
            assert!((u - v).abs() < 1e-3, "{r}: {u} vs {v}");
        }
        // An f32 matrix stays f32.
        assert!(!f32m.clone().integer(false).is_integer());
        let (ma, mb) = (i8m.matvec(&xc), f32m.matvec(&xc));
        assert_eq!(ma.len(), rows);
        for r in 0..rows {
            let want: f32 = (0..cols).map(|c| w[r * cols + c] * xc[c]).sum();
            assert!((ma[r] - want).abs() < 1e-4 && (mb[r] - want).abs() < 1e-4);
        }
    }
}
