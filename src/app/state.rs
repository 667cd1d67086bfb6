//! The workbench's state and what its buttons do, without egui: the panels read this and
//! call its methods; commands for the engine wait in `outbox` until the app sends them.
//! Unit-tested here and driven through the real UI in `tests/gui/gui.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint_view::CheckpointView;
use super::live::LiveRun;
use super::sets::{LoadReport, Role, SetView};
use crate::attack::dimra::AttackConfig;
use crate::data::{ImageSpec, demo};
use crate::engine::{Command, Event};
use crate::experiment::ExperimentConfig;
use crate::experiment::config::RunHeader;
use crate::experiment::runs::{self, RunRecord};
use crate::sweep;
use crate::unlearn::MethodConfig;

/// The demo as `examples/unlearn-siss.toml` describes it, with the bundled assets' paths.
pub fn demo_config() -> ExperimentConfig {
    let mut config: ExperimentConfig =
        toml::from_str(include_str!("../../examples/unlearn-siss.toml"))
            .expect("examples/unlearn-siss.toml parses");
    config.header.checkpoint = demo::asset(demo::DEMO_CHECKPOINT);
    config.data.retain = vec![demo::asset(demo::MNIST_IMAGES)];
    config.data.forget = vec![demo::asset(demo::MEMORISED_TSHIRT)];
    // Show all 64 evaluation samples: at seed 0 two of the original model's are copies of
    // the T-shirt, so the grid shows them go.
    config.eval.grid = config.eval.sampling().samples;
    config
}

/// The methods the method panel offers, in order, each with its paper defaults.
pub fn method_choices() -> Vec<MethodConfig> {
    vec![
        MethodConfig::Siss(Default::default()),
        MethodConfig::SissNoIs(Default::default()),
        MethodConfig::EraseDiff(Default::default()),
        MethodConfig::Vdu(Default::default()),
        MethodConfig::Dimum(Default::default()),
        MethodConfig::NegGrad(Default::default()),
        MethodConfig::Finetune,
        MethodConfig::Retrain { init_seed: 0 },
    ]
}

/// The knob a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SweepKnob {
    SissLambda,
    EraseDiffAlpha,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSettings {
    pub from: f64,
    pub to: f64,
    pub runs: usize,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            from: 0.1,
            to: 0.9,
            runs: 3,
        }
    }
}

/// The DiMRA attack's knobs as the attack panel edits them (Lethe's defaults, §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackSettings {
    pub steps: usize,
    pub evaluate_every: usize,
    pub learning_rate: f64,
}

impl Default for AttackSettings {
    fn default() -> Self {
        Self {
            steps: 200,
            evaluate_every: 50,
            learning_rate: 1e-4,
        }
    }
}

/// What a preview's results depend on: the model, the data, the evaluation, the device and
/// the precision (not the method, steps or batch: the estimate is re-planned for those).
fn preview_key(config: &ExperimentConfig) -> String {
    serde_json::json!({
        "checkpoint": config.header.checkpoint,
        "backend": config.header.backend.to_string(),
        "data": config.data,
        "eval": config.eval,
        "precision": format!("{:?}", config.train.precision),
    })
    .to_string()
}

/// What persists between launches (eframe storage).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub config: ExperimentConfig,
    pub sweep: SweepSettings,
    pub attack: AttackSettings,
}

pub struct Workbench {
    pub config: ExperimentConfig,
    pub checkpoint: Result<CheckpointView, String>,
    /// The checkpoint path as typed.
    pub checkpoint_field: String,
    pub forget: SetView,
    pub retain: SetView,
    /// Knobs of methods chosen earlier, so switching back keeps them.
    method_memory: BTreeMap<&'static str, MethodConfig>,
    pub live: Option<LiveRun>,
    /// What the last preview was made of (`preview_key`): the estimate and the original's
    /// figures it showed hold while the settings they depend on stay the same.
    previewed: Option<String>,
    pub runs: Vec<RunRecord>,
    pub run_problems: Vec<String>,
    /// The sweep directory the compare view shows instead of the runs directory, if any.
    pub runs_source: Option<PathBuf>,
    /// That sweep's trials by state (`4 trials: 2 done, 2 missing`), re-read with the runs.
    pub sweep_summary: Option<String>,
    /// When the runs were last read, so a sweep that other processes run is re-read as its
    /// trials finish.
    pub runs_read_at: Option<std::time::Instant>,
    /// A sweep directory path as typed in the compare view (for one outside `runs_dir`).
    pub sweep_path_field: String,
    pub selected_runs: BTreeSet<PathBuf>,
    pub sweep: SweepSettings,
    pub queue: VecDeque<ExperimentConfig>,
    pub attack: AttackSettings,
    /// The device menu's *Remote…* link to a `lethe serve`.
    pub remote: super::remote::RemoteLink,
    /// The last thing that happened, for the status bar.
    pub status: String,
    pub outbox: Vec<Command>,
    /// Start the configured run once the sets have loaded and nothing else runs
    /// (`lethe --start`).
    pub start_when_ready: bool,
}

