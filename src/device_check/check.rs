//! The device self-check: the same forward pass, SISS training step, Adam update and DDIM step
//! of one checkpoint on the CPU and on another device, from identical weights, inputs and
//! noise, compared tensor by tensor.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::data::{ImageSet, ImageSpec};
use crate::diffusion::checkpoint::{self, Checkpoint};
use crate::train::grads::{GradVec, Layout, flat_parameters};
use crate::train::memory::PeakMemory;
use crate::train::optim::OptimizerConfig;
use crate::unlearn::step::{Conditioning, Reduction, StepContext, TimestepSampling, UnlearnData};
use crate::unlearn::{MethodConfig, siss::SissConfig};

/// How far a device may stray from the CPU, in fp32, before its results are refused.
///
/// Both sides compute in f32; they differ only in the order of additions (a GPU sums a
/// convolution's products in tiles, burn-flex in GEMM blocks). One reordered f32 sum of K
/// terms differs by about K·2⁻²⁴ relative, ~1e-5 at K ≈ 600, and depth compounds it in the
/// backward pass. Measured (`bench/results/`): the worst forward or DDIM error 3e-6 and
/// the worst gradient tensor 4.7e-5 on an NVIDIA H200 (Vulkan), 7e-6 on Mesa's lavapipe;
/// the Adam update within 1.5e-4 of its learning rate. The limits leave 20–30× headroom
/// over those, and sit far below what a broken kernel gives (the wgpu upsampling defect:
/// 0.78, NaN or 10⁴× in older builds).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Tolerances {
    /// Forward output ε̂ and the DDIM step: max |a−b| / max |cpu|.
    pub output: f32,
    /// The loss terms: |a−b| / |cpu|.
    pub loss: f32,
    /// Each parameter's gradient: max |a−b| / max |cpu| over the tensor (at least 1e-3 of
    /// the model's largest gradient).
    pub gradient: f32,
    /// Adam's update from the same gradients: max |a−b| in units of the learning rate.
    pub update: f32,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            output: 1e-4,
            loss: 1e-4,
            gradient: 1e-3,
            update: 5e-3,
        }
    }
}

/// One compared quantity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// `forward ε̂`, `SISS loss L_x`, `gradient <parameter>`, `Adam update`, `DDIM step`.
    pub what: String,
    pub max_abs: f32,
    /// The error the tolerance is stated in (see [`Tolerances`]).
    pub relative: f32,
    pub tolerance: f32,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        // NaN fails: comparisons with NaN are false.
        self.relative <= self.tolerance
    }
}

/// Milliseconds per operation on one device (median of the timed repeats).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub forward_ms: f64,
    pub siss_step_ms: f64,
    pub ddim_step_ms: f64,
}

/// Everything `lethe doctor` prints for one device, and what the cache keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub backend: BackendChoice,
    pub device: String,
    pub checkpoint: String,
    pub weights_sha256: String,
    pub batch: usize,
    pub tolerances: Tolerances,
    /// Forward, losses, Adam update and DDIM step.
    pub outputs: Vec<Comparison>,
    /// Every parameter's gradient, worst first.
    pub gradients: Vec<Comparison>,
    pub cpu: Timings,
    pub other: Timings,
}

impl CheckReport {
    pub fn failures(&self) -> Vec<&Comparison> {
        self.outputs
            .iter()
            .chain(&self.gradients)
            .filter(|c| !c.passed())
            .collect()
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// One line: `PASS …` or `FAIL …` naming the worst disagreement.
    pub fn verdict(&self) -> String {
        let failures = self.failures();
        let worst_gradient = self.gradients.first();
        match failures.first() {
            None => format!(
                "PASS: {} agrees with the CPU on {} within fp32 tolerances (worst gradient: {} at {:.1e}, limit {:.0e})",
                self.device,
                self.checkpoint,
                worst_gradient.map_or("-", |c| c.what.as_str()),
                worst_gradient.map_or(0.0, |c| c.relative),
                self.tolerances.gradient,
            ),
            Some(first) => format!(
                "FAIL: {} disagrees with the CPU on {}: {} of {} checks beyond tolerance; worst: {} off by {:.3e} (limit {:.0e})",
                self.device,
                self.checkpoint,
                failures.len(),
                self.outputs.len() + self.gradients.len(),
                first.what,
                first.relative,
                first.tolerance,
            ),
        }
    }
}

/// What to check and how.
#[derive(Debug, Clone)]
pub struct CheckSpec<'a> {
    pub checkpoint: &'a Path,
    pub batch: usize,
    pub tolerances: Tolerances,
    /// Timed repeats per operation after one warm-up (0: time the checked run only).
    pub repeats: usize,
    /// Test hook: add a visible error to this parameter's gradient on the other device, so
    /// a test can see the check name it (`lethe doctor --perturb-gradient`).
    pub perturb_gradient: Option<String>,
}

