//! Unlearning runs end to end on a tiny model: the run directory, identities that must hold
//! exactly (lr 0 changes nothing), reproducibility, NaN handling and cancellation.

use crate::common;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lethe::diffusion::checkpoint;
use lethe::engine::{Command, Control, Engine, Event, Stop, execute};
use lethe::experiment::config::{DataSelection, EvalConfig, RunHeader, UnlearnTrain};
use lethe::experiment::{ExperimentConfig, RunDir, RunStatus};
use lethe::unlearn::MethodConfig;
use lethe::unlearn::siss::SissConfig;

/// A tiny world: checkpoint, three retain classes of 8×8 patterns, one forget image.
fn world(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ckpt = dir.join("ckpt");
    common::tiny_checkpoint(&ckpt);
    let retain = dir.join("retain");
    for i in 0..4u32 {
        common::write_png(&retain.join("0").join(format!("{i}.png")), move |x, _| {
            if (x + i) % 4 < 2 { 230 } else { 20 }
        });
        common::write_png(&retain.join("1").join(format!("{i}.png")), move |_, y| {
            if (y + i) % 4 < 2 { 230 } else { 20 }
        });
        common::write_png(&retain.join("2").join(format!("{i}.png")), move |x, y| {
            ((x * 30 + y * 3 + i * 7) % 255) as u8
        });
    }
    let forget = dir.join("forget.png");
    common::write_png(&forget, |x, y| if (x + y) % 2 == 0 { 255 } else { 0 });
    (ckpt, retain, forget)
}

fn config(dir: &Path, method: MethodConfig, steps: usize, lr: f64) -> ExperimentConfig {
    let (checkpoint, retain, forget) = world(dir);
    ExperimentConfig {
        header: RunHeader {
            runs_dir: dir.join("runs"),
            ..RunHeader::new(checkpoint)
        },
        data: DataSelection {
            retain: vec![retain],
            forget: vec![forget],
            forget_label: Some(10),
            forget_class: None,
        },
        method,
        train: UnlearnTrain {
            steps,
            batch_size: 4,
            learning_rate: lr,
            ..UnlearnTrain::default()
        },
        eval: EvalConfig {
            every: 0,
            samples: Some(4),
            grid: 4,
            sampler: Some(lethe::diffusion::sampler::SamplerKind::Ddim),
            sampler_steps: Some(4),
            classifier: PathBuf::new(),
            ..EvalConfig::default()
        },
    }
}

fn run(config: &ExperimentConfig) -> (Result<(), Stop>, Vec<Event>) {
    let events = RefCell::new(vec![]);
    let result = execute(config, &mut Control::detached(), &|e| {
        events.borrow_mut().push(e)
    });
    (result, events.into_inner())
}

fn run_dir(events: &[Event]) -> PathBuf {
    events
        .iter()
        .find_map(|e| match e {
            Event::Started { run_dir, .. } => Some(run_dir.clone()),
            _ => None,
        })
        .expect("Started event")
}

fn weights(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let ckpt = checkpoint::load(dir, &Device::flex()).unwrap();
    checkpoint::parameter_values(&ckpt.unet)
}

fn step_totals(events: &[Event]) -> Vec<f32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(r) => r.report.total(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_writes_a_complete_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        MethodConfig::Siss(SissConfig::default()),
        3,
        1e-3,
    );
    let (result, events) = run(&cfg);
    assert!(result.is_ok());
    let dir = run_dir(&events);
    assert!(dir.ends_with("siss-001"), "{}", dir.display());
    let info = RunDir::open(&dir).read_info().unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.steps_done, 3);
    // The resolved config reads back as the same experiment.
    let back = ExperimentConfig::from_file(&dir.join("config.toml")).unwrap();
    assert_eq!(back, cfg);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().filter(|l| l["kind"] == "step").count(), 3);
    assert_eq!(lines.iter().filter(|l| l["kind"] == "eval").count(), 2);
    // Every evaluation carries its ELBO values and says how they were computed.
    for eval in lines.iter().filter(|l| l["kind"] == "eval") {
        let e = &eval["evaluation"];
        for key in ["elbo_forget_bpd", "elbo_retain_bpd"] {
            let bpd = e[key].as_f64().unwrap();
            assert!(bpd.is_finite() && bpd > 0.0, "{key} = {bpd}");
        }
        let how = e["how"]["elbo"].as_str().unwrap();
        assert!(
            how.contains("stratified") && how.contains("null class"),
            "{how}"
        );
        assert_eq!(e["how"]["preset"], "custom");
    }
    // SISS logs both terms, both gradient norms and the importance weights.
    let step = &lines.iter().find(|l| l["kind"] == "step").unwrap()["record"]["report"];
    assert_eq!(step["grad_norms"].as_array().unwrap().len(), 2);
    assert!(step["weights"]["w_x_mean"].as_f64().unwrap() >= 0.0);
    assert!(dir.join("samples/step_00000.png").exists());
    assert!(dir.join("samples/step_00003.png").exists());
    // The checkpoint is a diffusers checkpoint with provenance naming its parent.
    let ckpt = checkpoint::load(&dir.join("checkpoints/final"), &Device::flex()).unwrap();
    assert_eq!(ckpt.metadata["lethe_method"], "siss");
    assert_eq!(ckpt.metadata["lethe_steps"], "3");
    assert_eq!(ckpt.metadata["lethe_parent_sha256"], info.source_sha256);
    // A second run never overwrites the first.
    let (_, events2) = run(&cfg);
    assert!(run_dir(&events2).ends_with("siss-002"));
}

