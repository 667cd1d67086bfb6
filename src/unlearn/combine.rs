//! Gradient combiners (docs/methods.md, combining gradients): how methods turn per-term gradients into one
//! update direction (before the global clip).

use serde::{Deserialize, Serialize};

use crate::train::grads::GradVec;
use crate::util::NoUnknownKeys;

/// How SISS and SISS (No IS) size the forget gradient before subtracting it (the
/// `scaling_norm` knobs of the official code), flattened into both methods' `[method]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForgetScaling {
    /// Norm the forget gradient is rescaled to (MNIST 5, CelebA 500, SD 750).
    pub scaling_norm: f32,
    /// Instead of a fixed norm, scale the forget gradient to this fraction of the retain
    /// gradient's norm each step (the SISS README's tuning advice: ~0.1). Overrides
    /// `scaling_norm` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_scaling: Option<f32>,
    /// Refuses the keys of the method's table that no field took (see [`NoUnknownKeys`]).
    #[serde(flatten, skip_serializing)]
    pub unknown: NoUnknownKeys,
}

impl Default for ForgetScaling {
    /// The official code's MNIST value.
    fn default() -> Self {
        Self {
            scaling_norm: 5.0,
            relative_scaling: None,
            unknown: NoUnknownKeys,
        }
    }
}

impl ForgetScaling {
    /// The norm the forget gradient is rescaled to, given the retain gradient's norm.
    pub fn forget_norm(&self, retain_norm: f32) -> f32 {
        self.relative_scaling
            .map_or(self.scaling_norm, |r| r * retain_norm)
    }

    pub fn validate(&self) -> Result<(), String> {
        super::check_non_negative("method.scaling_norm", self.scaling_norm as f64)?;
        if let Some(r) = self.relative_scaling {
            super::check_non_negative("method.relative_scaling", r as f64)?;
        }
        Ok(())
    }
}

/// SISS's official combination: `g = g_x − (s / ‖g_a‖)·g_a`, so the forget gradient enters
/// with norm exactly `s` (`scaling_norm`). Returns the direction and the factor `s/‖g_a‖`
/// (0 when `g_a = 0`, as in the official code).
pub fn norm_fixed_subtraction(g_x: GradVec, g_a: &GradVec, scaling_norm: f32) -> (GradVec, f32) {
    let norm_a = g_a.norm();
    let factor = if norm_a > 0.0 {
        scaling_norm / norm_a
    } else {
        0.0
    };
    (g_x.plus(g_a, -factor), factor)
}

/// EraseDiff's λ (Theorem 1, BOME): `λ = max(η − ⟨∇F, ∇q⟩ / ‖∇q‖², 0)`.
/// With `∇q = 0` the constraint is inactive and `λ = max(η, 0)`.
pub fn bome_lambda(dot: f32, q_norm_sq: f32, eta: f32) -> f32 {
    if q_norm_sq > 0.0 {
        (eta - dot / q_norm_sq).max(0.0)
    } else {
        eta.max(0.0)
    }
}

/// `δ = ∇F + λ·∇q`.
pub fn bome_direction(g_f: GradVec, g_q: &GradVec, lambda: f32) -> GradVec {
    g_f.plus(g_q, lambda)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn scaling_norm_rescales_the_forget_gradient_to_exactly_that_norm() {
        let d = Device::flex();
        let g_x = GradVec::from_values(vec![0.5, -1.0, 2.0, 0.0], &d);
        let g_a = GradVec::from_values(vec![30.0, 40.0, 0.0, 120.0], &d); // ‖g_a‖ = 130
        let (g, factor) = norm_fixed_subtraction(g_x.clone(), &g_a, 5.0);
        assert!((factor - 5.0 / 130.0).abs() < 1e-7);
        let forget_part = g_x.plus(&g, -1.0); // = factor · g_a
        assert!((forget_part.norm() - 5.0).abs() < 1e-5);
        let zero = GradVec::from_values(vec![0.0; 4], &d);
        let (_, f0) = norm_fixed_subtraction(g, &zero, 5.0);
        assert_eq!(f0, 0.0);
    }

    #[test]
    fn bome_direction_is_the_closed_form_of_theorem_1() {
        // min ‖∇F − δ‖² s.t. ⟨∇q, δ⟩ ≥ η‖∇q‖²: the solution is ∇F + λ∇q with the λ above.
        let d = Device::flex();
        let g_f = GradVec::from_values(vec![1.0, 2.0, -1.0], &d);
        let g_q = GradVec::from_values(vec![-2.0, 0.5, 1.0], &d);
        let eta = 0.1f32;
        let lambda = bome_lambda(g_f.dot(&g_q), g_q.dot(&g_q), eta);
        // ⟨g_f,g_q⟩ = -2+1-1 = -2, ‖g_q‖² = 5.25 → λ = 0.1 + 2/5.25
        assert!((lambda - (0.1 + 2.0 / 5.25)).abs() < 1e-6);
        let delta = bome_direction(g_f.clone(), &g_q, lambda);
        // The constraint is active at the optimum: ⟨∇q, δ⟩ = η‖∇q‖².
        assert!((g_q.dot(&delta) - eta * 5.25).abs() < 1e-5);
        // Any feasible δ' = δ + v with v ⟂ ∇q is no closer to ∇F (KKT): check a few.
        let base = g_f.clone().plus(&delta, -1.0).norm();
        for v in [[0.5f32, 2.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, -1.0]] {
            let v = GradVec::from_values(v.to_vec(), &d);
            let v = v.clone().plus(&g_q, -v.dot(&g_q) / 5.25); // project out ∇q
            let other = delta.clone().plus(&v, 1.0);
            assert!(g_f.clone().plus(&other, -1.0).norm() >= base - 1e-6);
        }
        // Already-aligned gradients need no correction beyond 0: λ clamps at 0.
        assert_eq!(bome_lambda(10.0, 1.0, 0.1), 0.0);
    }
}
