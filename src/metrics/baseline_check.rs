//! Whether the original model shows what a forgetting rate measures, and which guidance makes
//! it show the forgotten class.
//!
//! A forgotten-class rate of a class the original never draws is 0% before and after
//! unlearning, so it cannot show forgetting, and a PUL computed from it means nothing; the
//! same holds for the forget-copy rate of an image the original never reproduces. Every
//! evaluation of a run (and of `lethe eval`) therefore carries the original's verdict in its
//! provenance (`MetricProvenance::caveat`), and the class setting's guidance is chosen per
//! model by sampling the forgotten class from the original (docs/metrics.md, *Is the rate
//! informative?*).

use super::classifier::LoadedClassifier;
use super::evaluation::Evaluation;
use crate::diffusion::sampler::{SampleJob, SamplerSpec};

/// Share of samples *conditioned on* the forgotten class that must be judged that class: below
/// it, the model's samples of the class are mostly something else (the demo model's unguided
/// rate is ~85%; a class the guidance pushes into another mode scores ~0%).
pub const CONDITIONED_CLASS_FLOOR: f64 = 0.5;

/// Guidance weights the check tries, in order of preference: the first whose samples pass is
/// the default (2 is the weight most class-unlearning papers sample with).
pub const GUIDANCE_CANDIDATES: [f32; 4] = [2.0, 1.0, 3.0, 0.0];

/// Samples per guidance weight the check draws: enough to tell 50% from 90% (the standard
/// error of a rate near 50% is 9 points).
pub const GUIDANCE_CHECK_SAMPLES: usize = 32;

/// What the forgetting rates of an evaluation measure.
#[derive(Debug, Clone, Copy)]
pub enum Setting {
    /// The class setting: `class` is forgotten; `conditioned` when the samples are drawn of
    /// that class (a class-conditional model), else unconditionally among `classes` classes.
    Class {
        class: usize,
        conditioned: bool,
        classes: usize,
    },
    /// The data-point setting: the forget images themselves.
    DataPoint,
}

impl Setting {
    /// The forgotten-class rate the original must reach for the rate to be informative:
    /// [`CONDITIONED_CLASS_FLOOR`] of conditioned samples, or half the class's share under a
    /// uniform prior of unconditional ones.
    pub fn class_rate_floor(&self) -> Option<f64> {
        match *self {
            Setting::Class {
                conditioned: true, ..
            } => Some(CONDITIONED_CLASS_FLOOR),
            Setting::Class { classes, .. } => Some(0.5 / classes.max(1) as f64),
            Setting::DataPoint => None,
        }
    }
}

/// Why the original model's evaluation `baseline` cannot show forgetting, or `None` when it
/// can (or when there is nothing to check: no classifier judged the class).
pub fn uninformative(baseline: &Evaluation, setting: &Setting) -> Option<String> {
    let sampler = baseline
        .how
        .as_ref()
        .map_or(baseline.provenance.clone(), |h| h.sampler.clone());
    let n = baseline.samples;
    match *setting {
        Setting::Class { class, .. } => {
            let rate = baseline.forgotten_class_rate?;
            let floor = setting.class_rate_floor()?;
            (rate < floor).then(|| {
                format!(
                    "the original model draws class {class} in only {:.1}% of its {n} samples ({sampler}; it must reach {:.0}%), so the forgotten-class rate and PUL cannot show forgetting",
                    100.0 * rate,
                    100.0 * floor
                )
            })
        }
        Setting::DataPoint => (baseline.forget_copy_rate == 0.0).then(|| {
            format!(
                "the original model reproduces none of the forget images in its {n} samples ({sampler}), so the forget-copy rate and PUL cannot show forgetting (the nearest-forget distance and the forget ELBO still can)"
            )
        }),
    }
}

/// One guidance weight tried on a model: the share of its samples of the class judged to be it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidanceCheck {
    pub guidance: f32,
    pub class: usize,
    pub rate: f64,
    pub samples: usize,
}

impl GuidanceCheck {
    pub fn passes(&self) -> bool {
        self.rate >= CONDITIONED_CLASS_FLOOR
    }

    /// e.g. `w=2: class 7 in 97% of 32 samples`.
    pub fn describe(&self) -> String {
        format!(
            "w={}: class {} in {:.0}% of {} samples",
            self.guidance,
            self.class,
            100.0 * self.rate,
            self.samples
        )
    }
}