#[test]
fn learning_rate_zero_leaves_weights_and_samples_identical() {
    for method in [
        MethodConfig::Siss(SissConfig::default()),
        MethodConfig::EraseDiff(Default::default()),
        MethodConfig::Vdu(Default::default()),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), method.clone(), 2, 0.0);
        let (result, events) = run(&cfg);
        assert!(result.is_ok(), "{}", method.label());
        let dir = run_dir(&events);
        assert_eq!(
            weights(&dir.join("checkpoints/final")),
            weights(&cfg.header.checkpoint),
            "{}",
            method.label()
        );
        type Grid = Vec<Vec<f32>>;
        let grids: Vec<(&Grid, &Grid)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Samples {
                    original, current, ..
                } => Some((original.as_ref(), current)),
                _ => None,
            })
            .collect();
        let (original, last) = grids.last().unwrap();
        assert_eq!(&original[..last.len()], &last[..], "{}", method.label());
        // The unchanged model scores exactly as the original under the same pipeline.
        let (evaluation, baseline) = events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Metrics {
                    evaluation,
                    baseline,
                    ..
                } => Some((evaluation, baseline)),
                _ => None,
            })
            .unwrap();
        assert!(evaluation.elbo_forget_bpd.is_some());
        assert_eq!(evaluation.elbo_forget_bpd, baseline.elbo_forget_bpd);
        assert_eq!(evaluation.elbo_retain_bpd, baseline.elbo_retain_bpd);
        assert_eq!(evaluation.forget_copy_rate, baseline.forget_copy_rate);
    }
}

#[test]
fn the_same_config_and_seed_reproduce_the_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        MethodConfig::Siss(SissConfig::default()),
        4,
        1e-3,
    );
    let (_, a) = run(&cfg);
    let (_, b) = run(&cfg);
    let (ca, cb) = (step_totals(&a), step_totals(&b));
    assert_eq!(ca.len(), 4);
    assert_eq!(ca, cb);
    let mut other = cfg.clone();
    other.train.seed = 1;
    let (_, c) = run(&other);
    assert_ne!(step_totals(&c), ca, "the seed must matter");
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // Gradient ascent with an absurd learning rate: the first step blows the weights up
    // to ~1e30, the next forward overflows.
    let mut cfg = config(
        tmp.path(),
        MethodConfig::NegGrad(Default::default()),
        20,
        1e30,
    );
    cfg.eval.checkpoint_every = 1;
    let (result, events) = run(&cfg);
    let Err(Stop::Failed { error, run_dir }) = result else {
        panic!("the run should fail")
    };
    assert!(error.contains("became"), "{error}");
    assert!(error.contains("last-good"), "{error}");
    let dir = run_dir.unwrap();
    let info = RunDir::open(&dir).read_info().unwrap();
    assert_eq!(info.status, RunStatus::Failed);
    assert!(info.error.unwrap().contains("became"));
    // The last good model loads and is finite.
    let good = weights(&dir.join("checkpoints/last-good"));
    assert!(good.iter().all(|(_, _, v)| v.iter().all(|x| x.is_finite())));
    assert!(!events.iter().any(|e| matches!(e, Event::Finished(_))));
}

