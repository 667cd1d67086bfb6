//! The live view: run controls and progress, loss/gradient/weight plots, metric curves with
//! provenance, and original | current | |difference| grids with a step slider.

use std::sync::Arc;

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use crate::app::colormap::difference_grid;
use crate::app::export;
use crate::app::heatmap::{HeatmapCallback, paint_callback};
use crate::app::live::{LiveRun, MetricAxis, Phase, Series, headline};
use crate::app::{LetheApp, textures};

pub fn show(app: &mut LetheApp, ui: &mut egui::Ui) {
    controls(app, ui);
    ui.separator();
    if app.state.live.is_none() {
        ui.label("Press Run to start the configured run, or Preview to see the original model's samples, figures and the run's expected cost first. Loss terms, metrics and sample grids appear here as the worker reports them.");
        return;
    }
    if let Some(live) = &app.state.live
        && let Some(baseline) = &live.baseline
    {
        // A preview's one evaluation is the original itself: nothing to compare it with.
        let latest = (!live.preview)
            .then(|| live.evaluations.last().map(|(step, e)| (*step, e)))
            .flatten();
        let line = headline(baseline, latest);
        ui.label(egui::RichText::new(line.text).strong().size(15.0))
            .on_hover_text(line.provenance);
    }
    if app.state.live.as_ref().is_some_and(|l| l.preview) {
        egui::ScrollArea::vertical().show(ui, |ui| preview(app, ui));
        return;
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        grids(app, ui);
        ui.separator();
        plots(app, ui);
        ui.separator();
        exports_and_attack(app, ui);
    });
}

fn controls(app: &mut LetheApp, ui: &mut egui::Ui) {
    let running = app.state.is_running();
    let paused = app
        .state
        .live
        .as_ref()
        .is_some_and(|l| l.phase == Phase::Paused);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!running, egui::Button::new("Run"))
            .on_hover_text("Start the configured run (the demo: SISS on the memorised T-shirt).")
            .clicked()
        {
            app.state.start();
        }
        if ui
            .add_enabled(!running, egui::Button::new("Preview"))
            .on_hover_text("Evaluate the original model as the configured run would (samples, forgetting and quality figures) and estimate the run's cost, without starting it. The run reuses the evaluation.")
            .clicked()
        {
            app.state.preview();
        }
        if ui
            .add_enabled(running && !paused, egui::Button::new("Pause"))
            .clicked()
        {
            app.state.pause();
        }
        if ui
            .add_enabled(running && paused, egui::Button::new("Resume"))
            .clicked()
        {
            app.state.resume();
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel"))
            .on_hover_text("Stop after the current step; the run directory keeps a checkpoint.")
            .clicked()
        {
            app.state.cancel();
        }
        if ui
            .add_enabled(running, egui::Button::new("Sample now"))
            .clicked()
        {
            app.state.sample_now();
        }
        if ui
            .add_enabled(running, egui::Button::new("Evaluate now"))
            .clicked()
        {
            app.state.evaluate_now();
        }
        if !app.state.queue.is_empty() {
            ui.label(format!("{} queued", app.state.queue.len()));
        }
    });
    if let Some(live) = app.state.live.as_ref().filter(|l| l.preview) {
        preview_status(app, live, ui);
    } else if let Some(live) = &app.state.live {
        let mut text = format!(
            "{} — {:?} — step {}/{}",
            live.title, live.phase, live.steps_done, live.total_steps
        );
        if let Some(rate) = live.steps_per_second() {
            text.push_str(&format!(", {rate:.2} steps/s"));
        }
        if let Some(eta) = live.eta_seconds()
            && !live.phase.is_over()
        {
            text.push_str(&format!(", ETA {}", format_duration(eta)));
        }
        ui.add(egui::ProgressBar::new(live.progress()).text(text));
        if let Phase::Failed(e) = &live.phase {
            ui.colored_label(
                ui.visuals().error_fg_color,
                crate::app::live::displayable(e),
            );
        }
        for warning in &live.warnings {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!("Uninformative: {}", crate::app::live::displayable(warning)),
            );
        }
        if let Some(estimate) = &live.estimate {
            if let Some(warning) = estimate.warning() {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    crate::app::live::displayable(&warning),
                );
            }
            for line in estimate.lines() {
                ui.weak(crate::app::live::displayable(&line))
                    .on_hover_text("from a timed forward of this model on this device");
            }
        }
        if let Some((w, check)) = &live.guidance {
            ui.weak(format!(
                "guidance w={w} — {}",
                crate::app::live::displayable(check)
            ));
        }
        if let Some(dir) = &live.run_dir {
            ui.weak(format!(
                "{} on {} · forget {} / retain {} images · {}",
                live.method,
                live.backend,
                live.forget_images,
                live.retain_images,
                dir.display()
            ));
        }
    }
}

