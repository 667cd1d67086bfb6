//! `ExperimentConfig`: one serde description of an unlearning run, for every method. TOML
//! on disk (`examples/unlearn-*.toml`); the GUI edits the same struct. Same config and seed
//! ⇒ same run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::diffusion::precision::Precision;
use crate::diffusion::sampler::SamplerKind;
use crate::train::OptimizerConfig;
use crate::unlearn::step::{Reduction, TimestepSampling};
use crate::unlearn::{MethodConfig, check_non_negative};
use crate::util::NoUnknownKeys;

/// The keys every run config starts with — the checkpoint a run starts from, where its run
/// directory goes, on which backend it computes — flattened into [`ExperimentConfig`] and
/// the attack's config, so both read them the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunHeader {
    /// The checkpoint the run starts from (diffusers layout). Never modified.
    pub checkpoint: PathBuf,
    /// Parent folder of run directories.
    pub runs_dir: PathBuf,
    /// Run directory name (default: `<method>-NNN`, the first free number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub backend: BackendChoice,
    /// The `lethe serve` address (`ws://host:port`) when `backend = "remote"`. Its token is
    /// never written here: it comes from LETHE_REMOTE_TOKEN or a prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Refuses the config's top-level keys that no field took (see [`NoUnknownKeys`]).
    #[serde(flatten, skip_serializing)]
    pub unknown: NoUnknownKeys,
}

impl Default for RunHeader {
    fn default() -> Self {
        Self {
            checkpoint: PathBuf::new(),
            runs_dir: PathBuf::from("runs"),
            name: None,
            backend: BackendChoice::default(),
            remote: None,
            unknown: NoUnknownKeys,
        }
    }
}

impl RunHeader {
    /// A header for a run from `checkpoint`, with the other keys at their defaults.
    pub fn new(checkpoint: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            ..Self::default()
        }
    }

    /// Refuses a missing checkpoint, a run name that would leave `runs_dir`, and a remote
    /// backend without a valid address.
    pub fn validate(&self) -> Result<(), String> {
        if self.checkpoint.as_os_str().is_empty() {
            return Err("checkpoint is not set: the checkpoint to start from".into());
        }
        if let Some(name) = &self.name {
            super::run_dir::check_run_name(name)?;
        }
        match (&self.remote, self.backend) {
            (None, BackendChoice::Remote) => Err(
                "backend = \"remote\" needs remote = \"ws://host:port\", the lethe serve to run on"
                    .into(),
            ),
            (Some(url), _) => crate::backend::remote::parse_url(url)
                .map(|_| ())
                .map_err(|e| format!("remote: {e}")),
            (None, _) => Ok(()),
        }
    }

    /// Applies a `--backend` from the command line (a remote one brings its address).
    pub fn set_backend(&mut self, request: &crate::backend::BackendRequest) {
        self.backend = request.choice;
        if request.remote.is_some() {
            self.remote = request.remote.clone();
        }
    }
}

/// The most samples one evaluation may draw (`eval.samples`).
pub const MAX_EVAL_SAMPLES: usize = 100_000;

/// An unlearning run: [`RunHeader`]'s keys at the top level, then `[data]`, `[method]`,
/// `[train]` and `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    #[serde(flatten)]
    pub header: RunHeader,
    pub data: DataSelection,
    pub method: MethodConfig,
    #[serde(default)]
    pub train: UnlearnTrain,
    #[serde(default)]
    pub eval: EvalConfig,
}

