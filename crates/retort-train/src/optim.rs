//! AdamW over the flat parameter list, with global-norm gradient clipping and
//! a warmup + cosine learning-rate schedule. Moments are plain tensors, so a
//! checkpoint holds everything needed to continue exactly.

use burn::tensor::{Device, Tensor, TensorData};
use retort_model::net::{HostParams, Layout, Params};

use crate::TrainError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub warmup: usize,
    pub total_steps: usize,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_frac: f64,
}

impl AdamWConfig {
    /// Learning rate at (1-based) step `t`.
    pub fn lr_at(&self, t: usize) -> f64 {
        if t <= self.warmup && self.warmup > 0 {
            return self.lr * t as f64 / self.warmup as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup).max(1) as f64;
        let prog = ((t - self.warmup.min(t)) as f64 / span).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * prog).cos());
        self.lr * (self.min_lr_frac + (1.0 - self.min_lr_frac) * cos)
    }
}

/// A named host tensor: name, shape, values.
pub type NamedTensor = (String, [usize; 2], Vec<f32>);

/// Optimizer state: first and second moments of trainable parameters.
pub struct AdamW {
    pub cfg: AdamWConfig,
    pub m: Vec<Option<Tensor<2>>>,
    pub v: Vec<Option<Tensor<2>>>,
    /// Steps taken.
    pub t: usize,
}

/// What one step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    pub grad_norm: f64,
    pub lr: f64,
}

impl AdamW {
    pub fn new(cfg: AdamWConfig, n: usize) -> Self {
        AdamW {
            cfg,
            m: vec![None; n],
            v: vec![None; n],
            t: 0,
        }
    }

    /// One update. `trainable[i]` says which parameters learn; weight decay
    /// applies to matrices only (not to biases, norms, or vectors).
    pub fn step(
        &mut self,
        params: &mut Params,
        grads: &burn::tensor::Gradients,
        trainable: &[bool],
        layout: &Layout,
    ) -> StepInfo {
        let gs: Vec<Option<Tensor<2>>> = params
            .t
            .iter()
            .zip(trainable)
            .map(|(p, &tr)| if tr { p.grad(grads) } else { None })
            .collect();
        self.step_grads(params, gs, layout)
    }

    /// One update from gradients already taken (`None`: no update).
    pub fn step_grads(
        &mut self,
        params: &mut Params,
        gs: Vec<Option<Tensor<2>>>,
        layout: &Layout,
    ) -> StepInfo {
        self.t += 1;
        let lr = self.cfg.lr_at(self.t);
        let sq: Vec<Tensor<1>> = gs
            .iter()
            .flatten()
            .map(|g| g.clone().powf_scalar(2.0).sum())
            .collect();
        let norm = if sq.is_empty() {
            0.0
        } else {
            Tensor::cat(sq, 0).sum().into_scalar::<f32>() as f64
        }
        .sqrt();
        let scale = if self.cfg.clip_norm > 0.0 && norm > self.cfg.clip_norm {
            self.cfg.clip_norm / (norm + 1e-6)
        } else {
            1.0
        };
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for (i, g) in gs.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = g * scale;
            let m = match self.m[i].take() {
                Some(m) => m * b1 + g.clone() * (1.0 - b1),
                None => g.clone() * (1.0 - b1),
            };
            let v = match self.v[i].take() {
                Some(v) => v * b2 + g.clone().powf_scalar(2.0) * (1.0 - b2),
                None => g.powf_scalar(2.0) * (1.0 - b2),
            };
            let p = params.t[i].clone().inner();
            let upd = (m.clone() / bc1) / ((v.clone() / bc2).sqrt() + self.cfg.eps);
            let shape = layout.specs[i].shape;
            let decay = shape[0] > 1 && shape[1] > 1 && self.cfg.weight_decay > 0.0;
            let newp = if decay {
                p.clone() - (upd + p * self.cfg.weight_decay) * lr
            } else {
                p - upd * lr
            };
            params.t[i] = Tensor::from_inner(newp).require_grad();
            self.m[i] = Some(m);
            self.v[i] = Some(v);
        }
        StepInfo {
            grad_norm: norm,
            lr,
        }
    }

    /// Moments as host tensors (`m.<name>`, `v.<name>`), for checkpoints.
    pub fn to_host(&self, layout: &Layout) -> Result<Vec<NamedTensor>, TrainError> {
        let mut out = Vec::new();
        for (i, s) in layout.specs.iter().enumerate() {
            for (prefix, t) in [("m", &self.m[i]), ("v", &self.v[i])] {
                if let Some(t) = t {
                    let v = t
                        .to_data()
                        .try_to_vec::<f32>()
                        .map_err(|e| TrainError::Invalid(format!("{e:?}")))?;
                    out.push((format!("{prefix}.{}", s.name), s.shape, v));
                }
            }
        }
        Ok(out)
    }

    /// Restore moments written by [`AdamW::to_host`].
    pub fn load_host(
        &mut self,
        layout: &Layout,
        map: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
        device: &Device,
    ) {
        for (i, s) in layout.specs.iter().enumerate() {
            let get = |prefix: &str| {
                map.get(&format!("{prefix}.{}", s.name)).and_then(|(_, v)| {
                    (v.len() == s.shape[0] * s.shape[1]).then(|| {
                        Tensor::<2>::from_data(TensorData::new(v.clone(), s.shape), device)
                    })
                })
            };
            self.m[i] = get("m");
            self.v[i] = get("v");
        }
    }
}

/// Parameters on the training device; frozen ones do not require gradients.
pub fn upload_trainable(
    host: &HostParams,
    layout: &Layout,
    trainable: &[bool],
    device: &Device,
) -> Params {
    host.to_device(layout, device, Some(trainable))
}
