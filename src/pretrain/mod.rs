//! Pretraining a diffusion model from scratch (how the bundled demo model was made).
//!
//! Resumable: every `checkpoint_every` steps the run directory gets the EMA model as a
//! diffusers checkpoint (`DIR/checkpoint/`) and the full training state (`DIR/resume/`:
//! weights with their parameter ids, Adam moments, EMA, step; see `state.rs`). All randomness
//! of step `k` is derived from `(seed, k)`, so a resumed run continues exactly as an
//! uninterrupted one.

mod config;
mod state;

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::data::{ImageSet, ImageSpec};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::unet::UNet;
use crate::train::ema::{update_ema, warmed_up_decay};
use crate::train::memory::{PassMemory, available_memory, gib, heap_meter_installed, heap_peak_of};
use crate::train::{GradVec, Layout, OptimizerConfig, clip_to_norm, draw, step_rng};
use crate::util::atomic_write;

pub use config::{
    DataConfig, Injection, PretrainConfig, TrainConfig, build_training_set, learning_rate,
};
pub use state::completed_steps;
use state::{Lineage, ResumeState, append, parent_state, read_resume_state, save_all};

/// One line of `train_log.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub seconds: f64,
}

pub struct Progress<'a> {
    pub on_step: &'a mut dyn FnMut(&LogLine),
}

/// Runs (or resumes) pretraining. Returns the directory of the final EMA checkpoint.
pub fn run(
    config: &PretrainConfig,
    backend: BackendChoice,
    progress: Progress<'_>,
) -> Result<PathBuf, String> {
    run_with_schedule(config, config.train.steps, backend, progress)
}

/// Like [`run`], but stops at `config.train.steps` while the learning-rate schedule spans
/// `schedule_steps` (for running a long job in slices).
pub fn run_with_schedule(
    config: &PretrainConfig,
    schedule_steps: usize,
    backend: BackendChoice,
    progress: Progress<'_>,
) -> Result<PathBuf, String> {
    // Before anything is written: a refused precision leaves no half-made run directory.
    config.train.precision.check_trainable()?;
    let device = crate::backend::training_device(backend)?;
    let spec = ImageSpec {
        channels: config.model.in_channels,
        height: config.model.sample_size,
        width: config.model.sample_size,
    };
    let data = build_training_set(&config.data, spec)?;
    let schedule = NoiseSchedule::from_config(&config.scheduler)?;
    let null_class = config.model.lethe_null_class;
    let mut model = UNet::new(&config.model, config.train.seed, &device)?
        .with_precision(config.train.precision);
    check_memory(config, &model, (&data, &schedule), &device)?;
    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    atomic_write(
        &out.join("config.toml"),
        toml::to_string(config).expect("toml").as_bytes(),
    )
    .map_err(|e| e.to_string())?;

    let mut optim = OptimizerConfig::adam().init();
    let inner = device.clone().inner();
    let mut ema = UNet::new(&config.model, config.train.seed, &inner)?;
    let resume_dir = out.join("resume");
    let (state, state_dir) = match read_resume_state(&resume_dir)? {
        Some(state) => {
            if state.config_hash != config.identity_hash() {
                return Err(format!(
                    "{} holds a run with a different configuration; choose another out_dir or delete it",
                    out.display()
                ));
            }
            eprintln!("resuming {} at step {}", out.display(), state.step);
            (Some(state), resume_dir.clone())
        }
        None => match &config.continue_from {
            Some(parent) => {
                let state = parent_state(parent, config)?;
                eprintln!(
                    "continuing {} from step {} ({:.0} s of training)",
                    parent.display(),
                    state.step,
                    state.elapsed_seconds
                );
                let parent_steps = state.step;
                (
                    Some(ResumeState {
                        parent_steps,
                        ..state
                    }),
                    parent.join("resume"),
                )
            }
            None => (None, resume_dir.clone()),
        },
    };
    let (mut global_step, parent_steps, elapsed_before) = match &state {
        Some(s) => (s.step, s.parent_steps, s.elapsed_seconds),
        None => (0, 0, 0.0),
    };
    if state.is_some() {
        let saved = state.as_ref().and_then(|s| s.snapshot.as_deref());
        let snapshot_dir = crate::train::snapshot::location(&state_dir, saved);
        let (m, o, e) =
            crate::train::snapshot::load(&snapshot_dir, model, optim, Some(ema), &inner)?;
        (model, optim) = (m, o);
        ema = e.expect("the EMA was asked for");
    }

    // After loading: the compute precision is a run setting, not part of the saved state.
    model = model.with_precision(config.train.precision);
    let layout = Layout::of(&model);

    let lineage = Lineage::of(config, parent_steps)?;
    let clock = Instant::now();
    let mut log = String::new();
    // `step` counts this run's steps (the LR schedule's clock); `global_step` also counts
    // the continued run's, and picks the random stream and the EMA warm-up.
    for step in (global_step - parent_steps)..config.train.steps {
        global_step = parent_steps + step;
        let mut rng = step_rng(config.train.seed, global_step);
        let batch = sample_batch(
            &data,
            &schedule,
            config.train.batch_size,
            null_class,
            config.train.cond_drop_prob,
            &mut rng,
            &device,
        );
        let eps = model.forward(batch.xt, batch.timesteps, batch.labels);
        let loss = (eps - batch.noise).square().mean();
        let loss_value: f32 = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            return Err(format!(
                "loss became {loss_value} at step {step}; lower the learning rate"
            ));
        }
        let grad = GradVec::of_loss(loss, &model, &layout);
        let grads = clip_to_norm(grad, config.train.grad_clip_norm)
            .grad
            .into_params(&model);
        let lr = learning_rate(
            &TrainConfig {
                steps: schedule_steps,
                ..config.train.clone()
            },
            step,
        );
        model = optim.step(lr, model, grads);
        ema = update_ema(
            ema,
            &model,
            warmed_up_decay(config.train.ema_decay, global_step),
        );

        let line = LogLine {
            step: global_step + 1,
            loss: loss_value,
            lr,
            seconds: elapsed_before + clock.elapsed().as_secs_f64(),
        };
        log += &serde_json::to_string(&line).expect("json");
        log.push('\n');
        (progress.on_step)(&line);
        let done = step + 1 == config.train.steps;
        // 0 = only at the end (as `[eval] checkpoint_every`), not a division by zero.
        let every = config.train.checkpoint_every;
        if (every > 0 && (step + 1) % every == 0) || done {
            append(&out.join("train_log.jsonl"), &log)?;
            log.clear();
            let mut at = ResumeState {
                step: global_step + 1,
                config_hash: config.identity_hash(),
                elapsed_seconds: line.seconds,
                parent_steps,
                snapshot: None,
            };
            save_all(config, &lineage, &model, &optim, &ema, &mut at)?;
        }
    }
    Ok(out.join("checkpoint"))
}

