//! The runs table and the trade-off plot's data, read from a runs directory on disk
//! (`run.json`, `config.toml`, `metrics.jsonl`), so finished runs from the CLI show too.

use std::path::{Path, PathBuf};

use crate::experiment::ExperimentConfig;
use crate::experiment::run_dir::{RunDir, RunInfo};
use crate::metrics::forgetting::Evaluation;

#[derive(Debug, Clone)]
pub struct RunRow {
    pub name: String,
    pub path: PathBuf,
    pub info: RunInfo,
    /// The method's knobs as `key=value` pairs (from `config.toml`).
    pub knobs: String,
    pub config: Option<ExperimentConfig>,
    /// The original model under the run's evaluation pipeline (step 0).
    pub baseline: Option<Evaluation>,
    /// The last evaluation of the unlearned model, with its step.
    pub last: Option<(usize, Evaluation)>,
    /// Every evaluation of the current model, for overlaid curves.
    pub evaluations: Vec<(usize, Evaluation)>,
}

impl RunRow {
    /// The forgetting number the trade-off plot uses: the forgotten-class rate in the class
    /// setting, else the forget-image (copy) rate. Lower = more forgotten.
    pub fn forgetting(&self) -> Option<f64> {
        let (_, e) = self.last.as_ref()?;
        let class_setting = self
            .config
            .as_ref()
            .is_some_and(|c| c.data.forget_class.is_some());
        Some(if class_setting {
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

/// Reads every run directory under `runs_dir` (newest first); unreadable entries are
/// reported, not fatal.
pub fn scan(runs_dir: &Path) -> (Vec<RunRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return (rows, problems);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.join("run.json").is_file() {
            continue;
        }
        match read_row(&path) {
            Ok(row) => rows.push(row),
            Err(e) => problems.push(e),
        }
    }
    rows.sort_by(|a, b| {
        b.info
            .started_unix
            .cmp(&a.info.started_unix)
            .then(a.name.cmp(&b.name))
    });
    (rows, problems)
}

pub fn read_row(path: &Path) -> Result<RunRow, String> {
    let info = RunDir::open(path).read_info()?;
    let config = ExperimentConfig::from_file(&path.join("config.toml")).ok();
    let knobs = config
        .as_ref()
        .map(|c| knob_summary(&c.method))
        .unwrap_or_default();
    let (baseline, evaluations) = read_evaluations(&path.join("metrics.jsonl"))?;
    Ok(RunRow {
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

/// The original model's evaluation and the current model's, by step.
type Evaluations = (Option<Evaluation>, Vec<(usize, Evaluation)>);

/// `(original, [(step, current)])` from a metrics.jsonl; a missing file is an empty run.
fn read_evaluations(path: &Path) -> Result<Evaluations, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok((None, Vec::new()));
    };
    let mut baseline = None;
    let mut current = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if !line.contains("\"eval\"") {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            // The last line may be cut by a crash mid-write; earlier ones must parse.
            Err(_) if n + 1 == text.lines().count() => continue,
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), n + 1)),
        };
        if value["kind"] != "eval" {
            continue;
        }
        let eval: Evaluation = serde_json::from_value(value["evaluation"].clone())
            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        let step = value["step"].as_u64().unwrap_or(0) as usize;
        if value["model"] == "original" {
            baseline = Some(eval);
        } else {
            current.push((step, eval));
        }
    }
    Ok((baseline, current))
}

/// `lambda=0.5 scaling_norm=5` from the method table of a config.
pub fn knob_summary(method: &crate::unlearn::MethodConfig) -> String {
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(method) else {
        return String::new();
    };
    table
        .iter()
        .filter(|(k, _)| k.as_str() != "name")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which points are on the Pareto front when both coordinates are to be minimised
/// (forgetting rate, FID): a point is on it when no other point is at least as good in
/// both and strictly better in one.
pub fn pareto_front(points: &[[f64; 2]]) -> Vec<bool> {
    points
        .iter()
        .map(|p| {
            !points
                .iter()
                .any(|q| q[0] <= p[0] && q[1] <= p[1] && (q[0] < p[0] || q[1] < p[1]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        let points = [
            [0.0, 300.0],
            [0.1, 200.0],
            [0.2, 250.0],
            [0.5, 100.0],
            [0.5, 120.0],
        ];
        assert_eq!(pareto_front(&points), vec![true, true, false, true, false]);
        // Ties are both on the front.
        assert_eq!(pareto_front(&[[1.0, 1.0], [1.0, 1.0]]), vec![true, true]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn a_missing_runs_dir_is_an_empty_table() {
        let (rows, problems) = scan(Path::new("/nonexistent/lethe-runs"));
        assert!(rows.is_empty() && problems.is_empty());
    }
}
