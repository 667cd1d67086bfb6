//! One unlearning run, start to finish, on the worker thread.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::module::Module;
use burn::optim::{AdamConfig, AdamWConfig};
use burn::tensor::Device;
use crossbeam_channel::Receiver;
use serde_json::json;

use super::{Command, Event, StepRecord, Summary};
use crate::data::{ImageSet, ImageSpec, load_paths};
use crate::diffusion::checkpoint::{self, Provenance};
use crate::diffusion::sampler::{SampleJob, SamplerSpec};
use crate::diffusion::unet::UNet;
use crate::experiment::config::OptimizerConfig;
use crate::experiment::{ExperimentConfig, RunDir, RunInfo, RunStatus};
use crate::metrics::classifier::LoadedClassifier;
use crate::metrics::forgetting::{Evaluation, ForgetProbe};
use crate::metrics::suite::{Drawn, Suite, SuiteInputs};
use crate::unlearn::grads::Layout;
use crate::unlearn::step::{Conditioning, StepContext, UnlearnData};
use crate::unlearn::{Direction, MethodConfig};
use crate::util::sha256_hex;

/// Why a run stopped early with an error.
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

/// Commands that arrive while a run is in progress, checked between steps.
pub struct Control<'a> {
    commands: Option<&'a Receiver<Command>>,
    pub shutdown: bool,
    cancel: bool,
    sample_now: bool,
    evaluate_now: bool,
}

impl<'a> Control<'a> {
    pub fn new(commands: &'a Receiver<Command>) -> Self {
        Self {
            commands: Some(commands),
            shutdown: false,
            cancel: false,
            sample_now: false,
            evaluate_now: false,
        }
    }

    /// A control nobody can talk to (library use, tests).
    pub fn detached() -> Self {
        Self {
            commands: None,
            shutdown: false,
            cancel: false,
            sample_now: false,
            evaluate_now: false,
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Cancel => self.cancel = true,
            Command::Shutdown => {
                self.cancel = true;
                self.shutdown = true;
            }
            Command::SampleNow => self.sample_now = true,
            Command::EvaluateNow => self.evaluate_now = true,
            // A second Start while running is ignored; Pause/Resume are handled in `poll`.
            Command::Start(_) | Command::Pause | Command::Resume => {}
        }
    }

