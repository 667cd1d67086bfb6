//! One unlearning run, start to finish, on the worker thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use rand_chacha::ChaCha8Rng;

use super::control::Control;
use super::data::prepare_data;
use super::estimate;
use super::memory_fit;
use super::original_cache;
use super::resume::{self, RunState};
use super::{Event, Summary};
use crate::data::ImageSpec;
use crate::device_check::DeviceRecord;
use crate::diffusion::checkpoint::{self, Provenance};
use crate::diffusion::sampler::{SAMPLE_BATCH, SampleJob, SamplerSpec};
use crate::diffusion::unet::UNet;
use crate::experiment::config::Sampling;
use crate::experiment::cost::{CostEstimate, Plan};
use crate::experiment::run_dir::RunLock;
use crate::experiment::{
    EvaluatedModel, ExperimentConfig, MetricsLine, RunDir, RunInfo, RunStatus, StepRecord,
};
use crate::metrics::baseline_check::{self, GuidanceProbe, Setting};
use crate::metrics::classifier::LoadedClassifier;
use crate::metrics::evaluation::Evaluation;
use crate::metrics::feature_net::FeatureNet;
use crate::metrics::suite::{Drawn, Suite, SuiteSpec};
use crate::train::memory::{
    MemoryReport, PeakMemory, available_memory, heap_meter_installed, heap_peak_of,
};
use crate::train::{Layout, clip_to_norm, snapshot, step_rng, update_ema};
use crate::unlearn::step::{Conditioning, StepContext, UnlearnData, draw, noised};
use crate::unlearn::{Direction, Method};
use crate::util::sha256_hex;

/// Why a run stopped early with an error.
#[derive(Debug)]
pub enum Stop {
    Failed {
        error: String,
        run_dir: Option<PathBuf>,
    },
}

fn failed(error: impl Into<String>) -> Stop {
    Stop::Failed {
        error: error.into(),
        run_dir: None,
    }
}

/// Runs `config` to completion (or cancellation), emitting events. Errors before the run
/// directory exists come back as `Stop::Failed` without a directory.
pub fn execute(
    config: &ExperimentConfig,
    control: &mut Control<'_>,
    emit: &dyn Fn(Event),
) -> Result<(), Stop> {
    config.validate().map_err(failed)?;
    launch(config, None, control, emit)
}

/// Continues the run in `run_dir` from its last saved state (`lethe unlearn --resume`);
/// `config` is the run's own `config.toml` (its backend may be changed). Refused for a
/// finished run and for one another process is running.
pub fn execute_resumed(
    config: &ExperimentConfig,
    run_dir: &Path,
    control: &mut Control<'_>,
    emit: &dyn Fn(Event),
) -> Result<(), Stop> {
    config.validate().map_err(failed)?;
    let dir = RunDir::open(run_dir);
    let info = dir.read_status().map_err(failed)?;
    dir.refuse_symlinks().map_err(failed)?;
    if !info.status.resumable() {
        return Err(failed(format!(
            "{}: the run is {}; only an interrupted, cancelled or failed run can be resumed",
            run_dir.display(),
            info.status.label()
        )));
    }
    let lock = dir.lock().map_err(failed)?;
    launch(config, Some((dir, lock, info)), control, emit)
}

/// A run directory to continue: the directory, its lock (held from now on), its `run.json`.
type Reopened = (RunDir, RunLock, RunInfo);

/// A run on `remote` connects to the config's server unless this process already has
/// (the CLI and the workbench connect first, with the token they asked for; a sweep trial
/// or a resumed run connects here, with the token from the environment).
fn connect_remote(config: &ExperimentConfig, emit: &dyn Fn(Event)) -> Result<(), String> {
    use crate::backend::{BackendChoice, remote};
    if config.header.backend != BackendChoice::Remote {
        return Ok(());
    }
    let url = config.header.remote.as_deref().ok_or(
        "backend = \"remote\" needs the server's address: remote = \"ws://host:port\" (or --backend remote:ws://host:port)",
    )?;
    let url = remote::parse_url(url)?;
    if remote::status().is_some_and(|s| s.url == url) {
        return Ok(());
    }
    emit(Event::Note(format!("connecting to {url}")));
    let token = std::env::var(remote::TOKEN_ENV).ok();
    let status = remote::connect(&url, token.as_deref())?;
    emit(Event::Note(format!(
        "connected to {} ({:.1} ms round trip)",
        status.describe(),
        status.latency_ms
    )));
    Ok(())
}

/// What a run (or a preview) works with before its directory exists: the device that passed
/// the check, the loaded checkpoint and data, and the config with its evaluation fitted.
struct Prepared {
    selection: crate::device_check::Selection,
    device: Device,
    source: checkpoint::Checkpoint,
    data: UnlearnData,
    fitted: ExperimentConfig,
    fit_note: Option<String>,
}

fn prepare(config: &ExperimentConfig, emit: &dyn Fn(Event)) -> Result<Prepared, String> {
    connect_remote(config, emit)?;
    // A GPU is used only after it has matched the CPU on this model (cached per device and
    // model); `auto` falls back to the CPU and says why.
    let selection =
        crate::device_check::select(config.header.backend, &config.header.checkpoint, &|note| {
            emit(Event::Note(note.to_string()))
        })?;
    let device = selection.device.clone().autodiff();
    emit(Event::Note(format!(
        "loading {}",
        config.header.checkpoint.display()
    )));
    let source = checkpoint::load(&config.header.checkpoint, &device).map_err(|e| e.to_string())?;
    let spec = ImageSpec {
        channels: source.config.in_channels,
        height: source.config.sample_size,
        width: source.config.sample_size,
    };
    let data = prepare_data(config, spec, &source.config)?;
    check_sampler_steps(&config.eval.sampling(), &source)?;
    // Written into config.toml by a run, the fitted evaluation is what a resumed run uses.
    let record = selection.record();
    let device_label = format!("{} {}", record.backend, record.device);
    let (fitted, fit_note) = estimate::fit_evaluation(
        config,
        &source,
        &data,
        &device.clone().inner(),
        &device_label,
    )?;
    Ok(Prepared {
        selection,
        device,
        source,
        data,
        fitted,
        fit_note,
    })
}

