//! The math of the methods on a tiny model, beyond unit identities: SISS's paper form with
//! superfactor 1 is an unbiased estimate of the naive-deletion loss `L_{X\A}`.

use crate::common;

use burn::tensor::Device;
use lethe::data::{ImageSet, ImageSpec};
use lethe::diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use lethe::diffusion::unet::UNet;
use lethe::train::grads::Layout;
use lethe::unlearn::siss::{paper_coefficients, weighted_terms};
use lethe::unlearn::step::{
    Conditioning, Reduction, StepContext, TimestepSampling, UnlearnData, denoising_loss, draw,
    value,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SPEC: ImageSpec = ImageSpec {
    channels: 1,
    height: 8,
    width: 8,
};

fn random_set(n: usize, rng: &mut ChaCha8Rng, bright: bool) -> ImageSet {
    let mut set = ImageSet::empty(SPEC);
    for i in 0..n {
        let px: Vec<u8> = (0..64)
            .map(|_| {
                if bright {
                    rng.random_range(150..=255)
                } else {
                    rng.random_range(0..=120)
                }
            })
            .collect();
        set.push(&px, None, format!("random#{i}"));
    }
    set
}

/// Mean and standard error of `n` draws.
fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn siss_paper_form_is_an_unbiased_estimate_of_the_naive_deletion_loss() {
    let device = Device::flex();
    let model = UNet::new(&common::tiny_config(), 3, &device).unwrap();
    let layout = Layout::of(&model);
    let schedule = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
    let mut data_rng = ChaCha8Rng::seed_from_u64(11);
    let retain = random_set(6, &mut data_rng, false);
    let forget = random_set(2, &mut data_rng, true);
    let mut all = retain.clone();
    all.extend(forget.clone());
    let data = UnlearnData {
        retain,
        forget,
        substitute: None,
    };
    let (n, k) = (all.len(), data.forget.len());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut cx = StepContext {
        model: &model,
        layout: &layout,
        schedule: &schedule,
        data: &data,
        cond: Conditioning {
            null_class: Some(11),
            class_conditional: true,
            drop_prob: 1.0,
        },
        batch_size: 4,
        reduction: Reduction::SumPerImage,
        timesteps: TimestepSampling::Uniform,
        t_range: (0, 999),
        rng: &mut rng,
        device: &device,
        step: 0,
        learning_rate: 0.0,
    };
    let draws = 1500;
    let siss_with = |cx: &mut StepContext<'_>, s: f32| -> Vec<f64> {
        let (c_x, c_a) = paper_coefficients(n, k, s);
        (0..draws)
            .map(|_| {
                let t = weighted_terms(cx, &all, 0.5);
                (c_x * value(&t.loss_x) - c_a * value(&t.loss_a)) as f64
            })
            .collect()
    };
    let siss = siss_with(&mut cx, 1.0);
    let naive: Vec<f64> = (0..draws)
        .map(|_| {
            let x = draw(&data.retain, 4, cx.rng, &device);
            value(&denoising_loss(&mut cx, &x)) as f64
        })
        .collect();
    let (m_siss, se_siss) = mean_se(&siss);
    let (m_naive, se_naive) = mean_se(&naive);
    let se = (se_siss.powi(2) + se_naive.powi(2)).sqrt();
    eprintln!("SISS(s=1) {m_siss:.3} ± {se_siss:.3}; two-pass L_X\\A {m_naive:.3} ± {se_naive:.3}");
    assert!(
        (m_siss - m_naive).abs() < 4.0 * se,
        "SISS(s=1) {m_siss:.3} ± {se_siss:.3} vs L_X\\A {m_naive:.3} ± {se_naive:.3}"
    );
    // The test has power: a biased superfactor is detected.
    let (m_biased, _) = mean_se(&siss_with(&mut cx, 3.0));
    assert!(
        (m_biased - m_naive).abs() > 4.0 * se,
        "s=3 gives {m_biased:.3}, indistinguishable from {m_naive:.3} ± {se:.3}"
    );
}
