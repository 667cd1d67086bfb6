//! The forward process and diffusers-compatible scheduler steps.
//!
//! Coefficients are computed on the host in f32 exactly as diffusers does (betas in f32,
//! `alphas_cumprod = cumprod(1 - betas)` in f32), so golden tests can hold them to 1e-6.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// diffusers' `scheduler/scheduler_config.json` (the keys Lethe uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub variance_type: String,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub prediction_type: String,
}

impl Default for SchedulerConfig {
    /// diffusers' `DDPMScheduler` defaults.
    fn default() -> Self {
        Self {
            class_name: "DDPMScheduler".into(),
            num_train_timesteps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            variance_type: "fixed_small".into(),
            clip_sample: true,
            clip_sample_range: 1.0,
            prediction_type: "epsilon".into(),
        }
    }
}

/// How much noise an ancestral DDPM step adds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// posterior variance `beta_t (1 - abar_{t-1}) / (1 - abar_t)` (diffusers' default)
    FixedSmall,
    /// `beta_t`
    FixedLarge,
}

/// The discrete forward process `q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub betas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
    pub variance: VarianceType,
    pub clip_sample: Option<f32>,
}

impl NoiseSchedule {
    pub fn from_config(config: &SchedulerConfig) -> Result<Self, String> {
        if config.prediction_type != "epsilon" {
            return Err(format!(
                "prediction_type {:?}: only \"epsilon\" is supported",
                config.prediction_type
            ));
        }
        let t = config.num_train_timesteps;
        if t < 2 {
            return Err(format!("num_train_timesteps {t} must be at least 2"));
        }
        let betas = match config.beta_schedule.as_str() {
            "linear" => linear_betas(config.beta_start, config.beta_end, t),
            "squaredcos_cap_v2" => cosine_betas(t),
            other => {
                return Err(format!(
                    "beta_schedule {other:?}: use \"linear\" or \"squaredcos_cap_v2\""
                ));
            }
        };
        let variance = match config.variance_type.as_str() {
            "fixed_small" => VarianceType::FixedSmall,
            "fixed_large" => VarianceType::FixedLarge,
            other => {
                return Err(format!(
                    "variance_type {other:?}: use \"fixed_small\" or \"fixed_large\""
                ));
            }
        };
        let mut alphas_cumprod = Vec::with_capacity(t);
        let mut running = 1f32;
        for beta in &betas {
            running *= 1.0 - beta;
            alphas_cumprod.push(running);
        }
        Ok(Self {
            betas,
            alphas_cumprod,
            variance,
            clip_sample: config
                .clip_sample
                .then_some(config.clip_sample_range as f32),
        })
    }

    pub fn num_train_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// `abar` at a step index; index −1 (before the first step) is 1 by convention.
    pub fn abar(&self, t: i64) -> f32 {
        if t < 0 {
            1.0
        } else {
            self.alphas_cumprod[t as usize]
        }
    }

    /// `x_t = sqrt(abar_t) x_0 + sqrt(1 − abar_t) eps`, one timestep per batch row.
    pub fn add_noise(&self, x0: Tensor<4>, noise: Tensor<4>, timesteps: &[usize]) -> Tensor<4> {
        let device = x0.device();
        let b = timesteps.len();
        let sqrt_abar: Vec<f32> = timesteps
            .iter()
            .map(|&t| self.alphas_cumprod[t].sqrt())
            .collect();
        let sqrt_one_minus: Vec<f32> = timesteps
            .iter()
            .map(|&t| (1.0 - self.alphas_cumprod[t]).sqrt())
            .collect();
        let a = Tensor::<1>::from_floats(sqrt_abar.as_slice(), &device).reshape([b, 1, 1, 1]);
        let s = Tensor::<1>::from_floats(sqrt_one_minus.as_slice(), &device).reshape([b, 1, 1, 1]);
        x0 * a + noise * s
    }

    /// `log q(x_t | x_0)` per batch row, in f64 on the host — the SISS importance
    /// weights are ratios of these, so they are kept in log space.
    pub fn log_q_xt_given_x0(&self, xt: &[f32], x0: &[f32], t: usize) -> f64 {
        let abar = self.alphas_cumprod[t] as f64;
        let var = 1.0 - abar;
        let d = xt.len() as f64;
        -0.5 * d * (2.0 * std::f64::consts::PI * var).ln()
            - half_scaled_distance(xt, x0, abar.sqrt(), var.sqrt())
    }

    /// diffusers' "leading" spacing: `range(0, T, T/n)` reversed.
    pub fn inference_timesteps(&self, n: usize) -> Result<Vec<usize>, String> {
        let t = self.num_train_timesteps();
        if n == 0 || n > t {
            return Err(format!(
                "number of sampling steps must be between 1 and {t}, got {n}"
            ));
        }
        let ratio = t / n;
        Ok((0..n).rev().map(|i| i * ratio).collect())
    }

