//! Lethe patch (issue #29): 3×3, stride-1 convolutions — the forward, the input gradient and the
//! weight gradient — by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2016).
//!
//! Why: after im2col + GEMM reached ~75% of the fp32 peak, the 3×3 convolutions were still three
//! quarters of a google/ddpm-cifar10-32-sized training step. F(2×2, 3×3) computes each 2×2 output
//! tile from a 4×4 input patch with 16 multiplications instead of 36, so the GEMM work falls by
//! 2.25× for a few additions per value in the transforms.
//!
//! Per 2×2 output tile, with `d` the 4×4 input patch and `g` a 3×3 kernel:
//!
//! - forward: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Batched over tiles and channels, the element-wise
//!   product summed over input channels is 16 GEMMs, one per position ξ of the 4×4 transformed
//!   tile: `M[ξ] [Cout, T] = U[ξ] [Cout, Cin] · V[ξ] [Cin, T]`.
//! - input gradient: a stride-1 3×3 convolution of the output gradient with the kernels flipped
//!   and input/output channels swapped, padded by `2 − pad`: the same routine.
//! - weight gradient: `Y` is bilinear in `U = G g Gᵀ` and `V`, so `∂L/∂U[ξ] = Σ_tiles
//!   (A dY Aᵀ)[ξ] · V[ξ]` — 16 GEMMs `[Cout, T] · [T, Cin]` — and `∂L/∂g = Gᵀ (∂L/∂U) G`.
//!
//! Tiles past the output's last row or column (odd sizes) read zeros and are not written. The
//! transformed data is laid out `[channel][ξ][tile]`, so each transform runs in parallel over
//! channels on disjoint memory and each GEMM reads one ξ through a row stride of `16·T`.
//! Images are processed in passes whose transformed buffers stay near [`PASS_BYTES`].

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use rayon::prelude::*;

use super::conv2d_gemm::{Real, gemm_into};

/// Values in a transformed 4×4 tile.
const XI: usize = 16;

/// Upper bound for one pass's transformed input or output (bytes): small enough that both stay
/// in a 32 MiB L3 between the transforms and the GEMMs, large enough that each GEMM gets
/// hundreds of columns (two images of a 32×32 UNet level with 128 channels).
const PASS_BYTES: usize = 4 << 20;

/// A 3×3, stride-1, undilated, single-group convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conv3x3 {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    /// Zeros before the first row and column.
    pub pad: [usize; 2],
    pub h_out: usize,
    pub w_out: usize,
}

impl Conv3x3 {
    /// Whether this path is worth taking: the transforms cost a few additions per value, which
    /// only pays off when the GEMMs they shrink are large enough — at least 32 input and 32
    /// output channels (measured with `lethe bench ops`: google/ddpm-cifar10-32's 128–512-channel
    /// convolutions gain 20–45%; the demo's 32→32 ones broke even while the input transform
    /// ran one tile row at a time, and gain ~7% since it runs over whole planes; the UNet's
    /// conv_in and conv_out with 1–3 channels stay on im2col + GEMM). Padding up to 2 on either
    /// side keeps the input gradient a convolution of the same kind.
    pub(crate) fn worth_it(&self, pad_end: [usize; 2]) -> bool {
        self.c_in >= 32
            && self.c_out >= 32
            && self.pad.iter().chain(&pad_end).all(|&p| p <= 2)
            && self.h_out >= 2
            && self.w_out >= 2
    }
}

/// NCHW images: `channels` planes of `h × w` per image.
#[derive(Clone, Copy)]
struct Planes<'a, T> {
    data: &'a [T],
    channels: usize,
    h: usize,
    w: usize,
}

impl<T> Planes<'_, T> {
    fn plane(&self, image: usize, channel: usize) -> &[T] {
        let len = self.h * self.w;
        &self.data[(image * self.channels + channel) * len..][..len]
    }
}

/// Output tiles along each axis for an output of `size`.
fn tiles(size: [usize; 2]) -> [usize; 2] {
    [size[0].div_ceil(2), size[1].div_ceil(2)]
}

