//! The one place that names concrete Burn backends. Everything else takes a `&Device`.
//! `remote` and `serve` are the two ends of Burn's remote backend (`lethe serve`).

pub mod fused;
pub mod remote;

pub use fused::{fused_attention, fused_group_norm};
pub mod serve;

use burn::tensor::Device;

/// A compute backend the user can ask for (`--backend`, the workbench's device menu, a run
/// config's `backend`).
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
    /// A GPU through wgpu where one exists and passes the device self-check on the model,
    /// else the CPU; the choice and its reason are printed and recorded.
    #[default]
    Auto,
    /// burn-flex on the CPU (always compiled in).
    Cpu,
    /// wgpu: Vulkan, Metal or DX12, kernels compiled to WGSL (in the default build).
    Wgpu,
    /// CUDA (build with `--features cuda`, which needs internet at build time).
    Cuda,
    /// The device of a `lethe serve` elsewhere, through Burn's remote backend
    /// (`--backend remote:ws://host:port`; the run config's `remote` key holds the address).
    Remote,
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu (burn-flex)",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
            Self::Remote => "remote",
        };
        f.write_str(name)
    }
}

/// The concrete backends this build can run on, CPU first.
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

/// The inference device for a concrete choice, or why it is not available in this build.
/// `Auto` is resolved by `crate::device_check::select`, which checks the device first.
pub fn device(choice: BackendChoice) -> Result<Device, String> {
    match choice {
        BackendChoice::Auto => Err(
            "`auto` names no device by itself; resolve it with device_check::select first".into(),
        ),
        BackendChoice::Cpu => Ok(Device::flex()),
        BackendChoice::Remote => remote::device(),
        #[cfg(feature = "wgpu")]
        BackendChoice::Wgpu => {
            let adapter = best_adapter().ok_or_else(|| {
                "wgpu found no adapter (no Vulkan/Metal/DX12 driver, or no GPU)".to_string()
            })?;
            Ok(Device::wgpu(adapter.device_kind()))
        }
        #[cfg(not(feature = "wgpu"))]
        BackendChoice::Wgpu => {
            Err("this build has no wgpu backend: rebuild with `--features wgpu`".into())
        }
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => Ok(Device::cuda(burn::tensor::DeviceIndex::Default)),
        #[cfg(not(feature = "cuda"))]
        BackendChoice::Cuda => Err(
            "this build has no CUDA backend: rebuild with `--features cuda` (README: GPU)".into(),
        ),
    }
}

/// A backend as the command line names it: a [`BackendChoice`], or `remote:ws://host:port`
/// for a `lethe serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRequest {
    pub choice: BackendChoice,
    /// The server's address when `choice` is `Remote`.
    pub remote: Option<String>,
}

impl BackendRequest {
    pub fn local(choice: BackendChoice) -> Self {
        Self {
            choice,
            remote: None,
        }
    }
}

impl std::str::FromStr for BackendRequest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(url) = text.strip_prefix("remote:") {
            return Ok(Self {
                choice: BackendChoice::Remote,
                remote: Some(remote::parse_url(url)?),
            });
        }
        if text == "remote" {
            return Err("remote needs the server's address: remote:ws://host:port".into());
        }
        <BackendChoice as clap::ValueEnum>::from_str(text, true)
            .map(Self::local)
            .map_err(|_| {
                format!("`{text}` is not a backend: auto, cpu, wgpu, cuda or remote:ws://host:port")
            })
    }
}

/// The same device with automatic differentiation, for training.
pub fn training_device(choice: BackendChoice) -> Result<Device, String> {
    Ok(device(choice)?.autodiff())
}

/// What kind of hardware an adapter is, as its driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A software renderer (Mesa's lavapipe/llvmpipe): runs, but slower than burn-flex.
    Cpu,
    Other,
}

impl AdapterKind {
    /// Real GPU hardware, which `--backend auto` prefers over the CPU.
    pub fn is_gpu(self) -> bool {
        matches!(
            self,
            Self::DiscreteGpu | Self::IntegratedGpu | Self::VirtualGpu
        )
    }

    /// Preference order for `--backend wgpu` (lower first).
    fn rank(self) -> u8 {
        match self {
            Self::DiscreteGpu => 0,
            Self::IntegratedGpu => 1,
            Self::VirtualGpu => 2,
            Self::Other => 3,
            Self::Cpu => 4,
        }
    }
}

/// One wgpu adapter as its driver describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterInfo {
    pub name: String,
    pub kind: AdapterKind,
    /// Vulkan, Metal, Dx12, Gl.
    pub api: String,
    /// Driver name and version string (`NVIDIA 580.159.04`, `llvmpipe Mesa 25.0.7`).
    pub driver: String,
    /// Device-local memory in bytes where the API reports it (Vulkan's heaps).
    pub memory_bytes: Option<u64>,
    /// Index among adapters of the same kind: what Burn's `DeviceKind` addresses.
    pub index_in_kind: usize,
}