    fn clip(&self, x0: Tensor<4>) -> Tensor<4> {
        match self.clip_sample {
            Some(r) => x0.clamp(-r, r),
            None => x0,
        }
    }

    /// Ancestral DDPM step `x_t → x_{prev}` (diffusers `DDPMScheduler.step`, epsilon
    /// prediction). `noise` is used only when `t > 0`.
    pub fn ddpm_step(
        &self,
        eps: Tensor<4>,
        t: usize,
        prev_t: i64,
        xt: Tensor<4>,
        noise: Tensor<4>,
    ) -> Tensor<4> {
        let abar_t = self.abar(t as i64);
        let abar_prev = self.abar(prev_t);
        let beta_prod_t = 1.0 - abar_t;
        let beta_prod_prev = 1.0 - abar_prev;
        let current_alpha = abar_t / abar_prev;
        let current_beta = 1.0 - current_alpha;
        let x0 = self.clip((xt.clone() - eps * beta_prod_t.sqrt()) / abar_t.sqrt());
        let x0_coeff = abar_prev.sqrt() * current_beta / beta_prod_t;
        let xt_coeff = current_alpha.sqrt() * beta_prod_prev / beta_prod_t;
        let mean = x0 * x0_coeff + xt * xt_coeff;
        if t == 0 {
            return mean;
        }
        let variance = match self.variance {
            VarianceType::FixedSmall => (beta_prod_prev / beta_prod_t * current_beta).max(1e-20),
            VarianceType::FixedLarge => current_beta,
        };
        mean + noise * variance.sqrt()
    }

    /// DDIM step (diffusers `DDIMScheduler.step`, `set_alpha_to_one = True`).
    /// `noise` is used only when `eta > 0`. `rederive_eps` is diffusers'
    /// `use_clipped_model_output`: continue with the ε implied by the clipped x̂0 instead of
    /// the model's (see `sampler::ClippedEps` for why guidance needs it).
    #[allow(clippy::too_many_arguments)]
    pub fn ddim_step(
        &self,
        eps: Tensor<4>,
        t: usize,
        prev_t: i64,
        xt: Tensor<4>,
        eta: f32,
        noise: Tensor<4>,
        rederive_eps: bool,
    ) -> Tensor<4> {
        let abar_t = self.abar(t as i64);
        let abar_prev = self.abar(prev_t);
        let beta_prod_t = 1.0 - abar_t;
        let beta_prod_prev = 1.0 - abar_prev;
        let x0 = self.clip((xt.clone() - eps.clone() * beta_prod_t.sqrt()) / abar_t.sqrt());
        let eps = if rederive_eps {
            (xt - x0.clone() * abar_t.sqrt()) / beta_prod_t.sqrt()
        } else {
            eps
        };
        let variance = (beta_prod_prev / beta_prod_t) * (1.0 - abar_t / abar_prev);
        let std_dev = eta * variance.sqrt();
        let direction = eps * (1.0 - abar_prev - std_dev * std_dev).max(0.0).sqrt();
        let prev = x0 * abar_prev.sqrt() + direction;
        if eta > 0.0 {
            prev + noise * std_dev
        } else {
            prev
        }
    }
}

/// `torch.linspace(start, end, n, dtype=float32)`.
fn linear_betas(start: f64, end: f64, n: usize) -> Vec<f32> {
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| (start + step * i as f64) as f32).collect()
}

