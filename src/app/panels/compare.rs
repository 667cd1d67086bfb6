//! Compare: the runs table (from the runs directory), overlaid metric curves of the selected
//! runs, the quality-vs-forgetting trade-off plot with its Pareto front, and sweeps.

use std::collections::BTreeSet;

use eframe::egui;
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoints, Points};

use crate::app::LetheApp;
use crate::app::live::metric_values;
use crate::app::runs::pareto_front;
use crate::app::state::SweepKnob;

/// Metrics that can be overlaid, by their plain name (provenance goes in the legend).
const OVERLAY: [&str; 5] = [
    "forget-image rate",
    "forgotten-class rate",
    "FID",
    "ELBO forget (bits/dim)",
    "ELBO retain (bits/dim)",
];

/// Width of the runs table's knobs column (points).
const KNOBS_WIDTH: f32 = 220.0;

/// How often a sweep's directory is re-read while the compare view shows it: its trials
/// may be run by other processes (`lethe sweep run`, a Slurm array).
const SWEEP_REFRESH: std::time::Duration = std::time::Duration::from_secs(3);

pub fn show(app: &mut LetheApp, ui: &mut egui::Ui) {
    if app.state.runs_source.is_some() {
        let due = app
            .state
            .runs_read_at
            .is_none_or(|t| t.elapsed() >= SWEEP_REFRESH);
        if due {
            app.state.refresh_runs();
        }
        ui.ctx().request_repaint_after(SWEEP_REFRESH);
    }
    ui.horizontal(|ui| {
        if ui.button("Refresh runs").clicked() {
            app.state.refresh_runs();
        }
        source_choice(app, ui);
        ui.label(format!(
            "{} runs in {}",
            app.state.runs.len(),
            app.state.runs_shown().display()
        ));
        if let Some(summary) = &app.state.sweep_summary {
            ui.label(format!("— {summary}"));
        }
    });
    for p in &app.state.run_problems {
        ui.colored_label(ui.visuals().warn_fg_color, p);
    }
    sweep(app, ui);
    ui.separator();
    egui::ScrollArea::vertical().show(ui, |ui| {
        // A table wider than the window scrolls sideways instead of running off its edge.
        egui::ScrollArea::horizontal()
            .id_salt("runs-table-scroll")
            .show(ui, |ui| table(app, ui));
        ui.separator();
        ui.horizontal(|ui| {
            let half = (ui.available_width() - 16.0) / 2.0;
            ui.vertical(|ui| {
                ui.set_width(half);
                tradeoff(app, ui, half);
            });
            ui.vertical(|ui| {
                ui.set_width(half);
                overlay(app, ui, half);
            });
        });
    });
}

/// Which directory the table and plots show: the runs directory or one of its sweeps.
fn source_choice(app: &mut LetheApp, ui: &mut egui::Ui) {
    let name = |p: &std::path::Path| {
        p.file_name().map_or(p.display().to_string(), |n| {
            n.to_string_lossy().into_owned()
        })
    };
    let shown = match &app.state.runs_source {
        Some(dir) => format!("sweep {}", name(dir)),
        None => "all runs".to_string(),
    };
    let mut choice = None;
    egui::ComboBox::from_id_salt("runs-source")
        .selected_text(shown)
        .show_ui(ui, |ui| {
            if ui
                .selectable_label(app.state.runs_source.is_none(), "all runs")
                .clicked()
            {
                choice = Some(None);
            }
            for dir in app.state.sweep_dirs() {
                let selected = app.state.runs_source.as_ref() == Some(&dir);
                if ui
                    .selectable_label(selected, format!("sweep {}", name(&dir)))
                    .on_hover_text(dir.display().to_string())
                    .clicked()
                {
                    choice = Some(Some(dir));
                }
            }
        })
        .response
        .on_hover_text("Show the runs directory, or the trials of one sweep in it (made by Queue sweep or `lethe sweep`)");
    if let Some(source) = choice {
        app.state.show_runs_of(source);
    }
    let field = egui::TextEdit::singleline(&mut app.state.sweep_path_field)
        .hint_text("or a sweep directory elsewhere")
        .desired_width(200.0);
    let typed = ui.add(field);
    let entered = typed.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if ui
        .add_enabled(
            !app.state.sweep_path_field.trim().is_empty(),
            egui::Button::new("Open sweep"),
        )
        .clicked()
        || entered
    {
        let path = std::path::PathBuf::from(app.state.sweep_path_field.trim());
        app.state.open_sweep(&path);
    }
}

