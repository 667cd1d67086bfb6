//! The one place that names concrete Burn backends. Everything else takes a `&Device`.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex};
use burn::tensor::{DType, Device, Tensor};

/// A compute backend the user can ask for (`--backend`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// burn-flex on the CPU (always compiled in).
    #[default]
    Cpu,
    /// wgpu over Vulkan (build with `--features wgpu`).
    Wgpu,
    /// CUDA (build with `--features cuda`).
    Cuda,
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::Cpu => "cpu (burn-flex)",
            Self::Wgpu => "wgpu (Vulkan)",
            Self::Cuda => "cuda",
        };
        f.write_str(name)
    }
}

/// The backends this build can run on, CPU first.
pub fn compiled_in() -> Vec<BackendChoice> {
    let mut out = vec![BackendChoice::Cpu];
    if cfg!(feature = "wgpu") {
        out.push(BackendChoice::Wgpu);
    }
    if cfg!(feature = "cuda") {
        out.push(BackendChoice::Cuda);
    }
    out
}

/// The inference device for a choice, or why it is not available in this build.
pub fn device(choice: BackendChoice) -> Result<Device, String> {
    match choice {
        BackendChoice::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        BackendChoice::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "wgpu"))]
        BackendChoice::Wgpu => {
            Err("this build has no wgpu backend: rebuild with `--features wgpu`".into())
        }
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => Ok(Device::cuda(burn::tensor::DeviceIndex::Default)),
        #[cfg(not(feature = "cuda"))]
        BackendChoice::Cuda => {
            Err("this build has no CUDA backend: rebuild with `--features cuda`".into())
        }
    }
}

/// The same device with automatic differentiation, for training.
pub fn training_device(choice: BackendChoice) -> Result<Device, String> {
    Ok(device(choice)?.autodiff())
}

/// Operations Lethe runs through its own kernel where a backend has one (issue #6). Burn's
/// backend-extension macro generates the routing from a dispatch tensor to the backend
/// it lives on; only the backends listed here implement it, so callers go through the
/// checked wrappers below, never the trait directly.
#[burn::backend::backend_extension(Flex)]
pub trait FusedOps: burn::backend::Backend {
    /// `silu(group_norm(input))`, or the plain group norm when `silu` is false.
    fn group_norm_silu(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self>;
}

impl FusedOps for Flex {
    fn group_norm_silu(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        burn::backend::flex::ops::group_norm::group_norm_silu_f32(
            input, gamma, beta, groups, epsilon, silu,
        )
    }
}

/// GroupNorm (then SiLU when `silu`) of an `[B, C, H, W]` tensor in one fused kernel, when
/// `x` lives where there is one: f32 on burn-flex without autodiff (the fused op has no
/// backward). Otherwise hands `x` back for the caller to compose the differentiable form.
// The `Err` is the caller's own input handed back unchanged, not an error to propagate, so
// boxing it (what clippy suggests for a large error) would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn fused_group_norm(
    x: Tensor<4>,
    (gamma, beta): (Tensor<1>, Tensor<1>),
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> Result<Tensor<4>, Tensor<4>> {
    // Device equality ignores autodiff, so ask for it separately.
    let device = x.device();
    let fusable = device == Device::flex() && !device.is_autodiff() && x.dtype() == DType::F32;
    if !fusable {
        return Err(x);
    }
    let out = <Dispatch as FusedOps>::group_norm_silu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        epsilon,
        silu,
    );
    Ok(Tensor::from_dispatch(out))
}
