//! Fréchet distance between the feature statistics of two image sets — FID's formula
//! (docs/metrics.md, FID) on whatever features the caller brings (Lethe's own classifier's
//! penultimate layer, or arrays from another tool):
//!
//! `d² = ‖μ_a − μ_b‖² + Tr(Σ_a) + Tr(Σ_b) − 2·Tr((Σ_a Σ_b)^½)`.
//!
//! `Tr((Σ_a Σ_b)^½)` is computed without a non-symmetric matrix square root (which needs
//! complex arithmetic and is fragile on singular covariances): it equals `Σ √λ_i` over the
//! eigenvalues of the symmetric PSD matrix `Σ_a^½ Σ_b Σ_a^½`, with `Σ_a^½` from a symmetric
//! eigendecomposition — all in f64. `tests/numerics/golden_fid.rs` holds it to scipy's `sqrtm` form.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Checks that `values` are whole rows of `dim` finite features; returns the row count.
pub(crate) fn feature_rows(values: &[f32], dim: usize) -> Result<usize, String> {
    if dim == 0 || !values.len().is_multiple_of(dim) {
        return Err(format!(
            "{} values do not form rows of {dim} features",
            values.len()
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "feature {} of vector {} is not finite ({})",
            i % dim,
            i / dim,
            values[i]
        ));
    }
    Ok(values.len() / dim)
}

/// Mean and unbiased covariance (divided by N − 1, as numpy's `np.cov` and pytorch-fid) of a
/// set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub mean: DVector<f64>,
    pub covariance: DMatrix<f64>,
    /// How many feature vectors they came from, when known (a statistics file may not say).
    pub count: Option<usize>,
}

impl FeatureStats {
    /// Statistics of `rows` feature vectors of `dim` values each, stored row after row.
    pub fn from_rows(values: &[f32], dim: usize) -> Result<Self, String> {
        let n = feature_rows(values, dim)?;
        if n < 2 {
            return Err(format!(
                "a covariance needs at least 2 feature vectors, got {n}"
            ));
        }
        let x = DMatrix::from_row_iterator(n, dim, values.iter().map(|&v| v as f64));
        let mean = x.row_mean().transpose();
        let centered = DMatrix::from_fn(n, dim, |r, c| x[(r, c)] - mean[c]);
        let covariance = centered.tr_mul(&centered) / (n - 1) as f64;
        Ok(Self {
            mean,
            covariance,
            count: Some(n),
        })
    }

    /// Statistics given directly (e.g. a pytorch-fid `.npz` with `mu` and `sigma`).
    pub fn from_parts(mean: Vec<f64>, covariance: Vec<f64>) -> Result<Self, String> {
        let d = mean.len();
        if d == 0 || covariance.len() != d * d {
            return Err(format!(
                "mu has {d} values, so sigma needs {d}×{d} = {} values; it has {}",
                d * d,
                covariance.len()
            ));
        }
        let covariance = DMatrix::from_row_slice(d, d, &covariance);
        let asymmetry = (&covariance - covariance.transpose()).amax();
        if asymmetry > 1e-6 * covariance.amax().max(1.0) {
            return Err(format!(
                "sigma is not symmetric (largest |Σ − Σᵀ| entry {asymmetry:.3e})"
            ));
        }
        Ok(Self {
            mean: DVector::from_vec(mean),
            covariance,
            count: None,
        })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }
}

/// The Fréchet distance `d²` between two Gaussians fitted to feature sets (what FID reports).
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64, String> {
    if a.dim() != b.dim() {
        return Err(format!(
            "the feature sets have different dimensions ({} and {})",
            a.dim(),
            b.dim()
        ));
    }
    let mean_term = (&a.mean - &b.mean).norm_squared();
    let cross = trace_sqrt_product(&a.covariance, &b.covariance)?;
    let d2 = mean_term + a.covariance.trace() + b.covariance.trace() - 2.0 * cross;
    if !d2.is_finite() {
        return Err("the Fréchet distance is not finite (non-finite statistics)".into());
    }
    Ok(d2)
}

/// `Tr((A B)^½)` for symmetric PSD `A`, `B`: `Σ √λ(A^½ B A^½)`, negative round-off clamped.
///
/// Features with exactly zero variance in `A` (dead ReLU units are common) are dropped
/// first: their rows and columns of `A^½`, and so of `A^½ B A^½`, are zero, so dropping
/// them changes nothing, and nalgebra's eigensolver returns NaNs on such zero blocks.
fn trace_sqrt_product(a: &DMatrix<f64>, b: &DMatrix<f64>) -> Result<f64, String> {
    let live: Vec<usize> = (0..a.nrows()).filter(|&i| a[(i, i)] > 0.0).collect();
    if live.is_empty() {
        return Ok(0.0);
    }
    let restrict =
        |m: &DMatrix<f64>| DMatrix::from_fn(live.len(), live.len(), |r, c| m[(live[r], live[c])]);
    let (a, b) = (restrict(a), restrict(b));
    let root_a = psd_sqrt(&a)?;
    let m = &root_a * b * &root_a;
    let symmetric = (&m + m.transpose()) * 0.5;
    let eigenvalues = finite_eigen(symmetric)?.eigenvalues;
    Ok(eigenvalues.iter().map(|&l| l.max(0.0).sqrt()).sum())
}

