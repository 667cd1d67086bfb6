//! Reproducible sampling: DDPM ancestral, DDIM and DPM-Solver++(2M), with classifier-free
//! guidance.
//!
//! All randomness comes from a per-sample ChaCha stream on the host: sample `i` of seed
//! `s` draws its `x_T` and every step's noise from stream `i` of seed `s`. The same seed
//! therefore gives the same images whatever the batch size, the backend or the model —
//! which is what makes before/after grids comparable — and the first 16 samples of a
//! 512-sample run are the 16-sample grid.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use super::dpm_solver::DpmSolver2M;
use super::schedule::NoiseSchedule;
use super::unet::UNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    Ddpm,
    Ddim,
    /// DPM-Solver++(2M), diffusers' `DPMSolverMultistepScheduler` defaults (`dpm_solver.rs`):
    /// 10–20 steps for what DDIM needs ~50 for.
    #[serde(rename = "dpm++2m")]
    #[value(name = "dpm++2m")]
    DpmSolver2M,
}

/// Which noise prediction a DDIM step continues with once it has clipped x̂0 (models with
/// `clip_sample`) — diffusers' `use_clipped_model_output`.
///
/// Why it matters: with guidance, `x̂0 = x̂0(c) + w·(x̂0(c) − x̂0(null))` overshoots the data
/// range wherever the branches differ. Keeping the model's ε after clipping x̂0 puts the
/// clipped-away part back into `x_{t−1}` through DDIM's direction term, step after step. On
/// MNIST-like data, whose background sits exactly at the clip bound −1, that drift brightens
/// every guided trajectory until it ends in the brightest mode the model knows (the demo
/// model's memorised T-shirt: 0% of the requested digit at w = 2 with `Keep`, 100% with
/// `Rederive`; docs/metrics.md, *Guidance*). GLIDE re-derives ε from the clipped x̂0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClippedEps {
    /// Re-derive ε from the clipped x̂0 when guidance is on (GLIDE's rule); keep the model's
    /// ε otherwise, which is diffusers' default sampler exactly.
    #[default]
    Auto,
    /// Always re-derive ε from the clipped x̂0 (`use_clipped_model_output=True`).
    Rederive,
    /// Always keep the model's ε (diffusers' default, `use_clipped_model_output=False`).
    Keep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerSpec {
    pub kind: SamplerKind,
    /// Number of denoising steps (DDPM with fewer than T steps uses diffusers' strided steps).
    pub steps: usize,
    /// DDIM stochasticity (0 = deterministic).
    pub eta: f32,
    /// Class to condition on; `None` samples unconditionally (the null class of a
    /// class-conditional model).
    pub class: Option<usize>,
    /// Guidance weight `w` in `(1 + w)·eps(c) − w·eps(null)`; 0 = plain conditional.
    pub guidance: f32,
    /// DDIM only: the ε a step continues with after clipping x̂0.
    #[serde(default)]
    pub clipped_eps: ClippedEps,
}

impl SamplerSpec {
    pub fn ddim(steps: usize) -> Self {
        Self::new(SamplerKind::Ddim, steps)
    }

    /// Unconditional, deterministic (η = 0) sampling with `kind` in `steps` steps.
    pub fn new(kind: SamplerKind, steps: usize) -> Self {
        Self {
            kind,
            steps,
            eta: 0.0,
            class: None,
            guidance: 0.0,
            clipped_eps: ClippedEps::Auto,
        }
    }

    /// Whether guidance is on: a class and a non-zero weight.
    pub fn guided(&self) -> bool {
        self.class.is_some() && self.guidance != 0.0
    }

    /// Whether DDIM steps re-derive ε from the clipped x̂0 (see [`ClippedEps`]).
    pub fn rederives_eps(&self) -> bool {
        self.kind == SamplerKind::Ddim
            && match self.clipped_eps {
                ClippedEps::Auto => self.guided(),
                ClippedEps::Rederive => true,
                ClippedEps::Keep => false,
            }
    }