impl Workbench {
    /// The bundled demo: demo checkpoint, T-shirt to forget, MNIST to keep, SISS.
    pub fn demo() -> Self {
        Self::with_settings(Settings {
            config: demo_config(),
            sweep: SweepSettings::default(),
            attack: AttackSettings::default(),
        })
    }

    pub fn with_settings(settings: Settings) -> Self {
        let mut bench = Self {
            checkpoint_field: settings.config.header.checkpoint.display().to_string(),
            checkpoint: Err(String::new()),
            forget: SetView::new(Role::Forget),
            retain: SetView::new(Role::Retain),
            method_memory: BTreeMap::new(),
            live: None,
            previewed: None,
            runs: Vec::new(),
            run_problems: Vec::new(),
            runs_source: None,
            sweep_summary: None,
            runs_read_at: None,
            sweep_path_field: String::new(),
            selected_runs: BTreeSet::new(),
            sweep: settings.sweep,
            queue: VecDeque::new(),
            attack: settings.attack,
            remote: super::remote::RemoteLink::default(),
            status: String::new(),
            outbox: Vec::new(),
            start_when_ready: false,
            config: settings.config,
        };
        if let Some(url) = &bench.config.header.remote {
            bench.remote.url_field = url.clone();
        }
        bench.load_checkpoint(bench.config.header.checkpoint.clone());
        let spec = bench.image_spec();
        bench
            .forget
            .set_sources(bench.config.data.forget.clone(), spec);
        bench
            .retain
            .set_sources(bench.config.data.retain.clone(), spec);
        bench.refresh_runs();
        bench
    }

    /// Follows the *Remote…* link: a server that has just connected becomes the device
    /// runs compute on (its address goes into the config; its token does not).
    pub fn poll_remote(&mut self) {
        if let Some(status) = self.remote.poll() {
            self.config.header.backend = crate::backend::BackendChoice::Remote;
            self.config.header.remote = Some(status.url.clone());
            self.status = format!("connected to {}", status.describe());
            self.remote.dialog_open = false;
        }
    }

    pub fn settings(&self) -> Settings {
        let mut config = self.config.clone();
        self.sync_data(&mut config);
        Settings {
            config,
            sweep: self.sweep.clone(),
            attack: self.attack.clone(),
        }
    }

    /// The size images are converted to: the checkpoint's, or MNIST's before one loads.
    pub fn image_spec(&self) -> ImageSpec {
        self.checkpoint
            .as_ref()
            .map(CheckpointView::image_spec)
            .unwrap_or(demo::MNIST_SPEC)
    }

    pub fn load_checkpoint(&mut self, dir: PathBuf) {
        self.checkpoint_field = dir.display().to_string();
        self.checkpoint = CheckpointView::read(&dir);
        match &self.checkpoint {
            Ok(view) => {
                self.status = format!("checkpoint {} loaded", dir.display());
                let spec = view.image_spec();
                self.config.header.checkpoint = dir;
                // The sets are converted to the new model's size.
                self.forget.reload(spec);
                self.retain.reload(spec);
            }
            Err(e) => self.status = e.clone(),
        }
    }

    /// Files dropped (or picked) onto a set's zone: they load in the background
    /// ([`Self::poll_sets`] hears when they are in).
    pub fn add_files(&mut self, role: Role, paths: &[PathBuf]) {
        let spec = self.image_spec();
        let started = self.set_mut(role).add_paths(paths, spec);
        self.status = match started {
            0 => format!("{}: already in the set", role.name()),
            n => format!("{}: loading {n} new path(s)…", role.name()),
        };
    }

