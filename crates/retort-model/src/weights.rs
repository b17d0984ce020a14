//! Weight I/O: the MiniLM import and retort's own model files.
//!
//! A model directory holds `config.json` ([`ModelConfig`]), `tokenizer.json`
//! and `model.safetensors`. Tensors are stored `f32`, `f16`, or `i8` with a
//! per-row `f32` scale in `<name>.__scale` (the compact form of shipped
//! models). Every file is written atomically (temporary file, then rename).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::net::{HostParams, Layout, QuantRows};

/// How tensors are stored in a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Exact (checkpoints).
    F32,
    /// Big matrices as int8 with a per-row scale, everything else f16.
    Compact,
}

/// Write `bytes` to `path` atomically (temporary file, sync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    retort_core::fsutil::write_atomic(path, bytes).map_err(|e| ModelError::io(path, e))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serialize named tensors (`name -> (shape, values)`).
pub fn serialize_tensors(
    items: &[(String, [usize; 2], &[f32])],
    storage: Storage,
) -> Result<Vec<u8>, ModelError> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape, v) in items {
        let big = shape[0] >= 64 && shape[1] >= 64 && shape[0] * shape[1] >= 65536;
        match storage {
            Storage::F32 => owned.push((name.clone(), Dtype::F32, shape.to_vec(), f32_bytes(v))),
            Storage::Compact if big => {
                let (rows, cols) = (shape[0], shape[1]);
                let QuantRows {
                    q, scale: scales, ..
                } = QuantRows::quantize(rows, cols, v);
                let q: Vec<u8> = q.into_iter().map(|b| b as u8).collect();
                owned.push((name.clone(), Dtype::I8, shape.to_vec(), q));
                owned.push((
                    format!("{name}.__scale"),
                    Dtype::F32,
                    vec![rows],
                    f32_bytes(&scales),
                ));
            }
            Storage::Compact => owned.push((
                name.clone(),
                Dtype::F16,
                shape.to_vec(),
                v.iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect(),
            )),
        }
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::Weights(format!("{n}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    safetensors::tensor::serialize(views, None).map_err(|e| ModelError::Weights(e.to_string()))
}

/// Tensors by name: shape and f32 values.
pub type TensorMap = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Read every tensor of a safetensors buffer as f32 (`i8` dequantized).
pub fn read_tensors(bytes: &[u8]) -> Result<TensorMap, ModelError> {
    read_tensors_except(bytes, &[])
}

/// [`read_tensors`] without the tensors named in `skip`.
pub fn read_tensors_except(bytes: &[u8], skip: &[&str]) -> Result<TensorMap, ModelError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::Weights(e.to_string()))?;
    let mut out = HashMap::new();
    for name in st.names() {
        if name.ends_with(".__scale") || skip.contains(&name) {
            continue;
        }
        let t = st
            .tensor(name)
            .map_err(|e| ModelError::Weights(e.to_string()))?;
        let data = t.data();
        let vals: Vec<f32> = match t.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::I8 => int8_tensor(&st, name, &t)?.dequantize(),
            Dtype::I64 => continue,
            other => {
                return Err(ModelError::Weights(format!(
                    "{name}: unsupported dtype {other:?}"
                )));
            }
        };
        out.insert(name.to_string(), (t.shape().to_vec(), vals));
    }
    Ok(out)
}

/// The tensors among `names` that the file stores as int8 with per-row
/// scales ([`Storage::Compact`]), by name (one pass over the file's header;
/// names stored otherwise or absent are left out).
pub fn int8_tensors(
    bytes: &[u8],
    names: &[&str],
) -> Result<HashMap<String, QuantRows>, ModelError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::Weights(e.to_string()))?;
    let mut out = HashMap::new();
    for &name in names {
        let Ok(t) = st.tensor(name) else {
            continue;
        };
        if t.dtype() == Dtype::I8 {
            out.insert(name.to_string(), int8_tensor(&st, name, &t)?);
        }
    }
    Ok(out)
}

