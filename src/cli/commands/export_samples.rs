//! `lethe export-samples`: samples as PNGs with their features (the classifier's or the FID
//! Inception's) and statistics, so FID can be recomputed with pytorch-fid or clean-fid.

use std::path::PathBuf;

use clap::Args;

use lethe::data;
use lethe::diffusion::sampler::{SAMPLE_BATCH, SamplerKind, SamplerSpec};
use lethe::metrics::classifier::LoadedClassifier;
use lethe::metrics::feature_net::{FeatureNet, FeatureNetChoice};

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
    /// Sampler: ddim, or dpm++2m (DPM-Solver++(2M), 10–20 steps).
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    sampler: SamplerKind,
    /// Sampler steps.
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
    /// Feature network: `classifier` (the one `--classifier` names) or `inception:PATH` (the
    /// FID Inception-v3 with pytorch-fid's weights file, or the same tensors as .safetensors).
    #[arg(long, default_value = "classifier")]
    feature_net: FeatureNetChoice,
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
    let shape = ckpt.config.image_shape();
    let net = match FeatureNet::load_inception(&args.feature_net, &device)? {
        Some(net) => net,
        None => {
            let classifier_dir = data::demo::asset(&args.classifier.to_string_lossy());
            let k = LoadedClassifier::load_for(&classifier_dir, shape, &device)?;
            FeatureNet::Classifier(Box::new(k))
        }
    };
    let spec = SamplerSpec {
        class: args.class,
        guidance: args.guidance,
        ..SamplerSpec::new(args.sampler, args.steps)
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
    let export = |name: &str,
                  images: &[Vec<f32>],
                  image_shape: [usize; 3]|
     -> Result<FeatureStats, String> {
        let rows = FeatureRows {
            values: net.features(images, image_shape, &device)?,
            dim: net.dim(),
        };
        write_npy_features(&args.out.join(format!("{name}features.npy")), &rows)?;
        let stats = FeatureStats::from_rows(&rows.values, rows.dim)?;
        write_npz_stats(&args.out.join(format!("{name}stats.npz")), &stats)?;
        Ok(stats)
    };
    export("", &samples, shape)?;
    let mut reference = None;
    if !args.reference.is_empty() {
        // The network's input: the model's shape for the classifier, the images' own size
        // for the Inception (which resizes them itself, as pytorch-fid does).
        let spec = match &net {
            FeatureNet::Classifier(_) => data::ImageSpec {
                channels: shape[0],
                height: shape[1],
                width: shape[2],
            },
            FeatureNet::Inception(_) => net.input_spec(&args.reference[0])?,
        };
        let set = data::load_paths(&args.reference, spec).map_err(|e| e.to_string())?;
        let images: Vec<Vec<f32>> = (0..set.len()).map(|i| set.unit_image(i)).collect();
        export(
            "reference_",
            &images,
            [spec.channels, spec.height, spec.width],
        )?;
        reference = Some(images.len());
    }
    let provenance = serde_json::json!({
        "checkpoint": args.checkpoint,
        "checkpoint_sha256": ckpt.weights_sha256,
        "samples": args.n,
        "sampler": sampler,
        "seed": args.seed,
        "feature_net": net.label(),
        "feature_net_sha256": net.weights_sha256(),
        "feature_dim": net.dim(),
        "files": {
            "samples/": "8-bit PNGs",
            "features.npy": "N×D float32 features of the samples from feature_net (pool3 for the FID Inception, the penultimate layer for the classifier)",
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
        net.label(),
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
