//! DiMRA — the relearning attack of Yuan et al. 2025 (docs/methods.md, DiMRA; defaults are
//! Lethe's): fine-tune an unlearned model with the ordinary denoising loss on
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

use crate::experiment::ExperimentConfig;
use crate::experiment::config::{DataSelection, EvalConfig, RunHeader, UnlearnTrain};
use crate::train::OptimizerConfig;
use crate::unlearn::MethodConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttackConfig {
    /// `checkpoint`: the unlearned checkpoint under attack (never modified); `runs_dir`,
    /// `name` (default `dimra-<run>`), `backend`.
    #[serde(flatten)]
    pub header: RunHeader,
    /// Auxiliary data the attacker fine-tunes on, with its own labels.
    pub auxiliary: Vec<PathBuf>,
    /// What was forgotten, to probe for: a class (held out of the auxiliary data) …
    pub forgotten_class: Option<usize>,
    /// … or images (with their label in a class-conditional model).
    pub forgotten_images: Vec<PathBuf>,
    pub forgotten_label: Option<usize>,
    pub steps: usize,
    pub batch_size: usize,
    /// Micro-batches per batch (`train.grad_accumulation` of an unlearning run).
    pub grad_accumulation: usize,
    pub learning_rate: f64,
    /// Probe (and checkpoint) every this many steps.
    pub evaluate_every: usize,
    /// The attacker's fine-tuning also trains the unconditional branch this often.
    pub cond_drop_prob: f64,
    pub seed: u64,
    /// Save the resume state every this many steps (0 = by time only) …
    pub save_state_every: usize,
    /// … and whenever this many minutes have passed since the last save (0 = by steps
    /// only): a killed attack loses at most this much work (`lethe attack --resume RUN_DIR`).
    pub save_state_minutes: f64,
    pub eval: EvalConfig,
}

impl Default for AttackConfig {
    /// Lethe's attack defaults (docs/methods.md, DiMRA): Adam lr 1e-4, batch 32, 1,000 steps
    /// probed every 100.
    fn default() -> Self {
        Self {
            header: RunHeader::default(),
            auxiliary: vec![],
            forgotten_class: None,
            forgotten_images: vec![],
            forgotten_label: None,
            steps: 1000,
            batch_size: 32,
            grad_accumulation: 1,
            learning_rate: 1e-4,
            evaluate_every: 100,
            cond_drop_prob: 0.1,
            seed: 0,
            save_state_every: UnlearnTrain::default().save_state_every,
            save_state_minutes: UnlearnTrain::default().save_state_minutes,
            eval: EvalConfig::default(),
        }
    }
}

impl AttackConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// The attack's own checks, then the engine run's.
    pub fn validate(&self) -> Result<(), String> {
        self.header.validate()?;
        if self.auxiliary.is_empty() {
            return Err("auxiliary is empty: the attacker needs data to fine-tune on".into());
        }
        self.to_experiment().validate().map_err(in_attack_keys)
    }

    /// The attack as an engine run: `finetune` on the auxiliary data, probing the
    /// forgotten content at every evaluation.
    pub fn to_experiment(&self) -> ExperimentConfig {
        let name = self.header.name.clone().or_else(|| {
            self.header
                .checkpoint
                .parent()
                .and_then(|p| p.parent())
                .and_then(|run| run.file_name())
                .map(|run| format!("dimra-{}", run.to_string_lossy()))
        });
        ExperimentConfig {
            header: RunHeader {
                name,
                ..self.header.clone()
            },
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
                grad_accumulation: self.grad_accumulation,
                learning_rate: self.learning_rate,
                optimizer: OptimizerConfig::adam(),
                grad_clip_norm: 1.0,
                seed: self.seed,
                cond_drop_prob: self.cond_drop_prob,
                reduction: crate::unlearn::step::Reduction::Mean,
                save_state_every: self.save_state_every,
                save_state_minutes: self.save_state_minutes,
                ..UnlearnTrain::default()
            },
            eval: EvalConfig {
                every: self.evaluate_every,
                checkpoint_every: self.evaluate_every,
                // The attacked model is the unlearned one: the guidance check cannot run on
                // it (it should not draw the class), so an absent weight is the check's
                // first candidate, and the starting rate is not judged.
                guidance: self
                    .eval
                    .guidance
                    .or(Some(crate::metrics::baseline_check::GUIDANCE_CANDIDATES[0])),
                check_original: false,
                ..self.eval.clone()
            },
        }
    }
}

