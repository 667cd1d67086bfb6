//! Weight distance between two checkpoints of the same architecture (docs/metrics.md, weight distance),
//! e.g. an unlearned model and the retrain reference: the L2 norm of the flattened
//! difference, and that norm relative to the reference's own norm. Both are reported because
//! the papers' WD values suggest a normalised variant that none of them defines.

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::diffusion::checkpoint::parameter_values;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightDistance {
    /// `‖θ − θ_ref‖₂` over every float parameter.
    pub l2: f64,
    /// `‖θ − θ_ref‖₂ / ‖θ_ref‖₂`.
    pub relative: f64,
    /// Number of scalar parameters compared.
    pub parameters: usize,
    /// The tensor that moved most relative to its own norm, and by how much.
    pub most_changed: Option<(String, f64)>,
}

/// Distance of `model` from `reference`; an error names the first tensor whose name or shape
/// differs (the two must be the same architecture).
pub fn weight_distance<M: Module>(model: &M, reference: &M) -> Result<WeightDistance, String> {
    let (a, b) = (parameter_values(model), parameter_values(reference));
    if a.len() != b.len() {
        return Err(format!(
            "the models differ in architecture: {} vs {} parameter tensors",
            a.len(),
            b.len()
        ));
    }
    let (mut diff_sq, mut ref_sq, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut most_changed: Option<(String, f64)> = None;
    for ((name_a, shape_a, va), (name_b, shape_b, vb)) in a.iter().zip(&b) {
        if name_a != name_b || shape_a != shape_b {
            return Err(format!(
                "the models differ in architecture: {name_a} {shape_a:?} vs {name_b} {shape_b:?}"
            ));
        }
        let (mut d, mut r) = (0.0f64, 0.0f64);
        for (&x, &y) in va.iter().zip(vb) {
            d += (x as f64 - y as f64).powi(2);
            r += (y as f64).powi(2);
        }
        let moved = if r > 0.0 { (d / r).sqrt() } else { d.sqrt() };
        if most_changed.as_ref().is_none_or(|(_, m)| moved > *m) {
            most_changed = Some((name_a.clone(), moved));
        }
        diff_sq += d;
        ref_sq += r;
        count += va.len();
    }
    Ok(WeightDistance {
        l2: diff_sq.sqrt(),
        relative: if ref_sq > 0.0 {
            (diff_sq / ref_sq).sqrt()
        } else {
            f64::NAN
        },
        parameters: count,
        most_changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::unet::{UNet, UNetConfig};

    fn tiny() -> UNetConfig {
        UNetConfig {
            sample_size: 8,
            block_out_channels: vec![8, 16],
            down_block_types: vec!["DownBlock2D".into(), "DownBlock2D".into()],
            up_block_types: vec!["UpBlock2D".into(), "UpBlock2D".into()],
            norm_num_groups: Some(4),
            add_attention: false,
            ..UNetConfig::demo_mnist()
        }
    }

    #[test]
    fn distance_of_a_model_to_itself_is_zero_and_to_another_is_its_norm_ratio() {
        let device = burn::tensor::Device::flex();
        let a = UNet::new(&tiny(), 0, &device).unwrap();
        let b = UNet::new(&tiny(), 1, &device).unwrap();
        let same = weight_distance(&a, &a).unwrap();
        assert_eq!((same.l2, same.relative), (0.0, 0.0));
        let d = weight_distance(&a, &b).unwrap();
        // Check against the definition on the flattened parameters.
        let flat = |m: &UNet| -> Vec<f64> {
            parameter_values(m)
                .into_iter()
                .flat_map(|(_, _, v)| v)
                .map(f64::from)
                .collect()
        };
        let (fa, fb) = (flat(&a), flat(&b));
        let l2 = fa
            .iter()
            .zip(&fb)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm_b = fb.iter().map(|y| y * y).sum::<f64>().sqrt();
        assert_eq!(d.parameters, fa.len());
        assert!((d.l2 - l2).abs() < 1e-9 * l2);
        assert!((d.relative - l2 / norm_b).abs() < 1e-9);
    }

    #[test]
    fn different_architectures_are_an_error_naming_the_tensor() {
        let device = burn::tensor::Device::flex();
        let a = UNet::new(&tiny(), 0, &device).unwrap();
        let wider = UNetConfig {
            block_out_channels: vec![8, 24],
            ..tiny()
        };
        let b = UNet::new(&wider, 0, &device).unwrap();
        let err = weight_distance(&a, &b).unwrap_err();
        assert!(err.contains("differ in architecture"), "{err}");
    }
}
