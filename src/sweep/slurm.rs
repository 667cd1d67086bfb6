//! `lethe sweep slurm`: an `sbatch` script for a job array whose task i runs trial i
//! (`lethe sweep trial DIR $SLURM_ARRAY_TASK_ID`), so the cluster's scheduler, not Lethe,
//! places, retries and throttles the trials. A task skips a finished trial and continues
//! an interrupted one, so resubmitting the array (or the `--array=` list `lethe sweep
//! status` prints) finishes a sweep without redoing work.

use std::path::Path;

/// What the script asks Slurm for; absent = the cluster's default.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub job_name: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Wall-clock limit per task, Slurm's format (`2:00:00`, `1-00:00:00`).
    pub time: Option<String>,
    /// GPUs per task (`--gres=gpu:N`).
    pub gpus: Option<u32>,
    pub cpus_per_task: usize,
    /// Memory per task, Slurm's format (`16G`).
    pub mem: Option<String>,
    /// At most this many tasks at once (`%K`).
    pub parallel: Option<usize>,
    /// More `#SBATCH` options, each as written after `#SBATCH ` (`--qos=high`).
    pub extra: Vec<String>,
}

/// The script for the trials `array` (an `--array=` list) of the sweep in `dir`, run by the
/// `lethe` binary at `exe` from the directory `workdir` (relative paths in the configs are
/// relative to it). `dir`, `exe` and `workdir` should be absolute.
pub fn script(
    dir: &Path,
    exe: &Path,
    workdir: &Path,
    array: &str,
    options: &SlurmOptions,
) -> Result<String, String> {
    let mut lines = vec!["#!/bin/bash".to_string()];
    let mut sbatch = |option: String| -> Result<(), String> {
        if option.contains(['\n', '\r']) {
            return Err(format!("slurm option `{option}` has a line break"));
        }
        lines.push(format!("#SBATCH {option}"));
        Ok(())
    };
    let name = options.job_name.clone().unwrap_or_else(|| {
        let stem = dir.file_name().unwrap_or_default().to_string_lossy();
        format!("lethe-{stem}")
    });
    sbatch(format!("--job-name={name}"))?;
    let throttle = options
        .parallel
        .map(|k| format!("%{k}"))
        .unwrap_or_default();
    sbatch(format!("--array={array}{throttle}"))?;
    sbatch(format!("--output={}/logs/%a.slurm-%A.log", dir.display()))?;
    sbatch(format!("--chdir={}", workdir.display()))?;
    sbatch("--ntasks=1".into())?;
    sbatch(format!("--cpus-per-task={}", options.cpus_per_task.max(1)))?;
    if let Some(p) = &options.partition {
        sbatch(format!("--partition={p}"))?;
    }
    if let Some(a) = &options.account {
        sbatch(format!("--account={a}"))?;
    }
    if let Some(t) = &options.time {
        sbatch(format!("--time={t}"))?;
    }
    if let Some(g) = options.gpus.filter(|g| *g > 0) {
        sbatch(format!("--gres=gpu:{g}"))?;
    }
    if let Some(m) = &options.mem {
        sbatch(format!("--mem={m}"))?;
    }
    for extra in &options.extra {
        sbatch(extra.trim_start_matches("#SBATCH").trim().to_string())?;
    }
    lines.push(String::new());
    lines
        .push("# Written by `lethe sweep slurm`. Task i runs trial i of the sweep (its run".into());
    lines.push("# directory inside the sweep directory): a finished trial is skipped, an".into());
    lines
        .push("# interrupted one continues from its last saved state. Resubmit what is not".into());
    lines.push("# done with the --array= list `lethe sweep status` prints.".into());
    lines.push("set -euo pipefail".into());
    lines.push(format!(
        "exec {} sweep trial {} \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"",
        shell_quote(&exe.display().to_string()),
        shell_quote(&dir.display().to_string())
    ));
    Ok(lines.join("\n") + "\n")
}

/// A path as one shell word.
fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_asks_for_what_was_given_and_runs_trial_i() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            time: Some("2:00:00".into()),
            gpus: Some(1),
            cpus_per_task: 8,
            parallel: Some(4),
            extra: vec!["--qos=high".into()],
            ..Default::default()
        };
        let text = script(
            Path::new("/scratch/runs/sweep-a"),
            Path::new("/opt/lethe it/lethe"),
            Path::new("/home/me/project"),
            "0-45",
            &options,
        )
        .unwrap();
        for line in [
            "#SBATCH --job-name=lethe-sweep-a",
            "#SBATCH --array=0-45%4",
            "#SBATCH --output=/scratch/runs/sweep-a/logs/%a.slurm-%A.log",
            "#SBATCH --chdir=/home/me/project",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=2:00:00",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --qos=high",
            "exec '/opt/lethe it/lethe' sweep trial /scratch/runs/sweep-a \"$SLURM_ARRAY_TASK_ID\"",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert!(!text.contains("--mem"), "{text}");
        let bad = SlurmOptions {
            partition: Some("gpu\n#SBATCH --x".into()),
            ..Default::default()
        };
        assert!(script(Path::new("/d"), Path::new("/l"), Path::new("/"), "0", &bad).is_err());
    }
}
