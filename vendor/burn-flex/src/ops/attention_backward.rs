//! Lethe patch: the gradient of scaled dot-product attention, `out = softmax(q·kᵀ·scale)·v`.
//!
//! Burn's autodiff composes attention from a matmul, a scale, a softmax (max, subtract, exp,
//! sum, divide) and a second matmul, keeping every intermediate score tensor of
//! `[B, H, Tq, Tk]` alive for the backward pass: on google/ddpm-cifar10-32's 16×16 attention
//! (32 heads of 8 channels, 256 tokens, batch 16) that is 134 MB per intermediate, and the
//! blocks took a third of a training step (Lethe issue #29's profile). Here, as in flash
//! attention's backward, each (batch, head) recomputes its `Tq × Tk` probabilities in a
//! cache-resident scratch from q and k, and derives all three gradients from it:
//!
//! ```text
//! P  = softmax(q·kᵀ·scale)            dP = d_out·vᵀ
//! dS = P ⊙ (dP − rowsum(P ⊙ dP))      dq = dS·k·scale,  dk = dSᵀ·q·scale,  dv = Pᵀ·d_out
//! ```
//!
//! The forward stays `ops::attention::attention`. f32 only; Lethe composes other dtypes.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use crate::ops::activation::exp_nonpositive_f32;
use crate::{FlexTensor, Layout};

/// Gradients `(dq, dk, dv)` of `softmax(q·kᵀ·scale)·v` given the output's gradient `d_out`.
/// Shapes: q `[B, H, Tq, D]`, k `[B, H, Tk, D]`, v `[B, H, Tk, Dv]`, d_out `[B, H, Tq, Dv]`.
///
/// # Panics
///
/// If a tensor is not f32 or the shapes do not agree.
pub fn attention_backward_f32(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    d_out: FlexTensor,
    scale: f32,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    for (name, t) in [("q", &q), ("k", &k), ("v", &v), ("d_out", &d_out)] {
        assert_eq!(
            t.dtype(),
            DType::F32,
            "attention_backward_f32: {name} must be f32"
        );
        assert_eq!(
            t.layout().shape().len(),
            4,
            "attention_backward_f32: {name} must be 4-D"
        );
    }
    let dims = |t: &FlexTensor| -> [usize; 4] {
        let s = t.layout().shape();
        [s[0], s[1], s[2], s[3]]
    };
    let ([b, h, tq, d], [_, _, tk, _], [_, _, _, dv]) = (dims(&q), dims(&k), dims(&v));
    assert!(
        dims(&k) == [b, h, tk, d] && dims(&v) == [b, h, tk, dv] && dims(&d_out) == [b, h, tq, dv],
        "attention_backward_f32: q {:?}, k {:?}, v {:?}, d_out {:?} do not agree",
        dims(&q),
        dims(&k),
        dims(&v),
        dims(&d_out)
    );
    let (q, k, v, d_out) = (
        q.to_contiguous(),
        k.to_contiguous(),
        v.to_contiguous(),
        d_out.to_contiguous(),
    );
    let sizes = HeadSizes { tq, tk, d, dv };
    let heads = b * h;
    let mut dq = vec![0.0f32; heads * tq * d];
    let mut dk = vec![0.0f32; heads * tk * d];
    let mut dvv = vec![0.0f32; heads * tk * dv];
    if heads > 0 && tq > 0 && tk > 0 {
        let inputs = (
            q.storage::<f32>(),
            k.storage::<f32>(),
            v.storage::<f32>(),
            d_out.storage::<f32>(),
        );
        let one_head = |scratch: &mut Scratch,
                        (index, ((dq, dk), d_v)): (
            usize,
            ((&mut [f32], &mut [f32]), &mut [f32]),
        )| {
            fn slice(all: &[f32], index: usize, len: usize) -> &[f32] {
                &all[index * len..(index + 1) * len]
            }
            let head = HeadInputs {
                q: slice(inputs.0, index, tq * d),
                k: slice(inputs.1, index, tk * d),
                v: slice(inputs.2, index, tk * dv),
                d_out: slice(inputs.3, index, tq * dv),
            };
            head_backward(&head, sizes, scale, scratch, (dq, dk, d_v));
        };
        let (dq_chunks, dk_chunks, dv_chunks) = (tq * d, tk * d, tk * dv);
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            dq.par_chunks_mut(dq_chunks.max(1))
                .zip(dk.par_chunks_mut(dk_chunks.max(1)))
                .zip(dvv.par_chunks_mut(dv_chunks.max(1)))
                .enumerate()
                .for_each_init(|| Scratch::new(sizes), one_head);
        }
        #[cfg(not(feature = "rayon"))]
        {
            let mut scratch = Scratch::new(sizes);
            dq.chunks_mut(dq_chunks.max(1))
                .zip(dk.chunks_mut(dk_chunks.max(1)))
                .zip(dvv.chunks_mut(dv_chunks.max(1)))
                .enumerate()
                .for_each(|item| one_head(&mut scratch, item));
        }
    }
    let tensor = |values: Vec<f32>, shape: [usize; 4]| {
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
    };
    (
        tensor(dq, [b, h, tq, d]),
        tensor(dk, [b, h, tk, d]),
        tensor(dvv, [b, h, tk, dv]),
    )
}