/// A sampler takes at most one step per training timestep of the model; refused here, before
/// a run directory exists, instead of at the original's evaluation (issue #30).
fn check_sampler_steps(sampling: &Sampling, source: &checkpoint::Checkpoint) -> Result<(), String> {
    let timesteps = source.schedule.num_train_timesteps();
    if sampling.steps > timesteps {
        return Err(format!(
            "eval.sampler_steps = {} is more than the {timesteps} training timesteps of {} (num_train_timesteps)",
            sampling.steps,
            source.dir.join(checkpoint::SCHEDULER_CONFIG).display()
        ));
    }
    Ok(())
}

/// What a run of `config` starts from, without training it: the cost estimate, the
/// guidance check and the original model's evaluation and samples — the events a run's
/// start emits. A run that stops before its first step, in a scratch directory removed
/// afterwards; the original's evaluation goes to the cache, so the run that follows
/// reuses it instead of computing it again.
pub fn preview(config: &ExperimentConfig, emit: &dyn Fn(Event)) -> Result<(), String> {
    config.validate()?;
    let prepared = prepare(config, emit)?;
    let scratch = tempfile::Builder::new()
        .prefix("lethe-preview-")
        .tempdir()
        .map_err(|e| format!("a scratch directory for the preview: {e}"))?;
    let dir = RunDir::open(scratch.path());
    for sub in ["samples", "checkpoints"] {
        let d = dir.path.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let config = &prepared.fitted;
    let mut run = Run::new(
        config,
        prepared.source,
        prepared.data,
        &dir,
        &prepared.device,
    )?;
    run.device_record = Some(prepared.selection.record());
    run.fit_note = prepared.fit_note;
    run.origin = Some(PathBuf::from("a workbench preview"));
    if !run.eval.evaluates() {
        emit(Event::Note(
            "nothing to preview: [eval] every = 0 and at_end = false".into(),
        ));
        return Ok(());
    }
    run.announce_estimate(emit)?;
    run.evaluate_original(emit)
}

fn launch(
    config: &ExperimentConfig,
    reopened: Option<Reopened>,
    control: &mut Control<'_>,
    emit: &dyn Fn(Event),
) -> Result<(), Stop> {
    let Prepared {
        selection,
        device,
        source,
        data,
        fitted,
        fit_note,
    } = prepare(config, emit).map_err(failed)?;
    let config = &fitted;
    // The lock is held until this function returns: while it is, readers see the run as
    // running; once the process dies, as interrupted.
    let (run_dir, _lock, previous) = match reopened {
        Some((dir, lock, info)) => (dir, lock, Some(info)),
        None => {
            let (dir, lock) = RunDir::create_locked(config).map_err(failed)?;
            (dir, lock, None)
        }
    };
    let with_dir = |error: String| Stop::Failed {
        error,
        run_dir: Some(run_dir.path.clone()),
    };
    let mut run = Run::new(config, source, data, &run_dir, &device).map_err(&with_dir)?;
    run.device_record = Some(selection.record());
    run.fit_note = fit_note;
    // A new run whose step cannot fit in memory is refused before any work (the original's
    // evaluation takes minutes) and leaves no run directory behind: nothing was written
    // there yet but its config.
    if previous.is_none()
        && config.train.steps > 0
        && let Err(error) = run.check_memory(emit)
    {
        drop(run);
        drop(_lock);
        let _ = std::fs::remove_dir_all(&run_dir.path);
        return Err(Stop::Failed {
            error,
            run_dir: None,
        });
    }
    emit(Event::Started {
        run_dir: run_dir.path.clone(),
        method: config.method.label().to_string(),
        total_steps: config.train.steps,
        backend: format!("{} ({})", selection.backend, selection.device_name),
        device_reason: selection.reason.clone(),
        forget_images: run.data.forget.len(),
        retain_images: run.data.retain.len(),
    });
    let prepared = match previous {
        Some(info) => run
            .restore(info, emit)
            .and_then(|()| run.announce_estimate(emit)),
        None => run.announce_estimate(emit).and_then(|()| run.begin(emit)),
    };
    // A backend panic mid-run (a GPU out of memory, a remote server that went away) is
    // recorded in run.json like any other failure; the last checkpoint stays.
    let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prepared.and_then(|()| run.train(control, emit))
    }))
    .unwrap_or_else(|panic| Err(super::panic_error(&*panic, config)));
    match trained {
        Ok(status) => {
            let summary = run.finish(status, None).map_err(&with_dir)?;
            emit(match status {
                RunStatus::Cancelled => Event::Cancelled(summary),
                _ => Event::Finished(summary),
            });
            Ok(())
        }
        Err(error) => {
            // The run dir keeps its last good checkpoint; record why it stopped.
            let _ = run.finish(RunStatus::Failed, Some(error.clone()));
            Err(with_dir(error))
        }
    }
}

