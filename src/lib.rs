//! Lethe: a workbench for machine unlearning in diffusion models.
//!
//! Layers (arrows point down; `docs/design.md` has the map):
//!
//! - `app` (the GUI, behind the `gui` feature), the `lethe` binary's `cli` and [`bench`]
//! - [`reproduce`] (the papers' claims as verdicts, on top of sweeps)
//! - [`engine`] (runs experiments on a worker thread), [`pretrain`] and [`sweep`] (trials
//!   of one experiment, run locally, on Slurm or in the workbench)
//! - [`attack`] → [`experiment`] (configs, run directories, their records)
//! - [`unlearn`] (one method per file) and [`metrics`]
//! - [`train`] (what every trainer shares: random streams, batches, gradients, EMA, optimizer)
//! - [`diffusion`] (UNet, schedules, samplers, checkpoints) and [`data`]
//! - [`images`], [`util`]
//!
//! Only [`backend`] names a concrete Burn backend.

#[cfg(feature = "gui")]
pub mod app;
pub mod attack;
pub mod backend;
pub mod bench;
pub mod data;
pub mod device_check;
pub mod diffusion;
pub mod engine;
pub mod experiment;
#[doc(hidden)]
pub mod fuzz;
pub mod images;
pub mod metrics;
pub mod pretrain;
pub mod reproduce;
pub mod sweep;
pub mod train;
pub mod unlearn;
pub mod util;
