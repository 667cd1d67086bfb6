//! Likelihood of an image set under a diffusion model: the DDPM variational bound (ELBO) in
//! bits/dim (Ho et al. 2020; docs/metrics.md, ELBO). After unlearning, the forget images should
//! become unlikely (more bits/dim) while retain images stay likely.
//!
//! The terms follow improved-diffusion's `calc_bpd_loop` / `_vb_terms_bpd` exactly (the
//! reference the field's bits/dim numbers come from), including its tanh approximation of the
//! normal CDF in the discretised decoder and the clipping of the predicted `x_0` when the
//! scheduler clips: for `t ≥ 1` the term is `KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))`,
//! for `t = 0` the discretised Gaussian decoder's `−log p(x_0 | x_1)` over 256 bins, plus the
//! prior term `KL(q(x_T | x_0) ‖ N(0, I))`. `tests/numerics/golden_elbo.rs` holds the terms to a NumPy
//! transcription of that code (`tools/make_elbo_golden.py`).
//!
//! The exact bound needs one network evaluation per timestep (1000 for the usual schedule).
//! With fewer, Lethe estimates the sum without bias: the decoder term (t = 0) is always exact,
//! and `1..T−1` is cut into equal strata with one uniformly drawn timestep each, weighted by
//! its stratum's size. Each term uses one noise draw per image, as improved-diffusion does.

use std::f64::consts::{LN_2, PI};

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::diffusion::schedule::{NoiseSchedule, VarianceType};
use crate::diffusion::unet::UNet;

/// How the bound is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElboSpec {
    /// Network evaluations per image; the schedule's length (or more) = the exact sum.
    pub timesteps: usize,
    /// Seeds the stratified timesteps and the noise.
    pub seed: u64,
}

/// The bound for a set of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Elbo {
    /// Mean over images of the bound, in bits per dimension (8-bit data).
    pub bits_per_dim: f64,
    /// Standard error of that mean across images (not counting the timestep sampling).
    pub std_error: f64,
    pub per_image: Vec<f64>,
    /// e.g. `ELBO bits/dim [N=16, 50 of 1000 t stratified, seed 0]`.
    pub label: String,
    /// The estimator alone, e.g. `50 of 1000 t stratified, seed 0`.
    pub estimator: String,
}

/// The schedule's coefficients in f64, as improved-diffusion's `GaussianDiffusion` holds them.
pub struct ElboCoefficients {
    betas: Vec<f64>,
    abar: Vec<f64>,
    posterior_log_variance_clipped: Vec<f64>,
    posterior_mean_coef1: Vec<f64>,
    posterior_mean_coef2: Vec<f64>,
    model_log_variance: Vec<f64>,
    clip: Option<f64>,
}

impl ElboCoefficients {
    pub fn new(schedule: &NoiseSchedule) -> Self {
        let betas: Vec<f64> = schedule.betas.iter().map(|&b| b as f64).collect();
        let abar: Vec<f64> = schedule.alphas_cumprod.iter().map(|&a| a as f64).collect();
        let abar_prev: Vec<f64> = std::iter::once(1.0)
            .chain(abar.iter().copied())
            .take(abar.len())
            .collect();
        let n = betas.len();
        let posterior_variance: Vec<f64> = (0..n)
            .map(|t| betas[t] * (1.0 - abar_prev[t]) / (1.0 - abar[t]))
            .collect();
        // The variance at t = 0 is 0; improved-diffusion uses the t = 1 value there.
        let clipped = |v: &[f64]| -> Vec<f64> {
            std::iter::once(posterior_variance[1])
                .chain(v[1..].iter().copied())
                .map(f64::ln)
                .collect()
        };
        let posterior_log_variance_clipped = clipped(&posterior_variance);
        let model_log_variance = match schedule.variance {
            VarianceType::FixedSmall => posterior_log_variance_clipped.clone(),
            VarianceType::FixedLarge => clipped(&betas),
        };
        Self {
            posterior_mean_coef1: (0..n)
                .map(|t| betas[t] * abar_prev[t].sqrt() / (1.0 - abar[t]))
                .collect(),
            posterior_mean_coef2: (0..n)
                .map(|t| (1.0 - abar_prev[t]) * (1.0 - betas[t]).sqrt() / (1.0 - abar[t]))
                .collect(),
            posterior_log_variance_clipped,
            model_log_variance,
            clip: schedule.clip_sample.map(f64::from),
            betas,
            abar,
        }
    }

    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// The bound's term at step `t` for one image, in bits/dim: `x0` the image in [−1, 1]
    /// (on the 8-bit grid), `xt` its noised version, `eps` the network's noise prediction.
    pub fn term_bits(&self, t: usize, x0: &[f32], xt: &[f32], eps: &[f32]) -> f64 {
        let (a, c1, c2) = (
            self.abar[t],
            self.posterior_mean_coef1[t],
            self.posterior_mean_coef2[t],
        );
        let (recip, recipm1) = ((1.0 / a).sqrt(), (1.0 / a - 1.0).sqrt());
        let model_log_var = self.model_log_variance[t];
        let true_log_var = self.posterior_log_variance_clipped[t];
        let mut total = 0.0;
        for ((&x0, &xt), &eps) in x0.iter().zip(xt).zip(eps) {
            let (x0, xt, eps) = (x0 as f64, xt as f64, eps as f64);
            let mut pred_x0 = recip * xt - recipm1 * eps;
            if let Some(r) = self.clip {
                pred_x0 = pred_x0.clamp(-r, r);
            }
            let model_mean = c1 * pred_x0 + c2 * xt;
            total += if t == 0 {
                -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)
            } else {
                let true_mean = c1 * x0 + c2 * xt;
                normal_kl(true_mean, true_log_var, model_mean, model_log_var)
            };
        }
        total / x0.len() as f64 / LN_2
    }

    /// `KL(q(x_T | x_0) ‖ N(0, I))` in bits/dim.
    pub fn prior_bits(&self, x0: &[f32]) -> f64 {
        let a = *self.abar.last().expect("a schedule has timesteps");
        let log_var = (1.0 - a).ln();
        let total: f64 = x0
            .iter()
            .map(|&x| normal_kl(a.sqrt() * x as f64, log_var, 0.0, 0.0))
            .sum();
        total / x0.len() as f64 / LN_2
    }
}

