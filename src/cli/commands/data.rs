//! `lethe data`: load images as the app would and report what was loaded and rejected.

use std::path::PathBuf;

use clap::Args;

use lethe::data::{self, ImageSpec};
use lethe::diffusion::checkpoint;

#[derive(Args)]
pub struct DataArgs {
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

pub fn run(args: &DataArgs) -> Result<(), String> {
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
