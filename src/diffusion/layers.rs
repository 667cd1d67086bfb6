//! The few layers the UNet is built from, with PyTorch's parameter layouts and names
//! (`weight`, `bias`; Linear weights `[out, in]`), so that module paths are diffusers keys.
//!
//! Burn's own `nn::Linear` stores `[in, out]` and `nn::GroupNorm` calls its affine
//! parameters `gamma`/`beta`; owning these layers keeps checkpoint I/O a plain name match.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::precision::{in_f32, like};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// The shape of one heavy layer call, as `lethe bench ops` replays it in isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerCall {
    /// Input `[B, C, H, W]`, weight `[out, in, k, k]`, stride, padding.
    Conv2d {
        input: [usize; 4],
        weight: [usize; 4],
        stride: usize,
        padding: usize,
    },
    /// Input `[B, C, H, W]`, groups, whether SiLU follows.
    GroupNorm {
        input: [usize; 4],
        groups: usize,
        silu: bool,
    },
    /// A whole spatial self-attention block (its GroupNorm, q/k/v, softmax(qkᵀ/√d)·v, the
    /// output projection and the residual) on input `[B, C, H, W]`.
    Attention {
        input: [usize; 4],
        heads: usize,
        groups: usize,
    },
}

thread_local! {
    /// `Some` while [`record_layer_calls`] runs on this thread.
    static RECORDED: std::cell::RefCell<Option<Vec<LayerCall>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `work` and returns the convolutions, group norms and attention blocks it called, in
/// order (an attention block's own convolution-free insides are one call) — the
/// profile's list of what one UNet forward is made of, read off the model instead of
/// restated by hand.
pub fn record_layer_calls(work: impl FnOnce()) -> Vec<LayerCall> {
    RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
    work();
    RECORDED.with(|r| r.borrow_mut().take().unwrap_or_default())
}

fn note_call(call: impl FnOnce() -> LayerCall) {
    RECORDED.with(|r| {
        if let Some(calls) = r.borrow_mut().as_mut() {
            calls.push(call());
        }
    });
}

/// Seeded parameter initialisation on the CPU, so the same seed gives the same initial
/// model on every backend.
pub struct Init {
    rng: ChaCha8Rng,
    device: Device,
}

impl Init {
    pub fn new(seed: u64, device: &Device) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    /// PyTorch's default for conv/linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    fn uniform<const D: usize>(&mut self, shape: [usize; D], fan_in: usize) -> Tensor<D> {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    fn constant<const D: usize>(&self, shape: [usize; D], value: f32) -> Tensor<D> {
        Tensor::full(shape, value, &self.device)
    }

    /// N(0, 1), PyTorch's default for `nn.Embedding`.
    fn normal<const D: usize>(&mut self, shape: [usize; D]) -> Tensor<D> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| self.rng.sample(rand_distr::StandardNormal))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }
}

/// 2-D convolution, weight `[out, in, k, k]`, square kernel, symmetric padding.
#[derive(Module, Debug)]
pub struct Conv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn new(
        init: &mut Init,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        let fan_in = c_in * kernel * kernel;
        Self {
            weight: Param::from_tensor(init.uniform([c_out, c_in, kernel, kernel], fan_in)),
            bias: Param::from_tensor(init.uniform([c_out], fan_in)),
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        note_call(|| LayerCall::Conv2d {
            input: x.dims(),
            weight: self.weight.val().dims(),
            stride: self.stride,
            padding: self.padding,
        });
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        let (weight, bias) = (like(self.weight.val(), &x), like(self.bias.val(), &x));
        conv2d(x, weight, Some(bias), options)
    }
}

/// Affine map `y = x W^T + b`, weight `[out, in]` as in PyTorch.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    pub fn new(init: &mut Init, d_in: usize, d_out: usize) -> Self {
        Self {
            weight: Param::from_tensor(init.uniform([d_out, d_in], d_in)),
            bias: Param::from_tensor(init.uniform([d_out], d_in)),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let weight = like(self.weight.val(), &x).transpose();
        let bias = like(self.bias.val(), &x);
        burn::tensor::module::linear(x, weight, Some(bias))
    }
}

/// Lookup table `[num_embeddings, dim]`.
#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    pub fn new(init: &mut Init, n: usize, dim: usize) -> Self {
        Self {
            weight: Param::from_tensor(init.normal([n, dim])),
        }
    }

    /// `[B]` indices → `[B, dim]`.
    pub fn forward(&self, indices: Tensor<1, burn::tensor::Int>) -> Tensor<2> {
        self.weight.val().select(0, indices)
    }
}

