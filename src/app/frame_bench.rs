//! `lethe bench gui`: the workbench's frame time while a real run streams events, or while
//! a dropped folder loads. The whole UI (event draining, panels, plots, grids, tessellation) runs on a headless egui
//! context at a 60 Hz pace while the engine trains on its own thread; only GPU painting,
//! which needs a window, is left out.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eframe::egui;

use super::frame_stats::quantile;
use super::live::Phase;
use super::sets::Role;
use super::{LetheApp, Workbench};
use crate::experiment::ExperimentConfig;

pub struct FrameReport {
    pub frames: usize,
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Frames that took longer than a 60 Hz display's 16 ms, and when (frame numbers).
    pub slow_frames: Vec<usize>,
    pub wall_seconds: f64,
    pub outcome: String,
}

/// Runs `config` in a headless workbench, one frame every 1/60 s, until the run ends.
pub fn measure(config: ExperimentConfig, timeout: Duration) -> Result<FrameReport, String> {
    let ctx = egui::Context::default();
    let mut state = Workbench::demo();
    state.finish_loading();
    state.config = config;
    let mut app = LetheApp::with_state(state, &ctx, false);
    app.state.start();
    if app.state.outbox.is_empty() {
        return Err(app.state.status.clone());
    }
    frames_until(&mut app, &ctx, timeout, |app| {
        match app.state.live.as_ref().map(|l| l.phase.clone()) {
            Some(Phase::Failed(e)) => Some(Err(format!("the run failed: {e}"))),
            Some(phase) if phase.is_over() => Some(Ok(format!("{phase:?}"))),
            _ => None,
        }
    })
}

/// Drops `paths` on the retain set of a headless workbench and draws a frame every 1/60 s
/// until they have loaded (on the worker thread the workbench starts).
pub fn measure_load(paths: &[PathBuf], timeout: Duration) -> Result<FrameReport, String> {
    let ctx = egui::Context::default();
    let mut state = Workbench::demo();
    state.finish_loading();
    let mut app = LetheApp::with_state(state, &ctx, false);
    // Not timed: the first frames lay out fonts and panels for the first time.
    for _ in 0..10 {
        draw(&mut app, &ctx);
    }
    app.state.add_files(Role::Retain, paths);
    frames_until(&mut app, &ctx, timeout, |app| {
        (!app.state.retain.is_loading()).then(|| Ok(app.state.status.clone()))
    })
}

/// Draws frames of `app` at a 60 Hz pace until `over` says how it ended.
fn frames_until(
    app: &mut LetheApp,
    ctx: &egui::Context,
    timeout: Duration,
    over: impl Fn(&LetheApp) -> Option<Result<String, String>>,
) -> Result<FrameReport, String> {
    let (mut times, mut events) = (Vec::new(), 0);
    let start = Instant::now();
    let frame = Duration::from_secs_f64(1.0 / 60.0);
    loop {
        let t0 = Instant::now();
        events += draw(app, ctx);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        if let Some(outcome) = over(app) {
            return Ok(FrameReport {
                frames: times.len(),
                events,
                p50_ms: quantile(times.clone(), 0.5).unwrap_or(0.0),
                p99_ms: quantile(times.clone(), 0.99).unwrap_or(0.0),
                max_ms: times.iter().copied().fold(0.0, f64::max),
                slow_frames: (0..times.len()).filter(|&i| times[i] > 16.0).collect(),
                wall_seconds: start.elapsed().as_secs_f64(),
                outcome: outcome?,
            });
        }
        if start.elapsed() > timeout {
            return Err(format!("not over within {timeout:?}"));
        }
        if let Some(rest) = frame.checked_sub(t0.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// One frame of a 1440×900 window: events drained, laid out, tessellated (not painted).
/// Returns the engine events it applied.
fn draw(app: &mut LetheApp, ctx: &egui::Context) -> usize {
    let input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1440.0, 900.0),
        )),
        ..Default::default()
    };
    // `show` pumps too and finds the queue empty; pumping here first is what counts them.
    let applied = app.pump();
    let output = ctx.run_ui(input, |ui| app.show(ui));
    let _meshes = ctx.tessellate(output.shapes, output.pixels_per_point);
    applied
}
