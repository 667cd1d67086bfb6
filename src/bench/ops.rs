//! `lethe bench ops`: where one training step of a UNet spends its time, per op.
//!
//! The convolutions, group norms and attention blocks of one forward are recorded off the
//! model itself
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

use crate::diffusion::layers::{Attention, GroupNorm, Init, LayerCall, record_layer_calls};
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
            LayerCall::GroupNorm {
                input,
                groups,
                silu,
            } => format!(
                "GroupNorm({groups}){} {}ch @{}×{}",
                if *silu { "+SiLU" } else { "" },
                input[1],
                input[2],
                input[3]
            ),
            LayerCall::Attention { input, heads, .. } => format!(
                "attention block ({heads} head{}) {}ch @{}×{}",
                if *heads == 1 { "" } else { "s" },
                input[1],
                input[2],
                input[3]
            ),
        }
    }

    /// The profile's category of this call: `conv`, `GroupNorm+SiLU` or `attention`.
    pub fn category(&self) -> &'static str {
        match self.call {
            LayerCall::Conv2d { .. } => "conv",
            LayerCall::GroupNorm { .. } => "GroupNorm+SiLU",
            LayerCall::Attention { .. } => "attention",
        }
    }

    /// Floating-point operations of one forward of this call ([`forward_flops`]).
    pub fn forward_flops(&self) -> f64 {
        forward_flops(&self.call)
    }
}

/// Floating-point operations of one forward of `call` (multiply-adds count two):
/// the convolutions' and the attention block's matrix products. Normalisation and
/// element-wise work is left out, as peak-FLOP shares usually do.
pub fn forward_flops(call: &LayerCall) -> f64 {
    match call {
        LayerCall::Conv2d {
            input,
            weight,
            stride,
            padding,
        } => {
            let out = |side: usize| (side + 2 * padding - weight[2]) / stride + 1;
            let outputs = input[0] * weight[0] * out(input[2]) * out(input[3]);
            2.0 * outputs as f64 * (weight[1] * weight[2] * weight[3]) as f64
        }
        LayerCall::GroupNorm { .. } => 0.0,
        LayerCall::Attention { input, .. } => {
            let [b, c, h, w] = input.map(|v| v as f64);
            let tokens = h * w;
            // q, k, v and the output projection; qkᵀ and the weights times v.
            b * (4.0 * 2.0 * tokens * c * c + 2.0 * 2.0 * tokens * tokens * c)
        }
    }
}

/// Floating-point operations of one forward of `config`'s UNet at `batch` (its convolutions
/// and attention products).
pub fn unet_forward_flops(
    config: &UNetConfig,
    batch: usize,
    device: &Device,
) -> Result<f64, String> {
    Ok(layer_calls(config, batch, device)?
        .iter()
        .map(|(call, count)| *count as f64 * forward_flops(call))
        .sum())
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
                LayerCall::GroupNorm {
                    input,
                    groups,
                    silu,
                } => time_group_norm(*input, *groups, *silu, runs, device),
                LayerCall::Attention {
                    input,
                    heads,
                    groups,
                } => time_attention(*input, *heads, *groups, runs, device),
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

/// GroupNorm, followed by SiLU where `silu` (every resnet block and the output head), as a
/// training step runs them (under autodiff: the composed, differentiable form).
fn time_group_norm(
    input: [usize; 4],
    groups: usize,
    silu: bool,
    runs: usize,
    device: &Device,
) -> [f64; 3] {
    let ad = device.clone().autodiff();
    let norm = GroupNorm::new(&mut Init::new(0, &ad), groups, input[1], 1e-5);
    let apply = |x: Tensor<4>| {
        if silu {
            norm.forward_silu(x)
        } else {
            norm.forward(x)
        }
    };
    time_forward_and_backward(random(input, &ad), runs, apply)
}

/// A whole attention block (GroupNorm, q/k/v, softmax(qkᵀ/√d)·v, output projection,
/// residual). Its backward with a tracked input computes the parameters' gradients too, so
/// both are in the input-gradient figure.
fn time_attention(
    input: [usize; 4],
    heads: usize,
    groups: usize,
    runs: usize,
    device: &Device,
) -> [f64; 3] {
    let ad = device.clone().autodiff();
    let channels = input[1];
    let block = Attention::new(
        &mut Init::new(0, &ad),
        channels,
        channels / heads.max(1),
        groups,
        1e-5,
        1.0,
    );
    time_forward_and_backward(random(input, &ad), runs, |x| block.forward(x))
}

/// Forward and backward milliseconds of a parameterised layer on input `x`. The backward,
/// seeded with ones and timed alone, computes the input's gradient and the module's
/// tracked parameters' too, so both are in the second figure (the third is NaN).
fn time_forward_and_backward(
    x: Tensor<4>,
    runs: usize,
    apply: impl Fn(Tensor<4>) -> Tensor<4>,
) -> [f64; 3] {
    let forward = median_ms(runs, || {
        let start = Instant::now();
        let _ = apply(x.clone()).into_data();
        start.elapsed()
    });
    let backward = median_ms(runs, || {
        let x = x.clone().require_grad();
        let y = apply(x.clone());
        let start = Instant::now();
        let grads = y.backward();
        let _ = x.grad(&grads).map(|g| g.into_data());
        start.elapsed()
    });
    [forward, backward, f64::NAN]
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
        let (fwd, dx, dw) = match t.category() {
            "conv" => (
                "conv forward",
                "conv input gradient",
                "conv weight gradient",
            ),
            "attention" => (
                "attention block forward",
                "attention block backward",
                "attention block backward",
            ),
            _ => (
                "GroupNorm+SiLU forward",
                "GroupNorm+SiLU backward",
                "GroupNorm+SiLU backward",
            ),
        };
        *totals.entry(fwd).or_insert(0.0) += n * t.forward_ms;
        *totals.entry(dx).or_insert(0.0) += n * t.input_grad_ms;
        if t.weight_grad_ms.is_finite() {
            *totals.entry(dw).or_insert(0.0) += n * t.weight_grad_ms;
        }
    }
    totals
}

/// Floating-point operations of one training step: each call's forward products, and as
/// many again for each of its two gradients (input and weights).
pub fn training_step_flops(timings: &[OpTiming]) -> f64 {
    timings
        .iter()
        .map(|t| 3.0 * t.count as f64 * t.forward_flops())
        .sum()
}

/// This CPU's fp32 peak per thread in GFLOP/s, and how it was reckoned: the clock
/// `/proc/cpuinfo` reports times 32 FLOP per cycle — two 256-bit FMA pipes of 8 lanes, which
/// AVX2 cores of both vendors and AMD's Zen 4 (AVX-512 issued as two halves) have. Intel cores
/// with two 512-bit FMA units peak twice as high, so on them the share printed is an upper
/// bound. `None` where the clock cannot be read.
pub fn fp32_peak_per_thread() -> Option<(f64, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    const FLOP_PER_CYCLE: f64 = 32.0;
    Some((
        mhz / 1e3 * FLOP_PER_CYCLE,
        format!(
            "{:.2} GHz (/proc/cpuinfo) × {FLOP_PER_CYCLE} FLOP/cycle (two 256-bit FMA pipes)",
            mhz / 1e3
        ),
    ))
}
