//! `lethe export-samples`: samples as PNGs with their classifier features and statistics,
//! so FID can be recomputed with pytorch-fid or clean-fid.

use std::path::PathBuf;

use clap::Args;

use lethe::data::{self, ImageSpec};
use lethe::diffusion::sampler::{SAMPLE_BATCH, SamplerSpec};
use lethe::metrics::classifier::LoadedClassifier;

use crate::cli::args::{Compute, PrecisionArg};
use crate::cli::progress::sample_images;

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, default_value = data::demo::DEMO_CHECKPOINT)]
    checkpoint: PathBuf,
    /// Output folder: samples/*.png, features.npy, stats.npz, provenance.json.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sample this class (class-conditional models); omit for unconditional samples.
    #[arg(long)]
    class: Option<usize>,
    #[arg(long, default_value_t = 0.0)]
    guidance: f32,
    /// Real images to export statistics of too (reference_features.npy,
    /// reference_stats.npz), e.g. the retain set for FID.
    #[arg(long, num_args = 1..)]
    reference: Vec<PathBuf>,
    #[arg(long, default_value = data::demo::DEMO_CLASSIFIER)]
    classifier: PathBuf,
    #[command(flatten)]
    precision: PrecisionArg,
    #[command(flatten)]
    compute: Compute,
}

/// Writes samples as PNGs and their classifier features and `mu`/`sigma`, so FID can be
/// recomputed with another tool (pytorch-fid or clean-fid on the PNGs, or on the statistics).
pub fn run(args: &ExportArgs) -> Result<(), String> {
    use lethe::metrics::feature_files::{FeatureRows, write_npy_features, write_npz_stats};
    use lethe::metrics::fid::FeatureStats;
    let device = args.compute.select(&args.checkpoint)?.device;
    let ckpt = args.precision.load_checkpoint(&args.checkpoint, &device)?;
    let classifier_dir = data::demo::asset(&args.classifier.to_string_lossy());
    let shape = ckpt.config.image_shape();
    let classifier = LoadedClassifier::load_for(&classifier_dir, shape, &device)?;
    let k = &classifier.config;
    let spec = SamplerSpec {
        class: args.class,
        guidance: args.guidance,
        ..SamplerSpec::ddim(args.steps)
    };
    let job = ckpt.sample_job(&spec, &device);
    let sampler = job.label();
    let samples = sample_images(
        &job,
        args.seed,
        args.n,
        SAMPLE_BATCH,
        &format!("sampling {sampler}"),
    )?;
    let png_dir = args.out.join("samples");
    lethe::images::save_each_png(&samples, shape, &png_dir)?;
    let export = |name: &str, images: &[Vec<f32>]| -> Result<FeatureStats, String> {
        let rows = FeatureRows {
            values: classifier.features(images, shape, &device),
            dim: k.feature_dim,
        };
        write_npy_features(&args.out.join(format!("{name}features.npy")), &rows)?;
        let stats = FeatureStats::from_rows(&rows.values, rows.dim)?;
        write_npz_stats(&args.out.join(format!("{name}stats.npz")), &stats)?;
        Ok(stats)
    };
    export("", &samples)?;
    let mut reference = None;
    if !args.reference.is_empty() {
        let spec = ImageSpec {
            channels: shape[0],
            height: shape[1],
            width: shape[2],
        };
        let set = data::load_paths(&args.reference, spec).map_err(|e| e.to_string())?;
        let images: Vec<Vec<f32>> = (0..set.len()).map(|i| set.unit_image(i)).collect();
        export("reference_", &images)?;
        reference = Some(images.len());
    }
    let provenance = serde_json::json!({
        "checkpoint": args.checkpoint,
        "checkpoint_sha256": ckpt.weights_sha256,
        "samples": args.n,
        "sampler": sampler,
        "seed": args.seed,
        "feature_net": classifier.feature_label(),
        "feature_net_sha256": classifier.weights_sha256,
        "feature_dim": k.feature_dim,
        "files": {
            "samples/": "8-bit PNGs",
            "features.npy": "N×D float32 penultimate-layer features of the samples",
            "stats.npz": "mu (D), sigma (D×D, unbiased) of those features, float64, as pytorch-fid --save-stats",
        },
        "reference": args.reference,
        "reference_images": reference,
        "lethe_version": env!("CARGO_PKG_VERSION"),
    });
    let text = serde_json::to_string_pretty(&provenance).map_err(|e| e.to_string())?;
    lethe::util::atomic_write(&args.out.join("provenance.json"), text.as_bytes())
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote {} PNGs to {}, features.npy and stats.npz ({} features, {}){}",
        args.n,
        png_dir.display(),
        classifier.feature_label(),
        sampler,
        reference.map_or(String::new(), |n| format!(
            ", reference_features.npy and reference_stats.npz of {n} reference images"
        ))
    );
    println!(
        "check: lethe fid {} {}",
        args.out.join("stats.npz").display(),
        args.out.join("reference_stats.npz").display()
    );
    Ok(())
}
