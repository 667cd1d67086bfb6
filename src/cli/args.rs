//! Argument groups that several commands share.

use std::path::Path;

use clap::Args;

use lethe::backend::{BackendChoice, BackendRequest, remote};
use lethe::data::demo;
use lethe::device_check::{self, Selection};
use lethe::diffusion::checkpoint;
use lethe::diffusion::precision::Precision;
use lethe::metrics::suite::Preset;

/// Options every compute command takes.
#[derive(Args, Clone)]
pub struct Compute {
    /// Where tensors run: auto (a GPU through wgpu where one exists and passes the device
    /// self-check on the model, else the CPU; the choice and why are printed first), cpu
    /// (burn-flex), wgpu (Vulkan/Metal/DX12), cuda (build with --features cuda), or
    /// remote:ws://HOST:PORT (a `lethe serve`; token from LETHE_REMOTE_TOKEN or a prompt).
    #[arg(long, default_value = "auto", value_name = "BACKEND")]
    pub backend: BackendRequest,
    /// CPU threads for the cpu backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl Compute {
    /// The device for work on the checkpoint at `model` (self-checked against the CPU before
    /// a GPU is used), announced on stderr's first line with the reason.
    pub fn select(&self, model: &Path) -> Result<Selection, String> {
        self.apply_threads();
        connect_remote(&self.backend)?;
        let selection =
            device_check::select(self.backend.choice, model, &|note| eprintln!("{note}"))?;
        eprintln!("{}", selection.describe());
        Ok(selection)
    }

    /// The device for work that has no checkpoint of its own (classifier training, FID of
    /// image folders, benchmarks of random weights): checked on the bundled demo model.
    pub fn select_without_model(&self) -> Result<Selection, String> {
        self.select(&demo::asset(demo::DEMO_CHECKPOINT))
    }

    pub fn apply_threads(&self) {
        if let Some(n) = self.threads {
            // Ignored if the pool already exists; it does not at start-up.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
    }
}

impl Compute {
    /// CPU work with `threads` threads.
    pub fn cpu(threads: Option<usize>) -> Self {
        Self {
            backend: BackendRequest::local(BackendChoice::Cpu),
            threads,
        }
    }
}

/// Connects to the `lethe serve` a `remote:` backend names (nothing for a local backend),
/// with the token from LETHE_REMOTE_TOKEN; a server that refuses no token is asked again
/// with one typed at a prompt when stdin is a terminal. Prints the server and latency.
pub fn connect_remote(request: &BackendRequest) -> Result<(), String> {
    let Some(url) = &request.remote else {
        return Ok(());
    };
    if remote::status().is_some_and(|s| &s.url == url) {
        return Ok(());
    }
    eprintln!("connecting to {url} …");
    let token = std::env::var(remote::TOKEN_ENV).ok();
    let status = match remote::connect(url, token.as_deref()) {
        Err(e) if token.is_none() && e.contains("refused the token") && interactive() => {
            let typed = rpassword::prompt_password(format!("token for {url}: "))
                .map_err(|e| format!("reading the token: {e}"))?;
            remote::connect(url, Some(typed.trim()))?
        }
        other => other?,
    };
    eprintln!(
        "connected: {} — {:.2} ms round trip",
        status.describe(),
        status.latency_ms
    );
    Ok(())
}

fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

/// The UNet's compute precision, for the commands that run it.
#[derive(Args, Clone, Copy)]
pub struct PrecisionArg {
    /// UNet compute precision: f32, or mixed precision bf16/f16 — convolutions, linears and
    /// matmuls in the low dtype from the f32 weights; GroupNorm statistics, softmax, timestep
    /// sinusoids and the sampler's arithmetic in f32. Faster only where the hardware runs
    /// the low dtype natively (GPUs, AMX/AVX-512-BF16 CPUs); labels say which was used.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
}

impl PrecisionArg {
    /// Loads the checkpoint at `path` with its UNet computing in this precision.
    pub fn load_checkpoint(
        self,
        path: &Path,
        device: &burn::tensor::Device,
    ) -> Result<checkpoint::Checkpoint, String> {
        let mut ckpt = checkpoint::load(path, device).map_err(|e| e.to_string())?;
        ckpt.unet = ckpt.unet.with_precision(self.precision);
        Ok(ckpt)
    }
}

/// An evaluation budget named on the command line (`lethe eval --preset`, `lethe bench eval`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PresetArg {
    Fast,
    Thorough,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Fast => Preset::Fast,
            PresetArg::Thorough => Preset::Thorough,
        }
    }
}
