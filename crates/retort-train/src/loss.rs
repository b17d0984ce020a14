//! The distillation loss over the constrained output space.
//!
//! `loss = α·T²·KL(p_teacher^T ‖ softmax(z/T)) + β·CE`, where `z` are the
//! student's logits with disallowed outputs masked, and the CE marginalises
//! over all gold outputs of a step (a value piece may be generated or copied
//! from any position holding it).

use burn::tensor::{Tensor, activation};

/// `log Σ exp(x)` over the last dimension of a rank-3 tensor.
pub fn logsumexp3(x: Tensor<3>) -> Tensor<3> {
    let m = x.clone().max_dim(2).detach();
    (x - m.clone()).exp().sum_dim(2).log() + m
}

/// Loss weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub temperature: f64,
    pub alpha: f64,
    pub beta: f64,
}

/// Parts of the loss of one batch (means over the weighted steps).
pub struct LossParts {
    pub total: Tensor<1>,
    pub ce: Tensor<1>,
    pub kd: Option<Tensor<1>>,
}

/// Cross-entropy against the set of gold outputs, mean over real steps.
pub fn set_ce(
    logits: Tensor<3>,
    allowed_bias: Tensor<3>,
    target_bias: Tensor<3>,
    weight: Tensor<2>,
) -> Tensor<1> {
    let [b, t, _] = logits.dims();
    let z = logits + allowed_bias;
    let lse_all = logsumexp3(z.clone());
    let lse_gold = logsumexp3(z + target_bias);
    let nll = (lse_all - lse_gold).reshape([b, t]);
    let denom = weight.clone().sum().clamp_min(1.0);
    (nll * weight).sum() / denom
}

/// `T² · KL(p ‖ softmax(z/T))`, mean over steps with teacher probabilities.
pub fn kd_term(
    logits: Tensor<3>,
    allowed_bias: Tensor<3>,
    teacher_p: Tensor<3>,
    weight: Tensor<2>,
    temperature: f64,
) -> Tensor<1> {
    let [b, t, _] = logits.dims();
    let log_q = activation::log_softmax((logits + allowed_bias) / temperature, 2);
    let log_p = (teacher_p.clone() + 1e-12).log();
    let kl = (teacher_p * (log_p - log_q)).sum_dim(2).reshape([b, t]);
    let denom = weight.clone().sum().clamp_min(1.0);
    (kl * weight).sum() / denom * (temperature * temperature)
}

/// Teacher probabilities from teacher logits: `softmax((z_t + mask)/T)`.
pub fn teacher_probs(
    teacher_logits: Tensor<3>,
    allowed_bias: Tensor<3>,
    temperature: f64,
) -> Tensor<3> {
    activation::softmax((teacher_logits + allowed_bias) / temperature, 2)
}

/// The full loss.
pub fn loss(
    logits: Tensor<3>,
    allowed_bias: Tensor<3>,
    target_bias: Tensor<3>,
    weight: Tensor<2>,
    soft: Option<(Tensor<3>, Tensor<2>)>,
    w: LossWeights,
) -> LossParts {
    let ce = set_ce(logits.clone(), allowed_bias.clone(), target_bias, weight);
    match soft {
        Some((p, sw)) if w.alpha > 0.0 => {
            let kd = kd_term(logits, allowed_bias, p, sw, w.temperature);
            let total = kd.clone() * w.alpha + ce.clone() * w.beta;
            LossParts {
                total,
                ce,
                kd: Some(kd),
            }
        }
        _ => {
            let total = ce.clone() * if w.alpha > 0.0 { w.beta } else { 1.0 };
            LossParts {
                total,
                ce,
                kd: None,
            }
        }
    }
}
