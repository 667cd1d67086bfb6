//! Lethe patch: GroupNorm with an optional SiLU, fused into one kernel for inference.
//!
//! Burn has no group-norm operation, so a model composes it from reductions and element-wise
//! operations: on a diffusion UNet's forward that is seven to nine passes over each
//! activation tensor, each with a fresh buffer. Here each (image, group) slice — contiguous in
//! NCHW — is read twice for its mean and centred variance while it is cache-hot, and written
//! once as `silu((x − μ)·scale + β)` with per-channel `scale = γ/σ`.
//! Its backward (`group_norm_silu_backward_f32`, issue #29) recomputes the statistics and
//! makes two passes per slice, where Burn's autodiff of the composed form made a dozen.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use crate::ops::activation::sigmoid_f32;
use crate::{FlexTensor, Layout};

/// `silu(group_norm(input))` (or the plain group norm when `silu` is false) over an f32
/// tensor `[N, C, *spatial]`, with per-channel affine `gamma`, `beta` of length `C`.
/// Statistics are biased (divide by the group's element count), as PyTorch's
/// `nn.GroupNorm`; sums accumulate in f64 across 8-lane f32 partial sums.
///
/// # Panics
///
/// If a tensor is not f32, `input` has rank < 2, `groups` does not divide `C`, or `gamma`
/// or `beta` does not have `C` elements.
pub fn group_norm_silu_f32(
    input: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> FlexTensor {
    for (name, tensor) in [("input", &input), ("gamma", &gamma), ("beta", &beta)] {
        assert_eq!(
            tensor.dtype(),
            DType::F32,
            "group_norm_silu_f32: {name} must be f32"
        );
    }
    let input = input.to_contiguous();
    let gamma = gamma.to_contiguous();
    let beta = beta.to_contiguous();
    let shape = input.layout().shape().clone();
    assert!(shape.len() >= 2, "group_norm_silu_f32: input rank < 2");
    let channels = shape[1];
    assert!(
        groups > 0 && channels % groups == 0,
        "group_norm_silu_f32: {groups} groups do not divide {channels} channels"
    );
    let gamma: &[f32] = gamma.storage();
    let beta: &[f32] = beta.storage();
    assert!(
        gamma.len() == channels && beta.len() == channels,
        "group_norm_silu_f32: gamma/beta must have {channels} elements"
    );
    let spatial: usize = shape[2..].iter().product();
    let per_group = channels / groups;
    let group_len = per_group * spatial;
    let x: &[f32] = input.storage();
    let mut out = vec![0.0f32; x.len()];
    if group_len > 0 {
        let normalize = |(index, (y, x)): (usize, (&mut [f32], &[f32]))| {
            let first = (index % groups) * per_group;
            let channels = first..first + per_group;
            let affine = (&gamma[channels.clone()], &beta[channels]);
            normalize_group(x, y, affine.0, affine.1, spatial, epsilon, silu);
        };
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            out.par_chunks_mut(group_len)
                .zip(x.par_chunks(group_len))
                .enumerate()
                .for_each(normalize);
        }
        #[cfg(not(feature = "rayon"))]
        out.chunks_mut(group_len)
            .zip(x.chunks(group_len))
            .enumerate()
            .for_each(normalize);
    }
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(shape),
        DType::F32,
    )
}

widest_simd_fn! {
/// One (image, group) slice: `x` holds `gamma.len()` channels of `spatial` values each.
fn normalize_group(
    x: &[f32],
    y: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    spatial: usize,
    epsilon: f64,
    silu: bool,
) {
    let count = x.len() as f64;
    let mean = sum(x, |v| v) / count;
    let centre = mean as f32;
    let var = sum(x, |v| (v - centre) * (v - centre)) / count;
    let inv_std = 1.0 / (var + epsilon).sqrt();
    for ((xs, ys), (&g, &b)) in x
        .chunks_exact(spatial)
        .zip(y.chunks_exact_mut(spatial))
        .zip(gamma.iter().zip(beta))
    {
        // Centre before scaling: `x·scale + (β − μ·scale)` would cancel catastrophically
        // when σ is tiny next to |μ| (a one-element group has σ = 0, scale = γ/√ε).
        let scale = (g as f64 * inv_std) as f32;
        if silu {
            for (o, &v) in ys.iter_mut().zip(xs) {
                let a = (v - centre) * scale + b;
                *o = a * sigmoid_f32(a);
            }
        } else {
            for (o, &v) in ys.iter_mut().zip(xs) {
                *o = (v - centre) * scale + b;
            }
        }
    }
}
}