/// Images per pass so that `channels × 16 × tiles` values stay near [`PASS_BYTES`].
fn images_per_pass<T>(channels: usize, tiles_per_image: usize, batch: usize) -> usize {
    let per_image = channels * XI * tiles_per_image * core::mem::size_of::<T>();
    (PASS_BYTES / per_image.max(1)).clamp(1, batch.max(1))
}

fn half<T: Real>() -> T {
    T::from(0.5).unwrap()
}

/// `G v` for a kernel row or column `v`: the 4 values of its transform.
fn g_times<T: Real>([a, b, c]: [T; 3]) -> [T; 4] {
    [a, (a + b + c) * half(), (a - b + c) * half(), c]
}

/// `Gᵀ v` for 4 transformed values: the 3 kernel values they came from (the adjoint of
/// [`g_times`]).
fn g_transpose_times<T: Real>([a, b, c, d]: [T; 4]) -> [T; 3] {
    [a + (b + c) * half(), (b - c) * half(), (b + c) * half() + d]
}

/// `U[o][ξ][i] = (G k Gᵀ)[ξ]` for every 3×3 kernel `k = kernels[o][i]` of `[outer, inner, 3, 3]`,
/// in parallel over `o` (on the UNet's 4×4 levels this costs as much as the convolution itself
/// if done on one thread). GEMM `ξ` reads `U[·][ξ][·]` with a row stride of `16·inner`.
fn transform_kernels<T: Real>(kernels: &[T], outer: usize, inner: usize) -> Vec<T> {
    let mut u = vec![T::zero(); XI * outer * inner];
    u.par_chunks_mut(XI * inner).enumerate().for_each(|(o, u)| {
        for i in 0..inner {
            let k = &kernels[(o * inner + i) * 9..][..9];
            // Columns first: G k is 4×3.
            let cols: [[T; 4]; 3] = core::array::from_fn(|c| g_times([k[c], k[3 + c], k[6 + c]]));
            for r in 0..4 {
                let row = g_times([cols[0][r], cols[1][r], cols[2][r]]);
                for (c, &value) in row.iter().enumerate() {
                    u[(r * 4 + c) * inner + i] = value;
                }
            }
        }
    });
    u
}