    /// How the samples were drawn, for provenance labels (e.g. `DDIM-50`).
    pub fn label(&self) -> String {
        let kind = match self.kind {
            SamplerKind::Ddpm => "DDPM",
            SamplerKind::Ddim => "DDIM",
            SamplerKind::DpmSolver2M => "DPM++2M",
        };
        let mut s = format!("{kind}-{}", self.steps);
        if self.kind == SamplerKind::Ddim && self.eta > 0.0 {
            s += &format!(",eta={}", self.eta);
        }
        match self.class {
            Some(c) if self.guidance != 0.0 => s += &format!(",class={c},w={}", self.guidance),
            Some(c) => s += &format!(",class={c}"),
            None => s += ",uncond",
        }
        // Only a departure from `Auto` (re-derived ε exactly when guided) is named.
        if self.kind == SamplerKind::Ddim {
            match (self.rederives_eps(), self.guided()) {
                (true, false) => s += ",clipped-eps",
                (false, true) => s += ",model-eps",
                _ => {}
            }
        }
        s
    }
}

/// One independent, seekable noise stream per sample.
pub struct NoiseStreams {
    rngs: Vec<ChaCha8Rng>,
    numel: usize,
}

impl NoiseStreams {
    pub fn new(seed: u64, first_sample: usize, count: usize, numel: usize) -> Self {
        let rngs = (first_sample..first_sample + count)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(i as u64);
                rng
            })
            .collect();
        Self { rngs, numel }
    }

    /// Next standard-normal draw for every sample, as `[count, c, h, w]`.
    pub fn next(&mut self, shape: [usize; 3], device: &Device) -> Tensor<4> {
        let mut values = Vec::with_capacity(self.rngs.len() * self.numel);
        for rng in &mut self.rngs {
            values
                .extend((0..self.numel).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)));
        }
        let [c, h, w] = shape;
        Tensor::from_data(TensorData::new(values, [self.rngs.len(), c, h, w]), device)
    }
}

/// Class labels for a batch: the condition, and the null class when guidance is on.
/// `None` for a model without class embedding.
type ClassInputs = Option<(Tensor<1, Int>, Option<Tensor<1, Int>>)>;

/// Samples per forward pass where a caller has no reason to choose (evaluations, exports).
pub const SAMPLE_BATCH: usize = 64;

/// Everything fixed about one sampling job.
pub struct SampleJob<'a> {
    pub model: &'a UNet,
    pub schedule: &'a NoiseSchedule,
    pub spec: &'a SamplerSpec,
    /// `[channels, height, width]`
    pub shape: [usize; 3],
    pub null_class: Option<usize>,
    pub device: &'a Device,
}

