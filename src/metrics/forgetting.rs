//! The forgetting detector used live during runs and along attacks: how often samples
//! reproduce a forget image (SISS pixel criterion, generalised to any forget set), how often
//! the classifier sees the forgotten class, and how many samples are confidently something
//! the model should still make. Every value carries its provenance label.

use super::classifier::LoadedClassifier;
use super::evaluation::Evaluation;
use super::memorization::l2_distance;
use crate::data::ImageSet;

/// At most this many distinct forget images are compared with every sample: the copy
/// criterion's cost grows with their number (a whole forgotten class can be thousands).
pub const MAX_FORGET_IMAGES: usize = 1000;

/// The first [`MAX_FORGET_IMAGES`] distinct images of `set`, in [0, 1].
pub fn distinct_unit_images(set: &ImageSet) -> Vec<Vec<f32>> {
    let mut seen = std::collections::HashSet::new();
    (0..set.len())
        .filter(|&i| seen.insert(set.image(i)))
        .take(MAX_FORGET_IMAGES)
        .map(|i| set.unit_image(i))
        .collect()
}

/// What to look for in samples.
pub struct ForgetProbe {
    /// Forget images in [0, 1] (deduplicated), for the copy criterion.
    pub forget_images: Vec<Vec<f32>>,
    pub copy_threshold: f32,
    pub classifier: Option<LoadedClassifier>,
    /// The forgotten class/label in the classifier's label space, if any.
    pub forgotten_class: Option<usize>,
    /// A sample is "confident" when its top class probability reaches this.
    pub confidence: f32,
}

impl ForgetProbe {
    pub fn evaluate(
        &self,
        samples: &[Vec<f32>],
        shape: [usize; 3],
        sampler_label: &str,
        device: &burn::tensor::Device,
    ) -> Evaluation {
        let probs = self
            .classifier
            .as_ref()
            .map(|k| k.probabilities(samples, shape, device));
        self.evaluate_with(samples, probs.as_deref(), sampler_label)
    }

    /// As [`Self::evaluate`], with the classifier's probabilities of the samples already
    /// computed (`None` when there is no classifier).
    pub fn evaluate_with(
        &self,
        samples: &[Vec<f32>],
        probs: Option<&[Vec<f32>]>,
        sampler_label: &str,
    ) -> Evaluation {
        let n = samples.len().max(1) as f64;
        let nearest: Vec<f32> = samples
            .iter()
            .map(|s| {
                self.forget_images
                    .iter()
                    .map(|f| l2_distance(s, f))
                    .fold(f32::INFINITY, f32::min)
            })
            .collect();
        let copies = nearest.iter().filter(|&&d| d < self.copy_threshold).count();
        let mut eval = Evaluation {
            samples: samples.len(),
            provenance: format!(
                "N={}, {sampler_label}; copies: L2<{} in [0,1] px to {} forget image(s)",
                samples.len(),
                self.copy_threshold,
                self.forget_images.len()
            ),
            forget_copy_rate: copies as f64 / n,
            nearest_forget_distance: nearest.iter().map(|&d| d as f64).sum::<f64>() / n,
            ..Evaluation::default()
        };
        if let Some(probs) = probs {
            let mut confident = 0usize;
            let mut entropy = 0.0f64;
            let (mut forgot_argmax, mut forgot_p) = (0usize, 0.0f64);
            for p in probs {
                let (argmax, top) =
                    p.iter().enumerate().fold(
                        (0, f32::MIN),
                        |acc, (i, &q)| if q > acc.1 { (i, q) } else { acc },
                    );
                let kept = Some(argmax) != self.forgotten_class;
                if kept && top >= self.confidence {
                    confident += 1;
                }
                entropy += p
                    .iter()
                    .filter(|&&q| q > 0.0)
                    .map(|&q| -(q as f64) * (q as f64).ln())
                    .sum::<f64>();
                if let Some(c) = self.forgotten_class {
                    forgot_argmax += usize::from(argmax == c);
                    forgot_p += p.get(c).copied().unwrap_or(0.0) as f64;
                }
            }
            eval.confident_kept_rate = Some(confident as f64 / n);
            eval.mean_entropy = Some(entropy / n);
            if self.forgotten_class.is_some() {
                eval.forgotten_class_rate = Some(forgot_argmax as f64 / n);
                eval.forgotten_class_probability = Some(forgot_p / n);
            }
            let judge = self
                .classifier
                .as_ref()
                .map_or("given probabilities", |k| k.config.name.as_str());
            eval.provenance += &format!(
                "; classes: {judge} (confident = top p ≥ {})",
                self.confidence
            );
        }
        eval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_rates_and_entropy_from_hand_made_probabilities() {
        let probe = ForgetProbe {
            forget_images: vec![vec![0.0; 4]],
            copy_threshold: 10.0,
            classifier: None,
            forgotten_class: Some(2),
            confidence: 0.9,
        };
        let probs = vec![
            vec![0.25, 0.25, 0.5], // argmax 2 (forgotten), H = 1.5 ln 2
            vec![0.95, 0.05, 0.0], // confident kept class 0
            vec![1.0 / 3.0; 3],    // uniform: argmax 0 (first max), H = ln 3
            vec![0.0, 0.0, 1.0],   // forgotten, certain: H = 0
        ];
        let samples = vec![vec![0.5; 4]; 4];
        let e = probe.evaluate_with(&samples, Some(&probs), "test");
        assert_eq!(e.forgotten_class_rate, Some(0.5));
        let p_cf = (0.5 + 0.0 + 1.0 / 3.0 + 1.0) / 4.0;
        assert!((e.forgotten_class_probability.unwrap() - p_cf).abs() < 1e-6);
        assert_eq!(e.confident_kept_rate, Some(0.25));
        let ln = f64::ln;
        let h0 = -(0.25 * ln(0.25) * 2.0 + 0.5 * ln(0.5));
        let h1 = -(0.95 * ln(0.95) + 0.05 * ln(0.05));
        let h = (h0 + h1 + ln(3.0)) / 4.0;
        assert!(
            (e.mean_entropy.unwrap() - h).abs() < 1e-6,
            "{:?}",
            e.mean_entropy
        );
    }

    #[test]
    fn copy_rate_counts_samples_near_any_forget_image() {
        let probe = ForgetProbe {
            forget_images: vec![vec![0.0; 784], vec![1.0; 784]],
            copy_threshold: 10.0,
            classifier: None,
            forgotten_class: None,
            confidence: 0.9,
        };
        let near_first = vec![0.1; 784]; // 2.8 from the first
        let near_second = vec![0.9; 784]; // 2.8 from the second
        let between = vec![0.5; 784]; // 14 from both
        let e = probe.evaluate(
            &[near_first, near_second, between, vec![0.5; 784]],
            [1, 28, 28],
            "test",
            &burn::tensor::Device::flex(),
        );
        assert_eq!(e.forget_copy_rate, 0.5);
        assert!(e.forgotten_class_rate.is_none());
        assert!((e.nearest_forget_distance - (2.8 + 2.8 + 14.0 + 14.0) / 4.0).abs() < 0.01);
    }
}
