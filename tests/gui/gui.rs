//! The workbench driven through its real UI with egui_kittest: widgets are found by their
//! accessible labels, clicks and file drops are injected as a user's would be, and the
//! engine runs for real on its own thread. Snapshot/screenshot tests render on a wgpu
//! adapter (Mesa's lavapipe in CI: `mesa-vulkan-drivers libvulkan1`).
//!
//! `LETHE_SCREENSHOTS=1 cargo test --release --test gui` rewrites `screenshots/*.png`
//! (rendered at 2 pixels per point, cursor hidden) for the README.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use lethe::app::LetheApp;
use lethe::app::live::Phase;
use lethe::app::panels::DropTarget;
use lethe::app::sets::Role as SetRole;
use lethe::engine::{Control, Stop, execute};
use lethe::unlearn::MethodConfig;

const SIZE: [f32; 2] = [1440.0, 900.0];

fn screenshots() -> bool {
    std::env::var_os("LETHE_SCREENSHOTS").is_some()
}

/// The app as `lethe` opens it (no saved settings: the demo), runs going to `runs`.
fn harness(wgpu: bool, runs: &Path) -> Harness<'static, LetheApp> {
    let runs = runs.to_path_buf();
    let mut builder = Harness::builder()
        .with_size(SIZE)
        .with_accessibility_check(false)
        .with_pixels_per_point(if wgpu && screenshots() { 2.0 } else { 1.0 });
    if wgpu {
        builder = builder.wgpu();
    }
    builder.build_eframe(move |cc| {
        let mut app = LetheApp::new(cc);
        app.state.config.header.runs_dir = runs;
        app.state.refresh_runs();
        // The demo's sets load in the background; the tests look at them loaded.
        app.state.finish_loading();
        app
    })
}

/// Whether neither set is loading.
fn sets_loaded(app: &LetheApp) -> bool {
    !app.state.forget.is_loading() && !app.state.retain.is_loading()
}

/// Steps frames (with short sleeps, as the worker's events arrive in real time) until
/// `done` holds; panics with the app's status after `timeout`.
fn step_until(
    h: &mut Harness<'static, LetheApp>,
    timeout: Duration,
    done: impl Fn(&LetheApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < timeout,
            "timed out; status: {}",
            h.state().state.status
        );
        h.step();
        std::thread::sleep(Duration::from_millis(25));
    }
    h.step();
}

/// A short demo run: same data and method, few steps, a small evaluation.
fn shorten(app: &mut LetheApp, steps: usize) {
    let c = &mut app.state.config;
    c.train.steps = steps;
    c.train.batch_size = 8;
    c.eval.every = 2;
    c.eval.samples = Some(16);
    c.eval.grid = 16;
    c.eval.sampler_steps = Some(10);
    c.eval.elbo_images = 2;
    c.eval.elbo_timesteps = 4;
}

fn save_screenshot(h: &mut Harness<'static, LetheApp>, name: &str) {
    if !screenshots() {
        return;
    }
    h.remove_cursor();
    h.step();
    let image = h.render().expect("render");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("screenshots")
        .join(format!("{name}.png"));
    image.save(&path).expect("save screenshot");
    println!("wrote {}", path.display());
}

