//! SISS — Subtracted Importance-Sampled Scores (Alberti et al., ICLR 2025; docs/methods.md, SISS).
//!
//! One noisy batch `m` is drawn from the defensive mixture of the retain image `x` and the
//! forget image `a` (Bernoulli(λ) per pair, shared `t` and `eps`); both terms regress the
//! *implied* noises `(m − γx)/σ` and `(m − γa)/σ`, importance-weighted in log space.
//!
//! Two forms:
//! - `official` (default, `claserken/SISS` code): `x ~ X\A`, `g = g_x − (s/‖g_a‖)·g_a` with
//!   `s = scaling_norm`, then the global clip. Burn has no `retain_graph`, so `g_a` comes from a
//!   second forward of the same inputs (identical values) — 2 forwards, 2 backwards.
//! - `paper`: `x ~ X = X\A ∪ A`, loss `n/(n−k)·L_x − s·k/(n−k)·L_a` with superfactor `s`;
//!   `s = 1` is an unbiased estimate of the naive-deletion loss. 1 forward, 1 backward.

use burn::tensor::Tensor;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::combine::{ForgetScaling, norm_fixed_subtraction};
use super::importance::{WeightStats, half_scaled_distance, log_weights};
use super::step::{
    self, Clean, NoisedBatch, StepContext, accumulate, class_inputs, draw, image_shape,
    timestep_tensor,
};
use super::{Direction, Method, StepReport};
use crate::data::ImageSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SissForm {
    #[default]
    Official,
    Paper,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// No `deny_unknown_fields`: serde ignores it around a flattened struct; `scaling` refuses
// the keys no field took.
#[serde(default)]
pub struct SissConfig {
    /// Mixture weight λ ∈ [0, 1]: probability a noisy sample comes from the forget image.
    pub lambda: f64,
    /// `official` form: the norm the forget gradient is rescaled to.
    #[serde(flatten)]
    pub scaling: ForgetScaling,
    pub form: SissForm,
    /// `paper` form: superfactor `s` on the subtracted term (1 = unbiased).
    pub superfactor: f32,
}

impl Default for SissConfig {
    /// The SISS paper's MNIST settings.
    fn default() -> Self {
        Self {
            lambda: 0.5,
            scaling: ForgetScaling::default(),
            form: SissForm::default(),
            superfactor: 1.0,
        }
    }
}

impl SissConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.lambda) {
            return Err(format!("method.lambda = {} is outside [0, 1]", self.lambda));
        }
        super::check_non_negative("method.superfactor", self.superfactor as f64)?;
        self.scaling.validate()
    }
}

pub struct Siss {
    pub config: SissConfig,
}

/// One mixture batch: the noisy inputs, both implied-noise targets and the weights.
pub struct MixtureBatch {
    pub m: Vec<f32>,
    pub target_x: Vec<f32>,
    pub target_a: Vec<f32>,
    pub w_x: Vec<f64>,
    pub w_a: Vec<f64>,
    pub from_forget: Vec<bool>,
    pub t: Vec<usize>,
    pub labels: Vec<Option<usize>>,
}

/// Draws `m` from the defensive mixture and computes targets and log-space weights on the
/// host in f64 (docs/methods.md, SISS).
pub fn mixture_batch(cx: &mut StepContext<'_>, x: &Clean, a: &Clean, lambda: f64) -> MixtureBatch {
    let b = x.labels.len();
    let shape = image_shape(cx);
    let numel: usize = shape.iter().product();
    let t = step::draw_timesteps(cx, b);
    let eps = step::gaussian(cx.rng, b * numel);
    let from_forget: Vec<bool> = (0..b).map(|_| cx.rng.random_bool(lambda)).collect();
    let mut out = MixtureBatch {
        m: Vec::with_capacity(b * numel),
        target_x: Vec::with_capacity(b * numel),
        target_a: Vec::with_capacity(b * numel),
        w_x: Vec::with_capacity(b),
        w_a: Vec::with_capacity(b),
        from_forget: from_forget.clone(),
        t: t.clone(),
        labels: Vec::with_capacity(b),
    };
    for i in 0..b {
        let abar = cx.schedule.abar(t[i] as i64) as f64;
        let (gamma, sigma) = (abar.sqrt(), (1.0 - abar).sqrt());
        let range = i * numel..(i + 1) * numel;
        let (xi, ai, ei) = (&x.host[range.clone()], &a.host[range.clone()], &eps[range]);
        let src = if from_forget[i] { ai } else { xi };
        let m: Vec<f32> = src
            .iter()
            .zip(ei)
            .map(|(&s, &e)| (gamma * s as f64 + sigma * e as f64) as f32)
            .collect();
        let delta =
            half_scaled_distance(&m, xi, gamma, sigma) - half_scaled_distance(&m, ai, gamma, sigma);
        let (log_w_x, log_w_a) = log_weights(delta, lambda);
        out.w_x.push(log_w_x.exp());
        out.w_a.push(log_w_a.exp());
        let implied = |c: &[f32]| -> Vec<f32> {
            m.iter()
                .zip(c)
                .map(|(&m, &c)| ((m as f64 - gamma * c as f64) / sigma) as f32)
                .collect()
        };
        out.target_x.extend(implied(xi));
        out.target_a.extend(implied(ai));
        out.m.extend(m);
        out.labels.push(if from_forget[i] {
            a.labels[i]
        } else {
            x.labels[i]
        });
    }
    out
}

