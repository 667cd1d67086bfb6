//! A UNet shaped like diffusers' `UNet2DModel`, whose module paths are diffusers'
//! safetensors keys (`down_blocks.0.resnets.1.conv1.weight`, …).

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::layers::{Attention, Conv2d, Embedding, GroupNorm, Init, Linear};
use super::precision::{Precision, like};

/// diffusers' `unet/config.json` for `UNet2DModel`. Unknown keys are ignored, so real
/// diffusers configs load; a missing key takes `UNet2DModel`'s default ([`Default`]), as in
/// diffusers; values Lethe cannot honour are rejected by [`UNetConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub sample_size: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub time_embedding_type: String,
    pub freq_shift: f64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub act_fn: String,
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: Option<usize>,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub resnet_time_scale_shift: String,
    pub add_attention: bool,
    pub class_embed_type: Option<String>,
    pub num_class_embeds: Option<usize>,
    pub downsample_type: String,
    pub upsample_type: String,
    pub mid_block_type: Option<String>,
    pub time_embedding_dim: Option<usize>,
    pub dropout: f64,
    /// Lethe's addition: the class index reserved as the classifier-free-guidance null
    /// class (trained with label dropout). diffusers ignores this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lethe_null_class: Option<usize>,
}

impl Default for UNetConfig {
    /// diffusers' `UNet2DModel.__init__` defaults (except `sample_size`, which diffusers
    /// leaves unset and Lethe needs: 32) and no attention head size (one head per block).
    /// diffusers' own default is 8: a diffusers-saved config always names it, but a
    /// hand-written one that omits it differs (README, *Public checkpoints*).
    fn default() -> Self {
        let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Self {
            class_name: "UNet2DModel".into(),
            sample_size: 32,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types: strings(&[
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ]),
            up_block_types: strings(&[
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ]),
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            act_fn: "silu".into(),
            attention_head_dim: None,
            norm_num_groups: Some(32),
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            mid_block_type: Some("UNetMidBlock2D".into()),
            time_embedding_dim: None,
            dropout: 0.0,
            lethe_null_class: None,
        }
    }
}

/// Widest in / out / block channel count a config may ask for.
const MAX_CHANNELS: usize = 8192;
const MAX_LAYERS_PER_BLOCK: usize = 32;
/// Largest image side, as for decoded images (`data::MAX_DIMENSION`).
const MAX_SAMPLE_SIZE: usize = 8192;
const MAX_CLASS_EMBEDS: usize = 1_000_000;
/// Most parameters a config may describe: 2 billion f32 values are 8 GB before gradients
/// and Adam's two moments; the largest published UNet2DModel (ddpm-ema-church-256) has
/// 114M. Each bound above alone still allows a model no machine can allocate.
const MAX_PARAMETERS: u64 = 2_000_000_000;