#[test]
fn the_demo_is_loaded_and_one_click_runs_it_into_plots_and_grids() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(true, runs.path());
    h.run_steps(2);
    // The bundled demo, loaded: checkpoint, T-shirt to forget, MNIST to keep, SISS.
    h.get_by_label_contains("class-conditional: 12 classes");
    h.get_by_label("1 image");
    h.get_by_label("10000 images");
    let lambda = h.get_by_role_and_label(Role::Slider, "SISS λ");
    assert_eq!(lambda.accesskit_node().numeric_value(), Some(0.5));
    assert_eq!(h.state().state.config.method.label(), "SISS");

    shorten(h.state_mut(), 4);
    h.get_by_label("Run").click();
    step_until(&mut h, Duration::from_secs(900), |app| {
        app.state.live.as_ref().is_some_and(|l| l.phase.is_over())
    });
    let live = h.state().state.live.clone().expect("a run");
    assert_eq!(live.phase, Phase::Finished, "{:?}", live.phase);
    assert_eq!(live.steps_done, 4);
    // Loss terms each have a line with a point per step; the metrics and grids arrived.
    let names: Vec<&str> = live.terms.lines.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.iter().any(|n| n.contains("retain")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("forget")), "{names:?}");
    assert!(live.terms.lines.iter().all(|(_, p)| p.len() == 4));
    assert!(live.weights.points() > 0, "SISS reports importance weights");
    assert!(live.evaluations.len() >= 2, "{:?}", live.evaluations.len());
    assert!(live.baseline.is_some());
    assert!(live.grids.len() >= 2);
    let metric_names: Vec<String> = live
        .metric_series()
        .lines
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(metric_names.iter().any(|n| n == "FID"), "{metric_names:?}");
    let (_, last) = live.evaluations.last().unwrap();
    let how = lethe::app::live::metric_provenance(last);
    assert!(
        how.iter().any(|l| l.starts_with("FID[lethe-mnist11@")),
        "{how:?}"
    );
    h.get_by_label_contains("computed with lethe-mnist11@");
    // The UI shows them: the plots' titles, the grids (with the shader heat map), progress.
    h.get_by_label("Loss terms");
    h.get_by_label("original model");
    h.get_by_label_contains("current (step 4)");
    h.get_by_label_contains("|difference|");
    h.get_by_label_contains("step 4/4");
    assert!(
        h.state().shader_heatmap,
        "the wgpu renderer draws the heat map"
    );
    assert!(h.state().frames.len() > 10);
    save_screenshot(&mut h, "workbench-live");
}

/// A dropped file, as winit hands it to egui.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_on(h: &mut Harness<'static, LetheApp>, target: DropTarget, files: &[PathBuf]) {
    let rect = h
        .state()
        .drop_zones
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, r)| *r)
        .expect("zone drawn");
    h.hover_at(rect.center());
    for f in files {
        h.input_mut()
            .dropped_files
            .push(Arc::new(Dropped(f.clone())));
    }
    h.step();
    // The files load on a worker thread; frames go on meanwhile.
    step_until(h, Duration::from_secs(60), sets_loaded);
}

#[test]
fn files_dropped_on_the_zones_join_their_sets_and_bad_ones_are_listed() {
    let runs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let digit = data.path().join("seven.png");
    image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y) % 256) as u8]))
        .save(&digit)
        .unwrap();
    let broken = data.path().join("broken.png");
    std::fs::write(&broken, b"this is not a PNG").unwrap();
    let folder = data.path().join("more");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..3u8 {
        image::GrayImage::from_fn(28, 28, |x, _| image::Luma([x as u8 * 8 + i]))
            .save(folder.join(format!("{i}.png")))
            .unwrap();
    }

    let mut h = harness(false, runs.path());
    h.run_steps(2);
    drop_on(
        &mut h,
        DropTarget::Set(SetRole::Forget),
        &[digit, broken.clone()],
    );
    let forget = &h.state().state.forget;
    assert_eq!(forget.len(), 2, "T-shirt + the dropped digit");
    assert_eq!(forget.rejected.len(), 1);
    assert_eq!(forget.rejected[0].path, broken);
    h.get_by_label("2 images");
    h.get_by_label("1 rejected:");
    h.get_by_label_contains("broken.png: ");

    drop_on(
        &mut h,
        DropTarget::Set(SetRole::Retain),
        std::slice::from_ref(&folder),
    );
    assert_eq!(h.state().state.retain.len(), 10_003);
    h.get_by_label("10003 images");
    // The forget set did not change.
    assert_eq!(h.state().state.forget.len(), 2);
    assert!(h.state().state.status.contains("Retain: 1 added"));
}

/// `count` 28×28 grey PNGs in `dir`, each different.
fn png_folder(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        image::GrayImage::from_fn(28, 28, |x, y| {
            image::Luma([((x * 7 + y * 3 + i as u32) % 256) as u8])
        })
        .save(dir.join(format!("{i:05}.png")))
        .unwrap();
    }
}

