//! `lethe pretrain`: train a diffusion model from scratch, or continue a pretrain run.

use std::path::PathBuf;

use clap::Args;

use lethe::pretrain::{self, PretrainConfig};

use super::unlearn::naming_the_file;
use crate::cli::args::Compute;
use crate::cli::progress::bar;

#[derive(Args)]
pub struct PretrainArgs {
    /// TOML config (see examples/pretrain-demo.toml).
    #[arg(long)]
    config: PathBuf,
    /// Stop after this many steps in this invocation (the run stays resumable).
    #[arg(long)]
    max_steps_now: Option<usize>,
    #[command(flatten)]
    compute: Compute,
}

pub fn run(args: &PretrainArgs) -> Result<(), String> {
    let PretrainArgs {
        config: path,
        max_steps_now,
        compute,
    } = args;
    let mut config = PretrainConfig::from_file(path)?;
    // Training from scratch has no checkpoint of its own: a GPU is checked on the demo model.
    let backend = compute.select_without_model()?.backend;
    let total = config.train.steps;
    let done = pretrain::completed_steps(&config.out_dir);
    if let Some(limit) = *max_steps_now {
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
        backend,
        pretrain::Progress {
            on_step: &mut on_step,
        },
    )
    .map_err(|e| naming_the_file(path, e, is_pretrain_key))?;
    pb.finish();
    println!("EMA checkpoint: {}", out.display());
    Ok(())
}

/// An error the run found in a config value begins with its key (`train.batch_size = …`).
fn is_pretrain_key(word: &str) -> bool {
    ["train.", "model.", "data."]
        .iter()
        .any(|section| word.starts_with(section))
}
