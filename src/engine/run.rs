//! One unlearning run, start to finish, on the worker thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::module::Module;
use burn::tensor::Device;

use super::control::Control;
use super::data::prepare_data;
use super::{Event, Summary};
use crate::data::ImageSpec;
use crate::device_check::DeviceRecord;
use crate::diffusion::checkpoint::{self, Provenance};
use crate::diffusion::sampler::{SAMPLE_BATCH, SampleJob, SamplerSpec};
use crate::diffusion::unet::UNet;
use crate::experiment::{
    EvaluatedModel, ExperimentConfig, MetricsLine, RunDir, RunInfo, RunStatus, StepRecord,
};
use crate::metrics::baseline_check::{self, GuidanceProbe, Setting};
use crate::metrics::classifier::LoadedClassifier;
use crate::metrics::evaluation::Evaluation;
use crate::metrics::suite::{Drawn, Suite, SuiteSpec};
use crate::train::{Layout, clip_to_norm, step_rng, update_ema};
use crate::unlearn::Direction;
use crate::unlearn::step::{Conditioning, StepContext, UnlearnData};
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

/// Runs `config` to completion (or cancellation), emitting events. Errors before the run
/// directory exists come back as `Stop::Failed` without a directory.
pub fn execute(
    config: &ExperimentConfig,
    control: &mut Control<'_>,
    emit: &dyn Fn(Event),
) -> Result<(), Stop> {
    config.validate().map_err(failed)?;
    // A GPU is used only after it has matched the CPU on this model (cached per device and
    // model); `auto` falls back to the CPU and says why.
    let selection =
        crate::device_check::select(config.header.backend, &config.header.checkpoint, &|note| {
            emit(Event::Note(note.to_string()))
        })
        .map_err(failed)?;
    let device = selection.device.clone().autodiff();
    emit(Event::Note(format!(
        "loading {}",
        config.header.checkpoint.display()
    )));
    let source =
        checkpoint::load(&config.header.checkpoint, &device).map_err(|e| failed(e.to_string()))?;
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
    run.device_record = Some(selection.record());
    emit(Event::Started {
        run_dir: run_dir.path.clone(),
        method: config.method.label().to_string(),
        total_steps: config.train.steps,
        backend: format!("{} ({})", selection.backend, selection.device_name),
        device_reason: selection.reason.clone(),
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
        let inner = device.clone().inner();
        // The classifier is optional here: without one that fits, the run goes on with the
        // metrics that need none (copy rate, ELBO).
        let classifier = config
            .eval
            .classifier_path()
            .map(|p| crate::data::demo::asset(&p.to_string_lossy()))
            .and_then(|p| LoadedClassifier::load_for(&p, shape, &inner).ok());
        let suite = Suite::for_run(
            SuiteSpec {
                model: &source.config,
                retain: &data.retain,
                forget: &data.forget,
                classifier,
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
            ..SamplerSpec::ddim(eval.sampler_steps)
        };
        let setting = match forgotten_class {
            Some(class) => Setting::Class {
                class,
                conditioned,
                classes: source.config.num_real_classes().unwrap_or(10),
            },
            None => Setting::DataPoint,
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
            device_record: None,
            setting,
            caveat: None,
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
        }
    }

    fn train(
        &mut self,
        control: &mut Control<'_>,
        emit: &dyn Fn(Event),
    ) -> Result<RunStatus, String> {
        self.dir.write_info(&self.info(RunStatus::Running, None))?;
        let train = &self.config.train;
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
        self.baseline = Some(baseline.clone());
        self.record_eval(0, &baseline, EvaluatedModel::Original, emit)?;
        self.emit_grid(0, self.original_samples.to_vec(), emit)?;

        let layout = Layout::of(&self.model);
        let mut optim = train.optimizer.init();
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
            let mut rng = step_rng(train.seed, step);
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
        job.run_batched(self.eval.seed, self.eval.samples, SAMPLE_BATCH, |_| {})
    }

    /// The guidance check on the original model, when the forgotten class is sampled with
    /// guidance: it needs the run's classifier.
    fn guidance_probe(&self) -> Option<GuidanceProbe<'_>> {
        if self.sampler.class.is_none() || self.source.config.lethe_null_class.is_none() {
            return None;
        }
        Some(GuidanceProbe {
            model: &self.original,
            schedule: &self.source.schedule,
            sampler: &self.sampler,
            shape: self.shape,
            null_class: self.source.config.lethe_null_class,
            classifier: self.suite.probe.classifier.as_ref()?,
            seed: self.eval.seed,
            device: self.device,
        })
    }

    /// Class setting without a configured guidance: the first weight under which the original
    /// draws the forgotten class is the run's (the check's result is reported either way).
    fn resolve_guidance(&mut self, emit: &dyn Fn(Event)) -> Result<(), String> {
        if self.eval.guidance.is_some() || !self.eval.check_original {
            if self.sampler.guided() || self.sampler.class.is_some() {
                emit(Event::Guidance {
                    guidance: self.sampler.guidance,
                    check: "set in the config".into(),
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
        let model = self.published();
        let samples = self.draw_samples(&model, &self.sampler)?;
        let mut eval = self.judge(&model, &samples)?;
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
