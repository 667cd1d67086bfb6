//! DiMUM — unlearning by memorisation (Yuan et al. 2025; ALGORITHMS.md §4.2), a
//! **reconstruction** (no official code): instead of pushing the model away from the
//! forgotten content, teach it to produce substitute content under the forgotten condition:
//! `L = L_retain + β·L_substitute`, both plain denoising losses, the substitute images
//! relabelled as the forgotten class. Converging objectives, so relearning on retain-like
//! data should not bring the forgotten content back (the paper's claim; see `attack/`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::grads::GradVec;
use super::step::{StepContext, denoising_loss, draw, value};
use super::{Direction, Method, StepReport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimumConfig {
    /// β: weight of the substitute-memorisation term (Lethe's default 1).
    #[serde(default = "one")]
    pub beta: f32,
    /// Substitute = retain images of this class, relabelled as the forgotten class.
    /// Default: the lowest retained class.
    #[serde(default)]
    pub substitute_class: Option<usize>,
    /// Substitute = these image files/folders instead (takes precedence over the class).
    #[serde(default)]
    pub substitute_images: Vec<PathBuf>,
}

fn one() -> f32 {
    1.0
}

impl Default for DimumConfig {
    fn default() -> Self {
        Self {
            beta: 1.0,
            substitute_class: None,
            substitute_images: vec![],
        }
    }
}

impl DimumConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::check_non_negative("method.beta", self.beta as f64)?;
        Ok(())
    }
}

pub struct Dimum {
    pub config: DimumConfig,
}

impl Method for Dimum {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        let data = cx.data;
        let substitute = data
            .substitute
            .as_ref()
            .ok_or("DiMUM needs a substitute set (method.substitute_class or substitute_images)")?;
        let r = draw(&data.retain, cx.batch_size, cx.rng, cx.device);
        let s = draw(substitute, cx.batch_size, cx.rng, cx.device);
        let loss_r = denoising_loss(cx, &r);
        let loss_s = denoising_loss(cx, &s);
        let (lr_v, ls_v) = (value(&loss_r), value(&loss_s));
        let beta = self.config.beta;
        let grad = GradVec::of_loss(loss_r + loss_s * beta, cx.model, cx.layout);
        let mut report = StepReport::default();
        report.term("retain", lr_v);
        report.term("substitute", ls_v);
        report.term("total", lr_v + beta * ls_v);
        report.grad_norm("total", grad.norm());
        Ok(Direction { grad, report })
    }
}
