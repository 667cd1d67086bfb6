//! Mixed precision (issue #6, scope 3): a UNet computing in bf16 or f16 must stay close to
//! its f32 self — and must actually compute in the low dtype, or the comparison says nothing —
//! while its parameters, output and gradients stay f32.

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use lethe::backend::{self, BackendChoice};
use lethe::diffusion::checkpoint;
use lethe::diffusion::precision::Precision;
use lethe::diffusion::sampler::{NoiseStreams, SamplerSpec};
use lethe::diffusion::unet::UNet;

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// ‖a − b‖₂ / ‖b‖₂.
fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

/// Seeded standard normals `[batch, 1, side, side]`, the same on every run and thread.
fn normal(seed: u64, batch: usize, side: usize, device: &Device) -> Tensor<4> {
    NoiseStreams::new(seed, 0, batch, side * side).next([1, side, side], device)
}

/// Noisy inputs at timesteps spread over the schedule, with classes including the null one.
fn inputs(batch: usize, side: usize, device: &Device) -> (Tensor<4>, Tensor<1>, Tensor<1, Int>) {
    let x = normal(1, batch, side, device);
    let t: Vec<f32> = (0..batch).map(|i| (i * 999 / (batch - 1)) as f32).collect();
    let classes: Vec<i64> = (0..batch).map(|i| (i % 12) as i64).collect();
    (
        x,
        Tensor::from_data(TensorData::new(t, [batch]), device),
        Tensor::from_data(TensorData::new(classes, [batch]), device),
    )
}

/// Forward of `model` in each precision on the same inputs: (output, its dtype).
fn forward_in(model: &UNet, precision: Precision, batch: usize, side: usize) -> (Vec<f32>, DType) {
    let device = Device::flex();
    let (x, t, classes) = inputs(batch, side, &device);
    let out = model
        .clone()
        .with_precision(precision)
        .forward(x, t, Some(classes));
    let dtype = out.dtype();
    (to_vec(out), dtype)
}

/// The relative error of `precision` against f32 must lie in `(floor, ceiling)`: below the
/// ceiling the dtype is accurate enough; above the floor it was really used.
fn assert_close_but_not_equal(model: &UNet, side: usize, precision: Precision, ceiling: f64) {
    let (reference, _) = forward_in(model, Precision::F32, 8, side);
    let (low, dtype) = forward_in(model, precision, 8, side);
    assert_eq!(dtype, DType::F32, "the output comes back in f32");
    let err = relative_l2(&low, &reference);
    eprintln!("{} forward: relative L2 error {err:.2e}", precision.name());
    assert!(err < ceiling, "{}: relative error {err}", precision.name());
    assert!(
        err > 1e-5,
        "{}: output equals f32 ({err}), so the low dtype was not used",
        precision.name()
    );
}

#[test]
fn the_demo_model_in_bf16_and_f16_stays_close_to_f32() {
    let device = Device::flex();
    let ckpt = checkpoint::load(&lethe::data::demo::asset("assets/demo-model"), &device).unwrap();
    // bf16 keeps 8 mantissa bits (unit roundoff 2^-9 ≈ 2e-3), f16 11 (2.4e-4); errors
    // compound over the ~20 layers, so a few roundoffs is the expected size.
    assert_close_but_not_equal(&ckpt.unet, 28, Precision::Bf16, 3e-2);
    assert_close_but_not_equal(&ckpt.unet, 28, Precision::F16, 4e-3);
}

#[test]
fn attention_in_bf16_and_f16_stays_close_to_f32() {
    // The tiny config has attention blocks (softmax kept in f32), which the demo has not.
    let model = UNet::new(&common::tiny_config(), 0, &Device::flex()).unwrap();
    assert_close_but_not_equal(&model, 8, Precision::Bf16, 3e-2);
    assert_close_but_not_equal(&model, 8, Precision::F16, 4e-3);
}

/// Every parameter's (value, gradient), flattened, with their dtypes.
fn parameters_and_gradients(model: &UNet, grads: &GradientsParams) -> Vec<ParamAndGrad> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<ParamAndGrad>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self
                .grads
                .get::<D>(param.id)
                .expect("every parameter has a gradient");
            let value = param.val();
            let (vd, gd) = (value.dtype(), g.dtype());
            self.out.push((to_vec(value), vd, to_vec(g), gd));
        }
    }
    let mut collect = Collect {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    collect.out
}

