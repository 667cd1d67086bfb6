//! Inception-Score-style score with a domain classifier (docs/metrics.md, IS; SISS scores
//! MNIST samples this way with its own classifier): `IS = exp(E_x KL(p(y|x) ‖ p(y)))`, with
//! `p(y)` the mean prediction of the split, computed on `splits` equal consecutive splits
//! (the usual 10) and reported as their mean and population standard deviation (numpy's
//! `np.std`), as SISS's `metrics/inception_score.py` does. 1 = every sample gets the same
//! prediction; the number of classes = confident samples spread evenly over all of them.

/// Mean and standard deviation of the score over splits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionScore {
    pub mean: f64,
    pub std: f64,
    pub splits: usize,
}

/// The score of class-probability rows (`probs[i]` sums to 1 over the classes).
pub fn inception_score(probs: &[Vec<f32>], splits: usize) -> Result<InceptionScore, String> {
    if splits == 0 || probs.len() < splits {
        return Err(format!(
            "{} samples cannot form {splits} splits",
            probs.len()
        ));
    }
    let per_split = probs.len() / splits;
    let scores: Vec<f64> = probs
        .chunks(per_split)
        .take(splits)
        .map(split_score)
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let variance = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64;
    Ok(InceptionScore {
        mean,
        std: variance.sqrt(),
        splits,
    })
}

fn split_score(part: &[Vec<f32>]) -> f64 {
    let classes = part[0].len();
    let mut marginal = vec![0.0f64; classes];
    for p in part {
        for (m, &q) in marginal.iter_mut().zip(p) {
            *m += q as f64 / part.len() as f64;
        }
    }
    let mean_kl = part
        .iter()
        .map(|p| {
            p.iter()
                .zip(&marginal)
                .filter(|&(&q, _)| q > 0.0)
                .map(|(&q, &m)| q as f64 * ((q as f64).ln() - m.ln()))
                .sum::<f64>()
        })
        .sum::<f64>()
        / part.len() as f64;
    mean_kl.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(class: usize, classes: usize) -> Vec<f32> {
        (0..classes)
            .map(|c| f32::from(u8::from(c == class)))
            .collect()
    }

    #[test]
    fn confident_samples_spread_over_all_classes_score_the_class_count() {
        // Two splits, each holding every one of 10 classes once.
        let probs: Vec<Vec<f32>> = (0..20).map(|i| one_hot(i % 10, 10)).collect();
        let is = inception_score(&probs, 2).unwrap();
        assert!(
            (is.mean - 10.0).abs() < 1e-9 && is.std.abs() < 1e-9,
            "{is:?}"
        );
    }

    #[test]
    fn identical_predictions_score_one() {
        let probs = vec![vec![0.2f32, 0.3, 0.5]; 12];
        let is = inception_score(&probs, 3).unwrap();
        assert!((is.mean - 1.0).abs() < 1e-6, "{is:?}");
    }

    #[test]
    fn hand_worked_split_scores_give_mean_and_population_std() {
        // Split 1: one-hot on 2 classes evenly → 2; split 2: one class only → 1.
        let probs = vec![one_hot(0, 2), one_hot(1, 2), one_hot(0, 2), one_hot(0, 2)];
        let is = inception_score(&probs, 2).unwrap();
        assert!(
            (is.mean - 1.5).abs() < 1e-9 && (is.std - 0.5).abs() < 1e-9,
            "{is:?}"
        );
        assert!(inception_score(&probs, 5).is_err());
    }
}
