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
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

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
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        conv2d(x, self.weight.val(), Some(self.bias.val()), options)
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
        let weight = self.weight.val().transpose();
        burn::tensor::module::linear(x, weight, Some(self.bias.val()))
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
        let [b, c, h, w] = x.dims();
        let grouped = x.reshape([b, self.groups, (c / self.groups) * h * w]);
        let (var, mean) = grouped.clone().var_mean_bias(2);
        let normalized = (grouped - mean) / (var + self.eps).sqrt();
        let normalized = normalized.reshape([b, c, h, w]);
        normalized * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
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
        let residual = x.clone();
        let tokens = self
            .group_norm
            .forward(x)
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let head_dim = c / self.heads;
        let split = |t: Tensor<3>| t.reshape([b, h * w, self.heads, head_dim]).swap_dims(1, 2);
        let q = split(self.to_q.forward(tokens.clone()));
        let k = split(self.to_k.forward(tokens.clone()));
        let v = split(self.to_v.forward(tokens));
        let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f64).sqrt();
        let attended = softmax(scores, 3).matmul(v);
        let merged = attended.swap_dims(1, 2).reshape([b, h * w, c]);
        let out = self.to_out[0]
            .forward(merged)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        (out + residual) / self.rescale_output_factor
    }
}