/// GroupNorm over `[B, C, ...]` with per-channel affine `weight`/`bias` (PyTorch names).
#[derive(Module, Debug)]
pub struct GroupNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(init: &mut Init, groups: usize, channels: usize, eps: f64) -> Self {
        Self {
            weight: Param::from_tensor(init.constant([channels], 1.0)),
            bias: Param::from_tensor(init.constant([channels], 0.0)),
            groups,
            eps,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, false)
    }

    /// `silu(self.forward(x))`, as every resnet block and the output head use it.
    pub fn forward_silu(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, true)
    }

    /// The group norm, then SiLU when `silu`. Where the backend has kernels for it
    /// (`backend::fused_group_norm`: burn-flex in f32, for sampling and for training — one
    /// forward pass, and under autodiff one backward kernel that recomputes the statistics)
    /// that is what runs; otherwise it is composed from differentiable tensor operations,
    /// and a test holds both to the textbook formula, values and gradients.
    ///
    /// Under mixed precision the statistics are taken in f32 (`precision::in_f32`), as
    /// autocast does, and the result goes back to the input's dtype.
    fn forward_then(&self, x: Tensor<4>, silu: bool) -> Tensor<4> {
        note_call(|| LayerCall::GroupNorm {
            input: x.dims(),
            groups: self.groups,
            silu,
        });
        self.unrecorded(x, silu)
    }

    /// The same without noting the call (an attention block notes itself as a whole).
    fn unrecorded(&self, x: Tensor<4>, silu: bool) -> Tensor<4> {
        in_f32(x, |x| self.forward_f32(x, silu))
    }

    fn forward_f32(&self, x: Tensor<4>, silu: bool) -> Tensor<4> {
        let affine = (self.weight.val(), self.bias.val());
        match crate::backend::fused_group_norm(x, affine, self.groups, self.eps, silu) {
            Ok(fused) => fused,
            Err(x) if silu => burn::tensor::activation::silu(self.composed(x)),
            Err(x) => self.composed(x),
        }
    }

    /// The group norm from Burn's differentiable tensor operations.
    fn composed(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let g = self.groups;
        // Normalise and apply the affine map in one multiply-add over the big tensor: per
        // (image, channel) `scale = weight / std(group)` and `shift = bias - mean · scale`
        // are tiny, so the forward makes two full passes after the statistics instead of
        // four, and the backward correspondingly fewer (issue #6's profile).
        let grouped = x.reshape([b, g, c / g, h * w]);
        let stats = grouped.clone().reshape([b, g, (c / g) * h * w]);
        let (var, mean) = stats.var_mean_bias(2);
        let inv_std = (var + self.eps).sqrt().recip().reshape([b, g, 1, 1]);
        let scale = inv_std * like(self.weight.val(), &grouped).reshape([1, g, c / g, 1]);
        let shift = like(self.bias.val(), &grouped).reshape([1, g, c / g, 1])
            - mean.reshape([b, g, 1, 1]) * scale.clone();
        (grouped * scale + shift).reshape([b, c, h, w])
    }
}

/// Single-head-group spatial self-attention, diffusers' `Attention` as built for
/// `AttnDownBlock2D`/`UNetMidBlock2D`: GroupNorm → q,k,v → softmax(qk^T/sqrt(d)) v →
/// `to_out.0` → + residual, then divided by `rescale_output_factor`.
#[derive(Module, Debug)]
pub struct Attention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// diffusers keeps `[Linear, Dropout]` here; index 0 is the only parameterised one.
    pub to_out: Vec<Linear>,
    pub heads: usize,
    pub rescale_output_factor: f64,
}

