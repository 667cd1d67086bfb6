//! The step machinery every method shares: drawing batches, noising, implied-noise targets,
//! conditioning and loss reductions (batches of clean images come from [`crate::train::batch`]).
//! Methods compose these; none re-implements them.

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::ImageSet;
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::unet::UNet;
use crate::train::grads::{GradVec, Layout};
use crate::train::memory::PeakMemory;

/// Methods draw their clean batches with the trainers' one batch builder.
pub use crate::train::batch::{Clean, draw};

/// How a per-pixel squared error becomes a scalar loss. Relative weights (λ, α, β, the
/// superfactor) were tuned for one reduction, so it is part of every config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Summed over pixels, averaged over the batch (SISS's deletion loop).
    #[default]
    SumPerImage,
    /// Averaged over pixels and batch (`F.mse_loss`; EraseDiff, diffusers).
    Mean,
}

/// How training timesteps are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSampling {
    /// `t ~ U{t_min..t_max}` independently per image.
    #[default]
    Uniform,
    /// Half the batch draws `t`, the other half uses `t_max + t_min − t` (SA/EraseDiff code).
    Antithetic,
}

/// The data of one unlearning run.
pub struct UnlearnData {
    /// `X \ A`: what the model should keep.
    pub retain: ImageSet,
    /// `A`: what it should forget.
    pub forget: ImageSet,
    /// DiMUM's alternative data (relabelled as the forgotten condition).
    pub substitute: Option<ImageSet>,
}

/// Class conditioning of the model being unlearned.
#[derive(Debug, Clone, Copy)]
pub struct Conditioning {
    /// `None` for an unconditional model.
    pub null_class: Option<usize>,
    pub class_conditional: bool,
    /// Probability of feeding the null class instead of an image's label, so both the
    /// conditional and the unconditional (guidance) branch learn the change.
    pub drop_prob: f64,
}

/// Everything a method may read during one step.
pub struct StepContext<'a> {
    pub model: &'a UNet,
    pub layout: &'a Layout,
    pub schedule: &'a NoiseSchedule,
    pub data: &'a UnlearnData,
    pub cond: Conditioning,
    pub batch_size: usize,
    /// Images per forward/backward pass: a batch is split into micro-batches of at most
    /// this many (`train.grad_accumulation`) whose gradients add up to the batch's.
    pub micro_batch: usize,
    pub reduction: Reduction,
    pub timesteps: TimestepSampling,
    /// Inclusive range of training timesteps.
    pub t_range: (usize, usize),
    pub rng: &'a mut ChaCha8Rng,
    pub device: &'a Device,
    pub step: usize,
    pub learning_rate: f64,
    /// Where the run's peak memory is noted (after every micro-batch's forward pass).
    pub memory: &'a PeakMemory,
}

impl StepContext<'_> {
    /// The value of `loss(batch)` and the gradient of `scale · loss(batch)` on the step's
    /// model, one micro-batch at a time.
    pub fn loss_and_grad(&self, batch: &NoisedBatch, scale: f32) -> (f32, GradVec) {
        batch.loss_and_grad(
            self.model,
            self.layout,
            self.reduction,
            self.passes(),
            scale,
        )
    }

    /// How this step splits its batches into passes.
    pub fn passes(&self) -> Passes<'_> {
        Passes {
            micro_batch: self.micro_batch,
            memory: self.memory,
            device: self.device,
        }
    }
}

/// How a batch is split into forward/backward passes, and where their memory is noted.
#[derive(Clone, Copy)]
pub struct Passes<'a> {
    pub micro_batch: usize,
    pub memory: &'a PeakMemory,
    pub device: &'a Device,
}

impl Passes<'_> {
    /// The image ranges of a batch of `len`: consecutive micro-batches of `micro_batch`
    /// (the last one smaller when it does not divide).
    pub fn ranges(&self, len: usize) -> Vec<Range<usize>> {
        let size = self.micro_batch.max(1);
        (0..len.div_ceil(size))
            .map(|i| i * size..((i + 1) * size).min(len))
            .collect()
    }
}