impl UNetConfig {
    /// `[channels, height, width]` of the images this model denoises.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.in_channels, self.sample_size, self.sample_size]
    }

    /// The demo model: class-conditional MNIST (10 digits + T-shirt + null), 28×28, no
    /// attention (it trains on a 2-core CPU; attention is covered by the golden tests).
    pub fn demo_mnist() -> Self {
        Self {
            sample_size: 28,
            in_channels: 1,
            out_channels: 1,
            down_block_types: vec!["DownBlock2D".into(); 3],
            up_block_types: vec!["UpBlock2D".into(); 3],
            block_out_channels: vec![32, 64, 64],
            layers_per_block: 1,
            norm_num_groups: Some(8),
            add_attention: false,
            num_class_embeds: Some(12),
            lethe_null_class: Some(11),
            // No attention anywhere; its saved config says `null`.
            attention_head_dim: None,
            ..Self::default()
        }
    }

    /// google/ddpm-cifar10-32's architecture (Ho et al.'s CIFAR-10 DDPM as diffusers ships
    /// it; 35.7M parameters), for benchmarks with random weights.
    pub fn ddpm_cifar10() -> Self {
        let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Self {
            sample_size: 32,
            freq_shift: 1.0,
            flip_sin_to_cos: false,
            down_block_types: strings(&[
                "DownBlock2D",
                "AttnDownBlock2D",
                "DownBlock2D",
                "DownBlock2D",
            ]),
            up_block_types: strings(&["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]),
            block_out_channels: vec![128, 256, 256, 256],
            downsample_padding: 0,
            norm_eps: 1e-6,
            // Its config.json says `null`: one head per attention block.
            attention_head_dim: None,
            ..Self::default()
        }
    }

    /// Every setting Lethe does not implement is an error here, not a silent difference.
    /// Sizes are bounded too (see the constants below the type).
    pub fn validate(&self) -> Result<(), String> {
        let n = self.block_out_channels.len();
        if n == 0 {
            return Err("block_out_channels is empty".into());
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(format!(
                "down_block_types ({}) and up_block_types ({}) must each have one entry per block_out_channels ({n})",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for t in &self.down_block_types {
            if t != "DownBlock2D" && t != "AttnDownBlock2D" {
                return Err(format!(
                    "down block type {t:?} is not supported (DownBlock2D, AttnDownBlock2D)"
                ));
            }
        }
        for t in &self.up_block_types {
            if t != "UpBlock2D" && t != "AttnUpBlock2D" {
                return Err(format!(
                    "up block type {t:?} is not supported (UpBlock2D, AttnUpBlock2D)"
                ));
            }
        }
        // A stranger's config must not describe tensors too big to allocate: Lethe would
        // abort building the model (found by fuzzing: out_channels = 3777777777777). The
        // bounds are far above any published diffusers UNet (widest: 1280 channels).
        let widths = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
        ];
        let blocks = self
            .block_out_channels
            .iter()
            .map(|&c| ("block_out_channels", c));
        for (key, value) in widths.into_iter().chain(blocks) {
            if value == 0 {
                return Err(format!("{key} is 0"));
            }
            if value > MAX_CHANNELS {
                return Err(format!(
                    "{key} {value} is more than the {MAX_CHANNELS} channels Lethe builds"
                ));
            }
        }
        let counts = [
            (
                "layers_per_block",
                self.layers_per_block,
                MAX_LAYERS_PER_BLOCK,
            ),
            (
                "num_class_embeds",
                self.num_class_embeds.unwrap_or(0),
                MAX_CLASS_EMBEDS,
            ),
        ];
        for (key, value, most) in counts {
            if value > most {
                return Err(format!(
                    "{key} {value} is more than the {most} Lethe builds"
                ));
            }
        }
        if self.class_name != "UNet2DModel" {
            return Err(format!(
                "_class_name {:?}: only UNet2DModel is supported",
                self.class_name
            ));
        }
        if self.time_embedding_type != "positional" {
            return Err(format!(
                "time_embedding_type {:?}: only \"positional\" is supported",
                self.time_embedding_type
            ));
        }
        if self.act_fn != "silu" {
            return Err(format!(
                "act_fn {:?}: only \"silu\" is supported",
                self.act_fn
            ));
        }
        if self.resnet_time_scale_shift != "default" {
            return Err(format!(
                "resnet_time_scale_shift {:?}: only \"default\" is supported",
                self.resnet_time_scale_shift
            ));
        }
        if self.class_embed_type.is_some() {
            return Err("class_embed_type is not supported (use num_class_embeds)".into());
        }
        if self.downsample_type != "conv" || self.upsample_type != "conv" {
            return Err(format!(
                "downsample_type {:?} / upsample_type {:?}: only \"conv\" is supported",
                self.downsample_type, self.upsample_type
            ));
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2D") {
            return Err(format!(
                "mid_block_type {:?}: only \"UNetMidBlock2D\" is supported",
                self.mid_block_type
            ));
        }
        if self.time_embedding_dim.is_some() {
            return Err(
                "time_embedding_dim is not supported (the embedding is 4 × block_out_channels[0])"
                    .into(),
            );
        }
        if self.downsample_padding > 1 {
            return Err(format!(
                "downsample_padding {} is not supported (0 or 1)",
                self.downsample_padding
            ));
        }
        self.validate_divisors()?;
        if let (Some(null), Some(n)) = (self.lethe_null_class, self.num_class_embeds)
            && null >= n
        {
            return Err(format!(
                "lethe_null_class {null} must be below num_class_embeds {n}"
            ));
        }
        let parameters = self.parameter_count();
        if parameters > MAX_PARAMETERS {
            return Err(format!(
                "the model would have {parameters} parameters, more than the {MAX_PARAMETERS} Lethe builds \
                 (block_out_channels {:?}, layers_per_block {})",
                self.block_out_channels, self.layers_per_block
            ));
        }
        Ok(())
    }

    /// Sizes that divide others must be non-zero and divide them: a zero or a remainder
    /// here is a division by zero or a failed reshape later (found by reading after the
    /// fuzzing: `norm_num_groups: 0` panicked inside `validate` itself).
    fn validate_divisors(&self) -> Result<(), String> {
        if self.sample_size == 0 || self.sample_size > MAX_SAMPLE_SIZE {
            return Err(format!(
                "sample_size {} is outside 1..={MAX_SAMPLE_SIZE}",
                self.sample_size
            ));
        }
        // Each level but the last halves the image and the up path doubles it back, so
        // the skip connections only line up when every halving is exact.
        let halvings = self.block_out_channels.len() - 1;
        if halvings >= usize::BITS as usize || !self.sample_size.is_multiple_of(1 << halvings) {
            return Err(format!(
                "sample_size {} is not divisible by 2^{halvings} ({} levels in block_out_channels, each but the last halving the image)",
                self.sample_size,
                halvings + 1
            ));
        }
        // Channel counts were checked with their bounds in `validate`.
        let sizes = [
            ("norm_num_groups", self.norm_num_groups),
            ("attn_norm_num_groups", self.attn_norm_num_groups),
            ("attention_head_dim", self.attention_head_dim),
            // Without a resnet a level never reaches its width (found by fuzzing).
            ("layers_per_block", Some(self.layers_per_block)),
            ("num_class_embeds", self.num_class_embeds),
        ];
        for (key, value) in sizes {
            if value == Some(0) {
                return Err(format!("{key} is 0"));
            }
        }
        let groups = self.resnet_groups();
        for &c in &self.block_out_channels {
            if !c.is_multiple_of(groups) {
                return Err(format!(
                    "block_out_channels {c} is not divisible by norm_num_groups {groups}"
                ));
            }
        }
        let mid = *self.block_out_channels.last().unwrap();
        if let Some(attn_groups) = self.attn_norm_num_groups
            && self.add_attention
            && !mid.is_multiple_of(attn_groups)
        {
            return Err(format!(
                "block_out_channels {mid} (the mid block) is not divisible by attn_norm_num_groups {attn_groups}"
            ));
        }
        // diffusers builds `channels / head_dim` heads of `head_dim` each; with a remainder
        // its attention is narrower than the block, which Lethe does not implement.
        if let Some(head_dim) = self.attention_head_dim {
            for c in self.attention_channels() {
                if !c.is_multiple_of(head_dim) {
                    return Err(format!(
                        "attention_head_dim {head_dim} does not divide block_out_channels {c} (an attention block's width)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Widths of the blocks that hold attention (down, up and mid).
    fn attention_channels(&self) -> Vec<usize> {
        let boc = &self.block_out_channels;
        let down = self.down_block_types.iter().zip(boc.iter());
        let up = self.up_block_types.iter().zip(boc.iter().rev());
        let mut widths: Vec<usize> = down
            .chain(up)
            .filter(|(kind, _)| kind.starts_with("Attn"))
            .map(|(_, &c)| c)
            .collect();
        if self.add_attention {
            widths.extend(boc.last());
        }
        widths
    }

    /// Parameters [`UNet::new`] allocates for this config, counted without building it
    /// (saturating: a hostile config cannot overflow the count). Walks the same layout as
    /// `UNet::new`; a unit test holds the two equal.
    pub fn parameter_count(&self) -> u64 {
        let n = |v: usize| v as u64;
        let conv = |c_in: usize, c_out: usize, k: usize| {
            n(c_out).saturating_mul(n(c_in).saturating_mul(n(k * k)).saturating_add(1))
        };
        let linear = |d_in: usize, d_out: usize| conv(d_in, d_out, 1);
        let norm = |c: usize| n(c).saturating_mul(2);
        let temb = n(self.block_out_channels[0]).saturating_mul(4) as usize;
        let resnet = |c_in: usize, c_out: usize| {
            let shortcut = if c_in == c_out {
                0
            } else {
                conv(c_in, c_out, 1)
            };
            [
                norm(c_in),
                conv(c_in, c_out, 3),
                linear(temb, c_out),
                norm(c_out),
            ]
            .into_iter()
            .chain([conv(c_out, c_out, 3), shortcut])
            .fold(0u64, u64::saturating_add)
        };
        let attention = |c: usize| norm(c).saturating_add(linear(c, c).saturating_mul(4));
        let boc = &self.block_out_channels;
        let last = boc.len() - 1;
        let mut total = [
            conv(self.in_channels, boc[0], 3),
            linear(boc[0], temb),
            linear(temb, temb),
            n(self.num_class_embeds.unwrap_or(0)).saturating_mul(n(temb)),
            norm(boc[0]),
            conv(boc[0], self.out_channels, 3),
        ]
        .into_iter()
        .fold(0u64, u64::saturating_add);
        let mut add = |count: u64| total = total.saturating_add(count);
        for (i, kind) in self.down_block_types.iter().enumerate() {
            let c_out = boc[i];
            for layer in 0..self.layers_per_block {
                add(resnet(
                    if layer == 0 {
                        boc[i.saturating_sub(1)]
                    } else {
                        c_out
                    },
                    c_out,
                ));
                if kind == "AttnDownBlock2D" {
                    add(attention(c_out));
                }
            }
            if i != last {
                add(conv(c_out, c_out, 3));
            }
        }
        add(resnet(boc[last], boc[last]).saturating_mul(2));
        if self.add_attention {
            add(attention(boc[last]));
        }
        let reversed: Vec<usize> = boc.iter().rev().copied().collect();
        for (i, kind) in self.up_block_types.iter().enumerate() {
            let (prev_out, c_out) = (reversed[i.saturating_sub(1)], reversed[i]);
            let c_in = reversed[(i + 1).min(last)];
            let layers = self.layers_per_block + 1;
            for layer in 0..layers {
                let skip = if layer + 1 == layers { c_in } else { c_out };
                let input = if layer == 0 { prev_out } else { c_out };
                add(resnet(input.saturating_add(skip), c_out));
                if kind == "AttnUpBlock2D" {
                    add(attention(c_out));
                }
            }
            if i != last {
                add(conv(c_out, c_out, 3));
            }
        }
        total
    }

    fn resnet_groups(&self) -> usize {
        self.norm_num_groups.unwrap_or(32)
    }

    fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }

    /// Classes a user may condition on (the null class excluded).
    pub fn num_real_classes(&self) -> Option<usize> {
        self.num_class_embeds
            .map(|n| n - usize::from(self.lethe_null_class.is_some()))
    }
}

/// diffusers' `ResnetBlock2D` (time_embedding_norm "default").
#[derive(Module, Debug)]
pub struct ResnetBlock {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Linear,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
    pub output_scale_factor: f64,
}

impl ResnetBlock {
    fn new(
        init: &mut Init,
        c_in: usize,
        c_out: usize,
        temb: usize,
        groups: usize,
        eps: f64,
        scale: f64,
    ) -> Self {
        Self {
            norm1: GroupNorm::new(init, groups, c_in, eps),
            conv1: Conv2d::new(init, c_in, c_out, 3, 1, 1),
            time_emb_proj: Linear::new(init, temb, c_out),
            norm2: GroupNorm::new(init, groups, c_out, eps),
            conv2: Conv2d::new(init, c_out, c_out, 3, 1, 1),
            conv_shortcut: (c_in != c_out).then(|| Conv2d::new(init, c_in, c_out, 1, 1, 0)),
            output_scale_factor: scale,
        }
    }

    fn forward(&self, x: Tensor<4>, temb: Tensor<2>) -> Tensor<4> {
        let h = self.conv1.forward(self.norm1.forward_silu(x.clone()));
        let [b, c] = [h.dims()[0], h.dims()[1]];
        let h = h + self.time_emb_proj.forward(silu(temb)).reshape([b, c, 1, 1]);
        let h = self.conv2.forward(self.norm2.forward_silu(h));
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        (skip + h) / self.output_scale_factor
    }
}

/// Stride-2 3×3 conv. diffusers' `downsample_padding = 0` pads right/bottom by one first.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub pad_right_bottom: bool,
}

impl Downsample {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.pad_right_bottom {
            x.pad((0, 1, 0, 1), burn::tensor::ops::PadMode::Constant(0.0))
        } else {
            x
        };
        self.conv.forward(x)
    }
}

/// Nearest ×2 upsampling, then a 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample {
    pub conv: Conv2d,
}

impl Upsample {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(upsample_nearest_2x(x))
    }
}

/// Nearest-neighbour ×2 upsampling (diffusers' `F.interpolate(scale_factor=2.0,
/// mode="nearest")`) as a broadcast: each pixel expanded into a 2×2 block. Its gradient is
/// then the sum over each block, which every backend computes exactly.
///
/// Not Burn's `interpolate`: its nearest backward on wgpu (cubek-interpolate 0.3.1) finds
/// each input pixel's window as `ceil(i·out/in)` in *floating point*; a GPU division that
/// is not correctly rounded (NVIDIA's Vulkan driver) turns an exact 28.0 into 28.000002,
/// and rows of the gradient are dropped or counted twice. Measured on an H200: every
/// parameter gradient upstream of an upsampler off by 10–80 % (`lethe doctor`); lavapipe,
/// whose division is exact, never showed it.
pub fn upsample_nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, h * 2, w * 2])
}

/// Burn's own nearest upsampling, kept for `lethe doctor --probe-upsample`, which shows
/// the backend defect [`upsample_nearest_2x`] avoids.
pub fn interpolate_nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let options =
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h * 2, w * 2]);
    interpolate(x, options)
}

