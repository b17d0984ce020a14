//! The network: a BERT encoder (MiniLM-L6 shape) and a small pointer decoder.
//!
//! Parameters live in a flat [`Params`] list (all stored as rank-2 tensors;
//! vectors as `[1, n]`) addressed through a [`Layout`] of indices, so weight
//! I/O, freezing and the optimizer see one uniform list. Names follow the
//! Hugging Face BERT names where a parameter comes from MiniLM (matrices are
//! stored `[in, out]`, i.e. transposed against PyTorch).
//!
//! Output space of one decoding step: `[actions | generation vocabulary |
//! source positions]` (see [`OutSpace`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData, activation};
use rand::{Rng, SeedableRng};

use crate::config::{EncoderMatrix, ModelConfig};
use crate::error::ModelError;
use crate::qgemm::{Activations, PackedI8};

/// Decoder actions (the first entries of the output space).
pub mod action {
    /// End of a value.
    pub const END_VAL: usize = 0;
    /// Next element of an array value.
    pub const NEXT_ELEM: usize = 1;
    /// End of a call.
    pub const END_CALL: usize = 2;
    /// No more calls (first step: no tool fits).
    pub const STOP: usize = 3;
    pub const COUNT: usize = 4;
}

/// Kinds of decoder inputs (what the previous step emitted).
pub mod kind {
    pub const BOS: u32 = 0;
    /// `1 + action`
    pub const ACTION0: u32 = 1;
    /// A value word piece (copied or generated).
    pub const VALUE: u32 = 5;
    /// A pointer to a function name.
    pub const FUNCTION: u32 = 6;
    /// A pointer to a parameter name.
    pub const PARAM: u32 = 7;
    pub const COUNT: usize = 8;
}

/// Index arithmetic of the output space for a given source length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutSpace {
    pub n_gen: usize,
    pub src: usize,
}

impl OutSpace {
    pub fn size(&self) -> usize {
        action::COUNT + self.n_gen + self.src
    }
    pub fn gen_index(&self, g: usize) -> usize {
        action::COUNT + g
    }
    pub fn src_index(&self, p: usize) -> usize {
        action::COUNT + self.n_gen + p
    }
}

/// A linear layer: weight `[in, out]` and bias `[1, out]`.
#[derive(Debug, Clone, Copy)]
pub struct Lin {
    pub w: usize,
    pub b: usize,
}

/// A layer norm: gain and bias `[1, d]`.
#[derive(Debug, Clone, Copy)]
pub struct Ln {
    pub g: usize,
    pub b: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Attn {
    pub q: Lin,
    pub k: Lin,
    pub v: Lin,
    pub o: Lin,
}

/// A post-LN BERT layer.
#[derive(Debug, Clone, Copy)]
pub struct EncLayer {
    pub attn: Attn,
    pub ln1: Ln,
    pub ff1: Lin,
    pub ff2: Lin,
    pub ln2: Ln,
}

/// A pre-LN decoder layer with self- and cross-attention.
#[derive(Debug, Clone, Copy)]
pub struct DecLayer {
    pub ln_self: Ln,
    pub self_attn: Attn,
    pub ln_cross: Ln,
    pub cross: Attn,
    pub ln_ff: Ln,
    pub ff1: Lin,
    pub ff2: Lin,
}

/// Which part of the model a parameter belongs to (for `retort info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Embeddings,
    Encoder,
    Decoder,
    Heads,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Embeddings => "embeddings",
            Part::Encoder => "encoder",
            Part::Decoder => "decoder",
            Part::Heads => "heads",
        }
    }
}

/// How a fresh parameter is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Normal(f32),
    Zeros,
    Ones,
}

/// Name, shape, part and initialisation of each parameter.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub shape: [usize; 2],
    pub part: Part,
    pub init: Init,
}

/// Indices of every parameter.
#[derive(Debug, Clone)]
pub struct Layout {
    pub specs: Vec<Spec>,
    pub word: usize,
    pub pos: usize,
    pub typ: usize,
    pub emb_ln: Ln,
    pub enc: Vec<EncLayer>,
    pub dec_pos: usize,
    pub dec_kind: usize,
    pub dec: Vec<DecLayer>,
    pub dec_ln: Ln,
    pub act: Lin,
    pub gen_q: Lin,
    pub gen_bias: usize,
    pub ptr_q: Lin,
    pub ptr_k: Lin,
    /// The learned vector of each lexical feature bit
    /// (`[features::COUNT, D]`), when `lexical_features` is on.
    pub features: Option<usize>,
}

struct LayoutBuilder {
    specs: Vec<Spec>,
}

impl LayoutBuilder {
    fn add(&mut self, name: String, shape: [usize; 2], part: Part, init: Init) -> usize {
        self.specs.push(Spec {
            name,
            shape,
            part,
            init,
        });
        self.specs.len() - 1
    }
    fn lin(&mut self, name: &str, i: usize, o: usize, part: Part) -> Lin {
        Lin {
            w: self.add(format!("{name}.weight"), [i, o], part, Init::Normal(0.02)),
            b: self.add(format!("{name}.bias"), [1, o], part, Init::Zeros),
        }
    }
    fn ln(&mut self, name: &str, d: usize, part: Part) -> Ln {
        Ln {
            g: self.add(format!("{name}.weight"), [1, d], part, Init::Ones),
            b: self.add(format!("{name}.bias"), [1, d], part, Init::Zeros),
        }
    }
    fn attn(&mut self, prefix: &str, names: [&str; 4], d: usize, part: Part) -> Attn {
        Attn {
            q: self.lin(&format!("{prefix}.{}", names[0]), d, d, part),
            k: self.lin(&format!("{prefix}.{}", names[1]), d, d, part),
            v: self.lin(&format!("{prefix}.{}", names[2]), d, d, part),
            o: self.lin(&format!("{prefix}.{}", names[3]), d, d, part),
        }
    }
}