    /// Takes the sets' finished loads (every frame), and starts a run asked for at launch
    /// once they are in.
    pub fn poll_sets(&mut self) {
        for role in [Role::Forget, Role::Retain] {
            if let Some(report) = self.set_mut(role).poll() {
                self.loaded(role, report);
            }
        }
        let busy = self.forget.is_loading() || self.retain.is_loading() || self.is_running();
        if self.start_when_ready && !busy {
            self.start_when_ready = false;
            self.start();
        }
    }

    /// Whether a set is still loading (a run started now would miss what it adds); says so.
    fn sets_loading(&mut self) -> bool {
        let loading = self.forget.is_loading() || self.retain.is_loading();
        if loading {
            self.status = "the sets are still loading: start once they are in".into();
        }
        loading
    }

    /// Waits for both sets' loads (screenshots, benchmarks and tests, before they look).
    pub fn finish_loading(&mut self) {
        for role in [Role::Forget, Role::Retain] {
            if let Some(report) = self.set_mut(role).wait() {
                self.loaded(role, report);
            }
        }
    }

    fn loaded(&mut self, role: Role, report: LoadReport) {
        self.status = match report {
            LoadReport::Loaded {
                asked: 0,
                rejected,
                images,
                ..
            } => format!("{}: {images} images, {rejected} rejected", role.name()),
            LoadReport::Loaded {
                added,
                rejected,
                images,
                ..
            } => {
                // Files dropped on the forget set replace forgetting a class.
                if role == Role::Forget && added > 0 {
                    self.config.data.forget_class = None;
                }
                format!(
                    "{}: {added} added, {rejected} rejected, {images} images",
                    role.name()
                )
            }
            LoadReport::Cancelled => format!("{}: loading cancelled", role.name()),
        };
    }

    pub fn set_mut(&mut self, role: Role) -> &mut SetView {
        match role {
            Role::Forget => &mut self.forget,
            Role::Retain => &mut self.retain,
        }
    }

    /// Moves retain image `index` into the forget set (written as a PNG beside the runs).
    pub fn pick_for_forgetting(&mut self, index: usize) {
        let Some(images) = &self.retain.images else {
            return;
        };
        let dir = self.config.header.runs_dir.join(".picked");
        match super::sets::export_image(images, index, &dir) {
            Ok(path) => {
                let label = images.labels[index];
                self.add_files(Role::Forget, &[path]);
                if self.config.data.forget_label.is_none() {
                    self.config.data.forget_label = label;
                }
            }
            Err(e) => self.status = e,
        }
    }

    /// Forget a whole class of the retain set instead of files (class setting).
    pub fn forget_class(&mut self, class: Option<usize>) {
        self.config.data.forget_class = class;
        if class.is_some() {
            self.forget.clear();
        }
    }

    /// Switches method, keeping each method's knobs as last set.
    pub fn choose_method(&mut self, method: MethodConfig) {
        if method.slug() == self.config.method.slug() {
            return;
        }
        let previous = std::mem::replace(&mut self.config.method, method);
        let slug = self.config.method.slug();
        self.method_memory.insert(previous.slug(), previous);
        if let Some(remembered) = self.method_memory.remove(slug) {
            self.config.method = remembered;
        }
    }

    fn sync_data(&self, config: &mut ExperimentConfig) {
        config.data.forget = self.forget.sources.clone();
        config.data.retain = self.retain.sources.clone();
    }

    /// The config Run would start, checked.
    pub fn run_config(&self) -> Result<ExperimentConfig, String> {
        self.checkpoint.as_ref().map_err(|e| {
            if e.is_empty() {
                "no checkpoint loaded".to_string()
            } else {
                e.clone()
            }
        })?;
        let mut config = self.config.clone();
        self.sync_data(&mut config);
        if config.data.forget_class.is_none() && config.data.forget.is_empty() {
            return Err("the forget set is empty: drop images on it or pick a class".into());
        }
        if config.method.uses_retain() && config.data.retain.is_empty() {
            return Err(format!(
                "{} needs a retain set: drop images on it",
                config.method.label()
            ));
        }
        config.validate()?;
        Ok(config)
    }

    pub fn is_running(&self) -> bool {
        self.live.as_ref().is_some_and(LiveRun::is_running)
    }