fn sweep(app: &mut LetheApp, ui: &mut egui::Ui) {
    let knob = app.state.sweep_knob();
    ui.horizontal(|ui| {
        ui.strong("Sweep");
        let name = match knob {
            Some(SweepKnob::SissLambda) => "SISS λ",
            Some(SweepKnob::EraseDiffAlpha) => "EraseDiff α",
            None => "(choose SISS or EraseDiff)",
        };
        ui.label(name);
        let s = &mut app.state.sweep;
        ui.add(egui::DragValue::new(&mut s.from).speed(0.01).range(0.0..=1.0).prefix("from "));
        ui.add(egui::DragValue::new(&mut s.to).speed(0.01).range(0.0..=1.0).prefix("to "));
        ui.add(egui::DragValue::new(&mut s.runs).range(1..=20).suffix(" runs"));
        if ui
            .add_enabled(knob.is_some(), egui::Button::new("Queue sweep"))
            .on_hover_text("Queue one run per value with the current settings; each joins the table and the trade-off plot when it finishes.")
            .clicked()
        {
            app.state.queue_sweep();
        }
        if !app.state.queue.is_empty() {
            ui.label(format!("{} queued", app.state.queue.len()));
        }
    });
}

fn table(app: &mut LetheApp, ui: &mut egui::Ui) {
    let mut toggled = Vec::new();
    let mut attack = None;
    let mut resume = None;
    let can_attack = !app.state.is_running();
    egui::Grid::new("runs-table")
        .striped(true)
        .num_columns(10)
        .show(ui, |ui| {
            for h in [
                "run (tick to overlay)",
                "method",
                "knobs",
                "status",
                "steps",
                "time",
                "forgetting",
                "FID",
                "ELBO forget",
            ] {
                ui.strong(h);
            }
            ui.strong("");
            ui.end_row();
            for row in &app.state.runs {
                let mut selected = app.state.selected_runs.contains(&row.path);
                if ui
                    .checkbox(&mut selected, &row.name)
                    .on_hover_text(format!("Overlay this run's curves\n{}", row.path.display()))
                    .changed()
                {
                    toggled.push(row.path.clone());
                }
                ui.label(&row.info.method);
                // Long knob lists are cut to a column width; the whole list is on hover.
                ui.scope(|ui| {
                    ui.set_max_width(KNOBS_WIDTH);
                    ui.add(egui::Label::new(&row.knobs).truncate())
                        .on_hover_text(&row.knobs);
                });
                // Beside the status, so it is on screen however wide the table grows.
                ui.horizontal(|ui| {
                    ui.label(row.info.status.label());
                    if row.info.status.resumable()
                        && ui
                            .add_enabled(can_attack, egui::Button::new("Resume run"))
                            .on_hover_text(format!(
                                "Continue this {} run from its last saved state (step {} of {})",
                                row.info.status.label(),
                                row.info.steps_done,
                                row.info.total_steps
                            ))
                            .clicked()
                    {
                        resume = Some(row.path.clone());
                    }
                });
                ui.label(format!("{}/{}", row.info.steps_done, row.info.total_steps));
                ui.label(format!("{:.0} s", row.info.seconds));
                ui.label(
                    row.forgetting()
                        .map(|v| format!("{v:.3}"))
                        .unwrap_or("—".into()),
                );
                ui.label(row.fid().map(|v| format!("{v:.1}")).unwrap_or("—".into()))
                    .on_hover_text(row.fid_provenance().unwrap_or_default());
                let elbo = row.last.as_ref().and_then(|(_, e)| e.elbo_forget_bpd);
                ui.label(elbo.map(|v| format!("{v:.2}")).unwrap_or("—".into()));
                if ui
                    .add_enabled(
                        can_attack && row.info.last_checkpoint.is_some(),
                        egui::Button::new("Attack"),
                    )
                    .on_hover_text("Run DiMRA on this run's last checkpoint")
                    .clicked()
                {
                    attack = Some(row.path.clone());
                }
                ui.end_row();
            }
        });
    for path in toggled {
        if !app.state.selected_runs.remove(&path) {
            app.state.selected_runs.insert(path);
        }
    }
    if let Some(run) = attack {
        app.state.start_attack(&run);
        app.tab = crate::app::Tab::Live;
    }
    if let Some(run) = resume {
        app.state.continue_run(&run);
        app.tab = crate::app::Tab::Live;
    }
}