#[test]
fn a_big_folder_loads_behind_a_progress_bar_and_cancelling_keeps_the_set() {
    let runs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("big");
    let count = 6000;
    png_folder(&folder, count);
    let mut h = harness(false, runs.path());
    h.run_steps(2);
    let before = h.state().state.retain.sources.clone();
    let drop_folder = |h: &mut Harness<'static, LetheApp>| {
        let zone = h
            .state()
            .drop_zones
            .iter()
            .find(|(t, _)| *t == DropTarget::Set(SetRole::Retain));
        h.hover_at(zone.expect("zone drawn").1.center());
        h.input_mut()
            .dropped_files
            .push(Arc::new(Dropped(folder.clone())));
        h.step();
    };

    // Cancelled: the set keeps its images and sources.
    drop_folder(&mut h);
    assert!(
        h.state().state.retain.is_loading(),
        "{}",
        h.state().state.status
    );
    h.step();
    h.get_by_label("Cancel loading").click();
    h.step();
    h.step();
    let retain = &h.state().state.retain;
    assert!(!retain.is_loading());
    assert_eq!(retain.len(), 10_000);
    assert_eq!(retain.sources, before);
    assert!(
        h.state().state.status.contains("Retain: loading cancelled"),
        "{}",
        h.state().state.status
    );

    // Loaded on a worker thread: frames go on, showing the count as it grows.
    drop_folder(&mut h);
    let started = Instant::now();
    let (mut partway, mut listed) = (0, 0);
    while let Some(load) = &h.state().state.retain.loading {
        let (done, total) = load.progress.counts();
        // The last frame was drawn after the folder was listed: its bar shows the total.
        if done > 0 && done < total && listed == total {
            partway += 1;
            h.get_by_label_contains(&format!("of {total} files"));
        }
        listed = total;
        assert!(started.elapsed().as_secs() < 120, "not loaded in 120 s");
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(partway > 0, "no frame drawn while the folder loaded");
    let retain = &h.state().state.retain;
    assert_eq!(retain.len(), 10_000 + count);
    assert_eq!(retain.sources.last(), Some(&folder));
    assert!(
        h.state().state.status.contains("Retain: 1 added"),
        "{}",
        h.state().state.status
    );
}

#[test]
fn compare_lists_finished_runs_and_places_them_on_the_trade_off_plot() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(false, runs.path());
    h.run_steps(1);
    // Two real (short) runs with different λ, through the engine as the CLI runs them.
    for (name, lambda) in [("lambda-low", 0.2), ("lambda-high", 0.8)] {
        shorten(h.state_mut(), 2);
        let mut config = h.state().state.run_config().expect("config");
        config.header.name = Some(name.into());
        if let MethodConfig::Siss(c) = &mut config.method {
            c.lambda = lambda;
        }
        if let Err(Stop::Failed { error, .. }) = execute(&config, &mut Control::detached(), &|_| {})
        {
            panic!("run {name}: {error}");
        }
    }
    h.state_mut().state.refresh_runs();
    h.get_by_label("Compare runs").click();
    h.run_steps(2);
    // Each run is a row whose checkbox carries its name (the trade-off plot's legend has a
    // visibility checkbox of the same name, ticked).
    let row_box = |h: &Harness<'static, LetheApp>, name: &str| {
        h.get_all_by_role_and_label(Role::CheckBox, name)
            .find(|n| n.accesskit_node().toggled() == Some(egui::accesskit::Toggled::False))
            .map(|n| n.accesskit_node().id())
    };
    assert!(row_box(&h, "lambda-low").is_some());
    assert!(row_box(&h, "lambda-high").is_some());
    h.get_by_label_contains("2 runs in");
    let rows = &h.state().state.runs;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.forgetting().is_some() && r.fid().is_some())
    );
    assert!(
        rows.iter()
            .any(|r| r.knobs.contains("lambda = 0.2") || r.knobs.contains("lambda=0.2")),
        "{:?}",
        rows.iter().map(|r| &r.knobs).collect::<Vec<_>>()
    );
    // Tick both rows (each checkbox is labelled by its run's name) to overlay their curves.
    for name in ["lambda-low", "lambda-high"] {
        h.get_all_by_role_and_label(Role::CheckBox, name)
            .find(|n| n.accesskit_node().toggled() == Some(egui::accesskit::Toggled::False))
            .expect("the row's checkbox")
            .click();
        h.run_steps(2);
    }
    assert_eq!(h.state().state.selected_runs.len(), 2);
    // Both runs are on the trade-off plot, which names them in its legend.
    h.get_by_label_contains("Trade-off: quality");
}

