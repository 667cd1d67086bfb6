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

use super::cli::{lethe, tiny_experiment};

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
/// `run.json` that parses, `metrics.jsonl` lines that parse (the last one may be cut), and a
/// saved state that names a complete snapshot. Returns the saved step.
fn check_consistent(run: &Path) -> u64 {
    json(&run.join("run.json"));
    if let Ok(text) = std::fs::read_to_string(run.join("metrics.jsonl")) {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let parsed = serde_json::from_str::<serde_json::Value>(line);
            assert!(
                parsed.is_ok() || n + 1 == lines.len(),
                "{}: line {} does not parse: {line}",
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
        for file in ["model.bpk", "optimizer.bpk", "ema.safetensors"] {
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

/// Temporary files and saved states left in a finished run directory.
fn leftovers(run: &Path) -> Vec<PathBuf> {
    files(run)
        .into_keys()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(".tmp") || name.contains(".tmp") || p.starts_with(run.join("resume"))
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

fn final_weights(run: &Path) -> Vec<f32> {
    let ckpt = lethe::diffusion::checkpoint::load(
        &run.join("checkpoints/final"),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    lethe::diffusion::checkpoint::parameter_values(&ckpt.unet)
        .into_iter()
        .flat_map(|(_, _, values)| values)
        .collect()
}

#[test]
fn runs_killed_at_random_points_resume_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = 40;
    let config = saving_experiment(tmp.path(), steps);
    let config = config.to_str().unwrap();
    let source = files(&tmp.path().join("ckpt"));
    let (ok, out, err) = lethe(&["unlearn", "--config", config, "--name", "whole"]);
    assert!(ok, "{out}\n{err}");

    let seed: u64 = rand::rng().random();
    eprintln!("kill points drawn with seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let run = tmp.path().join("runs/cut");
    let run_arg = run.to_str().unwrap().to_string();
    let mut kills = 0;
    for round in 0..6 {
        let from = saved_step(&run).unwrap_or(0) + 1;
        if from >= steps as u64 - 2 {
            break;
        }
        let mut child = if round == 0 {
            spawn(
                &["unlearn", "--config", config, "--name", "cut"],
                Stdio::null(),
            )
        } else {
            spawn(&["unlearn", "--resume", &run_arg], Stdio::null())
        };
        // Killed once it has saved a later step, a few milliseconds into whatever it does
        // next: with a save after every step, that is often in the middle of one.
        // Never more than a third of the way to the end, so that several rounds get killed.
        let span = (steps as u64 - 2 - from).div_ceil(3).max(1);
        let target = from + rng.random_range(0..span);
        if wait_for_step(&mut child, &run, target) {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
            child.kill().unwrap();
            kills += 1;
        }
        let status = child.wait().unwrap();
        let step = check_consistent(&run);
        // Snapshots that no state names: saves the kill cut short.
        let cut_saves = std::fs::read_dir(run.join("resume"))
            .map(|entries| entries.count().saturating_sub(3))
            .unwrap_or(0);
        eprintln!(
            "round {round}: killed after saved step {target}, state at step {step}, \
             {cut_saves} save(s) cut short, {status}"
        );
        assert_eq!(
            files(&tmp.path().join("ckpt")),
            source,
            "the source checkpoint changed"
        );
        if json(&run.join("run.json"))["status"] == "finished" {
            break;
        }
    }
    assert!(kills >= 3, "only {kills} of the runs were killed");

    while json(&run.join("run.json"))["status"] != "finished" {
        let (ok, out, err) = lethe(&["unlearn", "--resume", &run_arg]);
        assert!(ok, "{out}\n{err}");
    }
    assert_eq!(json(&run.join("run.json"))["steps_done"], steps);
    let (whole, cut) = (
        final_weights(&tmp.path().join("runs/whole")),
        final_weights(&run),
    );
    let diff = whole
        .iter()
        .zip(&cut)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "weights after {kills} kills differ by {diff}");
    assert_eq!(leftovers(&run), Vec::<PathBuf>::new());
    assert_eq!(files(&tmp.path().join("ckpt")), source);
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

    let args = [
        "unlearn",
        "--config",
        config.to_str().unwrap(),
        "--name",
        "full",
    ];
    let mut child = spawn(&args, Stdio::piped());
    assert!(wait_for_step(&mut child, &run, 3), "the run ended early");
    // Fill the disk while the run saves a state after every step.
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
    let saved = check_consistent(&run);
    assert!(saved >= 3, "state at step {saved}");
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
    assert_eq!(leftovers(&run), Vec::<PathBuf>::new());
    assert_eq!(files(&tmp.path().join("ckpt")), source);
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
