//! The left column: checkpoint, data, method and its knobs, run controls.

use std::path::PathBuf;

use eframe::egui;

use super::{DropTarget, drop_zone};
use crate::app::LetheApp;
use crate::app::knobs::{self, Knob, KnobValue};
use crate::app::sets::{Role, SetView};
use crate::app::state::method_choices;
use crate::app::textures;

/// Thumbnails in a set's strip and per picker page.
const STRIP: usize = 12;
const PICKER_PAGE: usize = 48;

pub fn show(app: &mut LetheApp, ui: &mut egui::Ui) {
    egui::CollapsingHeader::new("Checkpoint")
        .default_open(true)
        .show(ui, |ui| checkpoint(app, ui));
    egui::CollapsingHeader::new("Data")
        .default_open(true)
        .show(ui, |ui| data(app, ui));
    egui::CollapsingHeader::new("Method")
        .default_open(true)
        .show(ui, |ui| method(app, ui));
    egui::CollapsingHeader::new("Training")
        .default_open(false)
        .show(ui, |ui| training(app, ui));
    // Outside the (closed by default) Training section: the cost is read before Run.
    ui.separator();
    expected_cost(app, ui);
}

fn checkpoint(app: &mut LetheApp, ui: &mut egui::Ui) {
    drop_zone(app, ui, DropTarget::Checkpoint, |app, ui| {
        ui.horizontal(|ui| {
            let field = ui.add(
                egui::TextEdit::singleline(&mut app.state.checkpoint_field)
                    .desired_width(220.0)
                    .hint_text("diffusers folder or runs/…/checkpoints/final"),
            );
            let field = field.labelled_by(ui.label("Path").id);
            if ui.button("Load").clicked()
                || (field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)))
            {
                let dir = PathBuf::from(app.state.checkpoint_field.trim());
                app.state.load_checkpoint(dir);
            }
            if ui
                .button("Open…")
                .on_hover_text(
                    "Folder dialog (xdg portal); you can also type a path or drop a folder here.",
                )
                .clicked()
                && let Some(dir) = rfd::FileDialog::new().pick_folder()
            {
                app.state.load_checkpoint(dir);
            }
        });
        match &app.state.checkpoint {
            Ok(view) => {
                let c = &view.config;
                egui::Grid::new("ckpt-info").num_columns(2).show(ui, |ui| {
                    ui.label("resolution");
                    let colour = match c.in_channels {
                        1 => "grayscale (1 channel)".to_string(),
                        3 => "RGB (3 channels)".to_string(),
                        n => format!("{n} channels"),
                    };
                    ui.label(format!("{0}×{0}, {colour}", c.sample_size));
                    ui.end_row();
                    ui.label("blocks");
                    ui.label(format!(
                        "{:?} × {}",
                        c.block_out_channels, c.layers_per_block
                    ));
                    ui.end_row();
                    ui.label("conditioning");
                    ui.label(view.conditioning());
                    ui.end_row();
                    ui.label("parameters");
                    ui.label(format!("{} in {} tensors", view.parameters, view.tensors));
                    ui.end_row();
                    ui.label("scheduler");
                    ui.label(&view.scheduler);
                    ui.end_row();
                });
                ui.collapsing(
                    format!("provenance ({} entries)", view.provenance.len()),
                    |ui| {
                        if view.provenance.is_empty() {
                            ui.label("none recorded");
                        }
                        for (k, v) in &view.provenance {
                            ui.label(format!("{k}: {v}"));
                        }
                    },
                );
            }
            Err(e) if e.is_empty() => {
                ui.label("No checkpoint loaded.");
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
        }
    });
}

fn data(app: &mut LetheApp, ui: &mut egui::Ui) {
    for role in [Role::Forget, Role::Retain] {
        drop_zone(app, ui, DropTarget::Set(role), |app, ui| {
            set_zone(app, ui, role)
        });
    }
    forget_class(app, ui);
    ui.collapsing("Pick images to forget from the retain set", |ui| {
        picker(app, ui)
    });
}