/// `DownBlock2D` or `AttnDownBlock2D` (then `attentions` is non-empty).
#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock>,
    pub attentions: Vec<Attention>,
    pub downsamplers: Vec<Downsample>,
}

impl DownBlock {
    fn forward(&self, mut h: Tensor<4>, temb: &Tensor<2>, skips: &mut Vec<Tensor<4>>) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h);
            }
            skips.push(h.clone());
        }
        for down in &self.downsamplers {
            h = down.forward(h);
            skips.push(h.clone());
        }
        h
    }
}

/// `UpBlock2D` or `AttnUpBlock2D`: each resnet eats one skip connection.
#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock>,
    pub attentions: Vec<Attention>,
    pub upsamplers: Vec<Upsample>,
}

impl UpBlock {
    fn forward(&self, mut h: Tensor<4>, temb: &Tensor<2>, skips: &mut Vec<Tensor<4>>) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .expect("UNet skip stack matches the block layout by construction");
            h = resnet.forward(Tensor::cat(vec![h, skip], 1), temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h);
            }
        }
        for up in &self.upsamplers {
            h = up.forward(h);
        }
        h
    }
}

/// `UNetMidBlock2D`: resnet, (attention, resnet).
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock>,
    pub attentions: Vec<Attention>,
}

