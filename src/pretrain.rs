//! Pretraining a diffusion model from scratch (how the bundled demo model was made).
//!
//! Resumable: every `checkpoint_every` steps the run directory gets the EMA model as a
//! diffusers checkpoint (`DIR/checkpoint/`) and the full training state (`DIR/resume/`:
//! weights with their parameter ids, Adam moments, EMA, step). All randomness of step `k`
//! is derived from `(seed, k)`, so a resumed run continues exactly as an uninterrupted one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::data::{ImageSet, ImageSpec, load_paths};
use crate::diffusion::checkpoint::{self, Provenance};
use crate::diffusion::precision::Precision;
use crate::diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use crate::diffusion::unet::{UNet, UNetConfig};
use crate::train::ema::{update_ema, warmed_up_decay};
use crate::train::{GradVec, Layout, OptimizerConfig, clip_to_norm, draw, step_rng};
use crate::util::{atomic_write, cosine_decay, sha256_hex};

/// `lethe pretrain --config FILE` (TOML). See `examples/pretrain-demo.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Where checkpoints, the log and the resume state go.
    pub out_dir: PathBuf,
    /// Another pretrain run directory to continue from: its weights, Adam moments and EMA
    /// (from its `resume/`) start this run, and step numbers, random streams and training
    /// time carry on from where it stopped. For a second stage with a different recipe
    /// (here: the demo model's stage that trains the null class more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_from: Option<PathBuf>,
    pub model: UNetConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Image files, folders, IDX or CIFAR batches, loaded with their own labels.
    pub sources: Vec<PathBuf>,
    /// Images added on top, with a fixed label, each repeated `copies` times (how the demo
    /// injects the T-shirt it memorises).
    #[serde(default)]
    pub inject: Vec<Injection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    pub path: PathBuf,
    pub label: usize,
    pub copies: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Linear warm-up steps, then cosine decay to `final_lr_fraction × learning_rate`.
    pub warmup_steps: usize,
    pub final_lr_fraction: f64,
    pub ema_decay: f64,
    /// Probability of replacing a label by the null class (classifier-free guidance).
    pub cond_drop_prob: f64,
    pub grad_clip_norm: f32,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Compute precision of the forward: `f32` (default) or `bf16` mixed precision, with
    /// f32 master weights, Adam state and EMA (see `diffusion::precision`). `f16` is refused:
    /// Lethe does not scale losses. Left out of the saved config when f32, so runs started
    /// before this option existed keep their identity and still resume.
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

impl Default for TrainConfig {
    /// `steps`, `batch_size` and `learning_rate` have no default: 0 here, refused by
    /// [`PretrainConfig::from_file`].
    fn default() -> Self {
        Self {
            steps: 0,
            batch_size: 0,
            learning_rate: 0.0,
            warmup_steps: 0,
            final_lr_fraction: 0.1,
            ema_decay: 0.999,
            cond_drop_prob: 0.1,
            grad_clip_norm: 1.0,
            seed: 0,
            checkpoint_every: 250,
            precision: Precision::F32,
        }
    }
}

impl PretrainConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .model
            .validate()
            .map_err(|e| format!("{}: [model] {e}", path.display()))?;
        NoiseSchedule::from_config(&config.scheduler)
            .map_err(|e| format!("{}: [scheduler] {e}", path.display()))?;
        config
            .train
            .precision
            .check_trainable()
            .map_err(|e| format!("{}: [train] {e}", path.display()))?;
        let t = &config.train;
        if t.batch_size == 0 || t.steps == 0 || t.learning_rate.is_nan() || t.learning_rate <= 0.0 {
            return Err(format!(
                "{}: [train] steps, batch_size and learning_rate must be set and positive",
                path.display()
            ));
        }
        Ok(config)
    }

    /// Hash of everything that determines the run except its length, so a resumed run
    /// can check it continues the same experiment (steps may be raised).
    fn identity_hash(&self) -> String {
        let mut c = self.clone();
        c.train.steps = 0;
        c.out_dir = PathBuf::new();
        sha256_hex(toml::to_string(&c).expect("config serialises").as_bytes())
    }
}

/// Learning rate at `step` (0-based): linear warm-up, then cosine decay.
pub fn learning_rate(train: &TrainConfig, step: usize) -> f64 {
    let base = train.learning_rate;
    if step < train.warmup_steps {
        return base * (step + 1) as f64 / train.warmup_steps as f64;
    }
    let span = (train.steps - train.warmup_steps).max(1) as f64;
    let progress = (step - train.warmup_steps) as f64 / span;
    cosine_decay(base, progress, train.final_lr_fraction)
}