fn set_zone(app: &mut LetheApp, ui: &mut egui::Ui, role: Role) {
    let class_setting = role == Role::Forget && app.state.config.data.forget_class.is_some();
    ui.horizontal(|ui| {
        ui.strong(format!("{} set", role.name()));
        let set = match role {
            Role::Forget => &app.state.forget,
            Role::Retain => &app.state.retain,
        };
        if class_setting {
            let class = app.state.config.data.forget_class.unwrap_or(0);
            ui.label(format!("class {class} of the retain set"));
        } else {
            ui.label(count(set.len(), "image"));
        }
        if ui.button(format!("Add {} files…", role.name())).clicked()
            && let Some(files) = rfd::FileDialog::new().pick_files()
        {
            app.state.add_files(role, &files);
        }
    });
    ui.weak("drop image files, folders or MNIST/CIFAR files here");
    let set = match role {
        Role::Forget => &mut app.state.forget,
        Role::Retain => &mut app.state.retain,
    };
    let mut remove = None;
    for (i, source) in set.sources.iter().enumerate() {
        ui.horizontal(|ui| {
            if ui
                .small_button("remove")
                .on_hover_text("Remove this source")
                .clicked()
            {
                remove = Some(i);
            }
            ui.label(
                source
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
            );
        });
    }
    let spec = app
        .state
        .checkpoint
        .as_ref()
        .map(|c| c.image_spec())
        .unwrap_or(crate::data::demo::MNIST_SPEC);
    if let Some(i) = remove {
        set.remove_source(i, spec);
    }
    let cancelled = loading_progress(ui, set);
    if let Some(images) = &set.images
        && !class_setting
    {
        // Spread over the set: sources are often sorted by class.
        let n = images.len();
        let shown: Vec<usize> = (0..n.min(STRIP)).map(|k| k * n / n.min(STRIP)).collect();
        let version = set.version;
        let slot = format!("strip-{}", role.name());
        let tex = app.textures.get(ui.ctx(), &slot, version, || {
            textures::thumbnails(images, &shown, STRIP)
        });
        let size = tex.size_vec2();
        let scale = (ui.available_width() / size.x).min(2.0);
        ui.add(
            egui::Image::new((tex.id(), size * scale))
                .alt_text(format!("{} set thumbnails", role.name())),
        );
    }
    if !set.rejected.is_empty() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("{} rejected:", set.rejected.len()),
        );
        for r in set.rejected.iter().take(20) {
            ui.label(format!(
                "{}: {}",
                r.path
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
                crate::app::live::displayable(&r.reason)
            ))
            .on_hover_text(r.path.display().to_string());
        }
    }
    if cancelled {
        app.state.status = format!("{}: loading cancelled", role.name());
    }
}

/// A load under way: how far it is, and a button to stop it (the set keeps what it had).
/// Whether it was stopped.
fn loading_progress(ui: &mut egui::Ui, set: &mut SetView) -> bool {
    let Some(load) = &set.loading else {
        return false;
    };
    let (done, total) = load.progress.counts();
    let mut cancel = false;
    ui.horizontal(|ui| {
        let fraction = if total == 0 {
            0.0
        } else {
            done as f32 / total as f32
        };
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(180.0)
                .text(format!("loading {done} of {total} files")),
        );
        cancel = ui
            .button("Cancel loading")
            .on_hover_text("Stop loading; the set keeps what it had")
            .clicked();
    });
    if cancel {
        set.cancel_load();
    }
    cancel
}