impl Layout {
    pub fn new(c: &ModelConfig) -> Self {
        let d = c.hidden;
        let mut b = LayoutBuilder { specs: Vec::new() };
        let e = Part::Embeddings;
        let word = b.add(
            "embeddings.word_embeddings.weight".into(),
            [c.vocab_size, d],
            e,
            Init::Normal(0.02),
        );
        let pos = b.add(
            "embeddings.position_embeddings.weight".into(),
            [c.max_positions, d],
            e,
            Init::Normal(0.02),
        );
        let typ = b.add(
            "embeddings.token_type_embeddings.weight".into(),
            [c.type_vocab, d],
            e,
            Init::Normal(0.02),
        );
        let emb_ln = b.ln("embeddings.LayerNorm", d, e);
        let mut enc = Vec::new();
        for i in 0..c.enc_layers {
            let p = format!("encoder.layer.{i}");
            let en = Part::Encoder;
            let attn = b.attn(
                &p,
                [
                    "attention.self.query",
                    "attention.self.key",
                    "attention.self.value",
                    "attention.output.dense",
                ],
                d,
                en,
            );
            let ln1 = b.ln(&format!("{p}.attention.output.LayerNorm"), d, en);
            let ff1 = b.lin(&format!("{p}.intermediate.dense"), d, c.enc_ffn, en);
            let ff2 = b.lin(&format!("{p}.output.dense"), c.enc_ffn, d, en);
            let ln2 = b.ln(&format!("{p}.output.LayerNorm"), d, en);
            enc.push(EncLayer {
                attn,
                ln1,
                ff1,
                ff2,
                ln2,
            });
        }
        let de = Part::Decoder;
        let dec_pos = b.add(
            "decoder.pos".into(),
            [c.max_steps, d],
            de,
            Init::Normal(0.02),
        );
        let dec_kind = b.add(
            "decoder.kind".into(),
            [kind::COUNT, d],
            de,
            Init::Normal(0.02),
        );
        let mut dec = Vec::new();
        for i in 0..c.dec_layers {
            let p = format!("decoder.layer.{i}");
            let names = ["query", "key", "value", "out"];
            dec.push(DecLayer {
                ln_self: b.ln(&format!("{p}.ln_self"), d, de),
                self_attn: b.attn(&format!("{p}.self"), names, d, de),
                ln_cross: b.ln(&format!("{p}.ln_cross"), d, de),
                cross: b.attn(&format!("{p}.cross"), names, d, de),
                ln_ff: b.ln(&format!("{p}.ln_ff"), d, de),
                ff1: b.lin(&format!("{p}.ff1"), d, c.dec_ffn, de),
                ff2: b.lin(&format!("{p}.ff2"), c.dec_ffn, d, de),
            });
        }
        let dec_ln = b.ln("decoder.ln", d, de);
        let h = Part::Heads;
        let act = b.lin("head.action", d, action::COUNT, h);
        let gen_q = b.lin("head.gen_query", d, d, h);
        let gen_bias = b.add(
            "head.gen_bias".into(),
            [1, c.gen_vocab.len().max(1)],
            h,
            Init::Zeros,
        );
        let ptr_q = b.lin("head.ptr_query", d, d, h);
        let ptr_k = b.lin("head.ptr_key", d, d, h);
        // Zeros: a model given features starts out answering as without.
        let features = c.lexical_features.then(|| {
            b.add(
                "features.weight".into(),
                [crate::features::COUNT, d],
                h,
                Init::Zeros,
            )
        });
        Layout {
            specs: b.specs,
            word,
            pos,
            typ,
            emb_ln,
            enc,
            dec_pos,
            dec_kind,
            dec,
            dec_ln,
            act,
            gen_q,
            gen_bias,
            ptr_q,
            ptr_k,
            features,
        }
    }

    /// Parameter count by part.
    pub fn count_by_part(&self) -> Vec<(Part, usize)> {
        let mut out: Vec<(Part, usize)> = Vec::new();
        for s in &self.specs {
            let n = s.shape[0] * s.shape[1];
            match out.iter_mut().find(|(p, _)| *p == s.part) {
                Some(e) => e.1 += n,
                None => out.push((s.part, n)),
            }
        }
        out
    }

    pub fn count(&self) -> usize {
        self.specs.iter().map(|s| s.shape[0] * s.shape[1]).sum()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }
}

/// Host copy of all parameters (f32, row-major), in layout order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParams {
    pub values: Vec<Vec<f32>>,
}

impl HostParams {
    /// Random initialisation, deterministic in `seed`.
    pub fn init(layout: &Layout, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let values = layout
            .specs
            .iter()
            .map(|s| {
                let n = s.shape[0] * s.shape[1];
                match s.init {
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                    Init::Normal(std) => (0..n)
                        .map(|_| {
                            // Box-Muller.
                            let u1: f32 = rng.random::<f32>().max(1e-7);
                            let u2: f32 = rng.random::<f32>();
                            std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                        })
                        .collect(),
                }
            })
            .collect();
        HostParams { values }
    }

    /// The same weights under another layout: tensors are matched by name,
    /// and those the old layout lacks get their initialisation (seeded).
    pub fn relayout(self, old: &Layout, new: &Layout, seed: u64) -> HostParams {
        let fresh = HostParams::init(new, seed);
        let mut by_name: std::collections::HashMap<&str, Vec<f32>> = old
            .specs
            .iter()
            .map(|s| s.name.as_str())
            .zip(self.values)
            .collect();
        let values = new
            .specs
            .iter()
            .zip(fresh.values)
            .map(|(s, init)| match by_name.remove(s.name.as_str()) {
                Some(v) if v.len() == init.len() => v,
                _ => init,
            })
            .collect();
        HostParams { values }
    }

    /// Upload to a device for inference, giving up each host tensor as soon
    /// as it is uploaded, so loading never holds two full copies.
    pub fn into_device(self, layout: &Layout, device: &Device) -> Params {
        Params::new(self.upload_owned(layout, device, &[]))
    }

    /// Upload, consuming the host tensors; `placeholders` gives the layout
    /// indices of tensors uploaded as `1 x D` placeholders instead.
    fn upload_owned(
        self,
        layout: &Layout,
        device: &Device,
        placeholders: &[usize],
    ) -> Vec<Tensor<2>> {
        self.values
            .into_iter()
            .zip(&layout.specs)
            .enumerate()
            .map(|(i, (v, s))| {
                let (v, shape) = if placeholders.contains(&i) {
                    (vec![0.0; s.shape[1]], [1, s.shape[1]])
                } else {
                    (v, s.shape)
                };
                Tensor::<2>::from_data(TensorData::new(v, shape), device)
            })
            .collect()
    }

