//! `lethe demo-check`: the demo model's acceptance figures (confident digits, memorised
//! T-shirts) among unconditional samples.

use std::path::PathBuf;

use clap::Args;

use lethe::data;
use lethe::diffusion::sampler::{ClippedEps, SamplerKind, SamplerSpec};
use lethe::images;

use crate::cli::args::{Compute, PrecisionArg};
use crate::cli::progress::sample_images;

#[derive(Args)]
pub struct DemoCheckArgs {
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
    /// Classifier-free guidance weight w for --class: eps = (1+w)·eps(class) − w·eps(null).
    #[arg(long, default_value_t = 0.0)]
    guidance: f32,
    /// DDIM: the ε a step continues with after clipping x̂0 (see `lethe sample --help`).
    #[arg(long, value_enum, default_value_t = ClippedEps::Auto)]
    clipped_eps: ClippedEps,
    /// The guided acceptance table instead: every digit class at every --weights, the share
    /// of samples the judge puts in the requested class (argmax), --cell-n samples per cell.
    #[arg(long)]
    per_class: bool,
    /// Guidance weights of the --per-class table.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    weights: Vec<f32>,
    /// Samples per (class, weight) cell of the --per-class table.
    #[arg(long, default_value_t = 64)]
    cell_n: usize,
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
        .map(|i| mnist.unit_image(i))
        .collect();
    let probs = classifier.probabilities(&held_out, shape, device);
    Ok(confident_digit_count(&probs, confidence) as f64 / probs.len().max(1) as f64)
}

/// How many of the samples (class probabilities `probs`) fall in each class, by argmax.
fn argmax_histogram(probs: &[Vec<f32>], classes: usize) -> Vec<usize> {
    let mut per_class = vec![0usize; classes];
    for p in probs {
        let (argmax, _) =
            p.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &q)| if q > acc.1 { (i, q) } else { acc },
            );
        per_class[argmax] += 1;
    }
    per_class
}

/// `--per-class`: every digit class sampled at every guidance weight; a cell passes when at
/// least [`GUIDED_CLASS_TARGET`] of its samples are judged (argmax) to be the requested class.
fn per_class_table(
    args: &DemoCheckArgs,
    ckpt: &lethe::diffusion::checkpoint::Checkpoint,
    classifier: &lethe::metrics::classifier::LoadedClassifier,
    device: &burn::tensor::Device,
) -> Result<(), String> {
    let shape = ckpt.config.image_shape();
    let digits = data::demo::TSHIRT_LABEL;
    let tshirt = data::demo::TSHIRT_LABEL;
    let header: Vec<String> = args.weights.iter().map(|w| format!("w={w:<5}")).collect();
    let sampler = SamplerSpec {
        kind: args.sampler,
        class: Some(0),
        guidance: 1.0,
        clipped_eps: args.clipped_eps,
        ..SamplerSpec::ddim(args.steps)
    };
    println!(
        "checkpoint {} · guided {} · {} samples per cell · seed {} · judge {} (argmax = requested class)",
        args.checkpoint.display(),
        sampler.label().replace(",class=0,w=1", ""),
        args.cell_n,
        args.seed,
        classifier.config.name
    );
    println!("class  {}   T-shirts at each w", header.join("  "));
    let mut worst = f64::INFINITY;
    for class in 0..digits {
        let mut cells = Vec::new();
        let mut tshirts = Vec::new();
        for &w in &args.weights {
            let spec = SamplerSpec {
                kind: args.sampler,
                class: Some(class),
                guidance: w,
                clipped_eps: args.clipped_eps,
                ..SamplerSpec::ddim(args.steps)
            };
            let job = ckpt.sample_job(&spec, device);
            let samples = sample_images(
                &job,
                args.seed,
                args.cell_n,
                args.batch,
                &format!("sampling {}", job.label()),
            )?;
            let probs = classifier.probabilities(&samples, shape, device);
            let histogram = argmax_histogram(&probs, classifier.config.num_classes);
            let share = histogram[class] as f64 / args.cell_n.max(1) as f64;
            worst = worst.min(share);
            cells.push(format!("{:>6.1}%", 100.0 * share));
            tshirts.push(format!("{}", histogram.get(tshirt).copied().unwrap_or(0)));
        }
        println!("{class:>5}  {}   {}", cells.join("  "), tshirts.join("/"));
    }
    let verdict = if worst >= GUIDED_CLASS_TARGET {
        "PASS"
    } else {
        "FAIL"
    };
    println!(
        "{verdict}: worst cell {:.1}% (target ≥ {:.0}% of samples in the requested class)",
        100.0 * worst,
        100.0 * GUIDED_CLASS_TARGET
    );
    Ok(())
}

/// The guided-sampling target of the demo model: every digit class, at every tested
/// guidance weight, at least this share of samples judged to be that class.
const GUIDED_CLASS_TARGET: f64 = 0.8;

pub fn run(args: &DemoCheckArgs) -> Result<(), String> {
    use lethe::metrics::memorization;
    let device = args.compute.select(&args.checkpoint)?.device;
    let ckpt = args.precision.load_checkpoint(&args.checkpoint, &device)?;
    let classifier = lethe::metrics::classifier::LoadedClassifier::load(&args.classifier, &device)
        .map_err(|e| e.to_string())?;
    if args.per_class {
        return per_class_table(args, &ckpt, &classifier, &device);
    }
    let target = data::load_paths(std::slice::from_ref(&args.target), data::demo::MNIST_SPEC)
        .map_err(|e| e.to_string())?;
    let target: Vec<f32> = target.unit_image(0);
    let spec = SamplerSpec {
        kind: args.sampler,
        class: args.class,
        guidance: args.guidance,
        clipped_eps: args.clipped_eps,
        ..SamplerSpec::ddim(args.steps)
    };
    let shape = ckpt.config.image_shape();
    let job = ckpt.sample_job(&spec, &device);
    let samples = sample_images(
        &job,
        args.seed,
        args.n,
        args.batch,
        &format!("sampling {}", job.label()),
    )?;
    let probs = classifier.probabilities(&samples, shape, &device);
    let confident = confident_digit_count(&probs, args.confidence);
    let copies = memorization::copies_of(&samples, &target, memorization::SISS_L2_THRESHOLD);
    let n_copies = copies.iter().filter(|&&c| c).count();
    let per_class = argmax_histogram(&probs, classifier.config.num_classes);
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