/// `Σ_i coefficients[i] · term_i` over one batch and its gradient, built one micro-batch at
/// a time so that only one micro-batch's autodiff graph is alive (gradient accumulation).
/// `terms(range)` gives each term's share from the images in `range`, *already divided by
/// the whole batch's size*: the shares then add up to the whole batch's terms and their
/// gradients to its gradient, exactly up to float summation order. Returns each term's
/// value over the whole batch and the gradient.
pub fn accumulate(
    model: &UNet,
    layout: &Layout,
    len: usize,
    passes: Passes<'_>,
    coefficients: &[f32],
    mut terms: impl FnMut(Range<usize>) -> Vec<Tensor<1>>,
) -> (Vec<f32>, GradVec) {
    let mut values = vec![0.0f32; coefficients.len()];
    let mut grad: Option<GradVec> = None;
    for range in passes.ranges(len) {
        let parts = terms(range);
        passes.memory.sample(passes.device);
        let mut objective: Option<Tensor<1>> = None;
        for ((part, &c), v) in parts.into_iter().zip(coefficients).zip(&mut values) {
            *v += value(&part);
            let weighted = part * c;
            objective = Some(match objective {
                Some(o) => o + weighted,
                None => weighted,
            });
        }
        let objective = objective.expect("at least one term");
        let g = GradVec::of_loss(objective, model, layout);
        grad = Some(match grad {
            Some(sum) => sum.plus(&g, 1.0),
            None => g,
        });
    }
    (values, grad.expect("a batch of at least one image"))
}

/// One batch's model inputs and regression targets, all drawn before any forward pass:
/// splitting it into micro-batches changes no random draw, so a run with gradient
/// accumulation follows the same random stream — and reaches the same weights — as one
/// without.
#[derive(Clone)]
pub struct NoisedBatch {
    pub xt: Tensor<4>,
    pub t: Tensor<1>,
    pub classes: Option<Tensor<1, Int>>,
    pub target: Tensor<4>,
    /// Per-image loss weights (SISS's importance weights); `None` = 1.
    pub weights: Option<Tensor<1>>,
}

