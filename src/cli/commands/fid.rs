//! `lethe fid`: the Fréchet distance between two sets of images, features or statistics.

use std::path::PathBuf;

use clap::Args;

use lethe::backend;
use lethe::data;

use lethe::metrics::feature_net::{FeatureNet, FeatureNetChoice};

use crate::cli::args::Compute;

#[derive(Args)]
pub struct FidArgs {
    /// First set: images, a `.npy` of features or a `.npz` of statistics.
    a: PathBuf,
    /// Second set, in any of the same forms.
    b: PathBuf,
    /// Feature network for image inputs: `classifier` (the one `--classifier` names; MNIST-sized
    /// images) or `inception:PATH` (the FID Inception-v3 with pytorch-fid's weights file,
    /// `pt_inception-2015-12-05-6726825d.pth`, or the same tensors as `.safetensors`).
    #[arg(long, default_value = "classifier")]
    feature_net: FeatureNetChoice,
    /// The classifier for `--feature-net classifier`.
    #[arg(long, default_value = "assets/classifier")]
    classifier: PathBuf,
    /// Also write the value and its provenance as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    compute: Compute,
}

pub fn run(args: &FidArgs) -> Result<(), String> {
    use lethe::metrics::feature_files::{self, FidInputKind};
    use lethe::metrics::fid::frechet_distance;
    args.compute.apply_threads();
    let needs_network = [&args.a, &args.b]
        .iter()
        .any(|p| FidInputKind::of(p) == FidInputKind::Images);
    // Features from files need no network, so no device either.
    let device = if needs_network {
        args.compute.select_without_model()?.device
    } else {
        backend::device(lethe::backend::BackendChoice::Cpu)?
    };
    let network = if needs_network {
        Some(load_network(args, &device)?)
    } else {
        None
    };
    let side = |path: &PathBuf| match (FidInputKind::of(path), &network) {
        (FidInputKind::Images, Some(net)) => {
            feature_files::fid_side_from_images(path, net, &device)
        }
        _ => feature_files::fid_side_from_file(path),
    };
    let (a, b) = (side(&args.a)?, side(&args.b)?);
    let fid = frechet_distance(&a.stats, &b.stats)?;
    let count = |s: &feature_files::FidSide| s.stats.count.map_or("?".into(), |n| n.to_string());
    let features = network
        .as_ref()
        .map_or("features as given".into(), FeatureNet::label);
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
            "feature_net": network.as_ref().map(FeatureNet::label),
            "feature_net_sha256": network.as_ref().map(FeatureNet::weights_sha256),
        });
        let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
        lethe::util::atomic_write(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn load_network(args: &FidArgs, device: &burn::tensor::Device) -> Result<FeatureNet, String> {
    if let Some(net) = FeatureNet::load_inception(&args.feature_net, device)? {
        return Ok(net);
    }
    let k = data::demo::asset(&args.classifier.to_string_lossy());
    lethe::metrics::classifier::LoadedClassifier::load(&k, device)
        .map(|k| FeatureNet::Classifier(Box::new(k)))
        .map_err(|e| e.to_string())
}
