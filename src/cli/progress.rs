//! Progress bars on the terminal.

use indicatif::{ProgressBar, ProgressStyle};

use lethe::diffusion::sampler::SampleJob;

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Samples `n` images in batches of `batch` with a progress bar; values in [0, 1].
pub fn sample_images(
    job: &SampleJob<'_>,
    seed: u64,
    n: usize,
    batch: usize,
    label: &str,
) -> Result<Vec<Vec<f32>>, String> {
    let pb = bar((n * job.spec.steps) as u64, label);
    let all = job.run_batched(seed, n, batch, |done| pb.set_position(done as u64))?;
    pb.finish();
    Ok(all)
}

/// Prints `line` above the bar — or plainly when the bar is hidden (output to a log file, a
/// pipe, a batch job), where indicatif would drop it.
pub fn say(pb: &ProgressBar, line: impl AsRef<str>) {
    if pb.is_hidden() {
        println!("{}", line.as_ref());
    } else {
        pb.println(line.as_ref());
    }
}
