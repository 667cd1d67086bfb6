//! EraseDiff (Wu et al. 2024; docs/methods.md, EraseDiff): a bilevel problem — keep the remaining-data
//! loss `F` low subject to the forget objective `f` being at its minimum — solved with the
//! first-order (BOME) update `δ = ∇F + λ·∇q`, `∇q = ∇f` (the inner solution `f(φ^K)` is a
//! constant). `λ` is fixed (the GUI's α, default 0.1) or automatic (Theorem 1:
//! `λ = max(η − ⟨∇F,∇q⟩/‖∇q‖², 0)`).
//!
//! Forget objectives: `uniform` (paper v1: `eps_u ~ U[0,1)^d` both noises the forget image
//! and is the regression target) or `relabel` (the repo's default: the target is the
//! model's own stop-gradient prediction under another class `c' ≠ c_f`).
//!
//! Every `inner_every` steps, `K = inner_steps` plain gradient steps on `f` from a copy of θ
//! give `f(φ^K)`; `q = f(θ) − f(φ^K)` is reported (it does not change the direction).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::combine::{bome_direction, bome_lambda};
use super::step::{
    Clean, NoisedBatch, StepContext, class_inputs, coefficients, draw, draw_timesteps, image_shape,
    image_tensor, noised, timestep_tensor,
};
use super::{Direction, Method, StepReport};
use crate::diffusion::unet::UNet;
use crate::train::grads::{flat_parameters, set_flat_parameters};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForgetTarget {
    /// `uniform` for an unconditional model, `relabel` for a class-conditional one.
    #[default]
    Auto,
    Uniform,
    Relabel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EraseDiffConfig {
    /// Fixed balance λ (the GUI's α). Ignored when `auto_lambda`.
    pub alpha: f32,
    /// Compute λ per step from Theorem 1 with `eta` instead of using `alpha`.
    pub auto_lambda: bool,
    /// η of the automatic λ.
    pub eta: f32,
    pub target: ForgetTarget,
    /// K: inner gradient steps on the forget objective that estimate `f(φ^K)`.
    pub inner_steps: usize,
    /// Re-estimate `f(φ^K)` every this many steps (the code does it once per pass over
    /// 4,500 remaining images ≈ 35 batches of 128).
    pub inner_every: usize,
}

impl Default for EraseDiffConfig {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            auto_lambda: false,
            eta: 0.1,
            target: ForgetTarget::Auto,
            inner_steps: 2,
            inner_every: 35,
        }
    }
}

impl EraseDiffConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::check_non_negative("method.alpha", self.alpha as f64)?;
        super::check_non_negative("method.eta", self.eta as f64)?;
        if self.inner_every == 0 {
            return Err("method.inner_every must be ≥ 1".into());
        }
        Ok(())
    }
}

pub struct EraseDiff {
    pub config: EraseDiffConfig,
    /// Real (non-null) classes of a class-conditional model, for relabelling.
    pub num_classes: Option<usize>,
    f_k: Option<f32>,
}

impl EraseDiff {
    pub fn new(config: EraseDiffConfig, num_classes: Option<usize>) -> Result<Self, String> {
        if config.target == ForgetTarget::Relabel && num_classes.is_none() {
            return Err(
                "method.target = \"relabel\" needs a class-conditional model; use \"uniform\""
                    .into(),
            );
        }
        Ok(Self {
            config,
            num_classes,
            f_k: None,
        })
    }

    fn relabel(&self) -> bool {
        match self.config.target {
            ForgetTarget::Relabel => true,
            ForgetTarget::Uniform => false,
            ForgetTarget::Auto => self.num_classes.is_some(),
        }
    }

