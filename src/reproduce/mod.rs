//! `lethe reproduce`: each seed paper's claim, run on the bundled demo through the normal
//! engine and turned into a verdict (holds / does not hold / inconclusive) from several
//! seeds with 95% confidence intervals, under a deterministic (DDIM) and a stochastic (DDPM)
//! sampler, in a report with plots.
//!
//! - [`preset`]: how big each experiment is (quick, full, tiny) — the one place for numbers;
//! - [`plan`]: the sweeps of ordinary runs (from the examples) and the DDPM evaluations;
//! - [`results`]: what they left on disk, read back;
//! - [`claims`]: each claim's statements and verdicts; [`stats`]: the intervals;
//! - [`plots`] and [`report`]: `report.html`, `report.md`, `verdicts.json`.
//!
//! Running the plan (child processes, progress) is the CLI's (`cli/commands/reproduce.rs`).

pub mod claims;
pub mod plan;
pub mod plots;
pub mod preset;
pub mod report;
pub mod results;
pub mod stats;

use std::path::Path;

pub use plan::{Claim, Plan};
pub use preset::{Preset, Settings};

/// Writes the bundled MNIST's images of `plan::VDU_DIGIT` as PNGs into
/// `plan::digit_folder(out)` (VDU's forget set), unless a complete folder is there already:
/// it is written beside and renamed into place, so a killed write leaves no half folder.
pub fn write_digit_folder(out: &Path) -> Result<usize, String> {
    let folder = plan::digit_folder(out);
    if folder.is_dir() {
        let count = std::fs::read_dir(&folder)
            .map_err(|e| format!("{}: {e}", folder.display()))?
            .count();
        return Ok(count);
    }
    let mnist = crate::data::demo::mnist().map_err(|e| e.to_string())?;
    let partial = folder.with_extension(format!("partial-{}", std::process::id()));
    std::fs::create_dir_all(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let spec = mnist.spec;
    let mut count = 0;
    for i in 0..mnist.len() {
        if mnist.labels[i] != Some(plan::VDU_DIGIT) {
            continue;
        }
        let img = image::GrayImage::from_raw(
            spec.width as u32,
            spec.height as u32,
            mnist.image(i).to_vec(),
        )
        .ok_or("an MNIST image of the wrong size")?;
        crate::images::save_png(&img, &partial.join(format!("{i:05}.png")))?;
        count += 1;
    }
    std::fs::rename(&partial, &folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    Ok(count)
}