    /// Drains pending commands; blocks while paused.
    fn poll(&mut self, emit: &dyn Fn(Event)) {
        let Some(rx) = self.commands else { return };
        while let Ok(command) = rx.try_recv() {
            if matches!(command, Command::Pause) {
                emit(Event::Paused);
                while let Ok(c) = rx.recv() {
                    match c {
                        Command::Resume => break,
                        other => {
                            self.apply(other);
                            if self.cancel {
                                break;
                            }
                        }
                    }
                }
                emit(Event::Resumed);
            } else {
                self.apply(command);
            }
        }
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
    let device = crate::backend::training_device(config.backend).map_err(failed)?;
    emit(Event::Note(format!(
        "loading {}",
        config.checkpoint.display()
    )));
    let source =
        checkpoint::load(&config.checkpoint, &device).map_err(|e| failed(e.to_string()))?;
    let spec = ImageSpec {
        channels: source.config.in_channels,
        height: source.config.sample_size,
        width: source.config.sample_size,
    };
    let data = prepare_data(config, spec, &source.config).map_err(failed)?;
    let run_dir = RunDir::create(config).map_err(failed)?;
    let with_dir = |error: String| Stop::Failed {
        error,
        run_dir: Some(run_dir.path.clone()),
    };
    let mut run = Run::new(config, source, data, &run_dir, &device).map_err(&with_dir)?;
    emit(Event::Started {
        run_dir: run_dir.path.clone(),
        method: config.method.label().to_string(),
        total_steps: config.train.steps,
        backend: config.backend.to_string(),
        forget_images: run.data.forget.len(),
        retain_images: run.data.retain.len(),
    });
    match run.train(control, emit) {
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

/// Loads the retain/forget (and substitute) sets as the config describes.
fn prepare_data(
    config: &ExperimentConfig,
    spec: ImageSpec,
    model: &crate::diffusion::unet::UNetConfig,
) -> Result<UnlearnData, String> {
    let d = &config.data;
    let mut retain = if d.retain.is_empty() {
        ImageSet::empty(spec)
    } else {
        load_paths(&d.retain, spec).map_err(|e| e.to_string())?
    };
    let forget = match d.forget_class {
        Some(class) => {
            let (keep, drop): (Vec<usize>, Vec<usize>) =
                (0..retain.len()).partition(|&i| retain.labels[i] != Some(class));
            if drop.is_empty() {
                return Err(format!(
                    "data.forget_class = {class}: no retain image has that label"
                ));
            }
            let forget = retain.subset(&drop);
            retain = retain.subset(&keep);
            forget
        }
        None => {
            let mut forget = load_paths(&d.forget, spec).map_err(|e| e.to_string())?;
            if let Some(label) = d.forget_label {
                forget.labels = vec![Some(label); forget.len()];
            }
            // A forget image that is also in the retain sources must not be kept.
            let forget_pixels: HashSet<&[u8]> =
                (0..forget.len()).map(|i| forget.image(i)).collect();
            let keep: Vec<usize> = (0..retain.len())
                .filter(|&i| !forget_pixels.contains(retain.image(i)))
                .collect();
            if keep.len() != retain.len() {
                retain = retain.subset(&keep);
            }
            forget
        }
    };
    let conditional = model.num_class_embeds.is_some();
    if conditional && model.lethe_null_class.is_none() {
        let unlabelled = forget
            .labels
            .iter()
            .chain(&retain.labels)
            .any(Option::is_none);
        if unlabelled {
            return Err(
                "the checkpoint is class-conditional without a null class, so every image needs a label: set data.forget_label (and use labelled retain data)"
                    .into(),
            );
        }
    }
    let substitute = match &config.method {
        MethodConfig::Dimum(c) => Some(substitute_set(c, &retain, &forget, spec)?),
        _ => None,
    };
    Ok(UnlearnData {
        retain,
        forget,
        substitute,
    })
}

/// DiMUM's alternative data, relabelled as the forgotten condition.
fn substitute_set(
    c: &crate::unlearn::dimum::DimumConfig,
    retain: &ImageSet,
    forget: &ImageSet,
    spec: ImageSpec,
) -> Result<ImageSet, String> {
    let forgotten = forget.labels.first().copied().flatten();
    let mut set = if !c.substitute_images.is_empty() {
        load_paths(&c.substitute_images, spec)
            .map_err(|e| format!("method.substitute_images: {e}"))?
    } else {
        let class = match c.substitute_class {
            Some(k) => k,
            None => retain
                .labels
                .iter()
                .flatten()
                .copied()
                .filter(|&l| Some(l) != forgotten)
                .min()
                .ok_or("DiMUM: the retain set has no labelled class to use as substitute; set method.substitute_images")?,
        };
        let idx: Vec<usize> = (0..retain.len())
            .filter(|&i| retain.labels[i] == Some(class))
            .collect();
        if idx.is_empty() {
            return Err(format!(
                "method.substitute_class = {class}: no retain image has that label"
            ));
        }
        retain.subset(&idx)
    };
    set.labels = vec![forgotten; set.len()];
    Ok(set)
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
        let model = match &config.method {
            MethodConfig::Retrain { init_seed } => UNet::new(&source.config, *init_seed, device)?,
            _ => source.unet.clone(),
        }
        .with_precision(precision);
        let original = source.unet.valid().with_precision(precision);
        let shape = source.config.image_shape();
        let eval = config.eval.resolved();
        let inner = device.clone().inner();
        let probe = build_probe(config, &data, shape, &inner);
        let suite = Suite::new(
            probe,
            SuiteInputs {
                retain: &data.retain,
                forget: &data.forget,
                reference_name: "retain",
                elbo_images: eval.elbo_images,
                elbo_timesteps: eval.elbo_timesteps,
                elbo_class: source.config.lethe_null_class.or_else(|| {
                    source
                        .config
                        .num_class_embeds
                        .and(config.data.forget_class.or(config.data.forget_label))
                }),
                null_class: source.config.lethe_null_class,
                seed: eval.seed,
                preset: config.eval.preset_name(),
            },
            &inner,
        )?;
        // Class setting: sample the forgotten class (guided); data-point setting: sample
        // unconditionally, as the SISS criterion is defined.
        let forgotten_class = config.data.forget_class;
        let guided = forgotten_class.is_some() && source.config.lethe_null_class.is_some();
        let sampler = SamplerSpec {
            class: forgotten_class.filter(|_| source.config.num_class_embeds.is_some()),
            guidance: if guided { eval.guidance } else { 0.0 },
            ..SamplerSpec::ddim(eval.sampler_steps)
        };
        let quality_sampler = guided.then(|| SamplerSpec::ddim(eval.sampler_steps));
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
        })
    }

