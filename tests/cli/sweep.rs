//! `lethe sweep` end to end on the tiny model: trials run here two at a time, finished ones
//! skipped, failed and missing ones run again, the table collected; and (with a Slurm
//! controller, which `.ci/run` starts) the same sweep as a job array.

use std::path::{Path, PathBuf};

use crate::cli::{lethe, tiny_experiment};

/// Four trials of the tiny SISS experiment: two methods × two seeds, in `dir/sweep`.
fn tiny_sweep(dir: &Path) -> PathBuf {
    let base = tiny_experiment(dir);
    let text = format!(
        r#"base = "{base}"
out = "{out}"
[set]
"eval.every" = 0
[grid]
"train.seed" = [0, 1]
[[trials]]
"method.lambda" = 0.5
[[trials]]
"method.name" = "finetune"
"#,
        base = base.display(),
        out = dir.join("sweep").display()
    );
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn status_json(dir: &Path) -> Vec<serde_json::Value> {
    let (ok, out, err) = lethe(&["sweep", "status", dir.to_str().unwrap(), "--json"]);
    assert!(ok, "{out}\n{err}");
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn states(dir: &Path) -> Vec<String> {
    status_json(dir)
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_sweep_runs_here_two_at_a_time_resumes_and_collects() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tiny_sweep(tmp.path());
    let dir = tmp.path().join("sweep");
    let file_arg = file.to_str().unwrap();
    let dir_arg = dir.to_str().unwrap();

    let (ok, out, err) = lethe(&["sweep", "show", file_arg]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("4 trials"), "{out}");
    assert!(
        out.contains("000-lambda0.5-seed0") && out.contains("003-finetune-seed1"),
        "{out}"
    );

    let (ok, out, err) = lethe(&["sweep", "run", file_arg, "--jobs", "2", "--threads", "1"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("4 to run, 2 at a time × 1 threads"), "{out}");
    assert!(out.contains("4 trials: 4 done"), "{out}");
    assert_eq!(states(&dir), ["done"; 4]);
    // Each trial is an ordinary run directory with the trial's config.
    let rows = status_json(&dir);
    assert_eq!(rows[3]["method"], "Naive deletion (finetune)");
    assert_eq!(rows[1]["varies"], "method.lambda=0.5 train.seed=1");
    assert_eq!(rows[0]["steps_done"], 2);
    let config = std::fs::read_to_string(dir.join("001-lambda0.5-seed1/config.toml")).unwrap();
    assert!(config.contains("seed = 1"), "{config}");
    assert!(dir.join("logs/0.log").is_file());
    let (ok, out, _) = lethe(&["runs", dir_arg]);
    assert!(ok && out.matches("| finished |").count() == 4, "{out}");

    // Again: nothing to run.
    let (ok, out, err) = lethe(&["sweep", "run", file_arg]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("4 done or running elsewhere, 0 to run"),
        "{out}"
    );

    // A failed trial is continued and a missing one run again; the rest are left alone.
    let info_path = dir.join("001-lambda0.5-seed1/run.json");
    let info = std::fs::read_to_string(&info_path).unwrap();
    std::fs::write(&info_path, info.replace("\"finished\"", "\"failed\"")).unwrap();
    std::fs::remove_dir_all(dir.join("002-finetune-seed0")).unwrap();
    let (ok, out, err) = lethe(&["sweep", "status", dir_arg]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("4 trials: 2 done, 1 failed, 1 missing"),
        "{out}"
    );
    assert!(out.contains("not done: --array=1-2"), "{out}");
    let untouched = std::fs::read(dir.join("000-lambda0.5-seed0/run.json")).unwrap();
    let (ok, out, err) = lethe(&["sweep", "run", dir_arg, "--jobs", "2"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("2 to run") && out.contains("4 trials: 4 done"),
        "{out}"
    );
    let log = std::fs::read_to_string(dir.join("logs/1.log")).unwrap();
    assert!(log.contains("resuming"), "{log}");
    assert_eq!(
        std::fs::read(dir.join("000-lambda0.5-seed0/run.json")).unwrap(),
        untouched
    );

    // collect: the table as CSV and JSON.
    let (ok, out, err) = lethe(&["sweep", "collect", dir_arg]);
    assert!(ok, "{out}\n{err}");
    let csv = std::fs::read_to_string(dir.join("trials.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.lines().next().unwrap().starts_with("index,name,state"),
        "{csv}"
    );
    assert!(csv.lines().skip(1).all(|l| l.contains(",done,")), "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trials.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);

    // An edited sweep file does not mix into the directory of the old one.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("[0, 1]", "[0, 2]")).unwrap();
    let (ok, out, err) = lethe(&["sweep", "run", file_arg]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("holds another sweep") && err.contains("trial 1 differs"),
        "{err}"
    );
}

#[test]
fn bad_sweeps_and_trials_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tiny_sweep(tmp.path());
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("\"method.lambda\" = 0.5", "\"method.lamda\" = 0.5"),
    )
    .unwrap();
    let (ok, out, err) = lethe(&["sweep", "show", file.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("sweep.toml") && err.contains("trial 0") && err.contains("lamda"),
        "{err}"
    );
    let (ok, _, err) = lethe(&["sweep", "status", tmp.path().to_str().unwrap()]);
    assert!(!ok && err.contains("not a sweep directory"), "{err}");
}

/// Needs a Slurm controller and node on this machine (`tools/slurm_local.sh`); `.ci/run`
/// starts one and runs this with `--ignored`.
#[test]
#[ignore = "needs Slurm: tools/slurm_local.sh, then cargo test --release --test cli slurm -- --ignored"]
fn a_slurm_array_runs_the_sweep_to_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tiny_sweep(tmp.path());
    let dir = tmp.path().join("sweep");
    let (ok, out, err) = lethe(&[
        "sweep",
        "slurm",
        file.to_str().unwrap(),
        "--cpus-per-task",
        "1",
        "--time",
        "0:10:00",
        "--submit",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("--array=0-3") && out.contains("Submitted batch job"),
        "{out}"
    );
    let script = std::fs::read_to_string(dir.join("sweep.sbatch")).unwrap();
    assert!(
        script.contains("sweep trial") && script.contains("SLURM_ARRAY_TASK_ID"),
        "{script}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let states = states(&dir);
        if states.iter().all(|s| s == "done") {
            break;
        }
        assert!(
            !states.iter().any(|s| s == "failed"),
            "a trial failed: {states:?}\n{}",
            logs(&dir)
        );
        assert!(
            std::time::Instant::now() < deadline,
            "not done in 10 minutes: {states:?}\n{}",
            logs(&dir)
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let (ok, out, err) = lethe(&["sweep", "collect", dir.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    println!("{out}");
    assert!(out.contains("4 trials: 4 done"), "{out}");
    // Every task wrote its log where the script said.
    let slurm_logs = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".slurm-"))
        .count();
    assert_eq!(slurm_logs, 4, "{}", logs(&dir));
}

fn logs(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir.join("logs")) else {
        return "no logs".into();
    };
    entries
        .flatten()
        .map(|e| {
            format!(
                "== {}\n{}",
                e.path().display(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