/// An int8 tensor and its `NAME.__scale` row scales.
fn int8_tensor(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
    t: &safetensors::tensor::TensorView<'_>,
) -> Result<QuantRows, ModelError> {
    let s = st
        .tensor(&format!("{name}.__scale"))
        .map_err(|_| ModelError::Weights(format!("{name}: int8 without scales")))?;
    let scale: Vec<f32> = s
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let rows = t.shape().first().copied().unwrap_or(0);
    let cols: usize = t.shape().iter().skip(1).product();
    if rows == 0 || scale.len() != rows || t.data().len() != rows * cols {
        return Err(ModelError::Weights(format!("{name}: bad scales")));
    }
    Ok(QuantRows {
        rows,
        cols,
        q: t.data().iter().map(|&b| b as i8).collect(),
        scale,
    })
}

/// Parameters in layout order from a model file written by [`serialize_params`].
pub fn params_from_bytes(layout: &Layout, bytes: &[u8]) -> Result<HostParams, ModelError> {
    params_from_bytes_except(layout, bytes, &[])
}

/// [`params_from_bytes`], leaving the parameters `skip` (layout indices)
/// as empty placeholders that the caller fills another way.
pub fn params_from_bytes_except(
    layout: &Layout,
    bytes: &[u8],
    skip: &[usize],
) -> Result<HostParams, ModelError> {
    let skip_name: Vec<&str> = skip
        .iter()
        .filter_map(|&i| layout.specs.get(i))
        .map(|s| s.name.as_str())
        .collect();
    let mut map = read_tensors_except(bytes, &skip_name)?;
    let values = layout
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if skip.contains(&i) {
                return Ok(Vec::new());
            }
            let (shape, v) = map
                .remove(&s.name)
                .ok_or_else(|| ModelError::Weights(format!("missing tensor {}", s.name)))?;
            if v.len() != s.shape[0] * s.shape[1] {
                return Err(ModelError::Weights(format!(
                    "{}: shape {:?}, expected {:?}",
                    s.name, shape, s.shape
                )));
            }
            Ok(v)
        })
        .collect::<Result<_, _>>()?;
    Ok(HostParams { values })
}

/// Serialize parameters (layout names), plus extra named tensors.
pub fn serialize_params(
    layout: &Layout,
    p: &HostParams,
    storage: Storage,
) -> Result<Vec<u8>, ModelError> {
    let items: Vec<(String, [usize; 2], &[f32])> = layout
        .specs
        .iter()
        .zip(&p.values)
        .map(|(s, v)| (s.name.clone(), s.shape, v.as_slice()))
        .collect();
    serialize_tensors(&items, storage)
}

/// Copy the MiniLM (HF BERT) weights into `p`. Returns how many tensors came
/// from the file; parameters MiniLM does not have keep their values.
pub fn import_minilm(layout: &Layout, p: &mut HostParams, dir: &Path) -> Result<usize, ModelError> {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
    let map = read_tensors(&bytes)?;
    let mut n = 0;
    for (i, s) in layout.specs.iter().enumerate() {
        let Some((shape, v)) = map.get(&s.name) else {
            continue;
        };
        let want = s.shape[0] * s.shape[1];
        if v.len() != want {
            return Err(ModelError::Weights(format!(
                "MiniLM {}: shape {:?}, expected {:?}",
                s.name, shape, s.shape
            )));
        }
        let transpose = shape.len() == 2 && !s.name.starts_with("embeddings.");
        p.values[i] = if transpose {
            // PyTorch Linear stores [out, in]; we keep [in, out].
            let (o, inn) = (shape[0], shape[1]);
            let mut t = vec![0f32; want];
            for r in 0..o {
                for c in 0..inn {
                    t[c * o + r] = v[r * inn + c];
                }
            }
            t
        } else {
            v.clone()
        };
        n += 1;
    }
    Ok(n)
}

/// Write a model directory: `config.json`, `tokenizer.json`, `model.safetensors`.
pub fn save_model_dir(
    dir: &Path,
    cfg: &ModelConfig,
    layout: &Layout,
    p: &HostParams,
    tokenizer_json: &[u8],
    storage: Storage,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let cfg_json = serde_json::to_vec_pretty(cfg).map_err(|e| ModelError::Config(e.to_string()))?;
    write_atomic(&dir.join("config.json"), &cfg_json)?;
    write_atomic(&dir.join("tokenizer.json"), tokenizer_json)?;
    let bytes = serialize_params(layout, p, storage)?;
    write_atomic(&dir.join("model.safetensors"), &bytes)
}
