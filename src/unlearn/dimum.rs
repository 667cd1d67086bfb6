//! DiMUM — unlearning by memorisation (Yuan et al. 2025; docs/methods.md, DiMUM), a
//! **reconstruction** (no official code): instead of pushing the model away from the
//! forgotten content, teach it to produce substitute content under the forgotten condition:
//! `L = L_retain + β·L_substitute`, both plain denoising losses, the substitute images
//! relabelled as the forgotten class. Converging objectives, so relearning on retain-like
//! data should not bring the forgotten content back (the paper's claim; see `attack/`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::step::{StepContext, draw, noised};
use super::{Direction, Method, StepReport};
use crate::data::{ImageSet, ImageSpec, load_paths};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DimumConfig {
    /// β: weight of the substitute-memorisation term (Lethe's default 1).
    pub beta: f32,
    /// Substitute = retain images of this class, relabelled as the forgotten class.
    /// Default: the lowest retained class.
    pub substitute_class: Option<usize>,
    /// Substitute = these image files/folders instead (takes precedence over the class).
    pub substitute_images: Vec<PathBuf>,
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

    /// DiMUM's alternative data, relabelled as the forgotten condition: `substitute_images`
    /// when given, else the retain images of `substitute_class` (default: the lowest retained
    /// class).
    pub fn substitute_set(
        &self,
        retain: &ImageSet,
        forget: &ImageSet,
        spec: ImageSpec,
    ) -> Result<ImageSet, String> {
        let forgotten = forget.labels.first().copied().flatten();
        let mut set = if !self.substitute_images.is_empty() {
            load_paths(&self.substitute_images, spec)
                .map_err(|e| format!("method.substitute_images: {e}"))?
        } else {
            let class = match self.substitute_class {
                Some(k) => k,
                None => retain
                    .labels
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|&l| Some(l) != forgotten)
                    .min()
                    .ok_or("DiMUM: the retain set has no labelled class to use as substitute; set method.substitute_images")?,
            };
            let idx: Vec<usize> = (0..retain.len())
                .filter(|&i| retain.labels[i] == Some(class))
                .collect();
            if idx.is_empty() {
                return Err(format!(
                    "method.substitute_class = {class}: no retain image has that label"
                ));
            }
            retain.subset(&idx)
        };
        set.labels = vec![forgotten; set.len()];
        Ok(set)
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
        let (r, s) = (noised(cx, &r), noised(cx, &s));
        let beta = self.config.beta;
        let (lr_v, g_r) = cx.loss_and_grad(&r, 1.0);
        let (ls_v, g_s) = cx.loss_and_grad(&s, beta);
        let grad = g_r.plus(&g_s, 1.0);
        let mut report = StepReport::default();
        report.term("retain", lr_v);
        report.term("substitute", ls_v);
        report.term("total", lr_v + beta * ls_v);
        report.grad_norm("total", grad.norm());
        Ok(Direction { grad, report })
    }
}