#[test]
fn queue_sweep_writes_a_sweep_directory_and_the_compare_view_follows_it() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(false, runs.path());
    h.run_steps(1);
    shorten(h.state_mut(), 2);
    h.state_mut().state.config.eval.every = 0;
    h.state_mut().state.sweep.runs = 2;
    h.get_by_label("Compare runs").click();
    h.run_steps(2);
    h.get_by_label("Queue sweep").click();
    h.run_steps(1);
    let dir = h
        .state()
        .state
        .runs_source
        .clone()
        .expect("the compare view shows the new sweep");
    assert!(lethe::sweep::Manifest::exists_in(&dir));
    assert!(dir.join("sweep.toml").is_file() && dir.join("base.toml").is_file());
    // Both trials run in the workbench, one after the other, into the sweep directory.
    step_until(&mut h, Duration::from_secs(600), |app| {
        app.state.queue.is_empty() && !app.state.is_running() && app.state.runs.len() == 2
    });
    h.run_steps(2);
    h.get_by_label_contains("2 runs in");
    h.get_by_label_contains("2 trials: 2 done");
    let names: Vec<&str> = h
        .state()
        .state
        .runs
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        names.contains(&"000-lambda0.1") && names.contains(&"001-lambda0.9"),
        "{names:?}"
    );
    // The same directory reads back through `lethe sweep status`'s code.
    let (_, trials) = lethe::sweep::status::scan(&dir).unwrap();
    assert!(
        trials
            .iter()
            .all(|t| t.state == lethe::sweep::status::TrialState::Done)
    );
    // Back to all runs: the runs directory holds no run of its own, only the sweep.
    h.state_mut().state.show_runs_of(None);
    h.run_steps(2);
    h.get_by_label_contains("0 runs in");
    assert_eq!(h.state().state.sweep_dirs(), vec![dir]);
}

#[test]
fn snapshot_of_the_demo_as_it_opens() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(true, runs.path());
    h.run_steps(3);
    save_screenshot(&mut h, "workbench-demo");
    if !screenshots() {
        // The status bar shows frame times, which differ every run.
        let bar = egui::Rect::from_min_max(
            egui::pos2(0.0, SIZE[1] - 30.0),
            egui::pos2(SIZE[0], SIZE[1]),
        );
        h.remove_cursor();
        h.run_steps(1);
        h.mask(bar);
        h.snapshot("workbench_demo");
    }
}

#[test]
fn choosing_a_method_by_mouse_shows_its_knobs_and_warns_outside_the_papers_range() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(false, runs.path());
    h.run_steps(2);
    h.get_by_role_and_label(Role::ComboBox, "Method").click();
    h.run_steps(2);
    h.get_by_label("EraseDiff").click();
    h.run_steps(2);
    assert_eq!(h.state().state.config.method.slug(), "erasediff");
    let alpha = h.get_by_role_and_label(Role::Slider, "EraseDiff α (λ)");
    assert_eq!(alpha.accesskit_node().numeric_value(), Some(0.1_f32 as f64));
    h.get_by_role_and_label(Role::ComboBox, "forgetting target");
    h.get_by_role_and_label(Role::Slider, "K inner steps");
    assert!(h.query_by_label_contains("Warning:").is_none());
    if let MethodConfig::EraseDiff(c) = &mut h.state_mut().state.config.method {
        c.alpha = 0.9;
    }
    h.run_steps(2);
    h.get_by_label_contains("Warning: EraseDiff α (λ) = 0.9 is outside 0.01–0.5");
}

#[test]
fn the_precision_choice_offers_the_trainable_dtypes_and_sets_the_run_config() {
    use lethe::diffusion::precision::Precision;
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(false, runs.path());
    h.run_steps(2);
    assert_eq!(h.state().state.config.train.precision, Precision::F32);
    h.get_by_role_and_label(Role::ComboBox, "Precision:")
        .click();
    h.run_steps(2);
    // f16 would need loss scaling to train, so only f32 and bf16 are offered.
    assert!(h.query_by_label("f16").is_none());
    h.get_by_label("bf16").click();
    h.run_steps(2);
    assert_eq!(h.state().state.config.train.precision, Precision::Bf16);
}

