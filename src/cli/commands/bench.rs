//! `lethe bench`: ms per training step and per sampling forward of the demo UNet (median of
//! several runs), and, as subcommands, the per-op profile (`ops`), the evaluation's speed
//! (`eval`) and the workbench's frame time during a run (`gui`). Compare with
//! `bench/pytorch_reference.py`, which times the same model in PyTorch.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use lethe::backend::BackendChoice;
use lethe::bench::BenchModel;
use lethe::data;
use lethe::diffusion::checkpoint;
use lethe::diffusion::precision::Precision;
use lethe::diffusion::unet::UNetConfig;

use crate::cli::args::{Compute, PrecisionArg, PresetArg};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Without a subcommand: time a training step and a sampling forward.
    #[command(subcommand)]
    what: Option<BenchCommand>,
    #[command(flatten)]
    steps: StepArgs,
    #[command(flatten)]
    compute: Compute,
}

/// The training-step and sampling-forward timings (`lethe bench` without a subcommand).
#[derive(Args)]
struct StepArgs {
    /// Batch sizes for the training step.
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    train_batch: Vec<usize>,
    /// Batch sizes for the sampling forward.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    sample_batch: Vec<usize>,
    /// Timed runs per row (after 2 warm-up runs).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    precision: PrecisionArg,
}

/// Which UNet a benchmark times.
#[derive(Args)]
struct ModelArgs {
    /// A built-in architecture with random weights: the demo's (1M parameters, 28×28 grey)
    /// or google/ddpm-cifar10-32's (35.7M parameters, 32×32 RGB).
    #[arg(long, value_enum, default_value_t = BuiltIn::Demo, conflicts_with = "checkpoint")]
    model: BuiltIn,
    /// Any diffusers UNet2DModel checkpoint directory (`unet/config.json` +
    /// `unet/diffusion_pytorch_model.safetensors`), with its weights, instead of a built-in.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Image side length fed to the UNet (it is fully convolutional; the model's own by
    /// default; 32 and 64 show how time grows with resolution).
    #[arg(long)]
    size: Option<usize>,
}

