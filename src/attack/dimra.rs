//! DiMRA — the relearning attack of Yuan et al. 2025 (ALGORITHMS.md §4.1; defaults are
//! Lethe's, §4.3): fine-tune an unlearned model with the ordinary denoising loss on
//! auxiliary data that does **not** contain the forgotten content (the retain set, or data
//! like it, with its own labels), checkpointing along the way, and watch whether the
//! forgotten content comes back.
//!
//! An attack is an unlearning run of the `finetune` method on the auxiliary data, started
//! from the unlearned checkpoint, whose evaluations probe the forgotten content: in the
//! class setting the forgotten class is held out of the auxiliary data and sampled with
//! guidance; in the data-point setting samples are checked against the forget images.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::experiment::ExperimentConfig;
use crate::experiment::config::{DataSelection, EvalConfig, OptimizerConfig, UnlearnTrain};
use crate::unlearn::MethodConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackConfig {
    /// The unlearned checkpoint under attack (never modified).
    pub checkpoint: PathBuf,
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub backend: BackendChoice,
    /// Auxiliary data the attacker fine-tunes on, with its own labels.
    pub auxiliary: Vec<PathBuf>,
    /// What was forgotten, to probe for: a class (held out of the auxiliary data) …
    #[serde(default)]
    pub forgotten_class: Option<usize>,
    /// … or images (with their label in a class-conditional model).
    #[serde(default)]
    pub forgotten_images: Vec<PathBuf>,
    #[serde(default)]
    pub forgotten_label: Option<usize>,
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Probe (and checkpoint) every this many steps.
    #[serde(default = "default_every")]
    pub evaluate_every: usize,
    /// The attacker's fine-tuning also trains the unconditional branch this often.
    #[serde(default = "default_drop")]
    pub cond_drop_prob: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub eval: EvalConfig,
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_steps() -> usize {
    1000
}
fn default_batch() -> usize {
    32
}
fn default_lr() -> f64 {
    1e-4
}
fn default_every() -> usize {
    100
}
fn default_drop() -> f64 {
    0.1
}

impl AttackConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .to_experiment()
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// The attack as an engine run: `finetune` on the auxiliary data, probing the
    /// forgotten content at every evaluation.
    pub fn to_experiment(&self) -> ExperimentConfig {
        ExperimentConfig {
            checkpoint: self.checkpoint.clone(),
            runs_dir: self.runs_dir.clone(),
            name: self.name.clone().or_else(|| {
                self.checkpoint
                    .parent()
                    .and_then(|p| p.parent())
                    .and_then(|run| run.file_name())
                    .map(|run| format!("dimra-{}", run.to_string_lossy()))
            }),
            backend: self.backend,
            data: DataSelection {
                retain: self.auxiliary.clone(),
                forget: self.forgotten_images.clone(),
                forget_label: self.forgotten_label,
                forget_class: self.forgotten_class,
            },
            method: MethodConfig::Finetune,
            train: UnlearnTrain {
                steps: self.steps,
                batch_size: self.batch_size,
                learning_rate: self.learning_rate,
                optimizer: OptimizerConfig::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    epsilon: 1e-8,
                },
                grad_clip_norm: 1.0,
                seed: self.seed,
                cond_drop_prob: self.cond_drop_prob,
                reduction: crate::unlearn::step::Reduction::Mean,
                ..UnlearnTrain::default()
            },
            eval: EvalConfig {
                every: self.evaluate_every,
                checkpoint_every: self.evaluate_every,
                ..self.eval.clone()
            },
        }
    }
}
