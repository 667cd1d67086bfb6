//! `lethe serve` and `--backend remote:ws://…` against Burn's real remote backend on
//! loopback: a run through the server equals the local run step for step; a server killed
//! mid-run fails the client within a bounded time with its checkpoint kept; a wrong token is
//! refused; without a token the server listens on loopback only.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::tiny_experiment;
use crate::common::LetheServer;

/// `lethe serve` on loopback.
fn start_server(extra: &[&str]) -> LetheServer {
    LetheServer::start(env!("CARGO_BIN_EXE_lethe"), extra)
}

/// `lethe ARGS` with `env`, no terminal on stdin; (success, stdout, stderr).
fn lethe_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = command(args, env).output().expect("lethe runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lethe"));
    cmd.args(args)
        .env(
            "LETHE_CACHE_DIR",
            std::env::temp_dir().join("lethe-test-cache"),
        )
        .env_remove("LETHE_REMOTE_TOKEN")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    cmd
}

/// The tiny SISS experiment with `steps` steps, no evaluations, a checkpoint every 2 steps.
fn experiment(dir: &Path, steps: usize) -> String {
    let path = tiny_experiment(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("steps = 2", &format!("steps = {steps}"))
        .replace("every = 1", "every = 0\ncheckpoint_every = 2");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Every logged step's loss terms, in order.
fn loss_curve(run_dir: &Path) -> Vec<Vec<(String, f64)>> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["kind"] == "step")
        .map(|line| {
            line["record"]["report"]["terms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t[0].as_str().unwrap().to_string(), t[1].as_f64().unwrap()))
                .collect()
        })
        .collect()
}

#[test]
fn a_run_through_lethe_serve_has_the_local_runs_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let config = experiment(tmp.path(), 6);
    let server = start_server(&[]);

    let (ok, out, err) = lethe_with(
        &[
            "unlearn",
            "--config",
            &config,
            "--backend",
            "cpu",
            "--threads",
            "1",
            "--name",
            "local",
        ],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    let started = Instant::now();
    let (ok, out, err) = lethe_with(
        &[
            "unlearn",
            "--config",
            &config,
            "--backend",
            &server.backend(),
            "--threads",
            "1",
            "--name",
            "remote",
        ],
        &[],
    );
    let remote_seconds = started.elapsed().as_secs_f64();
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("connected: the CPU (1 threads, burn-flex)"),
        "{err}"
    );
    assert!(err.contains(&format!("at {}", server.url)), "{err}");

    let local = loss_curve(&tmp.path().join("runs/local"));
    let remote = loss_curve(&tmp.path().join("runs/remote"));
    assert_eq!(local.len(), 6);
    assert_eq!(remote.len(), local.len());
    for (step, (l, r)) in local.iter().zip(&remote).enumerate() {
        assert_eq!(l.len(), r.len());
        for ((name, a), (other, b)) in l.iter().zip(r) {
            assert_eq!(name, other);
            let tolerance = 1e-5 * a.abs().max(1.0);
            assert!(
                (a - b).abs() <= tolerance,
                "step {}: {name} local {a} vs remote {b}",
                step + 1
            );
        }
    }
    let info = std::fs::read_to_string(tmp.path().join("runs/remote/run.json")).unwrap();
    assert!(
        info.contains("\"remote\"") && info.contains(&server.url),
        "{info}"
    );
    let config_written =
        std::fs::read_to_string(tmp.path().join("runs/remote/config.toml")).unwrap();
    assert!(
        config_written.contains(&format!("remote = \"{}\"", server.url)),
        "{config_written}"
    );
    println!(
        "remote-vs-local: {} steps, every loss term within 1e-5; first step total local {:?} remote {:?}; remote run {remote_seconds:.1} s",
        local.len(),
        local[0].iter().find(|t| t.0 == "total"),
        remote[0].iter().find(|t| t.0 == "total"),
    );
}

#[test]
fn a_server_killed_mid_run_fails_the_client_in_bounded_time_and_keeps_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let config = experiment(tmp.path(), 400);
    let mut server = start_server(&[]);
    let backend = server.backend();
    let log = std::fs::File::create(tmp.path().join("client.log")).unwrap();
    let mut client = command(
        &[
            "unlearn",
            "--config",
            &config,
            "--backend",
            &backend,
            "--threads",
            "1",
            "--name",
            "cut",
        ],
        &[],
    )
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .unwrap();

    let run_dir = tmp.path().join("runs/cut");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !run_dir.join("metrics.jsonl").is_file() || loss_curve(&run_dir).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the run made no progress on the server"
        );
        assert!(
            client.try_wait().unwrap().is_none(),
            "the client ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(90) {
            let _ = client.kill();
            panic!("the client still runs 90 s after its server died");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let waited = killed.elapsed().as_secs_f64();
    let err = std::fs::read_to_string(tmp.path().join("client.log")).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("the connection to the lethe serve at ws://"),
        "{err}"
    );
    let info = std::fs::read_to_string(run_dir.join("run.json")).unwrap();
    assert!(info.contains("\"failed\""), "{info}");
    let checkpoints: Vec<_> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .collect();
    assert!(!checkpoints.is_empty(), "no checkpoint kept");
    println!(
        "server killed after {} steps: client failed {waited:.1} s later with: {}",
        loss_curve(&run_dir).len(),
        err.lines().last().unwrap_or_default()
    );

    // The run continues on the CPU from what it kept.
    let (ok, out, err) = lethe_with(
        &[
            "unlearn",
            "--resume",
            run_dir.to_str().unwrap(),
            "--backend",
            "cpu",
            "--threads",
            "1",
        ],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(loss_curve(&run_dir).len(), 400);
}

#[test]
fn a_wrong_token_is_refused_and_without_one_the_server_stays_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_experiment(tmp.path());
    let checkpoint = tmp.path().join("ckpt");
    let checkpoint = checkpoint.to_str().unwrap();

    let open = start_server(&[]);
    assert!(open.url.starts_with("ws://127.0.0.1:"), "{}", open.banner);
    assert!(open.banner.contains("loopback only"), "{}", open.banner);
    let (ok, out, err) = lethe_with(&["serve", "--port", "0", "--bind", "0.0.0.0"], &[]);
    assert!(!ok && err.contains("without a token"), "{out}\n{err}");

    let guarded = start_server(&["--bind", "127.0.0.1", "--token", "right-token"]);
    assert!(
        guarded.banner.contains("must present the token"),
        "{}",
        guarded.banner
    );
    let doctor = |token: Option<&str>| {
        let env: Vec<(&str, &str)> = token
            .map(|t| ("LETHE_REMOTE_TOKEN", t))
            .into_iter()
            .collect();
        lethe_with(
            &[
                "doctor",
                "--backend",
                &guarded.backend(),
                "--checkpoint",
                checkpoint,
                "--repeats",
                "1",
                "--batch",
                "2",
            ],
            &env,
        )
    };
    for token in [Some("wrong-token"), None] {
        let (ok, out, err) = doctor(token);
        assert!(!ok, "{token:?} was let in:\n{out}\n{err}");
        assert!(err.contains("refused the token"), "{token:?}:\n{err}");
    }
    let (ok, out, err) = doctor(Some("right-token"));
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("PASS: the CPU (1 threads, burn-flex)"),
        "{out}"
    );
}