/// Which images to forget and which to keep.
///
/// Data-point setting: `forget` lists images (e.g. the memorised T-shirt); `retain` the
/// rest of the training data. Class setting: `forget_class = c` moves every `retain` image
/// of class `c` into the forget set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSelection {
    /// Images the model keeps (files, folders, IDX, CIFAR batches), with their labels.
    pub retain: Vec<PathBuf>,
    /// Images to forget.
    pub forget: Vec<PathBuf>,
    /// Label of the `forget` images for a class-conditional model (their condition).
    pub forget_label: Option<usize>,
    /// Class setting: forget every retain image of this class.
    pub forget_class: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnlearnTrain {
    pub steps: usize,
    /// Images per batch, for each of the retain and forget batches.
    pub batch_size: usize,
    /// Split every batch into this many micro-batches, one forward/backward pass each, and
    /// add their gradients: the same step (same draws, same gradient up to float summation
    /// order) in a fraction of the memory, so SISS's batch 64 + 64 fits a large model.
    /// Micro-batches hold ⌈batch_size / grad_accumulation⌉ images.
    pub grad_accumulation: usize,
    pub learning_rate: f64,
    pub optimizer: OptimizerConfig,
    /// Global gradient-norm clip applied after the method combines its terms (0 = off).
    pub grad_clip_norm: f32,
    pub seed: u64,
    pub reduction: Reduction,
    pub timesteps: TimestepSampling,
    /// Inclusive range of training timesteps (SISS's CelebA script used `[999, 999]`).
    pub t_min: usize,
    pub t_max: Option<usize>,
    /// Probability of conditioning on the null class instead of an image's label
    /// (class-conditional models with a null class), so the unconditional branch unlearns too.
    pub cond_drop_prob: f64,
    /// EMA of the weights, `ema ← d·ema + (1 − d)·θ` after every step from the original
    /// weights, no warm-up; when on (d > 0) the EMA is what is evaluated, sampled and saved.
    /// 0 = off (SISS); EraseDiff's code evaluates an EMA with d = 0.99.
    pub ema_decay: f64,
    /// Compute precision of every UNet forward in the run: `f32`, or `bf16` mixed precision
    /// (f32 master weights; see `diffusion::precision`). `f16` is refused: no loss scaling.
    pub precision: Precision,
    /// Save the resume state (weights, optimizer moments, EMA, step; `resume/`) every this many
    /// steps (0 = by time only). A cancelled run saves it too.
    pub save_state_every: usize,
    /// … and whenever this many minutes have passed since the last save (0 = by steps only):
    /// a killed run loses at most this much work (`lethe unlearn --resume RUN_DIR`).
    pub save_state_minutes: f64,
}

impl Default for UnlearnTrain {
    /// SISS's MNIST T-shirt recipe (docs/methods.md, SISS).
    fn default() -> Self {
        Self {
            steps: 300,
            batch_size: 64,
            grad_accumulation: 1,
            learning_rate: 5e-5,
            optimizer: OptimizerConfig::default(),
            grad_clip_norm: 1.0,
            seed: 0,
            reduction: Reduction::SumPerImage,
            timesteps: TimestepSampling::Uniform,
            t_min: 0,
            t_max: None,
            cond_drop_prob: 0.5,
            ema_decay: 0.0,
            precision: Precision::F32,
            save_state_every: 0,
            save_state_minutes: 5.0,
        }
    }
}

/// Live evaluation during a run: fixed-seed grids and the forgetting detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many steps during the run (0 = never during it).
    pub every: usize,
    /// Evaluate the result after the last step. With `every = 0` and this off the run
    /// evaluates nothing — not even the original — and trains only.
    pub at_end: bool,
    /// Samples per evaluation (more = less noisy rates, slower); absent = fitted to
    /// `budget_seconds` (64 when they fit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// Images in the before/after grid (the first samples of the same seeds).
    pub grid: usize,
    /// `ddim` or `dpm++2m` (DPM-Solver++(2M): 10–20 steps for about what DDIM does in 50;
    /// README, *Evaluation*); absent = DDIM when the evaluation fits `budget_seconds` with
    /// it, else DPM-Solver++(2M).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerKind>,
    /// Denoising steps of that sampler; absent = 50 for DDIM, 20 for DPM-Solver++(2M).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler_steps: Option<usize>,
    /// Seconds one evaluation may take when `samples`, `sampler` or `sampler_steps` is left
    /// out: the run times a forward pass of its model on its device before it starts and
    /// fits them to this (0 = no budget: 64 samples, DDIM-50).
    pub budget_seconds: f64,
    pub seed: u64,
    /// Classifier used for digit confidence and class rates (skipped if it does not fit
    /// the images); an empty path means none.
    pub classifier: PathBuf,
    /// Network whose features FID and precision/recall are computed on: `classifier` (the
    /// classifier above; MNIST-sized images) or `inception:PATH` (the FID Inception-v3 with
    /// pytorch-fid's weights file, the FID papers quote; any image size).
    pub feature_net: crate::metrics::feature_net::FeatureNetChoice,
    /// A sample within this L2 distance (in [0,1] pixels) of a forget image is a copy of it.
    pub copy_threshold: f32,
    /// Guidance weight when sampling the forgotten class (class setting); absent = chosen per
    /// model by the guidance check on the original (`metrics::baseline_check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    /// Check that the starting model shows what the forgetting rates measure (and choose the
    /// guidance on it). Off for attacks: they start from the unlearned model, which is
    /// expected not to.
    pub check_original: bool,
    /// Reuse the original model's evaluation cached by an earlier run with the same
    /// checkpoint and evaluation (in the cache directory, `LETHE_CACHE_DIR`); off = evaluate
    /// it again.
    pub reuse_original: bool,
    /// Save a checkpoint every this many steps (0 = only the final one).
    pub checkpoint_every: usize,
    /// `fast` (live curves) or `thorough` (numbers to report): sets `samples`,
    /// `sampler_steps`, `elbo_images` and `elbo_timesteps` (see `lethe eval --help`);
    /// absent = those four keys as written.
    pub preset: Option<crate::metrics::suite::Preset>,
    /// Forget images and retain images whose ELBO (bits/dim) is estimated at each evaluation.
    pub elbo_images: usize,
    /// Network evaluations per image for the ELBO estimate (0 = no ELBO; 1000 = exact).
    pub elbo_timesteps: usize,
}

