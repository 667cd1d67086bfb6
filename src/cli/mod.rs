//! `lethe` command line: the same engine as the workbench, headless. One file per
//! subcommand under `commands/`, each with its arguments and a `run`; argument groups that
//! several share are in `args`, progress bars in `progress`.

mod args;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{
    attack, bench, data, demo_check, doctor, eval, export_samples, fid, inspect, pretrain,
    reproduce, runs, sample, serve, sweep, train_classifier, unlearn,
};

#[derive(Parser)]
#[command(
    name = "lethe",
    version,
    about = "Machine unlearning for diffusion models: train, sample, unlearn, evaluate."
)]
struct Cli {
    /// Without a subcommand, `lethe` opens the workbench with the bundled demo loaded.
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    workbench: WorkbenchArgs,
}

/// Options of the workbench (`lethe` without a subcommand).
#[derive(clap::Args)]
struct WorkbenchArgs {
    /// Open the workbench with this experiment (an unlearning TOML) loaded instead of the
    /// last session's settings or the demo.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Render the workbench offscreen to this PNG (the 1440×900 window at 2 pixels per
    /// point, no cursor; wgpu, no display needed) and exit.
    #[arg(long, value_name = "PATH")]
    screenshot: Option<std::path::PathBuf>,
    /// With --screenshot: first run the loaded experiment until this many steps (and the
    /// evaluation after them, if one is due) are done.
    #[arg(long, value_name = "N", requires = "screenshot")]
    after_steps: Option<usize>,
    /// With --screenshot: the window's size in points, WIDTHxHEIGHT (taller shows more of
    /// the live view's plots without scrolling).
    #[arg(long, value_name = "WxH", default_value = "1440x900", value_parser = window_size, requires = "screenshot")]
    window_size: [f32; 2],
    /// Start the loaded experiment as soon as the window has its sets (demos; soak tests).
    #[arg(long, conflicts_with = "screenshot")]
    start: bool,
    /// Append the window's frame-time statistics and resident memory to this file every 5 s,
    /// as JSON lines (tools/soak_gui.sh).
    #[arg(long, value_name = "FILE", conflicts_with = "screenshot")]
    frame_log: Option<std::path::PathBuf>,
}

