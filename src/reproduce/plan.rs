//! What `lethe reproduce` runs, derived from a preset: four sweeps of ordinary runs built from
//! the bundled examples (so every knob not named here is the example's), and the DDPM
//! evaluations (`lethe eval`) that state each forgetting figure under a stochastic sampler
//! beside the runs' own DDIM one.
//!
//! ```text
//! OUT/tshirt/    SISS (λ sweep), naive deletion, NegGrad [, retrain] on the memorised T-shirt
//! OUT/class-7/   EraseDiff, DiMUM [, NegGrad] forgetting the digit 7 (class setting)
//! OUT/digit-1/   VDU (γ values) and NegGrad forgetting the digit 1, unconditional, forget data only
//! OUT/dimra/     the DiMRA attack on every class-7 result
//! OUT/ddpm/      `lethe eval --sampler ddpm` of the original and every result, as JSON
//! OUT/data/digit-1/  the bundled MNIST's 1s as PNGs (VDU's forget set)
//! ```
//!
//! Each sweep directory works with `lethe sweep run|status|collect` and the compare view.
//! Every arm uses the same seeds, and seed s seeds both training and evaluation, so arms are
//! compared seed by seed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::preset::{Preset, Settings};
use crate::attack::dimra::AttackConfig;
use crate::diffusion::sampler::SamplerKind;
use crate::experiment::ExperimentConfig;
use crate::sweep::{Expanded, Override, Trial};
use crate::unlearn::MethodConfig;
use crate::unlearn::neggrad::NegGradConfig;

/// The examples every experiment starts from (run from the checkout's root).
pub const SISS_EXAMPLE: &str = "examples/unlearn-siss.toml";
pub const FINETUNE_EXAMPLE: &str = "examples/unlearn-finetune.toml";
pub const NEGGRAD_EXAMPLE: &str = "examples/unlearn-neggrad.toml";
pub const RETRAIN_EXAMPLE: &str = "examples/unlearn-retrain.toml";
pub const ERASEDIFF_EXAMPLE: &str = "examples/unlearn-class-erasediff.toml";
pub const DIMUM_EXAMPLE: &str = "examples/unlearn-class-dimum.toml";
pub const VDU_EXAMPLE: &str = "examples/unlearn-vdu.toml";
pub const ATTACK_EXAMPLE: &str = "examples/attack-dimra.toml";

/// The class the class-setting claims forget, and the one VDU's forgets.
pub const FORGOTTEN_DIGIT: usize = 7;
pub const VDU_DIGIT: usize = 1;

/// A claim of one of the seed papers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    Siss,
    Erasediff,
    Vdu,
    Dimra,
}

impl Claim {
    pub const ALL: [Claim; 4] = [Self::Siss, Self::Erasediff, Self::Vdu, Self::Dimra];

    pub fn title(self) -> &'static str {
        match self {
            Self::Siss => "SISS: on the Pareto front against naive deletion and NegGrad",
            Self::Erasediff => "EraseDiff: the forgotten class fades at a small quality cost",
            Self::Vdu => "VDU in its own setting: forgetting a digit with forget data only",
            Self::Dimra => "DiMRA vs DiMUM: relearning reverses fine-tuning-based unlearning",
        }
    }

    /// The sweeps its verdicts read.
    pub fn stages(self) -> &'static [Stage] {
        match self {
            Self::Siss => &[Stage::Tshirt],
            Self::Erasediff => &[Stage::Class7],
            Self::Vdu => &[Stage::Digit1],
            Self::Dimra => &[Stage::Class7, Stage::Dimra],
        }
    }
}

/// One sweep of the reproduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Stage {
    Tshirt,
    Class7,
    Digit1,
    Dimra,
}

impl Stage {
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Tshirt => "tshirt",
            Self::Class7 => "class-7",
            Self::Digit1 => "digit-1",
            Self::Dimra => "dimra",
        }
    }

    /// What its models are asked to forget (and so how they are judged).
    pub fn setting(self) -> Setting {
        match self {
            Self::Tshirt => Setting::Tshirt,
            Self::Class7 | Self::Dimra => Setting::Class7,
            Self::Digit1 => Setting::Digit1,
        }
    }
}

