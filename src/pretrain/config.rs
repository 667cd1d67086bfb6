//! `lethe pretrain`'s config: model, scheduler, data and the training recipe.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{ImageSet, ImageSpec, load_paths};
use crate::diffusion::precision::Precision;
use crate::diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use crate::diffusion::unet::UNetConfig;
use crate::util::{cosine_decay, sha256_hex};

/// Largest `model.sample_size` a pretrain config may ask for: diffusers' pixel-space
/// UNet2DModel checkpoints stop at 256; far beyond, resizing the data set alone would take
/// the machine's memory before the run could say so.
pub const MAX_SAMPLE_SIZE: usize = 1024;

/// Most copies of one injected image (`data.inject.copies`); each is held in memory.
pub const MAX_INJECTED_COPIES: usize = 100_000;

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
    /// Save the EMA model and the resume state every this many steps (0 = only at the end).
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
        config
            .check_values()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Every value the TOML types let through but the run cannot use, by key and value, so
    /// it is refused before anything is written (issue #30): each of these either panicked
    /// mid-run (a drop probability above 1, a label past the class embedding) or trained
    /// something other than what was asked.
    fn check_values(&self) -> Result<(), String> {
        let t = &self.train;
        let unit = |key: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(format!("train.{key} = {value} must be between 0 and 1"))
            }
        };
        if t.steps == 0 {
            return Err("train.steps must be set, ≥ 1 (it has no default)".into());
        }
        if t.batch_size == 0 {
            return Err("train.batch_size must be set, ≥ 1 (it has no default)".into());
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return Err(format!(
                "train.learning_rate = {} must be set to a finite number > 0 (it has no default)",
                t.learning_rate
            ));
        }
        unit("final_lr_fraction", t.final_lr_fraction)?;
        unit("ema_decay", t.ema_decay)?;
        unit("cond_drop_prob", t.cond_drop_prob)?;
        if !(t.grad_clip_norm.is_finite() && t.grad_clip_norm >= 0.0) {
            return Err(format!(
                "train.grad_clip_norm = {} must be a finite number ≥ 0 (0 = no clipping)",
                t.grad_clip_norm
            ));
        }
        if self.model.sample_size > MAX_SAMPLE_SIZE {
            return Err(format!(
                "model.sample_size = {} is larger than Lethe trains from scratch (≤ {MAX_SAMPLE_SIZE} pixels a side)",
                self.model.sample_size
            ));
        }
        for (i, injection) in self.data.inject.iter().enumerate() {
            let at = format!("data.inject[{i}] ({})", injection.path.display());
            if let Some(classes) = self.model.num_class_embeds
                && injection.label >= classes
            {
                return Err(format!(
                    "{at}: label = {} is past the model's class embedding (model.num_class_embeds = {classes}: labels 0..{})",
                    injection.label,
                    classes - 1
                ));
            }
            if injection.copies > MAX_INJECTED_COPIES {
                return Err(format!(
                    "{at}: copies = {} is more than {MAX_INJECTED_COPIES} (each copy is held in memory)",
                    injection.copies
                ));
            }
        }
        Ok(())
    }

    /// Hash of everything that determines the run except its length, so a resumed run
    /// can check it continues the same experiment (steps may be raised).
    pub(super) fn identity_hash(&self) -> String {
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

    /// The demo's pretrain config with the line that starts with `key =` replaced by `line`.
    fn demo_config_replacing(dir: &Path, key: &str, line: &str) -> PathBuf {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pretrain-demo.toml");
        let text = std::fs::read_to_string(demo).unwrap();
        let prefix = format!("{key} =");
        assert!(
            text.lines().any(|l| l.starts_with(&prefix)),
            "{key} is in the example"
        );
        let replaced: Vec<&str> = text
            .lines()
            .map(|l| if l.starts_with(&prefix) { line } else { l })
            .collect();
        let path = dir.join(format!("{key}.toml"));
        std::fs::write(&path, replaced.join("\n")).unwrap();
        path
    }

    /// Issue #30: values the TOML types let through but no run can use are refused by key
    /// and value, naming the file, before anything is written — two of them (a drop
    /// probability above 1, a label past the class embedding) panicked mid-run before.
    #[test]
    fn each_impossible_value_is_refused_by_its_key_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("steps", "steps = 0", "train.steps must be set"),
            (
                "batch_size",
                "batch_size = 0",
                "train.batch_size must be set",
            ),
            (
                "learning_rate",
                "learning_rate = nan",
                "train.learning_rate = NaN",
            ),
            (
                "learning_rate",
                "learning_rate = -1",
                "train.learning_rate = -1",
            ),
            (
                "learning_rate",
                "learning_rate = inf",
                "train.learning_rate = inf",
            ),
            (
                "final_lr_fraction",
                "final_lr_fraction = -3",
                "train.final_lr_fraction = -3 must be between 0 and 1",
            ),
            (
                "ema_decay",
                "ema_decay = 2.0",
                "train.ema_decay = 2 must be between 0 and 1",
            ),
            (
                "cond_drop_prob",
                "cond_drop_prob = 1.5",
                "train.cond_drop_prob = 1.5 must be between 0 and 1",
            ),
            (
                "grad_clip_norm",
                "grad_clip_norm = -1.0",
                "train.grad_clip_norm = -1 must be",
            ),
            (
                "grad_clip_norm",
                "grad_clip_norm = nan",
                "train.grad_clip_norm = NaN must be",
            ),
            (
                "sample_size",
                "sample_size = 2048",
                "model.sample_size = 2048 is larger",
            ),
            (
                "sample_size",
                "sample_size = 100000",
                "[model] sample_size 100000 is outside 1..=8192",
            ),
            (
                "label",
                "label = 12",
                "data.inject[0] (assets/data/tshirt.png): label = 12 is past the model's class embedding",
            ),
            (
                "copies",
                "copies = 1000000000",
                "data.inject[0] (assets/data/tshirt.png): copies = 1000000000 is more than",
            ),
        ];
        for (key, line, expected) in cases {
            let path = demo_config_replacing(dir.path(), key, line);
            let err = PretrainConfig::from_file(&path).unwrap_err();
            assert!(
                err.starts_with(&format!("{}: ", path.display())) && err.contains(expected),
                "{line}: {err}"
            );
        }
        // The edges are allowed: a warm-up as long as the run (or longer: the rate then ramps
        // up throughout, as short test runs do), no decay, no clipping, always dropping the
        // label, the last class.
        for (key, line) in [
            ("warmup_steps", "warmup_steps = 7000"),
            ("final_lr_fraction", "final_lr_fraction = 1.0"),
            ("grad_clip_norm", "grad_clip_norm = 0.0"),
            ("cond_drop_prob", "cond_drop_prob = 1.0"),
            ("label", "label = 11"),
        ] {
            let path = demo_config_replacing(dir.path(), key, line);
            PretrainConfig::from_file(&path).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn every_bundled_pretrain_config_is_accepted() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(examples).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("pretrain") && name.ends_with(".toml") {
                PretrainConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 6, "{seen} pretrain configs");
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