    /// Preview: the original model's samples and figures and the cost estimate of the
    /// configured run, computed by the engine without starting it (and cached, so the run
    /// that follows reuses them). Shown in the live view until a run starts.
    pub fn preview(&mut self) {
        if self.is_running() {
            self.status = "a run is going: its live view already shows the original".into();
            return;
        }
        match self.run_config() {
            Ok(config) => {
                self.previewed = Some(preview_key(&config));
                self.status = "previewing the original model".into();
                self.live = Some(LiveRun::preview());
                self.outbox.push(Command::Preview(Box::new(config)));
            }
            Err(e) => self.status = format!("nothing to preview: {e}"),
        }
    }

    /// Whether the settings a preview depends on changed since it was made.
    pub fn preview_is_stale(&self) -> bool {
        match (&self.previewed, self.run_config()) {
            (Some(key), Ok(config)) => *key != preview_key(&config),
            _ => true,
        }
    }

    /// What the configured run is expected to cost: the last preview's (or run's) timings
    /// applied to the current steps, batch, method and evaluation schedule; `None` before
    /// a preview, or when the model, data or evaluation changed since.
    pub fn planned_estimate(&self) -> Option<crate::experiment::cost::CostEstimate> {
        let measured = self.live.as_ref()?.estimate.as_ref()?;
        if self.preview_is_stale() {
            return None;
        }
        let config = self.run_config().ok()?;
        let eval = config.eval.resolved();
        Some(measured.replanned(&crate::experiment::cost::Plan {
            steps: config.train.steps,
            batch_size: config.train.batch_size,
            passes_per_step: config.method.passes_per_step(),
            every: eval.every,
            at_end: eval.at_end,
            // The preview cached the original's evaluation: the run reuses it.
            original_cached: eval.reuse_original,
        }))
    }

    /// Run: starts the configured run (refused while one runs).
    pub fn start(&mut self) {
        if self.sets_loading() {
            return;
        }
        match self.run_config() {
            Ok(config) => self.start_config(config, None),
            Err(e) => self.status = e,
        }
    }

    fn start_config(&mut self, config: ExperimentConfig, title: Option<String>) {
        if self.is_running() {
            self.status = "a run is already going: cancel it first".into();
            return;
        }
        let title = title.unwrap_or_else(|| config.method.label().to_string());
        self.status = format!("starting {title}");
        self.live = Some(LiveRun::new(title));
        self.outbox.push(Command::Start(Box::new(config)));
    }

    /// Resume (runs table): continues an interrupted, cancelled or failed run from its last
    /// saved state.
    pub fn continue_run(&mut self, run_dir: &Path) {
        if self.is_running() {
            self.status = "a run is already going: cancel it first".into();
            return;
        }
        let name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let title = format!("{} (resumed)", name.unwrap_or_default());
        self.status = format!("resuming {title}");
        self.live = Some(LiveRun::new(title));
        self.outbox.push(Command::Continue {
            run_dir: run_dir.to_path_buf(),
            backend: Some(crate::backend::BackendRequest {
                choice: self.config.header.backend,
                remote: self.config.header.remote.clone(),
            }),
        });
    }

    pub fn pause(&mut self) {
        self.outbox.push(Command::Pause);
    }
    pub fn resume(&mut self) {
        self.outbox.push(Command::Resume);
    }
    pub fn cancel(&mut self) {
        self.queue.clear();
        self.outbox.push(Command::Cancel);
    }
    pub fn sample_now(&mut self) {
        self.outbox.push(Command::SampleNow);
    }
    pub fn evaluate_now(&mut self) {
        self.outbox.push(Command::EvaluateNow);
    }

    /// An engine event: updates the live run; when a run ends, the runs table is re-read
    /// and the next queued sweep run starts.
    pub fn apply(&mut self, event: Event) {
        if let Event::Preview(_) | Event::PreviewEnded(_) = &event {
            self.apply_preview(event);
            return;
        }
        let terminal = event.is_terminal();
        if let Event::Failed { error, .. } = &event {
            self.status = format!("run failed: {error}");
        }
        if let Some(live) = &mut self.live {
            live.apply(event);
        }
        if terminal {
            if let Some(live) = &self.live
                && !matches!(live.phase, super::live::Phase::Failed(_))
            {
                self.status = format!("{} {:?}", live.title, live.phase).to_lowercase();
            }
            self.refresh_runs();
            if let Some(next) = self.queue.pop_front() {
                let title = next.header.name.clone();
                self.start_config(next, title);
            }
        }
    }

