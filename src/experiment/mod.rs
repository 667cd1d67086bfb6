//! An experiment: its config and the run directory it writes.

pub mod config;
pub mod run_dir;
pub mod siss_yaml;

pub use config::ExperimentConfig;
pub use run_dir::{RunDir, RunInfo, RunStatus};