/// What is forgotten, which decides how a model is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Setting {
    /// The memorised T-shirt: unconditional samples, copy rate.
    Tshirt,
    /// The digit 7, class setting: guided class-7 samples, P(y = 7).
    Class7,
    /// The digit 1 forgotten from the unconditional branch: unconditional samples, the
    /// share classified 1.
    Digit1,
}

impl Setting {
    pub fn slug(self) -> &'static str {
        match self {
            Self::Tshirt => "tshirt",
            Self::Class7 => "class-7",
            Self::Digit1 => "digit-1",
        }
    }
}

/// One trial's place in a claim: its arm (`siss-lambda0.5`) and seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialKey {
    pub arm: String,
    /// The arm as the report names it (`SISS λ = 0.5`).
    pub label: String,
    pub seed: u64,
}

/// A sweep of the reproduction: its trials, and each trial's key (same order).
#[derive(Debug, Clone)]
pub struct StagePlan {
    pub stage: Stage,
    pub expanded: Expanded,
    pub keys: Vec<TrialKey>,
}

impl StagePlan {
    pub fn dir(&self) -> &Path {
        &self.expanded.dir
    }

    /// The trial of `arm` with `seed`.
    pub fn find(&self, arm: &str, seed: u64) -> Option<&Trial> {
        self.keys
            .iter()
            .position(|k| k.arm == arm && k.seed == seed)
            .map(|i| &self.expanded.trials[i])
    }

    /// The arms in plan order, each once: (key, label).
    pub fn arms(&self) -> Vec<(String, String)> {
        let mut arms: Vec<(String, String)> = Vec::new();
        for k in &self.keys {
            if !arms.iter().any(|(a, _)| a == &k.arm) {
                arms.push((k.arm.clone(), k.label.clone()));
            }
        }
        arms
    }
}

/// A DDPM evaluation of one model (`lethe eval … --json OUT/ddpm/<name>.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub name: String,
    pub checkpoint: PathBuf,
    pub setting: Setting,
    pub seed: u64,
}

impl Judgement {
    /// The original model's, per setting and seed.
    pub fn original_name(setting: Setting, seed: u64) -> String {
        format!("original-{}-seed{seed}", setting.slug())
    }

    /// A run's final checkpoint's.
    pub fn run_name(stage: Stage, trial: &str) -> String {
        format!("{}-{trial}", stage.dir_name())
    }

    pub fn json_path(&self, out: &Path) -> PathBuf {
        out.join("ddpm").join(format!("{}.json", self.name))
    }

    /// The `lethe eval` arguments (after `eval`) that make it.
    pub fn args(&self, out: &Path, settings: &Settings) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--checkpoint".into(),
            self.checkpoint.display().to_string(),
            "--retain".into(),
            crate::data::demo::MNIST_IMAGES.into(),
        ];
        let data: Vec<String> = match self.setting {
            Setting::Tshirt => vec![
                "--forget".into(),
                crate::data::demo::MEMORISED_TSHIRT.into(),
                "--forget-label".into(),
                crate::data::demo::TSHIRT_LABEL.to_string(),
            ],
            Setting::Class7 => vec![
                "--forget-class".into(),
                FORGOTTEN_DIGIT.to_string(),
                "--guidance".into(),
                settings.guidance.to_string(),
            ],
            Setting::Digit1 => vec![
                "--forget".into(),
                digit_folder(out).display().to_string(),
                "--forget-label".into(),
                VDU_DIGIT.to_string(),
            ],
        };
        args.extend(data);
        for (flag, value) in [
            ("--preset", "fast".to_string()),
            ("--samples", settings.samples.to_string()),
            ("--sampler", "ddpm".to_string()),
            ("--steps", settings.sampler_steps.to_string()),
            ("--elbo-timesteps", settings.elbo_timesteps.to_string()),
            ("--seed", self.seed.to_string()),
            ("--json", self.json_path(out).display().to_string()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args
    }
}

