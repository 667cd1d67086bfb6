//! Lethe patch: 2-D f32 convolution forward and both backward passes as one im2col + GEMM
//! per image, on NCHW data, with the column matrix in `(c_in, ky, kx) × (oy, ox)` order.
//!
//! Why: burn-backend's default weight gradient runs a *forward* convolution with batch and
//! channels swapped, whose "kernel" is the whole output gradient (e.g. 28×28) and whose
//! output is 3×3 — burn-flex then builds a 9-row im2col of the entire batch per input channel
//! and calls GEMM with N = 9, the worst shape it has. The input gradient goes through a
//! general transposed convolution. Here all three passes share one column layout:
//!
//! - forward:        `y_n  [Cout, P] = W [Cout, K] · col_n [K, P]` (+ bias)
//! - input gradient: `dcol [K, P]    = Wᵀ [K, Cout] · dy_n [Cout, P]`, then col2im (scatter-add)
//! - weight gradient:`dW   [Cout, K] += dy_n [Cout, P] · col_nᵀ [P, K]`, summed over images
//!
//! with `K = C_in · kh · kw` and `P = H_out · W_out` (per group: the group's rows of the
//! column matrix are contiguous, so a group is a sub-block of each GEMM). `dW`'s `[Cout, K]`
//! is the weight's own `[Cout, C_in, kh, kw]` layout, so no permutation is needed. Images run
//! in parallel (rayon); each GEMM is single-threaded. f32 and f64 run natively; the caller
//! converts half precision to f32, and for bf16 tensors on CPUs with AVX-512-BF16 asks for
//! [`Products::Bf16`]: the same im2col in f32 (of values that are exactly bf16) and GEMMs on
//! `gemm_bf16`'s native kernel. The 3×3 stride-1 convolutions that take the Winograd path
//! take it for bf16 tensors too, in f32: F(4×4, 3×3) does 4× fewer products than the bf16
//! GEMM's twice-as-fast ones (round 5: the demo's bf16 step measured faster), and its f32
//! result, rounded to bf16 once, is as close as the bf16 GEMM's. (Its transformed tiles are no
//! bf16 values, so they are never rounded to bf16 on the way.)

use alloc::vec;
use alloc::vec::Vec;

use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};
use rayon::prelude::*;

use super::conv2d_winograd::{self as winograd, Conv3x3};
use super::gemm_bf16;
use crate::{FlexTensor, Layout};

/// The element types this path computes in.
pub(crate) trait Real:
    burn_std::Element
    + bytemuck::Pod
    + num_traits::Zero
    + num_traits::One
    + num_traits::Float
    + core::ops::AddAssign
    + Send
    + Sync
    + 'static
{
    const DTYPE: DType;
}

impl Real for f32 {
    const DTYPE: DType = DType::F32;
}

impl Real for f64 {
    const DTYPE: DType = DType::F64;
}

/// How a convolution's GEMMs multiply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Products {
    /// In the element type itself (f32 or f64), Winograd where it pays.
    Exact,
    /// f32 operands rounded to bf16, products and sums in f32 on the native bf16 GEMM (only
    /// for `T = f32`, only where [`gemm_bf16::available`]).
    Bf16,
}

/// Sizes of one convolution, in the names the GEMMs use.
#[derive(Clone, Copy)]
struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    groups: usize,
    stride: [usize; 2],
    /// Zeros added before the first row / column (the end padding only sets the output size).
    pad: [usize; 2],
    dilation: [usize; 2],
    h_out: usize,
    w_out: usize,
}