impl Attention {
    pub fn new(
        init: &mut Init,
        channels: usize,
        head_dim: usize,
        groups: usize,
        eps: f64,
        rescale: f64,
    ) -> Self {
        Self {
            group_norm: GroupNorm::new(init, groups, channels, eps),
            to_q: Linear::new(init, channels, channels),
            to_k: Linear::new(init, channels, channels),
            to_v: Linear::new(init, channels, channels),
            to_out: vec![Linear::new(init, channels, channels)],
            heads: (channels / head_dim).max(1),
            rescale_output_factor: rescale,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        note_call(|| LayerCall::Attention {
            input: [b, c, h, w],
            heads: self.heads,
            groups: self.group_norm.groups,
        });
        let residual = x.clone();
        let tokens = self
            .group_norm
            .unrecorded(x, false)
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let head_dim = c / self.heads;
        let split = |t: Tensor<3>| t.reshape([b, h * w, self.heads, head_dim]).swap_dims(1, 2);
        let q = split(self.to_q.forward(tokens.clone()));
        let k = split(self.to_k.forward(tokens.clone()));
        let v = split(self.to_v.forward(tokens));
        let attended = attend(q, k, v, head_dim);
        let merged = attended.swap_dims(1, 2).reshape([b, h * w, c]);
        let out = self.to_out[0]
            .forward(merged)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        (out + residual) / self.rescale_output_factor
    }
}

/// `softmax(q·kᵀ/√d)·v` over `[B, heads, T, d]`: burn-flex's own attention kernels
/// (forward, and a backward that recomputes the probabilities instead of keeping
/// `[B, heads, T, T]` tensors) for f32 on the CPU; elsewhere composed from Burn's
/// differentiable operations, with the softmax in f32 under mixed precision, as autocast
/// runs it. A test holds the two to each other, values and gradients.
fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, head_dim: usize) -> Tensor<4> {
    let scale = 1.0 / (head_dim as f64).sqrt();
    match crate::backend::fused_attention(q, k, v, scale) {
        Ok(attended) => attended,
        Err([q, k, v]) => composed_attention(q, k, v, head_dim),
    }
}

