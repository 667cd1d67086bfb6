//! `lethe sweep run`: the sweep's trials on this machine, `jobs` at a time, each in its own
//! `lethe sweep trial DIR I` process with `threads` CPU threads (so a trial that fails or
//! is killed takes no other with it, and the cores are split, not oversubscribed). Output
//! goes to `logs/<i>.log`; finished trials are skipped, interrupted ones continued. A trial
//! ends when the runner does (`trial::end_with_parent`), so a killed runner leaves no
//! orphans behind.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::manifest::Manifest;

/// How to run the trials.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The `lethe` binary that runs each trial.
    pub exe: PathBuf,
    pub jobs: usize,
    pub threads_per_job: usize,
}

impl LocalOptions {
    /// `jobs` at a time on this machine's cores, split evenly (at least one each).
    pub fn split(exe: PathBuf, jobs: usize, threads: Option<usize>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = jobs.max(1);
        Self {
            exe,
            jobs,
            threads_per_job: threads.unwrap_or((cores / jobs).max(1)),
        }
    }
}

/// What the runner reports as it goes.
pub enum Progress<'a> {
    Started {
        index: usize,
        name: &'a str,
        log: &'a Path,
    },
    Ended {
        index: usize,
        name: &'a str,
        ok: bool,
        seconds: f64,
        log: &'a Path,
    },
}

/// Runs `indices` of the sweep in `dir`; returns the indices that failed.
pub fn run(
    dir: &Path,
    manifest: &Manifest,
    indices: &[usize],
    options: &LocalOptions,
    report: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<usize>, String> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let mut failed = Vec::new();
    // Both callbacks report; the cell lets them share it.
    let report = std::cell::RefCell::new(report);
    run_children(
        indices.to_vec(),
        options.jobs,
        |&index| {
            let trial = manifest.trial(index)?;
            let log = logs.join(format!("{index}.log"));
            let child = spawn(dir, index, &log, options)?;
            (report.borrow_mut())(Progress::Started {
                index,
                name: &trial.name,
                log: &log,
            });
            Ok(Some(child))
        },
        |&index, ok, seconds| {
            if !ok {
                failed.push(index);
            }
            let log = logs.join(format!("{index}.log"));
            if let Ok(trial) = manifest.trial(index) {
                (report.borrow_mut())(Progress::Ended {
                    index,
                    name: &trial.name,
                    ok,
                    seconds,
                    log: &log,
                });
            }
        },
    )?;
    Ok(failed)
}

/// Runs one child process per item, at most `jobs` at a time, in order: `spawn` starts an
/// item's process (or returns `None` to skip it), `ended` hears whether it succeeded and
/// after how many seconds. The pool behind `lethe sweep run` and `lethe reproduce`.
pub fn run_children<T>(
    items: Vec<T>,
    jobs: usize,
    mut spawn: impl FnMut(&T) -> Result<Option<Child>, String>,
    mut ended: impl FnMut(&T, bool, f64),
) -> Result<(), String> {
    let mut waiting: VecDeque<T> = items.into();
    let mut running: Vec<(T, Child, Instant)> = Vec::new();
    while !waiting.is_empty() || !running.is_empty() {
        while running.len() < jobs.max(1)
            && let Some(item) = waiting.pop_front()
        {
            if let Some(child) = spawn(&item)? {
                running.push((item, child, Instant::now()));
            }
        }
        let mut still = Vec::with_capacity(running.len());
        for (item, mut child, started) in running {
            match child.try_wait() {
                Ok(Some(status)) => ended(&item, status.success(), started.elapsed().as_secs_f64()),
                Ok(None) => still.push((item, child, started)),
                Err(e) => return Err(format!("a child process: {e}")),
            }
        }
        running = still;
        if !running.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// `lethe sweep trial DIR I --threads T`, its output appended to `log`.
fn spawn(dir: &Path, index: usize, log: &Path, options: &LocalOptions) -> Result<Child, String> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))
    };
    let stdout = open()?;
    let stderr = open()?;
    Command::new(&options.exe)
        .arg("sweep")
        .arg("trial")
        .arg(dir)
        .arg(index.to_string())
        .arg("--threads")
        .arg(options.threads_per_job.to_string())
        .env("RAYON_NUM_THREADS", options.threads_per_job.to_string())
        .env(super::trial::PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("{}: {e}", options.exe.display()))
}