#[test]
fn the_workbench_warns_when_the_original_never_draws_the_forgotten_class() {
    let tmp = tempfile::tempdir().unwrap();
    let (checkpoint, retain, classifier) = crate::common::class_world(tmp.path());
    let mut h = harness(false, &tmp.path().join("runs"));
    h.run_steps(2);
    {
        let state = &mut h.state_mut().state;
        state.load_checkpoint(checkpoint);
        state.retain.clear();
        state.add_files(SetRole::Retain, &[retain]);
        state.finish_loading();
        state.forget_class(Some(3));
        state.choose_method(MethodConfig::Finetune);
        let c = &mut state.config;
        c.train.steps = 1;
        c.train.batch_size = 4;
        c.eval = crate::common::class_world_eval(classifier);
    }
    h.run_steps(2);
    // The class setting shows its guidance, automatic by default.
    h.get_by_label("Guidance w:");
    assert_eq!(h.state().state.config.eval.guidance, None);
    h.get_by_label("Run").click();
    step_until(&mut h, Duration::from_secs(300), |app| {
        app.state.live.as_ref().is_some_and(|l| l.phase.is_over())
    });
    let live = h.state().state.live.clone().expect("a run");
    assert_eq!(live.phase, Phase::Finished, "{:?}", live.phase);
    h.get_by_label_contains("Uninformative: the original model draws class 3 in only 0.0%");
    // The check's result beside the guidance field (and under the progress bar).
    let (_, check) = live.guidance.clone().expect("the guidance check ran");
    assert!(check.contains("no weight reaches 50%"), "{check}");
    h.get_by_label_contains("last run: w=");
}

#[test]
fn an_interrupted_run_is_listed_and_resumed_from_the_runs_table() {
    use lethe::engine::{Command, Engine, Event};
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(false, runs.path());
    h.run_steps(1);
    shorten(h.state_mut(), 4);
    let mut config = h.state().state.run_config().expect("config");
    config.header.name = Some("killed".into());
    config.eval.every = 0;
    // Stopped after step 2 with its state saved; run.json then says `running` with no process
    // holding the run's lock — what `kill -9` leaves behind.
    let engine = Engine::spawn(None);
    engine.send(Command::Start(Box::new(config)));
    let run_dir = loop {
        match engine.events().recv().unwrap() {
            Event::Step(r) if r.step == 2 => engine.send(Command::Cancel),
            Event::Cancelled(summary) => break summary.run_dir,
            e if e.is_terminal() => panic!("unexpected end: {e:?}"),
            _ => {}
        }
    };
    drop(engine);
    let info_path = run_dir.join("run.json");
    let info = std::fs::read_to_string(&info_path).unwrap();
    std::fs::write(&info_path, info.replace("\"cancelled\"", "\"running\"")).unwrap();

    h.state_mut().state.refresh_runs();
    h.get_by_label("Compare runs").click();
    h.run_steps(2);
    h.get_by_label("interrupted");
    h.get_by_label("Resume run").click();
    step_until(&mut h, Duration::from_secs(300), |app| {
        app.state.live.as_ref().is_some_and(|l| l.phase.is_over())
    });
    let live = h.state().state.live.clone().expect("the resumed run");
    assert_eq!(live.phase, Phase::Finished, "{:?}", live.phase);
    assert_eq!(live.title, "killed (resumed)");
    let info = lethe::experiment::RunDir::open(&run_dir)
        .read_info()
        .unwrap();
    assert_eq!(info.steps_done, 4);
    assert!(!info.resumed_at.is_empty());
    // The runs table now lists it as finished, without the button.
    h.get_by_label("Compare runs").click();
    h.run_steps(2);
    h.get_by_label("finished");
    assert!(h.query_by_label("Resume run").is_none());
}