fn forget_class(app: &mut LetheApp, ui: &mut egui::Ui) {
    let classes = app.state.retain.classes();
    let current = app.state.config.data.forget_class;
    let text = match current {
        Some(c) => format!("class {c}"),
        None => "none (forget the files above)".into(),
    };
    ui.horizontal(|ui| {
        ui.label("Forget a whole class:");
        let mut chosen = current;
        egui::ComboBox::from_id_salt("forget-class")
            .selected_text(text)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut chosen, None, "none");
                for c in classes {
                    ui.selectable_value(&mut chosen, Some(c), format!("class {c}"));
                }
            });
        if chosen != current {
            app.state.forget_class(chosen);
        }
    });
    if app.state.config.data.forget_class.is_some() {
        guidance(app, ui);
    }
    if app.state.config.data.forget_class.is_none() {
        let mut labelled = app.state.config.data.forget_label.is_some();
        ui.horizontal(|ui| {
            ui.checkbox(&mut labelled, "forget images' label")
                .on_hover_text("The class the forget images carry in a class-conditional model (the demo's T-shirt is class 10).");
            if labelled {
                let mut label = app.state.config.data.forget_label.unwrap_or(0);
                ui.add(egui::DragValue::new(&mut label).range(0..=999));
                app.state.config.data.forget_label = Some(label);
            } else {
                app.state.config.data.forget_label = None;
            }
        });
    }
}

/// The class setting's guidance weight: automatic (the guidance check on the original chooses
/// it when the run starts) or set by hand, with the last run's check beside it.
fn guidance(app: &mut LetheApp, ui: &mut egui::Ui) {
    let current = app.state.config.eval.guidance;
    ui.horizontal(|ui| {
        ui.label("Guidance w:");
        let mut auto = current.is_none();
        ui.checkbox(&mut auto, "auto").on_hover_text(
            "Chosen when the run starts: the first of 2, 1, 3, 0 under which the original model draws the forgotten class in at least 50% of 32 samples.",
        );
        let mut w = current.unwrap_or(2.0);
        if !auto {
            ui.add(egui::DragValue::new(&mut w).range(0.0..=10.0).speed(0.1));
        }
        let chosen = (!auto).then_some(w);
        if chosen != current {
            app.state.config.eval.guidance = chosen;
        }
    });
    if let Some((w, check)) = app.state.live.as_ref().and_then(|l| l.guidance.as_ref()) {
        ui.weak(format!(
            "last run: w={w} — {}",
            crate::app::live::displayable(check)
        ));
    }
}

fn picker(app: &mut LetheApp, ui: &mut egui::Ui) {
    let Some(images) = &app.state.retain.images else {
        ui.label("Load a retain set first.");
        return;
    };
    let pages = images.len().div_ceil(PICKER_PAGE).max(1);
    app.picker_page = app.picker_page.min(pages - 1);
    ui.horizontal(|ui| {
        if ui.button("Previous").clicked() {
            app.picker_page = app.picker_page.saturating_sub(1);
        }
        ui.label(format!("page {} of {pages}", app.picker_page + 1));
        if ui.button("Next").clicked() {
            app.picker_page = (app.picker_page + 1).min(pages - 1);
        }
    });
    ui.weak("Click an image to move it into the forget set.");
    let start = app.picker_page * PICKER_PAGE;
    let indices: Vec<usize> = (start..(start + PICKER_PAGE).min(images.len())).collect();
    let spec = images.spec;
    let cols = 8;
    let version = app.state.retain.version * 100_000 + app.picker_page as u64;
    let tex = app.textures.get(ui.ctx(), "picker", version, || {
        textures::thumbnails(images, &indices, cols)
    });
    let size = tex.size_vec2();
    let scale = (ui.available_width() / size.x).min(3.0);
    let response = ui.add(
        egui::Image::new((tex.id(), size * scale))
            .alt_text("retain images to pick from")
            .sense(egui::Sense::click()),
    );
    if response.clicked()
        && let Some(pos) = response.interact_pointer_pos()
    {
        // Tiles are spec.width + 2 px wide (2 px gaps), from `images::grid`.
        let local = (pos - response.rect.min) / scale;
        let (tw, th) = ((spec.width + 2) as f32, (spec.height + 2) as f32);
        let (col, row) = ((local.x / tw) as usize, (local.y / th) as usize);
        let k = row * cols + col;
        if col < cols && k < indices.len() {
            app.state.pick_for_forgetting(indices[k]);
        }
    }
}

