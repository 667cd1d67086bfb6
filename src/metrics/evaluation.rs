//! One evaluation of a model and how each of its values was computed: the record that runs
//! log (`metrics.jsonl`), `lethe eval` prints and writes, and the GUI plots. The metrics that
//! fill it live beside this file (`forgetting`, `suite`, …); this file computes nothing but
//! the percentage of unlearning, which only compares two evaluations.

use serde::{Deserialize, Serialize};

/// One evaluation of a set of samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub samples: usize,
    /// How the samples were drawn and judged, e.g.
    /// `N=64, DDIM-50,uncond, seed 0; copies: L2<10 in [0,1] px to 1 forget image(s)`.
    pub provenance: String,
    /// Fraction of samples within `copy_threshold` of some forget image.
    pub forget_copy_rate: f64,
    /// Mean distance from a sample to its nearest forget image.
    pub nearest_forget_distance: f64,
    /// Fraction classified (argmax) as the forgotten class.
    pub forgotten_class_rate: Option<f64>,
    /// Mean classifier probability of the forgotten class, `P(y = c_f)`.
    pub forgotten_class_probability: Option<f64>,
    /// Fraction whose top class is a kept class with probability ≥ the confidence.
    pub confident_kept_rate: Option<f64>,
    /// Mean entropy of the classifier's output (nats).
    pub mean_entropy: Option<f64>,
    /// Sample quality against the reference images, in the feature network's space
    /// (`how` says which network, how many samples, which reference).
    #[serde(default)]
    pub fid: Option<f64>,
    /// FID of as many real reference images as samples against the whole reference: the
    /// best value reachable at this N (FID is biased upwards at small N).
    #[serde(default)]
    pub fid_real_floor: Option<f64>,
    /// Kernel Inception Distance against as many reference images (unbiased, so
    /// comparable across N), in the same feature space as `fid`.
    #[serde(default)]
    pub kid: Option<f64>,
    #[serde(default)]
    pub precision: Option<f64>,
    #[serde(default)]
    pub recall: Option<f64>,
    /// Inception-Score-style score with the classifier: mean and std over splits.
    #[serde(default)]
    pub inception_score: Option<f64>,
    #[serde(default)]
    pub inception_score_std: Option<f64>,
    /// ELBO of the forget images and of a fixed subset of retain images, bits/dim.
    #[serde(default)]
    pub elbo_forget_bpd: Option<f64>,
    #[serde(default)]
    pub elbo_retain_bpd: Option<f64>,
    /// Percentage of unlearning vs the original model on the same seeds: of the
    /// forgotten-class rate when there is one, else of the forget-copy rate.
    #[serde(default)]
    pub pul: Option<f64>,
    /// How the values were computed, in full.
    #[serde(default)]
    pub how: Option<MetricProvenance>,
}

/// How every value of an [`Evaluation`] was computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricProvenance {
    /// `fast`, `thorough` or `custom`.
    pub preset: String,
    /// e.g. `lethe-mnist11@1a2b3c4d` (name and the first hex digits of its weights' SHA-256).
    pub feature_net: Option<String>,
    pub feature_net_sha256: Option<String>,
    pub samples: usize,
    /// e.g. `DDIM-25,uncond` or `DDIM-50,class=7,w=2`.
    pub sampler: String,
    pub seed: u64,
    /// The quality metrics' reference, e.g. `9999 retain images`.
    pub reference: Option<String>,
    /// SHA-256 of the reference images' pixels.
    pub reference_sha256: Option<String>,
    /// The ELBO's label, e.g.
    /// `ELBO bits/dim [16 of 1000 t stratified, seed 0, p(x | null class 11); forget N=1 (s.e. 0.000), retain N=8 (s.e. 0.041)]`.
    pub elbo: Option<String>,
    /// Why the forgetting rates (and PUL) cannot show forgetting, when the original model does
    /// not show what they measure (`metrics::baseline_check`); `None` when they can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caveat: Option<String>,
    /// Where a reused evaluation came from (the original model's, cached by checkpoint and
    /// evaluation settings: `engine::original_cache`); `None` when computed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
}

