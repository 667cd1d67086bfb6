//! A sweep directory read back: each trial's state (done / running / interrupted /
//! cancelled / failed / missing) and figures, the `--array=` list to resubmit what is not
//! done, and the table as CSV and JSON (`lethe sweep status|collect`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::manifest::{Manifest, TrialRecord};
use crate::experiment::run_dir::RunStatus;
use crate::experiment::runs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Done,
    Running,
    Interrupted,
    Cancelled,
    Failed,
    /// No run directory yet (never started, or it failed before making one: see `error`).
    Missing,
}

impl TrialState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Missing => "missing",
        }
    }

    /// Whether a runner should (re)start it: not done, and nobody runs it now.
    pub fn wants_running(self) -> bool {
        !matches!(self, Self::Done | Self::Running)
    }
}

/// One row of the sweep's table.
#[derive(Debug, Clone, Serialize)]
pub struct TrialStatus {
    pub index: usize,
    pub name: String,
    pub state: TrialState,
    /// `key=value …` the trial sets on top of the base.
    pub varies: String,
    pub method: String,
    pub steps_done: usize,
    pub total_steps: usize,
    /// Training seconds.
    pub seconds: f64,
    /// Which forgetting figure `forgetting` is: the forgotten-class rate (class setting) or
    /// the forget-image rate.
    pub forgetting_metric: &'static str,
    pub forgetting: Option<f64>,
    pub fid: Option<f64>,
    /// How the FID was computed (feature net, samples, sampler).
    pub fid_provenance: Option<String>,
    pub run_dir: PathBuf,
    /// The newest log of the trial (`logs/<index>*.log`).
    pub log: Option<PathBuf>,
    /// Why it failed: the run's recorded error, or the log's last `error:` line.
    pub error: Option<String>,
}

/// Every trial of the sweep in `dir`, in order.
pub fn scan(dir: &Path) -> Result<(Manifest, Vec<TrialStatus>), String> {
    let manifest = Manifest::read(dir)?;
    let rows = manifest
        .trials
        .iter()
        .map(|t| trial_status(dir, t))
        .collect();
    Ok((manifest, rows))
}

fn trial_status(dir: &Path, trial: &TrialRecord) -> TrialStatus {
    let run_dir = dir.join(&trial.name);
    let log = newest_log(dir, trial.index);
    let config = trial.config().ok();
    let mut row = TrialStatus {
        index: trial.index,
        name: trial.name.clone(),
        state: TrialState::Missing,
        varies: trial.varies(),
        method: config
            .as_ref()
            .map(|c| c.method.label().to_string())
            .unwrap_or_default(),
        steps_done: 0,
        total_steps: config.as_ref().map_or(0, |c| c.train.steps),
        seconds: 0.0,
        forgetting_metric: if config
            .as_ref()
            .is_some_and(|c| c.data.forget_class.is_some())
        {
            "forgotten-class rate"
        } else {
            "forget-image rate"
        },
        forgetting: None,
        fid: None,
        fid_provenance: None,
        run_dir: run_dir.clone(),
        log: log.clone(),
        error: None,
    };
    if !run_dir.join("run.json").is_file() {
        row.error = log.as_deref().and_then(last_error);
        if row.error.is_some() {
            row.state = TrialState::Failed;
        }
        return row;
    }
    match runs::read_run(&run_dir) {
        Ok(record) => {
            row.state = match record.info.status {
                RunStatus::Finished => TrialState::Done,
                RunStatus::Running => TrialState::Running,
                RunStatus::Interrupted => TrialState::Interrupted,
                RunStatus::Cancelled => TrialState::Cancelled,
                RunStatus::Failed => TrialState::Failed,
            };
            row.steps_done = record.info.steps_done;
            row.total_steps = record.info.total_steps;
            row.seconds = record.info.seconds;
            row.forgetting = record.forgetting();
            row.fid = record.fid();
            row.fid_provenance = record.fid_provenance();
            row.error = record.info.error.clone();
        }
        Err(e) => {
            row.state = TrialState::Failed;
            row.error = Some(e);
        }
    }
    row
}

/// `logs/<index>.log` or `logs/<index>.slurm-<job>.log`, whichever changed last.
fn newest_log(dir: &Path, index: usize) -> Option<PathBuf> {
    let logs = std::fs::read_dir(dir.join("logs")).ok()?;
    let prefix = format!("{index}.");
    logs.flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".log")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
}

/// The last `error: …` line of a trial's log (what `lethe` prints when it fails).
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
}

/// The trials a resubmission should run: every one not done and not running.
pub fn to_rerun(rows: &[TrialStatus]) -> Vec<usize> {
    rows.iter()
        .filter(|r| r.state.wants_running())
        .map(|r| r.index)
        .collect()
}

/// `4 trials: 3 done, 1 failed`.
pub fn summary(rows: &[TrialStatus]) -> String {
    let mut parts = Vec::new();
    for state in [
        TrialState::Done,
        TrialState::Running,
        TrialState::Interrupted,
        TrialState::Cancelled,
        TrialState::Failed,
        TrialState::Missing,
    ] {
        let n = rows.iter().filter(|r| r.state == state).count();
        if n > 0 {
            parts.push(format!("{n} {}", state.label()));
        }
    }
    format!("{} trials: {}", rows.len(), parts.join(", "))
}

/// The table as CSV (one row per trial; empty cells where a figure is absent).
pub fn to_csv(rows: &[TrialStatus]) -> Result<String, String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "index",
        "name",
        "state",
        "varies",
        "method",
        "steps_done",
        "total_steps",
        "seconds",
        "forgetting_metric",
        "forgetting",
        "fid",
        "fid_provenance",
        "run_dir",
        "error",
    ])
    .map_err(|e| e.to_string())?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        out.write_record([
            r.index.to_string(),
            r.name.clone(),
            r.state.label().to_string(),
            r.varies.clone(),
            r.method.clone(),
            r.steps_done.to_string(),
            r.total_steps.to_string(),
            format!("{:.1}", r.seconds),
            r.forgetting_metric.to_string(),
            opt(r.forgetting),
            opt(r.fid),
            r.fid_provenance.clone().unwrap_or_default(),
            r.run_dir.display().to_string(),
            r.error.clone().unwrap_or_default(),
        ])
        .map_err(|e| e.to_string())?;
    }
    let bytes = out.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}