/// The engine run's key for each of the attack config's own (the run
/// [`AttackConfig::to_experiment`] makes, which the engine checks). Longer engine names
/// first: `data.forget` is a prefix of the two before it.
const ENGINE_KEYS: [(&str, &str); 13] = [
    ("train.steps", "steps"),
    ("train.save_state_every", "save_state_every"),
    ("train.save_state_minutes", "save_state_minutes"),
    ("train.batch_size", "batch_size"),
    ("train.grad_accumulation", "grad_accumulation"),
    ("train.learning_rate", "learning_rate"),
    ("train.seed", "seed"),
    ("train.cond_drop_prob", "cond_drop_prob"),
    ("data.retain", "auxiliary"),
    ("data.forget_class", "forgotten_class"),
    ("data.forget_label", "forgotten_label"),
    ("data.forget", "forgotten_images"),
    ("eval.every", "evaluate_every"),
];

/// The attack's own key names for the engine run's (`train.batch_size` → `batch_size`,
/// `data.forget_class` → `forgotten_class` …) in an error about a value of the attack's
/// config, whose file does not have the engine's keys.
pub fn in_attack_keys(error: String) -> String {
    ENGINE_KEYS
        .iter()
        .fold(error, |e, (engine, attack)| e.replace(engine, attack))
        // The engine's label check speaks of its retain set, which is the attack's auxiliary data.
        .replace("no retain image", "no auxiliary image")
}

/// Whether `word` (an error's first) is one of the attack config's keys.
pub fn is_attack_key(word: &str) -> bool {
    ENGINE_KEYS.iter().any(|&(_, attack)| attack == word) || word.starts_with("eval.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(edit: impl Fn(String) -> String) -> Result<AttackConfig, String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/attack-dimra.toml");
        let text = edit(std::fs::read_to_string(path).unwrap());
        let config: AttackConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map(|()| config)
    }

    #[test]
    fn the_attack_shares_the_header_and_refuses_unknown_keys() {
        let config = example(|t| t).unwrap();
        let run = config.to_experiment();
        assert_eq!(run.header.checkpoint, config.header.checkpoint);
        assert_eq!(run.header.runs_dir, config.header.runs_dir);
        assert_eq!(run.method, MethodConfig::Finetune);
        assert_eq!(run.train.optimizer, OptimizerConfig::adam());
        let err = example(|t| format!("evaluate_evry = 5\n{t}")).unwrap_err();
        assert!(err.contains("evaluate_evry"), "{err}");
        let err = example(|t| {
            t.lines()
                .filter(|l| !l.starts_with("auxiliary"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_err();
        assert!(err.contains("auxiliary is empty"), "{err}");
    }

    /// The engine checks the run the attack becomes; its errors name the attack's keys.
    #[test]
    fn errors_name_the_attack_configs_own_keys() {
        let err = example(|t| t.replace("learning_rate = 1e-4", "learning_rate = -1")).unwrap_err();
        assert!(err.starts_with("learning_rate = -1 must be"), "{err}");
        assert!(is_attack_key(err.split_whitespace().next().unwrap()));
        let err = example(|t| t.replace("batch_size = 32", "batch_size = 0")).unwrap_err();
        assert!(err.starts_with("batch_size must be ≥ 1"), "{err}");
        // What the engine finds later (memory, labels) is renamed the same way.
        let renamed = in_attack_keys(
            "train.batch_size = 9 …; set train.grad_accumulation = 3; data.forget_class = 99, data.forget, eval.every, eval.samples".into(),
        );
        assert_eq!(
            renamed,
            "batch_size = 9 …; set grad_accumulation = 3; forgotten_class = 99, forgotten_images, evaluate_every, eval.samples"
        );
        assert_eq!(
            in_attack_keys("data.forget_class = 99: no retain image has that label".into()),
            "forgotten_class = 99: no auxiliary image has that label"
        );
        assert!(
            !is_attack_key("step"),
            "a run's own failures are not a key's"
        );
    }
}
