//! Every tunable value the method panel shows: what it does, the paper's default, and the
//! range the paper (or Lethe's own runs) found sensible. Plain data, no egui, so the
//! warnings are unit-tested; the panel draws one slider or field per knob.

use crate::experiment::config::{EvalConfig, UnlearnTrain};
use crate::unlearn::MethodConfig;

/// A knob's value, borrowed from the config it edits.
pub enum KnobValue<'a> {
    F32(&'a mut f32),
    F64(&'a mut f64),
    Usize(&'a mut usize),
    U64(&'a mut u64),
    Bool(&'a mut bool),
}

pub struct Knob<'a> {
    pub label: &'static str,
    /// What it does, and where its default comes from.
    pub help: &'static str,
    pub value: KnobValue<'a>,
    /// Slider range.
    pub range: (f64, f64),
    /// Values outside this range get a warning (the paper's sensible range).
    pub sensible: (f64, f64),
    /// Log-scale slider (learning rates, γ).
    pub logarithmic: bool,
}

impl Knob<'_> {
    pub fn current(&self) -> f64 {
        match &self.value {
            KnobValue::F32(v) => **v as f64,
            KnobValue::F64(v) => **v,
            KnobValue::Usize(v) => **v as f64,
            KnobValue::U64(v) => **v as f64,
            KnobValue::Bool(v) => f64::from(u8::from(**v)),
        }
    }

    /// Why the value is outside the sensible range, if it is.
    pub fn warning(&self) -> Option<String> {
        let v = self.current();
        let (lo, hi) = self.sensible;
        (v < lo || v > hi).then(|| {
            format!(
                "{} = {} is outside {}–{}, the range where the paper's results hold",
                self.label,
                fmt(v),
                fmt(lo),
                fmt(hi)
            )
        })
    }
}

fn fmt(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.0e}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}

#[allow(clippy::too_many_arguments)]
fn knob<'a>(
    label: &'static str,
    help: &'static str,
    value: KnobValue<'a>,
    range: (f64, f64),
    sensible: (f64, f64),
    logarithmic: bool,
) -> Knob<'a> {
    Knob {
        label,
        help,
        value,
        range,
        sensible,
        logarithmic,
    }
}

/// The chosen method's own knobs.
pub fn method_knobs(method: &mut MethodConfig) -> Vec<Knob<'_>> {
    use KnobValue::*;
    match method {
        MethodConfig::Siss(c) => vec![
            knob(
                "SISS λ",
                "Mixture weight of the importance sampler: the share of noisy samples drawn around the forget image. Paper default 0.5 (SISS §1.7, all three experiments); near 0 or 1 one set's weights explode.",
                F64(&mut c.lambda),
                (0.0, 1.0),
                (0.1, 0.9),
                false,
            ),
            knob(
                "scaling norm",
                "The forget gradient is rescaled to this norm before it is subtracted (official code). Paper default 5 for MNIST (500 CelebA-HQ, 750 SD). Ignored when the relative scale is on.",
                F32(&mut c.scaling.scaling_norm),
                (0.0, 1000.0),
                (1.0, 750.0),
                true,
            ),
            knob(
                "superfactor",
                "Paper form only: multiplies the forget term's n/(n−k)-weight. Default 1.",
                F32(&mut c.superfactor),
                (0.0, 10.0),
                (0.5, 4.0),
                false,
            ),
        ],
        MethodConfig::SissNoIs(c) => vec![knob(
            "scaling norm",
            "Norm the forget gradient is rescaled to (SISS's No-IS ablation). Default 5 on MNIST.",
            F32(&mut c.scaling_norm),
            (0.0, 1000.0),
            (1.0, 750.0),
            true,
        )],
        MethodConfig::EraseDiff(c) => vec![
            knob(
                "EraseDiff α (λ)",
                "Balance between the remaining-data loss and the forgetting objective in the bilevel update. Code default 0.1 (`lambda_bome`); larger forgets faster and costs more quality (EraseDiff Table 3).",
                F32(&mut c.alpha),
                (0.0, 1.0),
                (0.01, 0.5),
                true,
            ),
            knob(
                "automatic λ",
                "Compute λ each step from the paper's Theorem 1 with η instead of the fixed α.",
                Bool(&mut c.auto_lambda),
                (0.0, 1.0),
                (0.0, 1.0),
                false,
            ),
            knob(
                "η",
                "η of the automatic λ. Code default 0.1 (SISS's comparison used 1e-3).",
                F32(&mut c.eta),
                (1e-4, 1.0),
                (1e-3, 0.5),
                true,
            ),
            knob(
                "K inner steps",
                "Inner gradient steps on the forget objective that estimate f(φ^K). Code default 2.",
                Usize(&mut c.inner_steps),
                (1.0, 10.0),
                (1.0, 5.0),
                false,
            ),
            knob(
                "inner every",
                "Re-estimate f(φ^K) every this many steps (the code: once per pass over 4,500 images ≈ 35 batches).",
                Usize(&mut c.inner_every),
                (1.0, 200.0),
                (1.0, 100.0),
                false,
            ),
        ],
        MethodConfig::Vdu(c) => vec![
            knob(
                "VDU γ",
                "Weight of the stability (weight-anchoring) term against the forgetting term. The paper does not publish it; Lethe's default 10. Too small collapses the model like NegGrad.",
                F32(&mut c.gamma),
                (0.1, 1e6),
                (1.0, 1e5),
                true,
            ),
            knob(
                "variance",
                "s² of every parameter when stability = constant.",
                F32(&mut c.variance),
                (1e-6, 10.0),
                (1e-4, 10.0),
                true,
            ),
            knob(
                "Fisher batches",
                "Forget batches averaged for the diagonal Fisher (stability = fisher). Default 8.",
                Usize(&mut c.fisher_batches),
                (1.0, 64.0),
                (2.0, 64.0),
                false,
            ),
        ],
        MethodConfig::Dimum(c) => vec![knob(
            "DiMUM β",
            "Weight of the substitute-memorisation term. No published default; Lethe's is 1 (docs/methods.md, DiMUM).",
            F32(&mut c.beta),
            (0.0, 10.0),
            (0.1, 5.0),
            false,
        )],
        MethodConfig::NegGrad(c) => vec![knob(
            "superfactor",
            "Scale of the gradient ascent on the forget set. Default 1; NegGrad collapses quality within tens of steps whatever the value (SISS Fig. 1).",
            F32(&mut c.superfactor),
            (0.0, 10.0),
            (0.1, 2.0),
            false,
        )],
        MethodConfig::Finetune => Vec::new(),
        MethodConfig::Retrain { init_seed } => vec![knob(
            "init seed",
            "Seed of the fresh weights.",
            U64(init_seed),
            (0.0, 1000.0),
            (0.0, f64::MAX),
            false,
        )],
    }
}

