//! Operations Lethe runs through burn-flex kernels of its own, forward and backward
//! (issues #6 and #29): GroupNorm(+SiLU) and scaled dot-product attention. Burn composes
//! both from generic tensor operations, and under autodiff each of those keeps its own
//! full-size intermediate for the backward pass — on a diffusion UNet a dozen passes over
//! every activation for a GroupNorm+SiLU, and `[B, heads, T, T]` score tensors for
//! attention (134 MB each on google/ddpm-cifar10-32 at batch 16, where the five attention
//! blocks took a third of a training step). Here each has one forward kernel and one backward
//! kernel (vendored burn-flex patch: `ops::group_norm`, `ops::attention_backward`) that
//! recompute what they need from the inputs instead of storing it.
//!
//! Burn's backend-extension macro routes a dispatch tensor to the backend it lives on; only
//! burn-flex implements these (plain, and under autodiff through the backward passes
//! below), so callers go through the checked wrappers [`fused_group_norm`] and
//! [`fused_attention`], which hand the inputs back elsewhere (wgpu, a remote backend, a low
//! dtype) for the caller to compose the differentiable form.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::ops::{attention, attention_backward, group_norm};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, Tensor};

#[burn::backend::backend_extension(Flex, Autodiff)]
pub trait FusedOps: burn::backend::Backend {
    /// `silu(group_norm(input))`, or the plain group norm when `silu` is false.
    fn group_norm_silu(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self>;

    /// `softmax(q·kᵀ·scale)·v` over `[B, heads, T, D]` tensors.
    fn scaled_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
}

impl FusedOps for Flex {
    fn group_norm_silu(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        group_norm::group_norm_silu_f32(input, gamma, beta, groups, epsilon, silu)
    }

    fn scaled_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        let options = AttentionModuleOptions {
            scale: Some(scale),
            softcap: None,
            is_causal: false,
        };
        attention::attention(q, k, v, None, None, options)
    }
}

/// GroupNorm(+SiLU)'s backward: the input and affine parameters are kept (the input is the
/// previous layer's output, alive anyway) and the statistics recomputed from them.
#[derive(Debug)]
struct GroupNormSiluBackward;

impl Backward<Flex, 3> for GroupNormSiluBackward {
    type State = (
        [FloatTensor<Flex>; 3],
        usize, // groups
        f64,   // epsilon
        bool,  // silu
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let ([input, gamma, beta], groups, epsilon, silu) = ops.state;
        let (d_input, d_gamma, d_beta) = group_norm::group_norm_silu_backward_f32(
            input, gamma, beta, grad, groups, epsilon, silu,
        );
        register(
            grads,
            ops.parents.map(|p| p.map(|node| node.id)),
            [d_input, d_gamma, d_beta],
        );
    }
}

/// Attention's backward: q, k and v are kept (the layer's own projections, alive anyway)
/// and each head's probabilities recomputed from them.
#[derive(Debug)]
struct ScaledAttentionBackward;

impl Backward<Flex, 3> for ScaledAttentionBackward {
    type State = ([FloatTensor<Flex>; 3], f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let ([q, k, v], scale) = ops.state;
        let (dq, dk, dv) = attention_backward::attention_backward_f32(q, k, v, grad, scale as f32);
        register(
            grads,
            ops.parents.map(|p| p.map(|node| node.id)),
            [dq, dk, dv],
        );
    }
}

/// Hands each gradient to its input's node, where that input is tracked.
fn register<const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    gradients: [FloatTensor<Flex>; N],
) {
    for (node, gradient) in parents.into_iter().zip(gradients) {
        if let Some(id) = node {
            grads.register::<Flex>(id, gradient);
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn group_norm_silu(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let prepared = GroupNormSiluBackward
            .prepare::<C>([input.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let [input, gamma, beta] = [input, gamma, beta].map(|t| t.into_primitive());
        let forward = |[input, gamma, beta]: [FloatTensor<Flex>; 3]| {
            Flex::group_norm_silu(input, gamma, beta, groups, epsilon, silu)
        };
        match prepared {
            OpsKind::Tracked(prep) => {
                let kept = [input.clone(), gamma.clone(), beta.clone()];
                prep.finish((kept, groups, epsilon, silu), forward([input, gamma, beta]))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward([input, gamma, beta])),
        }
    }

    fn scaled_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        let prepared = ScaledAttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful();
        let [q, k, v] = [q, k, v].map(|t| t.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => {
                let kept = [q.clone(), k.clone(), v.clone()];
                prep.finish((kept, scale), Flex::scaled_attention(q, k, v, scale))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::scaled_attention(q, k, v, scale)),
        }
    }
}

/// Whether these kernels can take `t`: f32 on burn-flex, with or without autodiff (device
/// equality ignores autodiff).
fn on_flex_f32<const D: usize>(t: &Tensor<D>) -> bool {
    t.device() == Device::flex() && t.dtype() == DType::F32
}

/// GroupNorm (then SiLU when `silu`) of an `[B, C, H, W]` tensor through burn-flex's kernels
/// where `x` lives there in f32; otherwise hands `x` back for the caller to compose the
/// differentiable form.
// The `Err` is the caller's own input handed back unchanged, not an error to propagate, so
// boxing it (what clippy suggests for a large error) would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn fused_group_norm(
    x: Tensor<4>,
    (gamma, beta): (Tensor<1>, Tensor<1>),
    groups: usize,
    epsilon: f64,
    silu: bool,
) -> Result<Tensor<4>, Tensor<4>> {
    if !(on_flex_f32(&x) && on_flex_f32(&gamma) && on_flex_f32(&beta)) {
        return Err(x);
    }
    let out = <Dispatch as FusedOps>::group_norm_silu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        groups,
        epsilon,
        silu,
    );
    Ok(Tensor::from_dispatch(out))
}

/// `softmax(q·kᵀ·scale)·v` through burn-flex's kernels where the tensors live there in f32;
/// otherwise hands them back for the caller to compose.
#[allow(clippy::result_large_err)]
pub fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f64,
) -> Result<Tensor<4>, [Tensor<4>; 3]> {
    if !(on_flex_f32(&q) && on_flex_f32(&k) && on_flex_f32(&v)) {
        return Err([q, k, v]);
    }
    let out = <Dispatch as FusedOps>::scaled_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
    );
    Ok(Tensor::from_dispatch(out))
}