impl MetricProvenance {
    /// The short form shown beside a value: `lethe-mnist11@1a2b3c4d, N=64, DDIM-25,uncond, seed 0`.
    pub fn short(&self) -> String {
        let net = self.feature_net.as_deref().unwrap_or("no feature net");
        format!(
            "{net}, N={}, {}, seed {}",
            self.samples, self.sampler, self.seed
        )
    }
}

impl Evaluation {
    /// A value's name with its provenance, e.g.
    /// `FID[lethe-mnist11@1a2b3c4d, N=64, DDIM-25,uncond, seed 0, vs 9999 retain images]`.
    pub fn label(&self, metric: &str) -> String {
        let Some(how) = &self.how else {
            return format!("{metric}[{}]", self.provenance);
        };
        match metric {
            // The score uses the classifier's probabilities whatever the feature network.
            "IS" if how
                .feature_net
                .as_deref()
                .is_some_and(|net| net.starts_with("inception")) =>
            {
                format!(
                    "IS[the classifier's probabilities, N={}, {}, seed {}]",
                    how.samples, how.sampler, how.seed
                )
            }
            "FID" | "KID" | "precision" | "recall" => format!(
                "{metric}[{}, vs {}]",
                how.short(),
                how.reference.as_deref().unwrap_or("no reference")
            ),
            m if m.starts_with("ELBO") => how
                .elbo
                .clone()
                .unwrap_or_else(|| format!("{m}[not computed]")),
            _ => format!("{metric}[{}]", how.short()),
        }
    }

    /// Sets PUL against the original model's evaluation on the same seeds.
    pub fn set_pul(&mut self, baseline: &Evaluation) {
        self.pul = match (baseline.forgotten_class_rate, self.forgotten_class_rate) {
            (Some(before), Some(after)) => percentage_of_unlearning(before, after),
            _ => percentage_of_unlearning(baseline.forget_copy_rate, self.forget_copy_rate),
        };
    }
}

/// PUL, the percentage of unlearning (docs/metrics.md, PUL): how much of the original model's
/// rate of the undesired content (`before`, e.g. the forgotten-class or copy rate on fixed
/// seeds) the unlearned model no longer shows (`after`): `100·(before − after)/before`.
/// 100 = gone; negative = more than before. `None` when the original never showed it.
pub fn percentage_of_unlearning(before: f64, after: f64) -> Option<f64> {
    (before > 0.0).then(|| 100.0 * (before - after) / before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pul_is_the_removed_share_of_the_original_rate() {
        let pul = |before, after| percentage_of_unlearning(before, after).unwrap();
        assert!((pul(0.5, 0.1) - 80.0).abs() < 1e-9);
        assert!((pul(0.25, 0.0) - 100.0).abs() < 1e-9);
        assert!((pul(0.2, 0.3) + 50.0).abs() < 1e-9);
        assert_eq!(percentage_of_unlearning(0.0, 0.1), None);
    }

    #[test]
    fn pul_uses_the_class_rate_when_there_is_one_else_the_copy_rate() {
        let before = Evaluation {
            forget_copy_rate: 0.04,
            forgotten_class_rate: Some(0.5),
            ..Evaluation::default()
        };
        let mut after = Evaluation {
            forget_copy_rate: 0.0,
            forgotten_class_rate: Some(0.1),
            ..Evaluation::default()
        };
        after.set_pul(&before);
        assert!((after.pul.unwrap() - 80.0).abs() < 1e-9);
        let before = Evaluation {
            forgotten_class_rate: None,
            ..before
        };
        after.forgotten_class_rate = None;
        after.set_pul(&before);
        assert!((after.pul.unwrap() - 100.0).abs() < 1e-9);
    }
}