#[test]
fn cancel_mid_run_leaves_a_consistent_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), MethodConfig::Finetune, 10_000, 1e-3);
    let engine = Engine::spawn(None);
    engine.send(Command::Start(Box::new(cfg)));
    let mut steps_seen = 0;
    let summary = loop {
        match engine.events().recv().unwrap() {
            Event::Step(_) => {
                steps_seen += 1;
                if steps_seen == 2 {
                    engine.send(Command::Cancel);
                }
            }
            Event::Cancelled(summary) => break summary,
            e if e.is_terminal() => panic!("unexpected end: {e:?}"),
            _ => {}
        }
    };
    assert!(summary.steps_done >= 2 && summary.steps_done < 10_000);
    let info = RunDir::open(&summary.run_dir).read_info().unwrap();
    assert_eq!(info.status, RunStatus::Cancelled);
    assert_eq!(info.steps_done, summary.steps_done);
    let last = summary.last_checkpoint.unwrap();
    assert!(last.ends_with("checkpoints/last"));
    assert_eq!(
        checkpoint::load(&last, &Device::flex()).unwrap().metadata["lethe_steps"],
        summary.steps_done.to_string()
    );
    let logged = std::fs::read_to_string(summary.run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "step")
        .count();
    assert_eq!(logged, summary.steps_done);
}

#[test]
fn bad_configs_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let base = config(
        tmp.path(),
        MethodConfig::Siss(SissConfig::default()),
        1,
        1e-3,
    );
    let mut c = base.clone();
    c.method = MethodConfig::Siss(SissConfig {
        lambda: 1.5,
        ..SissConfig::default()
    });
    assert!(c.validate().unwrap_err().contains("method.lambda"));
    let mut c = base.clone();
    c.train.learning_rate = -1.0;
    assert!(c.validate().unwrap_err().contains("train.learning_rate"));
    let mut c = base.clone();
    c.data.forget.clear();
    assert!(c.validate().unwrap_err().contains("data.forget"));
    let mut c = base.clone();
    c.train.ema_decay = 1.0;
    assert!(c.validate().unwrap_err().contains("train.ema_decay"));
    let text = "checkpoint = \"x\"\n[data]\nforget = [\"a.png\"]\n[method]\nname = \"forget-everything\"\n";
    let err = toml::from_str::<ExperimentConfig>(text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("forget-everything"), "{err}");
    let text = "checkpoint = \"x\"\n[data]\nforget = [\"a.png\"]\n[method]\nname = \"siss\"\nlambada = 0.5\n";
    let err = toml::from_str::<ExperimentConfig>(text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lambada"), "{err}");
    // A forget class nobody has is an error naming it, not an empty run.
    let mut c = base;
    c.data.forget.clear();
    c.data.forget_class = Some(7);
    let (result, _) = run(&c);
    let Err(Stop::Failed { error, .. }) = result else {
        panic!()
    };
    assert!(error.contains("forget_class = 7"), "{error}");
}

#[test]
fn pause_holds_the_run_and_sample_and_evaluate_now_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), MethodConfig::Finetune, 10_000, 1e-3);
    let engine = Engine::spawn(None);
    engine.send(Command::Start(Box::new(cfg)));
    let events = engine.events();
    let mut step_at_pause = None;
    loop {
        match events.recv().unwrap() {
            Event::Step(r) if step_at_pause.is_none() => {
                engine.send(Command::Pause);
                step_at_pause = Some(r.step);
            }
            Event::Paused => break,
            e if e.is_terminal() => panic!("{e:?}"),
            _ => {}
        }
    }
    // While paused no step runs (at most the one already in flight when Pause arrived).
    std::thread::sleep(std::time::Duration::from_millis(400));
    let steps_while_paused = events
        .try_iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .count();
    assert!(
        steps_while_paused <= 1,
        "{steps_while_paused} steps ran while paused"
    );
    engine.send(Command::SampleNow);
    engine.send(Command::EvaluateNow);
    engine.send(Command::Resume);
    let (mut samples, mut metrics, mut resumed) = (false, false, false);
    while !(samples && metrics && resumed) {
        match events
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap()
        {
            Event::Resumed => resumed = true,
            Event::Samples { step, .. } if step > 0 => samples = true,
            Event::Metrics { step, .. } if step > 0 => metrics = true,
            e if e.is_terminal() => panic!("{e:?}"),
            _ => {}
        }
    }
    engine.send(Command::Cancel);
    loop {
        match events.recv().unwrap() {
            Event::Cancelled(_) => break,
            e if e.is_terminal() => panic!("{e:?}"),
            _ => {}
        }
    }
}

