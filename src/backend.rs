//! The one place that names concrete Burn backends. Everything else takes a `&Device`.

use burn::tensor::Device;

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
        BackendChoice::Wgpu => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
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