impl ModelArgs {
    fn bench_model(&self) -> Result<BenchModel, String> {
        let model = match &self.checkpoint {
            Some(dir) => BenchModel::from_checkpoint(dir)?,
            None => self.model.bench_model(),
        };
        match self.size {
            Some(size) => model.with_size(size),
            None => Ok(model),
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BuiltIn {
    Demo,
    Cifar10,
}

impl BuiltIn {
    fn bench_model(self) -> BenchModel {
        match self {
            Self::Demo => BenchModel::random("demo", UNetConfig::demo_mnist()),
            Self::Cifar10 => {
                BenchModel::random("google/ddpm-cifar10-32-sized", UNetConfig::ddpm_cifar10())
            }
        }
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Profile a training step: time each convolution, GroupNorm(+SiLU) and attention block
    /// of the UNet alone (forward, input gradient, weight gradient) and print where the
    /// step's time goes, and the share of the CPU's fp32 peak the step reaches.
    Ops {
        /// Training batch size.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Timed runs per op (after 2 warm-up runs).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        compute: Compute,
    },
    /// Time the evaluation: FID from 10k cached feature vectors, and one evaluation of the
    /// demo model with each preset named (fast, thorough).
    Eval {
        /// Presets to time.
        #[arg(value_enum, value_delimiter = ',', default_value = "fast")]
        presets: Vec<PresetArg>,
        /// Timed runs per row (after the warm-up).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        #[command(flatten)]
        compute: Compute,
    },
    /// Time the workbench's frames while a short demo SISS run (this many steps, evaluated
    /// every 10) streams events, or while `--drop` loads; prints p50/p99/max frame time.
    Gui {
        #[arg(required_unless_present = "drop")]
        steps: Option<usize>,
        /// Instead of a run: drop this folder (or file) on the retain set and time the frames
        /// until it has loaded (e.g. 60,000 PNGs written by tools/idx_to_pngs.py).
        #[arg(long, value_name = "PATH", conflicts_with = "steps")]
        drop: Option<std::path::PathBuf>,
        #[command(flatten)]
        compute: Compute,
    },
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    match &args.what {
        None => run_steps(&args.steps, &args.compute),
        Some(BenchCommand::Ops {
            batch,
            runs,
            model,
            compute,
        }) => run_ops(*batch, *runs, &model.bench_model()?, compute),
        Some(BenchCommand::Eval {
            presets,
            runs,
            compute,
        }) => run_eval(presets, *runs, compute),
        Some(BenchCommand::Gui {
            steps,
            drop: Some(path),
            ..
        }) if steps.is_none() => run_gui_load(path),
        Some(BenchCommand::Gui { steps, compute, .. }) => run_gui(steps.unwrap_or(0), compute),
    }
}

#[cfg(feature = "gui")]
fn run_gui(steps: usize, compute: &Compute) -> Result<(), String> {
    compute.apply_threads();
    let mut config = lethe::app::state::demo_config();
    config.header.set_backend(&compute.backend);
    config.train.steps = steps;
    config.eval.every = 10;
    let runs = tempfile::tempdir().map_err(|e| e.to_string())?;
    config.header.runs_dir = runs.path().to_path_buf();
    println!(
        "workbench frame time while the demo SISS run streams events ({steps} steps, evaluated every 10, backend {})",
        config.header.backend
    );
    let r = lethe::app::frame_bench::measure(config, std::time::Duration::from_secs(3600))?;
    println!(
        "{} frames at a 60 Hz pace over {:.0} s, {} events applied; run {}",
        r.frames, r.wall_seconds, r.events, r.outcome
    );
    println!(
        "frame time (drain events + layout + tessellate, CPU): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} frame(s) over 16 ms",
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.slow_frames.len()
    );
    Ok(())
}

#[cfg(feature = "gui")]
fn run_gui_load(path: &std::path::Path) -> Result<(), String> {
    println!(
        "workbench frame time while {} loads into the retain set",
        path.display()
    );
    let paths = [path.to_path_buf()];
    let r = lethe::app::frame_bench::measure_load(&paths, std::time::Duration::from_secs(3600))?;
    println!(
        "{} frames at a 60 Hz pace over {:.1} s; {}",
        r.frames, r.wall_seconds, r.outcome
    );
    println!(
        "frame time (poll the load + layout + tessellate, CPU): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} frame(s) over 16 ms {:?}",
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.slow_frames.len(),
        r.slow_frames
    );
    Ok(())
}

#[cfg(not(feature = "gui"))]
fn run_gui(_steps: usize, _compute: &Compute) -> Result<(), String> {
    Err("built without the `gui` feature".into())
}

#[cfg(not(feature = "gui"))]
fn run_gui_load(_path: &std::path::Path) -> Result<(), String> {
    Err("built without the `gui` feature".into())
}

fn run_steps(args: &StepArgs, compute: &Compute) -> Result<(), String> {
    let StepArgs {
        train_batch: train_batches,
        sample_batch: sample_batches,
        runs,
        model,
        precision: PrecisionArg { precision },
    } = args;
    let (runs, precision) = (*runs, *precision);
    compute.apply_threads();
    let model = model.bench_model()?;
    let config = &model.config;
    let selection = compute.select_without_model()?;
    let device = selection.device;
    let unet = model.build(&device)?;
    let params: usize = checkpoint::parameter_shapes(&unet)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!(
        "{} UNet ({} weights): {params} parameters, {}×{}×{} input, blocks {:?}; backend {}; {} CPU thread(s); precision {}",
        model.name,
        if model.checkpoint.is_some() {
            "its"
        } else {
            "random"
        },
        config.in_channels,
        config.sample_size,
        config.sample_size,
        config.block_out_channels,
        selection.backend,
        rayon::current_num_threads(),
        precision.name()
    );
    let mut rows = vec![];
    let forward_flops = |batch| lethe::bench::ops::unet_forward_flops(config, batch, &device);
    let train_batches: &[usize] = match precision.check_trainable() {
        Ok(()) => train_batches,
        Err(why) => {
            println!("training step not timed: {why}");
            &[]
        }
    };
    for &b in train_batches {
        let row = lethe::bench::training_step(&model, precision, b, 2, runs, &device)?;
        // The forward's products, and as many again for each of the two gradients.
        rows.push((row, 3.0 * forward_flops(b)?));
    }
    for &b in sample_batches {
        let row = lethe::bench::sampling_forward(&model, precision, b, 2, runs, &device)?;
        rows.push((row, forward_flops(b)?));
    }
    print_step_rows(&rows, selection.backend == BackendChoice::Cpu);
    Ok(())
}

/// The timings with the arithmetic rate each reaches (convolution and attention products,
/// `bench::ops::forward_flops`) and, on the CPU, its share of the fp32 peak.
fn print_step_rows(rows: &[(lethe::bench::BenchRow, f64)], on_cpu: bool) {
    let peak = lethe::bench::ops::fp32_peak_per_thread()
        .filter(|_| on_cpu)
        .map(|(per_thread, how)| (per_thread * rayon::current_num_threads() as f64, how));
    println!("| what | batch/N | median ms | min ms | runs | GFLOP | GFLOP/s | of fp32 peak |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (r, flops) in rows {
        let rate = flops / (r.median_ms * 1e6);
        let share = peak.as_ref().map_or("—".to_string(), |(p, _)| {
            format!("{:.0}%", 100.0 * rate / p)
        });
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {:.3} | {rate:.1} | {share} |",
            r.what,
            r.batch,
            r.median_ms,
            r.min_ms,
            r.runs,
            flops / 1e9
        );
    }
    if let Some((p, how)) = peak {
        println!(
            "fp32 peak {p:.0} GFLOP/s = {} thread(s) × {how}; GFLOP: {DIRECT_COUNT}",
            rayon::current_num_threads()
        );
    }
}

/// How the GFLOP figures count convolutions, said next to every rate: the CPU backend computes
/// 3×3 stride-1 convolutions by Winograd F(4×4, 3×3), which needs fewer operations than it is
/// credited with, so the rate is an effective one and can pass the peak.
const DIRECT_COUNT: &str = "convolutions counted as direct convolutions, although the CPU backend's Winograd path does 4× fewer multiplications for 3×3 stride-1 ones with ≥ 32 channels in and out (an effective rate)";

/// `lethe bench ops`: the per-op profile of a training step (see `bench::ops`).
fn run_ops(batch: usize, runs: usize, model: &BenchModel, compute: &Compute) -> Result<(), String> {
    compute.apply_threads();
    let selection = compute.select_without_model()?;
    let device = selection.device;
    let config = &model.config;
    println!(
        "per-op profile of the {} UNet's training step, batch {batch}, {}×{}×{} input; backend {}; {} CPU thread(s); median of {runs} runs per op",
        model.name,
        config.in_channels,
        config.sample_size,
        config.sample_size,
        selection.backend,
        rayon::current_num_threads()
    );
    let step =
        lethe::bench::training_step(model, Precision::F32, batch, 2, runs, &device)?.median_ms;
    let timings = lethe::bench::ops::time_layer_calls(config, batch, runs, &device)?;
    println!(
        "| op | count | forward ms | input grad ms | weight grad ms | total ms (count × all) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for t in &timings {
        let dw = if t.weight_grad_ms.is_finite() {
            t.weight_grad_ms
        } else {
            0.0
        };
        let weight_grad = if t.weight_grad_ms.is_finite() {
            format!("{:.2}", t.weight_grad_ms)
        } else {
            "(in input grad)".into()
        };
        println!(
            "| {} | {} | {:.2} | {:.2} | {} | {:.1} |",
            t.label(),
            t.count,
            t.forward_ms,
            t.input_grad_ms,
            weight_grad,
            t.count as f64 * (t.forward_ms + t.input_grad_ms + dw)
        );
    }
    let totals = lethe::bench::ops::category_totals(&timings);
    let accounted: f64 = totals.values().sum();
    println!();
    println!("| part of the training step (fwd+bwd+Adam, {step:.0} ms) | ms | share |");
    println!("|---|---:|---:|");
    for (what, ms) in &totals {
        println!("| {what} | {ms:.1} | {:.0}% |", 100.0 * ms / step);
    }
    println!(
        "| rest: element-wise, concat, upsampling, time embedding, loss, Adam, autodiff | {:.1} | {:.0}% |",
        step - accounted,
        100.0 * (step - accounted) / step
    );
    print_peak_share(&timings, step, selection.backend == BackendChoice::Cpu);
    Ok(())
}

/// The step's arithmetic rate and, on the CPU, its share of the fp32 peak.
fn print_peak_share(timings: &[lethe::bench::ops::OpTiming], step_ms: f64, on_cpu: bool) {
    let flops = lethe::bench::ops::training_step_flops(timings);
    let rate = flops / (step_ms * 1e6);
    println!();
    print!(
        "{:.2} GFLOP per step (convolutions and attention products: forward ×3 for the two gradients; {DIRECT_COUNT}) → {rate:.1} GFLOP/s",
        flops / 1e9
    );
    match lethe::bench::ops::fp32_peak_per_thread().filter(|_| on_cpu) {
        Some((per_thread, how)) => {
            let threads = rayon::current_num_threads() as f64;
            println!(
                ", {:.0}% of the fp32 peak ({:.0} GFLOP/s = {threads} thread(s) × {how})",
                100.0 * rate / (per_thread * threads),
                per_thread * threads
            );
        }
        None => println!(),
    }
}

fn print_bench_rows(rows: Vec<lethe::bench::BenchRow>) {
    println!("| what | batch/N | median ms | min ms | runs |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} |",
            r.what, r.batch, r.median_ms, r.min_ms, r.runs
        );
    }
}

/// `lethe bench eval`: the evaluation's speed figures (issue #4's targets: FID from 10k
/// cached features ≤ 1 s; the fast preset ≤ 20 s on 2 cores).
fn run_eval(presets: &[PresetArg], runs: usize, compute: &Compute) -> Result<(), String> {
    use lethe::metrics::feature_files::{FeatureRows, write_npy_features};
    let selection = compute.select_without_model()?;
    let device = selection.device;
    println!(
        "evaluation benchmarks on the demo model; backend {}; {} CPU thread(s)",
        selection.backend,
        rayon::current_num_threads()
    );
    let classifier = lethe::metrics::classifier::LoadedClassifier::load(
        &data::demo::asset(data::demo::DEMO_CLASSIFIER),
        &device,
    )
    .map_err(|e| e.to_string())?;
    let mnist = data::demo::mnist().map_err(|e| e.to_string())?;
    let images: Vec<Vec<f32>> = (0..mnist.len()).map(|i| mnist.unit_image(i)).collect();
    let k = &classifier.config;
    let features = classifier.features(&images, [k.channels, k.size, k.size], &device);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cached = dir.path().join("reference.npy");
    let all = FeatureRows {
        values: features,
        dim: k.feature_dim,
    };
    write_npy_features(&cached, &all)?;
    let samples = FeatureRows {
        values: all.values[..512 * k.feature_dim].to_vec(),
        dim: k.feature_dim,
    };
    let mut rows = vec![lethe::bench::fid_from_cached_features(
        &cached, &samples, 2, runs,
    )?];
    for &preset in presets {
        rows.extend(lethe::bench::preset_evaluation(
            preset.into(),
            1,
            runs,
            &device,
        )?);
    }
    print_bench_rows(rows);
    Ok(())
}