fn default_steps(sampler: SamplerKind) -> usize {
    match sampler {
        SamplerKind::DpmSolver2M => DEFAULT_DPM_STEPS,
        _ => DEFAULT_DDIM_STEPS,
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 50,
            at_end: true,
            samples: None,
            grid: 16,
            sampler: None,
            sampler_steps: None,
            budget_seconds: DEFAULT_BUDGET_SECONDS,
            seed: 0,
            classifier: PathBuf::from(crate::data::demo::DEMO_CLASSIFIER),
            feature_net: Default::default(),
            copy_threshold: crate::metrics::memorization::SISS_L2_THRESHOLD,
            guidance: None,
            check_original: true,
            reuse_original: true,
            checkpoint_every: 0,
            preset: None,
            elbo_images: 8,
            elbo_timesteps: 16,
        }
    }
}

/// What one evaluation of a run samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sampling {
    pub samples: usize,
    pub sampler: SamplerKind,
    pub steps: usize,
}

/// The evaluation when nothing is left to the budget (or it fits): 64 DDIM-50 samples.
pub const DEFAULT_SAMPLES: usize = 64;
pub const DEFAULT_DDIM_STEPS: usize = 50;
/// DPM-Solver++(2M)'s default steps: on the demo, its forgetting figures at 10 and 20 steps
/// agree (README, *Evaluation*).
pub const DEFAULT_DPM_STEPS: usize = 20;
/// A fitted evaluation draws at least this many samples, whatever the budget.
pub const MIN_FITTED_SAMPLES: usize = 16;
/// `[eval] budget_seconds`' default: one evaluation of a google/ddpm-cifar10-32-sized model
/// on 2 CPU cores fits in under a minute; the demo's 64 DDIM-50 samples fit untouched.
pub const DEFAULT_BUDGET_SECONDS: f64 = 45.0;

impl EvalConfig {
    /// The settings in force: the preset's values when a preset is named.
    pub fn resolved(&self) -> Self {
        let Some(preset) = self.preset else {
            return self.clone();
        };
        let p = preset.settings();
        Self {
            samples: Some(p.samples),
            sampler_steps: Some(p.sampler_steps),
            elbo_images: p.elbo_images,
            elbo_timesteps: p.elbo_timesteps,
            grid: self.grid.min(p.samples),
            ..self.clone()
        }
    }

    /// Whether some of what an evaluation samples is left to the budget.
    pub fn fits_to_budget(&self) -> bool {
        self.budget_seconds > 0.0
            && (self.samples.is_none() || self.sampler.is_none() || self.sampler_steps.is_none())
    }

    /// The sampling in force, defaults (64 DDIM-50) for what is left out.
    pub fn sampling(&self) -> Sampling {
        let sampler = self.sampler.unwrap_or(SamplerKind::Ddim);
        Sampling {
            samples: self.samples.unwrap_or(DEFAULT_SAMPLES),
            sampler,
            steps: self.sampler_steps.unwrap_or(default_steps(sampler)),
        }
    }

