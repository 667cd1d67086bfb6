//! Exports from the workbench: the live run's curves as CSV/JSON, the grids as PNG, a plot
//! as PNG (a viewport screenshot cropped to the plot), and the unlearned checkpoint
//! (diffusers layout with its provenance) copied to a folder. Every file is written
//! atomically; exports go to `<run dir>/exports/` unless a folder is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui;

use super::live::{LiveRun, Series};
use crate::util::atomic_write;

/// A plot screenshot in flight (requested one frame, delivered a later one).
type Delivered = Arc<std::sync::Mutex<Option<Arc<egui::ColorImage>>>>;

#[derive(Default)]
pub struct ExportState {
    pending_plot: Option<(egui::Rect, PathBuf)>,
    delivered: Delivered,
    pub last: Option<Result<PathBuf, String>>,
}

impl ExportState {
    pub fn request_plot_png(&mut self, ctx: &egui::Context, rect: egui::Rect, path: PathBuf) {
        self.pending_plot = Some((rect, path));
        let slot = self.delivered.clone();
        let repaint = ctx.clone();
        ctx.request_screenshot(move |image| {
            *slot.lock().expect("screenshot slot") = Some(image);
            repaint.request_repaint();
        });
    }

    /// Saves the plot when the screenshot arrives.
    pub fn poll_screenshot(&mut self, ctx: &egui::Context) {
        if self.pending_plot.is_none() {
            return;
        }
        let image = self.delivered.lock().expect("screenshot slot").take();
        if let Some(image) = image {
            let (rect, path) = self.pending_plot.take().expect("pending");
            let region = image.region(&rect, Some(ctx.pixels_per_point()));
            self.last = Some(save_color_image(&region, &path).map(|()| path));
        }
    }
}

fn save_color_image(image: &egui::ColorImage, path: &Path) -> Result<(), String> {
    let [w, h] = image.size;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let img = image::RgbaImage::from_raw(w as u32, h as u32, rgba).ok_or("image size")?;
    crate::images::save_png(&img, path)
}

/// `<run dir>/exports`, created.
pub fn export_dir(run: &LiveRun) -> Result<PathBuf, String> {
    let dir = run
        .run_dir
        .as_ref()
        .ok_or("the run has no directory yet")?
        .join("exports");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Long-format CSV: `series,name,step,value` for every plotted point.
pub fn metrics_csv(run: &LiveRun) -> String {
    let mut out = String::from("series,name,step,value\n");
    let groups: [(&str, &Series); 5] = [
        ("loss", &run.terms),
        ("grad_norm", &run.grad_norms),
        ("coefficient", &run.coefficients),
        ("importance_weight", &run.weights),
        ("metric", &run.metric_series()),
    ];
    for (group, series) in groups {
        for (name, points) in &series.lines {
            let name = name.replace('"', "'");
            for [step, value] in points {
                out.push_str(&format!("{group},\"{name}\",{step},{value}\n"));
            }
        }
    }
    out
}

/// JSON: the baseline and every evaluation (with provenance), and the loss series.
pub fn metrics_json(run: &LiveRun) -> serde_json::Value {
    let series = |s: &Series| {
        s.lines
            .iter()
            .map(|(n, p)| (n.clone(), serde_json::json!(p)))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({
        "title": run.title,
        "run_dir": run.run_dir,
        "method": run.method,
        "steps_done": run.steps_done,
        "baseline": run.baseline,
        "evaluations": run.evaluations.iter().map(|(s, e)| serde_json::json!({"step": s, "evaluation": e})).collect::<Vec<_>>(),
        "losses": series(&run.terms),
        "grad_norms": series(&run.grad_norms),
        "coefficients": series(&run.coefficients),
        "importance_weights": series(&run.weights),
    })
}

pub fn write_metrics(run: &LiveRun, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let csv = dir.join("metrics.csv");
    atomic_write(&csv, metrics_csv(run).as_bytes())
        .map_err(|e| format!("{}: {e}", csv.display()))?;
    let json = dir.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics_json(run)).expect("json");
    atomic_write(&json, text.as_bytes()).map_err(|e| format!("{}: {e}", json.display()))?;
    Ok(vec![csv, json])
}

/// original | current | heat map of the grid at `step`, as one PNG.
pub fn write_grid(run: &LiveRun, step: usize, dir: &Path) -> Result<PathBuf, String> {
    let grid = run.grid_at(step).ok_or("no grid recorded yet")?;
    let n = grid.current.len().min(run.original.len());
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let original = crate::images::grid(&run.original[..n], run.shape, cols);
    let current = crate::images::grid(&grid.current[..n], run.shape, cols);
    let diff =
        super::colormap::difference_grid(&run.original[..n], &grid.current[..n], run.shape, cols);
    let heat = image::RgbImage::from_raw(
        diff.width as u32,
        diff.height as u32,
        diff.to_rgba()
            .chunks(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
    )
    .ok_or("heat map size")?;
    let both = crate::images::side_by_side(&original, &current, 4);
    let all = crate::images::side_by_side(&both, &heat, 4);
    let path = dir.join(format!("grid_step_{:05}.png", grid.step));
    crate::images::save_png(&crate::images::upscale(&all, 4), &path)?;
    Ok(path)
}

/// Copies a checkpoint folder (diffusers layout, provenance in its safetensors header) to
/// `dest`, which must not exist: written under a temporary name and renamed when complete.
pub fn copy_checkpoint(source: &Path, dest: &Path) -> Result<(), String> {
    if dest.exists() {
        return Err(format!(
            "{} already exists; exports never overwrite",
            dest.display()
        ));
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".lethe-export-")
        .tempdir_in(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    copy_tree(source, tmp.path())?;
    let staged = tmp.keep();
    std::fs::rename(&staged, dest).map_err(|e| format!("{}: {e}", dest.display()))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}