/// On a device that reports no memory pools (the CPU), refuses a batch whose training step
/// would not fit in the memory left, before anything is written: the OS would kill the
/// process instead of the run saying so (issue #30). A training pass is measured at 1 and 2
/// images (`PassMemory`: the graph autodiff keeps grows linearly with the images), plus the
/// weight-sized copies a step holds.
fn check_memory(
    config: &PretrainConfig,
    model: &UNet,
    (data, schedule): (&ImageSet, &NoiseSchedule),
    device: &Device,
) -> Result<(), String> {
    if device.memory_pool_usage().is_some() || !heap_meter_installed() {
        return Ok(());
    }
    let train = &config.train;
    // Its own random stream: the run's draws are untouched.
    let mut rng = step_rng(train.seed.wrapping_add(0x6d656d), 0);
    let mut pass_bytes = |images: usize| {
        heap_peak_of(|| {
            let (null_class, drop) = (config.model.lethe_null_class, train.cond_drop_prob);
            let batch = sample_batch(data, schedule, images, null_class, drop, &mut rng, device);
            let eps = model.forward(batch.xt, batch.timesteps, batch.labels);
            (eps - batch.noise).square().mean()
        })
        .1
    };
    let (Some(one), Some(two), Some(available)) =
        (pass_bytes(1), pass_bytes(2), available_memory())
    else {
        return Ok(()); // not measurable here
    };
    let pass = PassMemory { one, two };
    // A backward pass's gradients (per parameter, then flat), Adam's two moments, the EMA.
    let held = 5 * 4 * Layout::of(model).len() as u64;
    let need = pass.at(train.batch_size).saturating_add(held);
    if need <= available {
        return Ok(());
    }
    let advice = match pass.most_images(held, available) {
        Some(images) => format!("lower train.batch_size to at most {images}"),
        None => "even a batch of 1 image does not fit: use a GPU or a machine with more memory"
            .to_string(),
    };
    Err(format!(
        "train.batch_size = {} needs about {} of memory (a training pass's forward graph measured {} at 1 image and {} at 2 images, plus {} of gradients, Adam's moments and the EMA), but {} is available; {advice}",
        train.batch_size,
        gib(need),
        gib(one),
        gib(two),
        gib(held),
        gib(available)
    ))
}

struct Batch {
    xt: Tensor<4>,
    noise: Tensor<4>,
    timesteps: Tensor<1>,
    labels: Option<Tensor<1, Int>>,
}

fn sample_batch(
    data: &ImageSet,
    schedule: &NoiseSchedule,
    batch_size: usize,
    null_class: Option<usize>,
    drop_prob: f64,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Batch {
    let clean = draw(data, batch_size, rng, device);
    let b = clean.labels.len();
    let t: Vec<usize> = (0..b)
        .map(|_| rng.random_range(0..schedule.num_train_timesteps()))
        .collect();
    let numel = data.spec.numel();
    let noise_values: Vec<f32> = (0..b * numel)
        .map(|_| rng.sample(rand_distr::StandardNormal))
        .collect();
    let ImageSpec {
        channels,
        height,
        width,
    } = data.spec;
    let noise = Tensor::<4>::from_data(
        TensorData::new(noise_values, [b, channels, height, width]),
        device,
    );
    let xt = schedule.add_noise(clean.x0, noise.clone(), &t);
    let labels = null_class.map(|null| {
        let values: Vec<i64> = clean
            .labels
            .iter()
            .map(|&label| {
                let dropped = rng.random_bool(drop_prob);
                if dropped {
                    null as i64
                } else {
                    label.unwrap_or(null) as i64
                }
            })
            .collect();
        Tensor::<1, Int>::from_data(TensorData::new(values, [b]), device)
    });
    let timesteps = Tensor::from_data(
        TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b]),
        device,
    );
    Batch {
        xt,
        noise,
        timesteps,
        labels,
    }
}