impl<'a> CheckSpec<'a> {
    /// What runs before a model's first run on a device: batch 4, default tolerances, two
    /// timed repeats.
    pub fn quick(checkpoint: &'a Path) -> Self {
        Self {
            checkpoint,
            batch: 4,
            tolerances: Tolerances::default(),
            repeats: 2,
            perturb_gradient: None,
        }
    }
}

/// Runs the check on `other` (a concrete device of `backend`) against the CPU.
pub fn run(
    spec: &CheckSpec<'_>,
    backend: BackendChoice,
    device_name: &str,
    other: &Device,
) -> Result<CheckReport, String> {
    let cpu_device = Device::flex();
    let cpu = Side::load(spec, &cpu_device)?;
    let dev = Side::load(spec, other)?;
    let names: Vec<String> = checkpoint::parameter_shapes(&cpu.ckpt.unet)
        .into_iter()
        .map(|(name, _)| name)
        .collect();

    let (cpu_results, cpu_times) = cpu.measure(spec, None)?;
    let (dev_results, dev_times) = dev.measure(spec, Some(&cpu_results.gradient))?;
    let mut gradient_flat = dev_results.gradient.clone();
    if let Some(target) = &spec.perturb_gradient {
        perturb(&mut gradient_flat, &names, &cpu.ckpt, target)?;
    }

    let tol = spec.tolerances;
    let mut outputs = vec![
        compare(
            "forward ε̂",
            &dev_results.forward,
            &cpu_results.forward,
            tol.output,
        ),
        compare_scalar(
            "SISS loss L_x (retain)",
            dev_results.loss_x,
            cpu_results.loss_x,
            tol.loss,
        ),
        compare_scalar(
            "SISS loss L_a (forget)",
            dev_results.loss_a,
            cpu_results.loss_a,
            tol.loss,
        ),
        compare(
            "DDIM step x_{t-1}",
            &dev_results.ddim,
            &cpu_results.ddim,
            tol.output,
        ),
    ];
    let lr = ADAM_LR as f32;
    let update = compare(
        "Adam update (same gradients)",
        &dev_results.update,
        &cpu_results.update,
        tol.update,
    );
    outputs.push(Comparison {
        relative: update.max_abs / lr,
        ..update
    });
    let mut gradients = per_tensor(
        &gradient_flat,
        &cpu_results.gradient,
        &names,
        &cpu.ckpt,
        tol.gradient,
    );
    gradients.sort_by(|a, b| b.relative.total_cmp(&a.relative));
    Ok(CheckReport {
        backend,
        device: device_name.to_string(),
        checkpoint: spec.checkpoint.display().to_string(),
        weights_sha256: cpu.ckpt.weights_sha256.clone(),
        batch: spec.batch,
        tolerances: tol,
        outputs,
        gradients,
        cpu: cpu_times,
        other: dev_times,
    })
}

/// The learning rate of the checked Adam step (a SISS default's order of magnitude).
const ADAM_LR: f64 = 1e-4;
/// Seeds of the check's inputs: any fixed values; both devices get the same.
const INPUT_SEED: u64 = 0x1e7e;
const STEP_SEED: u64 = 7;

/// One device's copy of the checkpoint.
struct Side {
    ckpt: Checkpoint,
    device: Device,
}

/// What one device computed, as host values.
struct Results {
    forward: Vec<f32>,
    loss_x: f32,
    loss_a: f32,
    gradient: Vec<f32>,
    update: Vec<f32>,
    ddim: Vec<f32>,
}

impl Side {
    fn load(spec: &CheckSpec<'_>, device: &Device) -> Result<Self, String> {
        let training = device.clone().autodiff();
        let ckpt = checkpoint::load(spec.checkpoint, &training).map_err(|e| e.to_string())?;
        Ok(Self {
            ckpt,
            device: training,
        })
    }