/// A random RGB model of 16×16 images and RGB image folders, as a researcher's CIFAR-style
/// checkpoint would be (smaller, for speed).
fn rgb_world(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use lethe::diffusion::checkpoint::{self, Provenance};
    use lethe::diffusion::schedule::SchedulerConfig;
    use lethe::diffusion::unet::{UNet, UNetConfig};
    let config = UNetConfig {
        sample_size: 16,
        in_channels: 3,
        out_channels: 3,
        num_class_embeds: None,
        lethe_null_class: None,
        ..crate::common::tiny_config()
    };
    let model = UNet::new(&config, 1, &burn::tensor::Device::flex()).unwrap();
    let ckpt = dir.join("rgb-ckpt");
    checkpoint::save(
        &ckpt,
        &model,
        &config,
        &SchedulerConfig::default(),
        &Provenance::new("test fixture"),
    )
    .unwrap();
    let write = |path: PathBuf, colour: [u8; 3]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_fn(16, 16, |x, y| {
            if (x / 4 + y / 4) % 2 == 0 {
                image::Rgb(colour)
            } else {
                image::Rgb([20, 20, 20])
            }
        })
        .save(path)
        .unwrap();
    };
    for i in 0..4 {
        write(dir.join(format!("retain/{i}.png")), [220, 30, 30]);
    }
    write(dir.join("forget/green.png"), [30, 220, 30]);
    (ckpt, dir.join("retain"), dir.join("forget"))
}

#[test]
fn an_rgb_model_runs_and_its_grids_show_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let (checkpoint, retain, forget) = rgb_world(tmp.path());
    let mut h = harness(true, &tmp.path().join("runs"));
    h.run_steps(2);
    {
        let state = &mut h.state_mut().state;
        state.load_checkpoint(checkpoint);
        state.retain.clear();
        state.forget.clear();
        state.add_files(SetRole::Retain, &[retain]);
        state.add_files(SetRole::Forget, &[forget]);
        state.finish_loading();
        state.choose_method(MethodConfig::Finetune);
        let c = &mut state.config;
        c.train.steps = 2;
        c.train.batch_size = 2;
        c.eval.every = 1;
        c.eval.samples = Some(4);
        c.eval.grid = 4;
        c.eval.sampler_steps = Some(2);
        c.eval.elbo_images = 1;
        c.eval.elbo_timesteps = 2;
        c.eval.classifier = PathBuf::new();
    }
    h.run_steps(2);
    h.get_by_label("16×16, RGB (3 channels)");
    h.get_by_label("Run").click();
    step_until(&mut h, Duration::from_secs(300), |app| {
        app.state.live.as_ref().is_some_and(|l| l.phase.is_over())
    });
    let live = h.state().state.live.clone().expect("a run");
    assert_eq!(live.phase, Phase::Finished, "{:?}", live.phase);
    assert_eq!(live.shape, [3, 16, 16]);
    assert!(live.original.iter().all(|s| s.len() == 3 * 16 * 16));
    // The headline reads before → now once the run has been evaluated.
    h.get_by_label_contains("Forgetting: forget-image rate");
    // The original's grid as drawn: a random model's samples saturate each channel on its
    // own, so the grid is coloured (grey pixels would mean a channel was dropped).
    let label = h.get_by_label("original model").rect();
    let image = h.render().expect("render");
    let ppp = image.width() as f32 / SIZE[0];
    let (x0, y0) = (label.min.x * ppp, (label.max.y + 2.0) * ppp);
    let mut coloured = 0;
    let mut total = 0;
    for y in y0 as u32..(y0 + 28.0 * ppp) as u32 {
        for x in x0 as u32..(x0 + 28.0 * ppp) as u32 {
            let p = image.get_pixel(x, y).0;
            let spread = p[..3].iter().max().unwrap() - p[..3].iter().min().unwrap();
            coloured += usize::from(spread > 60);
            total += 1;
        }
    }
    assert!(
        coloured * 5 > total,
        "{coloured} of {total} pixels under 'original model' are coloured"
    );
    save_screenshot(&mut h, "workbench-rgb");
}

