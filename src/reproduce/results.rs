//! What the reproduction's runs and DDPM evaluations left on disk, read back by trial and
//! sampler.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::plan::{Judgement, Plan, Stage};
use crate::experiment::run_dir::{EvaluatedModel, MetricsLine, RunDir, RunStatus};
use crate::metrics::evaluation::Evaluation;

/// The sampler a figure was drawn with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Sampler {
    /// The runs' own evaluations (deterministic).
    Ddim,
    /// `lethe eval --sampler ddpm` of the same checkpoints (stochastic).
    Ddpm,
}

impl Sampler {
    pub const BOTH: [Sampler; 2] = [Self::Ddim, Self::Ddpm];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ddim => "DDIM",
            Self::Ddpm => "DDPM",
        }
    }
}

/// One run, read back.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub status: Option<RunStatus>,
    pub error: Option<String>,
    /// Training and evaluation seconds (run.json).
    pub seconds: f64,
    /// Where it computed (run.json), e.g. `cpu: the CPU (2 threads, burn-flex)`.
    pub device: Option<String>,
    /// The evaluation of the model the run started from.
    pub baseline: Option<Evaluation>,
    /// Every evaluation of the trained model, by step.
    pub curve: Vec<(usize, Evaluation)>,
}

impl RunResult {
    fn read(dir: &Path) -> Self {
        let run = RunDir::open(dir);
        let mut result = Self::default();
        match run.read_status() {
            Ok(info) => {
                result.status = Some(info.status);
                result.error = info.error.clone();
                result.seconds = info.seconds + info.eval_seconds;
                result.device = Some(match &info.device {
                    Some(d) => d.device.clone(),
                    None => info.backend.clone(),
                });
            }
            Err(e) => {
                result.error = Some(e);
                return result;
            }
        }
        for line in run.read_metrics().unwrap_or_default() {
            if let MetricsLine::Eval {
                step,
                model,
                evaluation,
            } = line
            {
                match model {
                    EvaluatedModel::Original => result.baseline = Some(*evaluation),
                    EvaluatedModel::Current => result.curve.push((step, *evaluation)),
                }
            }
        }
        result
    }

    pub fn finished(&self) -> bool {
        self.status == Some(RunStatus::Finished)
    }

    pub fn last(&self) -> Option<&Evaluation> {
        if !self.finished() {
            return None;
        }
        self.curve.last().map(|(_, e)| e)
    }
}

/// Everything read back.
#[derive(Debug, Clone, Default)]
pub struct Results {
    runs: HashMap<(Stage, String), RunResult>,
    ddpm: HashMap<String, Evaluation>,
    /// DDPM evaluations that could not be read (name, why).
    pub missing_ddpm: Vec<(String, String)>,
}

impl Results {
    pub fn read(plan: &Plan) -> Self {
        let mut results = Self::default();
        for stage in &plan.stages {
            for trial in &stage.expanded.trials {
                let dir = stage.dir().join(&trial.name);
                results
                    .runs
                    .insert((stage.stage, trial.name.clone()), RunResult::read(&dir));
            }
        }
        for j in &plan.judgements {
            match read_judgement(&j.json_path(&plan.out)) {
                Ok(e) => {
                    results.ddpm.insert(j.name.clone(), e);
                }
                Err(why) => results.missing_ddpm.push((j.name.clone(), why)),
            }
        }
        results
    }

    pub fn run(&self, stage: Stage, trial: &str) -> Option<&RunResult> {
        self.runs.get(&(stage, trial.to_string()))
    }

    pub fn ddpm(&self, name: &str) -> Option<&Evaluation> {
        self.ddpm.get(name)
    }

    /// Training and evaluation seconds of every run.
    pub fn compute_seconds(&self) -> f64 {
        self.runs.values().map(|r| r.seconds).sum()
    }

    /// Every device the runs computed on.
    pub fn devices(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .runs
            .values()
            .filter_map(|r| r.device.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The runs that did not finish: (stage, trial, why).
    pub fn unfinished(&self) -> Vec<(Stage, String, String)> {
        let mut out: Vec<(Stage, String, String)> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.finished())
            .map(|((stage, name), r)| {
                let why = r.error.clone().unwrap_or_else(|| {
                    r.status.map_or("not run".into(), |s| s.label().to_string())
                });
                (*stage, name.clone(), why)
            })
            .collect();
        out.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        out
    }

    /// The model before and after trial (`arm`, `seed`) of `stage` under `sampler`: the
    /// original and the result (the unlearned model and the attacked one for DiMRA).
    pub fn before_after(
        &self,
        plan: &Plan,
        stage: Stage,
        arm: &str,
        seed: u64,
        sampler: Sampler,
    ) -> (Option<&Evaluation>, Option<&Evaluation>) {
        let Some(trial) = plan.stage(stage).and_then(|p| p.find(arm, seed)) else {
            return (None, None);
        };
        let run = self.run(stage, &trial.name);
        match sampler {
            Sampler::Ddim => (
                run.and_then(|r| r.baseline.as_ref()),
                run.and_then(|r| r.last()),
            ),
            Sampler::Ddpm => {
                let before = match stage {
                    Stage::Dimra => plan
                        .stage(Stage::Class7)
                        .and_then(|p| p.find(arm, seed))
                        .and_then(|t| self.ddpm(&Judgement::run_name(Stage::Class7, &t.name))),
                    _ => self.ddpm(&Judgement::original_name(stage.setting(), seed)),
                };
                // A result counts only when its run finished.
                let after = run
                    .filter(|r| r.finished())
                    .and_then(|_| self.ddpm(&Judgement::run_name(stage, &trial.name)));
                (before, after)
            }
        }
    }
}

fn read_judgement(path: &Path) -> Result<Evaluation, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut record: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_value(record["evaluation"].take())
        .map_err(|e| format!("{}: evaluation: {e}", path.display()))
}