struct Run<'a> {
    config: &'a ExperimentConfig,
    dir: &'a RunDir,
    device: &'a Device,
    model: UNet,
    /// EMA of `model` (inner device) when `train.ema_decay > 0`.
    ema: Option<UNet>,
    original: UNet,
    source: checkpoint::Checkpoint,
    data: UnlearnData,
    suite: Suite,
    /// The resolved evaluation settings (a preset applied).
    eval: crate::experiment::config::EvalConfig,
    sampler: SamplerSpec,
    /// Unconditional sampler for the quality metrics when `sampler` draws the forgotten
    /// class (class setting with a null class).
    quality_sampler: Option<SamplerSpec>,
    shape: [usize; 3],
    original_samples: Arc<Vec<Vec<f32>>>,
    baseline: Option<Evaluation>,
    last_eval: Option<Evaluation>,
    steps_done: usize,
    train_seconds: f64,
    started_unix: u64,
    last_checkpoint: Option<PathBuf>,
    /// The device the run computes on and why (run.json).
    device_record: Option<DeviceRecord>,
    /// What the forgetting rates measure, for the check of the original's evaluation.
    setting: Setting,
    /// Why the forgetting rates cannot show forgetting (set once the original is evaluated);
    /// every evaluation of the run carries it in its provenance.
    caveat: Option<String>,
    /// What computed this run's original evaluation, for the cache's record (a preview
    /// names itself; a run, its directory).
    origin: Option<PathBuf>,
    /// The saved state a resumed run continues from, until `train` has loaded it.
    resumed: Option<RunState>,
    /// The steps at which this run was resumed (run.json).
    resumed_at: Vec<usize>,
    last_state_save: Instant,
    /// The guidance check's report (cached with the original's evaluation).
    guidance_check: Option<String>,
    /// Seconds spent evaluating (run.json).
    eval_seconds: f64,
    /// What the run expected to spend, worked out before it started (run.json).
    estimate: Option<CostEstimate>,
    /// How the evaluation was fitted to its budget, when it was.
    fit_note: Option<String>,
    /// What one evaluation samples.
    sampling: Sampling,
    /// Peak memory of training (the device's pools, the process's resident set).
    memory: PeakMemory,
    /// The peak recorded by the run's earlier processes (a resumed run), kept when larger.
    earlier_peak: Option<MemoryReport>,
    /// Whether `check_memory` ran (a new run checks before its first evaluation; a resumed
    /// one before its first step).
    memory_checked: bool,
}