/// Before any run the live view shows the original model as the configured run will start
/// from it (its samples and figures) and the setup panel the run's expected cost, re-planned
/// as the steps change; the run that follows reuses the preview's evaluation.
#[test]
fn the_original_and_the_expected_cost_are_shown_before_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (checkpoint, retain, forget) = rgb_world(tmp.path());
    let mut h = harness(false, &tmp.path().join("runs"));
    h.run_steps(2);
    {
        let state = &mut h.state_mut().state;
        state.load_checkpoint(checkpoint);
        state.retain.clear();
        state.forget.clear();
        state.add_files(SetRole::Retain, &[retain]);
        state.add_files(SetRole::Forget, &[forget]);
        state.finish_loading();
        state.choose_method(MethodConfig::Finetune);
        let c = &mut state.config;
        c.train.steps = 2;
        c.train.batch_size = 2;
        c.eval.every = 1;
        c.eval.samples = Some(4);
        c.eval.grid = 4;
        c.eval.sampler_steps = Some(2);
        c.eval.elbo_images = 1;
        c.eval.elbo_timesteps = 2;
        c.eval.classifier = PathBuf::new();
        // A seed no other test evaluates with, so the cache entry is this test's.
        c.eval.seed = 27_182;
    }
    h.run_steps(2);
    h.get_by_label_contains("Expected cost: not estimated");
    h.get_by_label("Preview").click();
    step_until(&mut h, Duration::from_secs(300), |app| {
        app.state
            .live
            .as_ref()
            .is_some_and(|l| l.preview && l.phase.is_over())
    });
    let live = h.state().state.live.clone().expect("a preview");
    assert_eq!(live.phase, Phase::Finished, "{:?}", live.phase);
    assert_eq!(live.original.len(), 4);
    assert!(live.baseline.is_some());
    assert!(live.run_dir.is_none(), "a preview is not a run");
    h.get_by_label("original model");
    h.get_by_label("forget-image rate");
    h.get_by_label_contains("Forgetting: forget-image rate");
    h.get_by_label_contains("evaluated as the configured run will start");
    // The run's cost, before Run: the original (cached now) is not counted again; two
    // evaluations during the run's 2 steps (every = 1), and the end's.
    h.get_by_label_contains("Expected: evaluation ~");
    let planned = h.state().state.planned_estimate().expect("an estimate");
    assert_eq!(planned.evaluations, 2);
    assert_eq!(planned.train_image_passes, 2 * 2);
    h.state_mut().state.config.train.steps = 6;
    let replanned = h.state().state.planned_estimate().expect("re-planned");
    assert_eq!(replanned.train_image_passes, 6 * 2);
    assert_eq!(replanned.evaluations, 6);
    // Another evaluation makes the preview stale: no estimate until previewed again.
    h.state_mut().state.config.eval.samples = Some(8);
    assert!(h.state().state.planned_estimate().is_none());
    h.run_steps(2);
    h.get_by_label_contains("changed since this preview");
    h.state_mut().state.config.eval.samples = Some(4);
    h.state_mut().state.config.train.steps = 2;

    h.get_by_label("Run").click();
    step_until(&mut h, Duration::from_secs(300), |app| {
        app.state
            .live
            .as_ref()
            .is_some_and(|l| !l.preview && l.phase.is_over())
    });
    let run = h.state().state.live.clone().expect("a run");
    assert_eq!(run.phase, Phase::Finished, "{:?}", run.phase);
    assert!(
        run.notes.iter().any(|n| n.contains("reused from the cache")
            && n.contains("(computed by a workbench preview)")),
        "{:?}",
        run.notes
    );
}

