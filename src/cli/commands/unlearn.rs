//! `lethe unlearn`: one unlearning experiment on the engine, headless, with a progress bar.

use std::path::{Path, PathBuf};

use clap::Args;

use lethe::backend::{BackendChoice, BackendRequest};
use lethe::diffusion::precision::Precision;
use lethe::engine::{Command as EngineCommand, Engine, Event};
use lethe::experiment::ExperimentConfig;
use lethe::metrics::evaluation::Evaluation;

use crate::cli::args::{self, Compute};
use crate::cli::progress::{bar, say};

#[derive(Args)]
pub struct UnlearnArgs {
    /// Experiment config: TOML, or (unlearn only) SISS-style YAML with SISS's key names.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the run in RUN_DIR (interrupted, cancelled or failed) from its last saved
    /// state, with its own config.toml; the steps since that save are taken again, exactly.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "steps", "name", "precision"])]
    pub resume: Option<PathBuf>,
    /// Override train.steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Override the run directory name.
    #[arg(long)]
    name: Option<String>,
    /// Override the backend of the config: auto, cpu, wgpu, cuda, or remote:ws://HOST:PORT
    /// (a `lethe serve`; token from LETHE_REMOTE_TOKEN or a prompt).
    #[arg(long, value_name = "BACKEND")]
    backend: Option<BackendRequest>,
    /// Override train.precision: f32, or bf16 mixed precision (f32 master weights).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// CPU threads for the cpu backend (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

impl UnlearnArgs {
    /// A config run as it is (no overrides), on `threads` CPU threads.
    pub fn plain(threads: Option<usize>) -> Self {
        Self {
            config: None,
            resume: None,
            steps: None,
            name: None,
            backend: None,
            precision: None,
            threads,
        }
    }
}

pub fn run(args: &UnlearnArgs) -> Result<(), String> {
    if let Some(run_dir) = &args.resume {
        return resume_experiment(run_dir, args).map(|_| ());
    }
    let path = args
        .config
        .as_ref()
        .ok_or("--config or --resume is required")?;
    let (config, ignored) = ExperimentConfig::from_file_noting(path)?;
    for key in &ignored {
        println!("note: {}: ignored {key}", path.display());
    }
    run_experiment(config, args)
        .map(|_| ())
        .map_err(|e| naming_the_file(path, e, is_experiment_key))
}

fn is_experiment_key(word: &str) -> bool {
    ["train.", "data.", "method.", "eval."]
        .iter()
        .any(|section| word.starts_with(section))
}

/// An error the engine found in a config value (the batch that does not fit in memory, a
/// class no image has) begins with its key; the file is named here.
pub fn naming_the_file(config: &Path, error: String, is_key: fn(&str) -> bool) -> String {
    let first_word = error.split_whitespace().next().unwrap_or_default();
    if is_key(first_word) {
        format!("{}: {error}", config.display())
    } else {
        error
    }
}

/// Continues the run in `run_dir` (`--resume`); returns every evaluation, those logged
/// before the interruption included.
pub fn resume_experiment(
    run_dir: &Path,
    args: &UnlearnArgs,
) -> Result<Vec<(usize, Evaluation)>, String> {
    if !run_dir.join("run.json").is_file() {
        return Err(format!(
            "{}: not a run directory (no run.json)",
            run_dir.display()
        ));
    }
    let info = lethe::experiment::RunDir::open(run_dir).read_status()?;
    println!(
        "resuming {} ({}, {} of {} steps logged; continues from its last saved state)",
        run_dir.display(),
        info.status.label(),
        info.steps_done,
        info.total_steps
    );
    let config = ExperimentConfig::from_file(&run_dir.join("config.toml"))?;
    let mut header = config.header.clone();
    if let Some(backend) = &args.backend {
        header.set_backend(backend);
    }
    connect_configured_remote(&header)?;
    let command = EngineCommand::Continue {
        run_dir: run_dir.to_path_buf(),
        backend: args.backend.clone(),
    };
    drive(&config, command, args)
}

/// Runs one experiment on the engine with a progress bar; returns every evaluation
/// (step 0 = the starting checkpoint).
pub fn run_experiment(
    mut config: ExperimentConfig,
    args: &UnlearnArgs,
) -> Result<Vec<(usize, Evaluation)>, String> {
    if let Some(steps) = args.steps {
        config.train.steps = steps;
    }
    if let Some(name) = &args.name {
        config.header.name = Some(name.clone());
    }
    if let Some(backend) = &args.backend {
        config.header.set_backend(backend);
    }
    config.header.validate()?;
    connect_configured_remote(&config.header)?;
    if let Some(precision) = args.precision {
        precision
            .check_trainable()
            .map_err(|e| format!("--precision: {e}"))?;
        config.train.precision = precision;
    }
    let command = EngineCommand::Start(Box::new(config.clone()));
    drive(&config, command, args)
}

/// A run on a `lethe serve` connects here first, so a token can be asked for at the prompt.
fn connect_configured_remote(header: &lethe::experiment::config::RunHeader) -> Result<(), String> {
    match (&header.remote, header.backend) {
        (Some(url), BackendChoice::Remote) => args::connect_remote(&BackendRequest {
            choice: BackendChoice::Remote,
            remote: Some(url.clone()),
        }),
        _ => Ok(()),
    }
}

/// Sends `command` to a fresh engine and follows the run it starts to its end.
fn drive(
    config: &ExperimentConfig,
    command: EngineCommand,
    args: &UnlearnArgs,
) -> Result<Vec<(usize, Evaluation)>, String> {
    Compute::cpu(args.threads).apply_threads();
    let engine = Engine::spawn(None);
    engine.send(command);
    let pb = bar(config.train.steps as u64, config.method.label());
    let mut evaluations = vec![];
    for event in engine.events().iter() {
        match event {
            Event::Started {
                run_dir,
                method,
                backend,
                device_reason,
                forget_images,
                retain_images,
                ..
            } => say(
                &pb,
                format!(
                    "backend: {backend} — {device_reason}\n{method} on {backend}: {forget_images} forget / {retain_images} retain images → {}",
                    run_dir.display()
                ),
            ),
            Event::Note(text) if pb.is_hidden() => println!("{text}"),
            Event::Note(text) => pb.set_message(text),
            Event::Warning(text) => say(&pb, format!("warning: {text}")),
            Event::Guidance { guidance, check } => {
                say(&pb, format!("guidance        w={guidance} — {check}"))
            }
            Event::Estimate(estimate) => {
                for line in estimate.lines() {
                    say(&pb, line);
                }
                if let Some(warning) = estimate.warning() {
                    say(&pb, format!("warning: {warning}"));
                }
            }
            Event::Step(r) => {
                pb.set_position(r.step as u64);
                pb.set_message(format!(
                    "{} loss {:.4} ‖g‖ {:.3}",
                    config.method.label(),
                    r.report.total().unwrap_or(f32::NAN),
                    r.grad_norm
                ));
            }
            Event::Metrics {
                step,
                evaluation,
                baseline,
            } => {
                say(
                    &pb,
                    format!(
                        "step {step:>5}  {}",
                        eval_line(&evaluation, Some(&baseline))
                    ),
                );
                evaluations.push((step, evaluation));
            }
            Event::Checkpoint { path, .. } => say(&pb, format!("checkpoint {}", path.display())),
            Event::Finished(summary) | Event::Cancelled(summary) => {
                pb.finish_and_clear();
                println!("run directory   {}", summary.run_dir.display());
                if let Some(b) = &summary.baseline {
                    println!("original        {}", eval_line(b, None));
                }
                if let Some(l) = &summary.last {
                    println!("after {:>5} st  {}", summary.steps_done, eval_line(l, None));
                    println!("evaluated as    {}", l.provenance);
                    if let Some(caveat) = l.how.as_ref().and_then(|h| h.caveat.as_ref()) {
                        println!("UNINFORMATIVE   {caveat}");
                    }
                    if l.fid.is_some() {
                        println!("                {}", l.label("FID"));
                    }
                    if l.elbo_forget_bpd.is_some() {
                        println!("                {}", l.label("ELBO"));
                    }
                }
                if let Some(s) = summary.seconds_per_step {
                    println!(
                        "time            {:.2} s/step ({:.0} s of training)",
                        s, summary.seconds
                    );
                }
                if let Some(memory) = summary.peak_memory.describe() {
                    println!("peak memory     {memory}");
                }
                if let Some(c) = &summary.last_checkpoint {
                    println!("checkpoint      {}", c.display());
                }
                return Ok(evaluations);
            }
            Event::Failed { error, run_dir } => {
                pb.finish_and_clear();
                return Err(match run_dir {
                    Some(d) => format!("{error} (run directory {})", d.display()),
                    None => error,
                });
            }
            // The CLI sends no previews.
            Event::Samples { .. }
            | Event::Paused
            | Event::Resumed
            | Event::Preview(_)
            | Event::PreviewEnded(_) => {}
        }
    }
    Err("the engine stopped without finishing the run".into())
}

/// One evaluation as a line: copy rate, forgotten-class rate, confident kept samples.
fn eval_line(e: &Evaluation, baseline: Option<&Evaluation>) -> String {
    let pct = |v: f64| format!("{:5.1}%", 100.0 * v);
    let mut s = format!("forget copies {}", pct(e.forget_copy_rate));
    if let Some(b) = baseline {
        s += &format!(" (orig {})", pct(b.forget_copy_rate).trim());
    }
    if let Some(r) = e.forgotten_class_rate {
        s += &format!("  forgotten class {}", pct(r));
    }
    if let Some(c) = e.confident_kept_rate {
        s += &format!("  confident kept {}", pct(c));
    }
    s += &format!("  nearest-forget L2 {:.1}", e.nearest_forget_distance);
    if let Some(fid) = e.fid {
        s += &format!("  FID {fid:.1}");
    }
    if let (Some(f), Some(r)) = (e.elbo_forget_bpd, e.elbo_retain_bpd) {
        s += &format!("  ELBO forget {f:.3} / retain {r:.3} bits/dim");
    }
    if let Some(p) = e.pul {
        s += &format!("  PUL {p:.0}%");
    }
    s
}