/// Σ f(x) in f64, from f32 partial sums over 8 independent lanes (so the loop vectorises)
/// flushed every 1024 elements (so rounding error stays that of a 128-term f32 sum).
#[inline(always)]
fn sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for block in x.chunks(1024) {
        let mut lanes = [0.0f32; 8];
        let mut octets = block.chunks_exact(8);
        for octet in &mut octets {
            for (lane, &v) in lanes.iter_mut().zip(octet) {
                *lane += f(v);
            }
        }
        let tail: f32 = octets.remainder().iter().map(|&v| f(v)).sum();
        total += lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// Σ a·f(b) in f64, accumulated as [`sum`] does.
#[inline(always)]
fn sum_of_products(a: &[f32], b: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for (a, b) in a.chunks(1024).zip(b.chunks(1024)) {
        let mut lanes = [0.0f32; 8];
        let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
        for (a8, b8) in (&mut a8).zip(&mut b8) {
            for lane in 0..8 {
                lanes[lane] += a8[lane] * f(b8[lane]);
            }
        }
        let tail: f32 = a8
            .remainder()
            .iter()
            .zip(b8.remainder())
            .map(|(&a, &b)| a * f(b))
            .sum();
        total += lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// The gradients `(d_input, d_gamma, d_beta)` of [`group_norm_silu_f32`] given its output's
/// gradient `d_out` (Lethe patch, issue #29). Per (image, group) slice the statistics and the
/// normalised values are recomputed from the input (nothing is kept from the forward), then
/// two passes: the gradient at the affine output `da = dy · silu'(a)` (stored in the input
/// gradient's slot) with its per-channel sums for γ and β and the group's two means, then
/// `dx = (γ·da − mean(γ·da) − x̂·mean(γ·da·x̂)) / σ`. γ and β gradients are summed over the
/// batch from per-image partial sums.
///
/// # Panics
///
/// As [`group_norm_silu_f32`], and if `d_out`'s shape is not the input's.
pub fn group_norm_silu_backward_f32(
    input: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    d_out: FlexTensor,
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    for (name, tensor) in [
        ("input", &input),
        ("gamma", &gamma),
        ("beta", &beta),
        ("d_out", &d_out),
    ] {
        assert_eq!(
            tensor.dtype(),
            DType::F32,
            "group_norm_silu_backward_f32: {name} must be f32"
        );
    }
    let shape = input.layout().shape().clone();
    assert_eq!(
        &shape,
        d_out.layout().shape(),
        "group_norm_silu_backward_f32: d_out's shape"
    );
    assert!(
        shape.len() >= 2,
        "group_norm_silu_backward_f32: input rank < 2"
    );
    let (images, channels) = (shape[0], shape[1]);
    assert!(
        groups > 0 && channels % groups == 0,
        "group_norm_silu_backward_f32: {groups} groups do not divide {channels} channels"
    );
    let (input, gamma, beta, d_out) = (
        input.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
        d_out.to_contiguous(),
    );
    let gamma: &[f32] = gamma.storage();
    let beta: &[f32] = beta.storage();
    assert!(
        gamma.len() == channels && beta.len() == channels,
        "group_norm_silu_backward_f32: gamma/beta must have {channels} elements"
    );
    let spatial: usize = shape[2..].iter().product();
    let per_group = channels / groups;
    let group_len = per_group * spatial;
    let (x, dy): (&[f32], &[f32]) = (input.storage(), d_out.storage());
    let mut dx = vec![0.0f32; x.len()];
    // Per (image, channel) partial sums of the γ and β gradients.
    let mut dgamma_parts = vec![0.0f32; images * channels];
    let mut dbeta_parts = vec![0.0f32; images * channels];
    if group_len > 0 {
        let one_group =
            |(index, ((dx, dgamma), dbeta)): (usize, ((&mut [f32], &mut [f32]), &mut [f32]))| {
                let first = (index % groups) * per_group;
                let affine = (
                    &gamma[first..first + per_group],
                    &beta[first..first + per_group],
                );
                let slice = index * group_len..(index + 1) * group_len;
                let (x, dy) = (&x[slice.clone()], &dy[slice]);
                let (gamma, beta) = affine;
                group_backward(
                    x, dy, dx, gamma, beta, dgamma, dbeta, spatial, epsilon, silu,
                );
            };
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            dx.par_chunks_mut(group_len)
                .zip(dgamma_parts.par_chunks_mut(per_group))
                .zip(dbeta_parts.par_chunks_mut(per_group))
                .enumerate()
                .for_each(one_group);
        }
        #[cfg(not(feature = "rayon"))]
        dx.chunks_mut(group_len)
            .zip(dgamma_parts.chunks_mut(per_group))
            .zip(dbeta_parts.chunks_mut(per_group))
            .enumerate()
            .for_each(one_group);
    }
    let over_images = |parts: Vec<f32>| -> Vec<f32> {
        let mut total = vec![0.0f32; channels];
        for image in parts.chunks_exact(channels.max(1)) {
            for (t, &p) in total.iter_mut().zip(image) {
                *t += p;
            }
        }
        total
    };
    let tensor = |values: Vec<f32>, shape: Shape| {
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(shape),
            DType::F32,
        )
    };
    let channel_shape = Shape::from(vec![channels]);
    (
        tensor(dx, shape),
        tensor(over_images(dgamma_parts), channel_shape.clone()),
        tensor(over_images(dbeta_parts), channel_shape),
    )
}

widest_simd_fn! {
/// One (image, group) slice of [`group_norm_silu_backward_f32`].
#[allow(clippy::too_many_arguments)]
fn group_backward(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    spatial: usize,
    epsilon: f64,
    silu: bool,
) {
    let count = x.len() as f64;
    let mean = sum(x, |v| v) / count;
    let centre = mean as f32;
    let var = sum(x, |v| (v - centre) * (v - centre)) / count;
    let inv_std = (1.0 / (var + epsilon).sqrt()) as f32;
    // Pass 1: da into dx's slot; the channel's γ/β gradients; Σ γ·da and Σ γ·da·x̂.
    let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
    for (c, ((xs, dys), das)) in x
        .chunks_exact(spatial)
        .zip(dy.chunks_exact(spatial))
        .zip(dx.chunks_exact_mut(spatial))
        .enumerate()
    {
        let (g, b) = (gamma[c], beta[c]);
        let affine_grad = |v: f32, d: f32| {
            let normalised = (v - centre) * inv_std;
            let a = normalised * g + b;
            if silu {
                let s = sigmoid_f32(a);
                d * (s + a * s * (1.0 - s))
            } else {
                d
            }
        };
        // The gradient at the affine output as a plain map (so the sigmoid vectorises), then
        // its two sums from eight independent lanes each (one running f32 sum is a
        // dependency chain the compiler may not reorder); the channel is cache-hot.
        for (da, (&v, &d)) in das.iter_mut().zip(xs.iter().zip(dys)) {
            *da = affine_grad(v, d);
        }
        let d_b = sum(das, |v| v) as f32;
        let d_g = sum_of_products(das, xs, |v| (v - centre) * inv_std) as f32;
        dgamma[c] = d_g;
        dbeta[c] = d_b;
        sum_g += (g * d_b) as f64;
        sum_gx += (g * d_g) as f64;
    }
    let mean_g = (sum_g / count) as f32;
    let mean_gx = (sum_gx / count) as f32;
    // Pass 2: dx = (γ·da − mean(γ·da) − x̂·mean(γ·da·x̂)) / σ.
    for (c, (xs, das)) in x
        .chunks_exact(spatial)
        .zip(dx.chunks_exact_mut(spatial))
        .enumerate()
    {
        let g = gamma[c];
        for (da, &v) in das.iter_mut().zip(xs) {
            let normalised = (v - centre) * inv_std;
            *da = (g * *da - mean_g - normalised * mean_gx) * inv_std;
        }
    }
}
}
