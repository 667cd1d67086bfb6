//! What a run's evaluations and training are expected to cost, worked out before it starts
//! from one timed forward pass of its model on its device (`engine::estimate`), and recorded
//! in `run.json` beside what they did cost.

use serde::{Deserialize, Serialize};

/// Training costs about this many forward passes per image per pass over a batch: a forward
/// and a backward (about twice its work in theory; measured 4.6× forward in all on burn-flex
/// with google/ddpm-cifar10-32's UNet at batch 16, 2 cores), plus the optimizer update.
pub const TRAIN_FORWARD_EQUIVALENTS: f64 = 4.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// Seconds per image of one denoising step of the run's sampler (a guided step is two
    /// forwards), timed on this model and device.
    pub sample_step_seconds: f64,
    /// Seconds per image of one unguided forward pass (ELBO, training).
    pub forward_seconds: f64,
    /// Seconds per sample of judging it (classifier, feature network), timed.
    pub judge_seconds: f64,
    /// Image-steps (sampling) of one evaluation.
    pub sample_steps_per_evaluation: usize,
    /// Unguided forward passes of one evaluation: the ELBO estimates, and in the class
    /// setting the unconditional samples the quality metrics judge.
    pub unguided_forwards_per_evaluation: usize,
    /// Samples judged per evaluation.
    pub judged_per_evaluation: usize,
    /// Evaluations the run will make, the original's included when it is computed.
    pub evaluations: usize,
    /// Whether the original's evaluation comes from the cache (costs nothing).
    pub original_cached: bool,
    /// How the evaluation was fitted to `[eval] budget_seconds`, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<String>,
    /// Training: steps × batch × passes per step.
    pub train_image_passes: usize,
}

/// What a run will do, the part of an estimate that is counted, not timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub steps: usize,
    pub batch_size: usize,
    /// Forward-backward passes over a batch per step (two for methods with a forget and a
    /// retain term).
    pub passes_per_step: usize,
    /// `[eval] every` (0 = never during the run).
    pub every: usize,
    pub at_end: bool,
    /// Whether the original's evaluation comes from the cache.
    pub original_cached: bool,
}

impl Plan {
    /// Evaluations during steps `first..steps` (the step after the last one done, on).
    pub fn evaluations_during(&self, first: usize) -> usize {
        if self.every == 0 {
            return 0;
        }
        (first..self.steps).filter(|s| s % self.every == 0).count()
    }

    /// Evaluations of a new run: the original's (unless cached), those during it, the end's.
    pub fn evaluations(&self) -> usize {
        usize::from(!self.original_cached) + self.evaluations_during(1) + usize::from(self.at_end)
    }

    pub fn train_image_passes(&self) -> usize {
        self.steps * self.batch_size * self.passes_per_step
    }
}

impl CostEstimate {
    /// The same timings applied to another plan (the workbench re-plans a preview's
    /// estimate as steps, batch, method or schedule change; nothing is timed again).
    pub fn replanned(&self, plan: &Plan) -> Self {
        Self {
            evaluations: plan.evaluations(),
            original_cached: plan.original_cached,
            train_image_passes: plan.train_image_passes(),
            ..self.clone()
        }
    }

    /// Seconds of one evaluation.
    pub fn per_evaluation_seconds(&self) -> f64 {
        self.sample_steps_per_evaluation as f64 * self.sample_step_seconds
            + self.unguided_forwards_per_evaluation as f64 * self.forward_seconds
            + self.judged_per_evaluation as f64 * self.judge_seconds
    }

    /// Seconds of all the run's evaluations.
    pub fn eval_seconds(&self) -> f64 {
        self.evaluations as f64 * self.per_evaluation_seconds()
    }

    /// Seconds of the run's training steps (forward-pass rule of thumb, not timed).
    pub fn train_seconds(&self) -> f64 {
        self.train_image_passes as f64 * TRAIN_FORWARD_EQUIVALENTS * self.forward_seconds
    }

    /// Evaluation expected to take longer than training.
    pub fn eval_exceeds_training(&self) -> bool {
        self.eval_seconds() > self.train_seconds()
    }

