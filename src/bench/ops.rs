//! `lethe bench ops`: where one training step of the demo UNet spends its time, per op.
//!
//! The convolutions and group norms of one forward are recorded off the model itself
//! ([`record_layer_calls`]); each distinct call is then replayed in isolation on the same
//! backend — its forward, the gradient with respect to its input, the gradient with respect
//! to its weights — and multiplied by how often the forward makes it. What the whole step
//! takes beyond these (element-wise adds, concatenation, upsampling, the time embedding, the
//! loss, Adam, autodiff bookkeeping) is the *rest*. Isolated timings miss cache effects
//! between neighbouring ops, so the parts are an estimate of the step, not a partition of it.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

use crate::diffusion::layers::{GroupNorm, Init, LayerCall, record_layer_calls};
use crate::diffusion::unet::{UNet, UNetConfig};

/// One distinct layer call and what it costs, in milliseconds per call (medians).
#[derive(Debug, Clone)]
pub struct OpTiming {
    pub call: LayerCall,
    /// How many times one UNet forward makes this call.
    pub count: usize,
    pub forward_ms: f64,
    pub input_grad_ms: f64,
    /// Weight and bias gradient (conv) or affine-parameter gradient (GroupNorm).
    pub weight_grad_ms: f64,
}

impl OpTiming {
    pub fn label(&self) -> String {
        match &self.call {
            LayerCall::Conv2d {
                input,
                weight,
                stride,
                ..
            } => format!(
                "conv {}×{} {}→{} @{}×{}{}",
                weight[2],
                weight[3],
                weight[1],
                weight[0],
                input[2],
                input[3],
                if *stride > 1 { " stride 2" } else { "" }
            ),
            LayerCall::GroupNorm { input, groups } => format!(
                "GroupNorm({groups})+SiLU {}ch @{}×{}",
                input[1], input[2], input[3]
            ),
        }
    }

    pub fn is_conv(&self) -> bool {
        matches!(self.call, LayerCall::Conv2d { .. })
    }
}

/// The calls one forward of `config`'s UNet makes at `batch`, with their counts, in order of
/// first appearance.
pub fn layer_calls(
    config: &UNetConfig,
    batch: usize,
    device: &Device,
) -> Result<Vec<(LayerCall, usize)>, String> {
    let model = UNet::new(config, 0, device)?;
    let (x, t, classes) = super::inputs(config, batch, device);
    let calls = record_layer_calls(|| {
        let _ = model.forward(x, t, classes);
    });
    let mut counts: Vec<(LayerCall, usize)> = vec![];
    for call in calls {
        match counts.iter_mut().find(|(c, _)| *c == call) {
            Some((_, n)) => *n += 1,
            None => counts.push((call, 1)),
        }
    }
    Ok(counts)
}

/// Times every distinct call of [`layer_calls`] (`runs` timed repetitions after one warm-up).
pub fn time_layer_calls(
    config: &UNetConfig,
    batch: usize,
    runs: usize,
    device: &Device,
) -> Result<Vec<OpTiming>, String> {
    Ok(layer_calls(config, batch, device)?
        .into_iter()
        .map(|(call, count)| {
            let [forward_ms, input_grad_ms, weight_grad_ms] = match &call {
                LayerCall::Conv2d {
                    input,
                    weight,
                    stride,
                    padding,
                } => time_conv(*input, *weight, *stride, *padding, runs, device),
                LayerCall::GroupNorm { input, groups } => {
                    time_group_norm_silu(*input, *groups, runs, device)
                }
            };
            OpTiming {
                call,
                count,
                forward_ms,
                input_grad_ms,
                weight_grad_ms,
            }
        })
        .collect())
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Forward, input-gradient and weight-gradient milliseconds of one convolution. Each
/// backward is timed alone (its forward runs before the clock starts), seeded with ones.
fn time_conv(
    input: [usize; 4],
    weight: [usize; 4],
    stride: usize,
    padding: usize,
    runs: usize,
    device: &Device,
) -> [f64; 3] {
    let ad = device.clone().autodiff();
    let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
    let x = random(input, &ad);
    let w = random(weight, &ad);
    let b = random([weight[0]], &ad);
    let forward = median_ms(runs, || {
        let start = Instant::now();
        let _ = conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone()).into_data();
        start.elapsed()
    });
    let backward = |track_input: bool| {
        median_ms(runs, || {
            let (x, w, b) = if track_input {
                (x.clone().require_grad(), w.clone(), b.clone())
            } else {
                (
                    x.clone(),
                    w.clone().require_grad(),
                    b.clone().require_grad(),
                )
            };
            let y = conv2d(x.clone(), w.clone(), Some(b), options.clone());
            let start = Instant::now();
            let grads = y.backward();
            let read = if track_input {
                x.grad(&grads)
            } else {
                w.grad(&grads)
            };
            let _ = read.map(|g| g.into_data());
            start.elapsed()
        })
    };
    [forward, backward(true), backward(false)]
}

/// GroupNorm followed by SiLU, as every resnet block and the output head use them.
fn time_group_norm_silu(
    input: [usize; 4],
    groups: usize,
    runs: usize,
    device: &Device,
) -> [f64; 3] {
    let ad = device.clone().autodiff();
    let norm = GroupNorm::new(&mut Init::new(0, &ad), groups, input[1], 1e-5);
    let x = random(input, &ad);
    let forward = median_ms(runs, || {
        let start = Instant::now();
        let _ = burn::tensor::activation::silu(norm.forward(x.clone())).into_data();
        start.elapsed()
    });
    let input_grad = median_ms(runs, || {
        let x = x.clone().require_grad();
        let y = burn::tensor::activation::silu(norm.forward(x.clone()));
        let start = Instant::now();
        let grads = y.backward();
        let _ = x.grad(&grads).map(|g| g.into_data());
        start.elapsed()
    });
    // The affine parameters are tracked by the module; with an untracked input the backward
    // computes only their gradients.
    [forward, input_grad, f64::NAN]
}

fn median_ms(runs: usize, mut once: impl FnMut() -> std::time::Duration) -> f64 {
    once();
    let times: Vec<f64> = (0..runs.max(1))
        .map(|_| once().as_secs_f64() * 1e3)
        .collect();
    super::median(times)
}

/// Sums of count × milliseconds per category, for the breakdown table.
pub fn category_totals(timings: &[OpTiming]) -> BTreeMap<&'static str, f64> {
    let mut totals = BTreeMap::new();
    for t in timings {
        let n = t.count as f64;
        let (fwd, dx, dw) = if t.is_conv() {
            (
                "conv forward",
                "conv input gradient",
                "conv weight gradient",
            )
        } else {
            (
                "GroupNorm+SiLU forward",
                "GroupNorm+SiLU backward",
                "GroupNorm+SiLU backward",
            )
        };
        *totals.entry(fwd).or_insert(0.0) += n * t.forward_ms;
        *totals.entry(dx).or_insert(0.0) += n * t.input_grad_ms;
        if t.weight_grad_ms.is_finite() {
            *totals.entry(dw).or_insert(0.0) += n * t.weight_grad_ms;
        }
    }
    totals
}
