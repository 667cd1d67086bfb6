//! Unlearning methods: one file per method, all behind [`Method`], all sharing the step
//! machinery in [`step`], [`grads`] and [`combine`]. A method turns one step's batches into
//! an update direction (before the global clip and the optimizer, which the engine owns)
//! and says what it computed (loss terms, gradient norms, coefficients, importance weights).

pub mod combine;
pub mod dimum;
pub mod erasediff;
pub mod finetune;
pub mod importance;
pub mod neggrad;
pub mod retrain;
pub mod siss;
pub mod siss_no_is;
pub mod step;
pub mod vdu;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use self::importance::WeightStats;
use self::step::StepContext;
use crate::data::{ImageSet, ImageSpec};
use crate::diffusion::unet::{UNet, UNetConfig};
use crate::train::grads::GradVec;

/// What a method reports about one step (everything is computed, nothing estimated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Loss terms by name; `total` is the objective the direction descends.
    pub terms: Vec<(String, f32)>,
    /// L2 norms of per-term gradients, before combination.
    pub grad_norms: Vec<(String, f32)>,
    /// Step-dependent coefficients (SISS's forget scale, EraseDiff's λ, …).
    pub coefficients: Vec<(String, f32)>,
    /// SISS importance-weight statistics.
    pub weights: Option<WeightStats>,
}

impl StepReport {
    pub fn term(&mut self, name: &str, value: f32) {
        self.terms.push((name.to_string(), value));
    }
    pub fn grad_norm(&mut self, name: &str, value: f32) {
        self.grad_norms.push((name.to_string(), value));
    }
    pub fn coefficient(&mut self, name: &str, value: f32) {
        self.coefficients.push((name.to_string(), value));
    }
    pub fn total(&self) -> Option<f32> {
        self.terms
            .iter()
            .find(|(n, _)| n == "total")
            .map(|(_, v)| *v)
    }
}

/// `key = value` must be a finite number ≥ 0 (NaN and infinities are refused too).
pub fn check_non_negative(key: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{key} = {value} must be a finite number ≥ 0"))
    }
}

/// `key = value` must be a finite number > 0.
pub fn check_positive(key: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{key} = {value} must be a finite number > 0"))
    }
}

/// One step's update direction (the optimizer descends it) and its report.
pub struct Direction {
    pub grad: GradVec,
    pub report: StepReport,
}

