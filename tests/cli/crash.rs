//! Real `lethe` processes killed (SIGKILL) at random points, and runs whose disk fills up or
//! is read-only (issue #30). Afterwards every run directory is resumable or clearly marked,
//! no snapshot is half-taken (`resume/state.json` always names a complete one), the source
//! checkpoint is untouched, and a finished run leaves no temporary files behind.
//!
//! The disk tests mount a tmpfs, which needs root: without it they say so and pass, unless
//! `LETHE_REQUIRE_MOUNT` is set (`.ci/run` sets it; CI runs as root).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::cli::{lethe, tiny_attack, tiny_experiment};
use crate::common::max_abs_diff;

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// What a run directory must hold whenever its process has died, however it died: a
/// `run.json` that parses (unlearning runs), log lines that parse (the last one may be cut),
/// and a saved state that names a complete snapshot. Returns the saved step.
fn check_consistent(run: &Path) -> u64 {
    if run.join("run.json").exists() || run.join("metrics.jsonl").exists() {
        json(&run.join("run.json"));
    }
    for log in ["metrics.jsonl", "train_log.jsonl"] {
        let Ok(text) = std::fs::read_to_string(run.join(log)) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let parsed = serde_json::from_str::<serde_json::Value>(line);
            assert!(
                parsed.is_ok() || n + 1 == lines.len(),
                "{}/{log}: line {} does not parse: {line}",
                run.display(),
                n + 1
            );
        }
    }
    let state_path = run.join("resume/state.json");
    if !state_path.exists() {
        return 0;
    }
    let state = json(&state_path);
    let step = state["step"].as_u64().unwrap();
    if step > 0 {
        let snapshot = run.join("resume").join(state["snapshot"].as_str().unwrap());
        let files: &[&str] = if keeps_an_ema(run) {
            &["model.bpk", "optimizer.bpk", "ema.safetensors"]
        } else {
            &["model.bpk", "optimizer.bpk"]
        };
        for file in files {
            assert!(
                snapshot.join(file).is_file(),
                "{} names {} without {file}",
                state_path.display(),
                snapshot.display()
            );
        }
    }
    step
}

/// Whether the run in `run` keeps an EMA of its weights (a third snapshot file): an
/// unlearning run or attack when its `config.toml` says so; pretraining always does.
fn keeps_an_ema(run: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(run.join("config.toml")) else {
        return true;
    };
    let config: toml::Value = toml::from_str(&text).unwrap();
    config["train"]["ema_decay"].as_float().unwrap() > 0.0
}

/// Temporary files left in a finished run directory, and anything in its `resume/` but the
/// state and the snapshot it names — where the run `keeps_state` (pretraining keeps it to be
/// continued; a finished unlearning run deletes its `resume/`).
fn leftovers(run: &Path, keeps_state: bool) -> Vec<PathBuf> {
    let resume = run.join("resume");
    let state = resume.join("state.json");
    let named = if keeps_state {
        Some(resume.join(json(&state)["snapshot"].as_str().unwrap()))
    } else {
        None
    };
    files(run)
        .into_keys()
        .filter(|p| {
            let kept = *p == state || named.as_ref().is_some_and(|n| p.starts_with(n));
            let name = p.file_name().unwrap().to_string_lossy();
            lethe::util::is_partial_write(&name)
                || name.ends_with(".tmp")
                || (p.starts_with(&resume) && !(keeps_state && kept))
        })
        .collect()
}