fn composed_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, head_dim: usize) -> Tensor<4> {
    let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f64).sqrt();
    in_f32(scores, |s| softmax(s, 3)).matmul(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The textbook formulation the fused scale/shift form replaced.
    fn textbook_group_norm(x: Tensor<4>, norm: &GroupNorm) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let grouped = x.reshape([b, norm.groups, (c / norm.groups) * h * w]);
        let (var, mean) = grouped.clone().var_mean_bias(2);
        let normalized = ((grouped - mean) / (var + norm.eps).sqrt()).reshape([b, c, h, w]);
        normalized * norm.weight.val().reshape([1, c, 1, 1]) + norm.bias.val().reshape([1, c, 1, 1])
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The forward and all three gradients (input, γ, β) of GroupNorm, with and without the
    /// SiLU, against Burn's autodiff of the textbook formula: both the path training takes on
    /// the CPU (burn-flex's fused kernels, forward and backward) and the composed form other
    /// backends take.
    #[test]
    fn group_norm_forward_and_gradients_equal_the_textbook_formula() {
        let device = crate::backend::training_device(crate::backend::BackendChoice::Cpu).unwrap();
        // Channels of 30 values (three 8-lane blocks and a tail) and of 81 (ten and one).
        for (shape, groups) in [([3, 12, 5, 6], 4), ([2, 16, 9, 9], 2)] {
            group_norm_gradients_equal_the_textbook_formula(shape, groups, &device);
        }
    }

    fn group_norm_gradients_equal_the_textbook_formula(
        shape: [usize; 4],
        groups: usize,
        device: &Device,
    ) {
        let norm = random_norm(groups, shape[1], device);
        // Off-centre input, so a variance formula that cancels would show.
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.3, 2.0), device);
        let upstream = Tensor::<4>::random(shape, Distribution::Default, device);
        let run = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            let x = x.clone().require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap();
            let dw = norm.weight.val().grad(&grads).unwrap();
            let db = norm.bias.val().grad(&grads).unwrap();
            [y.inner().flatten::<1>(0, 3), dx.flatten::<1>(0, 3), dw, db]
        };
        for silu in [false, true] {
            let then = |y: Tensor<4>| {
                if silu {
                    burn::tensor::activation::silu(y)
                } else {
                    y
                }
            };
            let reference = run(&|x| then(textbook_group_norm(x, &norm)));
            let fused = run(&|x| norm.forward_then(x, silu));
            let composed = run(&|x| then(norm.composed(x)));
            for (path, result) in [("fused", fused), ("composed", composed)] {
                let names = ["output", "d input", "d weight", "d bias"];
                for (what, (ours, expected)) in
                    names.iter().zip(result.into_iter().zip(reference.clone()))
                {
                    let diff = max_abs_diff(ours, expected);
                    assert!(diff < 1e-4, "{shape:?} {path} silu {silu} {what}: {diff}");
                }
            }
        }
    }

    /// A GroupNorm with random (non-identity) affine parameters.
    fn random_norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
        let mut norm = GroupNorm::new(&mut Init::new(0, device), groups, channels, 1e-5);
        let normal =
            |mean, std| Tensor::random([channels], Distribution::Normal(mean, std), device);
        norm.weight = Param::from_tensor(normal(1.0, 0.5));
        norm.bias = Param::from_tensor(normal(0.0, 0.5));
        norm
    }

    #[test]
    fn fused_group_norm_on_flex_equals_the_composed_form() {
        use crate::backend::{BackendChoice, fused_group_norm};
        let device = crate::backend::device(BackendChoice::Cpu).unwrap();
        let shapes = [
            ([2, 32, 28, 28], 8),
            ([3, 12, 5, 6], 4),
            ([2, 6, 7, 7], 1),
            ([1, 8, 1, 1], 8),
        ];
        for (shape, groups) in shapes {
            let norm = random_norm(groups, shape[1], &device);
            // Off-centre input, so a variance formula that cancels (E[x²] − E[x]²) would show.
            let x = Tensor::<4>::random(shape, Distribution::Normal(3.0, 2.0), &device);
            for silu in [false, true] {
                let affine = (norm.weight.val(), norm.bias.val());
                let fused = fused_group_norm(x.clone(), affine, groups, norm.eps, silu)
                    .unwrap_or_else(|_| panic!("burn-flex f32 inference takes the fused kernel"));
                let mut reference = textbook_group_norm(x.clone(), &norm);
                if silu {
                    reference = burn::tensor::activation::silu(reference);
                }
                let diff = max_abs_diff(fused, reference);
                assert!(diff < 2e-5, "{shape:?} groups {groups} silu {silu}: {diff}");
            }
        }
    }

    #[test]
    fn group_norm_on_a_low_dtype_is_handed_back_to_be_composed() {
        let device = crate::backend::training_device(crate::backend::BackendChoice::Cpu).unwrap();
        let norm = random_norm(2, 4, &device);
        let x = Tensor::<4>::random([1, 4, 3, 3], Distribution::Default, &device)
            .cast(burn::tensor::DType::BF16);
        let affine = (norm.weight.val(), norm.bias.val());
        let handed_back = crate::backend::fused_group_norm(x, affine, 2, 1e-5, true);
        assert!(handed_back.is_err(), "the kernels are f32 only");
    }

    /// burn-flex's attention (forward kernel, and the vendored backward that recomputes the
    /// probabilities) against Burn's autodiff of the composed textbook form: the values and
    /// the gradients of q, k and v. Shapes: the UNet's (equal token counts, several heads),
    /// keys longer than queries, and a long sequence that takes burn-flex's tiled (flash)
    /// forward.
    #[test]
    fn flex_attention_equals_the_composed_form_values_and_gradients() {
        let device = crate::backend::training_device(crate::backend::BackendChoice::Cpu).unwrap();
        let cases = [
            ([2, 4, 16, 8], 16),
            ([1, 2, 9, 5], 23),
            ([1, 1, 600, 4], 600),
        ];
        for ([b, h, tq, d], tk) in cases {
            let random = |shape: [usize; 4]| {
                Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.5), &device)
            };
            let (q, k, v) = (
                random([b, h, tq, d]),
                random([b, h, tk, d]),
                random([b, h, tk, d]),
            );
            let upstream = random([b, h, tq, d]);
            let run = |attention: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>| {
                let (q, k, v) = (
                    q.clone().require_grad(),
                    k.clone().require_grad(),
                    v.clone().require_grad(),
                );
                let out = attention(q.clone(), k.clone(), v.clone());
                let grads = (out.clone() * upstream.clone()).sum().backward();
                let grad = |t: &Tensor<4>| t.grad(&grads).unwrap();
                [out.inner(), grad(&q), grad(&k), grad(&v)]
            };
            let fused = run(&|q, k, v| {
                crate::backend::fused_attention(q, k, v, 1.0 / (d as f64).sqrt())
                    .unwrap_or_else(|_| panic!("f32 on burn-flex takes the fused attention"))
            });
            let composed = run(&|q, k, v| composed_attention(q, k, v, d));
            let names = ["output", "dq", "dk", "dv"];
            for (what, (ours, reference)) in names.iter().zip(fused.into_iter().zip(composed)) {
                let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
                let diff = max_abs_diff(ours, reference) / scale;
                assert!(diff < 2e-5, "[{b} {h} {tq} {d}] tk {tk} {what}: {diff}");
            }
        }
    }
}
