//! `sweep.json`: a sweep directory's expansion — every trial's name, what it varies and its
//! full config — written once when the directory is made. Every runner (local, Slurm task,
//! workbench) and reader (`status`, `collect`, the compare view) works from it, so a trial
//! runs the same config whoever runs it, and a sweep file edited afterwards is noticed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Expanded, MANIFEST, Override};
use crate::experiment::ExperimentConfig;
use crate::util::atomic_write;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub lethe_version: String,
    /// The sweep file it was expanded from.
    pub source: PathBuf,
    pub created_unix: u64,
    pub trials: Vec<TrialRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialRecord {
    pub index: usize,
    pub name: String,
    pub overrides: Vec<Override>,
    /// The trial's experiment config (TOML), exactly as its run starts it.
    pub config: String,
}

impl TrialRecord {
    pub fn config(&self) -> Result<ExperimentConfig, String> {
        let config: ExperimentConfig = toml::from_str(&self.config)
            .map_err(|e| format!("trial {} in {MANIFEST}: {e}", self.index))?;
        config
            .validate()
            .map_err(|e| format!("trial {} in {MANIFEST}: {e}", self.index))?;
        Ok(config)
    }

    /// `key=value …`, for tables.
    pub fn varies(&self) -> String {
        self.overrides
            .iter()
            .map(|o| format!("{}={}", o.key, o.value))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    /// Whether `dir` is a sweep directory.
    pub fn exists_in(dir: &Path) -> bool {
        Self::path(dir).is_file()
    }

    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{}: not a sweep directory (no {MANIFEST}; `lethe sweep run FILE` or `lethe sweep slurm FILE` makes one)",
                    dir.display()
                )
            } else {
                format!("{}: {e}", path.display())
            }
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_expanded(expanded: &Expanded, source: &Path) -> Result<Self, String> {
        let trials = expanded
            .trials
            .iter()
            .map(|t| {
                Ok(TrialRecord {
                    index: t.index,
                    name: t.name.clone(),
                    overrides: t.overrides.clone(),
                    config: toml::to_string(&t.config)
                        .map_err(|e| format!("trial {}: {e}", t.index))?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            lethe_version: env!("CARGO_PKG_VERSION").to_string(),
            source: source.to_path_buf(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            trials,
        })
    }

    /// Writes the sweep directory's manifest, or — when the directory already has one —
    /// checks that it is the same sweep (same trials, names and configs), so re-running a
    /// sweep file continues it and an edited one cannot mix two sweeps in one directory.
    pub fn write_or_check(expanded: &Expanded, source: &Path) -> Result<Self, String> {
        let fresh = Self::from_expanded(expanded, source)?;
        let dir = &expanded.dir;
        if !Self::exists_in(dir) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let text = serde_json::to_string_pretty(&fresh).expect("json");
            let path = Self::path(dir);
            atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(fresh);
        }
        let existing = Self::read(dir)?;
        let differs = |why: String| {
            format!(
                "{} holds another sweep ({why}): {} was changed since the directory was made. Give the sweep another `out` (or --out), or move {} away",
                dir.display(),
                source.display(),
                dir.display()
            )
        };
        if existing.trials.len() != expanded.trials.len() {
            return Err(differs(format!(
                "{} trials there, {} now",
                existing.trials.len(),
                expanded.trials.len()
            )));
        }
        for (old, new) in existing.trials.iter().zip(&expanded.trials) {
            if old.name != new.name || old.config()? != new.config {
                return Err(differs(format!("trial {} differs", new.index)));
            }
        }
        Ok(existing)
    }

    pub fn trial(&self, index: usize) -> Result<&TrialRecord, String> {
        self.trials.get(index).ok_or_else(|| {
            format!(
                "the sweep has trials 0–{}; there is no trial {index}",
                self.trials.len().saturating_sub(1)
            )
        })
    }
}