/// With `ema_decay = d` the saved model is the EMA of the trained weights from the original:
/// after two steps `d²·θ₀ + d(1−d)·θ₁ + (1−d)·θ₂`, where θ₁, θ₂ are the weights of the same
/// run without EMA (EMA never changes what is trained).
#[test]
fn with_ema_the_saved_model_is_the_exponential_average_of_the_trained_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), MethodConfig::Finetune, 2, 1e-2);
    cfg.eval.checkpoint_every = 1;
    let (result, events) = run(&cfg);
    assert!(result.is_ok());
    let trained = run_dir(&events);
    let theta0 = weights(&cfg.header.checkpoint);
    let theta1 = weights(&trained.join("checkpoints/step_00001"));
    let theta2 = weights(&trained.join("checkpoints/final"));

    let d = 0.75f32;
    cfg.train.ema_decay = d as f64;
    let (result, events) = run(&cfg);
    assert!(result.is_ok());
    let averaged = run_dir(&events).join("checkpoints/final");
    let ema = weights(&averaged);
    let mut moved = 0.0f32;
    for (((name, _, e), (_, _, w0)), ((_, _, w1), (_, _, w2))) in
        ema.iter().zip(&theta0).zip(theta1.iter().zip(&theta2))
    {
        for i in 0..e.len() {
            let expected = d * d * w0[i] + d * (1.0 - d) * w1[i] + (1.0 - d) * w2[i];
            assert!(
                (e[i] - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                "{name}[{i}]: {} vs {expected}",
                e[i]
            );
            moved = moved.max((w2[i] - w0[i]).abs());
        }
    }
    assert!(moved > 1e-4, "training did not move the weights ({moved})");
    let saved = checkpoint::load(&averaged, &Device::flex()).unwrap();
    assert_eq!(
        saved.metadata.get("lethe_weights").map(String::as_str),
        Some("ema")
    );
}

#[test]
fn a_class_the_original_never_draws_is_flagged_before_any_rate_is_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (checkpoint, retain, classifier) = common::class_world(tmp.path());
    let cfg = ExperimentConfig {
        header: RunHeader {
            runs_dir: tmp.path().join("runs"),
            ..RunHeader::new(checkpoint)
        },
        data: DataSelection {
            retain: vec![retain],
            forget: vec![],
            forget_label: None,
            forget_class: Some(3),
        },
        method: MethodConfig::Finetune,
        train: UnlearnTrain {
            steps: 1,
            batch_size: 4,
            learning_rate: 1e-4,
            ..UnlearnTrain::default()
        },
        eval: common::class_world_eval(classifier),
    };
    let (result, events) = run(&cfg);
    if let Err(Stop::Failed { error, .. }) = &result {
        panic!("{error}");
    }
    assert!(result.is_ok());
    // No configured guidance: the check tried every candidate on the original, none passed.
    let check = events
        .iter()
        .find_map(|e| match e {
            Event::Guidance { check, .. } => Some(check.clone()),
            _ => None,
        })
        .expect("the guidance check ran");
    assert!(check.contains("no weight reaches 50%"), "{check}");
    for w in ["w=2:", "w=1:", "w=3:", "w=0:"] {
        assert!(check.contains(w), "{check}");
    }
    let warning = events
        .iter()
        .find_map(|e| match e {
            Event::Warning(w) => Some(w.clone()),
            _ => None,
        })
        .expect("a warning");
    assert!(warning.contains("draws class 3 in only 0.0%"), "{warning}");
    assert!(warning.contains("cannot show forgetting"), "{warning}");
    // Every evaluation written carries the caveat in its provenance.
    let metrics = std::fs::read_to_string(run_dir(&events).join("metrics.jsonl")).unwrap();
    let caveats = metrics
        .lines()
        .filter(|l| l.contains("\"caveat\":\"the original model draws class 3"))
        .count();
    assert_eq!(caveats, 2, "original and final evaluation: {metrics}");
}

