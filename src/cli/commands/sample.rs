//! `lethe sample`: draw samples from a checkpoint into a grid or one PNG each.

use std::path::PathBuf;

use clap::Args;

use lethe::diffusion::sampler::{ClippedEps, SamplerKind, SamplerSpec};
use lethe::images;

use crate::cli::args::{Compute, PrecisionArg};
use crate::cli::progress::sample_images;

#[derive(Args)]
pub struct SampleArgs {
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
    /// ddpm (ancestral), ddim, or dpm++2m (DPM-Solver++(2M), diffusers' defaults: 10–20 steps).
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    sampler: SamplerKind,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM eta (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f32,
    /// DDIM with a clipping model: continue each step with the ε re-derived from the clipped
    /// x̂0 (`rederive`, GLIDE; what `auto` does under guidance) or with the model's (`keep`,
    /// diffusers' default; what `auto` does otherwise).
    #[arg(long, value_enum, default_value_t = ClippedEps::Auto)]
    clipped_eps: ClippedEps,
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

pub fn run(args: &SampleArgs) -> Result<(), String> {
    let device = args.compute.select(&args.checkpoint)?.device;
    let ckpt = args.precision.load_checkpoint(&args.checkpoint, &device)?;
    let spec = SamplerSpec {
        kind: args.sampler,
        steps: args.steps,
        eta: args.eta,
        class: args.class,
        guidance: args.guidance,
        clipped_eps: args.clipped_eps,
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
        images::save_each_png(&all, shape, dir)?;
        println!(
            "wrote {} PNGs to {} ({label}, seed {})",
            args.n,
            dir.display(),
            args.seed
        );
    }
    Ok(())
}