/// `1440x900` as points.
fn window_size(text: &str) -> Result<[f32; 2], String> {
    let parse = |v: &str| {
        v.trim()
            .parse::<f32>()
            .ok()
            .filter(|v| (200.0..=8000.0).contains(v))
    };
    match text.split_once(['x', 'X', '×']) {
        Some((w, h)) => match (parse(w), parse(h)) {
            (Some(w), Some(h)) => Ok([w, h]),
            _ => Err(format!("{text}: width and height must be 200–8000 points")),
        },
        None => Err(format!("{text}: expected WIDTHxHEIGHT, e.g. 1440x900")),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a diffusion model from scratch, or continue another pretrain run with a new recipe
    /// (`continue_from`); resumes when OUT_DIR holds a run of the same config.
    Pretrain(pretrain::PretrainArgs),
    /// Draw samples from a checkpoint into a grid PNG or one PNG per sample.
    Sample(sample::SampleArgs),
    /// Show a checkpoint's config, parameter count and provenance metadata.
    Inspect(inspect::InspectArgs),
    /// Validate image files/folders/IDX/CIFAR batches as the app would load them.
    Data(data::DataArgs),
    /// Train the bundled 11-class MNIST+T-shirt classifier (`lethe-mnist11`).
    TrainClassifier(train_classifier::TrainClassifierArgs),
    /// Time a training step and a sampling forward of the demo UNet (median of several runs);
    /// `bench ops`, `bench eval` and `bench gui` time the parts of a step, the evaluation and
    /// the workbench.
    Bench(bench::BenchArgs),
    /// Measure the demo model's acceptance figures: confident digits and memorised T-shirts
    /// among unconditional samples.
    DemoCheck(demo_check::DemoCheckArgs),
    /// List the GPU adapters and check a device against the CPU on a checkpoint: forward,
    /// SISS training step, Adam update and DDIM step, every gradient compared, with times.
    Doctor(doctor::DoctorArgs),
    /// Run an unlearning experiment headless (see examples/unlearn-*.toml); writes a run
    /// directory with config.toml, run.json, metrics.jsonl, samples/ and checkpoints/.
    Unlearn(unlearn::UnlearnArgs),
    /// DiMRA relearning attack: fine-tune an unlearned checkpoint on auxiliary data without
    /// the forgotten content and report whether it comes back (see examples/attack-*.toml).
    Attack(unlearn::UnlearnArgs),
    /// List the runs in a runs directory: method, knobs, status, steps, time and the last
    /// evaluation, read from each run's records (the GUI's runs table reads the same).
    Runs(runs::RunsArgs),
    /// Fréchet distance (FID's formula) between two sets: each an image folder/file (features
    /// from the classifier's penultimate layer), an N×D `.npy` of features, or an `.npz` with
    /// `mu` and `sigma` as pytorch-fid writes them — so Lethe can be checked against other
    /// FID tools on the same features.
    Fid(fid::FidArgs),
    /// Evaluate a checkpoint with the full metric suite (forgetting, FID, precision/recall,
    /// IS, ELBO, PUL and weight distance with --original), each value with its provenance;
    /// prints a table and writes JSON with --json. Without data arguments: the demo's sets.
    Eval(eval::EvalArgs),
    /// Many trials of one experiment from a sweep file (a grid or list over any config
    /// keys, or a SISS-style Hydra multirun YAML): run here N at a time, or as a Slurm job
    /// array; `status` and `collect` tabulate them (see examples/sweep-siss-lambda.toml).
    Sweep(sweep::SweepArgs),
    /// Run the experiments behind each seed paper's claim on the bundled demo (SISS,
    /// EraseDiff, VDU, DiMRA vs DiMUM; several seeds, DDIM and DDPM) and write a report with a
    /// verdict per claim: OUT/report.html, report.md, verdicts.json. Resumable.
    Reproduce(reproduce::ReproduceArgs),
    /// Serve this machine's device (GPU or CPU) to lethe clients elsewhere through Burn's
    /// remote backend; clients run with --backend remote:ws://HOST:PORT. Without --token,
    /// loopback only.
    Serve(serve::ServeArgs),
    /// Write samples as PNGs plus their classifier features (.npy) and mu/sigma (.npz), so
    /// FIDs can be recomputed with pytorch-fid or clean-fid.
    ExportSamples(export_samples::ExportArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        None => open_workbench(&cli.workbench),
        Some(Command::Pretrain(args)) => pretrain::run(args),
        Some(Command::Sample(args)) => sample::run(args),
        Some(Command::Inspect(args)) => inspect::run(args),
        Some(Command::Data(args)) => data::run(args),
        Some(Command::TrainClassifier(args)) => train_classifier::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::DemoCheck(args)) => demo_check::run(args),
        Some(Command::Doctor(args)) => doctor::run(args),
        Some(Command::Unlearn(args)) => unlearn::run(args),
        Some(Command::Attack(args)) => attack::run(args),
        Some(Command::Runs(args)) => runs::run(args),
        Some(Command::Fid(args)) => fid::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::ExportSamples(args)) => export_samples::run(args),
        Some(Command::Sweep(args)) => sweep::run(args),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Reproduce(args)) => reproduce::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "gui")]
fn open_workbench(args: &WorkbenchArgs) -> Result<(), String> {
    use lethe::app::Workbench;
    use lethe::app::state::Settings;
    let workbench = match &args.config {
        Some(path) => {
            let config = lethe::experiment::ExperimentConfig::from_file(path)?;
            Some(Workbench::with_settings(Settings {
                config,
                sweep: Default::default(),
                attack: Default::default(),
            }))
        }
        None => None,
    };
    match &args.screenshot {
        Some(path) => {
            let workbench = workbench.unwrap_or_else(Workbench::demo);
            lethe::app::screenshot::screenshot(
                workbench,
                path,
                args.window_size,
                args.after_steps,
                &|note| eprintln!("{note}"),
            )?;
            println!("wrote {}", path.display());
            Ok(())
        }
        None => lethe::app::launch_with(
            workbench,
            lethe::app::LaunchOptions {
                start: args.start,
                frame_log: args.frame_log.clone(),
            },
        ),
    }
}

#[cfg(not(feature = "gui"))]
fn open_workbench(_: &WorkbenchArgs) -> Result<(), String> {
    Err("this build has no workbench (built without the `gui` feature); run `lethe --help` for the headless commands".into())
}