impl MidBlock {
    fn forward(&self, h: Tensor<4>, temb: &Tensor<2>) -> Tensor<4> {
        let mut h = self.resnets[0].forward(h, temb.clone());
        for (i, resnet) in self.resnets.iter().enumerate().skip(1) {
            if let Some(attn) = self.attentions.get(i - 1) {
                h = attn.forward(h);
            }
            h = resnet.forward(h, temb.clone());
        }
        h
    }
}

/// diffusers' `TimestepEmbedding`: linear → SiLU → linear.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

#[derive(Module, Debug)]
pub struct UNet {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub class_embedding: Option<Embedding>,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    /// Sinusoid frequencies `[half]`, fixed by the config (not a parameter).
    #[module(skip)]
    pub time_freqs: Vec<f32>,
    pub flip_sin_to_cos: bool,
    pub center_input_sample: bool,
    /// The dtype `forward` computes in (mixed precision; `precision.rs`). Parameters stay
    /// f32 whatever this says; it is a run setting, not part of a checkpoint.
    #[module(skip)]
    pub precision: Precision,
}

impl UNet {
    /// A freshly initialised model (PyTorch default init, seeded on the CPU).
    pub fn new(config: &UNetConfig, seed: u64, device: &Device) -> Result<Self, String> {
        config.validate()?;
        let mut init = Init::new(seed, device);
        let init = &mut init;
        let boc = &config.block_out_channels;
        let groups = config.resnet_groups();
        let eps = config.norm_eps;
        let temb = config.time_embed_dim();
        let head_dim = |c: usize| config.attention_head_dim.unwrap_or(c);
        let attn_groups = config.attn_norm_num_groups.unwrap_or(groups);

        let conv_in = Conv2d::new(init, config.in_channels, boc[0], 3, 1, 1);
        let time_embedding = TimestepEmbedding {
            linear_1: Linear::new(init, boc[0], temb),
            linear_2: Linear::new(init, temb, temb),
        };
        let class_embedding = config
            .num_class_embeds
            .map(|n| Embedding::new(init, n, temb));

        let mut down_blocks = Vec::new();
        let mut c_out = boc[0];
        for (i, kind) in config.down_block_types.iter().enumerate() {
            let c_in = c_out;
            c_out = boc[i];
            let is_final = i + 1 == boc.len();
            let with_attn = kind == "AttnDownBlock2D";
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for layer in 0..config.layers_per_block {
                let cin = if layer == 0 { c_in } else { c_out };
                resnets.push(ResnetBlock::new(init, cin, c_out, temb, groups, eps, 1.0));
                if with_attn {
                    attentions.push(Attention::new(
                        init,
                        c_out,
                        head_dim(c_out),
                        groups,
                        eps,
                        1.0,
                    ));
                }
            }
            let downsamplers = if is_final {
                vec![]
            } else {
                let padding = config.downsample_padding;
                vec![Downsample {
                    conv: Conv2d::new(init, c_out, c_out, 3, 2, padding),
                    pad_right_bottom: padding == 0,
                }]
            };
            down_blocks.push(DownBlock {
                resnets,
                attentions,
                downsamplers,
            });
        }

        let c_mid = *boc.last().unwrap();
        let scale = config.mid_block_scale_factor;
        let mid_block = MidBlock {
            resnets: vec![
                ResnetBlock::new(init, c_mid, c_mid, temb, groups, eps, scale),
                ResnetBlock::new(init, c_mid, c_mid, temb, groups, eps, scale),
            ],
            attentions: if config.add_attention {
                vec![Attention::new(
                    init,
                    c_mid,
                    config.attention_head_dim.unwrap_or(c_mid),
                    attn_groups,
                    eps,
                    scale,
                )]
            } else {
                vec![]
            },
        };

        let reversed: Vec<usize> = boc.iter().rev().copied().collect();
        let mut up_blocks = Vec::new();
        let mut c_out = reversed[0];
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let prev_out = c_out;
            c_out = reversed[i];
            let c_in = reversed[(i + 1).min(boc.len() - 1)];
            let is_final = i + 1 == boc.len();
            let with_attn = kind == "AttnUpBlock2D";
            let num_layers = config.layers_per_block + 1;
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for layer in 0..num_layers {
                let skip_channels = if layer + 1 == num_layers { c_in } else { c_out };
                let resnet_in = if layer == 0 { prev_out } else { c_out };
                resnets.push(ResnetBlock::new(
                    init,
                    resnet_in + skip_channels,
                    c_out,
                    temb,
                    groups,
                    eps,
                    1.0,
                ));
                if with_attn {
                    attentions.push(Attention::new(
                        init,
                        c_out,
                        head_dim(c_out),
                        groups,
                        eps,
                        1.0,
                    ));
                }
            }
            let upsamplers = if is_final {
                vec![]
            } else {
                vec![Upsample {
                    conv: Conv2d::new(init, c_out, c_out, 3, 1, 1),
                }]
            };
            up_blocks.push(UpBlock {
                resnets,
                attentions,
                upsamplers,
            });
        }

