//! Thin views over [`super::Workbench`]: each panel reads state and calls its methods.

mod compare;
mod live;
mod setup;

use crate::backend::BackendChoice;
use std::path::PathBuf;

use clap::ValueEnum;
use eframe::egui;

use crate::diffusion::precision::Precision;

use super::sets::Role;
use super::{LetheApp, Tab};

/// Where dropped files can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropTarget {
    Checkpoint,
    Set(Role),
}

pub fn show(app: &mut LetheApp, ui: &mut egui::Ui) {
    app.drop_zones.clear();
    remote_dialog(app, ui.ctx());
    egui::Panel::top("lethe-top").show(ui, |ui| top_bar(app, ui));
    egui::Panel::bottom("lethe-status").show(ui, |ui| status_bar(app, ui));
    egui::Panel::left("lethe-setup")
        .resizable(true)
        .default_size(400.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| setup::show(app, ui));
        });
    egui::CentralPanel::default().show(ui, |ui| match app.tab {
        Tab::Live => live::show(app, ui),
        Tab::Compare => compare::show(app, ui),
    });
}

fn top_bar(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("Lethe");
        ui.separator();
        ui.selectable_value(&mut app.tab, Tab::Live, "Live run");
        ui.selectable_value(&mut app.tab, Tab::Compare, "Compare runs");
        ui.separator();
        let device_label_id = ui.label("Device:").id;
        let selected = match app.state.config.header.backend {
            BackendChoice::Remote => format!(
                "remote: {}",
                app.state.config.header.remote.as_deref().unwrap_or("not set")
            ),
            other => device_label(other),
        };
        let backend = &mut app.state.config.header.backend;
        egui::ComboBox::from_id_salt("backend")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                let choices =
                    std::iter::once(BackendChoice::Auto).chain(crate::backend::compiled_in());
                for choice in choices {
                    ui.selectable_value(backend, choice, device_label(choice));
                }
                if ui
                    .selectable_label(*backend == BackendChoice::Remote, "Remote… (a lethe serve)")
                    .clicked()
                {
                    app.state.remote.dialog_open = true;
                }
            })
            .response
            .labelled_by(device_label_id)
            .on_hover_text("Where training runs. auto: the GPU when one exists and passes the device self-check against the CPU on this model (checked once per device and model), else the CPU; the status bar says which and why once a run starts. `lethe doctor` prints the check in full. Remote…: the device of a `lethe serve` on another machine (checked against this CPU the same way).");
        precision_choice(ui, &mut app.state.config.train.precision);
        ui.label(format!(
            "GUI renderer: {}",
            if app.shader_heatmap { "wgpu" } else { "CPU fallback" }
        ));
    });
}

/// The run's compute precision: the trainable ones (f16 needs loss scaling, which Lethe
/// does not do, so it is offered only by `lethe sample`/`eval`).
fn precision_choice(ui: &mut egui::Ui, precision: &mut Precision) {
    let label = ui.label("Precision:");
    egui::ComboBox::from_id_salt("precision")
        .selected_text(precision.name())
        .show_ui(ui, |ui| {
            for &choice in Precision::value_variants() {
                if choice.check_trainable().is_ok() {
                    ui.selectable_value(precision, choice, choice.name());
                }
            }
        })
        .response
        .labelled_by(label.id)
        .on_hover_text(
            "bf16: mixed precision — convolutions, linears and matmuls in bfloat16 from f32 \
             weights. Faster only on hardware with native bf16 (GPU tensor cores); on CPUs \
             without it, slower. Metrics computed in bf16 say so in their labels.",
        );
}

/// A device menu entry: the wgpu entry names the adapter it would run on.
fn device_label(choice: BackendChoice) -> String {
    match choice {
        BackendChoice::Wgpu => match crate::backend::best_adapter() {
            Some(adapter) => format!("wgpu: {}", adapter.describe()),
            None => "wgpu: no adapter found".into(),
        },
        BackendChoice::Auto => "auto (GPU if it passes the self-check, else CPU)".into(),
        other => other.to_string(),
    }
}