/// The kernels of the input gradient: `[c_in, c_out, 3, 3]` with each kernel rotated by 180°.
fn flipped_transposed<T: Real>(w: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    let mut out = vec![T::zero(); w.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            let src = &w[(o * c_in + i) * 9..][..9];
            let dst = &mut out[(i * c_out + o) * 9..][..9];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    out
}

/// `V[c][ξ][t] = (Bᵀ d B)[ξ]` for every channel `c` and every tile `t` of `images`, where `d` is
/// the 4×4 patch whose top-left input pixel is `(2·ty − pad, 2·tx − pad)` (zeros outside).
fn transform_input<T: Real>(
    src: Planes<T>,
    images: Range<usize>,
    pad: [usize; 2],
    [tiles_y, tiles_x]: [usize; 2],
    v: &mut [T],
) {
    let t_total = images.len() * tiles_y * tiles_x;
    let tiles = tiles_y * tiles_x;
    // Each plane is copied into a zero-bordered scratch covering every tile's patch (the border
    // is zeroed once and never written), then gathered as the patches' four columns: column `k`
    // of tile `tx` in padded row `y` is `columns[k][slot(y)][tx]`, with the even rows' slots
    // before the odd rows'. Both 1-D transforms then run as unit-stride loops over whole planes
    // — along the rows over `columns`, down the columns over the even/odd row halves, where
    // the patch rows of tile row `ty` are even[ty], odd[ty], even[ty + 1], odd[ty + 1]. (A
    // UNet's lower levels have rows of 4–16 tiles, too short for the loops to vectorise one
    // tile row at a time.)
    let (ph, pw) = (2 * tiles_y + 2, 2 * tiles_x + 2);
    let column_len = ph * tiles_x;
    let half_rows = tiles_y + 1;
    v.par_chunks_mut(XI * t_total).enumerate().for_each_init(
        || {
            let padded = vec![T::zero(); ph * pw];
            (
                padded,
                vec![T::zero(); 4 * column_len],
                vec![T::zero(); 4 * column_len],
            )
        },
        |(padded, columns, rows), (channel, v)| {
            for (local, image) in images.clone().enumerate() {
                copy_padded(
                    src.plane(image, channel),
                    [src.h, src.w],
                    pad,
                    [ph, pw],
                    padded,
                );
                for (y, row) in padded.chunks_exact(pw).enumerate() {
                    let slot = (y % 2) * half_rows + y / 2;
                    for k in 0..4 {
                        let dst = &mut columns[k * column_len + slot * tiles_x..][..tiles_x];
                        for (d, &value) in dst.iter_mut().zip(row[k..].iter().step_by(2)) {
                            *d = value;
                        }
                    }
                }
                // Bᵀ along each row: the patch's columns 0..4 → its row transform `rows[c]`.
                let (c0, c) = columns.split_at(column_len);
                let (c1, c) = c.split_at(column_len);
                let (c2, c3) = c.split_at(column_len);
                let (r0, r) = rows.split_at_mut(column_len);
                let (r1, r) = r.split_at_mut(column_len);
                let (r2, r3) = r.split_at_mut(column_len);
                let c3 = &c3[..column_len];
                let r3 = &mut r3[..column_len];
                for i in 0..column_len {
                    r0[i] = c0[i] - c2[i];
                    r1[i] = c1[i] + c2[i];
                    r2[i] = c2[i] - c1[i];
                    r3[i] = c1[i] - c3[i];
                }
                // Bᵀ down each column of tiles, into ξ = 4·r + c.
                let first = local * tiles;
                for (c, transformed) in rows.chunks_exact(column_len).enumerate() {
                    let (even, odd) = transformed.split_at(half_rows * tiles_x);
                    let (e0, e1) = (&even[..tiles], &even[tiles_x..][..tiles]);
                    let (o0, o1) = (&odd[..tiles], &odd[tiles_x..][..tiles]);
                    let out = |r: usize| {
                        let at = (4 * r + c) * t_total + first;
                        at..at + tiles
                    };
                    let (x0, x1, x2, x3) = (out(0), out(1), out(2), out(3));
                    for (d, (a, b)) in v[x0].iter_mut().zip(e0.iter().zip(e1)) {
                        *d = *a - *b;
                    }
                    for (d, (a, b)) in v[x1].iter_mut().zip(o0.iter().zip(e1)) {
                        *d = *a + *b;
                    }
                    for (d, (a, b)) in v[x2].iter_mut().zip(e1.iter().zip(o0)) {
                        *d = *a - *b;
                    }
                    for (d, (a, b)) in v[x3].iter_mut().zip(o0.iter().zip(o1)) {
                        *d = *a - *b;
                    }
                }
            }
        },
    );
}

/// Writes `plane` (`size`) at offset `pad` into a zero-bordered `[ph, pw]` scratch, cropping
/// what no tile reads; the border keeps its zeros.
fn copy_padded<T: Copy>(
    plane: &[T],
    [h, w]: [usize; 2],
    pad: [usize; 2],
    [ph, pw]: [usize; 2],
    padded: &mut [T],
) {
    let cols = w.min(pw.saturating_sub(pad[1]));
    for y in 0..h.min(ph.saturating_sub(pad[0])) {
        padded[(y + pad[0]) * pw + pad[1]..][..cols].copy_from_slice(&plane[y * w..][..cols]);
    }
}

/// The 16 GEMMs `M[ξ] [m, T] (+)= lhs[ξ] [m, k] · rhs[ξ] [k, T]`, in parallel over ξ, each
/// operand given by its base, its stride between ξ and its (column, row) strides.
#[allow(clippy::too_many_arguments)]
fn multiply_per_xi<T: Real>(
    [m, n, k]: [usize; 3],
    (dst, dst_xi, dst_rs): (&mut [T], usize, usize),
    accumulate: bool,
    (lhs, lhs_xi, lhs_strides): (&[T], usize, [isize; 2]),
    (rhs, rhs_xi, rhs_strides): (&[T], usize, [isize; 2]),
) {
    /// The GEMMs write disjoint elements of one buffer (different ξ), interleaved in memory.
    struct Shared<T>(*mut T);
    unsafe impl<T> Send for Shared<T> {}
    unsafe impl<T> Sync for Shared<T> {}
    let out = Shared(dst.as_mut_ptr());
    let out = &out;
    (0..XI).into_par_iter().for_each(|xi| unsafe {
        gemm_into(
            [m, n, k],
            (out.0.add(xi * dst_xi), dst_rs),
            accumulate,
            lhs.as_ptr().add(xi * lhs_xi),
            lhs_strides,
            rhs.as_ptr().add(xi * rhs_xi),
            rhs_strides,
        );
    });
}

/// `Y = Aᵀ M A` per tile, plus the bias, written into `y` (`[images, c_out, h_out, w_out]` of
/// this pass) from `M[c][ξ][t]`. Both 1-D transforms run over a whole plane's tiles at once
/// (unit stride; see [`transform_input`]), then the four values of each tile are scattered
/// into the output plane.
fn transform_output<T: Real>(
    m: &[T],
    c_out: usize,
    [tiles_y, tiles_x]: [usize; 2],
    [h_out, w_out]: [usize; 2],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    let tiles = tiles_y * tiles_x;
    let t_total = y.len() / (c_out * h_out * w_out) * tiles;
    y.par_chunks_mut(h_out * w_out).enumerate().for_each_init(
        || (vec![T::zero(); 8 * tiles], vec![T::zero(); 4 * tiles]),
        |(s, corners), (plane, y)| {
            let (local, c) = (plane / c_out, plane % c_out);
            let m = &m[c * XI * t_total..][..XI * t_total];
            let bias = bias.map_or(T::zero(), |b| b[c]);
            let row = |xi: usize| &m[xi * t_total + local * tiles..][..tiles];
            // s[i][col] = (Aᵀ M)[i][col] over the plane's tiles.
            for col in 0..4 {
                let (m0, m1, m2, m3) = (row(col), row(4 + col), row(8 + col), row(12 + col));
                let (top, bottom) = s.split_at_mut(4 * tiles);
                let top = &mut top[col * tiles..][..tiles];
                let bottom = &mut bottom[col * tiles..][..tiles];
                for t in 0..tiles {
                    top[t] = m0[t] + m1[t] + m2[t];
                    bottom[t] = m1[t] - m2[t] - m3[t];
                }
            }
            // corners[2i + j] = (Aᵀ M A)[i][j] + bias over the plane's tiles.
            for (i, s) in s.chunks_exact(4 * tiles).enumerate() {
                let (s0, rest) = s.split_at(tiles);
                let (s1, rest) = rest.split_at(tiles);
                let (s2, s3) = rest.split_at(tiles);
                let (left, right) = corners[2 * i * tiles..][..2 * tiles].split_at_mut(tiles);
                for t in 0..tiles {
                    left[t] = s0[t] + s1[t] + s2[t] + bias;
                    right[t] = s1[t] - s2[t] - s3[t] + bias;
                }
            }
            for (corner, values) in corners.chunks_exact(tiles).enumerate() {
                let (i, j) = (corner / 2, corner % 2);
                for (ty, values) in values.chunks_exact(tiles_x).enumerate() {
                    let oy = 2 * ty + i;
                    if oy >= h_out {
                        break;
                    }
                    let out_row = &mut y[oy * w_out..][..w_out];
                    for (slot, &value) in out_row[j..].iter_mut().step_by(2).zip(values) {
                        *slot = value;
                    }
                }
            }
        },
    );
}

/// `Ŷ[c][ξ][t] = (A dY Aᵀ)[ξ]` for every output-gradient tile (2×2, zeros past the edge). The
/// plane's tiles are gathered as their four values `q[2i + j][t] = dY[2ty + i][2tx + j]`, then
/// both 1-D transforms run over whole planes (unit stride; see [`transform_input`]).
fn transform_output_grad<T: Real>(
    src: Planes<T>,
    images: Range<usize>,
    [tiles_y, tiles_x]: [usize; 2],
    y_hat: &mut [T],
) {
    let tiles = tiles_y * tiles_x;
    let t_total = images.len() * tiles;
    let (ph, pw) = (2 * tiles_y, 2 * tiles_x);
    y_hat
        .par_chunks_mut(XI * t_total)
        .enumerate()
        .for_each_init(
            || {
                let padded = vec![T::zero(); ph * pw];
                (
                    padded,
                    vec![T::zero(); 4 * tiles],
                    vec![T::zero(); 8 * tiles],
                )
            },
            |(padded, q, p), (channel, out)| {
                for (local, image) in images.clone().enumerate() {
                    // Odd sizes: the last tile row or column reads the scratch's zeros.
                    copy_padded(
                        src.plane(image, channel),
                        [src.h, src.w],
                        [0, 0],
                        [ph, pw],
                        padded,
                    );
                    for (y, row) in padded.chunks_exact(pw).enumerate() {
                        let (ty, i) = (y / 2, y % 2);
                        for j in 0..2 {
                            let dst = &mut q[(2 * i + j) * tiles + ty * tiles_x..][..tiles_x];
                            for (d, &value) in dst.iter_mut().zip(row[j..].iter().step_by(2)) {
                                *d = value;
                            }
                        }
                    }
                    // A dY: rows [top, top + bottom, top − bottom, −bottom], per column j:
                    // p[r][j].
                    for j in 0..2 {
                        let (top, bottom) =
                            (&q[j * tiles..][..tiles], &q[(2 + j) * tiles..][..tiles]);
                        for r in 0..4 {
                            let dst = &mut p[(2 * r + j) * tiles..][..tiles];
                            for (d, (&t, &b)) in dst.iter_mut().zip(top.iter().zip(bottom)) {
                                *d = match r {
                                    0 => t,
                                    1 => t + b,
                                    2 => t - b,
                                    _ => -b,
                                };
                            }
                        }
                    }
                    // (A dY) Aᵀ: per row r, [e, e + o, e − o, −o] into ξ = 4r + c.
                    let first = local * tiles;
                    for r in 0..4 {
                        let (e, o) = (
                            &p[2 * r * tiles..][..tiles],
                            &p[(2 * r + 1) * tiles..][..tiles],
                        );
                        for c in 0..4 {
                            let dst = &mut out[(4 * r + c) * t_total + first..][..tiles];
                            for (d, (&e, &o)) in dst.iter_mut().zip(e.iter().zip(o)) {
                                *d = match c {
                                    0 => e,
                                    1 => e + o,
                                    2 => e - o,
                                    _ => -o,
                                };
                            }
                        }
                    }
                }
            },
        );
}

/// A 3×3 stride-1 convolution of `src` with the transformed kernels `u` (`[c_out, 16,
/// src.channels]`, from [`transform_kernels`]), `pad` zeros before the first row and column,
/// output `out_size`.
fn convolve<T: Real>(
    src: Planes<T>,
    batch: usize,
    u: &[T],
    c_out: usize,
    pad: [usize; 2],
    out_size: [usize; 2],
    bias: Option<&[T]>,
) -> Vec<T> {
    let c_in = src.channels;
    let tiles = tiles(out_size);
    let per_image = tiles[0] * tiles[1];
    let pass = images_per_pass::<T>(c_in.max(c_out), per_image, batch);
    let out_len = c_out * out_size[0] * out_size[1];
    let mut y = vec![T::zero(); batch * out_len];
    let (mut v, mut m) = (Vec::new(), Vec::new());
    for first in (0..batch).step_by(pass) {
        let images = first..(first + pass).min(batch);
        let t = images.len() * per_image;
        v.resize(c_in * XI * t, T::zero());
        m.resize(c_out * XI * t, T::zero());
        transform_input(src, images.clone(), pad, tiles, &mut v);
        // M[c_out][ξ][t] = U[ξ] [c_out, c_in] · V[c_in][ξ][t]
        multiply_per_xi(
            [c_out, t, c_in],
            (&mut m, t, XI * t),
            false,
            (u, c_in, [1, (XI * c_in) as isize]),
            (&v, t, [1, (XI * t) as isize]),
        );
        let y = &mut y[images.start * out_len..images.end * out_len];
        transform_output(&m, c_out, tiles, out_size, bias, y);
    }
    y
}

/// Forward convolution of `x` (`[batch, c_in, h, w]`) with `w` (`[c_out, c_in, 3, 3]`).
pub(crate) fn conv2d<T: Real>(s: &Conv3x3, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let u = transform_kernels(w, s.c_out, s.c_in);
    let src = Planes {
        data: x,
        channels: s.c_in,
        h: s.h,
        w: s.w,
    };
    convolve(src, s.batch, &u, s.c_out, s.pad, [s.h_out, s.w_out], bias)
}

/// Gradient with respect to the input, from the output gradient `dy` (`[batch, c_out, h_out,
/// w_out]`): the output gradient convolved with the rotated, transposed kernels.
pub(crate) fn conv2d_x_backward<T: Real>(s: &Conv3x3, w: &[T], dy: &[T]) -> Vec<T> {
    let u = transform_kernels(&flipped_transposed(w, s.c_out, s.c_in), s.c_in, s.c_out);
    let src = Planes {
        data: dy,
        channels: s.c_out,
        h: s.h_out,
        w: s.w_out,
    };
    let pad = [2 - s.pad[0], 2 - s.pad[1]];
    convolve(src, s.batch, &u, s.c_in, pad, [s.h, s.w], None)
}

/// Gradient with respect to the kernels (`[c_out, c_in, 3, 3]`).
pub(crate) fn conv2d_weight_backward<T: Real>(s: &Conv3x3, x: &[T], dy: &[T]) -> Vec<T> {
    let tiles = tiles([s.h_out, s.w_out]);
    let per_image = tiles[0] * tiles[1];
    let pass = images_per_pass::<T>(s.c_in.max(s.c_out), per_image, s.batch);
    let xs = Planes {
        data: x,
        channels: s.c_in,
        h: s.h,
        w: s.w,
    };
    let dys = Planes {
        data: dy,
        channels: s.c_out,
        h: s.h_out,
        w: s.w_out,
    };
    // ∂L/∂U [c_out][16][c_in], summed over passes.
    let mut du = vec![T::zero(); XI * s.c_out * s.c_in];
    let (mut v, mut y_hat) = (Vec::new(), Vec::new());
    for first in (0..s.batch).step_by(pass) {
        let images = first..(first + pass).min(s.batch);
        let t = images.len() * per_image;
        v.resize(s.c_in * XI * t, T::zero());
        y_hat.resize(s.c_out * XI * t, T::zero());
        transform_input(xs, images.clone(), s.pad, tiles, &mut v);
        transform_output_grad(dys, images, tiles, &mut y_hat);
        // ∂L/∂U[ξ] [c_out, c_in] += Ŷ[c_out][ξ][t] · V[c_in][ξ][t]ᵀ
        multiply_per_xi(
            [s.c_out, s.c_in, t],
            (&mut du, s.c_in, XI * s.c_in),
            first > 0,
            (&y_hat, t, [1, (XI * t) as isize]),
            (&v, t, [(XI * t) as isize, 1]),
        );
    }
    // ∂L/∂k = Gᵀ (∂L/∂U) G per kernel, in parallel over output channels.
    let mut dw = vec![T::zero(); s.c_out * s.c_in * 9];
    dw.par_chunks_mut(s.c_in * 9)
        .zip(du.par_chunks(XI * s.c_in))
        .for_each(|(dw, du)| {
            for (i, dk) in dw.chunks_mut(9).enumerate() {
                let d = |r: usize, c: usize| du[(r * 4 + c) * s.c_in + i];
                let cols: [[T; 3]; 4] = core::array::from_fn(|c| {
                    g_transpose_times([d(0, c), d(1, c), d(2, c), d(3, c)])
                });
                for r in 0..3 {
                    let row = g_transpose_times([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
                    dk[r * 3..r * 3 + 3].copy_from_slice(&row);
                }
            }
        });
    dw
}