impl SampleJob<'_> {
    /// How these samples are drawn, for provenance: the sampler's label, and the model's
    /// compute precision when it is not f32 (`DDIM-50,uncond,bf16`).
    pub fn label(&self) -> String {
        self.model.precision.tag(self.spec.label())
    }

    /// Samples `count` images starting at sample index `first` of `seed`; values in [-1, 1]
    /// (clamped), shape `[count, c, h, w]`. `on_step` is called after each denoising step.
    pub fn run(
        &self,
        seed: u64,
        first: usize,
        count: usize,
        mut on_step: impl FnMut(usize, usize),
    ) -> Result<Tensor<4>, String> {
        let mut solver = match self.spec.kind {
            SamplerKind::DpmSolver2M => Some(DpmSolver2M::new(self.schedule, self.spec.steps)?),
            _ => None,
        };
        let timesteps = match &solver {
            Some(solver) => solver.timesteps().to_vec(),
            None => self.schedule.inference_timesteps(self.spec.steps)?,
        };
        let classes = self.class_inputs(count)?;
        let numel = self.shape.iter().product();
        let mut noise = NoiseStreams::new(seed, first, count, numel);
        let mut x = noise.next(self.shape, self.device);
        let total = timesteps.len();
        for (i, &t) in timesteps.iter().enumerate() {
            let prev_t = timesteps.get(i + 1).map_or(-1, |&p| p as i64);
            let eps = self.guided_eps(x.clone(), t, count, &classes);
            x = match self.spec.kind {
                SamplerKind::Ddpm => {
                    let z = noise.next(self.shape, self.device);
                    self.schedule.ddpm_step(eps, t, prev_t, x, z)
                }
                SamplerKind::Ddim => {
                    let z = if self.spec.eta > 0.0 {
                        noise.next(self.shape, self.device)
                    } else {
                        x.zeros_like()
                    };
                    let rederive = self.spec.rederives_eps();
                    self.schedule
                        .ddim_step(eps, t, prev_t, x, self.spec.eta, z, rederive)
                }
                SamplerKind::DpmSolver2M => solver
                    .as_mut()
                    .expect("the solver exists for its sampler kind")
                    .step(eps, x),
            };
            on_step(i + 1, total);
        }
        Ok(x.clamp(-1.0, 1.0))
    }

    /// Samples `n` images of `seed` in batches of at most `batch`, values in [0, 1]. Sample
    /// `i` is the same whatever `n` and `batch` are (each sample has its own noise stream).
    /// `on_progress(done)` is called after every denoising step with the image-steps done so
    /// far (of `n × steps`).
    pub fn run_batched(
        &self,
        seed: u64,
        n: usize,
        batch: usize,
        mut on_progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>, String> {
        let batch = batch.max(1);
        let mut all = Vec::with_capacity(n);
        while all.len() < n {
            let first = all.len();
            let count = batch.min(n - first);
            let done_before = first * self.spec.steps;
            let x = self.run(seed, first, count, |i, _| {
                on_progress(done_before + i * count)
            })?;
            all.extend(crate::images::to_unit_floats(x).0);
        }
        Ok(all)
    }

    /// (conditional classes, null classes) as index tensors, or `None` for a model without
    /// class embedding.
    fn class_inputs(&self, count: usize) -> Result<ClassInputs, String> {
        if !self.model.has_class_embedding() {
            if self.spec.class.is_some() {
                return Err(
                    "this model is unconditional; --class needs a class-conditional checkpoint"
                        .into(),
                );
            }
            return Ok(None);
        }
        let null = self.null_class;
        let cond = match (self.spec.class, null) {
            (Some(c), _) => c,
            (None, Some(n)) => n,
            (None, None) => {
                return Err(
                    "this model is class-conditional without a null class: choose --class".into(),
                );
            }
        };
        let ints = |c: usize| {
            Tensor::<1, Int>::from_data(
                TensorData::new(vec![c as i64; count], [count]),
                self.device,
            )
        };
        let guided = self.spec.guided();
        let null_tensor = match (guided, null) {
            (true, Some(n)) => Some(ints(n)),
            (true, None) => {
                return Err(
                    "guidance needs a model trained with a null class (lethe_null_class)".into(),
                );
            }
            (false, _) => None,
        };
        Ok(Some((ints(cond), null_tensor)))
    }

    fn guided_eps(&self, x: Tensor<4>, t: usize, count: usize, classes: &ClassInputs) -> Tensor<4> {
        match classes {
            None => self.model.forward(x, self.timestep_tensor(t, count), None),
            Some((cond, None)) => {
                self.model
                    .forward(x, self.timestep_tensor(t, count), Some(cond.clone()))
            }
            Some((cond, Some(null))) => {
                // One forward over [x; x] with [c; null], split afterwards.
                let both = Tensor::cat(vec![x.clone(), x], 0);
                let labels = Tensor::cat(vec![cond.clone(), null.clone()], 0);
                let eps =
                    self.model
                        .forward(both, self.timestep_tensor(t, 2 * count), Some(labels));
                let eps_c = eps.clone().narrow(0, 0, count);
                let eps_u = eps.narrow(0, count, count);
                let w = self.spec.guidance;
                eps_c * (1.0 + w) - eps_u * w
            }
        }
    }

    fn timestep_tensor(&self, t: usize, count: usize) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![t as f32; count], [count]), self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guided_ddim_rederives_eps_by_default_and_labels_only_departures() {
        let plain = SamplerSpec::ddim(50);
        assert!(!plain.rederives_eps());
        assert_eq!(plain.label(), "DDIM-50,uncond");
        let guided = SamplerSpec {
            class: Some(7),
            guidance: 2.0,
            ..SamplerSpec::ddim(50)
        };
        assert!(guided.rederives_eps());
        assert_eq!(guided.label(), "DDIM-50,class=7,w=2");
        let kept = SamplerSpec {
            clipped_eps: ClippedEps::Keep,
            ..guided.clone()
        };
        assert!(!kept.rederives_eps());
        assert_eq!(kept.label(), "DDIM-50,class=7,w=2,model-eps");
        let forced = SamplerSpec {
            clipped_eps: ClippedEps::Rederive,
            ..SamplerSpec::ddim(50)
        };
        assert_eq!(forced.label(), "DDIM-50,uncond,clipped-eps");
        let ddpm = SamplerSpec {
            kind: SamplerKind::Ddpm,
            ..guided
        };
        assert!(
            !ddpm.rederives_eps(),
            "DDPM's posterior mean already uses the clipped x̂0"
        );
    }
}