/// The *Remote…* dialog: a `lethe serve` address and token, connected in the background.
fn remote_dialog(app: &mut LetheApp, ctx: &egui::Context) {
    let link = &mut app.state.remote;
    let mut open = link.dialog_open;
    egui::Window::new("Remote device")
        .open(&mut open)
        .resizable(false)
        .collapsible(false)
        .show(ctx, |ui| {
            ui.label("A `lethe serve` on another machine computes; this workbench keeps the run, its data and its run directory.");
            egui::Grid::new("remote-fields").num_columns(2).show(ui, |ui| {
                ui.label("Server:");
                ui.text_edit_singleline(&mut link.url_field)
                    .on_hover_text("ws://HOST:PORT as `lethe serve` prints it");
                ui.end_row();
                ui.label("Token:");
                ui.add(egui::TextEdit::singleline(&mut link.token_field).password(true))
                    .on_hover_text("The server's --token (empty for a loopback server without one); kept in memory only. Prefilled from LETHE_REMOTE_TOKEN.");
                ui.end_row();
            });
            ui.horizontal(|ui| {
                let connecting = matches!(link.state, crate::app::remote::LinkState::Connecting { .. });
                if ui.add_enabled(!connecting, egui::Button::new("Connect")).clicked() {
                    link.connect();
                }
                ui.label(link.describe());
            });
            ui.small("WebSocket is unencrypted: use a token on a trusted network, or an SSH tunnel.");
        });
    link.dialog_open = open;
}

fn status_bar(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.label(crate::app::live::displayable(&app.state.status));
        if app.state.config.header.backend == BackendChoice::Remote {
            ui.separator();
            ui.label(app.state.remote.describe());
        }
        if let Some(live) = app.state.live.as_ref().filter(|l| !l.backend.is_empty()) {
            ui.separator();
            ui.label(format!("computing on {} — {}", live.backend, live.device_reason));
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if let (Some(p50), Some(p99)) =
                (app.frames.quantile_ms(0.5), app.frames.quantile_ms(0.99))
            {
                ui.label(format!(
                    "frame {p50:.1} ms median, {p99:.1} ms p99 (last {} frames)",
                    app.frames.len()
                ))
                .on_hover_text("Time the workbench spends per frame draining events and laying out panels and plots (CPU), excluding GPU painting.");
            }
        });
    });
}

/// Files dropped on the window go to the zone under the pointer.
pub fn route_drop(app: &mut LetheApp, pointer: Option<egui::Pos2>, paths: Vec<PathBuf>) {
    let target = pointer.and_then(|p| {
        app.drop_zones
            .iter()
            .find(|(_, rect)| rect.contains(p))
            .map(|(t, _)| *t)
    });
    match target {
        Some(DropTarget::Set(role)) => app.state.add_files(role, &paths),
        Some(DropTarget::Checkpoint) => {
            if let Some(dir) = paths.into_iter().next() {
                app.state.load_checkpoint(dir);
            }
        }
        None => {
            app.state.status =
                "drop files onto the Forget or Retain zone (or a checkpoint folder onto Checkpoint)"
                    .into()
        }
    }
}

/// A framed drop zone that highlights while files hover over it; returns its response.
fn drop_zone<R>(
    app: &mut LetheApp,
    ui: &mut egui::Ui,
    target: DropTarget,
    contents: impl FnOnce(&mut LetheApp, &mut egui::Ui) -> R,
) -> R {
    let hovering_files = ui.ctx().input(|i| !i.raw.hovered_files.is_empty());
    let pointer = ui.ctx().input(|i| i.pointer.latest_pos());
    let id = ui.scope_id().with(("drop", format!("{target:?}")));
    let previous: Option<egui::Rect> = ui.ctx().data(|d| d.get_temp(id));
    let highlighted =
        hovering_files && matches!((previous, pointer), (Some(r), Some(p)) if r.contains(p));
    let stroke = if highlighted {
        egui::Stroke::new(2.0, ui.visuals().selection.stroke.color)
    } else {
        ui.visuals().widgets.noninteractive.bg_stroke
    };
    let fill = if highlighted {
        ui.visuals().selection.bg_fill.gamma_multiply(0.3)
    } else {
        egui::Color32::TRANSPARENT
    };
    let inner = egui::Frame::group(ui.style())
        .stroke(stroke)
        .fill(fill)
        .show(ui, |ui| {
            ui.set_min_width(ui.available_width());
            contents(app, ui)
        });
    let rect = inner.response.rect;
    ui.ctx().data_mut(|d| d.insert_temp(id, rect));
    app.drop_zones.push((target, rect));
    inner.inner
}
