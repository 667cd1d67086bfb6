//! SISS (No IS) — the two-pass ablation of the SISS paper (`double_forward_with_neg_del`,
//! docs/methods.md, SISS (No IS)): `L_x` on noised retain images, `L_a` on noised forget images with
//! the same `eps` and `t`, then `g = g_x − (s/‖g_a‖)·g_a`.

use super::combine::{ForgetScaling, norm_fixed_subtraction};
use super::step::{
    StepContext, class_inputs, coefficients, draw, draw_noise, image_shape, per_image_sq_err,
    reduce, timestep_tensor, value,
};
use super::{Direction, Method, StepReport};
use crate::train::grads::GradVec;

/// SISS (No IS) has only the forget-gradient scaling knobs, shared with SISS.
pub type SissNoIsConfig = ForgetScaling;

pub struct SissNoIs {
    pub config: SissNoIsConfig,
}

impl Method for SissNoIs {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        let b = cx.batch_size;
        let shape = image_shape(cx);
        let numel = shape.iter().product();
        let x = draw(&cx.data.retain, b, cx.rng, cx.device);
        let a = draw(&cx.data.forget, b, cx.rng, cx.device);
        let noise = draw_noise(cx, b, shape);
        let (gamma, sigma) = coefficients(cx.schedule, &noise.t, cx.device);
        let t = timestep_tensor(&noise.t, cx.device);
        let loss_of = |clean: &super::step::Clean, cx: &mut StepContext<'_>| {
            let xt = clean.x0.clone() * gamma.clone() + noise.eps.clone() * sigma.clone();
            let classes = class_inputs(cx, &clean.labels);
            let pred = cx.model.forward(xt, t.clone(), classes);
            reduce(
                per_image_sq_err(pred, noise.eps.clone()),
                None,
                cx.reduction,
                numel,
            )
        };
        let loss_x = loss_of(&x, cx);
        let lx = value(&loss_x);
        let g_x = GradVec::of_loss(loss_x, cx.model, cx.layout);
        let loss_a = loss_of(&a, cx);
        let la = value(&loss_a);
        let g_a = GradVec::of_loss(loss_a, cx.model, cx.layout);
        let mut report = StepReport::default();
        report.term("retain (L_x)", lx);
        report.term("forget (L_a)", la);
        report.grad_norm("retain", g_x.norm());
        report.grad_norm("forget", g_a.norm());
        let target = self.config.forget_norm(g_x.norm());
        report.coefficient("forget gradient norm", target);
        let (grad, factor) = norm_fixed_subtraction(g_x, &g_a, target);
        report.coefficient("forget scale s/‖g_a‖", factor);
        report.term("total", lx - factor * la);
        Ok(Direction { grad, report })
    }
}