    /// Runs every checked operation once for its values, then `spec.repeats` more times
    /// each for its time. `adam_gradient` is the CPU's gradient, fed to Adam on this device
    /// too so the update compares the optimizer alone (the CPU side uses its own).
    fn measure(
        &self,
        spec: &CheckSpec<'_>,
        adam_gradient: Option<&Vec<f32>>,
    ) -> Result<(Results, Timings), String> {
        let inputs = Inputs::new(&self.ckpt, spec.batch, &self.device);
        use burn::module::Module;
        let inference = self.ckpt.unet.valid();
        let plain = self.device.clone().inner();
        let plain_inputs = Inputs::new(&self.ckpt, spec.batch, &plain);

        let (forward, forward_ms) = timed(spec.repeats, || {
            to_vec(inference.forward(
                plain_inputs.x.clone(),
                plain_inputs.t.clone(),
                plain_inputs.classes.clone(),
            ))
        });
        let ((loss_x, loss_a, gradient), siss_step_ms) =
            timed_result(spec.repeats, || self.siss_step(&inputs, spec.batch))?;
        let own = gradient.clone();
        let update = self.adam_update(adam_gradient.unwrap_or(&own));
        let (ddim, ddim_step_ms) =
            timed_result(spec.repeats, || self.ddim_step(&inference, &plain_inputs))?;
        Ok((
            Results {
                forward,
                loss_x,
                loss_a,
                gradient,
                update,
                ddim,
            },
            Timings {
                forward_ms,
                siss_step_ms,
                ddim_step_ms,
            },
        ))
    }

    /// One SISS direction (official form, default knobs) on a fixed retain/forget set:
    /// two forward/backward passes through the UNet with gradients requested only for the
    /// parameters, as in every unlearning run.
    fn siss_step(&self, inputs: &Inputs, batch: usize) -> Result<(f32, f32, Vec<f32>), String> {
        let config = &self.ckpt.config;
        let layout = Layout::of(&self.ckpt.unet);
        let mut method =
            MethodConfig::Siss(SissConfig::default()).build(config.num_real_classes())?;
        let mut rng = ChaCha8Rng::seed_from_u64(STEP_SEED);
        let memory = PeakMemory::default();
        let mut cx = StepContext {
            model: &self.ckpt.unet,
            layout: &layout,
            schedule: &self.ckpt.schedule,
            data: &inputs.data,
            cond: Conditioning {
                null_class: config.lethe_null_class,
                class_conditional: config.num_class_embeds.is_some(),
                drop_prob: 0.0,
            },
            batch_size: batch,
            micro_batch: batch,
            reduction: Reduction::SumPerImage,
            timesteps: TimestepSampling::Uniform,
            t_range: (0, self.ckpt.schedule.num_train_timesteps() - 1),
            rng: &mut rng,
            device: &self.device,
            step: 0,
            learning_rate: ADAM_LR,
            memory: &memory,
        };
        let direction = method.direction(&mut cx)?;
        let term = |name: &str| {
            direction
                .report
                .terms
                .iter()
                .find(|(n, _)| n.starts_with(name))
                .map_or(f32::NAN, |(_, v)| *v)
        };
        Ok((term("retain"), term("forget"), direction.grad.to_vec()))
    }

    /// Parameters after one Adam step with `gradient`, minus before.
    fn adam_update(&self, gradient: &[f32]) -> Vec<f32> {
        let model = self.ckpt.unet.clone();
        let before = to_vec(flat_parameters(&model));
        let layout = Layout::of(&model);
        let plain = self.device.clone().inner();
        let grads = GradVec::in_layout(gradient.to_vec(), &layout, &plain).into_params(&model);
        let mut optim = OptimizerConfig::adam().init();
        let after = optim.step(ADAM_LR, model, grads);
        let after = to_vec(flat_parameters(&after));
        after.iter().zip(&before).map(|(a, b)| a - b).collect()
    }

    /// The first step of DDIM-50 from the inputs' noise.
    fn ddim_step(
        &self,
        model: &crate::diffusion::unet::UNet,
        inputs: &Inputs,
    ) -> Result<Vec<f32>, String> {
        let schedule = &self.ckpt.schedule;
        let timesteps = schedule.inference_timesteps(50)?;
        let (t, prev) = (timesteps[0], timesteps[1] as i64);
        let batch = inputs.x.dims()[0];
        let t_tensor = Tensor::<1>::from_data(
            TensorData::new(vec![t as f32; batch], [batch]),
            &inputs.x.device(),
        );
        let eps = model.forward(inputs.x.clone(), t_tensor, inputs.classes.clone());
        let zeros = inputs.x.zeros_like();
        Ok(to_vec(schedule.ddim_step(
            eps,
            t,
            prev,
            inputs.x.clone(),
            0.0,
            zeros,
            false,
        )))
    }
}

/// Deterministic inputs of one check, identical on every device.
struct Inputs {
    x: Tensor<4>,
    t: Tensor<1>,
    classes: Option<Tensor<1, Int>>,
    data: UnlearnData,
}