    /// A preview's event, shown only while the live view still holds that preview (a run
    /// started since replaces it).
    fn apply_preview(&mut self, event: Event) {
        let Some(live) = self.live.as_mut().filter(|l| l.preview) else {
            return;
        };
        if let Event::PreviewEnded(outcome) = &event {
            self.status = match outcome {
                Ok(()) => "preview ready: the original model as a run would start from it".into(),
                Err(e) => format!("preview failed: {e}"),
            };
        }
        live.apply(event);
    }

    /// The directory the compare view lists: a chosen sweep's, else the runs directory.
    pub fn runs_shown(&self) -> &Path {
        self.runs_source
            .as_deref()
            .unwrap_or(&self.config.header.runs_dir)
    }

    /// Shows a sweep directory's trials in the compare view (`None`: the runs directory).
    pub fn show_runs_of(&mut self, source: Option<PathBuf>) {
        self.runs_source = source;
        self.selected_runs.clear();
        self.refresh_runs();
    }

    /// Shows the sweep directory at `path`, wherever it is (`lethe sweep … --out` may put it
    /// outside the runs directory); refused with the reason when it is not one.
    pub fn open_sweep(&mut self, path: &Path) {
        if sweep::Manifest::exists_in(path) {
            self.show_runs_of(Some(path.to_path_buf()));
            self.status = format!("showing the sweep in {}", path.display());
        } else {
            self.status = format!(
                "{}: not a sweep directory (no {})",
                path.display(),
                sweep::MANIFEST
            );
        }
    }

