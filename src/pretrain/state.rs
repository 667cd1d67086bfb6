//! A pretrain run's state on disk: the resume state (weights with their parameter ids, Adam
//! moments, EMA, step) under `resume/`, the EMA checkpoint under `checkpoint/`, the loss log,
//! and the lineage of a run that continues another.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::PretrainConfig;
use crate::diffusion::checkpoint::{self, Provenance};
use crate::diffusion::unet::UNet;
use crate::train::snapshot;
use crate::util::{atomic_write, sha256_hex};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ResumeState {
    /// Global step: includes the steps of the run this one continues.
    pub(super) step: usize,
    pub(super) config_hash: String,
    /// Training time so far, including the run this one continues.
    pub(super) elapsed_seconds: f64,
    /// Steps the continued run (`continue_from`) had trained; 0 for a run from scratch.
    #[serde(default)]
    pub(super) parent_steps: usize,
    /// The snapshot directory in `resume/` holding this step's weights (`train::snapshot`;
    /// none in states of earlier versions, whose files sit in `resume/` itself).
    #[serde(default)]
    pub(super) snapshot: Option<String>,
}

/// Steps of `config.train.steps` that the run in `out_dir` has completed (0 when none).
pub fn completed_steps(out_dir: &Path) -> usize {
    match read_resume_state(&out_dir.join("resume")) {
        Ok(Some(state)) => state.step - state.parent_steps,
        _ => 0,
    }
}

/// The resume state of the run `parent` that `config` continues, after checking that its
/// model and noise schedule are this config's.
pub(super) fn parent_state(parent: &Path, config: &PretrainConfig) -> Result<ResumeState, String> {
    let parent_config = PretrainConfig::from_file(&parent.join("config.toml"))
        .map_err(|e| format!("continue_from: {e}"))?;
    let shape = |c: &PretrainConfig| {
        serde_json::to_value((&c.model, &c.scheduler)).expect("model and scheduler serialise")
    };
    if shape(&parent_config) != shape(config) {
        return Err(format!(
            "continue_from {}: its [model] or [scheduler] differs from this config's",
            parent.display()
        ));
    }
    read_resume_state(&parent.join("resume"))?.ok_or_else(|| {
        format!(
            "continue_from {}: no resume/state.json (not a pretrain run directory, or it saved no checkpoint yet)",
            parent.display()
        )
    })
}

/// Where a run's weights came from, for the provenance of every checkpoint it writes
/// (computed once: the parent's weights are hashed once, not at every checkpoint).
pub(super) struct Lineage {
    parent: String,
    parent_sha256: String,
}

impl Lineage {
    pub(super) fn of(config: &PretrainConfig, parent_steps: usize) -> Result<Self, String> {
        let Some(parent) = &config.continue_from else {
            let none = "none (trained from scratch)".to_string();
            return Ok(Self {
                parent: none.clone(),
                parent_sha256: none,
            });
        };
        // The EMA checkpoint file the continued run published.
        let path = parent.join("checkpoint/unet/diffusion_pytorch_model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            parent: format!("continues {} at step {parent_steps}", parent.display()),
            parent_sha256: sha256_hex(&bytes),
        })
    }
}

pub(super) fn read_resume_state(dir: &Path) -> Result<Option<ResumeState>, String> {
    let path = dir.join("state.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the EMA checkpoint and the resume state: a new snapshot, then the state file naming
/// it, then the older snapshots go — so an interrupted save resumes from the previous
/// consistent state. Records the snapshot's name in `state`.
pub(super) fn save_all(
    config: &PretrainConfig,
    lineage: &Lineage,
    model: &UNet,
    optim: &burn::optim::ModuleOptimizer,
    ema: &UNet,
    state: &mut ResumeState,
) -> Result<(), String> {
    let out = &config.out_dir;
    let data_hash = sha256_hex(toml::to_string(&config.data).expect("toml").as_bytes());
    let provenance = Provenance::new("lethe pretrain")
        .with("lethe_steps", state.step)
        .with("lethe_weights", "ema")
        .with("lethe_ema_decay", config.train.ema_decay)
        .with("lethe_data_config_sha256", data_hash)
        .with("lethe_parent", &lineage.parent)
        .with("lethe_parent_sha256", &lineage.parent_sha256)
        .with(
            "lethe_train_seconds",
            format!("{:.0}", state.elapsed_seconds),
        );
    checkpoint::save(
        &out.join("checkpoint"),
        ema,
        &config.model,
        &config.scheduler,
        &provenance,
    )
    .map_err(|e| e.to_string())?;

    let resume = out.join("resume");
    let name = snapshot::save(&resume, state.step, model, optim, Some(ema))?;
    state.snapshot = Some(name.clone());
    let path = resume.join("state.json");
    let text = serde_json::to_string_pretty(state).expect("json");
    atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    snapshot::remove_others(&resume, &name)
}