impl NoisedBatch {
    pub fn len(&self) -> usize {
        self.xt.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The images in `range`.
    pub fn part(&self, range: Range<usize>) -> Self {
        let (start, n) = (range.start, range.len());
        Self {
            xt: self.xt.clone().narrow(0, start, n),
            t: self.t.clone().narrow(0, start, n),
            classes: self.classes.clone().map(|c| c.narrow(0, start, n)),
            target: self.target.clone().narrow(0, start, n),
            weights: self.weights.clone().map(|w| w.narrow(0, start, n)),
        }
    }

    /// The same inputs regressed onto another target with other weights (SISS's two terms
    /// share one mixture batch).
    pub fn with_target(&self, target: Tensor<4>, weights: Option<Tensor<1>>) -> Self {
        Self {
            target,
            weights,
            ..self.clone()
        }
    }

    /// The loss of `pred` (this batch's prediction) as a share of a batch of `batch_len`
    /// images.
    pub fn share_of(&self, pred: Tensor<4>, reduction: Reduction, batch_len: usize) -> Tensor<1> {
        let [_, c, h, w] = self.target.dims();
        reduce_over(
            per_image_sq_err(pred, self.target.clone()),
            self.weights.clone(),
            reduction,
            c * h * w,
            batch_len,
        )
    }

    /// `model`'s prediction for this batch.
    pub fn predict(&self, model: &UNet) -> Tensor<4> {
        model.forward(self.xt.clone(), self.t.clone(), self.classes.clone())
    }

    /// `model`'s prediction, detached, one micro-batch at a time (a target computed by the
    /// model itself).
    pub fn prediction(&self, model: &UNet, passes: Passes<'_>) -> Tensor<4> {
        let parts = passes
            .ranges(self.len())
            .into_iter()
            .map(|range| {
                let pred = self.part(range).predict(model).detach();
                passes.memory.sample(passes.device);
                pred
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    /// The loss on one forward pass of the whole batch, its graph kept.
    pub fn loss(&self, model: &UNet, reduction: Reduction) -> Tensor<1> {
        self.share_of(self.predict(model), reduction, self.len())
    }

    /// The loss's value alone, one micro-batch at a time (no graph kept).
    pub fn loss_value(&self, model: &UNet, reduction: Reduction, passes: Passes<'_>) -> f32 {
        let len = self.len();
        passes
            .ranges(len)
            .into_iter()
            .map(|range| {
                let part = self.part(range);
                let share = part.share_of(part.predict(model).detach(), reduction, len);
                passes.memory.sample(passes.device);
                value(&share)
            })
            .sum()
    }

    /// The value of the loss and the gradient of `scale · loss`, one micro-batch at a time.
    pub fn loss_and_grad(
        &self,
        model: &UNet,
        layout: &Layout,
        reduction: Reduction,
        passes: Passes<'_>,
        scale: f32,
    ) -> (f32, GradVec) {
        let len = self.len();
        let (values, grad) = accumulate(model, layout, len, passes, &[scale], |range| {
            let part = self.part(range);
            vec![part.share_of(part.predict(model), reduction, len)]
        });
        (values[0], grad)
    }
}

/// The plain DDPM regression of a clean batch: `x_t = γ_t x_0 + σ_t ε` onto `ε`, with the
/// conditioning dropout (draws timesteps, noise, then class inputs, in that order).
pub fn noised(cx: &mut StepContext<'_>, clean: &Clean) -> NoisedBatch {
    let shape = image_shape(cx);
    let b = clean.labels.len();
    let noise = draw_noise(cx, b, shape);
    let (gamma, sigma) = coefficients(cx.schedule, &noise.t, cx.device);
    let xt = clean.x0.clone() * gamma + noise.eps.clone() * sigma;
    let classes = class_inputs(cx, &clean.labels);
    NoisedBatch {
        xt,
        t: timestep_tensor(&noise.t, cx.device),
        classes,
        target: noise.eps,
        weights: None,
    }
}

/// Timesteps and Gaussian noise of one batch.
pub struct NoiseDraw {
    pub t: Vec<usize>,
    pub eps_host: Vec<f32>,
    pub eps: Tensor<4>,
}

pub fn draw_timesteps(cx: &mut StepContext<'_>, b: usize) -> Vec<usize> {
    let (lo, hi) = cx.t_range;
    match cx.timesteps {
        TimestepSampling::Uniform => (0..b).map(|_| cx.rng.random_range(lo..=hi)).collect(),
        TimestepSampling::Antithetic => {
            let half: Vec<usize> = (0..b / 2 + 1)
                .map(|_| cx.rng.random_range(lo..=hi))
                .collect();
            half.iter()
                .copied()
                .chain(half.iter().map(|&t| hi + lo - t))
                .take(b)
                .collect()
        }
    }
}

pub fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect()
}

pub fn draw_noise(cx: &mut StepContext<'_>, b: usize, shape: [usize; 3]) -> NoiseDraw {
    let t = draw_timesteps(cx, b);
    let eps_host = gaussian(cx.rng, b * shape.iter().product::<usize>());
    let eps = image_tensor(eps_host.clone(), b, shape, cx.device);
    NoiseDraw { t, eps_host, eps }
}

pub fn image_tensor(
    values: Vec<f32>,
    b: usize,
    [c, h, w]: [usize; 3],
    device: &Device,
) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [b, c, h, w]), device)
}