        let out_groups = config
            .norm_num_groups
            .unwrap_or_else(|| (boc[0] / 4).min(32));
        let conv_norm_out = GroupNorm::new(init, out_groups, boc[0], eps);
        let conv_out = Conv2d::new(init, boc[0], config.out_channels, 3, 1, 1);

        Ok(Self {
            conv_in,
            time_embedding,
            class_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            time_freqs: timestep_frequencies(boc[0], config.freq_shift),
            flip_sin_to_cos: config.flip_sin_to_cos,
            center_input_sample: config.center_input_sample,
            precision: Precision::F32,
        })
    }

    /// This model computing in `precision` from now on (its parameters stay f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Noise prediction `eps_theta(x_t, t[, class])`. `timesteps` holds one value per
    /// batch element; `classes` is required when the model has a class embedding.
    /// Inputs and output are f32 whatever `self.precision` is.
    pub fn forward(
        &self,
        x: Tensor<4>,
        timesteps: Tensor<1>,
        classes: Option<Tensor<1, Int>>,
    ) -> Tensor<4> {
        let x = if self.center_input_sample {
            x * 2.0 - 1.0
        } else {
            x
        };
        // Every layer follows its input's dtype, so casting the two inputs here is what
        // switches the whole network to the compute dtype.
        let x = x.cast(self.precision.compute_dtype());
        let mut emb = self.time_embedding_of(timesteps);
        if let (Some(table), Some(classes)) = (&self.class_embedding, classes) {
            emb = emb.clone() + like(table.forward(classes), &emb);
        }

        let mut h = self.conv_in.forward(x);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = block.forward(h, &emb, &mut skips);
        }
        h = self.mid_block.forward(h, &emb);
        for block in &self.up_blocks {
            h = block.forward(h, &emb, &mut skips);
        }
        let h = self.conv_norm_out.forward_silu(h);
        self.conv_out.forward(h).cast(FloatDType::F32)
    }

    /// Sinusoidal projection then the MLP; `[B] → [B, 4·C0]`.
    fn time_embedding_of(&self, timesteps: Tensor<1>) -> Tensor<2> {
        let device = timesteps.device();
        let half = self.time_freqs.len();
        let freqs: Tensor<2> =
            Tensor::from_data(TensorData::new(self.time_freqs.clone(), [1, half]), &device);
        let [b] = timesteps.dims();
        let args = timesteps.reshape([b, 1]) * freqs;
        let (sin, cos) = (args.clone().sin(), args.cos());
        // The sinusoids stay f32 (arguments reach ~1000 rad); the MLP runs in the compute dtype.
        let projected = if self.flip_sin_to_cos {
            Tensor::cat(vec![cos, sin], 1)
        } else {
            Tensor::cat(vec![sin, cos], 1)
        }
        .cast(self.precision.compute_dtype());
        let hidden = silu(self.time_embedding.linear_1.forward(projected));
        self.time_embedding.linear_2.forward(hidden)
    }

    pub fn has_class_embedding(&self) -> bool {
        self.class_embedding.is_some()
    }
}