/// The largest absolute difference between two checkpoints' parameters (same layout).
fn max_weight_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .flat_map(|((name_a, _, va), (name_b, _, vb))| {
            assert_eq!(name_a, name_b);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

/// The logged total loss of every step in a run directory's metrics.jsonl.
fn logged_totals(run: &Path) -> Vec<f32> {
    RunDir::open(run)
        .read_metrics()
        .unwrap()
        .into_iter()
        .filter_map(|line| match line {
            lethe::experiment::MetricsLine::Step { record } => record.report.total(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cancelled_run_resumes_to_the_weights_of_an_uninterrupted_one() {
    // VDU computes its Fisher anchor once, at step 0, and the EMA carries over from step to
    // step: both must be restored, besides the weights and the optimizer's moments.
    let make = |dir: &Path| {
        let mut c = config(
            dir,
            MethodConfig::Vdu(lethe::unlearn::vdu::VduConfig::default()),
            8,
            1e-4,
        );
        c.train.ema_decay = 0.9;
        c
    };
    let whole = tempfile::tempdir().unwrap();
    let (result, events) = run(&make(whole.path()));
    assert!(result.is_ok());
    let uninterrupted = run_dir(&events);

    let cut = tempfile::tempdir().unwrap();
    let engine = Engine::spawn(None);
    engine.send(Command::Start(Box::new(make(cut.path()))));
    let summary = loop {
        match engine.events().recv().unwrap() {
            Event::Step(r) if r.step == 3 => engine.send(Command::Cancel),
            Event::Cancelled(summary) => break summary,
            e if e.is_terminal() => panic!("unexpected end: {e:?}"),
            _ => {}
        }
    };
    let resumed = summary.run_dir.clone();
    let stopped_at = summary.steps_done;
    assert!((3..8).contains(&stopped_at), "{stopped_at}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(resumed.join("resume/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], stopped_at);

    engine.send(Command::Continue {
        run_dir: resumed.clone(),
        backend: None,
    });
    let mut replayed_steps = 0;
    loop {
        match engine.events().recv().unwrap() {
            Event::Step(r) if r.step <= stopped_at => replayed_steps += 1,
            Event::Finished(summary) => {
                assert_eq!(summary.steps_done, 8);
                break;
            }
            e if e.is_terminal() => panic!("unexpected end: {e:?}"),
            _ => {}
        }
    }
    // The steps logged before the cut are replayed for the curves, not taken again.
    assert_eq!(replayed_steps, stopped_at);
    let info = RunDir::open(&resumed).read_info().unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.resumed_at, vec![stopped_at]);
    assert!(
        !resumed.join("resume").exists(),
        "a finished run keeps no resume state"
    );
    let (again, once) = (logged_totals(&resumed), logged_totals(&uninterrupted));
    assert_eq!(again.len(), 8);
    for (a, b) in again.iter().zip(&once) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{again:?} vs {once:?}"
        );
    }
    let diff = max_weight_difference(
        &uninterrupted.join("checkpoints/final"),
        &resumed.join("checkpoints/final"),
    );
    assert!(diff <= 1e-6, "resumed weights differ by {diff}");

    // A finished run is not resumed again.
    engine.send(Command::Continue {
        run_dir: resumed.clone(),
        backend: None,
    });
    loop {
        match engine.events().recv().unwrap() {
            Event::Failed { error, .. } => {
                assert!(error.contains("the run is finished"), "{error}");
                break;
            }
            e if e.is_terminal() => panic!("unexpected end: {e:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_run_that_evaluates_nothing_only_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), MethodConfig::Finetune, 2, 1e-3);
    cfg.eval.at_end = false;
    let (result, events) = run(&cfg);
    assert!(result.is_ok(), "{result:?}");
    // No original's evaluation, no estimate of evaluations there are none of, no grid.
    assert!(!events.iter().any(|e| matches!(
        e,
        Event::Metrics { .. } | Event::Estimate(_) | Event::Samples { .. } | Event::Guidance { .. }
    )));
    let dir = RunDir::open(&run_dir(&events));
    assert!(
        dir.read_metrics()
            .unwrap()
            .iter()
            .all(|l| matches!(l, lethe::experiment::MetricsLine::Step { .. }))
    );
    let info = dir.read_info().unwrap();
    assert_eq!((info.status, info.steps_done), (RunStatus::Finished, 2));
    assert_eq!(info.eval_seconds, 0.0);
    assert!(dir.path.join("checkpoints/final").exists());
}

/// The estimate counts the evaluations the run makes, and run.json keeps it beside the
/// time the evaluations took.
#[test]
fn the_estimate_counts_the_runs_evaluations_and_is_kept_with_their_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), MethodConfig::Finetune, 5, 1e-3);
    cfg.eval.every = 2;
    cfg.eval.reuse_original = false;
    let (result, events) = run(&cfg);
    assert!(result.is_ok(), "{result:?}");
    let estimate = events
        .iter()
        .find_map(|e| match e {
            Event::Estimate(e) => Some(e.clone()),
            _ => None,
        })
        .expect("an estimate before the run");
    // The original, steps 2 and 4, the end.
    assert_eq!(estimate.evaluations, 4);
    assert!(!estimate.original_cached);
    assert_eq!(estimate.sample_steps_per_evaluation, 4 * 4);
    assert!(estimate.sample_step_seconds > 0.0 && estimate.forward_seconds > 0.0);
    let info = RunDir::open(&run_dir(&events)).read_info().unwrap();
    assert_eq!(info.estimate, Some(estimate));
    assert!(info.eval_seconds > 0.0);
}

/// A second run on the same checkpoint with the same evaluation reuses the original's
/// evaluation; computed again (reuse off), it is the same evaluation.
#[test]
fn the_originals_evaluation_is_cached_and_equals_a_fresh_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), MethodConfig::Finetune, 1, 1e-3);
    // A seed no other test evaluates with, so their entries are not this test's.
    cfg.eval.seed = 9_173;
    let baseline = |events: &[Event]| {
        events
            .iter()
            .find_map(|e| match e {
                Event::Metrics {
                    step: 0, baseline, ..
                } => Some(baseline.clone()),
                _ => None,
            })
            .expect("the original's evaluation")
    };
    let reused = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("reused from the cache")))
    };
    let (first, events1) = run(&cfg);
    assert!(first.is_ok(), "{first:?}");
    let (second, events2) = run(&cfg);
    assert!(second.is_ok(), "{second:?}");
    assert!(
        reused(&events2),
        "the second run reuses the first's evaluation"
    );
    let cached = baseline(&events2);
    assert!(
        cached.how.as_ref().unwrap().reused_from.is_some(),
        "its provenance says where it came from"
    );
    cfg.eval.reuse_original = false;
    let (third, events3) = run(&cfg);
    assert!(third.is_ok(), "{third:?}");
    assert!(!reused(&events3));
    let fresh = baseline(&events3);
    let strip = |mut e: lethe::metrics::evaluation::Evaluation| {
        if let Some(how) = e.how.as_mut() {
            how.reused_from = None;
        }
        e
    };
    assert_eq!(strip(cached), fresh);
    assert_eq!(strip(baseline(&events1)), fresh);
    // The grids' left halves are the same samples.
    let originals = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::Samples { original, .. } => Some(original.clone()),
            _ => None,
        })
    };
    assert_eq!(originals(&events2), originals(&events3));
}

