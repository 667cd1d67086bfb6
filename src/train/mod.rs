//! What more than one trainer uses — pretraining (`crate::pretrain`), unlearning runs
//! (`crate::engine`) and the attack built on them: the per-step random stream, batch
//! drawing, gradients as one vector with global-norm clipping, the weight EMA, optimizer
//! construction from config and the resumable training state on disk. It sits below the methods and metrics and above `diffusion` and
//! `data`; nothing here knows a method or a command.

pub mod batch;
pub mod ema;
pub mod grads;
pub mod memory;
pub mod optim;
pub mod snapshot;

pub use batch::{Clean, batch_indices, draw, step_rng};
pub use ema::update_ema;
pub use grads::{Clipped, GradVec, Layout, clip_to_norm};
pub use optim::OptimizerConfig;