/// A symmetric eigendecomposition, or an error where it produced non-finite values (rather
/// than letting `max(NaN, 0) = 0` turn them into a wrong distance).
fn finite_eigen(m: DMatrix<f64>) -> Result<SymmetricEigen<f64, nalgebra::Dyn>, String> {
    let eig = SymmetricEigen::new(m);
    if eig
        .eigenvalues
        .iter()
        .chain(eig.eigenvectors.iter())
        .all(|v| v.is_finite())
    {
        Ok(eig)
    } else {
        Err("the covariance eigendecomposition produced non-finite values".into())
    }
}

/// `A^½ = V diag(√max(w, 0)) Vᵀ` of a symmetric PSD matrix.
fn psd_sqrt(a: &DMatrix<f64>) -> Result<DMatrix<f64>, String> {
    let eig = finite_eigen((a + a.transpose()) * 0.5)?;
    let roots = eig.eigenvalues.map(|w| w.max(0.0).sqrt());
    Ok(&eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows drawn from a fixed pseudo-random sequence (no RNG crate needed for a unit test).
    fn rows(n: usize, dim: usize, shift: f32, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n * dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 - 0.5) * 2.0 + shift
            })
            .collect()
    }

    #[test]
    fn a_set_against_itself_is_zero() {
        let x = FeatureStats::from_rows(&rows(200, 12, 0.0, 1), 12).unwrap();
        let d = frechet_distance(&x, &x).unwrap();
        assert!(d.abs() < 1e-9, "{d}");
    }

    #[test]
    fn distance_grows_monotonically_with_a_mean_shift() {
        let base = FeatureStats::from_rows(&rows(300, 8, 0.0, 2), 8).unwrap();
        let mut last = frechet_distance(&base, &base).unwrap();
        for shift in [0.1f32, 0.3, 0.6, 1.0, 2.0] {
            let moved = FeatureStats::from_rows(&rows(300, 8, shift, 2), 8).unwrap();
            let d = frechet_distance(&base, &moved).unwrap();
            // Same draws moved by `shift` in every feature: only the mean term changes.
            let expected = 8.0 * (shift as f64).powi(2);
            assert!(
                (d - expected).abs() < 1e-4 * expected.max(1.0),
                "{d} vs {expected}"
            );
            assert!(d > last);
            last = d;
        }
    }

    #[test]
    fn gaussians_with_known_covariances_match_the_closed_form() {
        // Diagonal covariances: Tr((AB)^½) = Σ √(a_i b_i).
        let a = FeatureStats::from_parts(vec![0.0, 1.0], vec![4.0, 0.0, 0.0, 1.0]).unwrap();
        let b = FeatureStats::from_parts(vec![1.0, 1.0], vec![1.0, 0.0, 0.0, 9.0]).unwrap();
        let expected = 1.0 + (4.0 + 1.0 + 1.0 + 9.0) - 2.0 * (2.0 + 3.0);
        assert!((frechet_distance(&a, &b).unwrap() - expected).abs() < 1e-12);
    }

    #[test]
    fn bad_shapes_are_refused_with_the_reason() {
        assert!(
            FeatureStats::from_rows(&[1.0, 2.0, 3.0], 2)
                .unwrap_err()
                .contains("rows of 2")
        );
        assert!(
            FeatureStats::from_rows(&[1.0, 2.0], 2)
                .unwrap_err()
                .contains("at least 2")
        );
        assert!(
            FeatureStats::from_rows(&[1.0, f32::NAN, 0.0, 0.0], 2)
                .unwrap_err()
                .contains("not finite")
        );
        assert!(
            FeatureStats::from_parts(vec![0.0, 0.0], vec![1.0, 0.0, 0.0])
                .unwrap_err()
                .contains("2×2")
        );
        let a = FeatureStats::from_parts(vec![0.0], vec![1.0]).unwrap();
        let b = FeatureStats::from_parts(vec![0.0, 0.0], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        assert!(
            frechet_distance(&a, &b)
                .unwrap_err()
                .contains("different dimensions")
        );
    }

    #[test]
    fn a_set_with_dead_features_is_at_distance_zero_from_itself() {
        // Fewer vectors than features, and a third of the features always zero (dead ReLU
        // units): the case that exported sample statistics hit.
        let dim = 24;
        let mut values = rows(6, dim, 0.0, 9);
        for (i, v) in values.iter_mut().enumerate() {
            if i % dim % 3 == 0 {
                *v = 0.0;
            }
        }
        let s = FeatureStats::from_rows(&values, dim).unwrap();
        let d = frechet_distance(&s, &s).unwrap();
        // Rank 5 of 16 live features: the zero eigenvalues' round-off enters through √, so
        // the bound is relative to the covariance's scale.
        assert!(d.abs() < 1e-6 * s.covariance.trace(), "{d}");
        let shifted: Vec<f32> = values.iter().map(|v| v + 0.5).collect();
        let t = FeatureStats::from_rows(&shifted, dim).unwrap();
        let d = frechet_distance(&s, &t).unwrap();
        assert!((d - 0.25 * dim as f64).abs() < 1e-6, "{d}");
    }
}