/// Training data: sources plus injected copies (indices into one set).
pub fn build_training_set(data: &DataConfig, spec: ImageSpec) -> Result<ImageSet, String> {
    let mut set = load_paths(&data.sources, spec).map_err(|e| e.to_string())?;
    for inj in &data.inject {
        let one = load_paths(std::slice::from_ref(&inj.path), spec).map_err(|e| e.to_string())?;
        for i in 0..one.len() {
            for _ in 0..inj.copies {
                set.push(
                    one.image(i),
                    Some(inj.label),
                    format!("{} (injected)", inj.path.display()),
                );
            }
        }
    }
    Ok(set)
}

/// One line of `train_log.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResumeState {
    /// Global step: includes the steps of the run this one continues.
    step: usize,
    config_hash: String,
    /// Training time so far, including the run this one continues.
    elapsed_seconds: f64,
    /// Steps the continued run (`continue_from`) had trained; 0 for a run from scratch.
    #[serde(default)]
    parent_steps: usize,
}

/// Steps of `config.train.steps` that the run in `out_dir` has completed (0 when none).
pub fn completed_steps(out_dir: &Path) -> usize {
    match read_resume_state(&out_dir.join("resume")) {
        Ok(Some(state)) => state.step - state.parent_steps,
        _ => 0,
    }
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
    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    atomic_write(
        &out.join("config.toml"),
        toml::to_string(config).expect("toml").as_bytes(),
    )
    .map_err(|e| e.to_string())?;

    let mut model = UNet::new(&config.model, config.train.seed, &device)?;
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
        model = model.load_file(state_dir.join("model.bpk"));
        optim = optim
            .load(state_dir.join("optimizer.bpk"))
            .map_err(|e| format!("{}: {e:?}", state_dir.display()))?;
        ema = read_ema(&state_dir.join("ema.safetensors"), ema, &inner)?;
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
        if (step + 1) % config.train.checkpoint_every == 0 || done {
            append(&out.join("train_log.jsonl"), &log)?;
            log.clear();
            let at = ResumeState {
                step: global_step + 1,
                config_hash: config.identity_hash(),
                elapsed_seconds: line.seconds,
                parent_steps,
            };
            save_all(config, &lineage, &model, &optim, &ema, &at)?;
        }
    }
    Ok(out.join("checkpoint"))
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

/// The resume state of the run `parent` that `config` continues, after checking that its
/// model and noise schedule are this config's.
fn parent_state(parent: &Path, config: &PretrainConfig) -> Result<ResumeState, String> {
    let parent_config = PretrainConfig::from_file(&parent.join("config.toml"))
        .map_err(|e| format!("continue_from: {e}"))?;
    let shape = |c: &PretrainConfig| {
        serde_json::to_value((&c.model, &c.scheduler)).expect("model and scheduler serialise")
    };
    if shape(&parent_config) != shape(config) {
        return Err(format!(
            "continue_from {}: its [model] or [scheduler] differs from this config's",
            parent.display()
        ));
    }
    read_resume_state(&parent.join("resume"))?.ok_or_else(|| {
        format!(
            "continue_from {}: no resume/state.json (not a pretrain run directory, or it saved no checkpoint yet)",
            parent.display()
        )
    })
}

/// Where a run's weights came from, for the provenance of every checkpoint it writes
/// (computed once: the parent's weights are hashed once, not at every checkpoint).
struct Lineage {
    parent: String,
    parent_sha256: String,
}

impl Lineage {
    fn of(config: &PretrainConfig, parent_steps: usize) -> Result<Self, String> {
        let Some(parent) = &config.continue_from else {
            let none = "none (trained from scratch)".to_string();
            return Ok(Self {
                parent: none.clone(),
                parent_sha256: none,
            });
        };
        // The EMA checkpoint file the continued run published.
        let path = parent.join("checkpoint/unet/diffusion_pytorch_model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            parent: format!("continues {} at step {parent_steps}", parent.display()),
            parent_sha256: sha256_hex(&bytes),
        })
    }
}