fn spawn(args: &[&str], stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

fn saved_step(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("resume/state.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
}

/// Waits until the run has saved a state of at least `step` or its process has ended;
/// whether it is still running.
fn wait_for_step(child: &mut Child, run: &Path, step: u64) -> bool {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if saved_step(run).is_some_and(|s| s >= step) {
            return true;
        }
        assert!(started.elapsed().as_secs() < 300, "no state saved in 300 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The tiny experiment of `cli::tiny_experiment`, `steps` long, saving its state after every
/// step (so a kill lands in a save often), with an EMA (a third snapshot file).
fn saving_experiment(dir: &Path, steps: usize) -> PathBuf {
    let config = tiny_experiment(dir);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "[train]\nsteps = 2",
            &format!("[train]\nsteps = {steps}\nsave_state_every = 1\nema_decay = 0.9"),
        )
        .replace("[eval]\nevery = 1", "[eval]\nevery = 0");
    std::fs::write(&config, text).unwrap();
    config
}

/// Every parameter of the checkpoint in `dir`, in order.
fn final_weights(dir: &Path) -> Vec<f32> {
    let ckpt = lethe::diffusion::checkpoint::load(dir, &burn::tensor::Device::flex()).unwrap();
    lethe::diffusion::checkpoint::parameter_values(&ckpt.unet)
        .into_iter()
        .flat_map(|(_, _, values)| values)
        .collect()
}

/// Whether the run in `run` has taken all its `steps`: an unlearning run's `run.json` says
/// so; a pretraining run has no `run.json` and keeps its last state.
fn finished(run: &Path, steps: u64) -> bool {
    if run.join("run.json").exists() {
        json(&run.join("run.json"))["status"] == "finished"
    } else {
        saved_step(run) == Some(steps)
    }
}

/// Starts the run in `run` (`start(round)`: the first start, then resumptions) up to six
/// times, each killed (SIGKILL) a few milliseconds after it has saved a later step — with a
/// save after every step, often in the middle of the next one — and checks the run directory
/// and the `source` files after every kill. Returns how many starts were killed.
fn kill_at_random_points(
    run: &Path,
    steps: u64,
    start: impl Fn(usize) -> Child,
    source: (&Path, &BTreeMap<PathBuf, Vec<u8>>),
) -> usize {
    let seed: u64 = rand::rng().random();
    eprintln!("kill points drawn with seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut kills = 0;
    for round in 0..6 {
        let from = saved_step(run).unwrap_or(0) + 1;
        if from >= steps - 2 {
            break;
        }
        let mut child = start(round);
        // Never more than a third of the way to the end, so that several starts get killed.
        let target = from + rng.random_range(0..(steps - 2 - from).div_ceil(3).max(1));
        if wait_for_step(&mut child, run, target) {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
            child.kill().unwrap();
            kills += 1;
        }
        let status = child.wait().unwrap();
        let step = check_consistent(run);
        // Snapshots that no state names: saves the kill cut short.
        let cut_saves = std::fs::read_dir(run.join("resume")).map_or(0, |entries| {
            let snapshots = entries.filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("snapshot-")
            });
            snapshots.count().saturating_sub(1)
        });
        eprintln!(
            "start {round}: killed after saved step {target}: state at step {step}, \
             {cut_saves} save(s) cut short, {status}"
        );
        assert_eq!(&files(source.0), source.1, "the source changed");
        if finished(run, steps) {
            break;
        }
    }
    kills
}

/// Runs `lethe COMMAND --config CONFIG` (`unlearn` or `attack`, over `cli::tiny_experiment`'s
/// checkpoint in `tmp`) once uninterrupted as `runs/whole`, then as `runs/cut` killed at
/// random points and resumed until it finishes; checks that the weights agree, nothing is
/// left over and the source checkpoint is untouched. Returns the two run directories.
fn killed_runs_resume_to_the_uninterrupted_weights(
    command: &str,
    config: &Path,
    tmp: &Path,
    steps: u64,
) -> (PathBuf, PathBuf) {
    let config = config.to_str().unwrap();
    let source_dir = tmp.join("ckpt");
    let source = files(&source_dir);
    let (ok, out, err) = lethe(&[command, "--config", config, "--name", "whole"]);
    assert!(ok, "{out}\n{err}");

    let run = tmp.join("runs/cut");
    let run_arg = run.to_str().unwrap().to_string();
    let start = |round: usize| {
        if round == 0 {
            spawn(
                &[command, "--config", config, "--name", "cut"],
                Stdio::null(),
            )
        } else {
            spawn(&[command, "--resume", &run_arg], Stdio::null())
        }
    };
    let kills = kill_at_random_points(&run, steps, start, (&source_dir, &source));
    assert!(kills >= 3, "only {kills} of the starts were killed");

    while !finished(&run, steps) {
        let (ok, out, err) = lethe(&[command, "--resume", &run_arg]);
        assert!(ok, "{out}\n{err}");
    }
    assert_eq!(json(&run.join("run.json"))["steps_done"], steps);
    let whole = tmp.join("runs/whole");
    let diff = max_abs_diff(
        &final_weights(&whole.join("checkpoints/final")),
        &final_weights(&run.join("checkpoints/final")),
    );
    assert!(diff <= 1e-5, "weights after {kills} kills differ by {diff}");
    assert_eq!(leftovers(&run, false), Vec::<PathBuf>::new());
    assert_eq!(files(&source_dir), source);
    (whole, run)
}

#[test]
fn unlearning_runs_killed_at_random_points_resume_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let config = saving_experiment(tmp.path(), 40);
    killed_runs_resume_to_the_uninterrupted_weights("unlearn", &config, tmp.path(), 40);
}

/// A DiMRA attack on `cli::tiny_experiment`'s checkpoint, `steps` long, saving its state after
/// every step and probing (and checkpointing) every 10.
fn saving_attack(dir: &Path, steps: usize) -> PathBuf {
    tiny_experiment(dir);
    let keys = format!("steps = {steps}\nevaluate_every = 10\nsave_state_every = 1");
    tiny_attack(dir, &dir.join("ckpt"), &keys)
}

#[test]
fn an_attack_killed_at_random_points_resumes_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let config = saving_attack(tmp.path(), 30);
    let (whole, cut) =
        killed_runs_resume_to_the_uninterrupted_weights("attack", &config, tmp.path(), 30);
    // The probes' checkpoints along the way are the uninterrupted attack's too.
    for step in ["step_00010", "step_00020"] {
        let at = |run: &Path| final_weights(&run.join("checkpoints").join(step));
        assert!(
            max_abs_diff(&at(&whole), &at(&cut)) <= 1e-5,
            "{step} differs"
        );
    }
}