/// Sampling left out of the config is fitted to the budget (here one too small for anything:
/// the fewest samples, DPM-Solver++(2M)-20), written into the run's config.toml, and
/// remembered, so the next run of the same experiment evaluates alike.
#[test]
fn sampling_left_out_is_fitted_to_the_budget_written_and_remembered() {
    use lethe::diffusion::sampler::SamplerKind;
    use lethe::experiment::config::MIN_FITTED_SAMPLES;
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), MethodConfig::Finetune, 1, 1e-3);
    cfg.eval.samples = None;
    cfg.eval.sampler = None;
    cfg.eval.sampler_steps = None;
    cfg.eval.budget_seconds = 1e-9;
    // A seed no other test evaluates with, so the remembered fit is this test's.
    cfg.eval.seed = 4_711;
    let fit_line = |events: &[Event]| {
        events
            .iter()
            .find_map(|e| match e {
                Event::Estimate(e) => e.fitted.clone(),
                _ => None,
            })
            .expect("the estimate says how the evaluation was fitted")
    };
    let (first, events1) = run(&cfg);
    assert!(first.is_ok(), "{first:?}");
    assert!(fit_line(&events1).contains("16 samples of DPM++2M-20"));
    let written = ExperimentConfig::from_file(&run_dir(&events1).join("config.toml")).unwrap();
    assert_eq!(written.eval.samples, Some(MIN_FITTED_SAMPLES));
    assert_eq!(written.eval.sampler, Some(SamplerKind::DpmSolver2M));
    assert_eq!(written.eval.sampler_steps, Some(20));
    assert_eq!(written.eval.grid, 4);
    let (second, events2) = run(&cfg);
    assert!(second.is_ok(), "{second:?}");
    assert!(
        fit_line(&events2).contains("remembered"),
        "{}",
        fit_line(&events2)
    );
    let provenance = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::Metrics { evaluation, .. } => Some(evaluation.provenance.clone()),
            _ => None,
        })
    };
    assert!(provenance(&events2).unwrap().contains("N=16, DPM++2M-20"));
}

