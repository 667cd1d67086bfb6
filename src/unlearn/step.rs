//! The step machinery every method shares: drawing batches, noising, implied-noise targets,
//! conditioning and loss reductions (batches of clean images come from [`crate::train::batch`]).
//! Methods compose these; none re-implements them.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::ImageSet;
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::unet::UNet;
use crate::train::grads::Layout;

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
    pub reduction: Reduction,
    pub timesteps: TimestepSampling,
    /// Inclusive range of training timesteps.
    pub t_range: (usize, usize),
    pub rng: &'a mut ChaCha8Rng,
    pub device: &'a Device,
    pub step: usize,
    pub learning_rate: f64,
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
    let b = per_image.dims()[0] as f32;
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

/// The plain DDPM loss `‖eps_θ(x_t, t, c) − eps‖²` of a clean batch (one forward pass).
pub fn denoising_loss(cx: &mut StepContext<'_>, clean: &Clean) -> Tensor<1> {
    let shape = cx.data.retain.spec;
    let shape = [shape.channels, shape.height, shape.width];
    let b = clean.labels.len();
    let noise = draw_noise(cx, b, shape);
    let (gamma, sigma) = coefficients(cx.schedule, &noise.t, cx.device);
    let xt = clean.x0.clone() * gamma + noise.eps.clone() * sigma;
    let classes = class_inputs(cx, &clean.labels);
    let pred = cx
        .model
        .forward(xt, timestep_tensor(&noise.t, cx.device), classes);
    reduce(
        per_image_sq_err(pred, noise.eps),
        None,
        cx.reduction,
        shape.iter().product(),
    )
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
