//! `lethe` command line: the same engine as the workbench, headless.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use lethe::backend::{self, BackendChoice};
use lethe::data::{self, ImageSpec};
use lethe::diffusion::checkpoint;
use lethe::diffusion::precision::Precision;
use lethe::diffusion::sampler::{SampleJob, SamplerKind, SamplerSpec};
use lethe::images;
use lethe::pretrain::{self, PretrainConfig};

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
}

/// Options every compute command takes.
#[derive(Args, Clone)]
pub(crate) struct Compute {
    /// Where tensors run: cpu (burn-flex, always available), wgpu (Vulkan; build with
    /// --features wgpu) or cuda (build with --features cuda).
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub(crate) backend: BackendChoice,
    /// CPU threads for the cpu backend (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

impl Compute {
    pub(crate) fn apply_threads(&self) {
        if let Some(n) = self.threads {
            // Ignored if the pool already exists; it does not at start-up.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
    }
}

/// The UNet's compute precision, for the commands that run it.
#[derive(Args, Clone, Copy)]
pub(crate) struct PrecisionArg {
    /// UNet compute precision: f32, or mixed precision bf16/f16 — convolutions, linears and
    /// matmuls in the low dtype from the f32 weights; GroupNorm statistics, softmax, timestep
    /// sinusoids and the sampler's arithmetic in f32. Faster only where the hardware runs
    /// the low dtype natively (GPUs, AMX/AVX-512-BF16 CPUs); labels say which was used.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub(crate) precision: Precision,
}

impl PrecisionArg {
    /// Loads the checkpoint at `path` with its UNet computing in this precision.
    pub(crate) fn load_checkpoint(
        self,
        path: &Path,
        device: &burn::tensor::Device,
    ) -> Result<checkpoint::Checkpoint, String> {
        let mut ckpt = checkpoint::load(path, device).map_err(|e| e.to_string())?;
        ckpt.unet = ckpt.unet.with_precision(self.precision);
        Ok(ckpt)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a diffusion model from scratch, or continue another pretrain run with a new recipe
    /// (`continue_from`); resumes when OUT_DIR holds a run of the same config.
    Pretrain {
        /// TOML config (see examples/pretrain-demo.toml).
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many steps in this invocation (the run stays resumable).
        #[arg(long)]
        max_steps_now: Option<usize>,
        #[command(flatten)]
        compute: Compute,
    },
    /// Draw samples from a checkpoint into a grid PNG or one PNG per sample.
    Sample(SampleArgs),
    /// Show a checkpoint's config, parameter count and provenance metadata.
    Inspect {
        /// Checkpoint directory (diffusers layout: unet/, scheduler/).
        checkpoint: PathBuf,
    },
    /// Validate image files/folders/IDX/CIFAR batches as the app would load them.
    Data(DataArgs),
    /// Train the bundled 11-class MNIST+T-shirt classifier (`lethe-mnist11`).
    TrainClassifier {
        /// Output directory (config.json + model.safetensors).
        #[arg(long, default_value = "assets/classifier")]
        out: PathBuf,
        /// Passes over the training images (every 10th image is held out).
        #[arg(long, default_value_t = 15)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        compute: Compute,
    },
    /// Time a training step and a sampling forward of the demo UNet (median of several runs).
    Bench {
        /// Batch sizes for the training step.
        #[arg(long, value_delimiter = ',', default_value = "32,64")]
        train_batch: Vec<usize>,
        /// Batch sizes for the sampling forward.
        #[arg(long, value_delimiter = ',', default_value = "64")]
        sample_batch: Vec<usize>,
        /// Timed runs per row (after 2 warm-up runs).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Image side length fed to the demo UNet (it is fully convolutional; 28 is the
        /// demo's, 32 and 64 show how time grows with resolution). Must divide by 4.
        #[arg(long, default_value_t = 28)]
        size: usize,
        /// Time the evaluation instead: FID from 10k cached feature vectors, and one
        /// evaluation of the demo model with each preset named here (fast, thorough).
        #[arg(long, value_delimiter = ',', num_args = 0.., default_missing_value = "fast")]
        eval: Option<Vec<String>>,
        /// Time the workbench's frames instead, while a short demo SISS run (this many
        /// steps, evaluated every 10) streams events; prints p50/p99/max frame time.
        #[arg(long)]
        gui: Option<usize>,
        /// Profile instead: time each convolution and GroupNorm+SiLU of the demo UNet alone
        /// (forward, input gradient, weight gradient) at the first training batch size, and
        /// print where a training step's time goes.
        #[arg(long)]
        ops: bool,
        #[command(flatten)]
        precision: PrecisionArg,
        #[command(flatten)]
        compute: Compute,
    },
    /// Measure the demo model's acceptance figures: confident digits and memorised T-shirts
    /// among unconditional samples.
    DemoCheck(DemoCheckArgs),
    /// Run an unlearning experiment headless (see examples/unlearn-*.toml); writes a run
    /// directory with config.toml, run.json, metrics.jsonl, samples/ and checkpoints/.
    Unlearn(UnlearnArgs),
    /// DiMRA relearning attack: fine-tune an unlearned checkpoint on auxiliary data without
    /// the forgotten content and report whether it comes back (see examples/attack-*.toml).
    Attack(UnlearnArgs),
    /// Fréchet distance (FID's formula) between two sets: each an image folder/file (features
    /// from the classifier's penultimate layer), an N×D `.npy` of features, or an `.npz` with
    /// `mu` and `sigma` as pytorch-fid writes them — so Lethe can be checked against other
    /// FID tools on the same features.
    Fid(FidArgs),
    /// Evaluate a checkpoint with the full metric suite (forgetting, FID, precision/recall,
    /// IS, ELBO, PUL and weight distance with --original), each value with its provenance;
    /// prints a table and writes JSON with --json. Without data arguments: the demo's sets.
    Eval(crate::eval_cmd::EvalArgs),
    /// Write samples as PNGs plus their classifier features (.npy) and mu/sigma (.npz), so
    /// FIDs can be recomputed with pytorch-fid or clean-fid.
    ExportSamples(crate::eval_cmd::ExportArgs),
}

#[derive(Args)]
struct FidArgs {
    /// First set: images, a `.npy` of features or a `.npz` of statistics.
    a: PathBuf,
    /// Second set, in any of the same forms.
    b: PathBuf,
    /// Feature network for image inputs.
    #[arg(long, default_value = "assets/classifier")]
    classifier: PathBuf,
    /// Also write the value and its provenance as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    compute: Compute,
}

#[derive(Args)]
struct UnlearnArgs {
    /// Experiment config: TOML, or (unlearn only) SISS-style YAML with SISS's key names.
    #[arg(long)]
    config: PathBuf,
    /// Override train.steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Override the run directory name.
    #[arg(long)]
    name: Option<String>,
    /// Override the backend of the config (cpu, wgpu, cuda).
    #[arg(long, value_enum)]
    backend: Option<BackendChoice>,
    /// Override train.precision: f32, or bf16 mixed precision (f32 master weights).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// CPU threads for the cpu backend (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct DemoCheckArgs {
    #[arg(long, default_value = "assets/demo-model")]
    checkpoint: PathBuf,
    #[arg(long, default_value = "assets/classifier")]
    classifier: PathBuf,
    /// The memorised image.
    #[arg(long, default_value = "assets/data/tshirt.png")]
    target: PathBuf,
    #[arg(long, default_value_t = 512)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Sampler (the acceptance figures use DDIM).
    #[arg(long, value_enum, default_value = "ddim")]
    sampler: SamplerKind,
    /// Diagnostic: sample class K instead of unconditionally (not the acceptance figure).
    #[arg(long)]
    class: Option<usize>,
    /// Confidence a digit classification must reach.
    #[arg(long, default_value_t = lethe::metrics::classifier::DIGIT_CONFIDENCE)]
    confidence: f32,
    /// Also write the first 64 samples as a grid PNG.
    #[arg(long)]
    grid: Option<PathBuf>,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[command(flatten)]
    precision: PrecisionArg,
    #[command(flatten)]
    compute: Compute,
}

#[derive(Args)]
struct SampleArgs {
    /// Checkpoint directory (diffusers layout).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Seed: the same seed gives the same starting noise and noise sequence, so two
    /// checkpoints sampled with one seed compare like with like.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Condition on this class (class-conditional models); omit for unconditional samples.
    #[arg(long)]
    class: Option<usize>,
    /// Classifier-free guidance weight w: eps = (1+w)·eps(class) − w·eps(null).
    #[arg(long, default_value_t = 0.0)]
    guidance: f32,
    /// ddpm (ancestral) or ddim.
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    sampler: SamplerKind,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM eta (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f32,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Write a grid PNG here.
    #[arg(long, conflicts_with = "out_dir", required_unless_present = "out_dir")]
    out: Option<PathBuf>,
    /// Write one PNG per sample into this directory.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    precision: PrecisionArg,
    #[command(flatten)]
    compute: Compute,
}

#[derive(Args)]
struct DataArgs {
    /// Image files, folders (flat or one subfolder per class), MNIST IDX files (raw or
    /// .gz; the labels file beside is found by name), CIFAR-10 .bin batches.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Convert to this checkpoint's input size and channels (default: 28×28 gray, the demo).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Show at most this many rejected files.
    #[arg(long, default_value_t = 50)]
    max_rejected: usize,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return report(open_workbench());
    };
    let result = match command {
        Command::Pretrain {
            config,
            max_steps_now,
            compute,
        } => run_pretrain(&config, max_steps_now, &compute),
        Command::Sample(args) => run_sample(&args),
        Command::Inspect { checkpoint } => run_inspect(&checkpoint),
        Command::Data(args) => run_data(&args),
        Command::TrainClassifier {
            out,
            epochs,
            seed,
            compute,
        } => run_train_classifier(&out, epochs, seed, &compute),
        Command::DemoCheck(args) => run_demo_check(&args),
        Command::Unlearn(args) => run_unlearn(&args),
        Command::Attack(args) => run_attack(&args),
        Command::Fid(args) => run_fid(&args),
        Command::Eval(args) => crate::eval_cmd::run_eval(&args),
        Command::ExportSamples(args) => crate::eval_cmd::run_export_samples(&args),
        Command::Bench {
            precision: PrecisionArg { precision },
            ops,
            gui,
            eval,
            ..
        } if precision != Precision::F32 && (ops || gui.is_some() || eval.is_some()) => Err(
            "--precision applies to the training-step and sampling-forward bench; --ops, --gui \
             and --eval time f32"
                .into(),
        ),
        Command::Bench {
            ops: true,
            train_batch,
            runs,
            compute,
            ..
        } => run_ops_bench(train_batch.first().copied().unwrap_or(32), runs, &compute),
        Command::Bench {
            gui: Some(steps),
            compute,
            ..
        } => run_gui_bench(steps, &compute),
        Command::Bench {
            eval: Some(presets),
            runs,
            compute,
            ..
        } => run_eval_bench(&presets, runs, &compute),
        Command::Bench {
            train_batch,
            sample_batch,
            runs,
            size,
            precision,
            compute,
            eval: None,
            gui: None,
            ops: false,
        } => run_bench(
            &train_batch,
            &sample_batch,
            (runs, size),
            precision.precision,
            &compute,
        ),
    };
    report(result)
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "gui")]
fn run_gui_bench(steps: usize, compute: &Compute) -> Result<(), String> {
    compute.apply_threads();
    let mut config = lethe::app::state::demo_config();
    config.backend = compute.backend;
    config.train.steps = steps;
    config.eval.every = 10;
    let runs = tempfile::tempdir().map_err(|e| e.to_string())?;
    config.runs_dir = runs.path().to_path_buf();
    println!(
        "workbench frame time while the demo SISS run streams events ({steps} steps, evaluated every 10, backend {})",
        config.backend
    );
    let r = lethe::app::frame_bench::measure(config, std::time::Duration::from_secs(3600))?;
    println!(
        "{} frames at a 60 Hz pace over {:.0} s, {} events applied; run {}",
        r.frames, r.wall_seconds, r.events, r.outcome
    );
    println!(
        "frame time (drain events + layout + tessellate, CPU): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.p50_ms, r.p99_ms, r.max_ms
    );
    Ok(())
}

#[cfg(not(feature = "gui"))]
fn run_gui_bench(_steps: usize, _compute: &Compute) -> Result<(), String> {
    Err("built without the `gui` feature".into())
}

#[cfg(feature = "gui")]
fn open_workbench() -> Result<(), String> {
    lethe::app::launch()
}

#[cfg(not(feature = "gui"))]
fn open_workbench() -> Result<(), String> {
    Err("this build has no workbench (built without the `gui` feature); run `lethe --help` for the headless commands".into())
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn run_pretrain(
    path: &Path,
    max_steps_now: Option<usize>,
    compute: &Compute,
) -> Result<(), String> {
    compute.apply_threads();
    let mut config = PretrainConfig::from_file(path)?;
    let total = config.train.steps;
    let done = pretrain::completed_steps(&config.out_dir);
    if let Some(limit) = max_steps_now {
        // Resume position is read by the run; clamp its end here.
        config.train.steps = total.min(done + limit);
        eprintln!("this invocation: steps {done}..{}", config.train.steps);
    }
    let pb = bar(total as u64, "pretrain");
    // Log lines carry global step numbers (they include a continued run's); the bar counts
    // this config's steps.
    let mut position = done;
    let mut on_step = |line: &pretrain::LogLine| {
        position += 1;
        pb.set_position(position as u64);
        pb.set_message(format!("pretrain loss {:.4} lr {:.2e}", line.loss, line.lr));
    };
    // A shortened invocation must keep the full run's LR schedule.
    let schedule_steps = total;
    let out = pretrain::run_with_schedule(
        &config,
        schedule_steps,
        compute.backend,
        pretrain::Progress {
            on_step: &mut on_step,
        },
    )?;
    pb.finish();
    println!("EMA checkpoint: {}", out.display());
    Ok(())
}

/// Samples `n` images in batches with a progress bar; values in [0, 1].
pub(crate) fn sample_images(
    job: &SampleJob<'_>,
    seed: u64,
    n: usize,
    batch: usize,
    steps: usize,
    label: &str,
) -> Result<Vec<Vec<f32>>, String> {
    let batch = batch.max(1);
    let pb = bar((n * steps) as u64, label);
    let mut all = Vec::with_capacity(n);
    let mut first = 0;
    while first < n {
        let count = batch.min(n - first);
        let done_before = first * steps;
        let x = job.run(seed, first, count, |i, _| {
            pb.set_position((done_before + i * count) as u64)
        })?;
        all.extend(images::to_unit_floats(x).0);
        first += count;
    }
    pb.finish();
    Ok(all)
}

fn run_bench(
    train_batches: &[usize],
    sample_batches: &[usize],
    (runs, size): (usize, usize),
    precision: Precision,
    compute: &Compute,
) -> Result<(), String> {
    compute.apply_threads();
    let device = backend::device(compute.backend)?;
    if size == 0 || !size.is_multiple_of(4) {
        return Err(format!(
            "--size {size}: the demo UNet halves the image twice, so the side must be a positive multiple of 4"
        ));
    }
    let config = lethe::diffusion::unet::UNetConfig {
        sample_size: size,
        ..lethe::diffusion::unet::UNetConfig::demo_mnist()
    };
    let model = lethe::diffusion::unet::UNet::new(&config, 0, &device)?;
    let params: usize = checkpoint::parameter_shapes(&model)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!(
        "demo UNet: {params} parameters, {}×{} input, blocks {:?}; backend {}; {} CPU thread(s); precision {}",
        config.sample_size,
        config.sample_size,
        config.block_out_channels,
        compute.backend,
        rayon::current_num_threads(),
        precision.name()
    );
    let mut rows = vec![];
    let train_batches = match precision.check_trainable() {
        Ok(()) => train_batches,
        Err(why) => {
            println!("training step not timed: {why}");
            &[]
        }
    };
    for &b in train_batches {
        rows.push(lethe::bench::training_step(
            &config, precision, b, 2, runs, &device,
        )?);
    }
    for &b in sample_batches {
        rows.push(lethe::bench::sampling_forward(
            &config, precision, b, 2, runs, &device,
        )?);
    }
    print_bench_rows(rows);
    Ok(())
}

/// `lethe bench --ops`: the per-op profile of a training step (see `bench::ops`).
fn run_ops_bench(batch: usize, runs: usize, compute: &Compute) -> Result<(), String> {
    compute.apply_threads();
    let device = backend::device(compute.backend)?;
    let config = lethe::diffusion::unet::UNetConfig::demo_mnist();
    println!(
        "per-op profile of the demo UNet's training step, batch {batch}; backend {}; {} CPU thread(s); median of {runs} runs per op",
        compute.backend,
        rayon::current_num_threads()
    );
    let step =
        lethe::bench::training_step(&config, Precision::F32, batch, 2, runs, &device)?.median_ms;
    let timings = lethe::bench::ops::time_layer_calls(&config, batch, runs, &device)?;
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
    Ok(())
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

/// `lethe bench --eval`: the evaluation's speed figures (issue #4's targets: FID from 10k
/// cached features ≤ 1 s; the fast preset ≤ 20 s on 2 cores).
fn run_eval_bench(presets: &[String], runs: usize, compute: &Compute) -> Result<(), String> {
    use lethe::metrics::feature_files::{FeatureRows, write_npy_features};
    use lethe::metrics::suite::Preset;
    compute.apply_threads();
    let device = backend::device(compute.backend)?;
    println!(
        "evaluation benchmarks on the demo model; backend {}; {} CPU thread(s)",
        compute.backend,
        rayon::current_num_threads()
    );
    let classifier = lethe::metrics::classifier::LoadedClassifier::load(
        &data::demo::asset(data::demo::DEMO_CLASSIFIER),
        &device,
    )
    .map_err(|e| e.to_string())?;
    let mnist = data::demo::mnist().map_err(|e| e.to_string())?;
    let images: Vec<Vec<f32>> = (0..mnist.len())
        .map(|i| mnist.image(i).iter().map(|&p| p as f32 / 255.0).collect())
        .collect();
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
    for name in presets {
        let preset = match name.as_str() {
            "fast" => Preset::Fast,
            "thorough" => Preset::Thorough,
            other => return Err(format!("--eval {other}: use fast or thorough")),
        };
        rows.extend(lethe::bench::preset_evaluation(preset, 1, runs, &device)?);
    }
    print_bench_rows(rows);
    Ok(())
}

fn run_train_classifier(
    out: &Path,
    epochs: usize,
    seed: u64,
    compute: &Compute,
) -> Result<(), String> {
    compute.apply_threads();
    let device = backend::device(compute.backend)?;
    let mut set = data::demo::mnist().map_err(|e| e.to_string())?;
    set.extend(data::demo::tshirts().map_err(|e| e.to_string())?);
    set.extend(data::demo::memorised_tshirt().map_err(|e| e.to_string())?);
    eprintln!(
        "training {} on {} images for {epochs} epochs",
        lethe::metrics::classifier::CLASSIFIER_NAME,
        set.len()
    );
    let recipe = lethe::metrics::classifier::TrainRecipe::new(epochs, seed);
    let report = lethe::metrics::classifier::train(
        &set,
        data::demo::class_names(),
        data::demo::TSHIRT_LABEL,
        &recipe,
        &device,
        out,
    )?;
    println!(
        "wrote {}: held-out accuracy {:.2}% on {} images (every 10th image, not trained on); \
         on held-out MNIST digits {:.2}%, confident (digit probability >= 0.9) on {:.1}% of them; \
         final batch loss {:.4}",
        out.display(),
        100.0 * report.held_out_accuracy,
        report.held_out_count,
        100.0 * report.held_out_digit_accuracy,
        100.0 * report.held_out_confident_digits,
        report.final_loss
    );
    Ok(())
}

/// How many samples (class probabilities) have a digit class at `confidence` or above.
fn confident_digit_count(probs: &[Vec<f32>], confidence: f32) -> usize {
    let digits = data::demo::TSHIRT_LABEL;
    probs
        .iter()
        .filter(|p| lethe::metrics::classifier::is_confident_digit(p, digits, confidence))
        .count()
}

/// The share of confident digits among the bundled digits held out from the classifier's
/// training: what real data scores on the sample criterion.
fn real_digit_confidence(
    classifier: &lethe::metrics::classifier::LoadedClassifier,
    shape: [usize; 3],
    confidence: f32,
    device: &burn::tensor::Device,
) -> Result<f64, String> {
    let mnist = data::demo::mnist().map_err(|e| e.to_string())?;
    let held_out: Vec<Vec<f32>> = (0..mnist.len())
        .filter(|&i| lethe::metrics::classifier::is_held_out(i))
        .map(|i| mnist.image(i).iter().map(|&p| p as f32 / 255.0).collect())
        .collect();
    let probs = classifier.probabilities(&held_out, shape, device);
    Ok(confident_digit_count(&probs, confidence) as f64 / probs.len().max(1) as f64)
}

fn run_demo_check(args: &DemoCheckArgs) -> Result<(), String> {
    use lethe::metrics::memorization;
    args.compute.apply_threads();
    let device = backend::device(args.compute.backend)?;
    let ckpt = args.precision.load_checkpoint(&args.checkpoint, &device)?;
    let classifier = lethe::metrics::classifier::LoadedClassifier::load(&args.classifier, &device)
        .map_err(|e| e.to_string())?;
    let target = data::load_paths(std::slice::from_ref(&args.target), data::demo::MNIST_SPEC)
        .map_err(|e| e.to_string())?;
    let target: Vec<f32> = target.image(0).iter().map(|&p| p as f32 / 255.0).collect();
    let spec = SamplerSpec {
        kind: args.sampler,
        class: args.class,
        ..SamplerSpec::ddim(args.steps)
    };
    let shape = ckpt.config.image_shape();
    let job = ckpt.sample_job(&spec, &device);
    let samples = sample_images(
        &job,
        args.seed,
        args.n,
        args.batch,
        args.steps,
        &format!("sampling {}", job.label()),
    )?;
    let probs = classifier.probabilities(&samples, shape, &device);
    let confident = confident_digit_count(&probs, args.confidence);
    let copies = memorization::copies_of(&samples, &target, memorization::SISS_L2_THRESHOLD);
    let n_copies = copies.iter().filter(|&&c| c).count();
    let mut per_class = vec![0usize; classifier.config.num_classes];
    for p in &probs {
        let (argmax, _) =
            p.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &q)| if q > acc.1 { (i, q) } else { acc },
            );
        per_class[argmax] += 1;
    }
    let n = args.n as f64;
    println!(
        "checkpoint {} · {} {} samples · {} · seed {}",
        args.checkpoint.display(),
        args.n,
        if args.class.is_some() {
            "conditional"
        } else {
            "unconditional"
        },
        job.label(),
        args.seed
    );
    println!(
        "confident digits   {:>6.1}%  ({confident}/{})  [{}: max digit probability ≥ {}]",
        100.0 * confident as f64 / n,
        args.n,
        classifier.config.name,
        args.confidence
    );
    println!(
        "memorised T-shirt  {:>6.1}%  ({n_copies}/{})  [SISS criterion: L2 < {} to {} in [0,1] pixels]",
        100.0 * n_copies as f64 / n,
        args.n,
        memorization::SISS_L2_THRESHOLD,
        args.target.display()
    );
    let names = &classifier.config.class_names;
    let histogram: Vec<String> = per_class
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}:{c}", names.get(i).map_or("?", |s| s.as_str())))
        .collect();
    println!("argmax classes     {}", histogram.join(" "));
    let real = real_digit_confidence(&classifier, shape, args.confidence, &device)?;
    println!(
        "judge calibration  {:>6.1}%  of the real held-out MNIST digits (every 10th of assets/data) reach the same confidence",
        100.0 * real
    );
    if let Some(path) = &args.grid {
        let shown = &samples[..samples.len().min(64)];
        images::save_png(&images::upscale(&images::grid(shown, shape, 8), 2), path)?;
        println!(
            "grid of the first {} samples: {}",
            shown.len(),
            path.display()
        );
    }
    Ok(())
}

fn run_sample(args: &SampleArgs) -> Result<(), String> {
    args.compute.apply_threads();
    let device = backend::device(args.compute.backend)?;
    let ckpt = args.precision.load_checkpoint(&args.checkpoint, &device)?;
    let spec = SamplerSpec {
        kind: args.sampler,
        steps: args.steps,
        eta: args.eta,
        class: args.class,
        guidance: args.guidance,
    };
    if let (Some(c), Some(n)) = (args.class, ckpt.config.num_real_classes())
        && c >= n
    {
        return Err(format!(
            "--class {c} is out of range: this model has classes 0..{}",
            n - 1
        ));
    }
    let shape = ckpt.config.image_shape();
    let job = ckpt.sample_job(&spec, &device);
    let label = job.label();
    let all = sample_images(
        &job,
        args.seed,
        args.n,
        args.batch,
        args.steps,
        &format!("sampling {label}"),
    )?;
    if let Some(out) = &args.out {
        let columns = (args.n as f64).sqrt().ceil() as usize;
        let grid = images::upscale(&images::grid(&all, shape, columns), 2);
        images::save_png(&grid, out)?;
        println!(
            "wrote {} ({} samples, {label}, seed {})",
            out.display(),
            args.n,
            args.seed
        );
    }
    if let Some(dir) = &args.out_dir {
        for (i, img) in all.iter().enumerate() {
            let path = dir.join(format!("sample_{i:05}.png"));
            if shape[0] == 1 {
                images::save_gray_png(img, shape, &path)?;
            } else {
                images::save_png(&images::to_rgb(img, shape), &path)?;
            }
        }
        println!(
            "wrote {} PNGs to {} ({label}, seed {})",
            args.n,
            dir.display(),
            args.seed
        );
    }
    Ok(())
}

fn run_inspect(dir: &Path) -> Result<(), String> {
    let device = backend::device(BackendChoice::Cpu)?;
    let ckpt = checkpoint::load(dir, &device).map_err(|e| e.to_string())?;
    let shapes = checkpoint::parameter_shapes(&ckpt.unet);
    let params: usize = shapes
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!("checkpoint   {}", dir.display());
    println!(
        "weights      {} (sha256 {})",
        checkpoint::UNET_WEIGHTS,
        ckpt.weights_sha256
    );
    println!("parameters   {params} in {} tensors", shapes.len());
    let c = &ckpt.config;
    println!(
        "model        UNet2DModel {}×{}×{} → {} channels",
        c.in_channels, c.sample_size, c.sample_size, c.out_channels
    );
    println!(
        "  blocks     {:?} × {} layers",
        c.block_out_channels, c.layers_per_block
    );
    println!("  down       {:?}", c.down_block_types);
    println!("  up         {:?}", c.up_block_types);
    match (c.num_class_embeds, c.lethe_null_class) {
        (Some(n), Some(null)) => println!(
            "  classes    {n} embeddings, class {null} is the classifier-free-guidance null class"
        ),
        (Some(n), None) => println!("  classes    {n} embeddings (no null class)"),
        _ => println!("  classes    unconditional"),
    }
    let s = &ckpt.scheduler;
    println!(
        "scheduler    {} {} betas {}..{}, T={}, variance {}, clip_sample {}",
        s.class_name,
        s.beta_schedule,
        s.beta_start,
        s.beta_end,
        s.num_train_timesteps,
        s.variance_type,
        s.clip_sample
    );
    if ckpt.metadata.is_empty() {
        println!("provenance   (none recorded)");
    } else {
        println!("provenance");
        for (k, v) in &ckpt.metadata {
            println!("  {k:<26} {v}");
        }
    }
    Ok(())
}

fn run_data(args: &DataArgs) -> Result<(), String> {
    let spec = match &args.checkpoint {
        Some(dir) => {
            let (config, _) = checkpoint::load_configs(dir).map_err(|e| e.to_string())?;
            ImageSpec {
                channels: config.in_channels,
                height: config.sample_size,
                width: config.sample_size,
            }
        }
        None => data::demo::MNIST_SPEC,
    };
    println!(
        "target: {spec} ({})",
        if args.checkpoint.is_some() {
            "from the checkpoint"
        } else {
            "the demo model's input"
        }
    );
    let result = data::load_paths(&args.paths, spec);
    let set = match result {
        Ok(set) => set,
        Err(e) => return Err(e.to_string()),
    };
    println!("loaded {} image(s)", set.len());
    for (label, count) in set.label_counts() {
        let name = match label {
            Some(l) => set
                .class_names
                .get(l)
                .map_or(format!("label {l}"), |n| format!("label {l} ({n})")),
            None => "unlabelled".to_string(),
        };
        println!("  {name:<24} {count}");
    }
    if set.conversions.is_empty() {
        println!("conversions: none (every image already {spec})");
    } else {
        println!("conversions:");
        for (what, count) in &set.conversions {
            println!("  {what}: {count} image(s)");
        }
    }
    if !set.rejected.is_empty() {
        println!("rejected {} file(s)/record(s):", set.rejected.len());
        for r in set.rejected.iter().take(args.max_rejected) {
            println!("  {}: {}", r.path.display(), r.reason);
        }
        if set.rejected.len() > args.max_rejected {
            println!("  … and {} more", set.rejected.len() - args.max_rejected);
        }
    }
    Ok(())
}

fn run_unlearn(args: &UnlearnArgs) -> Result<(), String> {
    let (config, ignored) = lethe::experiment::ExperimentConfig::from_file_noting(&args.config)?;
    for key in &ignored {
        println!("note: {}: ignored {key}", args.config.display());
    }
    run_experiment(config, args).map(|_| ())
}

fn run_attack(args: &UnlearnArgs) -> Result<(), String> {
    let attack = lethe::attack::dimra::AttackConfig::from_file(&args.config)?;
    let evaluations = run_experiment(attack.to_experiment(), args)?;
    println!();
    println!(
        "DiMRA relearning along the attack (fine-tuning on data without the forgotten content):"
    );
    println!(
        "{:>6}  {:>15}  {:>16}  {:>14}",
        "step", "forgotten class", "forget copies", "confident kept"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    for (step, e) in &evaluations {
        println!(
            "{step:>6}  {:>15}  {:>16}  {:>14}",
            pct(e.forgotten_class_rate),
            pct(Some(e.forget_copy_rate)),
            pct(e.confident_kept_rate)
        );
    }
    if let Some((_, e)) = evaluations.last() {
        println!("evaluated as {}", e.provenance);
    }
    Ok(())
}

/// Runs one experiment on the engine with a progress bar; returns every evaluation
/// (step 0 = the starting checkpoint).
fn run_experiment(
    mut config: lethe::experiment::ExperimentConfig,
    args: &UnlearnArgs,
) -> Result<Vec<(usize, lethe::metrics::forgetting::Evaluation)>, String> {
    use lethe::engine::{Command as EngineCommand, Engine, Event};
    Compute {
        backend: BackendChoice::Cpu,
        threads: args.threads,
    }
    .apply_threads();
    if let Some(steps) = args.steps {
        config.train.steps = steps;
    }
    if let Some(name) = &args.name {
        config.name = Some(name.clone());
    }
    if let Some(backend) = args.backend {
        config.backend = backend;
    }
    if let Some(precision) = args.precision {
        precision
            .check_trainable()
            .map_err(|e| format!("--precision: {e}"))?;
        config.train.precision = precision;
    }
    let engine = Engine::spawn(None);
    engine.send(EngineCommand::Start(Box::new(config.clone())));
    let pb = bar(config.train.steps as u64, config.method.label());
    let mut evaluations = vec![];
    for event in engine.events().iter() {
        match event {
            Event::Started {
                run_dir,
                method,
                backend,
                forget_images,
                retain_images,
                ..
            } => pb.println(format!(
                "{method} on {backend}: {forget_images} forget / {retain_images} retain images → {}",
                run_dir.display()
            )),
            Event::Note(text) => pb.set_message(text),
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
                pb.println(format!("step {step:>5}  {}", eval_line(&evaluation, Some(&baseline))));
                evaluations.push((step, evaluation));
            }
            Event::Checkpoint { path, .. } => pb.println(format!("checkpoint {}", path.display())),
            Event::Finished(summary) | Event::Cancelled(summary) => {
                pb.finish_and_clear();
                println!("run directory   {}", summary.run_dir.display());
                if let Some(b) = &summary.baseline {
                    println!("original        {}", eval_line(b, None));
                }
                if let Some(l) = &summary.last {
                    println!("after {:>5} st  {}", summary.steps_done, eval_line(l, None));
                    println!("evaluated as    {}", l.provenance);
                    if l.fid.is_some() {
                        println!("                {}", l.label("FID"));
                    }
                    if l.elbo_forget_bpd.is_some() {
                        println!("                {}", l.label("ELBO"));
                    }
                }
                if let Some(s) = summary.seconds_per_step {
                    println!("time            {:.2} s/step ({:.0} s of training)", s, summary.seconds);
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
            Event::Samples { .. } | Event::Paused | Event::Resumed => {}
        }
    }
    Err("the engine stopped without finishing the run".into())
}

/// One evaluation as a line: copy rate, forgotten-class rate, confident kept samples.
fn eval_line(
    e: &lethe::metrics::forgetting::Evaluation,
    baseline: Option<&lethe::metrics::forgetting::Evaluation>,
) -> String {
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

fn run_fid(args: &FidArgs) -> Result<(), String> {
    use lethe::metrics::feature_files::{self, FidInputKind};
    use lethe::metrics::fid::frechet_distance;
    args.compute.apply_threads();
    let needs_network = [&args.a, &args.b]
        .iter()
        .any(|p| FidInputKind::of(p) == FidInputKind::Images);
    let device = backend::device(args.compute.backend)?;
    let classifier = if needs_network {
        let k = data::demo::asset(&args.classifier.to_string_lossy());
        Some(
            lethe::metrics::classifier::LoadedClassifier::load(&k, &device)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let side = |path: &PathBuf| match (FidInputKind::of(path), &classifier) {
        (FidInputKind::Images, Some(k)) => feature_files::fid_side_from_images(path, k, &device),
        _ => feature_files::fid_side_from_file(path),
    };
    let (a, b) = (side(&args.a)?, side(&args.b)?);
    let fid = frechet_distance(&a.stats, &b.stats)?;
    let count = |s: &feature_files::FidSide| s.stats.count.map_or("?".into(), |n| n.to_string());
    let features = classifier
        .as_ref()
        .map_or("features as given".into(), |k| k.feature_label());
    let label = format!("FID[{features}, N={} vs {}]", count(&a), count(&b));
    println!("{label} = {fid:.6}");
    println!("  A: {}", a.description);
    println!("  B: {}", b.description);
    for (name, side) in [("A", &a), ("B", &b)] {
        if side.stats.count.is_some_and(|n| n <= side.stats.dim()) {
            println!(
                "  warning: {name} has no more vectors than feature dimensions ({}), so its covariance is \
                 rank-deficient and the distance is dominated by that; FID is biased by N — compare \
                 only values with the same N",
                side.stats.dim()
            );
        }
    }
    println!(
        "  Fréchet distance of Gaussians fitted to the features (unbiased covariance; trace of the"
    );
    println!("  covariance product's square root by symmetric eigendecomposition in f64)");
    if let Some(path) = &args.json {
        let record = serde_json::json!({
            "fid": fid,
            "label": label,
            "a": a.description,
            "b": b.description,
        });
        let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
        lethe::util::atomic_write(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