    /// [`HostParams::into_device`] with the word-embedding table kept as
    /// int8 rows on the host (`word`): the tensor at `layout.word` becomes
    /// a `1 x D` placeholder, and lookups gather and dequantize rows. The
    /// matrices `mats` (layout index, rows) are kept as int8 rows too and
    /// dequantized by [`Params::get`] on each use. This saves three
    /// quarters of their memory and changes no output when they were
    /// stored as int8 anyway. The host values of all of them may be empty.
    pub fn into_device_quantized(
        self,
        layout: &Layout,
        device: &Device,
        word: QuantRows,
        gen_vocab: &[u32],
        mats: Vec<(usize, QuantRows)>,
    ) -> Result<Params, ModelError> {
        let d = layout
            .specs
            .get(layout.word)
            .map(|s| s.shape[1])
            .unwrap_or(0);
        if word.cols != d || layout.specs.get(layout.word).map(|s| s.shape[0]) != Some(word.rows) {
            return Err(ModelError::Weights(format!(
                "word table {}x{} does not match the layout",
                word.rows, word.cols
            )));
        }
        for (i, m) in &mats {
            let shape = layout.specs.get(*i).map(|s| s.shape);
            if shape != Some([m.rows, m.cols]) || m.q.len() != m.rows * m.cols {
                return Err(ModelError::Weights(format!(
                    "int8 matrix {}x{} does not match the layout's {shape:?}",
                    m.rows, m.cols
                )));
            }
        }
        let mut placeholders: Vec<usize> = mats.iter().map(|(i, _)| *i).collect();
        placeholders.push(layout.word);
        let t = self.upload_owned(layout, device, &placeholders);
        let ids = gen_id_list(gen_vocab);
        let gen_table =
            Tensor::<2>::from_data(TensorData::new(word.gather(&ids), [ids.len(), d]), device);
        Ok(Params {
            t,
            words: Some(Arc::new(QuantWords {
                index: layout.word,
                rows: word,
                gen_table,
            })),
            int8: mats
                .into_iter()
                .map(|(i, m)| (i, Arc::new(PackedI8::new(&m))))
                .collect(),
        })
    }

    /// Upload to a device. With `trainable`, the tensors it marks get
    /// autodiff and require gradients; the others stay plain (frozen, and
    /// free of autodiff bookkeeping).
    pub fn to_device(
        &self,
        layout: &Layout,
        device: &Device,
        trainable: Option<&[bool]>,
    ) -> Params {
        let t = self
            .values
            .iter()
            .zip(&layout.specs)
            .enumerate()
            .map(|(i, (v, s))| {
                let t = Tensor::<2>::from_data(TensorData::new(v.clone(), s.shape), device);
                match trainable {
                    Some(tr) if tr.get(i).copied().unwrap_or(false) => t.autodiff().require_grad(),
                    _ => t,
                }
            })
            .collect();
        Params::new(t)
    }
}

/// Rows of a table stored as int8 with one f32 scale per row.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantRows {
    pub rows: usize,
    pub cols: usize,
    pub q: Vec<i8>,
    pub scale: Vec<f32>,
}

impl QuantRows {
    /// `values` (`[rows, cols]`, row-major) as int8 with one scale per row:
    /// each row's largest magnitude maps to 127, and a row of zeros gets
    /// scale 1. This is how [`crate::weights::Storage::Compact`] stores a
    /// matrix, so quantizing a matrix read from such a file gives its stored
    /// integers back.
    pub fn quantize(rows: usize, cols: usize, values: &[f32]) -> QuantRows {
        let mut q = Vec::with_capacity(rows * cols);
        let mut scale = Vec::with_capacity(rows);
        for row in values.chunks(cols.max(1)).take(rows) {
            let m = row.iter().fold(0f32, |a, x| a.max(x.abs()));
            let s = if m > 0.0 { m / 127.0 } else { 1.0 };
            scale.push(s);
            q.extend(
                row.iter()
                    .map(|x| (x / s).round().clamp(-127.0, 127.0) as i8),
            );
        }
        q.resize(rows * cols, 0);
        scale.resize(rows, 1.0);
        QuantRows {
            rows,
            cols,
            q,
            scale,
        }
    }

    /// Rows `ids` dequantized, one after another (an id out of range gives
    /// a row of zeros).
    pub fn gather(&self, ids: &[i64]) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let row = usize::try_from(id)
                .ok()
                .filter(|&r| r < self.rows)
                .and_then(|r| {
                    Some((
                        self.q.get(r * self.cols..(r + 1) * self.cols)?,
                        *self.scale.get(r)?,
                    ))
                });
            match row {
                Some((q, s)) => out.extend(q.iter().map(|&b| b as f32 * s)),
                None => out.extend(std::iter::repeat_n(0.0, self.cols)),
            }
        }
        out
    }

    /// The whole table as f32 (the same values as [`QuantRows::gather`]),
    /// with the widest vector instructions the CPU has.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        pulp::Arch::new().dispatch(Dequantize {
            q: self,
            out: &mut out,
        });
        out
    }
}

/// `q * scale` row by row (a struct, not a closure, so that `dispatch`
/// compiles the loop for the chosen instruction set).
struct Dequantize<'a> {
    q: &'a QuantRows,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Dequantize<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let cols = self.q.cols.max(1);
        for ((o, row), &s) in self
            .out
            .chunks_exact_mut(cols)
            .zip(self.q.q.chunks_exact(cols))
            .zip(&self.q.scale)
        {
            for (x, &b) in o.iter_mut().zip(row) {
                *x = b as f32 * s;
            }
        }
    }
}

/// The word-embedding table of an inference model, kept as int8 rows.
#[derive(Debug)]
pub struct QuantWords {
    /// Its index in the layout.
    pub index: usize,
    pub rows: QuantRows,
    /// The rows of the generation vocabulary, as f32 `[G, D]`.
    pub gen_table: Tensor<2>,
}

/// Parameters on a device.
#[derive(Debug, Clone)]
pub struct Params {
    pub t: Vec<Tensor<2>>,
    /// Inference only: the word embeddings as int8 rows on the host (the
    /// tensor in `t` is then a placeholder).
    pub words: Option<Arc<QuantWords>>,
    /// Inference only: matrices held as int8 rows on the host, by layout
    /// index (the tensors in `t` are then placeholders), laid out for
    /// integer products ([`crate::qgemm`]); [`Params::get`] dequantizes
    /// them on each use.
    pub int8: BTreeMap<usize, Arc<PackedI8>>,
}

impl Params {
    pub fn new(t: Vec<Tensor<2>>) -> Params {
        Params {
            t,
            words: None,
            int8: BTreeMap::new(),
        }
    }

    /// Parameter `i` as a tensor (dequantized when it is held as int8).
    pub fn get(&self, i: usize) -> Tensor<2> {
        if let Some(q) = self.int8.get(&i) {
            let device = self.t[i].device();
            return Tensor::from_data(TensorData::new(q.dequantize(), [q.k, q.n]), &device);
        }
        self.t[i].clone()
    }