/// Training knobs shared by every method.
pub fn train_knobs<'a>(train: &'a mut UnlearnTrain, eval: &'a mut EvalConfig) -> Vec<Knob<'a>> {
    use KnobValue::*;
    vec![
        knob(
            "learning rate",
            "Optimizer step size. SISS MNIST: AdamW 5e-5; EraseDiff: Adam 1e-4.",
            F64(&mut train.learning_rate),
            (1e-7, 1e-2),
            (1e-6, 1e-3),
            true,
        ),
        knob(
            "steps",
            "Optimisation steps. SISS MNIST: 300; EraseDiff CIFAR: 200.",
            Usize(&mut train.steps),
            (1.0, 5000.0),
            (10.0, 5000.0),
            true,
        ),
        knob(
            "batch size",
            "Images per batch for each set. SISS MNIST: 64 (the demo halves it to 32 for a CPU).",
            Usize(&mut train.batch_size),
            (1.0, 256.0),
            (8.0, 256.0),
            true,
        ),
        knob(
            "micro-batches",
            "Split each batch into this many forward/backward passes and add their gradients (train.grad_accumulation): the same step in less memory, for large models. The run measures a pass before it starts and refuses a batch the machine cannot hold.",
            Usize(&mut train.grad_accumulation),
            (1.0, 64.0),
            (1.0, 64.0),
            true,
        ),
        knob(
            "seed",
            "Seed of batches, noise and timesteps: the same config and seed give the same run.",
            U64(&mut train.seed),
            (0.0, 1000.0),
            (0.0, f64::MAX),
            false,
        ),
        knob(
            "evaluate every",
            "Evaluate (samples, forgetting rates, FID, ELBO) every this many steps. The original model is evaluated once with the same pipeline.",
            Usize(&mut eval.every),
            (1.0, 1000.0),
            (1.0, 1000.0),
            true,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unlearn::siss::SissConfig;

    #[test]
    fn paper_defaults_raise_no_warning_and_extremes_do() {
        let mut m = MethodConfig::Siss(SissConfig::default());
        assert!(method_knobs(&mut m).iter().all(|k| k.warning().is_none()));
        if let MethodConfig::Siss(c) = &mut m {
            c.lambda = 0.99;
        }
        let knobs = method_knobs(&mut m);
        let w = knobs[0].warning().expect("λ=0.99 warns");
        assert!(w.contains("SISS λ = 0.99") && w.contains("0.1–0.9"), "{w}");
    }

    #[test]
    fn every_method_has_its_knobs_and_help() {
        let mut methods = [
            MethodConfig::Siss(Default::default()),
            MethodConfig::SissNoIs(Default::default()),
            MethodConfig::EraseDiff(Default::default()),
            MethodConfig::Vdu(Default::default()),
            MethodConfig::Dimum(Default::default()),
            MethodConfig::NegGrad(Default::default()),
        ];
        for m in &mut methods {
            let knobs = method_knobs(m);
            assert!(!knobs.is_empty());
            assert!(
                knobs
                    .iter()
                    .all(|k| !k.help.is_empty() && k.warning().is_none())
            );
        }
        let (mut train, mut eval) = (UnlearnTrain::default(), EvalConfig::default());
        train.learning_rate = 1.0;
        let warned: Vec<_> = train_knobs(&mut train, &mut eval)
            .iter()
            .filter_map(Knob::warning)
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
    }
}
