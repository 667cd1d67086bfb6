//! A run directory:
//! ```text
//! runs/siss-001/
//!   config.toml        the full resolved config (seed included)
//!   run.json           status, timings, versions, backend, last good checkpoint
//!   metrics.jsonl      one JSON object per logged step / evaluation
//!   samples/step_NNNNN.png   original | current grids from the same seeds
//!   checkpoints/<name>/      diffusers layout with provenance
//!   resume/            the training state of the last save (`train::snapshot` + state.json)
//!   lock               held (flock) by the process running the run, for as long as it runs
//! ```
//! Every file is written atomically except `metrics.jsonl`, which is appended line by line
//! (a crash loses at most the line being written). The records here — [`RunInfo`] for
//! `run.json`, [`MetricsLine`] for each line of `metrics.jsonl` — are the only way the
//! engine writes them and the GUI and `lethe runs` read them.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ExperimentConfig;
use crate::metrics::evaluation::Evaluation;
use crate::unlearn::StepReport;
use crate::util::atomic_write;

/// One optimisation step, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Steps completed (1-based).
    pub step: usize,
    pub report: StepReport,
    /// Norm of the combined direction before the global clip.
    pub grad_norm: f32,
    pub clipped: bool,
    pub learning_rate: f64,
    pub step_seconds: f64,
}

/// Which model an evaluation line judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluatedModel {
    /// The checkpoint the run started from (logged once, at step 0).
    Original,
    /// The run's model at `step` (its EMA when the run keeps one).
    Current,
}

/// One line of `metrics.jsonl`, told apart by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsLine {
    /// `{"kind":"step","record":{…}}`
    Step { record: StepRecord },
    /// `{"kind":"eval","step":N,"model":"original"|"current","evaluation":{…}}`
    Eval {
        step: usize,
        model: EvaluatedModel,
        /// Boxed: an evaluation is several times the size of a step record.
        evaluation: Box<Evaluation>,
    },
}

impl MetricsLine {
    /// The step the line belongs to (steps completed).
    pub fn step(&self) -> usize {
        match self {
            Self::Step { record } => record.step,
            Self::Eval { step, .. } => *step,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    Cancelled,
    Failed,
    /// Never written: read back for a run whose `run.json` says `running` while no process
    /// holds its lock — the process was killed or crashed. `lethe unlearn --resume` continues it.
    Interrupted,
}

impl RunStatus {
    pub fn label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// Whether `lethe unlearn --resume` can continue a run in this state.
    pub fn resumable(self) -> bool {
        matches!(self, Self::Interrupted | Self::Cancelled | Self::Failed)
    }
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub status: RunStatus,
    pub method: String,
    pub lethe_version: String,
    /// The concrete backend the run computed on (`auto` resolved).
    pub backend: String,
    /// The device by name and why it was chosen (absent in runs before Lethe recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<crate::device_check::DeviceRecord>,
    pub source_checkpoint: PathBuf,
    pub source_sha256: String,
    pub steps_done: usize,
    pub total_steps: usize,
    pub seconds: f64,
    pub seconds_per_step: Option<f64>,
    pub started_unix: u64,
    pub last_checkpoint: Option<PathBuf>,
    pub error: Option<String>,
    /// The steps at which the run was resumed (`lethe unlearn --resume`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_at: Vec<usize>,
    /// Seconds spent evaluating (the original's included when computed), beside `seconds`
    /// of training.
    #[serde(default)]
    pub eval_seconds: f64,
    /// What the run expected its evaluations and training to cost before it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<super::cost::CostEstimate>,
    /// Peak memory while it ran (the device's pools where the backend reports them, the
    /// process's resident set on Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory: Option<crate::train::memory::MemoryReport>,
}

/// The run's lock, held by the process that runs it. The kernel releases it when that
/// process ends, however it ends (`kill -9` included), so a reader can tell a run that is
/// running from one whose process died with `run.json` still saying `running`.
pub struct RunLock {
    _file: std::fs::File,
}

pub struct RunDir {
    pub path: PathBuf,
}

/// Refuses a run name that is not one plain directory name: `runs_dir/name` must stay inside
/// `runs_dir`, whatever a config or sweep file downloaded from someone else says (issue #30).
pub fn check_run_name(name: &str) -> Result<(), String> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err(format!(
            "name = {name:?} is not a plain directory name: a run is created inside runs_dir, so its name cannot be empty or absolute, or contain `..` or a path separator"
        )),
    }
}