/// diffusers' `betas_for_alpha_bar` with the cosine `alpha_bar` (Nichol & Dhariwal),
/// capped at 0.999; computed in f64 then stored as f32, as diffusers does.
fn cosine_betas(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// `‖m − γ·x‖² / (2σ²)` over all elements, in f64: the exponent of the Gaussian
/// `N(m; γ·x, σ²I)`, shared by `log q(x_t | x_0)` and the SISS importance weights.
pub fn half_scaled_distance(m: &[f32], x: &[f32], gamma: f64, sigma: f64) -> f64 {
    let sq: f64 = m
        .iter()
        .zip(x)
        .map(|(&m, &x)| {
            let d = m as f64 - gamma * x as f64;
            d * d
        })
        .sum();
    sq / (2.0 * sigma * sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// diffusers' `use_clipped_model_output`: the step continues from the clipped x̂0 with the
    /// ε that x̂0 implies, so it equals a plain step whose model had predicted exactly that ε;
    /// where nothing is clipped the two rules agree.
    #[test]
    fn rederived_eps_is_the_eps_of_the_clipped_x0() {
        let s = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
        let device = Device::flex();
        let tensor =
            |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, 2, 2]), &device);
        let values = |x: Tensor<4>| x.into_data().try_to_vec::<f32>().unwrap();
        let (t, prev) = (600usize, 580i64);
        let a = s.abar(t as i64);
        let xt = vec![0.3f32, -0.8, 1.2, 0.0];
        // An ε whose x̂0 leaves [-1, 1] in two pixels (guidance overshoot).
        let eps = vec![-1.5f32, 1.9, 0.1, 0.2];
        let zeros = tensor(vec![0.0; 4]);
        let rederived = values(s.ddim_step(
            tensor(eps.clone()),
            t,
            prev,
            tensor(xt.clone()),
            0.0,
            zeros.clone(),
            true,
        ));
        let x0: Vec<f32> = xt
            .iter()
            .zip(&eps)
            .map(|(x, e)| ((x - (1.0 - a).sqrt() * e) / a.sqrt()).clamp(-1.0, 1.0))
            .collect();
        let implied: Vec<f32> = xt
            .iter()
            .zip(&x0)
            .map(|(x, x0)| (x - a.sqrt() * x0) / (1.0 - a).sqrt())
            .collect();
        let plain = values(s.ddim_step(
            tensor(implied),
            t,
            prev,
            tensor(xt.clone()),
            0.0,
            zeros.clone(),
            false,
        ));
        for (r, p) in rederived.iter().zip(&plain) {
            assert!((r - p).abs() < 1e-5, "{rederived:?} vs {plain:?}");
        }
        let kept = values(s.ddim_step(
            tensor(eps.clone()),
            t,
            prev,
            tensor(xt.clone()),
            0.0,
            zeros.clone(),
            false,
        ));
        assert!(
            rederived
                .iter()
                .zip(&kept)
                .any(|(r, k)| (r - k).abs() > 1e-2),
            "clipping happened"
        );
        // Nothing clipped: the same step either way.
        // An ε whose x̂0 is inside [-1, 1] everywhere.
        let xt_small = vec![0.1f32, 0.0, 0.2, -0.1];
        let inside = [0.5f32, -0.5, 0.2, 0.0];
        let small: Vec<f32> = xt_small
            .iter()
            .zip(inside)
            .map(|(x, x0)| (x - a.sqrt() * x0) / (1.0 - a).sqrt())
            .collect();
        let a_rule = values(s.ddim_step(
            tensor(small.clone()),
            t,
            prev,
            tensor(xt_small.clone()),
            0.0,
            zeros.clone(),
            true,
        ));
        let b_rule =
            values(s.ddim_step(tensor(small), t, prev, tensor(xt_small), 0.0, zeros, false));
        for (x, y) in a_rule.iter().zip(&b_rule) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    fn linear_schedule_matches_its_definition() {
        let s = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
        assert_eq!(s.betas.len(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-9);
        assert!((s.betas[999] - 0.02).abs() < 1e-8);
        // abar is a decreasing product that ends near 4e-5 for this schedule.
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
        assert!(
            (s.alphas_cumprod[999] - 4.04e-5).abs() < 1e-6,
            "{}",
            s.alphas_cumprod[999]
        );
    }

    #[test]
    fn cosine_schedule_is_capped() {
        let config = SchedulerConfig {
            beta_schedule: "squaredcos_cap_v2".into(),
            ..Default::default()
        };
        let s = NoiseSchedule::from_config(&config).unwrap();
        assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
        assert_eq!(s.betas[999], 0.999);
    }

    #[test]
    fn leading_spacing_matches_diffusers() {
        let s = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
        let ts = s.inference_timesteps(50).unwrap();
        assert_eq!(ts.len(), 50);
        assert_eq!(ts[0], 980);
        assert_eq!(*ts.last().unwrap(), 0);
        assert!(s.inference_timesteps(0).is_err());
        assert!(s.inference_timesteps(1001).is_err());
    }

    #[test]
    fn log_density_peaks_at_the_mean() {
        let s = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
        let x0 = vec![0.5f32; 4];
        let t = 500;
        let mean: Vec<f32> = x0.iter().map(|v| v * s.alphas_cumprod[t].sqrt()).collect();
        let off: Vec<f32> = mean.iter().map(|v| v + 0.3).collect();
        assert!(s.log_q_xt_given_x0(&mean, &x0, t) > s.log_q_xt_given_x0(&off, &x0, t));
        // At the mean the density is the Gaussian normaliser alone.
        let var = 1.0 - s.alphas_cumprod[t] as f64;
        let expected = -2.0 * (2.0 * std::f64::consts::PI * var).ln();
        assert!((s.log_q_xt_given_x0(&mean, &x0, t) - expected).abs() < 1e-4);
    }
}
