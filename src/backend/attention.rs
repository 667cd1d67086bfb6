//! Scaled dot-product attention through burn-flex's own kernels, forward and backward
//! (issue #29). Burn composes attention under autodiff from a matmul, a scale, a five-pass
//! softmax and a second matmul, each keeping a `[B, heads, T, T]` tensor alive for the
//! backward pass; on google/ddpm-cifar10-32's 16×16 attention that made the five blocks a
//! third of a training step. Here the forward is burn-flex's attention kernel and the
//! backward (`burn_flex::ops::attention_backward`, vendored patch) recomputes each head's
//! probabilities in cache instead of storing them.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, Tensor};

/// Backends with an attention of their own, forward and backward. Routed by Burn's
/// backend-extension macro; only burn-flex (plain and under autodiff) implements it, so
/// callers go through [`fused_attention`], which checks where the tensors live.
#[burn::backend::backend_extension(Flex, Autodiff)]
pub trait AttentionOps: burn::backend::Backend {
    /// `softmax(q·kᵀ·scale)·v` over `[B, heads, T, D]` tensors.
    fn scaled_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
}

impl AttentionOps for Flex {
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
        burn::backend::flex::ops::attention::attention(q, k, v, None, None, options)
    }
}

/// The backward pass: the inputs are kept (they are the layer's own q, k, v projections,
/// alive anyway) and the probabilities recomputed from them.
#[derive(Debug)]
struct ScaledAttentionBackward;

impl Backward<Flex, 3> for ScaledAttentionBackward {
    type State = (FloatTensor<Flex>, FloatTensor<Flex>, FloatTensor<Flex>, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (q, k, v, scale) = ops.state;
        let (dq, dk, dv) = burn::backend::flex::ops::attention_backward::attention_backward_f32(
            q,
            k,
            v,
            grad,
            scale as f32,
        );
        for (node, gradient) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, gradient);
            }
        }
    }
}

impl<C: CheckpointStrategy> AttentionOps for Autodiff<Flex, C> {
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
        let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => {
                let state = (q.clone(), k.clone(), v.clone(), scale);
                prep.finish(state, Flex::scaled_attention(q, k, v, scale))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::scaled_attention(q, k, v, scale)),
        }
    }
}

/// `softmax(q·kᵀ·scale)·v` through [`AttentionOps`] where the tensors live on burn-flex in
/// f32 (with or without autodiff); otherwise hands the inputs back for the caller to
/// compose (wgpu, a remote backend, bf16/f16 mixed precision).
#[allow(clippy::result_large_err)]
pub fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f64,
) -> Result<Tensor<4>, [Tensor<4>; 3]> {
    let on_flex_f32 = |t: &Tensor<4>| t.device() == Device::flex() && t.dtype() == DType::F32;
    if !(on_flex_f32(&q) && on_flex_f32(&k) && on_flex_f32(&v)) {
        return Err([q, k, v]);
    }
    let out = <Dispatch as AttentionOps>::scaled_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
    );
    Ok(Tensor::from_dispatch(out))
}
