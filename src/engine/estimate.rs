//! Timing what a run's evaluation is made of, on the run's own model and device, so the run
//! can say before it starts what its evaluations will cost (`experiment::cost`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::diffusion::checkpoint::Checkpoint;
use crate::diffusion::sampler::{SampleJob, SamplerSpec};
use crate::experiment::ExperimentConfig;
use crate::experiment::config::Sampling;
use crate::experiment::cost::duration;
use crate::metrics::suite::Suite;
use crate::unlearn::step::UnlearnData;
use crate::util::{atomic_write, sha256_hex};

/// Images per timed batch: enough for the per-image cost of a batched forward, few enough
/// that timing costs a fraction of one evaluation.
pub const TIMED_BATCH: usize = 8;

/// Seconds per image, measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    /// One denoising step of the job's sampler (a guided step is two forwards).
    pub sample_step: f64,
    /// One unguided forward pass.
    pub forward: f64,
    /// Judging one sample (classifier, feature network).
    pub judge: f64,
}

/// Times one denoising step of `job` on `batch` images (after one untimed step, which pays
/// for allocation and, on a GPU, kernel compilation), an unguided forward when the job is
/// guided, and the suite's judging of the images drawn.
pub fn time(
    job: &SampleJob<'_>,
    suite: &Suite,
    batch: usize,
    seed: u64,
) -> Result<Timings, String> {
    let (sample_step, drawn) = time_step(job, batch, seed)?;
    let forward = if job.spec.guided() {
        let unguided = SamplerSpec {
            guidance: 0.0,
            ..job.spec.clone()
        };
        let job = SampleJob {
            spec: &unguided,
            ..*job
        };
        time_step(&job, batch, seed)?.0
    } else {
        sample_step
    };
    let judge = suite.time_judging(&drawn, job.shape, job.device)?;
    Ok(Timings {
        sample_step,
        forward,
        judge,
    })
}

/// Seconds per image of one step of `job`'s sampler on `batch` images, timed after an
/// untimed one (allocation, kernel compilation), and the images that step drew (values in
/// [0, 1]). Both runs are read back, so a GPU's queued work is inside the clock.
fn time_step(job: &SampleJob<'_>, batch: usize, seed: u64) -> Result<(f64, Vec<Vec<f32>>), String> {
    let batch = batch.max(1);
    let one_step = SamplerSpec {
        steps: 1,
        ..job.spec.clone()
    };
    let stepping = SampleJob {
        spec: &one_step,
        ..*job
    };
    crate::images::to_unit_floats(stepping.run(seed, 0, batch, |_, _| {})?);
    let clock = Instant::now();
    let (drawn, _) = crate::images::to_unit_floats(stepping.run(seed, 0, batch, |_, _| {})?);
    Ok((clock.elapsed().as_secs_f64() / batch as f64, drawn))
}

/// `config` with its evaluation's sampling fitted to `[eval] budget_seconds` on this model
/// and device (`EvalConfig::fitted`) — one forward pass timed — when some of it is left to
/// the budget, with a line saying what was fitted when that differs from the default.
/// Written into the run's `config.toml`, the fitted values are what a resumed run uses.
///
/// A fit is remembered per (model, device, evaluation settings, data) in the cache
/// directory: a timed forward varies by a few percent between runs, and the same experiment
/// on the same machine must evaluate alike (and so reuse the original's cached evaluation).
pub fn fit_evaluation(
    config: &ExperimentConfig,
    source: &Checkpoint,
    data: &UnlearnData,
    device: &Device,
    device_label: &str,
) -> Result<(ExperimentConfig, Option<String>), String> {
    let eval = config.eval.resolved();
    if !eval.fits_to_budget() {
        return Ok((config.clone(), None));
    }
    let remembered = fit_path(config, source, data, device_label);
    let (fit, from) = match remembered.as_ref().and_then(|p| read_fit(p)) {
        Some(fit) => (
            fit,
            "remembered from an earlier run on this model and device",
        ),
        None => {
            let fit = measure_fit(config, source, data, device)?;
            if let Some(path) = &remembered {
                // A fit that cannot be saved is measured again next time.
                let _ = write_fit(path, &fit);
            }
            (fit, "timed now")
        }
    };
    let default = eval.sampling();
    let note = (fit.sampling != default).then(|| {
        format!(
            "evaluation fitted to eval.budget_seconds = {}: {} samples of {} instead of {} of {} (≈ {} instead of ≈ {} per evaluation; a forward pass takes {:.3} s per image here, {from})",
            eval.budget_seconds,
            fit.sampling.samples,
            sampler_label(&fit.sampling),
            default.samples,
            sampler_label(&default),
            duration(fit.seconds(&fit.sampling)),
            duration(fit.seconds(&default)),
            fit.forward_seconds,
        )
    });
    let mut out = config.clone();
    out.eval = config.eval.with_sampling(fit.sampling);
    Ok((out, note))
}