fn tradeoff(app: &mut LetheApp, ui: &mut egui::Ui, width: f32) {
    ui.label(
        "Trade-off: quality (FID, lower is better) vs forgetting rate (lower = more forgotten)",
    );
    let runs: Vec<_> = app
        .state
        .runs
        .iter()
        .filter_map(|r| Some((r, [r.forgetting()?, r.fid()?])))
        .collect();
    let provenances: BTreeSet<String> = runs
        .iter()
        .filter_map(|(r, _)| r.fid_provenance())
        .collect();
    if provenances.len() > 1 {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!(
                "Warning: these FIDs were computed differently and are not comparable: {}",
                provenances.into_iter().collect::<Vec<_>>().join(" | ")
            ),
        );
    }
    let points: Vec<[f64; 2]> = runs.iter().map(|(_, p)| *p).collect();
    let front = pareto_front(&points);
    let mut front_points: Vec<[f64; 2]> = points
        .iter()
        .zip(&front)
        .filter(|(_, on)| **on)
        .map(|(p, _)| *p)
        .collect();
    front_points.sort_by(|a, b| a[0].total_cmp(&b[0]));
    Plot::new("tradeoff")
        .height(260.0)
        .width(width)
        .legend(Legend::default())
        .x_axis_label("forgetting rate")
        .y_axis_label("FID")
        .show(ui, |plot_ui| {
            for ((run, p), on_front) in runs.iter().zip(&front) {
                let shape = if *on_front {
                    MarkerShape::Diamond
                } else {
                    MarkerShape::Circle
                };
                plot_ui.points(
                    Points::new(run.name.as_str(), PlotPoints::from(vec![*p]))
                        .shape(shape)
                        .radius(if *on_front { 7.0 } else { 4.0 }),
                );
            }
            if front_points.len() > 1 {
                plot_ui.line(
                    Line::new("Pareto front", PlotPoints::from(front_points.clone())).width(2.0),
                );
            }
        });
    if runs.is_empty() {
        ui.weak("Finished runs with an evaluation appear here.");
    }
}

fn overlay(app: &mut LetheApp, ui: &mut egui::Ui, width: f32) {
    ui.horizontal(|ui| {
        ui.label("Overlay selected runs:");
        egui::ComboBox::from_id_salt("overlay-metric")
            .selected_text(OVERLAY[app.overlay_metric.min(OVERLAY.len() - 1)])
            .show_ui(ui, |ui| {
                for (i, name) in OVERLAY.iter().enumerate() {
                    ui.selectable_value(&mut app.overlay_metric, i, *name);
                }
            });
    });
    let metric = OVERLAY[app.overlay_metric.min(OVERLAY.len() - 1)];
    let selected: Vec<_> = app
        .state
        .runs
        .iter()
        .filter(|r| app.state.selected_runs.contains(&r.path))
        .collect();
    Plot::new("overlay")
        .height(260.0)
        .width(width)
        .legend(Legend::default())
        .x_axis_label("step")
        .show(ui, |plot_ui| {
            for run in &selected {
                let points: Vec<[f64; 2]> = run
                    .evaluations
                    .iter()
                    .filter_map(|(s, e)| {
                        metric_values(e)
                            .into_iter()
                            .find(|(n, _)| n == metric)
                            .map(|(_, v)| [*s as f64, v])
                    })
                    .collect();
                if !points.is_empty() {
                    plot_ui.line(Line::new(run.name.as_str(), PlotPoints::from(points)));
                }
            }
        });
    if selected.is_empty() {
        ui.weak("Tick runs in the table to overlay their curves.");
    }
}