/// KL between two diagonal Gaussians given by mean and log variance (improved-diffusion's
/// `normal_kl`), per dimension, in nats.
fn normal_kl(mean1: f64, log_var1: f64, mean2: f64, log_var2: f64) -> f64 {
    0.5 * (-1.0 + log_var2 - log_var1
        + (log_var1 - log_var2).exp()
        + (mean1 - mean2).powi(2) * (-log_var2).exp())
}

/// improved-diffusion's `approx_standard_normal_cdf` (a tanh approximation).
fn approx_standard_normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// `log p(x)` of an 8-bit value `x` in [−1, 1] under a Gaussian discretised to 256 bins, the
/// edge bins extended to ±∞ (improved-diffusion's `discretized_gaussian_log_likelihood`).
fn discretized_gaussian_log_likelihood(x: f64, mean: f64, log_scale: f64) -> f64 {
    let centered = x - mean;
    let inv_std = (-log_scale).exp();
    let cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0));
    let cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0));
    if x < -0.999 {
        cdf_plus.max(1e-12).ln()
    } else if x > 0.999 {
        (1.0 - cdf_min).max(1e-12).ln()
    } else {
        (cdf_plus - cdf_min).max(1e-12).ln()
    }
}

/// The timesteps evaluated and the weight of each in the sum: every step once when
/// `count ≥ total`; otherwise step 0 (weight 1) and one uniformly drawn step from each of
/// `count − 1` equal strata of `1..total`, weighted by the stratum's size.
pub fn stratified_timesteps(total: usize, count: usize, seed: u64) -> Vec<(usize, f64)> {
    if count >= total {
        return (0..total).map(|t| (t, 1.0)).collect();
    }
    let strata = count.max(2) - 1;
    let span = total - 1;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![(0, 1.0)];
    for i in 0..strata {
        let (lo, hi) = (1 + i * span / strata, 1 + (i + 1) * span / strata);
        out.push((rng.random_range(lo..hi), (hi - lo) as f64));
    }
    out
}