    /// Lay out the encoder's int8 matrices for the activation widths that
    /// `eight_bit` asks for (8-bit for the kinds it names, 16-bit for the
    /// rest; see [`crate::qgemm::Activations`]). Same weights; matrices
    /// already laid out so are kept.
    pub fn set_activations(&mut self, layout: &Layout, eight_bit: &[EncoderMatrix]) {
        for layer in &layout.enc {
            let a = layer.attn;
            let kinds = [
                (a.q.w, EncoderMatrix::Attention),
                (a.k.w, EncoderMatrix::Attention),
                (a.v.w, EncoderMatrix::Attention),
                (a.o.w, EncoderMatrix::Attention),
                (layer.ff1.w, EncoderMatrix::FfnIn),
                (layer.ff2.w, EncoderMatrix::FfnOut),
            ];
            for (index, kind) in kinds {
                let want = if eight_bit.contains(&kind) {
                    Activations::U8
                } else {
                    Activations::I16
                };
                if let Some(m) = self.int8.get_mut(&index)
                    && m.activations() != want
                {
                    *m = Arc::new(PackedI8::with_activations(&m.rows(), want));
                }
            }
        }
    }

    /// The same parameters with the six weight matrices of each of the
    /// lowest `layers` encoder layers also held as int8 rows
    /// ([`QuantRows::quantize`], packed for integer products). For
    /// training: the frozen lower layers, run on the host by
    /// [`crate::fastenc::lower_layers`] as the exported model will serve
    /// them. The tensors stay in place, so the copy costs only the packed
    /// matrices.
    pub fn with_int8_layers(&self, layout: &Layout, layers: usize) -> Result<Params, ModelError> {
        let mut int8 = self.int8.clone();
        for layer in layout.enc.iter().take(layers) {
            let a = layer.attn;
            for lin in [a.q, a.k, a.v, a.o, layer.ff1, layer.ff2] {
                if int8.contains_key(&lin.w) {
                    continue;
                }
                let t = self.get(lin.w);
                let [rows, cols] = t.dims();
                let v = t
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| ModelError::Weights(format!("{e:?}")))?;
                let q = QuantRows::quantize(rows, cols, &v);
                int8.insert(lin.w, Arc::new(PackedI8::new(&q)));
            }
        }
        Ok(Params {
            t: self.t.clone(),
            words: self.words.clone(),
            int8,
        })
    }

    /// Download to the host.
    pub fn to_host(&self) -> Result<HostParams, ModelError> {
        let values = self
            .t
            .iter()
            .enumerate()
            .map(|(i, t)| match (&self.words, self.int8.get(&i)) {
                (Some(w), _) if w.index == i => Ok(w.rows.dequantize()),
                (_, Some(q)) => Ok(q.dequantize()),
                _ => t
                    .to_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| ModelError::Weights(format!("{e:?}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(HostParams { values })
    }
}

fn lin3(p: &Params, l: Lin, x: Tensor<3>) -> Tensor<3> {
    let [b, s, i] = x.dims();
    let w = p.get(l.w);
    let o = w.dims()[1];
    let y = x.reshape([b * s, i]).matmul(w) + p.get(l.b);
    y.reshape([b, s, o])
}

fn ln3(p: &Params, l: Ln, x: Tensor<3>, eps: f64) -> Tensor<3> {
    let mean = x.clone().mean_dim(2);
    let xc = x - mean;
    let var = xc.clone().powf_scalar(2.0).mean_dim(2);
    let y = xc / (var + eps).sqrt();
    let g = p.get(l.g).unsqueeze_dim::<3>(0);
    let b = p.get(l.b).unsqueeze_dim::<3>(0);
    y * g + b
}

fn split_heads(t: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, s, d] = t.dims();
    t.reshape([b, s, heads, d / heads]).swap_dims(1, 2)
}

/// Keys and values of `xkv`, split into heads: `[B, H, S, dh]` each.
fn project_kv(p: &Params, a: Attn, heads: usize, xkv: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
    (
        split_heads(lin3(p, a.k, xkv.clone()), heads),
        split_heads(lin3(p, a.v, xkv), heads),
    )
}

/// Attention of `xq` over projected keys and values.
fn attend(
    p: &Params,
    a: Attn,
    heads: usize,
    xq: Tensor<3>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
) -> Tensor<3> {
    let [b, sq, d] = xq.dims();
    let dh = d / heads;
    let q = split_heads(lin3(p, a.q, xq), heads);
    let mut scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt();
    if let Some(bias) = bias {
        scores = scores + bias;
    }
    let probs = activation::softmax(scores, 3);
    let ctx = probs.matmul(v).swap_dims(1, 2).reshape([b, sq, d]);
    lin3(p, a.o, ctx)
}

/// Multi-head attention. `bias`: additive mask broadcastable to `[B, H, Sq, Sk]`.
fn attention(
    p: &Params,
    a: Attn,
    heads: usize,
    xq: Tensor<3>,
    xkv: Tensor<3>,
    bias: Option<Tensor<4>>,
) -> Tensor<3> {
    let (k, v) = project_kv(p, a, heads, xkv);
    attend(p, a, heads, xq, k, v, bias)
}

/// What the decoder derives from the encoder once per request: the
/// cross-attention keys and values of every layer, the pointer keys and the
/// generation-vocabulary table.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub enc: Tensor<3>,
    pub pad_bias: Tensor<4>,
    pub cross_kv: Vec<(Tensor<4>, Tensor<4>)>,
    pub ptr_k: Tensor<3>,
    /// `ptr_k` transposed: `[B, D, S]`.
    pub ptr_kt: Tensor<3>,
    pub gen_table: Tensor<2>,
    /// `gen_table` transposed: `[D, G]`.
    pub gen_table_t: Tensor<2>,
}

/// A batch of encoder inputs (right-padded).
#[derive(Debug, Clone)]
pub struct EncBatch {
    pub ids: Tensor<2, Int>,
    pub segs: Tensor<2, Int>,
    /// Position id of every token `[B, S]`.
    pub pos: Tensor<2, Int>,
    /// Additive mask `[B, 1, 1, S]`: 0 for tokens, -1e4 for padding (what
    /// the decoder's cross-attention sees).
    pub pad_bias: Tensor<4>,
    /// Additive self-attention mask of the encoder layers above the block
    /// mask: `[B, 1, 1, S]` (padding only).
    pub attn_bias: Tensor<4>,
    /// The block mask `[B, 1, S, S]` of the lowest `masked_layers` layers.
    pub lower_bias: Option<Tensor<4>>,
    /// Encoder layers (from the bottom) that use `lower_bias`.
    pub masked_layers: usize,
}

/// Where the encoder's block attention mask applies: rows split after
/// every `sep`, in the lowest `layers` layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMask {
    pub sep: u32,
    pub layers: usize,
}