    fn info(&self, status: RunStatus, error: Option<String>) -> RunInfo {
        RunInfo {
            status,
            method: self.config.method.label().to_string(),
            lethe_version: env!("CARGO_PKG_VERSION").to_string(),
            backend: self.config.backend.to_string(),
            source_checkpoint: self.config.checkpoint.clone(),
            source_sha256: self.source.weights_sha256.clone(),
            steps_done: self.steps_done,
            total_steps: self.config.train.steps,
            seconds: self.train_seconds,
            seconds_per_step: (self.steps_done > 0)
                .then(|| self.train_seconds / self.steps_done as f64),
            started_unix: self.started_unix,
            last_checkpoint: self.last_checkpoint.clone(),
            error,
        }
    }

    fn train(
        &mut self,
        control: &mut Control<'_>,
        emit: &dyn Fn(Event),
    ) -> Result<RunStatus, String> {
        self.dir.write_info(&self.info(RunStatus::Running, None))?;
        let train = &self.config.train;
        emit(Event::Note("evaluating the original model".into()));
        let original = self.original.clone();
        let samples = self.draw_samples(&original, &self.sampler)?;
        self.original_samples = Arc::new(samples);
        let baseline = self.judge(&original, &self.original_samples.clone())?;
        self.baseline = Some(baseline.clone());
        self.record_eval(0, &baseline, "original", emit)?;
        self.emit_grid(0, self.original_samples.to_vec(), emit)?;

        let layout = Layout::of(&self.model);
        let mut optim = match train.optimizer {
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                weight_decay,
                epsilon,
            } => AdamWConfig::new()
                .with_beta_1(beta1)
                .with_beta_2(beta2)
                .with_weight_decay(weight_decay)
                .with_epsilon(epsilon)
                .init(),
            OptimizerConfig::Adam {
                beta1,
                beta2,
                epsilon,
            } => AdamConfig::new()
                .with_beta_1(beta1)
                .with_beta_2(beta2)
                .with_epsilon(epsilon)
                .init(),
        };
        let num_classes = self.source.config.num_real_classes();
        let mut method = self.config.method.build(num_classes)?;
        let cond = Conditioning {
            null_class: self.source.config.lethe_null_class,
            class_conditional: self.source.config.num_class_embeds.is_some(),
            drop_prob: train.cond_drop_prob,
        };
        let t_max = train
            .t_max
            .unwrap_or(self.source.schedule.num_train_timesteps() - 1)
            .min(self.source.schedule.num_train_timesteps() - 1);
        for step in 0..train.steps {
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
                return Ok(RunStatus::Cancelled);
            }
            let clock = Instant::now();
            let mut rng = crate::pretrain::step_rng(train.seed, step);
            let direction: Direction = {
                let mut cx = StepContext {
                    model: &self.model,
                    layout: &layout,
                    schedule: &self.source.schedule,
                    data: &self.data,
                    cond,
                    batch_size: train.batch_size,
                    reduction: train.reduction,
                    timesteps: train.timesteps,
                    t_range: (train.t_min.min(t_max), t_max),
                    rng: &mut rng,
                    device: self.device,
                    step,
                    learning_rate: train.learning_rate,
                };
                method.direction(&mut cx)?
            };
            let grad_norm = direction.grad.norm();
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
            let clip = train.grad_clip_norm;
            let clipped = clip > 0.0 && grad_norm > clip;
            let grad = if clipped {
                direction.grad.scaled(clip / grad_norm)
            } else {
                direction.grad
            };
            let grads = grad.into_params(&self.model);
            let model = std::mem::replace(&mut self.model, self.original.clone());
            self.model = optim.step(train.learning_rate, model, grads);
            if let Some(ema) = self.ema.take() {
                let decay = train.ema_decay as f32;
                self.ema = Some(crate::pretrain::update_ema(ema, &self.model, decay));
            }
            let step_seconds = clock.elapsed().as_secs_f64();
            self.train_seconds += step_seconds;
            self.steps_done = step + 1;
            let record = StepRecord {
                step: step + 1,
                report: direction.report,
                grad_norm,
                clipped,
                learning_rate: train.learning_rate,
                step_seconds,
            };
            self.dir
                .append_metrics(&json!({"kind": "step", "record": &record}))?;
            emit(Event::Step(record));
            let done = step + 1;
            let every = self.eval.every;
            if every > 0 && done % every == 0 && done != train.steps {
                self.evaluate(done, emit)?;
            }
            let ck = self.eval.checkpoint_every;
            if ck > 0 && done % ck == 0 && done != train.steps {
                self.save_checkpoint(&format!("step_{done:05}"), emit)?;
                self.dir.write_info(&self.info(RunStatus::Running, None))?;
            }
        }
        self.evaluate(train.steps, emit)?;
        self.save_checkpoint("final", emit)?;
        Ok(RunStatus::Finished)
    }

    fn finish(&mut self, status: RunStatus, error: Option<String>) -> Result<Summary, String> {
        self.dir.write_info(&self.info(status, error))?;
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
        let n = self.eval.samples;
        let mut out = Vec::with_capacity(n);
        let mut first = 0;
        while first < n {
            let count = 64.min(n - first);
            let x = job.run(self.eval.seed, first, count, |_, _| {})?;
            out.extend(crate::images::to_unit_floats(x).0);
            first += count;
        }
        Ok(out)
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
        self.suite.evaluate(
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
        )
    }

    fn evaluate(&mut self, step: usize, emit: &dyn Fn(Event)) -> Result<(), String> {
        let model = self.published();
        let samples = self.draw_samples(&model, &self.sampler)?;
        let mut eval = self.judge(&model, &samples)?;
        if let Some(baseline) = &self.baseline {
            eval.set_pul(baseline);
        }
        self.record_eval(step, &eval, "current", emit)?;
        self.last_eval = Some(eval);
        self.emit_grid(step, samples, emit)
    }

    fn record_eval(
        &self,
        step: usize,
        eval: &Evaluation,
        model: &str,
        emit: &dyn Fn(Event),
    ) -> Result<(), String> {
        self.dir.append_metrics(
            &json!({"kind": "eval", "step": step, "model": model, "evaluation": eval}),
        )?;
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
                .with("lethe_parent_path", self.config.checkpoint.display())
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

fn build_probe(
    config: &ExperimentConfig,
    data: &UnlearnData,
    shape: [usize; 3],
    device: &Device,
) -> ForgetProbe {
    let mut seen = HashSet::new();
    let forget_images: Vec<Vec<f32>> = (0..data.forget.len())
        .map(|i| data.forget.image(i))
        .filter(|p| seen.insert(p.to_vec()))
        .take(1000)
        .map(|p| p.iter().map(|&v| v as f32 / 255.0).collect())
        .collect();
    let forgotten_class = config.data.forget_class.or(config.data.forget_label);
    let classifier = config
        .eval
        .classifier_path()
        .map(|p| crate::data::demo::asset(&p.to_string_lossy()))
        .and_then(|p| fitting_classifier(&p, shape, device));
    ForgetProbe {
        forget_images,
        copy_threshold: config.eval.copy_threshold,
        forgotten_class: forgotten_class.filter(|&c| {
            classifier
                .as_ref()
                .is_some_and(|k| c < k.config.num_classes)
        }),
        classifier,
        confidence: 0.9,
    }
}

/// The classifier, if it exists and judges images of this shape.
fn fitting_classifier(
    path: &Path,
    [c, h, w]: [usize; 3],
    device: &Device,
) -> Option<LoadedClassifier> {
    let k = LoadedClassifier::load(path, device).ok()?;
    (k.config.channels == c && k.config.size == h && h == w).then_some(k)
}
