//! SISS importance weights (docs/methods.md, SISS), always in log space.
//!
//! A noisy sample `m` is drawn from the defensive mixture
//! `q_λ(m | x, a) = (1 − λ) q(m | x) + λ q(m | a)`; the weights are
//! `w_x = q(m|x) / q_λ` and `w_a = q(m|a) / q_λ`. With `δ = D_x − D_a`,
//! `D = ‖m − γ·x‖² / (2σ²)`, they are
//! `log w_x = −logaddexp(log(1−λ), log λ + δ)` and `log w_a = −logaddexp(log(1−λ) − δ, log λ)`.
//! A direct `exp(δ)` overflows f32 for small σ (δ is O(d/σ²)); this never does.

/// `log(e^u + e^v)` without overflow; `−∞` arguments allowed.
pub fn log_add_exp(u: f64, v: f64) -> f64 {
    if u == f64::NEG_INFINITY {
        return v;
    }
    if v == f64::NEG_INFINITY {
        return u;
    }
    let m = u.max(v);
    m + (-(u - v).abs()).exp().ln_1p()
}

/// `(log w_x, log w_a)` for `δ = D_x − D_a` and mixture weight `λ ∈ [0, 1]`.
pub fn log_weights(delta: f64, lambda: f64) -> (f64, f64) {
    let (log_keep, log_forget) = ((1.0 - lambda).ln(), lambda.ln());
    // Each weight from its own log-sum-exp: `log w_x + δ` would cancel catastrophically
    // for |δ| ~ 1e9.
    (
        -log_add_exp(log_keep, log_forget + delta),
        -log_add_exp(log_keep - delta, log_forget),
    )
}

pub use crate::diffusion::schedule::half_scaled_distance;

/// Summary of one batch's weights, for the live plots.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct WeightStats {
    pub w_x_mean: f64,
    pub w_x_min: f64,
    pub w_x_max: f64,
    pub w_a_mean: f64,
    pub w_a_min: f64,
    pub w_a_max: f64,
    /// Fraction of the batch drawn from the forget branch.
    pub forget_fraction: f64,
}

impl WeightStats {
    pub fn of(w_x: &[f64], w_a: &[f64], from_forget: &[bool]) -> Self {
        let stats = |w: &[f64]| {
            let n = w.len().max(1) as f64;
            (
                w.iter().sum::<f64>() / n,
                w.iter().copied().fold(f64::INFINITY, f64::min),
                w.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        };
        let (xm, xl, xh) = stats(w_x);
        let (am, al, ah) = stats(w_a);
        Self {
            w_x_mean: xm,
            w_x_min: xl,
            w_x_max: xh,
            w_a_mean: am,
            w_a_min: al,
            w_a_max: ah,
            forget_fraction: from_forget.iter().filter(|&&f| f).count() as f64
                / from_forget.len().max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(delta: f64, lambda: f64) -> (f64, f64) {
        let (lx, la) = log_weights(delta, lambda);
        (lx.exp(), la.exp())
    }

    #[test]
    fn mixture_identity_and_ratio_hold_pointwise() {
        for &lambda in &[0.1, 0.3, 0.5, 0.7, 0.9] {
            for &delta in &[-50.0, -3.0, -0.1, 0.0, 0.2, 4.0, 40.0] {
                let (wx, wa) = weights(delta, lambda);
                let mix = (1.0 - lambda) * wx + lambda * wa;
                assert!((mix - 1.0).abs() < 1e-12, "λ={lambda} δ={delta}: {mix}");
                let (lx, la) = log_weights(delta, lambda);
                assert!((la - lx - delta).abs() < 1e-12);
                assert!(wx <= 1.0 / (1.0 - lambda) + 1e-12);
                assert!(wa <= 1.0 / lambda + 1e-12);
            }
        }
    }

    #[test]
    fn extreme_distances_stay_finite_where_naive_exp_overflows() {
        // δ of order d/σ² for a 784-pixel image at t=0 (σ² ≈ 1e-4).
        for &delta in &[1e6, -1e6, 1e9, -1e9] {
            let naive_w_x = 1.0 / (0.5 + 0.5 * (delta as f32).exp());
            let naive_w_a = 1.0 / (0.5 * (-delta as f32).exp() + 0.5);
            let (lx, la) = log_weights(delta, 0.5);
            assert!(lx.is_finite() || lx == f64::NEG_INFINITY);
            let (wx, wa) = (lx.exp(), la.exp());
            assert!(wx.is_finite() && wa.is_finite(), "δ={delta}");
            assert!(((1.0 - 0.5) * wx + 0.5 * wa - 1.0).abs() < 1e-12);
            // The owning branch gets weight 1/λ = 2, the other ~0.
            if delta > 0.0 {
                assert!((wa - 2.0).abs() < 1e-12 && wx < 1e-300);
            } else {
                assert!((wx - 2.0).abs() < 1e-12 && wa < 1e-300);
            }
            // The naive f32 formula saturates: one of the exps is inf (weight 0), and
            // products such as inf·0 in its gradient become NaN.
            assert!(naive_w_x == 0.0 || naive_w_a == 0.0);
        }
    }

    #[test]
    fn lambda_edges() {
        // λ = 0: every sample comes from x; w_x = 1, w_a = exp(δ) (unbounded).
        for &delta in &[-5.0, 0.0, 3.0] {
            let (wx, wa) = weights(delta, 0.0);
            assert!((wx - 1.0).abs() < 1e-12);
            assert!((wa - f64::exp(delta)).abs() < 1e-9 * f64::exp(delta).max(1.0));
            // λ = 1: every sample comes from a; w_a = 1, w_x = exp(−δ).
            let (wx, wa) = weights(delta, 1.0);
            assert!((wa - 1.0).abs() < 1e-12);
            assert!((wx - f64::exp(-delta)).abs() < 1e-9 * f64::exp(-delta).max(1.0));
        }
    }

    #[test]
    fn weights_match_gaussian_densities() {
        // Against the definition with explicit densities, in one dimension where exp is safe.
        let (gamma, sigma, lambda) = (0.8f64, 0.6f64, 0.5f64);
        let (x, a, m) = (0.3f32, -0.7f32, 0.1f32);
        let q = |c: f32| (-(m as f64 - gamma * c as f64).powi(2) / (2.0 * sigma * sigma)).exp();
        let mix = (1.0 - lambda) * q(x) + lambda * q(a);
        let delta = half_scaled_distance(&[m], &[x], gamma, sigma)
            - half_scaled_distance(&[m], &[a], gamma, sigma);
        let (wx, wa) = weights(delta, lambda);
        assert!((wx - q(x) / mix).abs() < 1e-12);
        assert!((wa - q(a) / mix).abs() < 1e-12);
    }
}