/// Where each token of a rendered row sits under the block mask: its group
/// (0 for `[CLS] query [SEP]`, then one group per tool, each ending at its
/// `[SEP]`) and its position id (the query from 0, every tool from 1, as if
/// it were a sentence of its own).
pub fn block_groups(ids: &[u32], sep: u32) -> (Vec<usize>, Vec<usize>) {
    let mut groups = Vec::with_capacity(ids.len());
    let mut pos = Vec::with_capacity(ids.len());
    let mut g = 0usize;
    let mut p = 0usize;
    for &id in ids {
        groups.push(g);
        pos.push(p);
        p += 1;
        if id == sep {
            g += 1;
            p = 1;
        }
    }
    (groups, pos)
}

/// The blocks of a rendered row under the block mask: the query block first,
/// then one range per tool (each ending at its `[SEP]`).
pub fn block_ranges(ids: &[u32], sep: u32) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (j, &id) in ids.iter().enumerate() {
        if id == sep {
            out.push(start..j + 1);
            start = j + 1;
        }
    }
    if start < ids.len() {
        out.push(start..ids.len());
    }
    out
}

impl EncBatch {
    /// Build from token rows (padded with `pad` to the longest), full
    /// attention and sequential positions.
    pub fn new(rows: &[(&[u32], &[u32])], pad: u32, device: &Device) -> Self {
        Self::build(rows, pad, None, device)
    }

    /// Build for a network: under its block mask (`cfg.block_mask` or
    /// `cfg.block_layers`), tool tokens attend only to their own tool in the
    /// masked layers (so those layers' tool encodings do not depend on the
    /// query and can be cached) and each tool's positions start again at 1.
    pub fn for_config(
        cfg: &ModelConfig,
        rows: &[(&[u32], &[u32])],
        pad: u32,
        sep: u32,
        device: &Device,
    ) -> Self {
        Self::build(rows, pad, cfg.block(sep), device)
    }