impl AdapterInfo {
    /// `NVIDIA H200 (discrete GPU, Vulkan, driver NVIDIA 580.159.04, 140 GiB)`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            AdapterKind::DiscreteGpu => "discrete GPU",
            AdapterKind::IntegratedGpu => "integrated GPU",
            AdapterKind::VirtualGpu => "virtual GPU",
            AdapterKind::Cpu => "software renderer on the CPU",
            AdapterKind::Other => "other",
        };
        let memory = self
            .memory_bytes
            .map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_default();
        format!(
            "{} ({kind}, {}, driver {}{memory})",
            self.name, self.api, self.driver
        )
    }

    #[cfg(feature = "wgpu")]
    fn device_kind(&self) -> burn::tensor::DeviceKind {
        use burn::tensor::DeviceKind;
        match self.kind {
            AdapterKind::DiscreteGpu => DeviceKind::DiscreteGpu(self.index_in_kind),
            AdapterKind::IntegratedGpu => DeviceKind::IntegratedGpu(self.index_in_kind),
            AdapterKind::VirtualGpu => DeviceKind::VirtualGpu(self.index_in_kind),
            AdapterKind::Cpu => DeviceKind::Cpu,
            AdapterKind::Other => DeviceKind::DefaultDevice,
        }
    }
}

/// The adapter `--backend wgpu` runs on: the first discrete GPU, else integrated, virtual,
/// other, and a software renderer last.
pub fn best_adapter() -> Option<AdapterInfo> {
    adapters().into_iter().min_by_key(|a| a.kind.rank())
}

/// Every adapter wgpu sees on the graphics API Burn's wgpu backend comes up on (Vulkan where
/// it exists), enumerated once per process.
#[cfg(feature = "wgpu")]
pub fn adapters() -> Vec<AdapterInfo> {
    static ADAPTERS: std::sync::OnceLock<Vec<AdapterInfo>> = std::sync::OnceLock::new();
    ADAPTERS.get_or_init(enumerate_adapters).clone()
}

#[cfg(not(feature = "wgpu"))]
pub fn adapters() -> Vec<AdapterInfo> {
    Vec::new()
}

#[cfg(feature = "wgpu")]
fn enumerate_adapters() -> Vec<AdapterInfo> {
    // The chain Burn's `WgpuBackend::Auto` walks: the first API with any adapter is the one
    // its devices come up on, so list that one (indices per kind then match Burn's).
    let chain = [
        wgpu::Backend::Vulkan,
        wgpu::Backend::Metal,
        wgpu::Backend::Dx12,
        wgpu::Backend::Gl,
    ];
    for api in chain {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: api.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let found = pollster::block_on(instance.enumerate_adapters(api.into()));
        if found.is_empty() {
            continue;
        }
        let mut seen = [0usize; 5];
        return found
            .iter()
            .map(|adapter| {
                let info = adapter.get_info();
                let kind = match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => AdapterKind::DiscreteGpu,
                    wgpu::DeviceType::IntegratedGpu => AdapterKind::IntegratedGpu,
                    wgpu::DeviceType::VirtualGpu => AdapterKind::VirtualGpu,
                    wgpu::DeviceType::Cpu => AdapterKind::Cpu,
                    wgpu::DeviceType::Other => AdapterKind::Other,
                };
                let slot = &mut seen[kind.rank() as usize];
                let index_in_kind = *slot;
                *slot += 1;
                AdapterInfo {
                    name: info.name.clone(),
                    kind,
                    api: format!("{:?}", info.backend),
                    driver: format!("{} {}", info.driver, info.driver_info)
                        .trim()
                        .to_string(),
                    memory_bytes: device_local_memory(adapter),
                    index_in_kind,
                }
            })
            .collect();
    }
    Vec::new()
}

/// The largest device-local memory heap, read through Vulkan (wgpu itself does not report
/// memory); `None` on other APIs.
#[cfg(feature = "wgpu")]
fn device_local_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the hal adapter is only read, while `adapter` keeps it alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: a physical device handle of this live instance.
    let properties =
        unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    let count = properties.memory_heap_count as usize;
    properties.memory_heaps[..count]
        .iter()
        // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT (ash is not re-exported, so by value).
        .filter(|heap| heap.flags.as_raw() & 1 != 0)
        .map(|heap| heap.size)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_request_is_a_local_backend_or_a_remote_address() {
        let parse = |s: &str| s.parse::<BackendRequest>();
        assert_eq!(
            parse("cpu").unwrap(),
            BackendRequest::local(BackendChoice::Cpu)
        );
        assert_eq!(
            parse("auto").unwrap(),
            BackendRequest::local(BackendChoice::Auto)
        );
        assert_eq!(
            parse("remote:ws://gpu:7878").unwrap(),
            BackendRequest {
                choice: BackendChoice::Remote,
                remote: Some("ws://gpu:7878".into())
            }
        );
        assert!(
            parse("remote")
                .unwrap_err()
                .contains("remote:ws://host:port")
        );
        assert!(
            parse("remote:gpu:7878")
                .unwrap_err()
                .contains("ws://host:port")
        );
        assert!(parse("tpu").unwrap_err().contains("`tpu` is not a backend"));
    }
}