fn method(app: &mut LetheApp, ui: &mut egui::Ui) {
    let current = app.state.config.method.label();
    let mut chosen = None;
    egui::ComboBox::from_label("Method")
        .selected_text(current)
        .show_ui(ui, |ui| {
            for m in method_choices() {
                let selected = m.slug() == app.state.config.method.slug();
                if ui.selectable_label(selected, m.label()).clicked() {
                    chosen = Some(m);
                }
            }
        });
    if let Some(m) = chosen {
        app.state.choose_method(m);
    }
    if let crate::unlearn::MethodConfig::Siss(c) = &mut app.state.config.method {
        let mut relative = c.scaling.relative_scaling.is_some();
        ui.checkbox(&mut relative, "relative forget scale")
            .on_hover_text("Scale the forget gradient to a fraction of the retain gradient's norm each step (the SISS README's tuning advice, ~0.1) instead of the fixed scaling norm. The demo uses 0.1.");
        if relative {
            let mut v = c.scaling.relative_scaling.unwrap_or(0.1);
            ui.add(
                egui::Slider::new(&mut v, 0.001..=1.0)
                    .logarithmic(true)
                    .text("relative scale"),
            );
            c.scaling.relative_scaling = Some(v);
        } else {
            c.scaling.relative_scaling = None;
        }
    }
    method_choices_knobs(app, ui);
    let knobs = knobs::method_knobs(&mut app.state.config.method);
    show_knobs(ui, knobs);
}

/// The methods' non-numeric knobs: EraseDiff's forgetting target, VDU's stability term,
/// DiMUM's substitute.
fn method_choices_knobs(app: &mut LetheApp, ui: &mut egui::Ui) {
    use crate::unlearn::MethodConfig;
    use crate::unlearn::erasediff::ForgetTarget;
    use crate::unlearn::vdu::Stability;
    let classes = app.state.retain.classes();
    match &mut app.state.config.method {
        MethodConfig::EraseDiff(c) => {
            egui::ComboBox::from_label("forgetting target")
                .selected_text(format!("{:?}", c.target).to_lowercase())
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut c.target, ForgetTarget::Auto, "auto");
                    ui.selectable_value(&mut c.target, ForgetTarget::Uniform, "uniform");
                    ui.selectable_value(&mut c.target, ForgetTarget::Relabel, "relabel");
                })
                .response
                .on_hover_text("What the forget data's noise prediction is pushed towards: uniform noise (the paper's default for unconditional models; mean 0.5 leaves grey images) or the model's prediction for another class (relabel, better FID on large models, EraseDiff §2.4). auto: uniform for unconditional, relabel for class-conditional models.");
        }
        MethodConfig::Vdu(c) => {
            egui::ComboBox::from_label("stability term")
                .selected_text(format!("{:?}", c.stability).to_lowercase())
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut c.stability, Stability::Fisher, "fisher");
                    ui.selectable_value(&mut c.stability, Stability::Constant, "constant");
                })
                .response
                .on_hover_text("How each parameter's anchoring weight is set: the diagonal Fisher on forget batches (default) or one constant variance for all.");
        }
        MethodConfig::Dimum(c) => {
            let text = match c.substitute_class {
                Some(k) => format!("class {k}"),
                None => "lowest retained class".into(),
            };
            egui::ComboBox::from_label("substitute")
                .selected_text(text)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut c.substitute_class, None, "lowest retained class");
                    for k in classes {
                        ui.selectable_value(&mut c.substitute_class, Some(k), format!("class {k}"));
                    }
                })
                .response
                .on_hover_text("DiMUM makes the model memorise these retain images under the forgotten label instead (docs/methods.md, DiMUM). Substitute image files can be set in a TOML config (substitute_images).");
        }
        _ => {}
    }
}

