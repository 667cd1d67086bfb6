//! The GPU code path cannot rot unnoticed (issue #6): one training step and one sampling step
//! of a tiny UNet on the wgpu backend — on these GPU-less machines that is Mesa's software
//! Vulkan (lavapipe) — must give what burn-flex gives on the CPU for the same seed.
//!
//! Compiled with the `wgpu` feature, which the default build has.
#![cfg(feature = "wgpu")]

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lethe::backend::{self, BackendChoice};
use lethe::diffusion::sampler::{SampleJob, SamplerSpec};
use lethe::diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use lethe::diffusion::unet::UNet;

const BATCH: usize = 4;

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Deterministic noisy inputs, timesteps spread over the schedule, and classes.
fn batch(device: &Device) -> (Tensor<4>, Tensor<4>, Tensor<1>, Tensor<1, Int>) {
    let n = BATCH * 64;
    let image = |k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * k) % 97) as f32 / 48.5 - 1.0).clamp(-1.0, 1.0))
            .collect()
    };
    let shape = [BATCH, 1, 8, 8];
    let x = Tensor::from_data(TensorData::new(image(31), shape), device);
    let target = Tensor::from_data(TensorData::new(image(17), shape), device);
    let t = Tensor::from_data(
        TensorData::new(vec![1.0f32, 250.0, 600.0, 999.0], [BATCH]),
        device,
    );
    let classes = Tensor::from_data(TensorData::new(vec![0i64, 3, 7, 11], [BATCH]), device);
    (x, target, t, classes)
}

/// Every parameter's gradient, flattened, in visiting order.
fn gradients(model: &UNet, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<Vec<f32>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self.grads.get::<D>(param.id);
            self.out
                .push(to_vec(g.expect("every parameter has a gradient")));
        }
    }
    let mut collect = Collect {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    collect.out
}

/// Every parameter's value, flattened, in visiting order.
fn parameters(model: &UNet) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(to_vec(param.val()));
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

struct StepResult {
    loss: f32,
    gradients: Vec<Vec<f32>>,
    updated: Vec<Vec<f32>>,
}

/// Forward, backward and one Adam update of the seed-0 tiny UNet on `device`.
fn training_step(device: &Device) -> StepResult {
    let model = UNet::new(&common::tiny_config(), 0, device).unwrap();
    let (x, target, t, classes) = batch(device);
    let eps = model.forward(x, t, Some(classes));
    let loss = (eps - target).square().mean();
    let loss_value = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let gradients = gradients(&model, &grads);
    let model = AdamConfig::new().init().step(1e-3, model, grads);
    StepResult {
        loss: loss_value,
        gradients,
        updated: parameters(&model),
    }
}

/// One deterministic DDIM step from seed-7 noise, then the clamp, on `device`.
fn sampling_step(device: &Device) -> Vec<f32> {
    let model = UNet::new(&common::tiny_config(), 0, device).unwrap();
    let schedule = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
    let spec = SamplerSpec {
        class: Some(3),
        guidance: 1.5,
        ..SamplerSpec::ddim(1)
    };
    let job = SampleJob {
        model: &model,
        schedule: &schedule,
        spec: &spec,
        shape: [1, 8, 8],
        null_class: Some(11),
        device,
    };
    to_vec(job.run(7, 0, BATCH, |_, _| {}).unwrap())
}

/// Largest |a − b| relative to the largest |b| (so a tensor of tiny values is not judged
/// on absolute error alone).
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn one_training_step_on_wgpu_matches_the_cpu() {
    let gpu = backend::training_device(BackendChoice::Wgpu).expect("wgpu is compiled in");
    let cpu = backend::training_device(BackendChoice::Cpu).unwrap();
    let on_gpu = training_step(&gpu);
    let on_cpu = training_step(&cpu);
    assert!(on_cpu.loss.is_finite() && on_cpu.loss > 0.0);
    assert!(
        (on_gpu.loss - on_cpu.loss).abs() <= 1e-4 * on_cpu.loss,
        "loss: wgpu {} vs cpu {}",
        on_gpu.loss,
        on_cpu.loss
    );
    assert_eq!(on_gpu.gradients.len(), on_cpu.gradients.len());
    for (i, (g, c)) in on_gpu.gradients.iter().zip(&on_cpu.gradients).enumerate() {
        let err = relative_error(g, c);
        assert!(
            err < 1e-3,
            "gradient of parameter #{i}: relative error {err}"
        );
    }
    // Adam's first step moves each weight by about the learning rate, whatever the gradient's
    // scale, so the updated parameters check the optimizer ran on the GPU tensors too.
    for (i, (g, c)) in on_gpu.updated.iter().zip(&on_cpu.updated).enumerate() {
        let worst = g
            .iter()
            .zip(c)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 5e-4, "parameter #{i} after Adam: off by {worst}");
    }
}

#[test]
fn one_sampling_step_on_wgpu_matches_the_cpu() {
    let gpu = backend::device(BackendChoice::Wgpu).expect("wgpu is compiled in");
    let cpu = backend::device(BackendChoice::Cpu).unwrap();
    let on_gpu = sampling_step(&gpu);
    let on_cpu = sampling_step(&cpu);
    assert_eq!(on_gpu.len(), BATCH * 64);
    assert!(
        on_cpu.iter().any(|&v| v.abs() > 0.1),
        "the step produced an image"
    );
    let worst = on_gpu
        .iter()
        .zip(&on_cpu)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-4, "sampled pixels: wgpu vs cpu off by {worst}");
}
