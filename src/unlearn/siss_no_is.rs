//! SISS (No IS) — the two-pass ablation of the SISS paper (`double_forward_with_neg_del`,
//! docs/methods.md, SISS (No IS)): `L_x` on noised retain images, `L_a` on noised forget images with
//! the same `eps` and `t`, then `g = g_x − (s/‖g_a‖)·g_a`.

use super::combine::{ForgetScaling, norm_fixed_subtraction};
use super::step::{
    Clean, NoisedBatch, StepContext, class_inputs, coefficients, draw, draw_noise, image_shape,
    timestep_tensor,
};
use super::{Direction, Method, StepReport};

/// SISS (No IS) has only the forget-gradient scaling knobs, shared with SISS.
pub type SissNoIsConfig = ForgetScaling;

pub struct SissNoIs {
    pub config: SissNoIsConfig,
}

impl Method for SissNoIs {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String> {
        let b = cx.batch_size;
        let shape = image_shape(cx);
        let x = draw(&cx.data.retain, b, cx.rng, cx.device);
        let a = draw(&cx.data.forget, b, cx.rng, cx.device);
        let noise = draw_noise(cx, b, shape);
        let (gamma, sigma) = coefficients(cx.schedule, &noise.t, cx.device);
        let t = timestep_tensor(&noise.t, cx.device);
        // Both sets noised with the same eps and t; class inputs drawn retain first.
        let noised_with_shared_noise = |clean: &Clean, cx: &mut StepContext<'_>| NoisedBatch {
            xt: clean.x0.clone() * gamma.clone() + noise.eps.clone() * sigma.clone(),
            t: t.clone(),
            classes: class_inputs(cx, &clean.labels),
            target: noise.eps.clone(),
            weights: None,
        };
        let x = noised_with_shared_noise(&x, cx);
        let a = noised_with_shared_noise(&a, cx);
        let (lx, g_x) = cx.loss_and_grad(&x, 1.0);
        let (la, g_a) = cx.loss_and_grad(&a, 1.0);
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
