//! Numbers held to references: the UNet and schedulers against diffusers, the ELBO and FID
//! against their reference implementations, burn-flex's kernels against direct f64
//! computation, mixed precision against f32, the sampler's behaviour, and the wgpu backend
//! against the CPU.

#[path = "../common/mod.rs"]
mod common;

mod diffusion_behaviour;
mod flex_kernels;
mod golden_diffusers;
mod golden_elbo;
mod golden_fid;
mod golden_inception;
mod golden_public;
mod golden_stats;
mod mixed_precision;
mod synthetic;
mod wgpu_smoke;
