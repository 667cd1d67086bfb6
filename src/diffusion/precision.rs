//! The precision a UNet computes in: f32, or mixed precision in the autocast style.
//!
//! Mixed precision here means what PyTorch's autocast means by it: the parameters stay f32
//! (the master copy the optimiser updates and checkpoints hold), and each forward casts them
//! to the compute dtype where they are used, so convolutions, linears and matmuls run in
//! bf16/f16 while the numerically fragile steps stay in f32 — the sinusoidal timestep
//! embedding, GroupNorm's statistics, attention's softmax, the model's output and everything
//! after it (losses, scheduler steps). Gradients flow back through the casts into the f32
//! parameters.
//!
//! Whether a dtype is fast depends on the device: tensor cores on GPUs run it natively; on
//! CPUs with AVX-512-BF16 the vendored burn-flex multiplies bf16 convolutions natively
//! (`vdpbf16ps`, f32 accumulation) while the rest of the step still converts through f32, and
//! on other CPUs everything converts through f32 (see README's Performance section for
//! figures) — on a CPU it is an accuracy study more than a speed-up.

use burn::tensor::{DType, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Convolutions, linears and matmuls in bfloat16 (8-bit mantissa, f32's range).
    Bf16,
    /// Convolutions, linears and matmuls in IEEE half (10-bit mantissa, max 65504).
    /// Inference only: training in f16 needs loss scaling, which Lethe does not do.
    F16,
}

impl Precision {
    /// The dtype the heavy operations compute in.
    pub fn compute_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// Whether this is the default, f32 (for leaving it out of saved configs).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// Lower-case name as the CLI and config files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// `label` with this precision appended (`DDIM-50,uncond,bf16`), so a number computed
    /// in a low dtype says so; f32, the default, adds nothing.
    pub fn tag(self, label: String) -> String {
        match self {
            Precision::F32 => label,
            low => format!("{label},{}", low.name()),
        }
    }

    /// An error for precisions that cannot train: f16's 5-bit exponent underflows small
    /// gradients unless the loss is scaled, and Lethe does not scale losses.
    pub fn check_trainable(self) -> Result<(), String> {
        match self {
            Precision::F16 => Err(
                "precision f16 is for sampling and evaluation only: training \
                 in f16 needs loss scaling, which Lethe does not implement; use bf16"
                    .into(),
            ),
            Precision::F32 | Precision::Bf16 => Ok(()),
        }
    }
}

/// `param` cast to the dtype of the activation it meets (a no-op when they already agree),
/// which is how a layer follows its input's precision without being told it.
pub fn like<const D: usize, const E: usize>(param: Tensor<D>, activation: &Tensor<E>) -> Tensor<D> {
    param.cast(FloatDType::from(activation.dtype()))
}

/// Runs `f` on `x` in f32 and casts the result back to `x`'s dtype: the autocast rule for
/// operations whose statistics or exponentials lose too much in 8 mantissa bits.
pub fn in_f32<const D: usize>(x: Tensor<D>, f: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        return f(x);
    }
    f(x.cast(FloatDType::F32)).cast(FloatDType::from(dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_a_low_precision_and_leave_f32_alone() {
        let label = || "DDIM-50,uncond".to_string();
        assert_eq!(Precision::F32.tag(label()), "DDIM-50,uncond");
        assert_eq!(Precision::Bf16.tag(label()), "DDIM-50,uncond,bf16");
        assert_eq!(Precision::F16.tag(label()), "DDIM-50,uncond,f16");
    }

    #[test]
    fn in_f32_computes_in_f32_and_returns_the_input_dtype() {
        let device = burn::tensor::Device::flex();
        let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device).cast(FloatDType::BF16);
        let mut seen = None;
        let y = in_f32(x, |x| {
            seen = Some(x.dtype());
            x * 2.0
        });
        assert_eq!(seen, Some(DType::F32));
        assert_eq!(y.dtype(), DType::BF16);
        let values = y.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(values, vec![2.0, 4.0, 6.0]);
    }
}
