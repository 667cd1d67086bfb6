//! The optimizer of a run, described as data and built in one place.

use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    AdamW {
        beta1: f32,
        beta2: f32,
        weight_decay: f32,
        epsilon: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

impl Default for OptimizerConfig {
    /// SISS MNIST: AdamW (0.95, 0.999), wd 1e-6, eps 1e-8.
    fn default() -> Self {
        Self::AdamW {
            beta1: 0.95,
            beta2: 0.999,
            weight_decay: 1e-6,
            epsilon: 1e-8,
        }
    }
}

impl OptimizerConfig {
    /// Plain Adam with PyTorch's defaults (β 0.9, 0.999; ε 1e-8): pretraining's and the
    /// DiMRA attacker's optimizer.
    pub fn adam() -> Self {
        Self::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }

    /// A fresh optimizer (no moments yet).
    pub fn init(&self) -> ModuleOptimizer {
        match *self {
            Self::AdamW {
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
            Self::Adam {
                beta1,
                beta2,
                epsilon,
            } => AdamConfig::new()
                .with_beta_1(beta1)
                .with_beta_2(beta2)
                .with_epsilon(epsilon)
                .init(),
        }
    }
}