pub trait Method {
    fn direction(&mut self, cx: &mut StepContext<'_>) -> Result<Direction, String>;

    /// What the method carries from one step to the next beyond the weights and the
    /// optimizer, as JSON for a run's resume state. Default: nothing.
    fn saved_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores [`Method::saved_state`] when a run resumes. `start` is step 0's context on
    /// the run's starting model, for state the method computes once when the run starts.
    fn restore(
        &mut self,
        _saved: &serde_json::Value,
        _start: &mut StepContext<'_>,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Which method, with its knobs. In TOML: `[method]` with `name = "siss"` and the knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum MethodConfig {
    Siss(siss::SissConfig),
    SissNoIs(siss_no_is::SissNoIsConfig),
    EraseDiff(erasediff::EraseDiffConfig),
    Vdu(vdu::VduConfig),
    Dimum(dimum::DimumConfig),
    NegGrad(neggrad::NegGradConfig),
    /// Naive deletion: fine-tune on the retain set.
    Finetune,
    /// Retrain from scratch on the retain set (fresh weights from `init_seed`).
    Retrain {
        #[serde(default)]
        init_seed: u64,
    },
}

impl MethodConfig {
    /// Refuses keys of a `[method]` table that its method does not take, for the methods
    /// whose knobs serde cannot check: an internally tagged variant without a struct of its
    /// own ignores extra keys, so a `lambda = 0.5` left beside `name = "finetune"` would be
    /// dropped without a word. (The other methods' structs deny unknown keys themselves.)
    pub fn refuse_foreign_keys(method: &toml::Table) -> Result<(), String> {
        let name = method.get("name").and_then(toml::Value::as_str);
        let takes: &[&str] = match name {
            Some("finetune") => &["name"],
            Some("retrain") => &["name", "init_seed"],
            _ => return Ok(()),
        };
        let foreign: Vec<String> = method
            .keys()
            .filter(|key| !takes.contains(&key.as_str()))
            .map(|key| format!("method.{key}"))
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}: the {} method takes no such key (its keys: {})",
            foreign.join(", "),
            name.unwrap_or_default(),
            takes.join(", ")
        ))
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Siss(c) if c.form == siss::SissForm::Paper => "SISS (paper form)",
            Self::Siss(_) => "SISS",
            Self::SissNoIs(_) => "SISS (No IS)",
            Self::EraseDiff(_) => "EraseDiff",
            Self::Vdu(_) => "VDU (reconstruction)",
            Self::Dimum(_) => "DiMUM (reconstruction)",
            Self::NegGrad(_) => "NegGrad",
            Self::Finetune => "Naive deletion (finetune)",
            Self::Retrain { .. } => "Retrain from scratch",
        }
    }

    /// Short name used in run directory names.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Siss(_) => "siss",
            Self::SissNoIs(_) => "siss-no-is",
            Self::EraseDiff(_) => "erasediff",
            Self::Vdu(_) => "vdu",
            Self::Dimum(_) => "dimum",
            Self::NegGrad(_) => "neggrad",
            Self::Finetune => "finetune",
            Self::Retrain { .. } => "retrain",
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Siss(c) => c.validate(),
            Self::SissNoIs(c) => c.validate(),
            Self::EraseDiff(c) => c.validate(),
            Self::Vdu(c) => c.validate(),
            Self::Dimum(c) => c.validate(),
            Self::NegGrad(c) => c.validate(),
            Self::Finetune | Self::Retrain { .. } => Ok(()),
        }
    }

    /// Whether the method reads the retain set (VDU and NegGrad use forget data only).
    /// Batches one step passes through the model (forward and backward), for the cost
    /// estimate: the two-set methods draw a retain and a forget batch, SISS one mixture batch
    /// twice.
    pub fn passes_per_step(&self) -> usize {
        match self {
            Self::Finetune | Self::NegGrad(_) | Self::Retrain { .. } | Self::Vdu(_) => 1,
            _ => 2,
        }
    }

    pub fn uses_retain(&self) -> bool {
        !matches!(self, Self::Vdu(_) | Self::NegGrad(_))
    }

    /// The weights the run trains: the source checkpoint's, or fresh ones (retrain).
    pub fn starting_model(
        &self,
        source: &UNet,
        config: &UNetConfig,
        device: &Device,
    ) -> Result<UNet, String> {
        match self {
            Self::Retrain { init_seed } => retrain::fresh_model(config, *init_seed, device),
            _ => Ok(source.clone()),
        }
    }

    /// The substitute data a method trains on besides the retain and forget sets (DiMUM's
    /// alternative content under the forgotten condition); `None` for the others.
    pub fn substitute_set(
        &self,
        retain: &ImageSet,
        forget: &ImageSet,
        spec: ImageSpec,
    ) -> Result<Option<ImageSet>, String> {
        match self {
            Self::Dimum(c) => c.substitute_set(retain, forget, spec).map(Some),
            _ => Ok(None),
        }
    }

    /// Builds the method; `num_classes` = real classes of a class-conditional model.
    pub fn build(&self, num_classes: Option<usize>) -> Result<Box<dyn Method>, String> {
        Ok(match self {
            Self::Siss(c) => Box::new(siss::Siss { config: c.clone() }),
            Self::SissNoIs(c) => Box::new(siss_no_is::SissNoIs { config: c.clone() }),
            Self::EraseDiff(c) => Box::new(erasediff::EraseDiff::new(c.clone(), num_classes)?),
            Self::Vdu(c) => Box::new(vdu::Vdu::new(c.clone())),
            Self::Dimum(c) => Box::new(dimum::Dimum { config: c.clone() }),
            Self::NegGrad(c) => Box::new(neggrad::NegGrad { config: c.clone() }),
            Self::Finetune | Self::Retrain { .. } => Box::new(finetune::Finetune),
        })
    }
}