/// Events from the engine until `done` says so (bounded wait).
fn events_until(engine: &Engine, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = vec![];
    loop {
        let event = engine
            .events()
            .recv_timeout(std::time::Duration::from_secs(300))
            .expect("the engine answers");
        let stop = done(&event);
        seen.push(event);
        if stop {
            return seen;
        }
    }
}

/// A preview shows the original's evaluation, samples and the run's estimate without making
/// a run directory; the run that follows reuses that evaluation. A preview with a run queued
/// behind it is skipped (the run evaluates the original itself).
#[test]
fn a_preview_shows_the_original_without_a_run_and_the_run_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), MethodConfig::Finetune, 1, 1e-3);
    cfg.eval.at_end = true;
    // A seed no other test evaluates with, so the cache entry is this test's.
    cfg.eval.seed = 31_337;
    let engine = Engine::spawn(None);
    engine.send(Command::Preview(Box::new(cfg.clone())));
    let events = events_until(&engine, |e| matches!(e, Event::PreviewEnded(_)));
    assert!(
        matches!(events.last(), Some(Event::PreviewEnded(Ok(())))),
        "{:?}",
        events.last()
    );
    let inner: Vec<&Event> = events
        .iter()
        .filter_map(|e| match e {
            Event::Preview(inner) => Some(&**inner),
            _ => None,
        })
        .collect();
    assert_eq!(
        inner.len() + 1,
        events.len(),
        "every event is the preview's"
    );
    let estimate = inner
        .iter()
        .find_map(|e| match e {
            Event::Estimate(e) => Some(e.clone()),
            _ => None,
        })
        .expect("the run's estimate");
    // The original (not cached yet) and the end.
    assert_eq!(estimate.evaluations, 2);
    let previewed = inner
        .iter()
        .find_map(|e| match e {
            Event::Metrics {
                step: 0, baseline, ..
            } => Some(baseline.clone()),
            _ => None,
        })
        .expect("the original's evaluation");
    assert!(
        inner
            .iter()
            .any(|e| matches!(e, Event::Samples { step: 0, original, .. } if original.len() == 4))
    );
    assert!(
        !cfg.header.runs_dir.exists()
            || std::fs::read_dir(&cfg.header.runs_dir).unwrap().count() == 0,
        "a preview makes no run directory"
    );

    engine.send(Command::Start(Box::new(cfg.clone())));
    let events = events_until(&engine, Event::is_terminal);
    assert!(
        matches!(events.last(), Some(Event::Finished(_))),
        "{:?}",
        events.last()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("reused from the cache") && n.contains("(computed by a workbench preview)"))),
        "the run reuses the preview's evaluation"
    );
    let baseline = events
        .iter()
        .find_map(|e| match e {
            Event::Metrics {
                step: 0, baseline, ..
            } => Some(baseline.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(baseline.forget_copy_rate, previewed.forget_copy_rate);
    assert_eq!(baseline.elbo_retain_bpd, previewed.elbo_retain_bpd);

    // A second preview and a run sent while a preview is being made: that preview is
    // finished; the second, with the run already waiting behind it, is skipped.
    cfg.eval.seed = 31_338;
    engine.send(Command::Preview(Box::new(cfg.clone())));
    let mut events = events_until(&engine, |e| matches!(e, Event::Preview(_)));
    engine.send(Command::Preview(Box::new(cfg.clone())));
    engine.send(Command::Start(Box::new(cfg.clone())));
    events.extend(events_until(&engine, Event::is_terminal));
    assert!(matches!(events.last(), Some(Event::Finished(_))));
    let previews = events
        .iter()
        .filter(|e| matches!(e, Event::PreviewEnded(_)))
        .count();
    assert_eq!(previews, 1, "a preview superseded by a run is not made");
}