impl RunDir {
    /// Creates `runs_dir/name` (or the first free `runs_dir/<method>-NNN`); an existing
    /// named directory is refused rather than overwritten.
    fn create(config: &ExperimentConfig) -> Result<Self, String> {
        let parent = &config.header.runs_dir;
        // Checked before anything is created, so a refused name leaves no trace.
        if let Some(name) = &config.header.name {
            check_run_name(name)?;
        }
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let path = match &config.header.name {
            Some(name) => {
                let p = parent.join(name);
                if !claim(&p)? {
                    return Err(already_exists(&p));
                }
                p
            }
            None => claim_first_free(parent, config.method.slug())?,
        };
        for sub in ["samples", "checkpoints"] {
            let d = path.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let dir = Self { path };
        Ok(dir)
    }

    /// Refuses a run directory that holds a symbolic link (at any depth Lethe writes to): a
    /// resumed run writes checkpoints, samples and logs into it, and a link — say
    /// `checkpoints -> /home/user/models` in a run directory someone shared — would send
    /// those writes outside it.
    pub fn refuse_symlinks(&self) -> Result<(), String> {
        fn walk(dir: &Path, depth: usize) -> Result<(), String> {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if kind.is_symlink() {
                    return Err(format!(
                        "{}: is a symbolic link; a run directory is written into, so it must hold only plain files and folders (copy the run without links to continue it)",
                        path.display()
                    ));
                }
                if kind.is_dir() && depth > 0 {
                    walk(&path, depth - 1)?;
                }
            }
            Ok(())
        }
        let top = std::fs::symlink_metadata(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        if top.file_type().is_symlink() {
            return Err(format!(
                "{}: is a symbolic link; continue the run in the directory it points to",
                self.path.display()
            ));
        }
        // run.json, metrics.jsonl …; samples/, checkpoints/<name>/<files>.
        walk(&self.path, 2)
    }

    /// Creates the run directory and takes its lock before anything else is written.
    pub fn create_locked(config: &ExperimentConfig) -> Result<(Self, RunLock), String> {
        let dir = Self::create(config)?;
        let lock = dir.lock()?;
        dir.write_config(config)?;
        Ok((dir, lock))
    }

    /// Writes the resolved config (`config.toml`).
    pub fn write_config(&self, config: &ExperimentConfig) -> Result<(), String> {
        let dir = self;
        let text = toml::to_string(config).map_err(|e| format!("config: {e}"))?;
        atomic_write(&dir.path.join("config.toml"), text.as_bytes())
            .map_err(|e| format!("{}: {e}", dir.path.display()))
    }

    fn lock_path(&self) -> PathBuf {
        self.path.join("lock")
    }

    /// Takes the run's lock; refused while another process holds it (the run is running).
    pub fn lock(&self) -> Result<RunLock, String> {
        let path = self.lock_path();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "{} is running in another process (it holds {})",
                self.path.display(),
                path.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Whether a process (this one included) holds the run's lock now.
    pub fn is_locked(&self) -> bool {
        let Ok(file) = std::fs::OpenOptions::new()
            .write(true)
            .open(self.lock_path())
        else {
            // No lock file: no process is running it (runs written before runs were locked had none).
            return false;
        };
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// `run.json` with its status as it stands: `running` becomes `interrupted` when no
    /// process holds the run's lock.
    pub fn read_status(&self) -> Result<RunInfo, String> {
        let mut info = self.read_info()?;
        if info.status == RunStatus::Running && !self.is_locked() {
            info.status = RunStatus::Interrupted;
        }
        Ok(info)
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

    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    pub fn append_metrics(&self, line: &MetricsLine) -> Result<(), String> {
        let path = self.metrics_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(metrics_text(line).as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every line of `metrics.jsonl` (none when the file does not exist yet). A last line
    /// that does not parse is dropped — a crash may cut the line being written — while any
    /// earlier one is an error naming the file and line.
    pub fn read_metrics(&self) -> Result<Vec<MetricsLine>, String> {
        let path = self.metrics_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let count = text.lines().count();
        let mut lines = Vec::with_capacity(count);
        for (n, line) in text.lines().enumerate() {
            match serde_json::from_str(line) {
                Ok(parsed) => lines.push(parsed),
                Err(_) if n + 1 == count => {}
                Err(e) => return Err(format!("{}:{}: {e}", path.display(), n + 1)),
            }
        }
        Ok(lines)
    }

    /// Keeps the lines of `metrics.jsonl` that `keep` accepts and returns them (a resumed run
    /// drops what it logged after its saved step, and logs those steps again). The file is
    /// replaced atomically.
    pub fn retain_metrics(
        &self,
        keep: impl Fn(&MetricsLine) -> bool,
    ) -> Result<Vec<MetricsLine>, String> {
        let kept: Vec<MetricsLine> = self.read_metrics()?.into_iter().filter(keep).collect();
        let mut text = String::new();
        for line in &kept {
            text += &metrics_text(line);
        }
        let path = self.metrics_path();
        atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(kept)
    }

    /// The training state of the run's last save (`lethe unlearn --resume` reads it).
    pub fn resume_dir(&self) -> PathBuf {
        self.path.join("resume")
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

/// One line of `metrics.jsonl`, newline included. Through a `Value`: keys sorted and f32
/// values widened to f64, so the lines read exactly as they did when they were written
/// untyped (scripts that compare runs' numbers across Lethe versions see the same text).
fn metrics_text(line: &MetricsLine) -> String {
    let value = serde_json::to_value(line).expect("a metrics line is JSON");
    let mut text = value.to_string();
    text.push('\n');
    text
}

/// Creates the run directory `path` itself (never a parent or an existing entry: a
/// directory, file or symlink already there is not reused, and neither is one another
/// process creates at the same moment). `Ok(false)` when something is already there.
fn claim(path: &Path) -> Result<bool, String> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `parent/<slug>-NNN` with the first free number, claimed by creating it: two trials a
/// sweep starts side by side never share one.
fn claim_first_free(parent: &Path, slug: &str) -> Result<PathBuf, String> {
    let mut i = 1;
    loop {
        let p = parent.join(format!("{slug}-{i:03}"));
        if claim(&p)? {
            return Ok(p);
        }
        i += 1;
    }
}

/// Why a named run cannot be created at `p`, and how to continue it when it can be.
fn already_exists(p: &Path) -> String {
    let resumable = match RunDir::open(p).read_status() {
        Ok(info) if info.status.resumable() => format!(
            "; it is {} at step {}: `lethe unlearn --resume {}` continues it",
            info.status.label(),
            info.steps_done,
            p.display()
        ),
        _ => String::new(),
    };
    format!(
        "{} already exists; choose another name (runs are never overwritten){resumable}",
        p.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_name_is_one_plain_directory_name() {
        for good in ["siss-001", "a b", "lambda=0.5", "run/"] {
            check_run_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for bad in ["", ".", "..", "../escaped", "a/../../b", "a/b", "/tmp/x"] {
            let error = check_run_name(bad).expect_err(bad);
            assert!(error.contains("not a plain directory name"), "{error}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_run_directory_holding_a_symlink_is_refused() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        let runs = tempfile::tempdir().unwrap();
        let run = RunDir::open(&runs.path().join("r"));
        std::fs::create_dir_all(run.path.join("checkpoints/last")).unwrap();
        std::fs::write(run.path.join("run.json"), "{}").unwrap();
        run.refuse_symlinks().expect("plain files and folders pass");

        let link = run.path.join("checkpoints/last/model.safetensors");
        symlink(outside.path().join("model.safetensors"), &link).unwrap();
        let error = run.refuse_symlinks().unwrap_err();
        assert!(error.contains(&link.display().to_string()), "{error}");
        assert!(error.contains("symbolic link"), "{error}");

        std::fs::remove_file(&link).unwrap();
        symlink(outside.path(), runs.path().join("linked")).unwrap();
        let error = RunDir::open(&runs.path().join("linked"))
            .refuse_symlinks()
            .unwrap_err();
        assert!(error.contains("is a symbolic link"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_run_directory_is_claimed_by_creating_it_never_reused() {
        let runs = tempfile::tempdir().unwrap();
        let first = claim_first_free(runs.path(), "siss").unwrap();
        let second = claim_first_free(runs.path(), "siss").unwrap();
        assert_eq!(first, runs.path().join("siss-001"));
        assert_eq!(second, runs.path().join("siss-002"));
        // Anything already at a name is skipped, a dangling link included (following it
        // would create its target, wherever it points).
        let target = runs.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, runs.path().join("siss-003")).unwrap();
        assert_eq!(
            claim_first_free(runs.path(), "siss").unwrap(),
            runs.path().join("siss-004")
        );
        assert!(!claim(&runs.path().join("siss-003")).unwrap());
        assert!(!target.exists(), "nothing was created through the link");
    }

    #[test]
    fn a_run_whose_process_holds_no_lock_reads_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path());
        let info = RunInfo {
            status: RunStatus::Running,
            method: "SISS".into(),
            lethe_version: "0".into(),
            backend: "cpu".into(),
            device: None,
            source_checkpoint: PathBuf::from("ckpt"),
            source_sha256: String::new(),
            steps_done: 3,
            total_steps: 10,
            seconds: 1.0,
            seconds_per_step: None,
            started_unix: 0,
            last_checkpoint: None,
            error: None,
            resumed_at: vec![],
            eval_seconds: 0.0,
            estimate: None,
            peak_memory: None,
        };
        run.write_info(&info).unwrap();
        let lock = run.lock().unwrap();
        assert!(run.is_locked());
        assert_eq!(run.read_status().unwrap().status, RunStatus::Running);
        let second = run.lock().err().unwrap();
        assert!(second.contains("is running in another process"), "{second}");
        drop(lock);
        assert!(!run.is_locked());
        assert_eq!(run.read_status().unwrap().status, RunStatus::Interrupted);
        assert!(RunStatus::Interrupted.resumable() && !RunStatus::Finished.resumable());
    }

    #[test]
    fn metrics_lines_round_trip_and_a_cut_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path());
        let step = MetricsLine::Step {
            record: StepRecord {
                step: 1,
                report: StepReport::default(),
                grad_norm: 0.1,
                clipped: true,
                learning_rate: 1e-4,
                step_seconds: 0.5,
            },
        };
        let eval = MetricsLine::Eval {
            step: 0,
            model: EvaluatedModel::Original,
            evaluation: Box::new(Evaluation {
                forget_copy_rate: 0.25,
                ..Evaluation::default()
            }),
        };
        run.append_metrics(&step).unwrap();
        run.append_metrics(&eval).unwrap();
        let text = std::fs::read_to_string(run.metrics_path()).unwrap();
        assert!(
            text.starts_with("{\"kind\":\"step\",\"record\":{"),
            "{text}"
        );
        // Keys sorted, f32 values as their f64 widening: as the untyped lines were written.
        assert!(text.contains("\"kind\":\"eval\",\"model\":\"original\",\"step\":0}"));
        assert!(
            text.contains("\"grad_norm\":0.10000000149011612,"),
            "{text}"
        );
        assert_eq!(
            run.read_metrics().unwrap(),
            vec![step.clone(), eval.clone()]
        );
        // A crash mid-write leaves a cut last line: dropped. A cut earlier line: an error.
        std::fs::write(run.metrics_path(), format!("{text}{{\"kind\":\"st")).unwrap();
        assert_eq!(run.read_metrics().unwrap().len(), 2);
        std::fs::write(run.metrics_path(), format!("{{\"kind\":\"st\n{text}")).unwrap();
        let err = run.read_metrics().unwrap_err();
        assert!(err.contains("metrics.jsonl:1"), "{err}");
    }
}