impl Geometry {
    fn new(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> Self {
        let [kh, kw] = [w_shape[2], w_shape[3]];
        let pad = options.padding_begin();
        let pad_end = options.padding_end();
        let out = |i: usize, size: usize, k: usize| {
            (size + pad[i] + pad_end[i] - options.dilation[i] * (k - 1) - 1) / options.stride[i] + 1
        };
        Self {
            batch: x_shape[0],
            c_in: x_shape[1],
            h: x_shape[2],
            w: x_shape[3],
            c_out: w_shape[0],
            kh,
            kw,
            groups: options.groups,
            stride: options.stride,
            pad,
            dilation: options.dilation,
            h_out: out(0, x_shape[2], kh),
            w_out: out(1, x_shape[3], kw),
        }
    }

    /// Rows of the column matrix.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Rows of the column matrix, and output channels, per group.
    fn per_group(&self) -> (usize, usize) {
        (self.k() / self.groups, self.c_out / self.groups)
    }

    /// Output positions per image (columns of the column matrix).
    fn p(&self) -> usize {
        self.h_out * self.w_out
    }

    fn image_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// A 1×1, stride-1, unpadded convolution: the column matrix is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// The same convolution for the Winograd path, when it is one that path computes well.
    fn winograd(&self, options: &ConvOptions<2>) -> Option<Conv3x3> {
        let s = Conv3x3 {
            batch: self.batch,
            c_in: self.c_in,
            h: self.h,
            w: self.w,
            c_out: self.c_out,
            pad: self.pad,
            h_out: self.h_out,
            w_out: self.w_out,
        };
        let kind = [self.kh, self.kw] == [3, 3]
            && self.stride == [1, 1]
            && self.dilation == [1, 1]
            && self.groups == 1;
        (kind && s.worth_it(options.padding_end())).then_some(s)
    }

    /// For kernel offset `ky` (or `kx`) along axis `i`: the input coordinate of output
    /// coordinate `o` is `o·stride + ky·dilation − pad`; returns the range of `o` for which it
    /// lies inside the image.
    fn valid_outputs(&self, i: usize, offset: usize) -> (usize, usize) {
        let (size, out) = if i == 0 {
            (self.h, self.h_out)
        } else {
            (self.w, self.w_out)
        };
        let shift = offset * self.dilation[i];
        let s = self.stride[i];
        let pad = self.pad[i];
        // first o with o·s + shift ≥ pad
        let first = if shift >= pad {
            0
        } else {
            (pad - shift).div_ceil(s)
        };
        // last o with o·s + shift − pad ≤ size − 1
        let end = if size + pad > shift {
            ((size + pad - shift - 1) / s + 1).min(out)
        } else {
            0
        };
        (first.min(end), end)
    }
}

/// Fills `col` (`[K, P]`) from one NCHW image; out-of-image taps are zero.
fn im2col<T: Real>(g: &Geometry, image: &[T], col: &mut [T]) {
    let p = g.p();
    for ci in 0..g.c_in {
        let plane = &image[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (oy0, oy1) = g.valid_outputs(0, ky);
            for kx in 0..g.kw {
                let (ox0, ox1) = g.valid_outputs(1, kx);
                let row = &mut col[((ci * g.kh + ky) * g.kw + kx) * p..][..p];
                // Zero only the taps that fall in the padding: the rest is overwritten below
                // (filling whole rows first was a memset of the column matrix per image).
                row[..oy0 * g.w_out].fill(T::zero());
                row[oy1 * g.w_out..].fill(T::zero());
                for oy in oy0..oy1 {
                    let iy = oy * g.stride[0] + ky * g.dilation[0] - g.pad[0];
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let dst = &mut row[oy * g.w_out..(oy + 1) * g.w_out];
                    dst[..ox0].fill(T::zero());
                    dst[ox1..].fill(T::zero());
                    let x_at = |ox: usize| ox * g.stride[1] + kx * g.dilation[1] - g.pad[1];
                    if g.stride[1] == 1 {
                        let start = x_at(ox0);
                        dst[ox0..ox1].copy_from_slice(&src[start..start + (ox1 - ox0)]);
                    } else {
                        for ox in ox0..ox1 {
                            dst[ox] = src[x_at(ox)];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` (`[K, P]`) back onto one NCHW image gradient.
fn col2im<T: Real>(g: &Geometry, col: &[T], image: &mut [T]) {
    let p = g.p();
    for ci in 0..g.c_in {
        let plane = &mut image[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (oy0, oy1) = g.valid_outputs(0, ky);
            for kx in 0..g.kw {
                let (ox0, ox1) = g.valid_outputs(1, kx);
                let row = &col[((ci * g.kh + ky) * g.kw + kx) * p..][..p];
                for oy in oy0..oy1 {
                    let iy = oy * g.stride[0] + ky * g.dilation[0] - g.pad[0];
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let src = &row[oy * g.w_out..(oy + 1) * g.w_out];
                    let x_at = |ox: usize| ox * g.stride[1] + kx * g.dilation[1] - g.pad[1];
                    if g.stride[1] == 1 {
                        // Two equal-length slices: the add vectorises, no bounds checks.
                        let start = x_at(ox0);
                        let dst = &mut dst[start..start + (ox1 - ox0)];
                        for (d, &v) in dst.iter_mut().zip(&src[ox0..ox1]) {
                            *d += v;
                        }
                    } else {
                        for ox in ox0..ox1 {
                            dst[x_at(ox)] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/// `dst[m, n] (=|+=) lhs · rhs`, each operand given by pointer and (column, row) strides.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into<T: Real>(
    [m, n, k]: [usize; 3],
    (dst, dst_rs): (*mut T, usize),
    accumulate: bool,
    lhs: *const T,
    [lhs_cs, lhs_rs]: [isize; 2],
    rhs: *const T,
    [rhs_cs, rhs_rs]: [isize; 2],
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// [`gemm_into`], or the native bf16 GEMM when `products` asks for it.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with<T: Real>(
    products: Products,
    mnk: [usize; 3],
    (dst, dst_rs): (*mut T, usize),
    accumulate: bool,
    lhs: *const T,
    lhs_strides: [isize; 2],
    rhs: *const T,
    rhs_strides: [isize; 2],
) {
    unsafe {
        match products {
            Products::Exact => gemm_into(
                mnk,
                (dst, dst_rs),
                accumulate,
                lhs,
                lhs_strides,
                rhs,
                rhs_strides,
            ),
            Products::Bf16 => {
                assert!(T::DTYPE == DType::F32 && gemm_bf16::available());
                gemm_bf16::gemm(
                    mnk,
                    (dst as *mut f32, dst_rs),
                    accumulate,
                    lhs as *const f32,
                    lhs_strides,
                    rhs as *const f32,
                    rhs_strides,
                )
            }
        }
    }
}

fn new_tensor<T: Real>(values: Vec<T>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        T::DTYPE,
    )
}

fn column_buffer<T: Real>(g: &Geometry) -> Vec<T> {
    vec![T::zero(); if g.is_pointwise() { 0 } else { g.k() * g.p() }]
}

/// Forward convolution.
pub(crate) fn conv2d<T: Real>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
    products: Products,
) -> FlexTensor {
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let g = Geometry::new(x.layout().shape(), weight.layout().shape(), options);
    let p = g.p();
    let (kg, cg) = g.per_group();
    let (xs, ws): (&[T], &[T]) = (x.storage(), weight.storage());
    let bias = bias.map(|b| b.to_contiguous());
    let bias: Option<&[T]> = bias.as_ref().map(|b| b.storage());
    if let Some(s) = g.winograd(options) {
        return new_tensor(
            winograd::conv2d(&s, xs, ws, bias),
            [g.batch, g.c_out, g.h_out, g.w_out],
        );
    }
    let mut out = vec![T::zero(); g.batch * g.c_out * p];
    out.par_chunks_mut(g.c_out * p).enumerate().for_each_init(
        || column_buffer::<T>(&g),
        |col, (n, y)| {
            let image = &xs[n * g.image_len()..(n + 1) * g.image_len()];
            let col: &[T] = if g.is_pointwise() {
                image
            } else {
                im2col(&g, image, col);
                col
            };
            // Start from the bias and let the GEMM accumulate onto it: one pass over the
            // output instead of a GEMM write and a bias read-modify-write.
            if let Some(b) = bias {
                for (row, &b) in y.chunks_mut(p).zip(b) {
                    row.fill(b);
                }
            }
            for group in 0..g.groups {
                // y_g [cg, P] (+)= W_g [cg, kg] · col_g [kg, P]
                unsafe {
                    gemm_with(
                        products,
                        [cg, p, kg],
                        (y[group * cg * p..].as_mut_ptr(), p),
                        bias.is_some(),
                        ws[group * cg * kg..].as_ptr(),
                        [1, kg as isize],
                        col[group * kg * p..].as_ptr(),
                        [1, p as isize],
                    );
                }
            }
        },
    );
    new_tensor(out, [g.batch, g.c_out, g.h_out, g.w_out])
}

/// Gradient of the loss with respect to the convolution's input.
pub(crate) fn conv2d_x_backward<T: Real>(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
    products: Products,
) -> FlexTensor {
    let weight = weight.to_contiguous();
    let dy = output_grad.to_contiguous();
    let g = Geometry::new(x.layout().shape(), weight.layout().shape(), options);
    let p = g.p();
    let (kg, cg) = g.per_group();
    let (ws, dys): (&[T], &[T]) = (weight.storage(), dy.storage());
    if let Some(s) = g.winograd(options) {
        return new_tensor(
            winograd::conv2d_x_backward(&s, ws, dys),
            [g.batch, g.c_in, g.h, g.w],
        );
    }
    let mut dx = vec![T::zero(); g.batch * g.image_len()];
    dx.par_chunks_mut(g.image_len()).enumerate().for_each_init(
        || column_buffer::<T>(&g),
        |col, (n, dx_n)| {
            let dy_n = &dys[n * g.c_out * p..(n + 1) * g.c_out * p];
            // For a pointwise convolution the column matrix is the image gradient itself.
            let target: &mut [T] = if g.is_pointwise() {
                &mut *dx_n
            } else {
                &mut col[..]
            };
            for group in 0..g.groups {
                // dcol_g [kg, P] = W_gᵀ [kg, cg] · dy_g [cg, P]
                unsafe {
                    gemm_with(
                        products,
                        [kg, p, cg],
                        (target[group * kg * p..].as_mut_ptr(), p),
                        false,
                        ws[group * cg * kg..].as_ptr(),
                        [kg as isize, 1],
                        dy_n[group * cg * p..].as_ptr(),
                        [1, p as isize],
                    );
                }
            }
            if !g.is_pointwise() {
                col2im(&g, col, dx_n);
            }
        },
    );
    new_tensor(dx, [g.batch, g.c_in, g.h, g.w])
}

/// Gradient of the loss with respect to the convolution's weight.
pub(crate) fn conv2d_weight_backward<T: Real>(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
    products: Products,
) -> FlexTensor {
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let g = Geometry::new(x.layout().shape(), weight.layout().shape(), options);
    let p = g.p();
    let (kg, cg) = g.per_group();
    let (xs, dys): (&[T], &[T]) = (x.storage(), dy.storage());
    if let Some(s) = g.winograd(options) {
        return new_tensor(
            winograd::conv2d_weight_backward(&s, xs, dys),
            [g.c_out, g.c_in, 3, 3],
        );
    }
    // The weight is [c_out, kg] (kg = c_in/groups · kh · kw).
    let weight_len = g.c_out * kg;
    // One partial sum per rayon work item, added at the end: images are split into as many
    // chunks as threads so the partial sums stay few.
    let chunk = g.batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let dw = (0..g.batch)
        .into_par_iter()
        .chunks(chunk)
        .map(|images| {
            let mut dw = vec![T::zero(); weight_len];
            let mut col = column_buffer::<T>(&g);
            for n in images {
                let image = &xs[n * g.image_len()..(n + 1) * g.image_len()];
                let dy_n = &dys[n * g.c_out * p..(n + 1) * g.c_out * p];
                let col: &[T] = if g.is_pointwise() {
                    image
                } else {
                    im2col(&g, image, &mut col);
                    &col
                };
                for group in 0..g.groups {
                    // dW_g [cg, kg] += dy_g [cg, P] · col_gᵀ [P, kg]
                    unsafe {
                        gemm_with(
                            products,
                            [cg, kg, p],
                            (dw[group * cg * kg..].as_mut_ptr(), kg),
                            true,
                            dy_n[group * cg * p..].as_ptr(),
                            [1, p as isize],
                            col[group * kg * p..].as_ptr(),
                            [p as isize, 1],
                        );
                    }
                }
            }
            dw
        })
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
            a
        })
        .unwrap_or_else(|| vec![T::zero(); weight_len]);
    new_tensor(dw, [g.c_out, g.c_in / g.groups, g.kh, g.kw])
}

/// Gradient of the loss with respect to the bias: the output gradient summed over images
/// and positions, read in place (upstream transposes it to `[C, N·P]` first).
pub(crate) fn conv2d_bias_backward<T: Real>(output_grad: FlexTensor) -> FlexTensor {
    let dy = output_grad.to_contiguous();
    let shape = dy.layout().shape();
    let (batch, channels) = (shape[0], shape[1]);
    let p: usize = shape[2..].iter().product();
    let dys: &[T] = dy.storage();
    let mut db = vec![T::zero(); channels];
    for image in dys.chunks(channels * p).take(batch) {
        for (sum, plane) in db.iter_mut().zip(image.chunks(p)) {
            for &v in plane {
                *sum += v;
            }
        }
    }
    FlexTensor::new(
        Bytes::from_elems(db),
        Layout::contiguous(Shape::from(vec![channels])),
        T::DTYPE,
    )
}
