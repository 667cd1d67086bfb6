//! How big each experiment of `lethe reproduce` is: the one place its numbers live.

use std::path::PathBuf;

use serde::Serialize;

/// `quick` (about 20 minutes on 2 CPU cores: provisional verdicts), `full` (the figures
/// README quotes: hours on a CPU), `tiny` (seconds: the pipeline's own test, on a tiny model;
/// its verdicts mean nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Quick,
    Full,
    Tiny,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Full => "full",
            Self::Tiny => "tiny",
        }
    }

    /// What the preset's verdicts are worth, said at the top of its report.
    pub fn caveat(self) -> &'static str {
        match self {
            Self::Quick => {
                "quick preset: short runs judged on few samples — every verdict here is provisional; `--preset full` gives the figures README quotes"
            }
            Self::Full => "full preset",
            Self::Tiny => {
                "tiny preset: a pipeline test on a few steps of a tiny model — its verdicts mean nothing about the papers"
            }
        }
    }

    pub fn settings(self) -> Settings {
        match self {
            Self::Quick => Settings {
                seeds: 3,
                batch_size: 16,
                samples: 40,
                sampler_steps: 20,
                siss_lambdas: vec![0.5],
                tshirt_steps: 30,
                class_steps: 30,
                class_neggrad: false,
                vdu_steps: 25,
                vdu_gammas: vec![10.0],
                attack_steps: 40,
                attack_every: 40,
                retrain_steps: None,
                elbo_timesteps: 0,
                guidance: 2.0,
                checkpoint: PathBuf::from(crate::data::demo::DEMO_CHECKPOINT),
            },
            Self::Full => Settings {
                seeds: 3,
                batch_size: 32,
                samples: 256,
                sampler_steps: 50,
                siss_lambdas: vec![0.0, 0.25, 0.5, 0.75, 1.0],
                tshirt_steps: 300,
                class_steps: 300,
                class_neggrad: true,
                vdu_steps: 100,
                vdu_gammas: vec![10.0, 0.1, 1.0, 100.0],
                attack_steps: 2000,
                attack_every: 250,
                retrain_steps: Some(6000),
                elbo_timesteps: 0,
                guidance: 2.0,
                checkpoint: PathBuf::from(crate::data::demo::DEMO_CHECKPOINT),
            },
            Self::Tiny => Settings {
                seeds: 3,
                batch_size: 4,
                samples: 8,
                sampler_steps: 2,
                siss_lambdas: vec![0.5],
                tshirt_steps: 2,
                class_steps: 2,
                class_neggrad: true,
                vdu_steps: 2,
                vdu_gammas: vec![10.0, 1.0],
                attack_steps: 2,
                attack_every: 1,
                retrain_steps: Some(2),
                elbo_timesteps: 0,
                guidance: 2.0,
                checkpoint: PathBuf::from(crate::data::demo::DEMO_CHECKPOINT),
            },
        }
    }
}

/// The sizes of one reproduction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Training seeds per arm; seed s also seeds its evaluations (so the interval covers
    /// sampling noise too), and every arm uses the same seeds (paired comparisons).
    pub seeds: usize,
    pub batch_size: usize,
    /// Samples per evaluation, under each sampler.
    pub samples: usize,
    /// Denoising steps of both samplers (DDIM and DDPM).
    pub sampler_steps: usize,
    /// SISS's λ sweep (the T-shirt).
    pub siss_lambdas: Vec<f64>,
    /// Steps of every T-shirt run (SISS, naive deletion, NegGrad).
    pub tshirt_steps: usize,
    /// Steps of every class-7 unlearning run (EraseDiff, DiMUM, NegGrad).
    pub class_steps: usize,
    /// Whether NegGrad unlearns the 7 too (a third DiMRA target).
    pub class_neggrad: bool,
    pub vdu_steps: usize,
    /// VDU's γ values; the first is the one reported as the paper's (Lethe's default: the
    /// paper publishes none).
    pub vdu_gammas: Vec<f32>,
    pub attack_steps: usize,
    /// The attack's probes (and checkpoints) every this many steps.
    pub attack_every: usize,
    /// Retrain from scratch on the retain set for this many steps (the T-shirt's reference).
    pub retrain_steps: Option<usize>,
    /// Network evaluations per image for the ELBO (0 = none).
    pub elbo_timesteps: usize,
    /// The class setting's guidance weight (the guidance check's choice on the demo model).
    pub guidance: f32,
    /// The model every experiment starts from.
    pub checkpoint: PathBuf,
}