    /// The sweep directories in the runs directory (each with its `sweep.json`), by name.
    pub fn sweep_dirs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.config.header.runs_dir) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| sweep::Manifest::exists_in(p))
            .collect();
        dirs.sort();
        dirs
    }

    pub fn refresh_runs(&mut self) {
        let (rows, mut problems) = runs::scan(self.runs_shown());
        self.sweep_summary = None;
        if let Some(dir) = &self.runs_source {
            match sweep::status::scan(dir) {
                Ok((_, trials)) => self.sweep_summary = Some(sweep::status::summary(&trials)),
                Err(e) => problems.push(e),
            }
        }
        self.runs_read_at = Some(std::time::Instant::now());
        self.runs = rows;
        self.run_problems = problems;
        let present: BTreeSet<PathBuf> = self.runs.iter().map(|r| r.path.clone()).collect();
        self.selected_runs.retain(|p| present.contains(p));
    }

    /// Which knob a sweep of the current method varies, if it has one.
    pub fn sweep_knob(&self) -> Option<SweepKnob> {
        match self.config.method {
            MethodConfig::Siss(_) => Some(SweepKnob::SissLambda),
            MethodConfig::EraseDiff(_) => Some(SweepKnob::EraseDiffAlpha),
            _ => None,
        }
    }

    /// Queues one run per value of λ (SISS) or α (EraseDiff), evenly spaced, and starts
    /// the first. The sweep is written as a sweep file and directory in the runs directory
    /// (`sweep-<time>-<knob>/`: `sweep.toml`, `base.toml`, `sweep.json`) and expanded by the
    /// same code as `lethe sweep`, so `lethe sweep run|status|collect` work on it too; the
    /// compare view switches to it and fills as its trials finish.
    pub fn queue_sweep(&mut self) {
        if self.sets_loading() {
            return;
        }
        let Some(knob) = self.sweep_knob() else {
            self.status = "sweeps vary SISS λ or EraseDiff α: choose one of them".into();
            return;
        };
        let base = match self.run_config() {
            Ok(c) => c,
            Err(e) => {
                self.status = e;
                return;
            }
        };
        let (dir, configs) = match self.write_sweep(&base, knob) {
            Ok(written) => written,
            Err(e) => {
                self.status = format!("sweep: {e}");
                return;
            }
        };
        let n = configs.len();
        self.queue.extend(configs);
        self.status = format!("sweep: {n} runs queued in {}", dir.display());
        self.show_runs_of(Some(dir));
        if !self.is_running()
            && let Some(first) = self.queue.pop_front()
        {
            let title = first.header.name.clone();
            self.start_config(first, title);
        }
    }

    /// Writes the sweep of `knob` over the panel's values on top of `base` (see
    /// [`Self::queue_sweep`]); returns its directory and its trials' configs.
    fn write_sweep(
        &self,
        base: &ExperimentConfig,
        knob: SweepKnob,
    ) -> Result<(PathBuf, Vec<ExperimentConfig>), String> {
        let n = self.sweep.runs.max(1);
        let values: Vec<f64> = (0..n)
            .map(|i| {
                let t = if n == 1 {
                    0.0
                } else {
                    i as f64 / (n - 1) as f64
                };
                // Rounded, so 0.2 + ⅓·0.6 is written (and named) 0.4.
                let value = self.sweep.from + t * (self.sweep.to - self.sweep.from);
                (value * 1e9).round() / 1e9
            })
            .collect();
        let (key, slug) = match knob {
            SweepKnob::SissLambda => ("method.lambda", "siss-lambda"),
            SweepKnob::EraseDiffAlpha => ("method.alpha", "erasediff-alpha"),
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let dir = (0..)
            .map(|i| {
                let suffix = if i == 0 {
                    String::new()
                } else {
                    format!("-{i}")
                };
                base.header
                    .runs_dir
                    .join(format!("sweep-{stamp}-{slug}{suffix}"))
            })
            .find(|d| !d.exists())
            .expect("a free name");
        let written = |path: &Path, text: String| {
            crate::util::atomic_write(path, text.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let base_path = dir.join("base.toml");
        let mut base = base.clone();
        base.header.name = None;
        written(
            &base_path,
            toml::to_string(&base).map_err(|e| e.to_string())?,
        )?;
        let mut grid = toml::Table::new();
        grid.insert(
            key.into(),
            toml::Value::Array(values.into_iter().map(toml::Value::Float).collect()),
        );
        let mut file = toml::Table::new();
        file.insert("base".into(), base_path.display().to_string().into());
        file.insert("out".into(), dir.display().to_string().into());
        file.insert("grid".into(), toml::Value::Table(grid));
        let sweep_path = dir.join("sweep.toml");
        written(
            &sweep_path,
            format!(
                "# Written by the workbench's \"Queue sweep\"; `lethe sweep run {}` runs the same trials.\n{}",
                sweep_path.display(),
                toml::to_string(&file).map_err(|e| e.to_string())?
            ),
        )?;
        let expanded = sweep::expand(&sweep_path, None)?;
        let manifest = sweep::Manifest::write_or_check(&expanded, &sweep_path)?;
        let configs = manifest
            .trials
            .iter()
            .map(|t| t.config())
            .collect::<Result<Vec<_>, String>>()?;
        Ok((dir, configs))
    }

    /// DiMRA on a finished run: fine-tune its last checkpoint on the retain data and watch
    /// the forgotten content's rate.
    pub fn start_attack(&mut self, run: &Path) {
        match self.attack_config(run) {
            Ok(config) => {
                let name = run.file_name().map(|n| n.to_string_lossy().into_owned());
                let title = format!("DiMRA attack on {}", name.unwrap_or_default());
                self.start_config(config.to_experiment(), Some(title));
            }
            Err(e) => self.status = e,
        }
    }

    pub fn attack_config(&self, run: &Path) -> Result<AttackConfig, String> {
        let row = runs::read_run(run)?;
        let checkpoint = row
            .info
            .last_checkpoint
            .clone()
            .ok_or_else(|| format!("{}: the run has no checkpoint to attack", run.display()))?;
        let unlearned = row
            .config
            .ok_or_else(|| format!("{}: config.toml unreadable", run.display()))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = run.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(AttackConfig {
            header: RunHeader {
                checkpoint,
                name: Some(format!("dimra-{}-{stamp}", base.unwrap_or_default())),
                ..unlearned.header.clone()
            },
            auxiliary: unlearned.data.retain.clone(),
            forgotten_class: unlearned.data.forget_class,
            forgotten_images: unlearned.data.forget.clone(),
            forgotten_label: unlearned.data.forget_label,
            steps: self.attack.steps,
            batch_size: unlearned.train.batch_size,
            // The unlearning run's split fitted its memory; the attack's passes are alike.
            grad_accumulation: unlearned.train.grad_accumulation,
            learning_rate: self.attack.learning_rate,
            evaluate_every: self.attack.evaluate_every,
            cond_drop_prob: 0.1,
            seed: unlearned.train.seed,
            // Saved as often as the unlearning run was.
            save_state_every: unlearned.train.save_state_every,
            save_state_minutes: unlearned.train.save_state_minutes,
            eval: unlearned.eval.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_is_ready_to_run_with_one_click() {
        let mut bench = Workbench::demo();
        bench.finish_loading();
        assert!(bench.checkpoint.is_ok(), "{:?}", bench.checkpoint.err());
        assert_eq!(bench.forget.len(), 1);
        assert_eq!(bench.retain.len(), 10_000);
        assert_eq!(bench.config.method.label(), "SISS");
        bench.start();
        assert!(
            matches!(bench.outbox.as_slice(), [Command::Start(_)]),
            "{}",
            bench.status
        );
        assert!(bench.is_running());
        // A second Run while one goes is refused, not queued twice.
        bench.start();
        assert_eq!(bench.outbox.len(), 1);
    }

    #[test]
    fn switching_methods_keeps_each_methods_knobs() {
        let mut bench = Workbench::demo();
        if let MethodConfig::Siss(c) = &mut bench.config.method {
            c.lambda = 0.3;
        }
        bench.choose_method(MethodConfig::EraseDiff(Default::default()));
        assert_eq!(bench.config.method.slug(), "erasediff");
        bench.choose_method(MethodConfig::Siss(Default::default()));
        let MethodConfig::Siss(c) = &bench.config.method else {
            panic!()
        };
        assert_eq!(c.lambda, 0.3);
    }

    #[test]
    fn a_sweep_queues_evenly_spaced_values_and_starts_the_first() {
        let mut bench = Workbench::demo();
        bench.finish_loading();
        bench.config.header.runs_dir = tempfile::tempdir().unwrap().keep();
        bench.sweep = SweepSettings {
            from: 0.2,
            to: 0.8,
            runs: 4,
        };
        bench.queue_sweep();
        assert_eq!(bench.outbox.len(), 1);
        let lambdas: Vec<f64> = bench
            .queue
            .iter()
            .map(|c| match &c.method {
                MethodConfig::Siss(s) => s.lambda,
                _ => panic!(),
            })
            .collect();
        assert_eq!(lambdas.len(), 3);
        for (got, want) in lambdas.iter().zip([0.4, 0.6, 0.8]) {
            assert!((got - want).abs() < 1e-12, "{lambdas:?}");
        }
        // Written as a sweep directory that `lethe sweep` reads, and shown in the compare view.
        let dir = bench
            .runs_source
            .clone()
            .expect("the compare view shows the sweep");
        assert_eq!(bench.sweep_dirs(), vec![dir.clone()]);
        let manifest = sweep::Manifest::read(&dir).unwrap();
        assert_eq!(manifest.trials.len(), 4);
        assert_eq!(manifest.trials[1].varies(), "method.lambda=0.4");
        let Command::Start(first) = &bench.outbox[0] else {
            panic!("the first trial starts")
        };
        assert_eq!(first.header.runs_dir, dir);
        assert_eq!(
            first.header.name.as_deref(),
            Some(manifest.trials[0].name.as_str())
        );
        assert_eq!(bench.sweep_summary.as_deref(), Some("4 trials: 4 missing"));
        // Back to all runs, then the sweep again by its path; a folder that is not one is refused.
        bench.show_runs_of(None);
        bench.open_sweep(&dir.join("logs"));
        assert!(bench.runs_source.is_none());
        assert!(
            bench.status.contains("not a sweep directory"),
            "{}",
            bench.status
        );
        bench.open_sweep(&dir);
        assert_eq!(bench.runs_source.as_ref(), Some(&dir));
        // The same sweep file again expands to the same trials (`lethe sweep run` continues it).
        let again = sweep::expand(&dir.join("sweep.toml"), None).unwrap();
        sweep::Manifest::write_or_check(&again, &dir.join("sweep.toml")).unwrap();
    }

    #[test]
    fn run_is_refused_with_a_reason_when_the_forget_set_is_empty() {
        let mut bench = Workbench::demo();
        bench.forget.clear();
        bench.finish_loading();
        bench.start();
        assert!(bench.outbox.is_empty());
        assert!(
            bench.status.contains("forget set is empty"),
            "{}",
            bench.status
        );
    }
}
