//! The model world: noise schedule, UNet, samplers, checkpoint I/O.

pub mod checkpoint;
pub mod dpm_solver;
pub mod layers;
pub mod precision;
pub mod sampler;
pub mod schedule;
pub mod unet;