/// Everything one reproduction runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub out: PathBuf,
    pub preset: Preset,
    pub settings: Settings,
    pub claims: Vec<Claim>,
    pub stages: Vec<StagePlan>,
    pub judgements: Vec<Judgement>,
}

impl Plan {
    /// The plan for `claims` under `settings`, into `out`. Reads the examples (run from
    /// the checkout's root).
    pub fn new(
        out: &Path,
        preset: Preset,
        settings: Settings,
        claims: &[Claim],
    ) -> Result<Self, String> {
        if !Path::new(SISS_EXAMPLE).is_file() {
            return Err(format!(
                "{SISS_EXAMPLE} is not here: run lethe reproduce from the root of a Lethe checkout (it starts from its examples/ and assets/)"
            ));
        }
        if settings.seeds == 0 {
            return Err("--seeds must be at least 1 (3 or more for a verdict)".into());
        }
        let mut stages: Vec<Stage> = Vec::new();
        for claim in claims {
            for stage in claim.stages() {
                if !stages.contains(stage) {
                    stages.push(*stage);
                }
            }
        }
        stages.sort_by_key(|s| *s as u8);
        let mut plans: Vec<StagePlan> = Vec::new();
        for stage in stages {
            let plan = match stage {
                Stage::Tshirt => tshirt(out, &settings)?,
                Stage::Class7 => class7(out, &settings)?,
                Stage::Digit1 => digit1(out, &settings)?,
                Stage::Dimra => {
                    let class7 = plans
                        .iter()
                        .find(|p| p.stage == Stage::Class7)
                        .ok_or("the attack needs the class-7 runs")?;
                    dimra(out, &settings, class7)?
                }
            };
            plans.push(plan);
        }
        let judgements = judgements(&plans, &settings);
        Ok(Self {
            out: out.to_path_buf(),
            preset,
            settings,
            claims: claims.to_vec(),
            stages: plans,
            judgements,
        })
    }

    pub fn stage(&self, stage: Stage) -> Option<&StagePlan> {
        self.stages.iter().find(|p| p.stage == stage)
    }

    pub fn seeds(&self) -> Vec<u64> {
        (0..self.settings.seeds as u64).collect()
    }

    /// Training steps of every trial (for the progress bar's ETA).
    pub fn total_steps(&self) -> usize {
        self.stages
            .iter()
            .flat_map(|s| &s.expanded.trials)
            .map(|t| t.config.train.steps)
            .sum()
    }
}

/// The folder of VDU's forget images.
pub fn digit_folder(out: &Path) -> PathBuf {
    out.join("data").join(format!("digit-{VDU_DIGIT}"))
}

fn load(path: &str) -> Result<ExperimentConfig, String> {
    ExperimentConfig::from_file(Path::new(path))
}

/// A builder of one stage's trials.
struct StageBuilder<'a> {
    stage: Stage,
    dir: PathBuf,
    settings: &'a Settings,
    trials: Vec<Trial>,
    keys: Vec<TrialKey>,
}

impl<'a> StageBuilder<'a> {
    fn new(out: &Path, stage: Stage, settings: &'a Settings) -> Self {
        Self {
            stage,
            dir: out.join(stage.dir_name()),
            settings,
            trials: vec![],
            keys: vec![],
        }
    }