/// A sweep of two seeds of [`saving_experiment`] into `out`.
fn saving_sweep(dir: &Path, base: &Path, out: &Path) -> PathBuf {
    let path = dir.join(format!(
        "{}.toml",
        out.file_name().unwrap().to_string_lossy()
    ));
    let text = format!(
        "base = \"{}\"\nout = \"{}\"\n[grid]\n\"train.seed\" = [0, 1]\n",
        base.display(),
        out.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The trial run directories of the sweep in `dir` (named `NNN-…`), in order.
fn trial_runs(dir: &Path) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("00"))
        .collect();
    runs.sort();
    runs
}

#[test]
fn a_sweep_killed_at_random_points_takes_its_trials_with_it_and_finishes_as_uninterrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = 30u64;
    let base = saving_experiment(tmp.path(), steps as usize);
    let source_dir = tmp.path().join("ckpt");
    let source = files(&source_dir);
    let jobs = ["--jobs", "2", "--threads", "1"];
    let whole = saving_sweep(tmp.path(), &base, &tmp.path().join("whole"));
    let (ok, out, err) = lethe(&[&["sweep", "run", whole.to_str().unwrap()][..], &jobs].concat());
    assert!(ok, "{out}\n{err}");
    let whole_runs = trial_runs(&tmp.path().join("whole"));
    assert_eq!(whole_runs.len(), 2);

    let dir = tmp.path().join("cut");
    let file = saving_sweep(tmp.path(), &base, &dir);
    let args = [&["sweep", "run", file.to_str().unwrap()][..], &jobs].concat();
    let seed: u64 = rand::rng().random();
    eprintln!("kill points drawn with seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut kills = 0;
    for round in 0..6 {
        let runs: Vec<PathBuf> = whole_runs
            .iter()
            .map(|r| dir.join(r.file_name().unwrap()))
            .collect();
        // Steps saved by the trials together (a finished trial has deleted its state).
        let saved = |runs: &[PathBuf]| -> u64 {
            let step = |r: &PathBuf| {
                if finished(r, steps) {
                    steps
                } else {
                    saved_step(r).unwrap_or(0)
                }
            };
            runs.iter().map(step).sum()
        };
        let before = saved(&runs);
        if before >= 2 * (steps - 2) {
            break;
        }
        let mut runner = spawn(&args, Stdio::null());
        // Killed once the trials together have saved a few more steps.
        let target = before + rng.random_range(1..=6);
        let started = Instant::now();
        let reached = loop {
            if runner.try_wait().unwrap().is_some() {
                break false;
            }
            if saved(&runs) >= target {
                break true;
            }
            assert!(started.elapsed().as_secs() < 300, "no state saved in 300 s");
            std::thread::sleep(Duration::from_millis(1));
        };
        if reached {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
            runner.kill().unwrap();
            kills += 1;
        }
        runner.wait().unwrap();
        // The trials notice that their runner is gone and end: no run stays locked.
        let ended = Instant::now();
        while runs
            .iter()
            .any(|r| lethe::experiment::RunDir::open(r).is_locked())
        {
            assert!(
                ended.elapsed().as_secs() < 10,
                "a trial still runs 10 s after its `sweep run` was killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let states: Vec<u64> = runs
            .iter()
            .filter(|r| r.exists())
            .map(|r| check_consistent(r))
            .collect();
        eprintln!(
            "start {round}: runner killed after {target} saved steps in all: states at {states:?}"
        );
        assert_eq!(files(&source_dir), source, "the source changed");
    }
    assert!(kills >= 2, "only {kills} of the starts were killed");

    let (ok, out, err) = lethe(&args);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("2 trials: 2 done"), "{out}");
    for whole in &whole_runs {
        let cut = dir.join(whole.file_name().unwrap());
        let diff = max_abs_diff(
            &final_weights(&whole.join("checkpoints/final")),
            &final_weights(&cut.join("checkpoints/final")),
        );
        assert!(
            diff <= 1e-5,
            "{}: weights after {kills} kills differ by {diff}",
            cut.display()
        );
        assert_eq!(leftovers(&cut, false), Vec::<PathBuf>::new());
    }
    assert_eq!(files(&source_dir), source);
}

/// A pretraining config for a tiny model (8×8, channels 8/16) on `cli::tiny_experiment`'s
/// retain images, saving after every step, into `out`.
fn tiny_pretrain_config(dir: &Path, out: &Path, steps: usize) -> PathBuf {
    let config = dir.join(format!(
        "{}.toml",
        out.file_name().unwrap().to_string_lossy()
    ));
    let text = format!(
        r#"out_dir = "{out}"
[model]
sample_size = 8
in_channels = 1
out_channels = 1
block_out_channels = [8, 16]
layers_per_block = 1
down_block_types = ["DownBlock2D", "DownBlock2D"]
up_block_types = ["UpBlock2D", "UpBlock2D"]
add_attention = false
norm_num_groups = 4
num_class_embeds = 12
lethe_null_class = 11
[scheduler]
num_train_timesteps = 1000
beta_schedule = "linear"
beta_start = 0.0001
beta_end = 0.02
variance_type = "fixed_small"
clip_sample = true
[data]
sources = ["{retain}"]
[train]
steps = {steps}
batch_size = 4
learning_rate = 1e-3
warmup_steps = 2
final_lr_fraction = 0.1
ema_decay = 0.9
cond_drop_prob = 0.1
grad_clip_norm = 1.0
seed = 0
checkpoint_every = 1
"#,
        out = out.display(),
        retain = dir.join("retain").display(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_pretraining_run_killed_at_random_points_resumes_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_experiment(tmp.path());
    let steps = 40;
    let source_dir = tmp.path().join("retain");
    let source = files(&source_dir);
    let whole = tiny_pretrain_config(tmp.path(), &tmp.path().join("whole"), steps);
    let (ok, out, err) = lethe(&["pretrain", "--config", whole.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");

    let run = tmp.path().join("cut");
    let config = tiny_pretrain_config(tmp.path(), &run, steps);
    let config = config.to_str().unwrap();
    // A pretraining run resumes by running the same config again.
    let start = |_| spawn(&["pretrain", "--config", config], Stdio::null());
    let kills = kill_at_random_points(&run, steps as u64, start, (&source_dir, &source));
    assert!(kills >= 3, "only {kills} of the starts were killed");

    while !finished(&run, steps as u64) {
        let (ok, out, err) = lethe(&["pretrain", "--config", config]);
        assert!(ok, "{out}\n{err}");
    }
    let diff = max_abs_diff(
        &final_weights(&tmp.path().join("whole/checkpoint")),
        &final_weights(&run.join("checkpoint")),
    );
    assert!(
        diff <= 1e-5,
        "EMA weights after {kills} kills differ by {diff}"
    );
    assert_eq!(leftovers(&run, true), Vec::<PathBuf>::new());
    assert_eq!(files(&source_dir), source);
}

/// A tmpfs mounted for the life of the value (unmounted on drop), or `None` where this
/// process may not mount one.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Tmpfs(at.to_path_buf()));
        }
        assert!(
            std::env::var_os("LETHE_REQUIRE_MOUNT").is_none(),
            "LETHE_REQUIRE_MOUNT is set but a tmpfs could not be mounted at {}",
            at.display()
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        None
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `config` with its runs directory moved to `runs`.
fn with_runs_dir(config: &Path, runs: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let old = text.lines().find(|l| l.starts_with("runs_dir")).unwrap();
    let text = text.replace(old, &format!("runs_dir = \"{}\"", runs.display()));
    std::fs::write(config, text).unwrap();
}

/// Starts `lethe args` (a run in `run`, on `disk`, saving after every step), fills the disk
/// once it has saved step 3, and checks that it fails naming a path in the run and leaves a
/// consistent directory. Returns the ballast file that filled the disk.
fn run_until_the_disk_fills(args: &[&str], run: &Path, disk: &Tmpfs) -> PathBuf {
    let mut child = spawn(args, Stdio::piped());
    assert!(wait_for_step(&mut child, run, 3), "the run ended early");
    let ballast = disk.0.join("ballast");
    let mut file = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while file.write_all(&chunk).is_ok() {}
    drop(file);
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    eprintln!("{err}");
    assert!(!output.status.success(), "the run went on with a full disk");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(&run.display().to_string()),
        "the error names no path in the run: {err}"
    );
    let saved = check_consistent(run);
    assert!(saved >= 3, "state at step {saved}");
    ballast
}

#[test]
fn a_disk_that_fills_mid_run_fails_clearly_and_the_run_resumes_once_there_is_room() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&tmp.path().join("disk")) else {
        return;
    };
    let steps = 300;
    let config = saving_experiment(tmp.path(), steps);
    with_runs_dir(&config, &disk.0.join("runs"));
    let source = files(&tmp.path().join("ckpt"));
    let run = disk.0.join("runs/full");
    let config = config.to_str().unwrap();
    let ballast = run_until_the_disk_fills(
        &["unlearn", "--config", config, "--name", "full"],
        &run,
        &disk,
    );
    let status = json(&run.join("run.json"))["status"].clone();
    assert!(
        status == "failed" || status == "running",
        "run.json says {status}"
    );

    // With room again, the run resumes from its last complete snapshot and finishes clean.
    std::fs::remove_file(&ballast).unwrap();
    let (ok, out, err) = lethe(&["unlearn", "--resume", run.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let info = json(&run.join("run.json"));
    assert_eq!(info["status"], "finished");
    assert_eq!(info["steps_done"], steps);
    assert_eq!(leftovers(&run, false), Vec::<PathBuf>::new());
    assert_eq!(files(&tmp.path().join("ckpt")), source);
}

#[test]
fn a_pretraining_run_on_a_disk_that_fills_fails_clearly_and_continues_once_there_is_room() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&tmp.path().join("disk")) else {
        return;
    };
    tiny_experiment(tmp.path());
    let steps = 300;
    let run = disk.0.join("full");
    let config = tiny_pretrain_config(tmp.path(), &run, steps);
    let config = config.to_str().unwrap();
    let ballast = run_until_the_disk_fills(&["pretrain", "--config", config], &run, &disk);

    std::fs::remove_file(&ballast).unwrap();
    let (ok, out, err) = lethe(&["pretrain", "--config", config]);
    assert!(ok, "{out}\n{err}");
    assert!(finished(&run, steps as u64));
    assert_eq!(leftovers(&run, true), Vec::<PathBuf>::new());
}

#[test]
fn a_read_only_runs_directory_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&tmp.path().join("disk")) else {
        return;
    };
    std::fs::create_dir(disk.0.join("runs")).unwrap();
    disk.remount("ro");
    let runs = disk.0.join("runs");

    let config = tiny_experiment(tmp.path());
    with_runs_dir(&config, &runs);
    let sweep = tmp.path().join("sweep.toml");
    std::fs::write(
        &sweep,
        format!(
            "base = \"{}\"\nout = \"{}\"\n[grid]\n\"train.seed\" = [0, 1]\n",
            config.display(),
            runs.join("sweep").display()
        ),
    )
    .unwrap();
    let pretrain = tmp.path().join("pretrain.toml");
    let text = std::fs::read_to_string("examples/pretrain-demo.toml").unwrap();
    let old = text.lines().find(|l| l.starts_with("out_dir")).unwrap();
    let text = text.replace(old, &format!("out_dir = \"{}\"", runs.join("pt").display()));
    std::fs::write(&pretrain, text).unwrap();

    for args in [
        vec!["unlearn", "--config", config.to_str().unwrap()],
        vec!["pretrain", "--config", pretrain.to_str().unwrap()],
        vec!["sweep", "run", sweep.to_str().unwrap()],
    ] {
        let started = Instant::now();
        let (ok, out, err) = lethe(&args);
        assert!(!ok, "{args:?} ran on a read-only runs directory: {out}");
        assert!(err.contains("Read-only file system"), "{args:?}: {err}");
        assert!(
            err.contains(&runs.display().to_string()),
            "{args:?} names no path: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} took {:?} to refuse",
            started.elapsed()
        );
    }
}