/// One parameter's values and dtype, then its gradient's values and dtype.
type ParamAndGrad = (Vec<f32>, DType, Vec<f32>, DType);

/// Loss, (params, grads) and parameters after one Adam step, for one precision.
fn training_step(precision: Precision) -> (f32, Vec<ParamAndGrad>, Vec<DType>) {
    let device = backend::training_device(BackendChoice::Cpu).unwrap();
    let model = UNet::new(&common::tiny_config(), 0, &device)
        .unwrap()
        .with_precision(precision);
    let (x, t, classes) = inputs(8, 8, &device);
    let target = normal(2, 8, 8, &device);
    let loss = (model.forward(x, t, Some(classes)) - target)
        .square()
        .mean();
    let loss_value = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let collected = parameters_and_gradients(&model, &grads);
    let model = AdamConfig::new().init().step(1e-3, model, grads);
    struct Dtypes(Vec<DType>);
    impl ModuleVisitor for Dtypes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dtype());
        }
    }
    let mut updated = Dtypes(Vec::new());
    model.visit(&mut updated);
    (loss_value, collected, updated.0)
}

#[test]
fn a_bf16_training_step_keeps_f32_master_weights_and_close_gradients() {
    let (loss32, reference, _) = training_step(Precision::F32);
    let (loss16, mixed, updated) = training_step(Precision::Bf16);
    assert!(
        (loss16 - loss32).abs() < 1e-2 * loss32,
        "loss: bf16 {loss16} vs f32 {loss32}"
    );
    assert_eq!(mixed.len(), reference.len());
    // A parameter whose true gradient is zero (attention's key bias: softmax ignores a shift
    // common to all keys) has f32 roundoff for a reference, so each error is taken against
    // at least a thousandth of the whole gradient's norm.
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let total: f64 = reference
        .iter()
        .map(|(_, _, g, _)| norm(g).powi(2))
        .sum::<f64>()
        .sqrt();
    let mut worst: f64 = 0.0;
    let mut any_different = false;
    for (i, ((w, wd, g, gd), (w32, _, g32, _))) in mixed.iter().zip(&reference).enumerate() {
        assert_eq!(
            (*wd, *gd),
            (DType::F32, DType::F32),
            "parameter #{i}'s value and gradient are f32"
        );
        assert_eq!(w, w32, "parameter #{i} starts from the same f32 value");
        let diff: Vec<f32> = g.iter().zip(g32).map(|(a, b)| a - b).collect();
        let err = norm(&diff) / norm(g32).max(1e-3 * total);
        worst = worst.max(err);
        any_different |= err > 1e-5;
    }
    eprintln!("bf16 training step: worst per-parameter gradient relative L2 error {worst:.2e}");
    // bf16's unit roundoff is 2e-3; forward and backward each compound it over ~20 layers.
    assert!(worst < 6e-2, "a bf16 gradient is off by {worst}");
    assert!(
        any_different,
        "bf16 gradients equal f32's: the low dtype was not used"
    );
    assert!(
        updated.iter().all(|&d| d == DType::F32),
        "Adam updates f32 master weights"
    );
}

#[test]
fn f16_is_refused_for_training_and_bf16_is_not() {
    let err = Precision::F16.check_trainable().unwrap_err();
    assert!(err.contains("loss scaling"), "{err}");
    assert!(Precision::Bf16.check_trainable().is_ok());
    assert!(Precision::F32.check_trainable().is_ok());
}

#[test]
fn bf16_samples_of_the_demo_model_stay_close_to_f32_samples() {
    let device = Device::flex();
    let ckpt = checkpoint::load(&lethe::data::demo::asset("assets/demo-model"), &device).unwrap();
    let spec = SamplerSpec::ddim(10);
    let draw = |precision: Precision| {
        let model = ckpt.unet.clone().with_precision(precision);
        let mut job = ckpt.sample_job(&spec, &device);
        job.model = &model;
        to_vec(job.run(3, 0, 8, |_, _| {}).unwrap())
    };
    let reference = draw(Precision::F32);
    let low = draw(Precision::Bf16);
    let mean_abs: f64 = low
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / reference.len() as f64;
    eprintln!("bf16 DDIM-10 samples: mean |Δpixel| {mean_abs:.2e} (pixels in [-1, 1])");
    assert!(mean_abs > 1e-6, "bf16 samples equal f32 samples");
    assert!(
        mean_abs < 0.05,
        "bf16 samples drift from f32 by {mean_abs} on average"
    );
}