    /// The sampling fitted to `budget_seconds`, given what one sample-step and the rest of
    /// an evaluation (the ELBO) cost: the written values are kept; the defaults are kept when
    /// they fit; else the sampler left out becomes DPM-Solver++(2M) at 20 steps and the
    /// samples left out are as many as fit (at least [`MIN_FITTED_SAMPLES`], at most 64).
    pub fn fitted(&self, sample_step_seconds: f64, other_seconds: f64) -> Sampling {
        let default = self.sampling();
        let cost = |s: &Sampling| s.samples as f64 * s.steps as f64 * sample_step_seconds;
        if !self.fits_to_budget() || cost(&default) + other_seconds <= self.budget_seconds {
            return default;
        }
        let sampler = self.sampler.unwrap_or(SamplerKind::DpmSolver2M);
        let steps = self.sampler_steps.unwrap_or(default_steps(sampler));
        let affordable = (self.budget_seconds - other_seconds).max(0.0)
            / (steps as f64 * sample_step_seconds).max(f64::MIN_POSITIVE);
        Sampling {
            samples: self.samples.unwrap_or_else(|| {
                (affordable.floor() as usize).clamp(MIN_FITTED_SAMPLES, DEFAULT_SAMPLES)
            }),
            sampler,
            steps,
        }
    }

    /// These settings with `sampling` written in (and the grid no larger than the samples).
    pub fn with_sampling(&self, sampling: Sampling) -> Self {
        Self {
            samples: Some(sampling.samples),
            sampler: Some(sampling.sampler),
            sampler_steps: Some(sampling.steps),
            grid: self.grid.min(sampling.samples),
            ..self.clone()
        }
    }

    /// Whether a run evaluates anything (and so needs the original's evaluation at its start).
    pub fn evaluates(&self) -> bool {
        self.every > 0 || self.at_end
    }

    /// How the preset is named in metric provenance.
    pub fn preset_name(&self) -> String {
        self.preset
            .map_or("custom".into(), |p| p.name().to_string())
    }

    pub fn classifier_path(&self) -> Option<&Path> {
        (!self.classifier.as_os_str().is_empty()).then_some(self.classifier.as_path())
    }
}