/// The picker at 32, 64 and 256 px: its page fits the panel (large images shrink, small ones
/// grow), and a click on a thumbnail moves that image — the one under the pointer — into the
/// forget set.
#[test]
fn the_picker_fits_and_picks_the_clicked_image_at_32_64_and_256_px() {
    use lethe::diffusion::checkpoint::{self, Provenance};
    use lethe::diffusion::schedule::SchedulerConfig;
    use lethe::diffusion::unet::{UNet, UNetConfig};
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness(false, &tmp.path().join("runs"));
    h.run_steps(2);
    h.get_by_label("Pick images to forget from the retain set")
        .click();
    h.run_steps(2);
    for size in [32u32, 64, 256] {
        let dir = tmp.path().join(format!("{size}"));
        let config = UNetConfig {
            sample_size: size as usize,
            in_channels: 3,
            out_channels: 3,
            num_class_embeds: None,
            lethe_null_class: None,
            ..crate::common::tiny_config()
        };
        let model = UNet::new(&config, 1, &burn::tensor::Device::flex()).unwrap();
        let ckpt = dir.join("ckpt");
        checkpoint::save(
            &ckpt,
            &model,
            &config,
            &SchedulerConfig::default(),
            &Provenance::new("test fixture"),
        )
        .unwrap();
        // Ten images, each its own colour: which one was picked is plain from its pixels.
        let retain = dir.join("retain");
        std::fs::create_dir_all(&retain).unwrap();
        for i in 0..10u8 {
            image::RgbImage::from_fn(size, size, |x, _| {
                image::Rgb([i * 25, 255 - i * 25, (x % 7) as u8 * 30])
            })
            .save(retain.join(format!("{i:02}.png")))
            .unwrap();
        }
        {
            let state = &mut h.state_mut().state;
            // Cleared first: loading a model converts the sets to its size (the demo's 10,000
            // digits at 256×256 RGB would be 2 GB).
            state.retain.clear();
            state.forget.clear();
            state.load_checkpoint(ckpt);
            state.add_files(SetRole::Retain, &[retain]);
            state.finish_loading();
        }
        h.run_steps(3);
        let page = h.get_by_label("retain images to pick from").rect();
        assert!(
            page.max.x <= SIZE[0] && page.min.y < SIZE[1],
            "{size} px: the page is on screen ({page:?})"
        );
        // Eight tiles of size + 2 px per row, shown at the panel's scale.
        let scale = page.width() / (8 * (size + 2)) as f32;
        let shown = scale * size as f32;
        assert!(
            (16.0..=3.0 * size as f32).contains(&shown),
            "{size} px images are shown {shown} points wide"
        );
        let tile = (size + 2) as f32 * scale;
        let at = page.min + egui::vec2(2.5 * tile, 0.5 * tile);
        h.hover_at(at);
        for pressed in [true, false] {
            h.event(egui::Event::PointerButton {
                pos: at,
                button: egui::PointerButton::Primary,
                pressed,
                modifiers: egui::Modifiers::NONE,
            });
        }
        h.run_steps(2);
        // The picked image joins the forget set through a background load.
        step_until(&mut h, Duration::from_secs(60), sets_loaded);
        let state = &h.state().state;
        let forget = state.forget.images.as_ref().expect("a forget set");
        assert_eq!(forget.len(), 1, "{size} px: {}", state.status);
        let retain = state.retain.images.as_ref().unwrap();
        assert_eq!(
            forget.unit_image(0),
            retain.unit_image(2),
            "{size} px: the third image was clicked"
        );
    }
}

#[test]
fn the_remote_entry_connects_to_a_lethe_serve_and_a_dead_server_never_stalls_a_frame() {
    use lethe::app::remote::LinkState;
    use lethe::backend::BackendChoice;
    let runs = tempfile::tempdir().unwrap();
    let mut server = crate::common::LetheServer::start(env!("CARGO_BIN_EXE_lethe"), &[]);
    let url = server.url.clone();
    let mut h = harness(true, runs.path());
    h.run_steps(2);
    h.get_by_role_and_label(Role::ComboBox, "Device:").click();
    h.run_steps(2);
    h.get_by_label("Remote… (a lethe serve)").click();
    h.run_steps(2);
    assert!(h.state().state.remote.dialog_open);
    h.state_mut().state.remote.url_field = url.clone();
    // A window's first frame only measures it.
    h.run_steps(2);
    h.get_by_label("Connect").click();
    h.run_steps(1);
    step_until(&mut h, Duration::from_secs(60), |app| {
        !matches!(app.state.remote.state, LinkState::Connecting { .. })
    });
    let state = &h.state().state;
    assert!(
        matches!(&state.remote.state, LinkState::Connected(s) if s.server_device.contains("burn-flex")),
        "{:?}",
        state.remote.state
    );
    assert_eq!(state.config.header.backend, BackendChoice::Remote);
    assert_eq!(state.config.header.remote.as_deref(), Some(url.as_str()));
    // The status bar shows the server's device and the round trip.
    let line = state.remote.describe();
    assert!(
        line.contains(&url) && line.contains("ms round trip"),
        "{line}"
    );
    h.get_by_label(&line);
    h.state_mut().state.remote.dialog_open = true;
    h.run_steps(2);
    save_screenshot(&mut h, "remote-device");

    // The server dies: frames go on (the probe runs off the GUI thread) and the link says so.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        let frame = Instant::now();
        h.step();
        slowest = slowest.max(frame.elapsed());
        let line = h.state().state.remote.describe();
        if line.contains("stopped answering") || line.contains("no answer for") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "still: {line}");
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a frame took {slowest:?}"
    );
}
