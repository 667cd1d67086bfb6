//! NegGrad — gradient ascent on the forget set (`simple_neg_del`, docs/methods.md, baselines):
//! loss `−s·L_A` with superfactor `s`. Unbounded below; quality collapses within tens of
//! steps (SISS paper Fig. 1), which is why it is a baseline.

use serde::{Deserialize, Serialize};

use super::step::{StepContext, draw, noised};
use super::{Direction, Method, StepReport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NegGradConfig {
    /// Superfactor `s` scaling the ascent.
    pub superfactor: f32,
}

impl Default for NegGradConfig {
    fn default() -> Self {
        Self { superfactor: 1.0 }
    }
}

impl NegGradConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::check_positive("method.superfactor", self.superfactor as f64)?;
        Ok(())
    }
}

pub struct NegGrad {
    pub config: NegGradConfig,
}

impl Method for NegGrad {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        let a = draw(&cx.data.forget, cx.batch_size, cx.rng, cx.device);
        let batch = noised(cx, &a);
        let s = self.config.superfactor;
        let (la, grad) = cx.loss_and_grad(&batch, -s);
        let mut report = StepReport::default();
        report.term("forget (L_A)", la);
        report.term("total", -s * la);
        report.grad_norm("total", grad.norm());
        Ok(Direction { grad, report })
    }
}