/// A preview's line under the controls: working, ready (and whether the settings changed
/// since), or why it failed; its notes, warnings and guidance as a run shows them.
fn preview_status(app: &LetheApp, live: &LiveRun, ui: &mut egui::Ui) {
    match &live.phase {
        Phase::Failed(e) => {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("Preview failed: {}", crate::app::live::displayable(e)),
            );
        }
        phase if !phase.is_over() => {
            let doing = live.notes.last().map_or("starting", String::as_str);
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!(
                    "Previewing the original model: {}",
                    crate::app::live::displayable(doing)
                ));
            });
        }
        _ if app.state.preview_is_stale() => {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "The model, data or evaluation settings changed since this preview: Preview again to see the original as the run would.",
            );
        }
        _ => {
            ui.label("The original model, evaluated as the configured run will start (the run reuses this evaluation).");
        }
    }
    for warning in &live.warnings {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("Uninformative: {}", crate::app::live::displayable(warning)),
        );
    }
    if let Some((w, check)) = &live.guidance {
        ui.weak(format!(
            "guidance w={w} — {}",
            crate::app::live::displayable(check)
        ));
    }
}

/// A preview's body: the original's grid and each figure with how it was computed.
fn preview(app: &mut LetheApp, ui: &mut egui::Ui) {
    let Some(live) = &app.state.live else { return };
    if live.original.is_empty() {
        ui.label("The original model's samples appear here once evaluated.");
        return;
    }
    let n = live.original.len();
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let original = app
        .textures
        .get(
            ui.ctx(),
            "preview-original",
            live.texture_version(0),
            || textures::grid_image(&live.original, live.shape, cols),
        )
        .clone();
    let size = original.size_vec2();
    let scale = ((ui.available_width() - 40.0) / (2.0 * size.x)).min(4.0);
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.label("original model");
            ui.image((original.id(), size * scale));
        });
        ui.vertical(|ui| {
            ui.label("its figures (the baseline of every evaluation of the run)");
            if let Some(baseline) = &live.baseline {
                let provenance = crate::app::live::metric_provenance(baseline);
                egui::Grid::new("preview-figures")
                    .striped(true)
                    .show(ui, |ui| {
                        for ((name, value), how) in crate::app::live::metric_values(baseline)
                            .into_iter()
                            .zip(provenance)
                        {
                            ui.label(crate::app::live::displayable(&name))
                                .on_hover_text(&how);
                            ui.label(figure(&name, value)).on_hover_text(how);
                            ui.end_row();
                        }
                    });
            }
        });
    });
}

/// A figure as the headline writes it: rates in percent, the rest with three decimals.
fn figure(name: &str, value: f64) -> String {
    match MetricAxis::of(name) {
        MetricAxis::Rate => format!("{:.1}%", 100.0 * value),
        MetricAxis::Fid => format!("{value:.1}"),
        MetricAxis::Information => format!("{value:.3}"),
    }
}

fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn grids(app: &mut LetheApp, ui: &mut egui::Ui) {
    let Some(live) = &app.state.live else { return };
    if live.grids.is_empty() {
        ui.label(
            "Sample grids appear after the first evaluation (original vs current, same seeds).",
        );
        return;
    }
    let steps: Vec<usize> = live.grids.iter().map(|g| g.step).collect();
    let newest = *steps.last().expect("non-empty");
    let mut shown = app.grid_step.unwrap_or(newest).min(newest);
    ui.horizontal(|ui| {
        ui.label("Grid at step");
        let slider = ui.add(egui::Slider::new(&mut shown, 0..=newest).text("step"));
        let slider = slider.on_hover_text("Scrub back through the grids recorded during the run.");
        if slider.changed() {
            app.grid_step = if shown >= newest { None } else { Some(shown) };
        }
        if app.grid_step.is_some() && ui.button("Follow newest").clicked() {
            app.grid_step = None;
        }
    });
    let Some(grid) = live.grid_at(shown) else {
        return;
    };
    let n = grid.current.len().min(live.original.len());
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let version = live.texture_version(grid.step);
    let step = grid.step;
    let original = app
        .textures
        .get(ui.ctx(), "grid-original", live.texture_version(0), || {
            textures::grid_image(&live.original[..n], live.shape, cols)
        })
        .clone();
    let current = app
        .textures
        .get(ui.ctx(), "grid-current", version, || {
            textures::grid_image(&grid.current[..n], live.shape, cols)
        })
        .clone();
    let diff = Arc::new(difference_grid(
        &live.original[..n],
        &grid.current[..n],
        live.shape,
        cols,
    ));
    let size = original.size_vec2();
    // Small images (28 px) are enlarged up to 4×; large ones (256 px) shrink so all three fit.
    let scale = ((ui.available_width() - 40.0) / (3.0 * size.x)).min(4.0);
    let shown_size = size * scale;
    ui.horizontal(|ui| {
        for (title, tex) in [
            ("original model", &original),
            (&*format!("current (step {step})"), &current),
        ] {
            ui.vertical(|ui| {
                ui.label(title);
                ui.image((tex.id(), shown_size));
            });
        }
        ui.vertical(|ui| {
            ui.label("|difference| (0 to 1, inferno)")
                .on_hover_text(if app.shader_heatmap {
                    "Drawn by shaders/heatmap.wgsl on the GPU renderer."
                } else {
                    "Drawn on the CPU (the renderer is not wgpu)."
                });
            if app.shader_heatmap {
                let (rect, _) = ui.allocate_exact_size(shown_size, egui::Sense::hover());
                ui.painter().add(paint_callback(
                    rect,
                    HeatmapCallback {
                        slot: "live".into(),
                        version,
                        values: diff.clone(),
                    },
                ));
            } else {
                let tex = app.textures.get(ui.ctx(), "grid-diff", version, || {
                    egui::ColorImage::from_rgba_unmultiplied(
                        [diff.width, diff.height],
                        &diff.to_rgba(),
                    )
                });
                ui.image((tex.id(), shown_size));
            }
        });
    });
}

fn plots(app: &mut LetheApp, ui: &mut egui::Ui) {
    let Some(live) = &app.state.live else { return };
    let width = ui.available_width();
    let half = (width - 16.0) / 2.0;
    let top = ui.horizontal(|ui| {
        plot(ui, "Loss terms", "loss-terms", &live.terms, half);
        plot(ui, "Gradient norms", "grad-norms", &live.grad_norms, half);
    });
    ui.horizontal(|ui| {
        let metrics = live.metric_series();
        plot_metrics(ui, live, &metrics, half);
        let mut extra = live.weights.clone();
        for (n, p) in &live.coefficients.lines {
            extra.lines.push((n.clone(), p.clone()));
        }
        plot(
            ui,
            "SISS importance weights / coefficients",
            "weights",
            &extra,
            half,
        );
    });
    app.plot_rect = Some(top.response.rect);
}

fn plot(ui: &mut egui::Ui, title: &str, id: &str, series: &Series, width: f32) {
    ui.vertical(|ui| {
        ui.set_width(width);
        ui.label(title);
        if series.lines.is_empty() {
            ui.weak("no points yet");
        }
        Plot::new(id)
            .height(180.0)
            .width(width)
            .legend(Legend::default())
            .x_axis_label("step")
            .show(ui, |plot_ui| {
                for (name, points) in &series.lines {
                    plot_ui.line(Line::new(name.as_str(), PlotPoints::from(points.clone())));
                }
            });
    });
}

