//! The egui workbench (feature `gui`). `state` and its helpers hold all logic without egui;
//! `panels/` are thin views that read the state and call its methods; `LetheApp` owns the
//! engine and, once per frame, drains its events and sends the commands the panels queued.

pub mod checkpoint_view;
pub mod colormap;
pub mod export;
pub mod frame_bench;
pub mod frame_stats;
pub mod heatmap;
pub mod knobs;
pub mod live;
pub mod panels;
pub mod remote;
pub mod runs;
pub mod screenshot;
pub mod sets;
pub mod state;
mod textures;

use std::time::Instant;

use eframe::egui;

use crate::engine::Engine;
pub use state::Workbench;

const SETTINGS_KEY: &str = "lethe-settings";

/// Which tab the central area shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Live,
    Compare,
}

pub struct LetheApp {
    pub state: Workbench,
    engine: Engine,
    pub tab: Tab,
    /// The grid step the slider shows (`None` = follow the newest).
    pub grid_step: Option<usize>,
    /// Whether the heat map is drawn by the WGSL shader (wgpu renderer) or on the CPU.
    pub shader_heatmap: bool,
    pub frames: frame_stats::FrameStats,
    /// `lethe --frame-log FILE`: the frame statistics written out every few seconds.
    pub frame_log: Option<frame_stats::FrameLog>,
    textures: textures::Textures,
    pub export: export::ExportState,
    /// Where the drop zones were drawn last frame (files dropped over one go to it).
    pub drop_zones: Vec<(panels::DropTarget, egui::Rect)>,
    /// The live view's plot area, for "Save plot as PNG".
    pub plot_rect: Option<egui::Rect>,
    /// Retain thumbnails page shown in the picker.
    pub picker_page: usize,
    /// Runs shown overlaid in the compare tab's curves.
    pub overlay_metric: usize,
}

impl LetheApp {
    /// The app as eframe creates it: settings from the last launch, else the demo.
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value::<state::Settings>(s, SETTINGS_KEY));
        let state = match settings {
            Some(s) => Workbench::with_settings(s),
            None => Workbench::demo(),
        };
        Self::created_with(cc, state)
    }

    /// The app eframe (or the offscreen renderer) creates around `state`: the shader heat
    /// map registered where the renderer is wgpu.
    pub fn created_with(cc: &eframe::CreationContext<'_>, state: Workbench) -> Self {
        let shader_heatmap = match &cc.wgpu_render_state {
            Some(rs) => {
                heatmap::register(rs);
                true
            }
            None => false,
        };
        Self::with_state(state, &cc.egui_ctx, shader_heatmap)
    }

    pub fn with_state(state: Workbench, ctx: &egui::Context, shader_heatmap: bool) -> Self {
        let repaint = ctx.clone();
        let engine = Engine::spawn(Some(std::sync::Arc::new(move || repaint.request_repaint())));
        Self {
            state,
            engine,
            tab: Tab::Live,
            grid_step: None,
            shader_heatmap,
            frames: frame_stats::FrameStats::default(),
            frame_log: None,
            textures: textures::Textures::default(),
            export: export::ExportState::default(),
            drop_zones: Vec::new(),
            plot_rect: None,
            picker_page: 0,
            overlay_metric: 0,
        }
    }

    /// Drains the engine's events (never blocks) and sends queued commands.
    pub fn pump(&mut self) -> usize {
        for command in self.state.outbox.drain(..) {
            self.engine.send(command);
        }
        self.state.poll_remote();
        self.state.poll_sets();
        let mut applied = 0;
        while let Ok(event) = self.engine.events().try_recv() {
            self.state.apply(event);
            applied += 1;
        }
        // A queued sweep run may have started on a terminal event.
        for command in self.state.outbox.drain(..) {
            self.engine.send(command);
        }
        applied
    }

    /// One frame of the whole workbench (what `App::ui` calls; also the frame benchmark).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let start = Instant::now();
        self.pump();
        self.handle_dropped_files(ui.ctx());
        panels::show(self, ui);
        self.export.poll_screenshot(ui.ctx());
        // Background connects, round-trip probes and set loads are polled by frames.
        if self.state.remote.busy()
            || self.state.forget.is_loading()
            || self.state.retain.is_loading()
        {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        } else if self.state.config.header.backend == crate::backend::BackendChoice::Remote {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_secs(1));
        }
        self.frames.record(start.elapsed());
        if let Some(log) = &mut self.frame_log {
            log.tick(&self.frames, self.state.live.as_ref().map(|l| l.steps_done));
        }
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<std::path::PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if dropped.is_empty() {
            return;
        }
        let pointer = ctx.input(|i| i.pointer.latest_pos());
        panels::route_drop(self, pointer, dropped);
    }
}

impl eframe::App for LetheApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.state.settings());
    }
}

/// What `lethe` asks of the window beyond the workbench it opens with.
#[derive(Debug, Default)]
pub struct LaunchOptions {
    /// Start the loaded experiment once its sets are in (`--start`).
    pub start: bool,
    /// Write frame statistics here every few seconds (`--frame-log`).
    pub frame_log: Option<std::path::PathBuf>,
}

/// Opens the workbench window: with `workbench` when given (`lethe --config FILE`), else the
/// settings saved by the last session, else the demo.
pub fn launch_with(workbench: Option<Workbench>, launch: LaunchOptions) -> Result<(), String> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Lethe — machine unlearning workbench")
            .with_inner_size([1440.0, 900.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "lethe",
        options,
        Box::new(move |cc| {
            let mut app = match workbench {
                Some(state) => LetheApp::created_with(cc, state),
                None => LetheApp::new(cc),
            };
            // The right half shows the original model from the start, not after Run.
            app.state.preview();
            app.state.start_when_ready = launch.start;
            app.frame_log = launch.frame_log.map(frame_stats::FrameLog::new);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| format!("could not open the workbench window: {e}"))
}

pub fn launch() -> Result<(), String> {
    launch_with(None, LaunchOptions::default())
}