impl<'a> Run<'a> {
    fn new(
        config: &'a ExperimentConfig,
        source: checkpoint::Checkpoint,
        data: UnlearnData,
        dir: &'a RunDir,
        device: &'a Device,
    ) -> Result<Self, String> {
        // Every forward of the run — training, the original's, evaluation — computes in the
        // configured precision; the weights stay f32.
        let precision = config.train.precision;
        precision.check_trainable()?;
        let model = config
            .method
            .starting_model(&source.unet, &source.config, device)?
            .with_precision(precision);
        let original = source.unet.valid().with_precision(precision);
        let shape = source.config.image_shape();
        let eval = config.eval.resolved();
        let sampling = eval.sampling();
        let inner = device.clone().inner();
        // The classifier is optional here: without one that fits, the run goes on with the
        // metrics that need none (copy rate, ELBO).
        let classifier = config
            .eval
            .classifier_path()
            .map(|p| crate::data::demo::asset(&p.to_string_lossy()))
            .and_then(|p| LoadedClassifier::load_for(&p, shape, &inner).ok());
        // The FID Inception is loaded only when configured, and then must load.
        let feature_net =
            FeatureNet::resolve(&config.eval.feature_net, classifier.as_ref(), &inner)?;
        let suite = Suite::for_run(
            SuiteSpec {
                model: &source.config,
                retain: &data.retain,
                forget: &data.forget,
                classifier,
                feature_net,
                forgotten_class: config.data.forget_class.or(config.data.forget_label),
                copy_threshold: config.eval.copy_threshold,
                elbo_images: eval.elbo_images,
                elbo_timesteps: eval.elbo_timesteps,
                seed: eval.seed,
                preset: config.eval.preset_name(),
            },
            &inner,
        )?;
        // Class setting: sample the forgotten class (guided); data-point setting: sample
        // unconditionally, as the SISS criterion is defined.
        let forgotten_class = config.data.forget_class;
        let guided = forgotten_class.is_some() && source.config.lethe_null_class.is_some();
        let conditioned = source.config.num_class_embeds.is_some();
        let sampler = SamplerSpec {
            class: forgotten_class.filter(|_| conditioned),
            // Absent: chosen by the guidance check when the run starts (`resolve_guidance`).
            guidance: if guided {
                eval.guidance
                    .unwrap_or(baseline_check::GUIDANCE_CANDIDATES[0])
            } else {
                0.0
            },
            ..SamplerSpec::new(sampling.sampler, sampling.steps)
        };
        let setting = match forgotten_class {
            Some(class) => Setting::Class {
                class,
                conditioned,
                classes: source.config.num_real_classes().unwrap_or(10),
            },
            None => Setting::DataPoint,
        };
        let quality_sampler = guided.then(|| SamplerSpec::new(sampling.sampler, sampling.steps));
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            config,
            dir,
            device,
            ema: (config.train.ema_decay > 0.0).then(|| model.valid()),
            model,
            original,
            source,
            data,
            suite,
            eval,
            sampler,
            quality_sampler,
            shape,
            original_samples: Arc::new(vec![]),
            baseline: None,
            last_eval: None,
            steps_done: 0,
            train_seconds: 0.0,
            started_unix,
            last_checkpoint: None,
            device_record: None,
            setting,
            caveat: None,
            origin: None,
            resumed: None,
            resumed_at: Vec::new(),
            last_state_save: Instant::now(),
            guidance_check: None,
            eval_seconds: 0.0,
            estimate: None,
            fit_note: None,
            sampling,
            memory: PeakMemory::start(),
            earlier_peak: None,
            memory_checked: false,
        })
    }

    fn info(&self, status: RunStatus, error: Option<String>) -> RunInfo {
        RunInfo {
            status,
            method: self.config.method.label().to_string(),
            lethe_version: env!("CARGO_PKG_VERSION").to_string(),
            backend: self.device_record.as_ref().map_or_else(
                || self.config.header.backend.to_string(),
                |d| d.backend.to_string(),
            ),
            device: self.device_record.clone(),
            source_checkpoint: self.config.header.checkpoint.clone(),
            source_sha256: self.source.weights_sha256.clone(),
            steps_done: self.steps_done,
            total_steps: self.config.train.steps,
            seconds: self.train_seconds,
            seconds_per_step: (self.steps_done > 0)
                .then(|| self.train_seconds / self.steps_done as f64),
            started_unix: self.started_unix,
            last_checkpoint: self.last_checkpoint.clone(),
            error,
            resumed_at: self.resumed_at.clone(),
            eval_seconds: self.eval_seconds,
            estimate: self.estimate.clone(),
            peak_memory: Some(self.peak_memory()),
        }
    }

    /// The larger of this process's peaks and those recorded before a resume.
    fn peak_memory(&self) -> MemoryReport {
        let now = self.memory.report();
        let earlier = self.earlier_peak.unwrap_or_default();
        let max = |a: Option<u64>, b: Option<u64>| a.max(b);
        MemoryReport {
            device_reserved_bytes: max(now.device_reserved_bytes, earlier.device_reserved_bytes),
            process_peak_rss_bytes: max(now.process_peak_rss_bytes, earlier.process_peak_rss_bytes),
        }
    }

    /// A new run's start: the guidance check, the original's evaluation and grid, and the
    /// state of step 0 (so a run killed from here on resumes without evaluating again).
    /// A run that evaluates nothing (`every = 0`, `at_end = false`) skips the original's
    /// evaluation too: it is only the baseline of later ones.
    fn begin(&mut self, emit: &dyn Fn(Event)) -> Result<(), String> {
        self.dir.write_info(&self.info(RunStatus::Running, None))?;
        if self.eval.evaluates() {
            self.evaluate_original(emit)?;
        } else {
            emit(Event::Note(
                "no evaluation: [eval] every = 0 and at_end = false".into(),
            ));
        }
        resume::write_state(
            &self.dir.resume_dir(),
            &self.state(serde_json::Value::Null, None)?,
        )
    }

    /// The original's evaluation (the baseline of every later one) and the left half of
    /// every grid — from the cache when an earlier run computed it on the same checkpoint
    /// with the same evaluation, else computed and cached — saved so that a resumed run does
    /// not sample it again.
    fn evaluate_original(&mut self, emit: &dyn Fn(Event)) -> Result<(), String> {
        let clock = Instant::now();
        let cache = self.original_cache_dir();
        let baseline = match cache
            .as_ref()
            .and_then(|d| Some((d, original_cache::load(d, self.shape)?)))
        {
            Some((dir, (entry, samples))) => self.adopt_cached(dir, entry, samples, emit),
            None => {
                let baseline = self.compute_original(emit)?;
                if let Some(dir) = &cache {
                    let entry = original_cache::Entry {
                        evaluation: baseline.clone(),
                        guidance: self.sampler.guidance,
                        guidance_check: self.guidance_check.clone(),
                        computed_by: self.origin.clone().unwrap_or_else(|| self.dir.path.clone()),
                    };
                    if let Err(e) =
                        original_cache::store(dir, &entry, &self.original_samples, self.shape)
                    {
                        // An unwritable cache only costs the next run this evaluation.
                        emit(Event::Note(format!(
                            "the original's evaluation was not cached: {e}"
                        )));
                    }
                }
                baseline
            }
        };
        self.baseline = Some(baseline.clone());
        self.record_eval(0, &baseline, EvaluatedModel::Original, emit)?;
        self.emit_grid(0, self.original_samples.to_vec(), emit)?;
        self.eval_seconds += clock.elapsed().as_secs_f64();
        resume::write_samples(&self.dir.resume_dir(), &self.original_samples, self.shape)
    }

    /// The guidance check and the original's evaluation, computed.
    fn compute_original(&mut self, emit: &dyn Fn(Event)) -> Result<Evaluation, String> {
        self.resolve_guidance(emit)?;
        emit(Event::Note("evaluating the original model".into()));
        let original = self.original.clone();
        let samples = self.draw_samples(&original, &self.sampler)?;
        self.original_samples = Arc::new(samples);
        let mut baseline = self.judge(&original, &self.original_samples.clone())?;
        self.caveat = self.check_baseline(&baseline, emit)?;
        if let Some(how) = baseline.how.as_mut() {
            how.caveat = self.caveat.clone();
        }
        Ok(baseline)
    }

    /// Takes over a cached evaluation of the original: its samples, the guidance it chose and
    /// its caveat, reported as a fresh one would be, with where it came from in its provenance.
    fn adopt_cached(
        &mut self,
        dir: &Path,
        entry: original_cache::Entry,
        samples: Vec<Vec<f32>>,
        emit: &dyn Fn(Event),
    ) -> Evaluation {
        let origin = format!(
            "{} (computed by {})",
            dir.display(),
            entry.computed_by.display()
        );
        emit(Event::Note(format!(
            "the original model's evaluation: reused from the cache, {origin}"
        )));
        self.sampler.guidance = entry.guidance;
        if let Some(check) = entry.guidance_check {
            emit(Event::Guidance {
                guidance: entry.guidance,
                check: format!("{check} (cached)"),
            });
            self.guidance_check = Some(check);
        }
        self.original_samples = Arc::new(samples);
        let mut baseline = entry.evaluation;
        self.caveat = baseline.how.as_ref().and_then(|h| h.caveat.clone());
        if let Some(caveat) = &self.caveat {
            emit(Event::Warning(caveat.clone()));
        }
        if let Some(how) = baseline.how.as_mut() {
            how.reused_from = Some(origin);
        }
        baseline
    }

    /// Where the original's evaluation is cached for this run's checkpoint and evaluation;
    /// `None` when reuse is off or no cache directory can be named.
    fn original_cache_dir(&self) -> Option<PathBuf> {
        if !self.eval.reuse_original {
            return None;
        }
        let mut eval = serde_json::to_value(&self.eval).ok()?;
        if let Some(map) = eval.as_object_mut() {
            // Settings that change when or how often, not what, is evaluated.
            for key in [
                "every",
                "at_end",
                "grid",
                "checkpoint_every",
                "reuse_original",
            ] {
                map.remove(key);
            }
        }
        let mut judges: Vec<String> = self
            .suite
            .probe
            .classifier
            .iter()
            .map(|k| k.feature_label())
            .collect();
        judges.extend(
            self.suite
                .feature_net
                .as_ref()
                .map(|n| format!("{} {}", n.label(), n.weights_sha256())),
        );
        let key = original_cache::CacheKey {
            lethe_version: env!("CARGO_PKG_VERSION"),
            build: original_cache::build_id(),
            weights_sha256: self.source.weights_sha256.clone(),
            model: serde_json::to_value(&self.source.config).ok()?,
            scheduler: serde_json::to_value(&self.source.scheduler).ok()?,
            eval,
            forget_sha256: sha256_hex(&self.data.forget.pixels),
            retain_sha256: sha256_hex(&self.data.retain.pixels),
            forgotten_class: self
                .config
                .data
                .forget_class
                .or(self.config.data.forget_label),
            judges,
            precision: format!("{:?}", self.config.train.precision),
            device: self.device_record.as_ref().map_or_else(
                || self.config.header.backend.to_string(),
                |d| format!("{} {}", d.backend, d.device),
            ),
        };
        original_cache::entry_dir(&key.digest())
    }

    /// Works out what the run's evaluations and training will cost from a timed forward
    /// of its model on its device, and reports it (with a warning when evaluation would
    /// take longer than training). A run that evaluates nothing skips it.
    fn announce_estimate(&mut self, emit: &dyn Fn(Event)) -> Result<(), String> {
        if !self.eval.evaluates() {
            return Ok(());
        }
        let original_cached = self.baseline.is_none()
            && self
                .original_cache_dir()
                .is_some_and(|d| original_cache::load(&d, self.shape).is_some());
        let estimate = self.estimate_cost(original_cached)?;
        emit(Event::Estimate(estimate.clone()));
        self.estimate = Some(estimate);
        Ok(())
    }

    /// The cost estimate: one step of the run's sampler, an unguided forward and the judges,
    /// timed on a few images, times the work the run's evaluations and steps will do.
    fn estimate_cost(&self, original_cached: bool) -> Result<CostEstimate, String> {
        let inner = self.device.clone().inner();
        let job = SampleJob {
            model: &self.original,
            schedule: &self.source.schedule,
            spec: &self.sampler,
            shape: self.shape,
            null_class: self.source.config.lethe_null_class,
            device: &inner,
        };
        let batch = self.sampling.samples.clamp(1, estimate::TIMED_BATCH);
        let timed = estimate::time(&job, &self.suite, batch, self.eval.seed)?;
        let train = &self.config.train;
        let plan = Plan {
            steps: train.steps,
            batch_size: train.batch_size,
            passes_per_step: self.config.method.passes_per_step(),
            every: self.eval.every,
            at_end: self.eval.at_end,
            original_cached: self.baseline.is_some() || original_cached,
        };
        let samples = self.sampling.samples;
        let quality_steps = self
            .quality_sampler
            .as_ref()
            .map_or(0, |q| samples * q.steps);
        Ok(CostEstimate {
            sample_step_seconds: timed.sample_step,
            forward_seconds: timed.forward,
            judge_seconds: timed.judge,
            sample_steps_per_evaluation: samples * self.sampler.steps,
            unguided_forwards_per_evaluation: quality_steps + self.suite.elbo_forwards(),
            judged_per_evaluation: samples * if self.quality_sampler.is_some() { 2 } else { 1 },
            evaluations: usize::from(!plan.original_cached)
                + plan.evaluations_during(self.steps_done + 1)
                + usize::from(plan.at_end),
            original_cached,
            fitted: self.fit_note.clone(),
            train_image_passes: (train.steps - self.steps_done)
                * train.batch_size
                * plan.passes_per_step,
        })
    }

    /// A resumed run's start: the log cut back to the saved step and replayed as events
    /// (curves, the original's evaluation), and what the run decided at its start (guidance,
    /// caveat, the original's samples) read back. The weights are loaded by `train`.
    fn restore(&mut self, previous: RunInfo, emit: &dyn Fn(Event)) -> Result<(), String> {
        self.started_unix = previous.started_unix;
        self.last_checkpoint = previous.last_checkpoint;
        self.resumed_at = previous.resumed_at;
        self.earlier_peak = previous.peak_memory;
        let resume_dir = self.dir.resume_dir();
        let Some(state) = resume::read_state(&resume_dir)? else {
            // Killed before the original's evaluation was saved: nothing to keep.
            emit(Event::Note("no saved state: starting the run again".into()));
            self.dir.retain_metrics(|_| false)?;
            self.resumed_at.push(0);
            return self.begin(emit);
        };
        if state.config_sha256 != resume::config_sha256(&self.dir.path)? {
            return Err(format!(
                "{}: config.toml changed since the run saved its state; a resumed run must run the same experiment (start a new run instead)",
                self.dir.path.display()
            ));
        }
        let step = state.step;
        emit(Event::Note(format!("resuming at step {step}")));
        for line in self.dir.retain_metrics(|line| line.step() <= step)? {
            match line {
                MetricsLine::Step { record } => emit(Event::Step(record)),
                MetricsLine::Eval {
                    step: at,
                    model,
                    evaluation,
                } => {
                    let evaluation = *evaluation;
                    match model {
                        EvaluatedModel::Original => self.baseline = Some(evaluation.clone()),
                        EvaluatedModel::Current => self.last_eval = Some(evaluation.clone()),
                    }
                    emit(Event::Metrics {
                        step: at,
                        baseline: self.baseline.clone().unwrap_or_else(|| evaluation.clone()),
                        evaluation,
                    });
                }
            }
        }
        // A run that evaluated nothing before it stopped evaluates the original when it
        // first evaluates.
        if let Some(baseline) = &self.baseline {
            self.caveat = baseline.how.as_ref().and_then(|h| h.caveat.clone());
            if let Some(caveat) = &self.caveat {
                emit(Event::Warning(caveat.clone()));
            }
            self.sampler.guidance = state.guidance;
            self.original_samples = Arc::new(resume::read_samples(&resume_dir, self.shape)?);
        }
        self.steps_done = step;
        self.train_seconds = state.train_seconds;
        self.resumed_at.push(step);
        self.resumed = Some(state);
        self.dir.write_info(&self.info(RunStatus::Running, None))
    }

    /// The context of one step on `model`.
    fn step_context<'b>(
        &'b self,
        model: &'b UNet,
        layout: &'b Layout,
        step: usize,
        rng: &'b mut ChaCha8Rng,
    ) -> StepContext<'b> {
        let train = &self.config.train;
        let last_t = self.source.schedule.num_train_timesteps() - 1;
        let t_max = train.t_max.unwrap_or(last_t).min(last_t);
        StepContext {
            model,
            layout,
            schedule: &self.source.schedule,
            data: &self.data,
            cond: Conditioning {
                null_class: self.source.config.lethe_null_class,
                class_conditional: self.source.config.num_class_embeds.is_some(),
                drop_prob: train.cond_drop_prob,
            },
            batch_size: train.batch_size,
            micro_batch: train.batch_size.div_ceil(train.grad_accumulation.max(1)),
            reduction: train.reduction,
            timesteps: train.timesteps,
            t_range: (train.t_min.min(t_max), t_max),
            rng,
            device: self.device,
            step,
            learning_rate: train.learning_rate,
            memory: &self.memory,
        }
    }

    /// Loads a resumed run's saved weights, optimizer moments, EMA and method state.
    fn load_resumed(
        &mut self,
        state: &RunState,
        optim: ModuleOptimizer,
        method: &mut dyn Method,
        layout: &Layout,
    ) -> Result<ModuleOptimizer, String> {
        let mut optim = optim;
        if state.step > 0 {
            let inner = self.device.clone().inner();
            let fresh = std::mem::replace(&mut self.model, self.original.clone());
            let (model, loaded, ema) = snapshot::load(
                &snapshot::location(&self.dir.resume_dir(), state.snapshot.as_deref()),
                fresh,
                optim,
                self.ema.take(),
                &inner,
            )?;
            // The compute precision is a run setting, not part of the saved weights.
            self.model = model.with_precision(self.config.train.precision);
            self.ema = ema;
            optim = loaded;
        }
        let start = self
            .config
            .method
            .starting_model(&self.source.unet, &self.source.config, self.device)?
            .with_precision(self.config.train.precision);
        let mut rng = step_rng(self.config.train.seed, 0);
        let mut cx = self.step_context(&start, layout, 0, &mut rng);
        method.restore(&state.method, &mut cx)?;
        Ok(optim)
    }

    fn train(
        &mut self,
        control: &mut Control<'_>,
        emit: &dyn Fn(Event),
    ) -> Result<RunStatus, String> {
        let train = &self.config.train;
        let layout = Layout::of(&self.model);
        let mut optim = train.optimizer.init();
        let num_classes = self.source.config.num_real_classes();
        let mut method = self.config.method.build(num_classes)?;
        if let Some(state) = self.resumed.take() {
            optim = self.load_resumed(&state, optim, &mut *method, &layout)?;
        }
        if self.steps_done < train.steps && !self.memory_checked {
            self.check_memory(emit)?;
        }
        self.last_state_save = Instant::now();
        for step in self.steps_done..train.steps {
            control.poll(emit);
            if control.sample_now {
                control.sample_now = false;
                let s = self.draw_samples(&self.published(), &self.sampler)?;
                self.emit_grid(step, s, emit)?;
            }
            if control.evaluate_now {
                control.evaluate_now = false;
                self.evaluate(step, emit)?;
            }
            if control.cancel {
                self.save_checkpoint("last", emit)?;
                self.save_state(&optim, &*method)?;
                return Ok(RunStatus::Cancelled);
            }
            let clock = Instant::now();
            let mut rng = step_rng(train.seed, step);
            let direction: Direction = {
                let mut cx = self.step_context(&self.model, &layout, step, &mut rng);
                method.direction(&mut cx)?
            };
            let clip = clip_to_norm(direction.grad, train.grad_clip_norm);
            let grad_norm = clip.norm;
            let total = direction.report.total().unwrap_or(0.0);
            if !grad_norm.is_finite() || !total.is_finite() {
                // The model has not taken this step: it is the last good one.
                let path = self.save_checkpoint("last-good", emit)?;
                return Err(format!(
                    "step {}: the {} became {} — stopped; the model before this step is saved at {}. Lower the learning rate or the method's forget weight.",
                    step + 1,
                    if total.is_finite() {
                        "gradient norm"
                    } else {
                        "loss"
                    },
                    if total.is_finite() { grad_norm } else { total },
                    path.display()
                ));
            }
            let grads = clip.grad.into_params(&self.model);
            let model = std::mem::replace(&mut self.model, self.original.clone());
            self.model = optim.step(train.learning_rate, model, grads);
            if let Some(ema) = self.ema.take() {
                let decay = train.ema_decay as f32;
                self.ema = Some(update_ema(ema, &self.model, decay));
            }
            let step_seconds = clock.elapsed().as_secs_f64();
            self.train_seconds += step_seconds;
            self.steps_done = step + 1;
            let record = StepRecord {
                step: step + 1,
                report: direction.report,
                grad_norm,
                clipped: clip.clipped,
                learning_rate: train.learning_rate,
                step_seconds,
            };
            self.dir.append_metrics(&MetricsLine::Step {
                record: record.clone(),
            })?;
            emit(Event::Step(record));
            let done = step + 1;
            if done == train.steps {
                break;
            }
            let every = self.eval.every;
            if every > 0 && done % every == 0 {
                self.evaluate(done, emit)?;
            }
            let ck = self.eval.checkpoint_every;
            if ck > 0 && done % ck == 0 {
                self.save_checkpoint(&format!("step_{done:05}"), emit)?;
                self.dir.write_info(&self.info(RunStatus::Running, None))?;
            }
            // Last: a state saved after this step's evaluation and checkpoint resumes after
            // them.
            if self.state_due(done) {
                self.save_state(&optim, &*method)?;
            }
        }
        if self.eval.at_end {
            self.evaluate(train.steps, emit)?;
        }
        self.save_checkpoint("final", emit)?;
        Ok(RunStatus::Finished)
    }

    /// On a device that reports no memory pools (the CPU), refuses a step that would not fit
    /// in the memory left (the OS would kill the process, not report it): one training pass
    /// measured at 1 and 2 images, extrapolated to the micro-batch (`memory_fit`).
    fn check_memory(&mut self, emit: &dyn Fn(Event)) -> Result<(), String> {
        self.memory_checked = true;
        if self.device.memory_pool_usage().is_some() || !heap_meter_installed() {
            return Ok(());
        }
        let layout = &Layout::of(&self.model);
        let (Some(one), Some(two), Some(available)) = (
            self.forward_graph_bytes(layout, 1),
            self.forward_graph_bytes(layout, 2),
            available_memory(),
        ) else {
            return Ok(()); // not measurable here (no instrumented allocator, not Linux)
        };
        let train = &self.config.train;
        // A backward pass's gradients (per parameter, then flat), per-term gradients kept
        // between passes (up to three) and Adam's two moments: seven f32 copies of the weights.
        let held = 7 * 4 * layout.len() as u64;
        let request = memory_fit::Request {
            batch: train.batch_size,
            accumulation: train.grad_accumulation,
            held,
            available,
        };
        let note = memory_fit::verdict(&memory_fit::PassMemory { one, two }, &request)?;
        emit(Event::Note(note));
        Ok(())
    }

    /// The heap the forward graph of a training pass of `images` holds (its own random
    /// stream: the run's draws are untouched). The graph — activations kept for the backward
    /// pass — is what grows with the images.
    fn forward_graph_bytes(&self, layout: &Layout, images: usize) -> Option<u64> {
        let mut rng = step_rng(self.config.train.seed.wrapping_add(0x6d656d), 0);
        let set = if self.data.retain.is_empty() {
            &self.data.forget
        } else {
            &self.data.retain
        };
        let (loss, peak) = heap_peak_of(|| {
            let mut cx = self.step_context(&self.model, layout, 0, &mut rng);
            let clean = draw(set, images, cx.rng, cx.device);
            let batch = noised(&mut cx, &clean);
            batch.loss(cx.model, cx.reduction)
        });
        drop(loss);
        peak
    }

    /// Whether the resume state is saved after step `done` (`train.save_state_every`, and
    /// `train.save_state_minutes` since the last save).
    fn state_due(&self, done: usize) -> bool {
        let train = &self.config.train;
        let by_steps = train.save_state_every > 0 && done.is_multiple_of(train.save_state_every);
        let by_time = train.save_state_minutes > 0.0
            && self.last_state_save.elapsed().as_secs_f64() >= 60.0 * train.save_state_minutes;
        by_steps || by_time
    }

    /// What `resume/state.json` records now.
    fn state(
        &self,
        method: serde_json::Value,
        snapshot: Option<String>,
    ) -> Result<RunState, String> {
        Ok(RunState {
            snapshot,
            step: self.steps_done,
            train_seconds: self.train_seconds,
            guidance: self.sampler.guidance,
            method,
            config_sha256: resume::config_sha256(&self.dir.path)?,
        })
    }

    /// Saves the weights, optimizer moments, EMA and step: a new snapshot, then `state.json`
    /// naming it, then the older snapshots go — so a save cut short leaves the previous
    /// state, with its own snapshot, in charge.
    fn save_state(&mut self, optim: &ModuleOptimizer, method: &dyn Method) -> Result<(), String> {
        let dir = self.dir.resume_dir();
        let saved = if self.steps_done > 0 {
            let name =
                snapshot::save(&dir, self.steps_done, &self.model, optim, self.ema.as_ref())?;
            Some(name)
        } else {
            None
        };
        resume::write_state(&dir, &self.state(method.saved_state(), saved.clone())?)?;
        if let Some(name) = &saved {
            snapshot::remove_others(&dir, name)?;
        }
        self.last_state_save = Instant::now();
        self.dir.write_info(&self.info(RunStatus::Running, None))
    }

    fn finish(&mut self, status: RunStatus, error: Option<String>) -> Result<Summary, String> {
        self.dir.write_info(&self.info(status, error))?;
        if status == RunStatus::Finished {
            // A finished run is never resumed; its state can be as large as three models.
            let _ = std::fs::remove_dir_all(self.dir.resume_dir());
        }
        Ok(Summary {
            run_dir: self.dir.path.clone(),
            method: self.config.method.label().to_string(),
            steps_done: self.steps_done,
            seconds: self.train_seconds,
            seconds_per_step: (self.steps_done > 0)
                .then(|| self.train_seconds / self.steps_done as f64),
            baseline: self.baseline.clone(),
            last: self.last_eval.clone(),
            last_checkpoint: self.last_checkpoint.clone(),
            peak_memory: self.peak_memory(),
        })
    }

    /// The weights that are evaluated, sampled and saved: the EMA when there is one.
    fn published(&self) -> UNet {
        self.ema.clone().unwrap_or_else(|| self.model.valid())
    }

    fn draw_samples(&self, model: &UNet, sampler: &SamplerSpec) -> Result<Vec<Vec<f32>>, String> {
        let inner = self.device.clone().inner();
        let job = SampleJob {
            model,
            schedule: &self.source.schedule,
            spec: sampler,
            shape: self.shape,
            null_class: self.source.config.lethe_null_class,
            device: &inner,
        };
        job.run_batched(self.eval.seed, self.sampling.samples, SAMPLE_BATCH, |_| {})
    }

    /// The guidance check on the original model, when the forgotten class is sampled with
    /// guidance: it needs the run's classifier.
    fn guidance_probe(&self) -> Option<GuidanceProbe<'_>> {
        if self.sampler.class.is_none() || self.source.config.lethe_null_class.is_none() {
            return None;
        }
        Some(GuidanceProbe {
            job: SampleJob {
                model: &self.original,
                schedule: &self.source.schedule,
                spec: &self.sampler,
                shape: self.shape,
                null_class: self.source.config.lethe_null_class,
                device: self.device,
            },
            classifier: self.suite.probe.classifier.as_ref()?,
            seed: self.eval.seed,
        })
    }

    /// Class setting without a configured guidance: the first weight under which the original
    /// draws the forgotten class is the run's (the check's result is reported either way).
    fn resolve_guidance(&mut self, emit: &dyn Fn(Event)) -> Result<(), String> {
        if self.eval.guidance.is_some() || !self.eval.check_original {
            if self.sampler.guided() || self.sampler.class.is_some() {
                let check = "set in the config".to_string();
                self.guidance_check = Some(check.clone());
                emit(Event::Guidance {
                    guidance: self.sampler.guidance,
                    check,
                });
            }
            return Ok(());
        }
        let Some(probe) = self.guidance_probe() else {
            return Ok(());
        };
        emit(Event::Note(
            "guidance check: sampling the forgotten class from the original".into(),
        ));
        let (chosen, checks) = probe.choose()?;
        let check = format!("auto: {}", baseline_check::summarize(chosen, &checks));
        self.sampler.guidance = chosen;
        self.guidance_check = Some(check.clone());
        emit(Event::Guidance {
            guidance: chosen,
            check,
        });
        Ok(())
    }

    /// Whether the original's evaluation lets the forgetting rates show forgetting; when not,
    /// the reason (and, in the class setting, a guidance weight that works) is warned about and
    /// returned for every evaluation's provenance.
    fn check_baseline(
        &self,
        baseline: &Evaluation,
        emit: &dyn Fn(Event),
    ) -> Result<Option<String>, String> {
        if !self.eval.check_original {
            return Ok(None);
        }
        let Some(mut why) = baseline_check::uninformative(baseline, &self.setting) else {
            return Ok(None);
        };
        if let Some(probe) = self.guidance_probe() {
            let (best, checks) = probe.choose()?;
            why += &match checks.iter().find(|c| c.passes()) {
                Some(c) => format!(
                    "; try guidance = {best} ({}: [eval] guidance in the config, or the guidance field)",
                    c.describe()
                ),
                None => format!(
                    "; no guidance weight makes it draw the class ({})",
                    baseline_check::summarize(best, &checks)
                ),
            };
        }
        emit(Event::Warning(why.clone()));
        Ok(Some(why))
    }

    /// Every metric of `model`, whose probe samples (drawn with `self.sampler`) are `samples`.
    fn judge(&self, model: &UNet, samples: &[Vec<f32>]) -> Result<Evaluation, String> {
        let quality = match &self.quality_sampler {
            Some(spec) => Some(self.draw_samples(model, spec)?),
            None => None,
        };
        let label = |spec: &SamplerSpec| model.precision.tag(spec.label());
        let sampler = match &self.quality_sampler {
            Some(q) => format!("{} (quality: {})", label(&self.sampler), label(q)),
            None => label(&self.sampler),
        };
        let mut eval = self.suite.evaluate(
            model,
            &self.source.schedule,
            &Drawn {
                samples,
                quality: quality.as_deref(),
                shape: self.shape,
                sampler: &sampler,
                seed: self.eval.seed,
            },
            &self.device.clone().inner(),
        )?;
        if let Some(how) = eval.how.as_mut() {
            how.caveat = self.caveat.clone();
        }
        Ok(eval)
    }

    fn evaluate(&mut self, step: usize, emit: &dyn Fn(Event)) -> Result<(), String> {
        if self.baseline.is_none() {
            // Asked for (the workbench's Evaluate now) in a run that planned none.
            self.evaluate_original(emit)?;
        }
        let clock = Instant::now();
        let model = self.published();
        let samples = self.draw_samples(&model, &self.sampler)?;
        let mut eval = self.judge(&model, &samples)?;
        self.eval_seconds += clock.elapsed().as_secs_f64();
        if let Some(baseline) = &self.baseline {
            eval.set_pul(baseline);
        }
        self.record_eval(step, &eval, EvaluatedModel::Current, emit)?;
        self.last_eval = Some(eval);
        self.emit_grid(step, samples, emit)
    }

    fn record_eval(
        &self,
        step: usize,
        eval: &Evaluation,
        model: EvaluatedModel,
        emit: &dyn Fn(Event),
    ) -> Result<(), String> {
        self.dir.append_metrics(&MetricsLine::Eval {
            step,
            model,
            evaluation: Box::new(eval.clone()),
        })?;
        emit(Event::Metrics {
            step,
            evaluation: eval.clone(),
            baseline: self.baseline.clone().unwrap_or_else(|| eval.clone()),
        });
        Ok(())
    }

    /// Writes `samples/step_NNNNN.png` (original row block | current) and emits it.
    fn emit_grid(
        &self,
        step: usize,
        current: Vec<Vec<f32>>,
        emit: &dyn Fn(Event),
    ) -> Result<(), String> {
        let g = self.eval.grid.min(current.len());
        let current: Vec<Vec<f32>> = current.into_iter().take(g).collect();
        let original: Vec<Vec<f32>> = self.original_samples.iter().take(g).cloned().collect();
        let cols = (g as f64).sqrt().ceil().max(1.0) as usize;
        let left = crate::images::grid(&original, self.shape, cols);
        let right = crate::images::grid(&current, self.shape, cols);
        let both = crate::images::side_by_side(&left, &right, 4);
        crate::images::save_png(
            &crate::images::upscale(&both, 2),
            &self.dir.sample_grid_path(step),
        )?;
        emit(Event::Samples {
            step,
            shape: self.shape,
            original: self.original_samples.clone(),
            current,
        });
        Ok(())
    }

    fn save_checkpoint(&mut self, name: &str, emit: &dyn Fn(Event)) -> Result<PathBuf, String> {
        let path = self.dir.checkpoint_dir(name);
        let method_toml = toml::to_string(&self.config.method).unwrap_or_default();
        let forget_hash = sha256_hex(&self.data.forget.pixels);
        let provenance =
            Provenance::new(&format!("lethe unlearn ({})", self.config.method.label()))
                .with("lethe_method", self.config.method.slug())
                .with("lethe_hyperparameters", method_toml)
                .with("lethe_learning_rate", self.config.train.learning_rate)
                .with("lethe_seed", self.config.train.seed)
                .with("lethe_steps", self.steps_done)
                .with("lethe_forget_set_sha256", forget_hash)
                .with("lethe_forget_images", self.data.forget.len())
                .with("lethe_parent_sha256", &self.source.weights_sha256)
                .with("lethe_parent_path", self.config.header.checkpoint.display())
                .with(
                    "lethe_weights",
                    if self.ema.is_some() { "ema" } else { "trained" },
                )
                .with("lethe_ema_decay", self.config.train.ema_decay);
        checkpoint::save(
            &path,
            &self.published(),
            &self.source.config,
            &self.source.scheduler,
            &provenance,
        )
        .map_err(|e| e.to_string())?;
        self.last_checkpoint = Some(path.clone());
        emit(Event::Checkpoint {
            step: self.steps_done,
            path: path.clone(),
        });
        Ok(path)
    }
}
