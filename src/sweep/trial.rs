//! What running one trial means, whoever runs it (the local runner's child process, a Slurm
//! array task, the workbench): start it, continue it from its last saved state, or leave it.

use std::path::{Path, PathBuf};

use super::manifest::TrialRecord;
use crate::experiment::ExperimentConfig;
use crate::experiment::run_dir::{RunDir, RunStatus};

/// How `lethe sweep run` tells each trial process its own process id.
pub const PARENT_ENV: &str = "LETHE_SWEEP_PARENT";

/// Ends this trial process once the `lethe sweep run` that started it (named by
/// [`PARENT_ENV`]) has gone — killed, or its terminal closed. An orphaned trial would run on
/// unseen, and a new `sweep run` would skip it as running elsewhere. Ending is a kill at an
/// arbitrary point, which every run survives: the next `sweep run` continues it from its last
/// saved state. Trials started another way (Slurm, by hand) are left alone.
pub fn end_with_parent() {
    #[cfg(unix)]
    {
        let parent = std::env::var(PARENT_ENV)
            .ok()
            .and_then(|p| p.parse::<u32>().ok());
        let Some(parent) = parent else {
            return;
        };
        std::thread::spawn(move || {
            loop {
                // An orphan is adopted by init or a subreaper: its parent id changes.
                if std::os::unix::process::parent_id() != parent {
                    eprintln!(
                        "the `lethe sweep run` that started this trial (process {parent}) has ended: \
                         stopping here; `lethe sweep run` again continues from the last saved state"
                    );
                    std::process::exit(1);
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
    }
}

#[derive(Debug)]
pub enum Next {
    /// No run yet: start it with this config.
    Start(Box<ExperimentConfig>),
    /// Interrupted, cancelled or failed: continue it (`Command::Continue`).
    Continue(PathBuf),
    /// Finished already.
    Done(PathBuf),
    /// Another process runs it now.
    RunningElsewhere(PathBuf),
}

/// Decides what to do with trial `record` of the sweep in `dir`. A run directory left
/// without `run.json` by a process killed while creating it is moved aside (its name with
/// `.incomplete-<time>`), never deleted, and the trial starts afresh.
pub fn next(dir: &Path, record: &TrialRecord) -> Result<Next, String> {
    let run_dir = dir.join(&record.name);
    if !run_dir.exists() {
        return Ok(Next::Start(Box::new(record.config()?)));
    }
    let run = RunDir::open(&run_dir);
    if !run_dir.join("run.json").is_file() {
        if run.is_locked() {
            return Ok(Next::RunningElsewhere(run_dir));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = dir.join(format!("{}.incomplete-{stamp}", record.name));
        std::fs::rename(&run_dir, &aside).map_err(|e| {
            format!(
                "{} has no run.json (its process died while creating it) and could not be moved aside: {e}",
                run_dir.display()
            )
        })?;
        return Ok(Next::Start(Box::new(record.config()?)));
    }
    let info = run.read_status()?;
    Ok(match info.status {
        RunStatus::Finished => Next::Done(run_dir),
        RunStatus::Running => Next::RunningElsewhere(run_dir),
        RunStatus::Interrupted | RunStatus::Cancelled | RunStatus::Failed => {
            Next::Continue(run_dir)
        }
    })
}