/// `(gamma_t, sigma_t) = (sqrt(abar_t), sqrt(1 − abar_t))` per image as `[B,1,1,1]`.
pub fn coefficients(
    schedule: &NoiseSchedule,
    t: &[usize],
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let b = t.len();
    let gamma: Vec<f32> = t.iter().map(|&t| schedule.abar(t as i64).sqrt()).collect();
    let sigma: Vec<f32> = t
        .iter()
        .map(|&t| (1.0 - schedule.abar(t as i64)).sqrt())
        .collect();
    (
        Tensor::from_data(TensorData::new(gamma, [b, 1, 1, 1]), device),
        Tensor::from_data(TensorData::new(sigma, [b, 1, 1, 1]), device),
    )
}

pub fn timestep_tensor(t: &[usize], device: &Device) -> Tensor<1> {
    Tensor::from_data(
        TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<_>>(), [t.len()]),
        device,
    )
}

/// Class inputs for a batch: each image's label, replaced by the null class with the
/// configured probability (and always when the image has no label). `None` for an
/// unconditional model.
pub fn class_inputs(cx: &mut StepContext<'_>, labels: &[Option<usize>]) -> Option<Tensor<1, Int>> {
    if !cx.cond.class_conditional {
        return None;
    }
    let null = cx.cond.null_class;
    let values: Vec<i64> = labels
        .iter()
        .map(|l| {
            let dropped = null.is_some() && cx.rng.random_bool(cx.cond.drop_prob.clamp(0.0, 1.0));
            match (l, dropped, null) {
                (Some(c), false, _) | (Some(c), true, None) => *c as i64,
                (_, _, Some(n)) => n as i64,
                // A conditional model without a null class and an unlabelled image:
                // refused when the run is set up, never reached.
                (None, _, None) => 0,
            }
        })
        .collect();
    let b = values.len();
    Some(Tensor::from_data(TensorData::new(values, [b]), cx.device))
}

/// Σ over C,H,W of `(pred − target)²`, one value per image.
pub fn per_image_sq_err(pred: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [b, c, h, w] = pred.dims();
    (pred - target)
        .square()
        .reshape([b, c * h * w])
        .sum_dim(1)
        .reshape([b])
}

/// The scalar loss of per-image squared errors, optionally importance-weighted.
pub fn reduce(
    per_image: Tensor<1>,
    weights: Option<Tensor<1>>,
    reduction: Reduction,
    numel: usize,
) -> Tensor<1> {
    let b = per_image.dims()[0];
    reduce_over(per_image, weights, reduction, numel, b)
}

/// [`reduce`] of some of a batch's images as their share of the whole batch of `batch_len`
/// (the per-batch mean divides by the whole batch, so shares add up to it).
pub fn reduce_over(
    per_image: Tensor<1>,
    weights: Option<Tensor<1>>,
    reduction: Reduction,
    numel: usize,
    batch_len: usize,
) -> Tensor<1> {
    let b = batch_len as f32;
    let weighted = match weights {
        Some(w) => per_image * w,
        None => per_image,
    };
    let per_batch = weighted.sum() / b;
    match reduction {
        Reduction::SumPerImage => per_batch,
        Reduction::Mean => per_batch / numel as f32,
    }
}

/// The plain DDPM loss `‖eps_θ(x_t, t, c) − eps‖²` of a clean batch (one forward pass of
/// the whole batch, its graph kept).
pub fn denoising_loss(cx: &mut StepContext<'_>, clean: &Clean) -> Tensor<1> {
    noised(cx, clean).loss(cx.model, cx.reduction)
}

/// Image shape `[c, h, w]` of the run's data.
pub fn image_shape(cx: &StepContext<'_>) -> [usize; 3] {
    let s = cx.data.retain.spec;
    [s.channels, s.height, s.width]
}

/// A scalar tensor's value (one device sync).
pub fn value(t: &Tensor<1>) -> f32 {
    t.clone().into_scalar::<f32>()
}
