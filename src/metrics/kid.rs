//! Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of the squared
//! maximum mean discrepancy between two feature sets under the cubic polynomial kernel
//! `k(x, y) = (x·y / d + 1)³`, as clean-fid's `kernel_distance` and torch-fidelity compute it.
//!
//! Unlike FID it has an unbiased estimator, so values at small N are comparable across N.
//! Those tools average over random subsets of `min(N, 1000)` rows; with equal set sizes no
//! larger than that, every subset is the whole set and the average is this one value, which
//! is how Lethe computes it (deterministic; the caller passes equal-sized sets).

use rayon::prelude::*;

/// KID of `a` against `b`, both `m × dim` feature rows (row after row), in f64:
/// `Σ_{i≠j} k(a_i, a_j) / m(m−1) + Σ_{i≠j} k(b_i, b_j) / m(m−1) − 2 Σ_{i,j} k(a_i, b_j) / m²`.
pub fn kernel_inception_distance(a: &[f32], b: &[f32], dim: usize) -> Result<f64, String> {
    super::fid::feature_rows(a, dim).map_err(|e| format!("first set: {e}"))?;
    super::fid::feature_rows(b, dim).map_err(|e| format!("second set: {e}"))?;
    let a: Vec<&[f32]> = a.chunks(dim).collect();
    let b: Vec<&[f32]> = b.chunks(dim).collect();
    let m = a.len();
    if m != b.len() || m < 2 {
        return Err(format!(
            "KID needs two sets of the same size, at least 2 each; got {} and {}",
            m,
            b.len()
        ));
    }
    let kernel = |x: &[f32], y: &[f32]| {
        let dot: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum();
        (dot / dim as f64 + 1.0).powi(3)
    };
    let within = |set: &[&[f32]]| -> f64 {
        (0..m)
            .into_par_iter()
            .map(|i| {
                (0..m)
                    .filter(|&j| j != i)
                    .map(|j| kernel(set[i], set[j]))
                    .sum::<f64>()
            })
            .sum()
    };
    let across: f64 = (0..m)
        .into_par_iter()
        .map(|i| b.iter().map(|y| kernel(a[i], y)).sum::<f64>())
        .sum();
    let m = m as f64;
    Ok((within(&a) + within(&b)) / (m * (m - 1.0)) - 2.0 * across / (m * m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sets_score_about_zero_and_shifted_ones_more() {
        let a: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32 * 0.1).collect();
        let shifted: Vec<f32> = a.iter().map(|v| v + 1.0).collect();
        let same = kernel_inception_distance(&a, &a, 4).unwrap();
        let apart = kernel_inception_distance(&a, &shifted, 4).unwrap();
        // The unbiased estimate of a set against itself is small but not exactly zero.
        assert!(same.abs() < apart / 10.0, "{same} vs {apart}");
        assert!(apart > 0.0);
        assert!(kernel_inception_distance(&a, &a[..20], 4).is_err());
    }
}