    /// Build with an optional block mask (groups split after each `sep`).
    pub fn build(
        rows: &[(&[u32], &[u32])],
        pad: u32,
        block: Option<BlockMask>,
        device: &Device,
    ) -> Self {
        let b = rows.len();
        let s = rows.iter().map(|r| r.0.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![pad as i64; b * s];
        let mut segs = vec![0i64; b * s];
        let mut pos = vec![0i64; b * s];
        let mut bias = vec![-1.0e4f32; b * s];
        for (i, (r, g)) in rows.iter().enumerate() {
            for j in 0..r.len() {
                ids[i * s + j] = r[j] as i64;
                segs[i * s + j] = g.get(j).copied().unwrap_or(0) as i64;
                pos[i * s + j] = j as i64;
                bias[i * s + j] = 0.0;
            }
        }
        let pad_bias = Tensor::from_data(TensorData::new(bias.clone(), [b, 1, 1, s]), device);
        let lower_bias = match block {
            None => None,
            Some(BlockMask { sep, .. }) => {
                let mut full = vec![-1.0e4f32; b * s * s];
                for (i, (r, _)) in rows.iter().enumerate() {
                    let (groups, p) = block_groups(r, sep);
                    for (j, &pj) in p.iter().enumerate() {
                        pos[i * s + j] = pj as i64;
                    }
                    for q in 0..r.len() {
                        for k in 0..r.len() {
                            if groups[q] == 0 || groups[q] == groups[k] {
                                full[(i * s + q) * s + k] = 0.0;
                            }
                        }
                    }
                }
                Some(Tensor::from_data(
                    TensorData::new(full, [b, 1, s, s]),
                    device,
                ))
            }
        };
        EncBatch {
            ids: Tensor::from_data(TensorData::new(ids, [b, s]), device),
            segs: Tensor::from_data(TensorData::new(segs, [b, s]), device),
            pos: Tensor::from_data(TensorData::new(pos, [b, s]), device),
            attn_bias: pad_bias.clone(),
            pad_bias,
            masked_layers: block.map_or(0, |m| m.layers),
            lower_bias,
        }
    }
}

/// The encoder states of one tool block, which under the block mask do not
/// depend on the query: every layer's keys and values and the final states
/// (`[1, n, D]`).
#[derive(Debug, Clone)]
pub struct ToolBlock {
    /// Per encoder layer: keys and values, row-major `[len, D]` (heads side
    /// by side), on the host for the hand-written query pass.
    pub kv: Vec<(Vec<f32>, Vec<f32>)>,
    pub out: Tensor<3>,
    /// Tokens in the block.
    pub len: usize,
}

impl ToolBlock {
    /// Floats held (for cache accounting).
    pub fn floats(&self) -> usize {
        let d = self.out.dims()[2];
        self.len * d * (2 * self.kv.len() + 1)
    }
}

/// The network over a parameter list.
#[derive(Debug, Clone)]
pub struct Net {
    pub cfg: ModelConfig,
    pub layout: Layout,
    /// `gen_vocab` as an index tensor.
    pub gen_ids: Tensor<1, Int>,
}

/// A batch of decoder inputs (teacher forcing or a decoding prefix).
#[derive(Debug, Clone)]
pub struct DecBatch {
    /// Word-piece id fed at each step (`[PAD]` for actions), `[B, T]`.
    pub toks: Tensor<2, Int>,
    /// [`kind`] of each step, `[B, T]`.
    pub kinds: Tensor<2, Int>,
    /// One-hot `[B, T, S]` of the pointed source position for function and
    /// parameter pointers (zero rows otherwise).
    pub ptr: Tensor<3>,
}

impl DecBatch {
    /// `rows[i]` = steps of `(tok, kind, pointer position)`; padded to the longest.
    pub fn new(rows: &[Vec<(u32, u32, Option<usize>)>], src_len: usize, device: &Device) -> Self {
        let b = rows.len();
        let t = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut toks = vec![0i64; b * t];
        let mut kinds = vec![kind::BOS as i64; b * t];
        let mut ptr = vec![0f32; b * t * src_len];
        for (i, r) in rows.iter().enumerate() {
            for (j, &(tok, k, p)) in r.iter().enumerate() {
                toks[i * t + j] = tok as i64;
                kinds[i * t + j] = k as i64;
                if let Some(p) = p.filter(|&p| p < src_len) {
                    ptr[(i * t + j) * src_len + p] = 1.0;
                }
            }
        }
        DecBatch {
            toks: Tensor::from_data(TensorData::new(toks, [b, t]), device),
            kinds: Tensor::from_data(TensorData::new(kinds, [b, t]), device),
            ptr: Tensor::from_data(TensorData::new(ptr, [b, t, src_len]), device),
        }
    }
}

/// The word ids of the generation vocabulary (`[0]` when it is empty, so
/// the output space keeps a generation slot).
fn gen_id_list(gen_vocab: &[u32]) -> Vec<i64> {
    if gen_vocab.is_empty() {
        vec![0]
    } else {
        gen_vocab.iter().map(|&x| x as i64).collect()
    }
}

fn embed(table: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<3> {
    let [b, s] = ids.dims();
    let d = table.dims()[1];
    table.select(0, ids.reshape([b * s])).reshape([b, s, d])
}

impl Net {
    pub fn new(cfg: ModelConfig, device: &Device) -> Result<Self, ModelError> {
        cfg.check()?;
        let layout = Layout::new(&cfg);
        let ids = gen_id_list(&cfg.gen_vocab);
        let n = ids.len();
        let gen_ids = Tensor::from_data(TensorData::new(ids, [n]), device);
        Ok(Net {
            cfg,
            layout,
            gen_ids,
        })
    }

    /// Word embeddings of `ids`: `[B, S, D]`, from the int8 host table
    /// when the parameters keep one.
    pub(crate) fn embed_words(&self, p: &Params, ids: Tensor<2, Int>) -> Tensor<3> {
        let Some(w) = &p.words else {
            return embed(p.get(self.layout.word), ids);
        };
        let [b, s] = ids.dims();
        let device = ids.device();
        let v: Vec<i64> = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default();
        let d = w.rows.cols;
        let mut rows = w.rows.gather(&v);
        rows.resize(b * s * d, 0.0);
        Tensor::from_data(TensorData::new(rows, [b, s, d]), &device)
    }

    /// Encoder: `[B, S, D]`. Layers below `frozen_layers` are run without
    /// gradient tracking when their parameters do not require gradients.
    pub fn encode(&self, p: &Params, x: &EncBatch) -> Tensor<3> {
        let l = &self.layout;
        let c = &self.cfg;
        let word = self.embed_words(p, x.ids.clone());
        let pos = embed(
            p.get(l.pos),
            x.pos.clone().clamp(0, c.max_positions as i64 - 1),
        );
        let typ = embed(p.get(l.typ), x.segs.clone());
        let h = ln3(p, l.emb_ln, word + pos + typ, c.layer_norm_eps);
        self.encode_from(p, h, x, 0)
    }

    /// Encoder layers `from..` over `h` (`[B, S, D]`, the states of `x`'s
    /// rows after the first `from` layers): the rest of [`Net::encode`].
    /// Training runs its frozen lower layers elsewhere and continues here.
    pub fn encode_from(
        &self,
        p: &Params,
        mut h: Tensor<3>,
        x: &EncBatch,
        from: usize,
    ) -> Tensor<3> {
        let l = &self.layout;
        let c = &self.cfg;
        for (i, layer) in l.enc.iter().enumerate().skip(from) {
            let bias = match &x.lower_bias {
                Some(m) if i < x.masked_layers => m.clone(),
                _ => x.attn_bias.clone(),
            };
            let a = attention(p, layer.attn, c.heads, h.clone(), h.clone(), Some(bias));
            h = ln3(p, layer.ln1, h + a, c.layer_norm_eps);
            let f = lin3(
                p,
                layer.ff2,
                activation::gelu(lin3(p, layer.ff1, h.clone())),
            );
            h = ln3(p, layer.ln2, h + f, c.layer_norm_eps);
        }
        h
    }

    /// Embeddings of one block of tokens with explicit positions and segment.
    pub(crate) fn embed_block(
        &self,
        p: &Params,
        ids: &[u32],
        first_pos: usize,
        seg: u32,
        device: &Device,
    ) -> Tensor<3> {
        self.embed_row(p, ids, |j| first_pos + j, |_| seg, device)
    }

    /// Embeddings of one unpadded row with per-token segments and positions
    /// from 0 (what [`Net::encode`] embeds without the block mask).
    pub(crate) fn embed_tokens(
        &self,
        p: &Params,
        ids: &[u32],
        segs: &[u32],
        device: &Device,
    ) -> Tensor<3> {
        self.embed_row(p, ids, |j| j, |j| segs.get(j).copied().unwrap_or(0), device)
    }

    /// Embeddings of one unpadded row with per-token segments and positions.
    pub(crate) fn embed_positioned(
        &self,
        p: &Params,
        ids: &[u32],
        segs: &[u32],
        pos: &[usize],
        device: &Device,
    ) -> Tensor<3> {
        self.embed_row(
            p,
            ids,
            |j| pos.get(j).copied().unwrap_or(j),
            |j| segs.get(j).copied().unwrap_or(0),
            device,
        )
    }

    /// Embeddings of one row: token `j` at position `pos(j)` in segment
    /// `seg(j)`, then the embedding layer norm.
    fn embed_row(
        &self,
        p: &Params,
        ids: &[u32],
        pos: impl Fn(usize) -> usize,
        seg: impl Fn(usize) -> u32,
        device: &Device,
    ) -> Tensor<3> {
        let l = &self.layout;
        let c = &self.cfg;
        let n = ids.len().max(1);
        let mut idv: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
        idv.resize(n, 0);
        let posv: Vec<i64> = (0..n)
            .map(|j| pos(j).min(c.max_positions - 1) as i64)
            .collect();
        let segv: Vec<i64> = (0..n).map(|j| seg(j) as i64).collect();
        let t = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [1, n]), device);
        let h = self.embed_words(p, t(idv))
            + embed(p.get(l.pos), t(posv))
            + embed(p.get(l.typ), t(segv));
        ln3(p, l.emb_ln, h, c.layer_norm_eps)
    }