fn read_resume_state(dir: &Path) -> Result<Option<ResumeState>, String> {
    let path = dir.join("state.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_ema(path: &Path, fresh: UNet, device: &Device) -> Result<UNet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    checkpoint::apply_weights(fresh, &st, path, device).map_err(|e| e.to_string())
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the EMA checkpoint and the resume state. The state file is written last, so
/// an interrupted save resumes from the previous consistent state.
fn save_all(
    config: &PretrainConfig,
    lineage: &Lineage,
    model: &UNet,
    optim: &burn::optim::ModuleOptimizer,
    ema: &UNet,
    state: &ResumeState,
) -> Result<(), String> {
    let out = &config.out_dir;
    let data_hash = sha256_hex(toml::to_string(&config.data).expect("toml").as_bytes());
    let provenance = Provenance::new("lethe pretrain")
        .with("lethe_steps", state.step)
        .with("lethe_weights", "ema")
        .with("lethe_ema_decay", config.train.ema_decay)
        .with("lethe_data_config_sha256", data_hash)
        .with("lethe_parent", &lineage.parent)
        .with("lethe_parent_sha256", &lineage.parent_sha256)
        .with(
            "lethe_train_seconds",
            format!("{:.0}", state.elapsed_seconds),
        );
    checkpoint::save(
        &out.join("checkpoint"),
        ema,
        &config.model,
        &config.scheduler,
        &provenance,
    )
    .map_err(|e| e.to_string())?;

    let resume = out.join("resume");
    std::fs::create_dir_all(&resume).map_err(|e| e.to_string())?;
    let tmp_model = resume.join("model.tmp.bpk");
    model
        .valid()
        .save_file(&tmp_model)
        .map_err(|e| format!("{}: {e:?}", tmp_model.display()))?;
    std::fs::rename(&tmp_model, resume.join("model.bpk")).map_err(|e| e.to_string())?;
    let tmp_optim = resume.join("optimizer.tmp.bpk");
    optim
        .save(&tmp_optim)
        .map_err(|e| format!("{}: {e:?}", tmp_optim.display()))?;
    std::fs::rename(&tmp_optim, resume.join("optimizer.bpk")).map_err(|e| e.to_string())?;
    let ema_bytes =
        checkpoint::weights_bytes(ema, &Provenance::new("lethe pretrain (EMA resume state)"))?;
    atomic_write(&resume.join("ema.safetensors"), &ema_bytes).map_err(|e| e.to_string())?;
    atomic_write(
        &resume.join("state.json"),
        serde_json::to_string_pretty(state)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_then_decays_to_the_floor() {
        let t = TrainConfig {
            steps: 1000,
            batch_size: 1,
            learning_rate: 1e-3,
            warmup_steps: 100,
            final_lr_fraction: 0.1,
            ema_decay: 0.999,
            cond_drop_prob: 0.1,
            grad_clip_norm: 1.0,
            seed: 0,
            checkpoint_every: 10,
            precision: Precision::F32,
        };
        assert!((learning_rate(&t, 0) - 1e-5).abs() < 1e-12);
        assert!((learning_rate(&t, 99) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&t, 999) - 1e-4).abs() < 2e-7);
        assert!(learning_rate(&t, 500) < learning_rate(&t, 200));
    }

    /// The demo's pretrain config with `line` appended to its last table, `[train]`.
    fn demo_config_with(dir: &Path, line: &str) -> PathBuf {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pretrain-demo.toml");
        let text = std::fs::read_to_string(demo).unwrap() + line + "\n";
        let path = dir.join("pretrain.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn precision_is_read_from_train_and_f16_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bf16 = PretrainConfig::from_file(&demo_config_with(dir.path(), "precision = \"bf16\""));
        assert_eq!(bf16.unwrap().train.precision, Precision::Bf16);
        let path = demo_config_with(dir.path(), "precision = \"f16\"");
        let err = PretrainConfig::from_file(&path).unwrap_err();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("loss scaling"),
            "{err}"
        );
    }

    #[test]
    fn a_train_table_without_steps_batch_or_learning_rate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pretrain-demo.toml");
        let text = std::fs::read_to_string(demo).unwrap();
        for key in ["steps", "batch_size", "learning_rate"] {
            let without: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .collect();
            assert!(
                without.len() < text.lines().count(),
                "{key} is in the example"
            );
            let path = dir.path().join(format!("without-{key}.toml"));
            std::fs::write(&path, without.join("\n")).unwrap();
            let err = PretrainConfig::from_file(&path).unwrap_err();
            assert!(
                err.contains(&path.display().to_string()) && err.contains(key),
                "{err}"
            );
        }
    }

    #[test]
    fn an_f32_config_keeps_the_identity_it_had_before_precision_existed() {
        // Resuming checks this hash; had `precision = "f32"` joined the serialised config,
        // every run started before the option existed would refuse to resume.
        let dir = tempfile::tempdir().unwrap();
        let f32_config = PretrainConfig::from_file(&demo_config_with(dir.path(), "")).unwrap();
        assert!(!toml::to_string(&f32_config).unwrap().contains("precision"));
        let mut bf16_config = f32_config.clone();
        bf16_config.train.precision = Precision::Bf16;
        assert!(
            toml::to_string(&bf16_config)
                .unwrap()
                .contains("precision = \"bf16\"")
        );
        assert_ne!(f32_config.identity_hash(), bf16_config.identity_hash());
    }
}
