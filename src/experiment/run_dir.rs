//! A run directory:
//! ```text
//! runs/siss-001/
//!   config.toml        the full resolved config (seed included)
//!   run.json           status, timings, versions, backend, last good checkpoint
//!   metrics.jsonl      one JSON object per logged step / evaluation
//!   samples/step_NNNNN.png   original | current grids from the same seeds
//!   checkpoints/<name>/      diffusers layout with provenance
//! ```
//! Every file is written atomically except `metrics.jsonl`, which is appended line by line
//! (a crash loses at most the line being written).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ExperimentConfig;
use crate::util::atomic_write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    Cancelled,
    Failed,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub status: RunStatus,
    pub method: String,
    pub lethe_version: String,
    pub backend: String,
    pub source_checkpoint: PathBuf,
    pub source_sha256: String,
    pub steps_done: usize,
    pub total_steps: usize,
    pub seconds: f64,
    pub seconds_per_step: Option<f64>,
    pub started_unix: u64,
    pub last_checkpoint: Option<PathBuf>,
    pub error: Option<String>,
}

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `runs_dir/name` (or the first free `runs_dir/<method>-NNN`); an existing
    /// named directory is refused rather than overwritten.
    pub fn create(config: &ExperimentConfig) -> Result<Self, String> {
        let parent = &config.runs_dir;
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let path = match &config.name {
            Some(name) => {
                let p = parent.join(name);
                if p.exists() {
                    return Err(format!(
                        "{} already exists; choose another name (runs are never overwritten)",
                        p.display()
                    ));
                }
                p
            }
            None => (1..)
                .map(|i| parent.join(format!("{}-{i:03}", config.method.slug())))
                .find(|p| !p.exists())
                .expect("a free name"),
        };
        for sub in ["", "samples", "checkpoints"] {
            let d = path.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let dir = Self { path };
        let text = toml::to_string(config).map_err(|e| format!("config: {e}"))?;
        atomic_write(&dir.path.join("config.toml"), text.as_bytes())
            .map_err(|e| format!("{}: {e}", dir.path.display()))?;
        Ok(dir)
    }

    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    pub fn write_info(&self, info: &RunInfo) -> Result<(), String> {
        let path = self.path.join("run.json");
        let text = serde_json::to_string_pretty(info).expect("json");
        atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn read_info(&self) -> Result<RunInfo, String> {
        let path = self.path.join("run.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn append_metrics(&self, line: &serde_json::Value) -> Result<(), String> {
        let path = self.path.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = serde_json::to_string(line).expect("json");
        text.push('\n');
        f.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn sample_grid_path(&self, step: usize) -> PathBuf {
        self.path
            .join("samples")
            .join(format!("step_{step:05}.png"))
    }

    pub fn checkpoint_dir(&self, name: &str) -> PathBuf {
        self.path.join("checkpoints").join(name)
    }
}