impl ExperimentConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        Self::from_file_noting(path).map(|(config, _)| config)
    }

    /// Reads a TOML config, or a SISS-style YAML one (`.yaml`/`.yml`, see
    /// [`super::siss_yaml`]); also returns the YAML keys that were ignored, and why.
    pub fn from_file_noting(path: &Path) -> Result<(Self, Vec<String>), String> {
        let in_file = |e: String| format!("{}: {e}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| in_file(e.to_string()))?;
        let is_yaml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml {
            let parsed = super::siss_yaml::parse(&text).map_err(in_file)?;
            return Ok((parsed.config, parsed.ignored));
        }
        let config: Self = toml::from_str(&text).map_err(|e| in_file(e.to_string()))?;
        // Read once more as a plain table, for the keys serde cannot refuse.
        let table: toml::Table = toml::from_str(&text).map_err(|e| in_file(e.to_string()))?;
        if let Some(toml::Value::Table(method)) = table.get("method") {
            MethodConfig::refuse_foreign_keys(method).map_err(in_file)?;
        }
        config.validate().map_err(in_file)?;
        Ok((config, Vec::new()))
    }

    /// Checks every value that can be checked without loading data; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        self.header.validate()?;
        self.method.validate()?;
        let t = &self.train;
        if t.batch_size == 0 {
            return Err("train.batch_size must be ≥ 1".into());
        }
        if !(1..=t.batch_size).contains(&t.grad_accumulation) {
            return Err(format!(
                "train.grad_accumulation = {} must be between 1 and train.batch_size = {} (it is the number of micro-batches a batch is split into)",
                t.grad_accumulation, t.batch_size
            ));
        }
        check_non_negative("train.learning_rate", t.learning_rate)?;
        check_non_negative("train.grad_clip_norm", t.grad_clip_norm as f64)?;
        check_non_negative("train.save_state_minutes", t.save_state_minutes)?;
        t.precision
            .check_trainable()
            .map_err(|e| format!("train.precision: {e}"))?;
        if !(0.0..=1.0).contains(&t.cond_drop_prob) {
            return Err(format!(
                "train.cond_drop_prob = {} is outside [0, 1]",
                t.cond_drop_prob
            ));
        }
        if !(0.0..1.0).contains(&t.ema_decay) {
            return Err(format!(
                "train.ema_decay = {} is outside [0, 1) (0 = no EMA)",
                t.ema_decay
            ));
        }
        if let Some(hi) = t.t_max
            && hi < t.t_min
        {
            return Err(format!(
                "train.t_max = {hi} is below train.t_min = {}",
                t.t_min
            ));
        }
        let d = &self.data;
        if d.forget.is_empty() && d.forget_class.is_none() {
            return Err(
                "data.forget is empty and data.forget_class is not set: nothing to forget".into(),
            );
        }
        if !d.forget.is_empty() && d.forget_class.is_some() {
            return Err("set either data.forget (images) or data.forget_class, not both".into());
        }
        if d.retain.is_empty() && (self.method.uses_retain() || d.forget_class.is_some()) {
            return Err(format!(
                "data.retain is empty, but {} needs retain data",
                if d.forget_class.is_some() {
                    "the class setting".to_string()
                } else {
                    self.method.label().to_string()
                }
            ));
        }
        if let Some(samples) = self.eval.samples
            && self.eval.preset.is_none()
            && self.eval.grid > samples
        {
            return Err(format!(
                "eval.grid = {} exceeds eval.samples = {samples}",
                self.eval.grid
            ));
        }
        if self.eval.samples == Some(0) {
            return Err("eval.samples must be ≥ 1".into());
        }
        if let Some(samples) = self.eval.samples
            && samples > MAX_EVAL_SAMPLES
        {
            // Refused here, before a run directory exists: otherwise the original's
            // evaluation starts drawing them and grinds for days without a word.
            return Err(format!(
                "eval.samples = {samples} is more than {MAX_EVAL_SAMPLES} (twice the 50 000 of the FID that papers quote)"
            ));
        }
        if self.eval.sampler_steps == Some(0) {
            return Err("eval.sampler_steps must be ≥ 1".into());
        }
        if self.eval.budget_seconds.is_nan() || self.eval.budget_seconds < 0.0 {
            return Err(format!(
                "eval.budget_seconds = {} must be ≥ 0 (0 = no budget)",
                self.eval.budget_seconds
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_backend_needs_a_well_formed_address_and_the_token_is_never_written() {
        let mut header = RunHeader::new("assets/demo-model");
        header.backend = BackendChoice::Remote;
        assert!(
            header
                .validate()
                .unwrap_err()
                .contains("remote = \"ws://host:port\"")
        );
        header.remote = Some("gpu:7878".into());
        assert!(header.validate().unwrap_err().starts_with("remote: "));
        header.set_backend(&"remote:ws://gpu:7878".parse().unwrap());
        header.validate().unwrap();
        let text = toml::to_string(&header).unwrap();
        assert!(
            text.contains("backend = \"remote\"") && text.contains("remote = \"ws://gpu:7878\""),
            "{text}"
        );
        assert!(!text.to_lowercase().contains("token"), "{text}");
        // Back to a local backend: the address stays on record but is not used.
        header.set_backend(&"cpu".parse().unwrap());
        assert_eq!(header.backend, BackendChoice::Cpu);
        header.validate().unwrap();
    }

    #[test]
    fn the_evaluation_is_fitted_to_its_budget_only_where_left_out() {
        let auto = EvalConfig::default();
        let ddim50 = Sampling {
            samples: 64,
            sampler: SamplerKind::Ddim,
            steps: 50,
        };
        // A cheap model: the defaults fit (64 × 50 × 5 ms = 16 s + 2 s).
        assert_eq!(auto.fitted(0.005, 2.0), ddim50);
        // google/ddpm-cifar10-32 on 2 cores: 0.074 s per image-step, 14 s of ELBO.
        let fitted = auto.fitted(0.074, 14.0);
        assert_eq!(
            fitted,
            Sampling {
                samples: 20, // ⌊(45 − 14) / (20 × 0.074)⌋
                sampler: SamplerKind::DpmSolver2M,
                steps: 20,
            }
        );
        let seconds = fitted.samples as f64 * 20.0 * 0.074 + 14.0;
        assert!(seconds <= auto.budget_seconds, "{seconds}");
        // Written values are kept; what is left out fits around them.
        let ddim = EvalConfig {
            sampler: Some(SamplerKind::Ddim),
            ..EvalConfig::default()
        };
        assert_eq!(
            ddim.fitted(0.074, 14.0),
            Sampling {
                samples: MIN_FITTED_SAMPLES,
                sampler: SamplerKind::Ddim,
                steps: 50,
            }
        );
        let written = EvalConfig {
            samples: Some(64),
            sampler: Some(SamplerKind::Ddim),
            sampler_steps: Some(50),
            ..EvalConfig::default()
        };
        assert!(!written.fits_to_budget());
        assert_eq!(written.fitted(10.0, 100.0), ddim50);
        // No budget: the defaults, whatever they cost.
        let unbounded = EvalConfig {
            budget_seconds: 0.0,
            ..EvalConfig::default()
        };
        assert_eq!(unbounded.fitted(10.0, 100.0), ddim50);
        // Written back, the fitted sampling is what the config says.
        let back = auto.with_sampling(fitted);
        assert_eq!(back.sampling(), fitted);
        assert!(!back.fits_to_budget());
        assert_eq!(back.grid, 16);
    }

    /// `examples/unlearn-siss.toml` with `edit` applied to its text.
    fn siss_example(edit: impl Fn(String) -> String) -> Result<ExperimentConfig, String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/unlearn-siss.toml");
        let text = edit(std::fs::read_to_string(path).unwrap());
        let config: ExperimentConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map(|()| config)
    }

    #[test]
    fn the_flattened_header_and_scaling_still_refuse_unknown_keys_by_name() {
        let config = siss_example(|t| t).unwrap();
        assert_eq!(config.header.checkpoint, PathBuf::from("assets/demo-model"));
        let MethodConfig::Siss(siss) = &config.method else {
            panic!("{:?}", config.method)
        };
        assert_eq!(siss.scaling.relative_scaling, Some(0.1));
        let top = siss_example(|t| t.replace("[data]", "chekpoint = \"x\"\n[data]")).unwrap_err();
        assert!(top.contains("unknown field `chekpoint`"), "{top}");
        let method =
            siss_example(|t| t.replace("lambda = 0.5", "lambda = 0.5\nlamda = 0.4")).unwrap_err();
        assert!(method.contains("unknown field `lamda`"), "{method}");
        // Tables that are not flattened keep serde's own refusal.
        let train = siss_example(|t| t.replace("seed = 0\nreduction", "sed = 0\nreduction"));
        assert!(train.unwrap_err().contains("sed"));
    }

    #[test]
    fn knobs_left_beside_a_method_that_takes_none_are_refused_by_key() {
        let tmp = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/unlearn-siss.toml");
        let text = std::fs::read_to_string(example).unwrap();
        let path = tmp.path().join("c.toml");
        std::fs::write(
            &path,
            text.replace("name = \"siss\"", "name = \"finetune\""),
        )
        .unwrap();
        let error = ExperimentConfig::from_file(&path).unwrap_err();
        assert!(
            error.contains("c.toml: method.form, method.lambda, method.relative_scaling, method.scaling_norm: the finetune method takes no such key"),
            "{error}"
        );
        let retrain = "[method]\nname = \"retrain\"\ninit_seed = 3\n";
        let table: toml::Table = toml::from_str(retrain).unwrap();
        let method = table["method"].as_table().unwrap();
        assert_eq!(MethodConfig::refuse_foreign_keys(method), Ok(()));
    }

    #[test]
    fn a_written_config_reads_back_the_same() {
        let config = siss_example(|t| t).unwrap();
        let text = toml::to_string(&config).unwrap();
        assert!(text.starts_with("checkpoint = "), "{text}");
        let back: ExperimentConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn an_absurd_evaluation_size_is_refused_by_its_key() {
        let set = |n: usize| move |t: String| t.replace("samples = 64", &format!("samples = {n}"));
        siss_example(set(MAX_EVAL_SAMPLES)).expect("the most samples allowed");
        let err = siss_example(set(MAX_EVAL_SAMPLES + 1)).unwrap_err();
        assert!(
            err.starts_with("eval.samples = 100001 is more than"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_checkpoint_is_named() {
        let err =
            siss_example(|t| t.replace("checkpoint = \"assets/demo-model\"", "")).unwrap_err();
        assert!(err.contains("checkpoint is not set"), "{err}");
    }
}