fn training(app: &mut LetheApp, ui: &mut egui::Ui) {
    let c = &mut app.state.config;
    show_knobs(ui, knobs::train_knobs(&mut c.train, &mut c.eval));
    eval_sampler(app, ui);
    feature_net(app, ui);
}

/// What the configured run is expected to cost, before Run: the preview's timings applied to
/// the current steps, batch, method and schedule, with the warning a run would give.
fn expected_cost(app: &mut LetheApp, ui: &mut egui::Ui) {
    use crate::app::live::displayable;
    use crate::experiment::cost::duration;
    match app.state.planned_estimate() {
        Some(estimate) => {
            ui.label(format!(
                "Expected: evaluation ~ {} ({} × {}), training ~ {}",
                duration(estimate.eval_seconds()),
                estimate.evaluations,
                duration(estimate.per_evaluation_seconds()),
                duration(estimate.train_seconds()),
            ))
            .on_hover_text(displayable(&estimate.lines().join("\n")));
            if let Some(warning) = estimate.warning() {
                ui.colored_label(ui.visuals().warn_fg_color, displayable(&warning));
            }
        }
        None => {
            ui.horizontal(|ui| {
                ui.weak("Expected cost: not estimated for these settings yet.");
                if ui
                    .add_enabled(!app.state.is_running(), egui::Button::new("Estimate"))
                    .on_hover_text("Preview: time this model on this device and evaluate the original (the run reuses it).")
                    .clicked()
                {
                    app.state.preview();
                }
            });
        }
    }
}

/// The evaluation's sampler, steps and samples — each fixed or left to the budget — and the
/// budget: DDIM, or DPM-Solver++(2M) for about a third of the network evaluations.
fn eval_sampler(app: &mut LetheApp, ui: &mut egui::Ui) {
    use crate::diffusion::sampler::SamplerKind;
    let eval = &mut app.state.config.eval;
    const AUTO: &str = "Auto (fit the budget)";
    ui.horizontal(|ui| {
        ui.label("Evaluation sampler:");
        egui::ComboBox::from_id_salt("eval-sampler")
            .selected_text(match eval.sampler {
                None => AUTO,
                Some(SamplerKind::DpmSolver2M) => "DPM-Solver++(2M)",
                Some(SamplerKind::Ddpm) => "DDPM",
                Some(SamplerKind::Ddim) => "DDIM",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut eval.sampler, None, AUTO)
                    .on_hover_text("DDIM when the evaluation fits the budget with it on this model and device, else DPM-Solver++(2M).");
                ui.selectable_value(&mut eval.sampler, Some(SamplerKind::Ddim), "DDIM");
                ui.selectable_value(&mut eval.sampler, Some(SamplerKind::DpmSolver2M), "DPM-Solver++(2M)")
                    .on_hover_text("diffusers' DPMSolverMultistepScheduler: 10–20 steps for about what DDIM does in 50.");
            });
        let default_steps = eval.sampling().steps;
        auto_or_value(ui, &mut eval.sampler_steps, default_steps, 1..=1000, "steps")
            .on_hover_text("Denoising steps per sample; auto: 50 for DDIM, 20 for DPM-Solver++(2M) (a preset sets its own).");
    });
    ui.horizontal(|ui| {
        ui.label("Samples per evaluation:");
        let default_samples = eval.sampling().samples;
        auto_or_value(ui, &mut eval.samples, default_samples, 1..=4096, "samples")
            .on_hover_text("Auto: 64 when they fit the budget, else as many as fit (at least 16).");
        ui.label("budget");
        ui.add(
            egui::DragValue::new(&mut eval.budget_seconds)
                .range(0.0..=3600.0)
                .suffix(" s"),
        )
        .on_hover_text("Seconds one evaluation may take when sampler, steps or samples is auto: the run times a forward pass of the model on its device and fits them (0 = no budget).");
    });
    ui.checkbox(&mut eval.at_end, "Evaluate at the end")
        .on_hover_text("Evaluate the result after the last step. Off, with 'evaluate every' at 0, the run evaluates nothing (not even the original) and only trains.");
}

