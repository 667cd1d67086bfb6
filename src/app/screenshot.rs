//! `lethe --screenshot PATH [--after-steps N]`: the workbench rendered offscreen to a PNG —
//! the window a user would see (same size, same app, same engine), drawn by wgpu without a
//! display, at 2 pixels per point with no cursor. For README tours and bug reports.

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::Harness;

use super::LetheApp;
use super::state::Workbench;

/// The window's size in points as `launch` opens it (the default of `--window-size`).
pub const WINDOW: [f32; 2] = [1440.0, 900.0];
/// How long a run may take to reach the asked step before the screenshot gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Renders `workbench` in a window of `window` points to `path`: as the window opens (once
/// its preview of the original model is ready), or with `after_steps`, after starting its
/// run and waiting until that many steps are done and the evaluation that follows them (if
/// any) has arrived.
pub fn screenshot(
    workbench: Workbench,
    path: &Path,
    window: [f32; 2],
    after_steps: Option<usize>,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let mut workbench = workbench;
    // The picture shows the sets as loaded, not their progress bars.
    workbench.finish_loading();
    let mut harness = Harness::builder()
        .with_size(window)
        .with_pixels_per_point(2.0)
        .with_accessibility_check(false)
        .wgpu()
        .build_eframe(move |cc| LetheApp::created_with(cc, workbench));
    harness.run_steps(3);
    match after_steps {
        Some(steps) => run_until(&mut harness, steps, say)?,
        None => preview(&mut harness, say)?,
    }
    harness.remove_cursor();
    harness.run_steps(2);
    let image = harness
        .render()
        .map_err(|e| format!("could not render the workbench offscreen (wgpu): {e}"))?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    crate::util::atomic_write(path, &png).map_err(|e| format!("{}: {e}", path.display()))
}

/// The preview `launch` starts the window with, stepped until it is ready.
fn preview(harness: &mut Harness<'static, LetheApp>, say: &dyn Fn(&str)) -> Result<(), String> {
    harness.state_mut().state.preview();
    say("previewing the original model");
    let start = Instant::now();
    loop {
        harness.step();
        let live = harness.state().state.live.as_ref();
        if live.is_none_or(|l| l.phase.is_over()) {
            return Ok(());
        }
        if start.elapsed() > RUN_TIMEOUT {
            return Err(format!(
                "the preview was not ready within {} s: {}",
                RUN_TIMEOUT.as_secs(),
                harness.state().state.status
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Presses Run and steps frames until `steps` steps are done and nothing is being evaluated
/// (or the run ended).
fn run_until(
    harness: &mut Harness<'static, LetheApp>,
    steps: usize,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let eval = harness.state().state.config.eval.clone();
    let total = harness.state().state.config.train.steps;
    // The evaluation that follows step `steps`, if one does: the screenshot waits for it.
    let evaluated_at = |step: usize| {
        (eval.every > 0 && step.is_multiple_of(eval.every)) || (step >= total && eval.at_end)
    };
    harness.state_mut().state.start();
    let start = Instant::now();
    let mut last_said = 0;
    loop {
        harness.step();
        let live = harness.state().state.live.as_ref();
        let done = live.is_some_and(|l| {
            let evaluated = l.evaluations.last().is_some_and(|(at, _)| *at >= steps);
            l.phase.is_over() || (l.steps_done >= steps && (evaluated || !evaluated_at(steps)))
        });
        if done {
            break;
        }
        let at = live.map_or(0, |l| l.steps_done);
        if at > last_said {
            say(&format!("step {at}/{steps}"));
            last_said = at;
        }
        if start.elapsed() > RUN_TIMEOUT {
            return Err(format!(
                "the run did not reach step {steps} within {} s: {}",
                RUN_TIMEOUT.as_secs(),
                harness.state().state.status
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = &harness.state().state;
    if let Some(super::live::Phase::Failed(error)) = state.live.as_ref().map(|l| &l.phase) {
        return Err(format!("the run failed: {error}"));
    }
    Ok(())
}
