//! Naive deletion / Finetune — keep training on the retain set only (`naive_del`;
//! docs/methods.md, baselines): forgetting relies on catastrophic forgetting of `A`. Also the
//! loss of *Retrain* ([`super::retrain`]), which starts from fresh weights instead.

use super::step::{StepContext, draw, noised};
use super::{Direction, Method, StepReport};

pub struct Finetune;

impl Method for Finetune {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        let x = draw(&cx.data.retain, cx.batch_size, cx.rng, cx.device);
        let batch = noised(cx, &x);
        let (l, grad) = cx.loss_and_grad(&batch, 1.0);
        let mut report = StepReport::default();
        report.term("retain (L_X\\A)", l);
        report.term("total", l);
        report.grad_norm("total", grad.norm());
        Ok(Direction { grad, report })
    }
}