/// A value that is either left to the budget (`None`, "auto") or set; ticking "auto" off
/// starts from what auto would use.
fn auto_or_value(
    ui: &mut egui::Ui,
    value: &mut Option<usize>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    what: &str,
) -> egui::Response {
    let mut auto = value.is_none();
    let response = ui.checkbox(&mut auto, format!("auto {what}"));
    if response.changed() {
        *value = (!auto).then_some(default);
    }
    if let Some(v) = value.as_mut() {
        ui.add(egui::DragValue::new(v).range(range));
    }
    response
}

/// The network FID and precision/recall are computed on: the classifier (MNIST-sized models)
/// or the FID Inception-v3 with a weights file the user has (RGB models; the FID papers quote).
fn feature_net(app: &mut LetheApp, ui: &mut egui::Ui) {
    use crate::metrics::feature_net::FeatureNetChoice;
    let choice = &mut app.state.config.eval.feature_net;
    ui.horizontal(|ui| {
        ui.label("FID features:");
        let mut inception = matches!(choice, FeatureNetChoice::Inception(_));
        egui::ComboBox::from_id_salt("feature-net")
            .selected_text(if inception {
                "FID Inception-v3"
            } else {
                "classifier"
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut inception, false, "classifier")
                    .on_hover_text("The classifier's penultimate layer (MNIST-sized images only).");
                ui.selectable_value(&mut inception, true, "FID Inception-v3")
                    .on_hover_text(
                        "pytorch-fid's network: 2048-d pool3 features, images resized to 299×299.",
                    );
            });
        match (inception, &*choice) {
            (true, FeatureNetChoice::Classifier) => {
                *choice = FeatureNetChoice::Inception(PathBuf::new());
            }
            (false, FeatureNetChoice::Inception(_)) => *choice = FeatureNetChoice::Classifier,
            _ => {}
        }
    });
    if let FeatureNetChoice::Inception(path) = choice {
        ui.horizontal(|ui| {
            let mut text = path.display().to_string();
            let field = ui.add(
                egui::TextEdit::singleline(&mut text)
                    .desired_width(220.0)
                    .hint_text("pt_inception-2015-12-05-6726825d.pth"),
            );
            field
                .labelled_by(ui.label("weights").id)
                .on_hover_text("pytorch-fid's weights file (either torch.save format), or the same tensors as .safetensors.");
            if ui.button("Open…").clicked()
                && let Some(file) = rfd::FileDialog::new().pick_file()
            {
                text = file.display().to_string();
            }
            *path = PathBuf::from(text);
        });
    }
}

fn show_knobs(ui: &mut egui::Ui, knobs: Vec<Knob<'_>>) {
    for mut knob in knobs {
        let (lo, hi) = knob.range;
        let label = knob.label;
        let response = match &mut knob.value {
            KnobValue::F32(v) => ui.add(
                egui::Slider::new(*v, lo as f32..=hi as f32)
                    .logarithmic(knob.logarithmic)
                    .text(label),
            ),
            KnobValue::F64(v) => ui.add(
                egui::Slider::new(*v, lo..=hi)
                    .logarithmic(knob.logarithmic)
                    .text(label),
            ),
            KnobValue::Usize(v) => ui.add(
                egui::Slider::new(*v, lo as usize..=hi as usize)
                    .logarithmic(knob.logarithmic)
                    .text(label),
            ),
            KnobValue::U64(v) => ui.add(egui::Slider::new(*v, lo as u64..=hi as u64).text(label)),
            KnobValue::Bool(v) => ui.checkbox(v, label),
        };
        response.on_hover_text(knob.help);
        if let Some(w) = knob.warning() {
            ui.colored_label(ui.visuals().warn_fg_color, format!("Warning: {w}"));
        }
    }
}

/// `1 image`, `10000 images`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