/// Estimates the bound for each image (8-bit CHW bytes of `shape`) under `model`, conditioned
/// on `class` when the model takes one (its null class for the unconditional likelihood).
pub fn elbo_bits_per_dim(
    model: &UNet,
    schedule: &NoiseSchedule,
    images: &[&[u8]],
    shape: [usize; 3],
    class: Option<usize>,
    spec: ElboSpec,
    device: &Device,
) -> Result<Elbo, String> {
    let numel: usize = shape.iter().product();
    if images.is_empty() {
        return Err("the ELBO needs at least one image".into());
    }
    if let Some(bad) = images.iter().position(|im| im.len() != numel) {
        return Err(format!(
            "image {bad} has {} values, the model takes {shape:?}",
            images[bad].len()
        ));
    }
    if model.has_class_embedding() != class.is_some() {
        return Err(if class.is_some() {
            "this model is unconditional; it takes no class".into()
        } else {
            "this class-conditional model needs a class (or a null class) for the ELBO".into()
        });
    }
    let coefficients = ElboCoefficients::new(schedule);
    let x0: Vec<Vec<f32>> = images
        .iter()
        .map(|im| im.iter().map(|&p| p as f32 / 127.5 - 1.0).collect())
        .collect();
    let mut per_image: Vec<f64> = x0.iter().map(|x| coefficients.prior_bits(x)).collect();
    let steps = stratified_timesteps(coefficients.num_timesteps(), spec.timesteps, spec.seed);
    for &(t, weight) in &steps {
        let mut rng = crate::train::step_rng(spec.seed, t);
        for (first, chunk) in x0.chunks(64).enumerate().map(|(i, c)| (i * 64, c)) {
            let noise: Vec<f32> = (0..chunk.len() * numel)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect();
            let xt = noised(&coefficients, t, chunk, &noise);
            let eps = predict_noise(model, &xt, t, class, shape, device);
            for (i, x) in chunk.iter().enumerate() {
                let row = i * numel..(i + 1) * numel;
                per_image[first + i] +=
                    weight * coefficients.term_bits(t, x, &xt[row.clone()], &eps[row]);
            }
        }
    }
    let n = per_image.len() as f64;
    let mean = per_image.iter().sum::<f64>() / n;
    let var = per_image.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let how = if steps.len() >= coefficients.num_timesteps() {
        format!("all {} t", steps.len())
    } else {
        format!(
            "{} of {} t stratified",
            steps.len(),
            coefficients.num_timesteps()
        )
    };
    let estimator = format!("{how}, seed {}", spec.seed);
    Ok(Elbo {
        bits_per_dim: mean,
        std_error: (var / n).sqrt(),
        label: format!("ELBO bits/dim [N={}, {estimator}]", per_image.len()),
        estimator,
        per_image,
    })
}

/// `x_t = √ā_t x_0 + √(1 − ā_t) ε` on the host, row after row.
fn noised(c: &ElboCoefficients, t: usize, x0: &[Vec<f32>], noise: &[f32]) -> Vec<f32> {
    let (a, s) = (c.abar[t].sqrt() as f32, (1.0 - c.abar[t]).sqrt() as f32);
    x0.iter()
        .flatten()
        .zip(noise)
        .map(|(&x, &e)| a * x + s * e)
        .collect()
}

fn predict_noise(
    model: &UNet,
    xt: &[f32],
    t: usize,
    class: Option<usize>,
    [c, h, w]: [usize; 3],
    device: &Device,
) -> Vec<f32> {
    let b = xt.len() / (c * h * w);
    let x = Tensor::<4>::from_data(TensorData::new(xt.to_vec(), [b, c, h, w]), device);
    let timesteps = Tensor::<1>::from_data(TensorData::new(vec![t as f32; b], [b]), device);
    let classes =
        class.map(|k| Tensor::<1, Int>::from_data(TensorData::new(vec![k as i64; b], [b]), device));
    model
        .forward(x, timesteps, classes)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 noise prediction")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::schedule::SchedulerConfig;

    #[test]
    fn every_timestep_once_when_the_count_covers_the_schedule() {
        let steps = stratified_timesteps(10, 10, 3);
        assert_eq!(steps, (0..10).map(|t| (t, 1.0)).collect::<Vec<_>>());
    }

    #[test]
    fn strata_cover_the_schedule_with_their_sizes_as_weights() {
        let steps = stratified_timesteps(1000, 50, 7);
        assert_eq!(steps.len(), 50);
        assert_eq!(steps[0], (0, 1.0));
        let total: f64 = steps.iter().map(|s| s.1).sum();
        assert_eq!(total, 1000.0);
        // One step per stratum, in order, never step 0 again.
        assert!(steps[1..].windows(2).all(|w| w[0].0 < w[1].0));
        assert!(steps[1..].iter().all(|s| s.0 >= 1 && s.0 < 1000));
        assert_ne!(steps, stratified_timesteps(1000, 50, 8));
    }

    #[test]
    fn a_perfect_noise_prediction_costs_nothing_in_the_kl_terms() {
        let s = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
        let c = ElboCoefficients::new(&s);
        let x0 = vec![-1.0f32, -0.5, 0.0, 0.5, 1.0, 0.25];
        let eps = vec![0.3f32, -1.2, 0.7, 0.0, 0.4, -0.1];
        let t = 300;
        let (a, sd) = (c.abar[t].sqrt() as f32, (1.0 - c.abar[t]).sqrt() as f32);
        let xt: Vec<f32> = x0.iter().zip(&eps).map(|(x, e)| a * x + sd * e).collect();
        assert!(c.term_bits(t, &x0, &xt, &eps).abs() < 1e-6);
        let wrong: Vec<f32> = eps.iter().map(|e| e + 0.5).collect();
        assert!(c.term_bits(t, &x0, &xt, &wrong) > 1e-3);
    }
}
