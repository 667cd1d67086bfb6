//! `lethe inspect`: a checkpoint's config, size, weights hash and provenance.

use std::path::PathBuf;

use clap::Args;

use lethe::backend::{self, BackendChoice};
use lethe::diffusion::checkpoint;

#[derive(Args)]
pub struct InspectArgs {
    /// Checkpoint directory (diffusers layout: unet/, scheduler/).
    checkpoint: PathBuf,
}

pub fn run(args: &InspectArgs) -> Result<(), String> {
    let dir = &args.checkpoint;
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
            println!("  {:<26} {}", printable(k), printable(v));
        }
    }
    Ok(())
}

/// A checkpoint's metadata as text a terminal only displays: control characters (an ANSI
/// escape sequence in a stranger's checkpoint could rewrite the screen or the window title)
/// are shown escaped, `\u{1b}`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metadata_control_characters_are_shown_escaped() {
        assert_eq!(super::printable("seed 0, λ=0.5"), "seed 0, λ=0.5");
        assert_eq!(
            super::printable("\u{1b}]0;owned\u{7}x\ny"),
            "\\u{1b}]0;owned\\u{7}x\\u{a}y"
        );
    }
}
