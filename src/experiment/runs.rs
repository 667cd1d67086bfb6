//! Every run in a runs directory, read back from its records (`run.json`, `config.toml`,
//! `metrics.jsonl`): the GUI's runs table and trade-off plot and `lethe runs` list the same
//! [`RunRecord`]s, so finished runs from the CLI show in the GUI too.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ExperimentConfig;
use super::run_dir::{EvaluatedModel, MetricsLine, RunDir, RunInfo};
use crate::metrics::evaluation::Evaluation;
use crate::unlearn::MethodConfig;

/// One run directory, read back.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The directory's name, e.g. `siss-001`.
    pub name: String,
    pub path: PathBuf,
    /// `run.json`: status, method, backend, steps, timings, last checkpoint.
    pub info: RunInfo,
    /// The method's knobs as `key=value` pairs (from `config.toml`).
    pub knobs: String,
    /// `config.toml`, when it reads as an experiment config.
    pub config: Option<ExperimentConfig>,
    /// The original model under the run's evaluation pipeline (step 0).
    pub baseline: Option<Evaluation>,
    /// The last evaluation of the unlearned model, with its step.
    pub last: Option<(usize, Evaluation)>,
    /// Every evaluation of the current model, for overlaid curves.
    pub evaluations: Vec<(usize, Evaluation)>,
}

impl RunRecord {
    /// Whether the run forgets a class (its forgetting figure is then the class rate).
    pub fn class_setting(&self) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.data.forget_class.is_some())
    }

    /// The forgetting number the trade-off plot uses: the forgotten-class rate in the class
    /// setting, else the forget-image (copy) rate. Lower = more forgotten.
    pub fn forgetting(&self) -> Option<f64> {
        let (_, e) = self.last.as_ref()?;
        Some(if self.class_setting() {
            e.forgotten_class_rate?
        } else {
            e.forget_copy_rate
        })
    }

    pub fn fid(&self) -> Option<f64> {
        self.last.as_ref()?.1.fid
    }

    /// How the FID was computed (feature net, N, sampler), to refuse silent mixing.
    pub fn fid_provenance(&self) -> Option<String> {
        let how = self.last.as_ref()?.1.how.as_ref()?;
        Some(format!(
            "{} N={} {}",
            how.feature_net.as_deref().unwrap_or("?"),
            how.samples,
            how.sampler
        ))
    }
}

/// Reads every run directory under `runs_dir` (newest first); a directory whose records do
/// not read is reported, not fatal. A missing `runs_dir` is an empty list.
pub fn scan(runs_dir: &Path) -> (Vec<RunRecord>, Vec<String>) {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return (records, problems);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.join("run.json").is_file() {
            continue;
        }
        match read_run(&path) {
            Ok(record) => records.push(record),
            Err(e) => problems.push(e),
        }
    }
    records.sort_by(|a, b| {
        b.info
            .started_unix
            .cmp(&a.info.started_unix)
            .then(a.name.cmp(&b.name))
    });
    (records, problems)
}

/// One run directory's records.
pub fn read_run(path: &Path) -> Result<RunRecord, String> {
    let dir = RunDir::open(path);
    let info = dir.read_status()?;
    let config = ExperimentConfig::from_file(&path.join("config.toml")).ok();
    let knobs = config
        .as_ref()
        .map(|c| knob_summary(&c.method))
        .unwrap_or_default();
    let mut baseline = None;
    let mut evaluations = Vec::new();
    for line in dir.read_metrics()? {
        match line {
            MetricsLine::Eval {
                model: EvaluatedModel::Original,
                evaluation,
                ..
            } => baseline = Some(*evaluation),
            MetricsLine::Eval {
                step,
                model: EvaluatedModel::Current,
                evaluation,
            } => evaluations.push((step, *evaluation)),
            MetricsLine::Step { .. } => {}
        }
    }
    Ok(RunRecord {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        info,
        knobs,
        config,
        baseline,
        last: evaluations.last().cloned(),
        evaluations,
    })
}

/// `lambda=0.5 scaling_norm=5` from the method table of a config.
pub fn knob_summary(method: &MethodConfig) -> String {
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(method) else {
        return String::new();
    };
    table
        .iter()
        .filter(|(k, _)| k.as_str() != "name")
        .map(|(k, v)| format!("{k}={}", knob_value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A knob's value as its config would write it: an `f32` knob widened to f64 prints as the
/// `f32` it is (`0.1`, not `0.10000000149011612`).
fn knob_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(v) if (*v as f32) as f64 == *v => format!("{}", *v as f32),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_print_as_written() {
        use crate::unlearn::siss::SissConfig;
        let mut siss = SissConfig::default();
        siss.scaling.relative_scaling = Some(0.1);
        siss.lambda = 0.123456789;
        let text = knob_summary(&MethodConfig::Siss(siss));
        assert!(text.contains("relative_scaling=0.1 "), "{text}");
        assert!(text.contains("lambda=0.123456789"), "{text}");
    }

    #[test]
    fn a_missing_runs_dir_is_an_empty_list() {
        let (records, problems) = scan(Path::new("/nonexistent/lethe-runs"));
        assert!(records.is_empty() && problems.is_empty());
    }
}