    /// One encoder layer over `h`, attending to its own keys and values plus
    /// `extra` (keys and values of other blocks, `[1, H, n, dh]`). Returns
    /// the new states and this block's own keys and values.
    fn enc_layer(
        &self,
        p: &Params,
        layer: &EncLayer,
        h: Tensor<3>,
        extra: &[&(Tensor<4>, Tensor<4>)],
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let c = &self.cfg;
        let (k, v) = project_kv(p, layer.attn, c.heads, h.clone());
        let (kk, vv) = if extra.is_empty() {
            (k.clone(), v.clone())
        } else {
            let mut ks = vec![k.clone()];
            let mut vs = vec![v.clone()];
            for (ek, ev) in extra {
                ks.push(ek.clone());
                vs.push(ev.clone());
            }
            (Tensor::cat(ks, 2), Tensor::cat(vs, 2))
        };
        let a = attend(p, layer.attn, c.heads, h.clone(), kk, vv, None);
        let h = ln3(p, layer.ln1, h + a, c.layer_norm_eps);
        let f = lin3(
            p,
            layer.ff2,
            activation::gelu(lin3(p, layer.ff1, h.clone())),
        );
        (ln3(p, layer.ln2, h + f, c.layer_norm_eps), (k, v))
    }

    /// Encode one tool block on its own (its tokens up to and including its
    /// `[SEP]`, segment 1, positions from 1) through the block-masked
    /// layers, in burn operations: the reference that tests hold the served
    /// [`crate::fastenc::tool_block`] to. Under the block mask this is
    /// exactly what the joint encoding computes for those rows in those
    /// layers, so the result can be cached and reused with any query.
    pub fn encode_tool_block(
        &self,
        p: &Params,
        ids: &[u32],
        device: &Device,
    ) -> Result<ToolBlock, ModelError> {
        let mut h = self.embed_block(p, ids, 1, 1, device);
        let mut kv = Vec::with_capacity(self.layout.enc.len());
        let n = ids.len().max(1);
        let d = self.cfg.hidden;
        let host = |t: Tensor<4>| -> Result<Vec<f32>, ModelError> {
            t.swap_dims(1, 2)
                .reshape([n, d])
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| ModelError::Weights(format!("{e:?}")))
        };
        for layer in self.layout.enc.iter().take(self.cfg.masked_layers()) {
            let (nh, (k, v)) = self.enc_layer(p, layer, h, &[]);
            h = nh;
            kv.push((host(k)?, host(v)?));
        }
        Ok(ToolBlock { kv, out: h, len: n })
    }

    /// Encode the query block (`[CLS] query [SEP]`, segment 0, positions
    /// from 0) against encoded tool blocks, and return the encoder output of
    /// the whole input in rendering order (`[1, S, D]`): the same as
    /// [`Net::encode`] under the block mask. With the mask in the lowest
    /// layers only (`block_layers`), every row then runs through the fully
    /// attending layers above. The big matrix products run in burn or as
    /// integer products; attention, layer norms and residuals are
    /// hand-written (burn's per-operation cost dominated them), see
    /// [`crate::fastenc::upper_pass`]. [`Net::encode_with_blocks_reference`]
    /// is the all-burn version (full block mask) that tests hold this one to.
    pub fn encode_with_blocks(
        &self,
        p: &Params,
        query_ids: &[u32],
        blocks: &[&ToolBlock],
        device: &Device,
    ) -> Result<Tensor<3>, ModelError> {
        crate::fastenc::upper_pass(self, p, query_ids, blocks, device)
    }

    /// [`Net::encode_with_blocks`] in burn operations only (for tests).
    pub fn encode_with_blocks_reference(
        &self,
        p: &Params,
        query_ids: &[u32],
        blocks: &[&ToolBlock],
        device: &Device,
    ) -> Tensor<3> {
        let c = &self.cfg;
        let d = c.hidden;
        let dev_kv: Vec<Vec<(Tensor<4>, Tensor<4>)>> = blocks
            .iter()
            .map(|b| {
                b.kv.iter()
                    .map(|(k, v)| {
                        let t = |x: &Vec<f32>| {
                            split_heads(
                                Tensor::<3>::from_data(
                                    TensorData::new(x.clone(), [1, b.len, d]),
                                    device,
                                ),
                                c.heads,
                            )
                        };
                        (t(k), t(v))
                    })
                    .collect()
            })
            .collect();
        let mut h = self.embed_block(p, query_ids, 0, 0, device);
        for (i, layer) in self.layout.enc.iter().enumerate() {
            let extra: Vec<&(Tensor<4>, Tensor<4>)> = dev_kv.iter().map(|b| &b[i]).collect();
            h = self.enc_layer(p, layer, h, &extra).0;
        }
        let mut parts = vec![h];
        parts.extend(blocks.iter().map(|b| b.out.clone()));
        Tensor::cat(parts, 1)
    }

    /// Decoder plus output heads: logits `[B, T, A + G + S]` over the output
    /// space of [`OutSpace`] (source positions unmasked: callers mask).
    pub fn decode(
        &self,
        p: &Params,
        enc: Tensor<3>,
        pad_bias: Tensor<4>,
        y: &DecBatch,
    ) -> Tensor<3> {
        let prep = self.prepare(p, enc, pad_bias);
        self.decode_prepared(p, &prep, y, false)
    }

    /// The encoder states plus the learned vectors of each token's
    /// lexical feature bits (`feats`: `[B, S, features::COUNT]` 0/1). The
    /// states unchanged when the model has no features.
    pub fn add_features(&self, p: &Params, enc: Tensor<3>, feats: Option<Tensor<3>>) -> Tensor<3> {
        match (self.layout.features, feats) {
            (Some(w), Some(f)) => {
                let [b, s, k] = f.dims();
                let d = self.cfg.hidden;
                enc + f.reshape([b * s, k]).matmul(p.get(w)).reshape([b, s, d])
            }
            _ => enc,
        }
    }

    /// The features of one rendered request as a `[1, S, features::COUNT]`
    /// tensor, or `None` for a model without features.
    pub fn request_features(
        &self,
        r: &crate::render::Rendered,
        device: &Device,
    ) -> Option<Tensor<3>> {
        self.layout.features?;
        let bits = crate::features::token_features(r);
        let n = bits.len();
        Some(Tensor::from_data(
            TensorData::new(
                crate::features::dense(&bits),
                [1, n, crate::features::COUNT],
            ),
            device,
        ))
    }

    /// The per-request part of decoding that does not depend on the steps.
    pub fn prepare(&self, p: &Params, enc: Tensor<3>, pad_bias: Tensor<4>) -> Prepared {
        let l = &self.layout;
        let cross_kv = l
            .dec
            .iter()
            .map(|layer| project_kv(p, layer.cross, self.cfg.heads, enc.clone()))
            .collect();
        let ptr_k = lin3(p, l.ptr_k, enc.clone());
        let gen_table = match &p.words {
            Some(w) => w.gen_table.clone(),
            None => p.get(l.word).select(0, self.gen_ids.clone()),
        };
        Prepared {
            ptr_kt: ptr_k.clone().swap_dims(1, 2),
            ptr_k,
            gen_table_t: gen_table.clone().transpose(),
            gen_table,
            cross_kv,
            enc,
            pad_bias,
        }
    }

    /// Decoder over prepared encoder states. With `last_only`, the output
    /// heads run on the last step only (`[B, 1, V]`), as greedy decoding needs.
    pub fn decode_prepared(
        &self,
        p: &Params,
        prep: &Prepared,
        y: &DecBatch,
        last_only: bool,
    ) -> Tensor<3> {
        let l = &self.layout;
        let c = &self.cfg;
        let [b, t] = y.toks.dims();
        let device = y.toks.device();
        let tt = t.min(c.max_steps);
        let mut x = self.embed_words(p, y.toks.clone())
            + embed(p.get(l.dec_kind), y.kinds.clone())
            + p.get(l.dec_pos).narrow(0, 0, tt).unsqueeze_dim::<3>(0)
            + y.ptr.clone().matmul(prep.enc.clone());
        // tril_mask marks the positions to mask (above the diagonal).
        let causal = Tensor::<2, Bool>::tril_mask([t, t], 0, &device);
        let causal_bias = Tensor::<2>::zeros([t, t], &device)
            .mask_fill(causal, -1.0e4)
            .reshape([1, 1, t, t]);
        for (layer, (ck, cv)) in l.dec.iter().zip(&prep.cross_kv) {
            let hn = ln3(p, layer.ln_self, x.clone(), 1e-5);
            x = x + attention(
                p,
                layer.self_attn,
                c.heads,
                hn.clone(),
                hn,
                Some(causal_bias.clone()),
            );
            x = self.cross_and_ffn(p, layer, prep, (ck, cv), x);
        }
        let x = if last_only && t > 1 {
            x.slice([0..b, t - 1..t])
        } else {
            x
        };
        self.heads(p, prep, x)
    }

    /// The second half of a decoder layer: cross-attention to the encoder,
    /// then the feed-forward block (both pre-LN, residual).
    fn cross_and_ffn(
        &self,
        p: &Params,
        layer: &DecLayer,
        prep: &Prepared,
        (ck, cv): (&Tensor<4>, &Tensor<4>),
        x: Tensor<3>,
    ) -> Tensor<3> {
        let hn = ln3(p, layer.ln_cross, x.clone(), 1e-5);
        let x = x + attend(
            p,
            layer.cross,
            self.cfg.heads,
            hn,
            ck.clone(),
            cv.clone(),
            Some(prep.pad_bias.clone()),
        );
        let hn = ln3(p, layer.ln_ff, x.clone(), 1e-5);
        let f = lin3(p, layer.ff2, activation::gelu(lin3(p, layer.ff1, hn)));
        x + f
    }

    /// Output heads over decoder states `[B, T, D]`: logits `[B, T, V]`.
    fn heads(&self, p: &Params, prep: &Prepared, x: Tensor<3>) -> Tensor<3> {
        let l = &self.layout;
        let [b, t, d] = x.dims();
        let h = ln3(p, l.dec_ln, x, 1e-5);
        let act = lin3(p, l.act, h.clone());
        let g = prep.gen_table.dims()[0];
        let gq = lin3(p, l.gen_q, h.clone()).reshape([b * t, d]);
        let gen_logits =
            (gq.matmul(prep.gen_table_t.clone()) + p.get(l.gen_bias)).reshape([b, t, g]);
        let pq = lin3(p, l.ptr_q, h);
        let ptr = pq.matmul(prep.ptr_kt.clone()) / (d as f64).sqrt();
        Tensor::cat(vec![act, gen_logits, ptr], 2)
    }

    /// An empty incremental decoding state (batch of one).
    pub fn start_decoding(&self) -> DecState {
        DecState {
            kv: vec![None; self.layout.dec.len()],
            t: 0,
        }
    }

    /// One incremental decoder step (batch of one): feed the step input
    /// `(tok, kind, pointer position)` and get the logits `[V]` of the next
    /// output. The self-attention keys and values of earlier steps are kept
    /// in `st`, so a step costs one position, not the whole prefix; the
    /// logits equal [`Net::decode_prepared`]'s last step over the same
    /// inputs.
    pub fn decode_step(
        &self,
        p: &Params,
        prep: &Prepared,
        st: &mut DecState,
        input: (u32, u32, Option<usize>),
    ) -> Tensor<3> {
        let l = &self.layout;
        let c = &self.cfg;
        let device = prep.enc.device();
        let (tok, knd, ptr) = input;
        let ids = |v: i64| Tensor::<2, Int>::from_data(TensorData::new(vec![v], [1, 1]), &device);
        let pos = st.t.min(c.max_steps - 1);
        let mut x = self.embed_words(p, ids(tok as i64))
            + embed(p.get(l.dec_kind), ids(knd as i64))
            + p.get(l.dec_pos).narrow(0, pos, 1).unsqueeze_dim::<3>(0);
        let [_, s, d] = prep.enc.dims();
        if let Some(q) = ptr.filter(|&q| q < s) {
            x = x + prep.enc.clone().slice([0..1, q..q + 1, 0..d]);
        }
        for ((layer, (ck, cv)), cache) in l.dec.iter().zip(&prep.cross_kv).zip(st.kv.iter_mut()) {
            let hn = ln3(p, layer.ln_self, x.clone(), 1e-5);
            let (k, v) = project_kv(p, layer.self_attn, c.heads, hn.clone());
            let (k, v) = match cache.take() {
                Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                None => (k, v),
            };
            *cache = Some((k.clone(), v.clone()));
            x = x + attend(p, layer.self_attn, c.heads, hn, k, v, None);
            x = self.cross_and_ffn(p, layer, prep, (ck, cv), x);
        }
        st.t += 1;
        self.heads(p, prep, x)
    }
}

/// Self-attention keys and values of the steps decoded so far.
#[derive(Debug, Clone)]
pub struct DecState {
    kv: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    t: usize,
}

/// Deterministic RNG used across the crate.
pub type Rng64 = rand_chacha::ChaCha8Rng;
