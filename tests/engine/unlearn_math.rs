//! The math of the methods on a tiny model, beyond unit identities: SISS's paper form with
//! superfactor 1 is an unbiased estimate of the naive-deletion loss `L_{X\A}`; gradient
//! accumulation takes every method's step exactly as a whole batch does.

use crate::common;

use burn::tensor::Device;
use lethe::data::{ImageSet, ImageSpec};
use lethe::diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use lethe::diffusion::unet::UNet;
use lethe::train::grads::Layout;
use lethe::train::memory::PeakMemory;
use lethe::unlearn::siss::{SissConfig, SissForm, paper_coefficients, weighted_terms};
use lethe::unlearn::step::{
    Conditioning, Reduction, StepContext, TimestepSampling, UnlearnData, denoising_loss, draw,
    value,
};
use lethe::unlearn::{
    MethodConfig, dimum::DimumConfig, erasediff::EraseDiffConfig, neggrad::NegGradConfig,
    vdu::VduConfig,
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
        micro_batch: 4,
        reduction: Reduction::SumPerImage,
        timesteps: TimestepSampling::Uniform,
        t_range: (0, 999),
        rng: &mut rng,
        device: &device,
        step: 0,
        learning_rate: 0.0,
        memory: &PeakMemory::default(),
    };
    let draws = 1500;
    let siss_with = |cx: &mut StepContext<'_>, s: f32| -> Vec<f64> {
        let (c_x, c_a) = paper_coefficients(n, k, s);
        (0..draws)
            .map(|_| {
                let t = weighted_terms(cx, &all, 0.5);
                let pred = t.x.predict(cx.model);
                let loss_x = t.x.share_of(pred.clone(), cx.reduction, 4);
                let loss_a = t.a.share_of(pred, cx.reduction, 4);
                (c_x * value(&loss_x) - c_a * value(&loss_a)) as f64
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

/// Every method's direction and loss terms for one step at `micro_batch` (same seed).
fn direction_with(method: &MethodConfig, micro_batch: usize) -> (Vec<f32>, Vec<(String, f32)>) {
    let device = Device::flex().autodiff();
    let model = UNet::new(&common::tiny_config(), 5, &device).unwrap();
    let layout = Layout::of(&model);
    let schedule = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
    let mut data_rng = ChaCha8Rng::seed_from_u64(3);
    let labelled = |mut set: ImageSet, label: usize| {
        set.labels.iter_mut().for_each(|l| *l = Some(label));
        set
    };
    let data = UnlearnData {
        retain: labelled(random_set(12, &mut data_rng, false), 2),
        forget: labelled(random_set(3, &mut data_rng, true), 7),
        substitute: Some(labelled(random_set(5, &mut data_rng, false), 7)),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let memory = PeakMemory::default();
    let mut cx = StepContext {
        model: &model,
        layout: &layout,
        schedule: &schedule,
        data: &data,
        cond: Conditioning {
            null_class: Some(11),
            class_conditional: true,
            drop_prob: 0.3,
        },
        batch_size: 8,
        micro_batch,
        reduction: Reduction::SumPerImage,
        timesteps: TimestepSampling::Uniform,
        t_range: (0, 999),
        rng: &mut rng,
        device: &device,
        step: 0,
        learning_rate: 1e-3,
        memory: &memory,
    };
    let mut method = method.build(Some(11)).unwrap();
    let direction = method.direction(&mut cx).unwrap();
    (direction.grad.to_vec(), direction.report.terms)
}

#[test]
fn gradient_accumulation_takes_the_same_step_as_the_whole_batch() {
    let methods = [
        MethodConfig::Siss(SissConfig::default()),
        MethodConfig::Siss(SissConfig {
            form: SissForm::Paper,
            ..SissConfig::default()
        }),
        MethodConfig::SissNoIs(Default::default()),
        // Fixed λ, relabelled targets computed by the model, and the inner steps of f(φ^K).
        MethodConfig::EraseDiff(EraseDiffConfig::default()),
        MethodConfig::EraseDiff(EraseDiffConfig {
            auto_lambda: true,
            ..EraseDiffConfig::default()
        }),
        MethodConfig::Vdu(VduConfig {
            fisher_batches: 2,
            ..VduConfig::default()
        }),
        MethodConfig::Dimum(DimumConfig::default()),
        MethodConfig::NegGrad(NegGradConfig::default()),
        MethodConfig::Finetune,
    ];
    for method in &methods {
        let (whole, whole_terms) = direction_with(method, 8);
        // 3 + 3 + 2: micro-batches that do not divide the batch.
        let (split, split_terms) = direction_with(method, 3);
        let scale = whole.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = whole
            .iter()
            .zip(&split)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(scale > 0.0, "{}: zero direction", method.label());
        assert!(
            worst <= 1e-4 * scale,
            "{}: accumulated direction differs by {worst:e} (largest entry {scale:e})",
            method.label()
        );
        for ((name, a), (_, b)) in whole_terms.iter().zip(&split_terms) {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "{}: {name} = {a} whole, {b} accumulated",
                method.label()
            );
        }
        assert_eq!(whole_terms.len(), split_terms.len(), "{}", method.label());
    }
}