/// What the guidance check needs of a model: the sampling job the evaluation runs (its
/// `spec.guidance` is replaced by each candidate), the judge and the seed.
pub struct GuidanceProbe<'a> {
    pub job: SampleJob<'a>,
    pub classifier: &'a LoadedClassifier,
    pub seed: u64,
}

impl GuidanceProbe<'_> {
    /// Samples the sampler's class at guidance `w` and judges them.
    pub fn check(&self, w: f32) -> Result<GuidanceCheck, String> {
        let class = self
            .job
            .spec
            .class
            .ok_or("the guidance check needs a class to sample")?;
        let spec = SamplerSpec {
            guidance: w,
            ..self.job.spec.clone()
        };
        let job = SampleJob {
            spec: &spec,
            ..self.job
        };
        let samples = job.run_batched(
            self.seed,
            GUIDANCE_CHECK_SAMPLES,
            GUIDANCE_CHECK_SAMPLES,
            |_| {},
        )?;
        let probs = self
            .classifier
            .probabilities(&samples, job.shape, job.device);
        let hits = probs.iter().filter(|p| argmax(p) == class).count();
        Ok(GuidanceCheck {
            guidance: w,
            class,
            rate: hits as f64 / samples.len().max(1) as f64,
            samples: samples.len(),
        })
    }

    /// The first of [`GUIDANCE_CANDIDATES`] whose samples pass, with every check made; when
    /// none passes, the best-scoring weight (and the checks say so).
    pub fn choose(&self) -> Result<(f32, Vec<GuidanceCheck>), String> {
        let mut checks = Vec::new();
        for w in GUIDANCE_CANDIDATES {
            let check = self.check(w)?;
            let passes = check.passes();
            checks.push(check);
            if passes {
                return Ok((w, checks));
            }
        }
        let best = checks
            .iter()
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
            .map_or(0.0, |c| c.guidance);
        Ok((best, checks))
    }
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |acc, (i, &q)| if q > acc.1 { (i, q) } else { acc },
        )
        .0
}

/// The check's outcome in one line, e.g. `auto: w=2 (w=2: class 7 in 97% of 32 samples)` or
/// `auto: no weight passes (w=2: class 7 in 0% …; w=1: …) — using w=1, the best`.
pub fn summarize(chosen: f32, checks: &[GuidanceCheck]) -> String {
    let tried: Vec<String> = checks.iter().map(GuidanceCheck::describe).collect();
    if checks.iter().any(GuidanceCheck::passes) {
        format!("w={chosen} ({})", tried.join("; "))
    } else {
        format!(
            "no weight reaches {:.0}% ({}) — using w={chosen}, the best",
            100.0 * CONDITIONED_CLASS_FLOOR,
            tried.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::evaluation::MetricProvenance;

    fn baseline(class_rate: Option<f64>, copy_rate: f64) -> Evaluation {
        Evaluation {
            samples: 64,
            forget_copy_rate: copy_rate,
            forgotten_class_rate: class_rate,
            how: Some(MetricProvenance {
                sampler: "DDIM-50,class=7,w=2".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_class_the_original_never_draws_is_flagged_with_the_reason() {
        let setting = Setting::Class {
            class: 7,
            conditioned: true,
            classes: 10,
        };
        let why = uninformative(&baseline(Some(0.0), 0.0), &setting).expect("flagged");
        assert!(
            why.contains("class 7 in only 0.0% of its 64 samples"),
            "{why}"
        );
        assert!(why.contains("DDIM-50,class=7,w=2"), "{why}");
        assert_eq!(uninformative(&baseline(Some(0.9), 0.0), &setting), None);
        // No classifier judged the class: nothing to say.
        assert_eq!(uninformative(&baseline(None, 0.0), &setting), None);
    }

    #[test]
    fn unconditional_samples_need_half_a_uniform_share() {
        let setting = Setting::Class {
            class: 1,
            conditioned: false,
            classes: 10,
        };
        assert!(uninformative(&baseline(Some(0.04), 0.0), &setting).is_some());
        assert_eq!(uninformative(&baseline(Some(0.06), 0.0), &setting), None);
    }

    #[test]
    fn a_forget_image_never_reproduced_makes_the_copy_rate_uninformative() {
        let why = uninformative(&baseline(None, 0.0), &Setting::DataPoint).expect("flagged");
        assert!(
            why.contains("reproduces none of the forget images"),
            "{why}"
        );
        assert_eq!(
            uninformative(&baseline(None, 0.03), &Setting::DataPoint),
            None
        );
    }
}
