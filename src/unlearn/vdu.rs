//! VDU — Variational Diffusion Unlearning (Panda et al. 2025; docs/methods.md, VDU), a
//! **reconstruction** (no official code): forget data only.
//!
//! `L = A + γ·B`: plasticity `A = −L_A` (ascent on the forget set's denoising loss) plus
//! stability `B = ½ Σ_i (θ_i − θ*_i)² / s_i²`, a variance-weighted pull to the original
//! weights θ*. The per-parameter precision `1/s_i²` comes from
//! - `fisher` (default): a diagonal empirical Fisher of θ* on the forget set — the mean of
//!   squared mini-batch gradients over `fisher_batches` batches — normalised to mean 1 so γ
//!   reads as an L2-SP strength, with `s² ≥ variance_floor`; or
//! - `constant`: `1/s²` with `s² = variance` for every parameter (plain L2-SP).
//!
//! `∇B = (θ − θ*)/s²` is applied in closed form (no forward pass).

use serde::{Deserialize, Serialize};

use super::step::{StepContext, draw, noised};
use super::{Direction, Method, StepReport};
use crate::train::grads::flat_parameters;
use burn::tensor::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stability {
    #[default]
    Fisher,
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VduConfig {
    /// γ: weight of the stability term (Lethe's default; the paper's is not published).
    pub gamma: f32,
    pub stability: Stability,
    /// `constant`: the variance s² of every parameter.
    pub variance: f32,
    /// `fisher`: forget batches averaged for the diagonal Fisher.
    pub fisher_batches: usize,
    /// Lower bound on s² (upper bound on a precision), so near-zero variances cannot explode.
    pub variance_floor: f32,
}

impl Default for VduConfig {
    fn default() -> Self {
        Self {
            gamma: 10.0,
            stability: Stability::Fisher,
            variance: 1.0,
            fisher_batches: 8,
            variance_floor: 1e-8,
        }
    }
}

impl VduConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::check_non_negative("method.gamma", self.gamma as f64)?;
        super::check_positive("method.variance", self.variance as f64)?;
        super::check_positive("method.variance_floor", self.variance_floor as f64)?;
        if self.stability == Stability::Fisher && self.fisher_batches == 0 {
            return Err("method.fisher_batches must be ≥ 1".into());
        }
        Ok(())
    }
}

/// θ* and the precision 1/s², fixed at the start of the run.
struct Anchor {
    theta_star: Tensor<1>,
    precision: Tensor<1>,
}

pub struct Vdu {
    pub config: VduConfig,
    anchor: Option<Anchor>,
}

impl Vdu {
    pub fn new(config: VduConfig) -> Self {
        Self {
            config,
            anchor: None,
        }
    }

    fn anchor(&self, cx: &mut StepContext<'_>) -> Anchor {
        let theta_star = flat_parameters(cx.model);
        let max_precision = 1.0 / self.config.variance_floor;
        let precision = match self.config.stability {
            Stability::Constant => theta_star.ones_like() * (1.0 / self.config.variance),
            Stability::Fisher => {
                let mut sum: Option<Tensor<1>> = None;
                for _ in 0..self.config.fisher_batches {
                    let a = draw(&cx.data.forget, cx.batch_size, cx.rng, cx.device);
                    let a = noised(cx, &a);
                    let (_, g) = cx.loss_and_grad(&a, 1.0);
                    let sq = g.flat().clone().square();
                    sum = Some(match sum {
                        Some(s) => s + sq,
                        None => sq,
                    });
                }
                let fisher = sum.expect("≥ 1 batch") / self.config.fisher_batches as f32;
                let mean = fisher
                    .clone()
                    .mean()
                    .into_scalar::<f32>()
                    .max(f32::MIN_POSITIVE);
                fisher / mean
            }
        };
        Anchor {
            theta_star,
            precision: precision.clamp_max(max_precision),
        }
    }
}

impl Method for Vdu {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        if self.anchor.is_none() {
            self.anchor = Some(self.anchor(cx));
        }
        let anchor = self.anchor.as_ref().expect("set above");
        let a = draw(&cx.data.forget, cx.batch_size, cx.rng, cx.device);
        let a = noised(cx, &a);
        let (la, g_plasticity) = cx.loss_and_grad(&a, -1.0);
        let diff = flat_parameters(cx.model) - anchor.theta_star.clone();
        let weighted = diff.clone() * anchor.precision.clone();
        let stability = 0.5 * (weighted.clone() * diff).sum().into_scalar::<f32>();
        let g_stability = g_plasticity.with_flat(weighted);
        let gamma = self.config.gamma;
        let mut report = StepReport::default();
        report.term("plasticity (A = −L_A)", -la);
        report.term("stability (B)", stability);
        report.term("total", -la + gamma * stability);
        report.grad_norm("plasticity", g_plasticity.norm());
        report.grad_norm("stability", gamma * g_stability.norm());
        let grad = g_plasticity.plus(&g_stability, gamma);
        Ok(Direction { grad, report })
    }

    /// The anchor is computed again exactly as at step 0 (same weights, same random stream).
    fn restore(
        &mut self,
        _saved: &serde_json::Value,
        start: &mut StepContext<'_>,
    ) -> Result<(), String> {
        self.anchor = Some(self.anchor(start));
        Ok(())
    }
}
