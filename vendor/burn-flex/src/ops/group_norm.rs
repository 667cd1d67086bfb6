//! Lethe patch: GroupNorm with an optional SiLU, fused into one kernel for inference.
//!
//! Burn has no group-norm operation, so a model composes it from reductions and element-wise
//! operations: on a diffusion UNet's forward that is seven to nine passes over each
//! activation tensor, each with a fresh buffer. Here each (image, group) slice — contiguous in
//! NCHW — is read twice for its mean and centred variance while it is cache-hot, and written
//! once as `silu((x − μ)·scale + β)` with per-channel `scale = γ/σ`.
//! There is no backward: training keeps the composed, differentiable form.

use alloc::vec;
use burn_backend::DType;
use burn_std::Bytes;

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
            normalize_group(x, y, affine, spatial, epsilon, silu);
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
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), DType::F32)
}

/// One (image, group) slice: `x` holds `gamma.len()` channels of `spatial` values each.
fn normalize_group(
    x: &[f32],
    y: &mut [f32],
    (gamma, beta): (&[f32], &[f32]),
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