    /// The forgetting regression `f` of a forget batch under `model` (for `relabel`, its
    /// target is `model`'s own prediction under other classes, computed here, detached).
    fn forget_batch(&self, model: &UNet, cx: &mut StepContext<'_>, a: &Clean) -> NoisedBatch {
        let b = a.labels.len();
        let shape = image_shape(cx);
        let numel: usize = shape.iter().product();
        let t = draw_timesteps(cx, b);
        let (gamma, sigma) = coefficients(cx.schedule, &t, cx.device);
        let t = timestep_tensor(&t, cx.device);
        if self.relabel() {
            let n = self.num_classes.expect("checked in new");
            let eps = image_tensor(
                super::step::gaussian(cx.rng, b * numel),
                b,
                shape,
                cx.device,
            );
            let xt = a.x0.clone() * gamma + eps * sigma;
            // c' ≠ c_f, drawn per image (the repo can draw the forgotten class itself).
            let (forgotten, other): (Vec<i64>, Vec<i64>) = a
                .labels
                .iter()
                .map(|l| {
                    let c = l.unwrap_or(0);
                    let mut o = cx.rng.random_range(0..n.saturating_sub(1).max(1));
                    if o >= c {
                        o += 1;
                    }
                    (c as i64, o.min(n - 1) as i64)
                })
                .unzip();
            let ints = |v: Vec<i64>| {
                burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
                    burn::tensor::TensorData::new(v, [b]),
                    cx.device,
                )
            };
            let under_other = NoisedBatch {
                xt: xt.clone(),
                t: t.clone(),
                classes: Some(ints(other)),
                target: xt.clone(),
                weights: None,
            };
            NoisedBatch {
                target: under_other.prediction(model, cx.passes()),
                classes: Some(ints(forgotten)),
                ..under_other
            }
        } else {
            let u: Vec<f32> = (0..b * numel).map(|_| cx.rng.random::<f32>()).collect();
            let u = image_tensor(u, b, shape, cx.device);
            let xt = a.x0.clone() * gamma + u.clone() * sigma;
            NoisedBatch {
                xt,
                t,
                classes: class_inputs(cx, &a.labels),
                target: u,
                weights: None,
            }
        }
    }

    /// `f(φ^K)`: K plain gradient steps on `f` (step size = the run's lr) from a copy of θ.
    fn inner_value(&self, cx: &mut StepContext<'_>) -> f32 {
        let mut phi = cx.model.clone();
        let b = cx.batch_size;
        for _ in 0..self.config.inner_steps {
            let a = draw(&cx.data.forget, b, cx.rng, cx.device);
            let f = self.forget_batch(&phi, cx, &a);
            let (_, g) = f.loss_and_grad(&phi, cx.layout, cx.reduction, cx.passes(), 1.0);
            let next = flat_parameters(&phi) - g.flat().clone() * cx.learning_rate as f32;
            phi = set_flat_parameters(phi, &next, cx.layout);
        }
        let a = draw(&cx.data.forget, b, cx.rng, cx.device);
        let f = self.forget_batch(&phi, cx, &a);
        f.loss_value(&phi, cx.reduction, cx.passes())
    }
}

impl Method for EraseDiff {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        if cx.step.is_multiple_of(self.config.inner_every) && self.config.inner_steps > 0 {
            self.f_k = Some(self.inner_value(cx));
        }
        let b = cx.batch_size;
        let r = draw(&cx.data.retain, b, cx.rng, cx.device);
        let a = draw(&cx.data.forget, b, cx.rng, cx.device);
        let r = noised(cx, &r);
        let model = cx.model;
        let f = self.forget_batch(model, cx, &a);
        let (lr_v, g_r) = cx.loss_and_grad(&r, 1.0);
        let mut report = StepReport::default();
        let (grad, lambda, lf_v) = if self.config.auto_lambda {
            let (lf_v, g_q) = cx.loss_and_grad(&f, 1.0);
            let lambda = bome_lambda(g_r.dot(&g_q), g_q.dot(&g_q), self.config.eta);
            report.grad_norm("remaining", g_r.norm());
            report.grad_norm("forget", g_q.norm());
            (bome_direction(g_r, &g_q, lambda), lambda, lf_v)
        } else {
            let lambda = self.config.alpha;
            let (lf_v, g_f) = cx.loss_and_grad(&f, lambda);
            (g_r.plus(&g_f, 1.0), lambda, lf_v)
        };
        report.term("remaining (F)", lr_v);
        report.term("forget (f)", lf_v);
        if let Some(f_k) = self.f_k {
            report.term("q = f − f(φ^K)", lf_v - f_k);
        }
        report.coefficient("λ", lambda);
        report.term("total", lr_v + lambda * lf_v);
        Ok(Direction { grad, report })
    }

    /// `f(φ^K)` of the last refresh (it is logged, and refreshed every `inner_every` steps).
    fn saved_state(&self) -> serde_json::Value {
        serde_json::json!({ "f_k": self.f_k })
    }

    fn restore(
        &mut self,
        saved: &serde_json::Value,
        _start: &mut StepContext<'_>,
    ) -> Result<(), String> {
        self.f_k = saved["f_k"].as_f64().map(|v| v as f32);
        Ok(())
    }
}