#[derive(Clone, Copy)]
struct HeadSizes {
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
}

/// One (batch, head)'s row-major inputs.
struct HeadInputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    d_out: &'a [f32],
}

/// Per-thread `Tq × Tk` buffers: the probabilities and their gradient.
struct Scratch {
    p: Vec<f32>,
    dp: Vec<f32>,
}

impl Scratch {
    fn new(s: HeadSizes) -> Self {
        Self {
            p: vec![0.0; s.tq * s.tk],
            dp: vec![0.0; s.tq * s.tk],
        }
    }
}

fn head_backward(
    x: &HeadInputs,
    HeadSizes { tq, tk, d, dv }: HeadSizes,
    scale: f32,
    Scratch { p, dp }: &mut Scratch,
    (dq, dk, d_v): (&mut [f32], &mut [f32], &mut [f32]),
) {
    // The layouts below are (row stride, column stride) of each operand as the product reads
    // it; a transposed operand is the same buffer with the strides swapped.
    let row_major = |cols: usize| [cols as isize, 1];
    let transposed = |cols: usize| [1, cols as isize];
    // S = q·kᵀ, then P = softmax(S·scale) row by row.
    gemm_f32(
        [tq, tk, d],
        (p, tk),
        (x.q, row_major(d)),
        (x.k, transposed(d)),
    );
    for row in p.chunks_exact_mut(tk) {
        softmax_scaled_row(row, scale);
    }
    // dP = d_out·vᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)), folded with the scale into dp.
    gemm_f32(
        [tq, tk, dv],
        (dp, tk),
        (x.d_out, row_major(dv)),
        (x.v, transposed(dv)),
    );
    for (p_row, dp_row) in p.chunks_exact(tk).zip(dp.chunks_exact_mut(tk)) {
        let weighted: f32 = p_row.iter().zip(dp_row.iter()).map(|(a, b)| a * b).sum();
        for (g, &pr) in dp_row.iter_mut().zip(p_row) {
            *g = pr * (*g - weighted) * scale;
        }
    }
    // dq = dS·k, dk = dSᵀ·q, dv = Pᵀ·d_out.
    gemm_f32(
        [tq, d, tk],
        (dq, d),
        (dp, row_major(tk)),
        (x.k, row_major(d)),
    );
    gemm_f32(
        [tk, d, tq],
        (dk, d),
        (dp, transposed(tk)),
        (x.q, row_major(d)),
    );
    gemm_f32(
        [tk, dv, tq],
        (d_v, dv),
        (p, transposed(tk)),
        (x.d_out, row_major(dv)),
    );
}

/// `row = softmax(row·scale)` for a positive scale, with a branch-free `exp` so it vectorises.
fn softmax_scaled_row(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = exp_nonpositive_f32(*v * scale - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// `dst[m × n] = lhs[m × k] · rhs[k × n]` (overwriting `dst`, row stride `dst_rs`); each
/// operand is a slice with its (row, column) strides.
fn gemm_f32(
    [m, n, k]: [usize; 3],
    (dst, dst_rs): (&mut [f32], usize),
    (lhs, [lhs_rs, lhs_cs]): (&[f32], [isize; 2]),
    (rhs, [rhs_rs, rhs_cs]): (&[f32], [isize; 2]),
) {
    let reach = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows.saturating_sub(1)) as isize * rs + (cols.saturating_sub(1)) as isize * cs
    };
    assert!(m == 0 || n == 0 || (n <= dst_rs && (m - 1) * dst_rs + n <= dst.len()));
    assert!(reach(m, k, lhs_rs, lhs_cs) < lhs.len() as isize);
    assert!(reach(k, n, rhs_rs, rhs_cs) < rhs.len() as isize);
    // SAFETY: the assertions above keep every element the product touches inside the
    // slices; `dst` is exclusively borrowed and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