fn weight_tensor(w: &[f64], device: &burn::tensor::Device) -> Tensor<1> {
    // Weights are bounded by 1/λ and 1/(1−λ) for 0 < λ < 1; at λ ∈ {0, 1} one of them is
    // an unbounded exp(±δ): saturate instead of producing inf.
    let v: Vec<f32> = w.iter().map(|&w| w.min(f32::MAX as f64) as f32).collect();
    Tensor::from_floats(v.as_slice(), device)
}

/// `X = X\A ∪ A` for the paper form.
fn full_set(cx: &StepContext<'_>) -> ImageSet {
    let mut all = cx.data.retain.clone();
    all.extend(cx.data.forget.clone());
    all
}

/// One mixture batch as the two regressions SISS weights: the same noisy inputs onto the
/// implied noise of `x` (weights `w_x`) and of `a` (weights `w_a`).
pub struct WeightedTerms {
    pub batch: MixtureBatch,
    pub x: NoisedBatch,
    pub a: NoisedBatch,
}

/// Draws `x ~ x_set`, `a ~ A` and the mixture batch, and builds its two weighted
/// regressions (no forward pass here).
pub fn weighted_terms(cx: &mut StepContext<'_>, x_set: &ImageSet, lambda: f64) -> WeightedTerms {
    let b = cx.batch_size;
    let shape = image_shape(cx);
    let x = draw(x_set, b, cx.rng, cx.device);
    let a = draw(&cx.data.forget, b, cx.rng, cx.device);
    let batch = mixture_batch(cx, &x, &a, lambda);
    let classes = class_inputs(cx, &batch.labels);
    let device = cx.device;
    let image = |values: &[f32]| step::image_tensor(values.to_vec(), b, shape, device);
    let x = NoisedBatch {
        xt: image(&batch.m),
        t: timestep_tensor(&batch.t, device),
        classes,
        target: image(&batch.target_x),
        weights: Some(weight_tensor(&batch.w_x, device)),
    };
    let a = x.with_target(
        image(&batch.target_a),
        Some(weight_tensor(&batch.w_a, device)),
    );
    WeightedTerms { batch, x, a }
}

/// `(n/(n−k), s·k/(n−k))` of the paper form.
pub fn paper_coefficients(n: usize, k: usize, superfactor: f32) -> (f32, f32) {
    let (n, k) = (n as f32, k as f32);
    (n / (n - k), superfactor * k / (n - k))
}

impl Method for Siss {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        let x_set = match self.config.form {
            SissForm::Official => cx.data.retain.clone(),
            SissForm::Paper => full_set(cx),
        };
        let WeightedTerms { batch, x, a } = weighted_terms(cx, &x_set, self.config.lambda);
        let mut report = StepReport {
            weights: Some(WeightStats::of(&batch.w_x, &batch.w_a, &batch.from_forget)),
            ..StepReport::default()
        };
        let grad = match self.config.form {
            SissForm::Official => {
                // One graph per term: same inputs and class inputs, identical predictions
                // (Burn has no retain_graph).
                let (lx, g_x) = cx.loss_and_grad(&x, 1.0);
                let (la, g_a) = cx.loss_and_grad(&a, 1.0);
                report.term("retain (L_x)", lx);
                report.term("forget (L_a)", la);
                report.grad_norm("retain", g_x.norm());
                report.grad_norm("forget", g_a.norm());
                let target = self.config.scaling.forget_norm(g_x.norm());
                report.coefficient("forget gradient norm", target);
                let (g, factor) = norm_fixed_subtraction(g_x, &g_a, target);
                report.coefficient("forget scale s/‖g_a‖", factor);
                report.term("total", lx - factor * la);
                g
            }
            SissForm::Paper => {
                let (c_x, c_a) =
                    paper_coefficients(x_set.len(), cx.data.forget.len(), self.config.superfactor);
                // Both terms share each micro-batch's one forward pass.
                let (model, reduction, len) = (cx.model, cx.reduction, x.len());
                let (values, g) =
                    accumulate(model, cx.layout, len, cx.passes(), &[c_x, -c_a], |range| {
                        let (x, a) = (x.part(range.clone()), a.part(range));
                        let pred = x.predict(model);
                        vec![
                            x.share_of(pred.clone(), reduction, len),
                            a.share_of(pred, reduction, len),
                        ]
                    });
                let (lx, la) = (values[0], values[1]);
                report.term("retain (L_x)", lx);
                report.term("forget (L_a)", la);
                report.coefficient("n/(n-k)", c_x);
                report.coefficient("s·k/(n-k)", c_a);
                report.term("total", c_x * lx - c_a * la);
                g
            }
        };
        Ok(Direction { grad, report })
    }
}