fn plot_metrics(ui: &mut egui::Ui, live: &LiveRun, metrics: &Series, width: f32) {
    ui.vertical(|ui| {
        ui.set_width(width);
        let how = live
            .evaluations
            .last()
            .map(|(_, e)| crate::app::live::metric_provenance(e))
            .unwrap_or_default();
        let short = live
            .evaluations
            .last()
            .and_then(|(_, e)| e.how.as_ref().map(|h| h.short()))
            .unwrap_or_else(|| "not evaluated yet".into());
        ui.label("Metrics (hover for how each was computed)")
            .on_hover_text(how.join("\n"));
        ui.weak(format!("computed with {short}"));
        if let Some(b) = &live.baseline {
            ui.weak(format!(
                "original model: forget-image rate {:.3}{}",
                b.forget_copy_rate,
                b.fid.map(|f| format!(", FID {f:.1}")).unwrap_or_default()
            ));
        }
        // One plot per scale: rates in [0, 1], bits/dim and nats, FID.
        for axis in MetricAxis::ALL {
            let lines: Vec<_> = metrics
                .lines
                .iter()
                .filter(|(n, _)| MetricAxis::of(n) == axis)
                .cloned()
                .collect();
            if lines.is_empty() {
                continue;
            }
            ui.weak(axis.title());
            let plot = Plot::new(("metrics", axis.title()))
                .height(110.0)
                .width(width)
                .legend(Legend::default())
                .x_axis_label("step");
            let plot = if axis == MetricAxis::Rate {
                plot.include_y(0.0).include_y(1.0)
            } else {
                plot
            };
            plot.show(ui, |plot_ui| {
                for (name, points) in &lines {
                    plot_ui.line(Line::new(name.as_str(), PlotPoints::from(points.clone())));
                }
            });
        }
    });
}

fn exports_and_attack(app: &mut LetheApp, ui: &mut egui::Ui) {
    let Some(live) = &app.state.live else { return };
    let finished_dir = live.phase.is_over().then(|| live.run_dir.clone()).flatten();
    ui.horizontal_wrapped(|ui| {
        ui.strong("Export");
        if ui.button("Metrics CSV + JSON").clicked() {
            app.export.last = Some(
                export::export_dir(live)
                    .and_then(|d| export::write_metrics(live, &d))
                    .map(|paths| paths[0].clone()),
            );
        }
        if ui.button("Grid PNG").clicked() {
            let step = app.grid_step.unwrap_or(usize::MAX);
            app.export.last =
                Some(export::export_dir(live).and_then(|d| export::write_grid(live, step, &d)));
        }
        if ui.button("Plots PNG").clicked()
            && let (Some(rect), Ok(dir)) = (app.plot_rect, export::export_dir(live))
        {
            let path = dir.join(format!("plots_step_{:05}.png", live.steps_done));
            app.export.request_plot_png(ui.ctx(), rect, path);
        }
        let checkpoint = live.summary.as_ref().and_then(|s| s.last_checkpoint.clone());
        if ui
            .add_enabled(checkpoint.is_some(), egui::Button::new("Checkpoint…"))
            .on_hover_text("Copy the unlearned checkpoint (diffusers layout, provenance in its safetensors header) to a new folder.")
            .clicked()
            && let Some(source) = checkpoint
            && let Some(parent) = rfd::FileDialog::new().pick_folder()
        {
            let name = live
                .run_dir
                .as_ref()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "lethe-checkpoint".into());
            let dest = parent.join(name);
            app.export.last = Some(export::copy_checkpoint(&source, &dest).map(|()| dest));
        }
        match &app.export.last {
            Some(Ok(p)) => {
                ui.label(format!("saved {}", p.display()));
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
    });
    ui.horizontal(|ui| {
        ui.strong("Attack");
        ui.add(egui::DragValue::new(&mut app.state.attack.steps).range(1..=100_000).prefix("steps "));
        ui.add(egui::DragValue::new(&mut app.state.attack.evaluate_every).range(1..=10_000).prefix("probe every "));
        let enabled = finished_dir.is_some() && !app.state.is_running();
        if ui
            .add_enabled(enabled, egui::Button::new("Run DiMRA attack"))
            .on_hover_text("Fine-tune the unlearned model on the retain data (never the forget data) and watch whether the forgotten content's rate climbs back (DiMRA; docs/methods.md).")
            .clicked()
            && let Some(dir) = finished_dir
        {
            app.state.start_attack(&dir);
        }
    });
}
