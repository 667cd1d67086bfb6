//! Improved precision and recall of a generative model (Kynkäänniemi et al. 2019;
//! docs/metrics.md, precision and recall), on feature vectors.
//!
//! Each set's points get a radius: the distance to their k-th nearest neighbour in their own
//! set (itself excluded; k = 3 as in the ADM evaluator that SA/EraseDiff/SalUn report with).
//! The union of those balls estimates the set's support. Precision is the share of generated
//! points inside the real support (quality); recall the share of real points inside the
//! generated support (coverage).

use rayon::prelude::*;

/// Precision and recall, and the neighbourhood size they used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
    pub k: usize,
}

/// The ADM evaluator's neighbourhood size.
pub const DEFAULT_K: usize = 3;

/// Precision and recall of `generated` against `real`, both N×`dim` feature rows stored row
/// after row. Exact (all pairwise distances, in f64), parallel over rows.
pub fn precision_recall(
    real: &[f32],
    generated: &[f32],
    dim: usize,
    k: usize,
) -> Result<PrecisionRecall, String> {
    let real = rows(real, dim, k, "real")?;
    let generated = rows(generated, dim, k, "generated")?;
    let real_radii = kth_neighbour_distances(&real, k);
    let generated_radii = kth_neighbour_distances(&generated, k);
    Ok(PrecisionRecall {
        precision: share_covered(&generated, &real, &real_radii),
        recall: share_covered(&real, &generated, &generated_radii),
        k,
    })
}

/// The feature rows of one set, checked: whole rows, finite, more than k of them.
fn rows<'a>(values: &'a [f32], dim: usize, k: usize, name: &str) -> Result<Vec<&'a [f32]>, String> {
    if k == 0 {
        return Err("k must be ≥ 1".into());
    }
    super::fid::feature_rows(values, dim).map_err(|e| format!("{name}: {e}"))?;
    let rows: Vec<&[f32]> = values.chunks(dim).collect();
    if rows.len() <= k {
        return Err(format!(
            "{name}: {} feature vectors; a k = {k} neighbourhood needs more than {k}",
            rows.len()
        ));
    }
    Ok(rows)
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum()
}

/// Squared distance from each point to its k-th nearest other point of the same set.
fn kth_neighbour_distances(set: &[&[f32]], k: usize) -> Vec<f64> {
    set.par_iter()
        .enumerate()
        .map(|(i, a)| {
            let mut d: Vec<f64> = set
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, b)| squared_distance(a, b))
                .collect();
            let (_, kth, _) = d.select_nth_unstable_by(k - 1, f64::total_cmp);
            *kth
        })
        .collect()
}

/// Share of `points` within the ball of some member of `support` (squared radii).
fn share_covered(points: &[&[f32]], support: &[&[f32]], radii: &[f64]) -> f64 {
    let covered = points
        .par_iter()
        .filter(|p| {
            support
                .iter()
                .zip(radii)
                .any(|(s, &r)| squared_distance(p, s) <= r)
        })
        .count();
    covered as f64 / points.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_against_itself_has_full_precision_and_recall() {
        let set: Vec<f32> = (0..40).map(|i| ((i * 7) % 13) as f32).collect();
        let pr = precision_recall(&set, &set, 2, 3).unwrap();
        assert_eq!((pr.precision, pr.recall), (1.0, 1.0));
    }

    #[test]
    fn hand_worked_one_dimensional_example() {
        // Real 0,1,2,3,4: with k = 1 every radius is 1. Generated 0.5 lies in the ball of 0,
        // 10 in none: precision 1/2. Generated radii (k = 1): each other's distance, 9.5;
        // every real point is within 9.5 of 0.5: recall 1.
        let real = [0.0, 1.0, 2.0, 3.0, 4.0];
        let pr = precision_recall(&real, &[0.5, 10.0], 1, 1).unwrap();
        assert_eq!((pr.precision, pr.recall), (0.5, 1.0));
        // k = 2: real radii are 2, 1, 1, 1, 2 (2nd neighbour), so only 0.5 of 0.5, 10, 11 is
        // covered: precision 1/3. Generated radii 10.5, 9.5, 10.5: all of real lies within
        // 10.5 of 0.5: recall 1.
        let pr = precision_recall(&real, &[0.5, 10.0, 11.0], 1, 2).unwrap();
        assert!((pr.precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(pr.recall, 1.0);
    }

    #[test]
    fn disjoint_clusters_have_neither() {
        let real: Vec<f32> = (0..10).map(|i| i as f32 * 0.1).collect();
        let generated: Vec<f32> = (0..10).map(|i| 100.0 + i as f32 * 0.1).collect();
        let pr = precision_recall(&real, &generated, 1, 3).unwrap();
        assert_eq!((pr.precision, pr.recall), (0.0, 0.0));
    }

    #[test]
    fn too_few_points_and_bad_shapes_are_errors() {
        assert!(precision_recall(&[0.0, 1.0, 2.0], &[0.0; 8], 1, 3).is_err());
        assert!(precision_recall(&[0.0; 7], &[0.0; 8], 2, 1).is_err());
        assert!(precision_recall(&[0.0, f32::NAN, 1.0, 2.0], &[0.0; 4], 1, 1).is_err());
    }
}