    /// What to say when evaluation would take longer than training.
    pub fn warning(&self) -> Option<String> {
        self.eval_exceeds_training().then(|| format!(
            "evaluation (≈ {}) would take longer than training (≈ {}): fewer samples (eval.samples), a faster sampler (eval.sampler = \"dpm++2m\" with eval.sampler_steps = 20), fewer evaluations (eval.every) or no ELBO (eval.elbo_timesteps = 0) cost less",
            duration(self.eval_seconds()),
            duration(self.train_seconds()),
        ))
    }

    /// The summary, and the fitting's line when there is one.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.fitted.iter().cloned().collect();
        lines.push(self.summary());
        lines
    }

    /// One line: `evaluation ≈ 1 min 5 s (2 × 32.5 s: …); training ≈ 40 s (…)`.
    pub fn summary(&self) -> String {
        let each = self.per_evaluation_seconds();
        format!(
            "estimate: evaluation ≈ {} ({} evaluation{} × {}: {} sample-steps at {:.3} s, {} unguided forwards (ELBO, quality samples), {} samples judged{}); training ≈ {} ({} image passes × {TRAIN_FORWARD_EQUIVALENTS} forwards at {:.3} s) — from a timed forward of this model on this device",
            duration(self.eval_seconds()),
            self.evaluations,
            if self.evaluations == 1 { "" } else { "s" },
            duration(each),
            self.sample_steps_per_evaluation,
            self.sample_step_seconds,
            self.unguided_forwards_per_evaluation,
            self.judged_per_evaluation,
            if self.original_cached {
                "; the original's from the cache"
            } else {
                ""
            },
            duration(self.train_seconds()),
            self.train_image_passes,
            self.forward_seconds,
        )
    }
}

/// `42 s`, `3 min 5 s`, `1 h 2 min`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{:.0} s", seconds.max(0.0)),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate() -> CostEstimate {
        CostEstimate {
            sample_step_seconds: 0.1,
            forward_seconds: 0.05,
            judge_seconds: 0.01,
            sample_steps_per_evaluation: 64 * 50,
            unguided_forwards_per_evaluation: 256,
            judged_per_evaluation: 64,
            evaluations: 2,
            original_cached: false,
            fitted: None,
            train_image_passes: 4 * 16,
        }
    }

    #[test]
    fn totals_add_up_and_compare() {
        let e = estimate();
        let each = 3200.0 * 0.1 + 256.0 * 0.05 + 64.0 * 0.01;
        assert!((e.per_evaluation_seconds() - each).abs() < 1e-9);
        assert!((e.eval_seconds() - 2.0 * each).abs() < 1e-9);
        assert!((e.train_seconds() - 64.0 * TRAIN_FORWARD_EQUIVALENTS * 0.05).abs() < 1e-9);
        assert!(e.eval_exceeds_training());
        let cheap = CostEstimate {
            evaluations: 0,
            ..e
        };
        assert!(!cheap.eval_exceeds_training());
        assert!(estimate().summary().contains("2 evaluations × 5 min 33 s"));
    }

    #[test]
    fn a_replanned_estimate_counts_the_new_plan_with_the_same_timings() {
        let plan = Plan {
            steps: 10,
            batch_size: 8,
            passes_per_step: 2,
            every: 4,
            at_end: true,
            original_cached: true,
        };
        // Steps 4 and 8 evaluate during the run, and the end does; the original is cached.
        assert_eq!(plan.evaluations(), 3);
        let e = estimate().replanned(&plan);
        assert_eq!(e.evaluations, 3);
        assert_eq!(e.train_image_passes, 160);
        assert!(e.original_cached);
        assert_eq!(
            e.per_evaluation_seconds(),
            estimate().per_evaluation_seconds()
        );
        let uncached = Plan {
            original_cached: false,
            every: 0,
            ..plan
        };
        assert_eq!(uncached.evaluations(), 2);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(185.0), "3 min 5 s");
        assert_eq!(duration(3720.0), "1 h 2 min");
    }
}