/// diffusers' `get_timestep_embedding` frequencies: exp(-ln(10000)·i/(half − shift)).
fn timestep_frequencies(dim: usize, freq_shift: f64) -> Vec<f32> {
    let half = dim / 2;
    // In f32 as diffusers does, so the golden test compares like with like.
    let log_max_period = -(10000f32.ln());
    (0..half)
        .map(|i| (log_max_period * i as f32 / (half as f32 - freq_shift as f32)).exp())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_parameters(config: &UNetConfig) -> u64 {
        UNet::new(config, 0, &Device::flex()).unwrap().num_params() as u64
    }

    #[test]
    fn the_parameter_count_matches_the_built_model() {
        let mixed = UNetConfig {
            sample_size: 16,
            block_out_channels: vec![16, 32, 48],
            down_block_types: vec![
                "AttnDownBlock2D".into(),
                "DownBlock2D".into(),
                "AttnDownBlock2D".into(),
            ],
            up_block_types: vec![
                "AttnUpBlock2D".into(),
                "UpBlock2D".into(),
                "AttnUpBlock2D".into(),
            ],
            layers_per_block: 3,
            norm_num_groups: Some(8),
            downsample_padding: 0,
            attention_head_dim: Some(8),
            num_class_embeds: Some(5),
            in_channels: 2,
            out_channels: 4,
            ..UNetConfig::default()
        };
        let one_level = UNetConfig {
            block_out_channels: vec![8],
            down_block_types: vec!["DownBlock2D".into()],
            up_block_types: vec!["UpBlock2D".into()],
            norm_num_groups: Some(4),
            add_attention: false,
            ..UNetConfig::default()
        };
        for config in [
            UNetConfig::demo_mnist(),
            UNetConfig::ddpm_cifar10(),
            mixed,
            one_level,
        ] {
            assert_eq!(
                config.parameter_count(),
                built_parameters(&config),
                "{:?}",
                config.block_out_channels
            );
        }
        assert_eq!(UNetConfig::ddpm_cifar10().parameter_count(), 35_746_307);
    }

    #[test]
    fn a_config_too_big_to_allocate_is_refused_by_its_parameter_count() {
        // Every single key within its own bound, the whole far beyond any machine.
        let huge = UNetConfig {
            block_out_channels: vec![8192; 4],
            down_block_types: vec!["AttnDownBlock2D".into(); 4],
            up_block_types: vec!["AttnUpBlock2D".into(); 4],
            layers_per_block: 32,
            num_class_embeds: Some(1_000_000),
            ..UNetConfig::default()
        };
        let error = huge.validate().unwrap_err();
        assert!(
            error.contains("parameters, more than the 2000000000"),
            "{error}"
        );
        assert!(error.contains("block_out_channels [8192, 8192"), "{error}");
    }

    #[test]
    fn zero_and_non_dividing_sizes_are_refused_naming_the_key() {
        type Change = fn(&mut UNetConfig);
        let cases: [(&str, Change); 12] = [
            ("layers_per_block is 0", |c| c.layers_per_block = 0),
            ("num_class_embeds is 0", |c| c.num_class_embeds = Some(0)),
            ("sample_size 36 is not divisible by 2^3", |c| {
                c.sample_size = 36
            }),
            ("norm_num_groups is 0", |c| c.norm_num_groups = Some(0)),
            ("attn_norm_num_groups is 0", |c| {
                c.attn_norm_num_groups = Some(0)
            }),
            ("attention_head_dim is 0", |c| {
                c.attention_head_dim = Some(0)
            }),
            ("block_out_channels is 0", |c| c.block_out_channels[1] = 0),
            ("in_channels is 0", |c| c.in_channels = 0),
            ("sample_size 0 is outside", |c| c.sample_size = 0),
            ("sample_size 100000 is outside", |c| c.sample_size = 100_000),
            (
                "attention_head_dim 5 does not divide block_out_channels 256",
                |c| c.attention_head_dim = Some(5),
            ),
            ("not divisible by attn_norm_num_groups 7", |c| {
                c.attn_norm_num_groups = Some(7)
            }),
        ];
        for (expected, change) in cases {
            let mut config = UNetConfig::ddpm_cifar10();
            change(&mut config);
            let error = config.validate().unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let heads_of_64 = UNetConfig {
            attention_head_dim: Some(64),
            ..UNetConfig::ddpm_cifar10()
        };
        assert_eq!(heads_of_64.validate(), Ok(()));
    }
}