    /// One trial per seed of `base` as `arm`, trained `steps` steps; `knob` names what the
    /// arm sets on top of its example (for `lethe sweep status`).
    fn arm(
        &mut self,
        arm: &str,
        label: &str,
        knob: Option<(&str, String)>,
        steps: usize,
        base: &ExperimentConfig,
    ) {
        for seed in 0..self.settings.seeds as u64 {
            let name = format!("{arm}-seed{seed}");
            let mut config = base.clone();
            config.header.checkpoint = self.settings.checkpoint.clone();
            self.fit(&mut config, &name, seed, steps);
            let mut overrides: Vec<Override> = knob
                .iter()
                .map(|(key, value)| Override {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect();
            overrides.push(Override {
                key: "train.seed".into(),
                value: seed.to_string(),
            });
            self.push(name, overrides, config, arm, label, seed);
        }
    }

    /// The preset's sizes, the stage's directory and the evaluation every claim reads: the
    /// result only, under DDIM, seeded like the training.
    fn fit(&self, config: &mut ExperimentConfig, name: &str, seed: u64, steps: usize) {
        let s = self.settings;
        config.header.runs_dir = self.dir.clone();
        config.header.name = Some(name.to_string());
        config.train.seed = seed;
        config.train.steps = steps;
        config.train.batch_size = s.batch_size;
        let eval = &mut config.eval;
        eval.every = 0;
        eval.at_end = true;
        eval.samples = Some(s.samples);
        eval.sampler = Some(SamplerKind::Ddim);
        eval.sampler_steps = Some(s.sampler_steps);
        eval.seed = seed;
        eval.grid = s.samples.min(16);
        eval.elbo_timesteps = s.elbo_timesteps;
        eval.preset = None;
        eval.checkpoint_every = 0;
        if self.stage.setting() == Setting::Class7 {
            eval.guidance = Some(s.guidance);
        }
    }

    fn push(
        &mut self,
        name: String,
        overrides: Vec<Override>,
        config: ExperimentConfig,
        arm: &str,
        label: &str,
        seed: u64,
    ) {
        self.trials.push(Trial {
            index: self.trials.len(),
            name,
            overrides,
            config,
        });
        self.keys.push(TrialKey {
            arm: arm.into(),
            label: label.into(),
            seed,
        });
    }

    fn build(self) -> StagePlan {
        StagePlan {
            stage: self.stage,
            expanded: Expanded {
                dir: self.dir,
                trials: self.trials,
            },
            keys: self.keys,
        }
    }
}

fn tshirt(out: &Path, s: &Settings) -> Result<StagePlan, String> {
    let mut b = StageBuilder::new(out, Stage::Tshirt, s);
    let siss = load(SISS_EXAMPLE)?;
    for lambda in &s.siss_lambdas {
        let mut config = siss.clone();
        if let MethodConfig::Siss(c) = &mut config.method {
            c.lambda = *lambda;
        }
        b.arm(
            &format!("siss-lambda{lambda}"),
            &format!("SISS λ = {lambda}"),
            Some(("method.lambda", lambda.to_string())),
            s.tshirt_steps,
            &config,
        );
    }
    let finetune = load(FINETUNE_EXAMPLE)?;
    b.arm(
        "finetune",
        "naive deletion",
        None,
        s.tshirt_steps,
        &finetune,
    );
    let neggrad = load(NEGGRAD_EXAMPLE)?;
    b.arm("neggrad", "NegGrad", None, s.tshirt_steps, &neggrad);
    if let Some(steps) = s.retrain_steps {
        let retrain = load(RETRAIN_EXAMPLE)?;
        b.arm("retrain", "retrain from scratch", None, steps, &retrain);
    }
    Ok(b.build())
}

fn class7(out: &Path, s: &Settings) -> Result<StagePlan, String> {
    let mut b = StageBuilder::new(out, Stage::Class7, s);
    let erasediff = load(ERASEDIFF_EXAMPLE)?;
    b.arm("erasediff", "EraseDiff", None, s.class_steps, &erasediff);
    let dimum = load(DIMUM_EXAMPLE)?;
    b.arm("dimum", "DiMUM", None, s.class_steps, &dimum);
    if s.class_neggrad {
        // NegGrad on the 7s with EraseDiff's optimiser and data: the plain fine-tuning-based
        // ascent DiMRA's paper attacks.
        let mut neggrad = erasediff.clone();
        neggrad.method = MethodConfig::NegGrad(NegGradConfig::default());
        b.arm(
            "neggrad",
            "NegGrad",
            Some(("method.name", "neg-grad".into())),
            s.class_steps,
            &neggrad,
        );
    }
    Ok(b.build())
}

/// VDU's own setting: the digit 1 forgotten from the unconditional branch (every forget
/// batch at the null class) with forget data only; the retain set is only the quality
/// metrics' reference.
fn digit1(out: &Path, s: &Settings) -> Result<StagePlan, String> {
    let mut b = StageBuilder::new(out, Stage::Digit1, s);
    let into_setting = |mut c: ExperimentConfig| {
        c.data.forget = vec![digit_folder(out)];
        c.data.forget_label = Some(VDU_DIGIT);
        c.data.forget_class = None;
        c.train.cond_drop_prob = 1.0;
        c
    };
    let vdu = into_setting(load(VDU_EXAMPLE)?);
    for gamma in &s.vdu_gammas {
        let mut config = vdu.clone();
        if let MethodConfig::Vdu(c) = &mut config.method {
            c.gamma = *gamma;
        }
        b.arm(
            &format!("vdu-gamma{gamma}"),
            &format!("VDU γ = {gamma}"),
            Some(("method.gamma", gamma.to_string())),
            s.vdu_steps,
            &config,
        );
    }
    let neggrad = into_setting(load(NEGGRAD_EXAMPLE)?);
    b.arm("neggrad", "NegGrad", None, s.vdu_steps, &neggrad);
    Ok(b.build())
}

/// DiMRA on every class-7 result: the example's attack, from that trial's final checkpoint,
/// seeded like it.
fn dimra(out: &Path, s: &Settings, class7: &StagePlan) -> Result<StagePlan, String> {
    let mut b = StageBuilder::new(out, Stage::Dimra, s);
    let base = AttackConfig::from_file(Path::new(ATTACK_EXAMPLE))?;
    for (trial, key) in class7.expanded.trials.iter().zip(&class7.keys) {
        let mut attack = base.clone();
        attack.header.checkpoint = class7.dir().join(&trial.name).join("checkpoints/final");
        attack.steps = s.attack_steps;
        attack.evaluate_every = s.attack_every;
        attack.seed = key.seed;
        attack.batch_size = s.batch_size;
        let mut config = attack.to_experiment();
        let name = format!("dimra-{}", trial.name);
        let steps = config.train.steps;
        b.fit(&mut config, &name, key.seed, steps);
        // The attack's curve: probes along it, and its checkpoints.
        config.eval.every = s.attack_every;
        config.eval.checkpoint_every = s.attack_every;
        let overrides = vec![
            Override {
                key: "checkpoint".into(),
                value: attack.header.checkpoint.display().to_string(),
            },
            Override {
                key: "train.seed".into(),
                value: key.seed.to_string(),
            },
        ];
        b.push(
            name,
            overrides,
            config,
            &key.arm,
            &format!("DiMRA on {}", key.label),
            key.seed,
        );
    }
    Ok(b.build())
}

/// The DDPM evaluations: the original per setting and seed, and every run's result.
fn judgements(plans: &[StagePlan], s: &Settings) -> Vec<Judgement> {
    let mut out: Vec<Judgement> = Vec::new();
    let mut settings: Vec<Setting> = Vec::new();
    for plan in plans {
        if !settings.contains(&plan.stage.setting()) {
            settings.push(plan.stage.setting());
        }
    }
    for setting in settings {
        for seed in 0..s.seeds as u64 {
            out.push(Judgement {
                name: Judgement::original_name(setting, seed),
                checkpoint: s.checkpoint.clone(),
                setting,
                seed,
            });
        }
    }
    for plan in plans {
        for (trial, key) in plan.expanded.trials.iter().zip(&plan.keys) {
            out.push(Judgement {
                name: Judgement::run_name(plan.stage, &trial.name),
                checkpoint: plan.dir().join(&trial.name).join("checkpoints/final"),
                setting: plan.stage.setting(),
                seed: key.seed,
            });
        }
    }
    out
}