/// A fitted sampling with the costs it was fitted to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fit {
    sampling: Sampling,
    /// Seconds per image of one forward pass.
    forward_seconds: f64,
    /// Seconds per sample-step (a guided one costs more than a forward).
    sample_step_seconds: f64,
    /// Seconds of the rest of an evaluation (the ELBO).
    other_seconds: f64,
}

impl Fit {
    fn seconds(&self, s: &Sampling) -> f64 {
        s.samples as f64 * s.steps as f64 * self.sample_step_seconds + self.other_seconds
    }
}

/// Times one forward pass of the run's model and fits the sampling to the budget.
fn measure_fit(
    config: &ExperimentConfig,
    source: &Checkpoint,
    data: &UnlearnData,
    device: &Device,
) -> Result<Fit, String> {
    let eval = config.eval.resolved();
    let model = source.unet.valid().with_precision(config.train.precision);
    let conditioned = source.config.num_class_embeds.is_some();
    let spec = SamplerSpec {
        class: config.data.forget_class.filter(|_| conditioned),
        ..SamplerSpec::ddim(1)
    };
    let job = SampleJob {
        model: &model,
        schedule: &source.schedule,
        spec: &spec,
        shape: source.config.image_shape(),
        null_class: source.config.lethe_null_class,
        device,
    };
    let forward = time_step(&job, TIMED_BATCH, eval.seed)?.0;
    // The class setting's guided step is two forwards, and it also draws unconditional
    // samples for the quality metrics.
    let guided = config.data.forget_class.is_some() && source.config.lethe_null_class.is_some();
    let sample_step = forward * if guided { 3.0 } else { 1.0 };
    let elbo_images = |n: usize| eval.elbo_images.min(n);
    let elbo_forwards = if eval.elbo_timesteps == 0 {
        0
    } else {
        (elbo_images(data.forget.len()) + elbo_images(data.retain.len())) * eval.elbo_timesteps
    };
    let other = elbo_forwards as f64 * forward;
    Ok(Fit {
        sampling: eval.fitted(sample_step, other),
        forward_seconds: forward,
        sample_step_seconds: sample_step,
        other_seconds: other,
    })
}

/// `<cache dir>/evaluation-fits/<key>.json` for this model, device, evaluation and data.
fn fit_path(
    config: &ExperimentConfig,
    source: &Checkpoint,
    data: &UnlearnData,
    device_label: &str,
) -> Option<PathBuf> {
    let key = serde_json::json!({
        "weights": source.weights_sha256,
        "model": serde_json::to_value(&source.config).ok()?,
        "precision": format!("{:?}", config.train.precision),
        "device": device_label,
        "eval": serde_json::to_value(config.eval.resolved()).ok()?,
        "forget_images": data.forget.len(),
        "retain_images": data.retain.len(),
        "forget_class": config.data.forget_class,
    });
    let digest = sha256_hex(key.to_string().as_bytes());
    crate::metrics::suite::cache_dir()
        .map(|d| d.join("evaluation-fits").join(format!("{digest}.json")))
}

fn read_fit(path: &Path) -> Option<Fit> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_fit(path: &Path, fit: &Fit) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(fit).expect("a fit is JSON");
    atomic_write(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

fn sampler_label(s: &Sampling) -> String {
    SamplerSpec::new(s.sampler, s.steps).label()
}
