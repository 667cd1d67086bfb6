//! An experiment: its config, the run directory it writes and the records read back from it.

pub mod config;
pub mod cost;
pub mod run_dir;
pub mod runs;
pub mod siss_yaml;

pub use config::ExperimentConfig;
pub use run_dir::{EvaluatedModel, MetricsLine, RunDir, RunInfo, RunStatus, StepRecord};
