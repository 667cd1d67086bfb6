//! `lethe train-classifier`: train the bundled 11-class judge, `lethe-mnist11`.

use std::path::PathBuf;

use clap::Args;

use lethe::data;

use crate::cli::args::Compute;

#[derive(Args)]
pub struct TrainClassifierArgs {
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
}

pub fn run(args: &TrainClassifierArgs) -> Result<(), String> {
    let TrainClassifierArgs {
        out,
        epochs,
        seed,
        compute,
    } = args;
    let (epochs, seed) = (*epochs, *seed);
    let device = compute.select_without_model()?.device;
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