impl Inputs {
    fn new(ckpt: &Checkpoint, batch: usize, device: &Device) -> Self {
        let config = &ckpt.config;
        let shape = [
            batch,
            config.in_channels,
            config.sample_size,
            config.sample_size,
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(INPUT_SEED);
        let noise = crate::unlearn::step::gaussian(&mut rng, shape.iter().product());
        let x = Tensor::from_data(TensorData::new(noise, shape), device);
        let steps = ckpt.schedule.num_train_timesteps();
        let t: Vec<f32> = (0..batch)
            .map(|i| ((i * 997 + 13) % steps) as f32)
            .collect();
        let t = Tensor::from_data(TensorData::new(t, [batch]), device);
        let classes = config.num_real_classes().map(|k| {
            let c: Vec<i64> = (0..batch).map(|i| (i % k) as i64).collect();
            Tensor::from_data(TensorData::new(c, [batch]), device)
        });
        let spec = ImageSpec {
            channels: config.in_channels,
            height: config.sample_size,
            width: config.sample_size,
        };
        let data = UnlearnData {
            retain: synthetic_set(spec, 2 * batch, 1, config.num_real_classes()),
            forget: synthetic_set(spec, batch.div_ceil(2), 2, config.num_real_classes()),
            substitute: None,
        };
        Self {
            x,
            t,
            classes,
            data,
        }
    }
}

/// `n` images of smooth deterministic patterns (not noise: the loss should be that of
/// image-like data), labelled round-robin when the model is class-conditional.
fn synthetic_set(spec: ImageSpec, n: usize, seed: usize, classes: Option<usize>) -> ImageSet {
    let mut set = ImageSet::empty(spec);
    for i in 0..n {
        let pixels: Vec<u8> = (0..spec.numel())
            .map(|p| {
                let (y, x) = ((p / spec.width) % spec.height, p % spec.width);
                let v = ((x * (i + seed) + y * (2 * i + 1)) % 17) as f32 / 16.0;
                (v * 255.0) as u8
            })
            .collect();
        set.push(&pixels, classes.map(|k| i % k), format!("check#{i}"));
    }
    set
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// Runs `f` once for its value, then `repeats` more times; the median time in ms (of the
/// repeats, or of the one run when there are none).
fn timed<T>(repeats: usize, mut f: impl FnMut() -> T) -> (T, f64) {
    timed_result(repeats, || Ok::<T, String>(f())).expect("infallible")
}

fn timed_result<T, E>(repeats: usize, mut f: impl FnMut() -> Result<T, E>) -> Result<(T, f64), E> {
    let clock = Instant::now();
    let value = f()?;
    let mut times = vec![clock.elapsed().as_secs_f64() * 1e3];
    if repeats > 0 {
        times.clear();
        for _ in 0..repeats {
            let clock = Instant::now();
            f()?;
            times.push(clock.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((value, times[times.len() / 2]))
}

/// Max |a−b| and that over max |b| (so a tensor of small values is judged on its scale).
fn compare(what: &str, a: &[f32], b: &[f32], tolerance: f32) -> Comparison {
    let (max_abs, relative) = errors(a, b);
    Comparison {
        what: what.to_string(),
        max_abs,
        relative,
        tolerance,
    }
}

fn compare_scalar(what: &str, a: f32, b: f32, tolerance: f32) -> Comparison {
    compare(what, &[a], &[b], tolerance)
}

fn errors(a: &[f32], b: &[f32]) -> (f32, f32) {
    errors_above(a, b, 1e-12)
}

/// Like [`errors`], judging the tensor on at least `floor`: a parameter whose exact gradient
/// is zero (an attention key bias: softmax ignores a shift shared by all keys) holds only
/// rounding noise, which no device reproduces digit for digit.
fn errors_above(a: &[f32], b: &[f32], floor: f32) -> (f32, f32) {
    if a.len() != b.len() {
        return (f32::NAN, f32::NAN);
    }
    let scale = b.iter().fold(floor, |m, v| m.max(v.abs()));
    let max_abs = a.iter().zip(b).fold(0.0f32, |m, (x, y)| {
        let d = (x - y).abs();
        // NaN on either side must show, and f32::max drops NaN.
        if d.is_nan() { f32::NAN } else { m.max(d) }
    });
    (max_abs, max_abs / scale)
}

/// The flat gradient cut into the checkpoint's parameters, compared one by one, each on its
/// own scale but never below 1e-3 of the largest gradient anywhere in the model.
fn per_tensor(
    a: &[f32],
    b: &[f32],
    names: &[String],
    ckpt: &Checkpoint,
    tolerance: f32,
) -> Vec<Comparison> {
    let floor = 1e-3 * b.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    let mut offset = 0;
    checkpoint::parameter_shapes(&ckpt.unet)
        .into_iter()
        .zip(names)
        .map(|((_, shape), name)| {
            let len: usize = shape.iter().product();
            let range = offset..(offset + len).min(a.len()).min(b.len());
            offset += len;
            let (max_abs, relative) = errors_above(&a[range.clone()], &b[range], floor);
            Comparison {
                what: format!("gradient {name}"),
                max_abs,
                relative,
                tolerance,
            }
        })
        .collect()
}

/// Adds 10% of the tensor's largest gradient to every element of the named parameter's
/// gradient: small next to a broken kernel, but 100× the gradient tolerance.
fn perturb(
    flat: &mut [f32],
    names: &[String],
    ckpt: &Checkpoint,
    target: &str,
) -> Result<(), String> {
    let mut offset = 0;
    for ((_, shape), name) in checkpoint::parameter_shapes(&ckpt.unet)
        .into_iter()
        .zip(names)
    {
        let len: usize = shape.iter().product();
        if name == target {
            let slice = &mut flat[offset..offset + len];
            let scale = slice.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            slice.iter_mut().for_each(|v| *v += 0.1 * scale);
            return Ok(());
        }
        offset += len;
    }
    Err(format!(
        "--perturb-gradient {target}: no such parameter (e.g. {})",
        names.first().map_or("", String::as_str)
    ))
}

/// The smallest reproduction of the wgpu nearest-upsampling gradient defect (see
/// `diffusion::unet::upsample_nearest_2x`): the gradient of `Σ r ⊙ up(x)` with respect to
/// `x` for a `[8, 64, 14, 14]` input, through Burn's `interpolate` and through Lethe's
/// broadcast, on `device` and on the CPU. Rows: (what, max |Δ| against the CPU broadcast,
/// elements off by more than 1e-4).
pub fn probe_upsample(device: &Device) -> Vec<(String, f32, usize)> {
    use crate::diffusion::unet::{interpolate_nearest_2x, upsample_nearest_2x};
    let shape = [8, 64, 14, 14];
    let values = |n: usize, k: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * k) % 101) as f32 / 50.0 - 1.0)
            .collect()
    };
    let n: usize = shape.iter().product();
    let gradient = |up: Upsample, device: &Device| -> Vec<f32> {
        let ad = device.clone().autodiff();
        let x = Tensor::<4>::from_data(TensorData::new(values(n, 31), shape), &ad).require_grad();
        let r = Tensor::<4>::from_data(TensorData::new(values(4 * n, 17), [8, 64, 28, 28]), &ad);
        let grads = (up(x.clone()) * r).sum().backward();
        x.grad(&grads).map(to_vec).unwrap_or_default()
    };
    let reference = gradient(upsample_nearest_2x, &Device::flex());
    type Upsample = fn(Tensor<4>) -> Tensor<4>;
    let cases: [(&str, Upsample); 2] = [
        (
            "Burn interpolate (nearest) backward",
            interpolate_nearest_2x,
        ),
        ("Lethe broadcast upsample backward", upsample_nearest_2x),
    ];
    let mut rows = vec![];
    for (what, up) in cases {
        for (side, dev) in [("cpu", Device::flex()), ("device", device.clone())] {
            let g = gradient(up, &dev);
            let (max_abs, _) = errors(&g, &reference);
            let off = g
                .iter()
                .zip(&reference)
                .filter(|(a, b)| (*a - *b).abs() > 1e-4)
                .count();
            rows.push((format!("{what} on the {side}"), max_abs, off));
        }
    }
    rows
}

/// The largest batch size, halving from `from`, at which one SISS training step of the
/// checkpoint runs on `device` without the backend panicking (a GPU out of memory); `None`
/// when not even batch 1 does (the device may need a restart after the failure).
pub fn fitting_batch(checkpoint: &Path, device: &Device, from: usize) -> Option<usize> {
    let mut batch = from.max(1);
    loop {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let spec = CheckSpec {
                batch,
                ..CheckSpec::quick(checkpoint)
            };
            let side = Side::load(&spec, device).ok()?;
            let inputs = Inputs::new(&side.ckpt, batch, &side.device);
            side.siss_step(&inputs, batch).ok()
        }));
        if matches!(attempt, Ok(Some(_))) {
            return Some(batch);
        }
        if batch == 1 {
            return None;
        }
        batch /= 2;
    }
}
