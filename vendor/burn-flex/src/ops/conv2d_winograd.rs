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
    /// only pays off when the GEMMs they shrink are large — at least 64 input and 32 output
    /// channels (measured with `lethe bench ops`: google/ddpm-cifar10-32's 128–512-channel
    /// convolutions gain 20–45%, the demo's 32→32 and 32→64 ones break even or lose; the UNet's
    /// conv_in and conv_out with 1–3 channels stay on im2col + GEMM). Padding up to 2 on either
    /// side keeps the input gradient a convolution of the same kind.
    pub(crate) fn worth_it(&self, pad_end: [usize; 2]) -> bool {
        self.c_in >= 64
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
    // Each plane is copied into a zero-bordered scratch covering every tile's patch, its even
    // and odd columns apart: tile `tx` then reads columns `tx` and `tx + 1` of each half, so
    // every loop below runs over consecutive tiles with unit stride (and vectorises). The
    // border is zeroed once and never written.
    let (ph, half_w) = (2 * tiles_y + 2, tiles_x + 1);
    v.par_chunks_mut(XI * t_total).enumerate().for_each_init(
        || {
            let plane = vec![T::zero(); 2 * ph * half_w];
            (plane, vec![T::zero(); 8 * half_w])
        },
        |(padded, rows), (channel, v)| {
            for (local, image) in images.clone().enumerate() {
                let plane = src.plane(image, channel);
                copy_deinterleaved(plane, [src.h, src.w], pad, [ph, half_w], padded);
                let (even, odd) = padded.split_at(ph * half_w);
                for ty in 0..tiles_y {
                    // Bᵀ d down the patch rows of this tile row: rows[half][r][column].
                    for (h, half) in [even, odd].into_iter().enumerate() {
                        let d = |r: usize| &half[(2 * ty + r) * half_w..][..half_w];
                        let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
                        let t = &mut rows[h * 4 * half_w..][..4 * half_w];
                        let (t0, t) = t.split_at_mut(half_w);
                        let (t1, t) = t.split_at_mut(half_w);
                        let (t2, t3) = t.split_at_mut(half_w);
                        // Every slice cut to `half_w` where the loop can see it: no bounds
                        // check is left in the loop, so it vectorises.
                        let (d0, d1, d2, d3) =
                            (&d0[..half_w], &d1[..half_w], &d2[..half_w], &d3[..half_w]);
                        let t3 = &mut t3[..half_w];
                        for x in 0..half_w {
                            t0[x] = d0[x] - d2[x];
                            t1[x] = d1[x] + d2[x];
                            t2[x] = d2[x] - d1[x];
                            t3[x] = d1[x] - d3[x];
                        }
                    }
                    // (Bᵀ d) B along each row: columns 2tx, 2tx+1, 2tx+2, 2tx+3 are
                    // even[tx], odd[tx], even[tx+1], odd[tx+1].
                    let first = (local * tiles_y + ty) * tiles_x;
                    for r in 0..4 {
                        let e = &rows[r * half_w..][..half_w];
                        let o = &rows[(4 + r) * half_w..][..half_w];
                        let base = first + r * 4 * t_total;
                        let (v01, v23) = v[base..].split_at_mut(2 * t_total);
                        let (v0, v1) = v01.split_at_mut(t_total);
                        let (v2, v3) = v23.split_at_mut(t_total);
                        let (v0, v1) = (&mut v0[..tiles_x], &mut v1[..tiles_x]);
                        let (v2, v3) = (&mut v2[..tiles_x], &mut v3[..tiles_x]);
                        for tx in 0..tiles_x {
                            v0[tx] = e[tx] - e[tx + 1];
                        }
                        for tx in 0..tiles_x {
                            v1[tx] = o[tx] + e[tx + 1];
                        }
                        for tx in 0..tiles_x {
                            v2[tx] = e[tx + 1] - o[tx];
                        }
                        for tx in 0..tiles_x {
                            v3[tx] = o[tx] - o[tx + 1];
                        }
                    }
                }
            }
        },
    );
}

/// Writes `plane` (`size`) at offset `pad` into a zero-bordered `[ph, 2·half_w]` scratch held as
/// its even columns (`padded[..ph·half_w]`) and its odd columns (the rest), cropping what no
/// tile reads; the border keeps its zeros.
fn copy_deinterleaved<T: Copy>(
    plane: &[T],
    [h, w]: [usize; 2],
    pad: [usize; 2],
    [ph, half_w]: [usize; 2],
    padded: &mut [T],
) {
    let (even, odd) = padded.split_at_mut(ph * half_w);
    let cols = w.min((2 * half_w).saturating_sub(pad[1]));
    // Values 0, 2, 4, … of a row land in one half and 1, 3, 5, … in the other: column
    // `pad + x` is even for even x when the padding is even. Two straight copies per row, no
    // per-element choice of half.
    let (first, second, first_at, second_at) = if pad[1] % 2 == 0 {
        (even, odd, pad[1] / 2, pad[1] / 2)
    } else {
        (odd, even, pad[1] / 2, pad[1] / 2 + 1)
    };
    for y in 0..h.min(ph.saturating_sub(pad[0])) {
        let row = (y + pad[0]) * half_w;
        let values = &plane[y * w..][..cols];
        let firsts = &mut first[row + first_at..][..cols.div_ceil(2)];
        for (slot, &value) in firsts.iter_mut().zip(values.iter().step_by(2)) {
            *slot = value;
        }
        let seconds = &mut second[row + second_at..][..cols / 2];
        for (slot, &value) in seconds.iter_mut().zip(values.iter().skip(1).step_by(2)) {
            *slot = value;
        }
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
/// this pass) from `M[c][ξ][t]`.
fn transform_output<T: Real>(
    m: &[T],
    c_out: usize,
    [tiles_y, tiles_x]: [usize; 2],
    [h_out, w_out]: [usize; 2],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    let t_total = y.len() / (c_out * h_out * w_out) * tiles_y * tiles_x;
    y.par_chunks_mut(h_out * w_out).enumerate().for_each_init(
        || vec![T::zero(); 4 * tiles_x],
        |s, (plane, y)| {
            let (local, c) = (plane / c_out, plane % c_out);
            let m = &m[c * XI * t_total..][..XI * t_total];
            let bias = bias.map_or(T::zero(), |b| b[c]);
            for ty in 0..tiles_y {
                let first = (local * tiles_y + ty) * tiles_x;
                let row = |xi: usize| &m[xi * t_total + first..][..tiles_x];
                for out_row in 0..2 {
                    let oy = 2 * ty + out_row;
                    if oy >= h_out {
                        break;
                    }
                    // s[col][tx] = (Aᵀ M)[out_row][col] for every tile of the row.
                    for col in 0..4 {
                        let (m0, m1, m2, m3) =
                            (row(col), row(4 + col), row(8 + col), row(12 + col));
                        let s = &mut s[col * tiles_x..][..tiles_x];
                        if out_row == 0 {
                            for tx in 0..tiles_x {
                                s[tx] = m0[tx] + m1[tx] + m2[tx];
                            }
                        } else {
                            for tx in 0..tiles_x {
                                s[tx] = m1[tx] - m2[tx] - m3[tx];
                            }
                        }
                    }
                    let (s0, s) = s.split_at(tiles_x);
                    let (s1, s) = s.split_at(tiles_x);
                    let (s2, s3) = s.split_at(tiles_x);
                    let y = &mut y[oy * w_out..][..w_out];
                    for (tx, pair) in y.chunks_mut(2).enumerate() {
                        pair[0] = s0[tx] + s1[tx] + s2[tx] + bias;
                        if let Some(second) = pair.get_mut(1) {
                            *second = s1[tx] - s2[tx] - s3[tx] + bias;
                        }
                    }
                }
            }
        },
    );
}

/// `Ŷ[c][ξ][t] = (A dY Aᵀ)[ξ]` for every output-gradient tile (2×2, zeros past the edge).
fn transform_output_grad<T: Real>(
    src: Planes<T>,
    images: Range<usize>,
    [tiles_y, tiles_x]: [usize; 2],
    y_hat: &mut [T],
) {
    let t_total = images.len() * tiles_y * tiles_x;
    y_hat
        .par_chunks_mut(XI * t_total)
        .enumerate()
        .for_each_init(
            || vec![T::zero(); 4 * tiles_x],
            |cols, (channel, out)| {
                for (local, image) in images.clone().enumerate() {
                    let plane = src.plane(image, channel);
                    for ty in 0..tiles_y {
                        // The tile row's two output rows, even and odd columns apart (zeros past
                        // the edge): cols = [row 0 even, row 0 odd, row 1 even, row 1 odd].
                        cols.fill(T::zero());
                        for dy in 0..2 {
                            let y = 2 * ty + dy;
                            if y >= src.h {
                                break;
                            }
                            for (x, &value) in plane[y * src.w..][..src.w].iter().enumerate() {
                                cols[(2 * dy + x % 2) * tiles_x + x / 2] = value;
                            }
                        }
                        let first = (local * tiles_y + ty) * tiles_x;
                        let (top, bottom) = cols.split_at_mut(2 * tiles_x);
                        // A dY: the 4 rows [top, top + bottom, top − bottom, −bottom], written as
                        // [top, bottom] ← [top + bottom, top − bottom] with rows 0 and 3 read
                        // from the originals first.
                        for r in [0, 3] {
                            let rows: &[T] = if r == 0 { top } else { bottom };
                            write_across(rows, tiles_x, r, r == 3, first, t_total, out);
                        }
                        for (t, b) in top.iter_mut().zip(bottom.iter_mut()) {
                            (*t, *b) = (*t + *b, *t - *b);
                        }
                        write_across(top, tiles_x, 1, false, first, t_total, out);
                        write_across(bottom, tiles_x, 2, false, first, t_total, out);
                    }
                }
            },
        );
}

/// Row `r` of `(A dY) Aᵀ` for a row of tiles: from the row's even and odd columns
/// (`row[..tiles_x]`, `row[tiles_x..]`; `negate` for `−v`), `[e, e + o, e − o, −o]` into
/// `out[(4r + c)·t_total + first + tx]`.
fn write_across<T: Real>(
    row: &[T],
    tiles_x: usize,
    r: usize,
    negate: bool,
    first: usize,
    t_total: usize,
    out: &mut [T],
) {
    let sign = if negate { -T::one() } else { T::one() };
    let (e, o) = row.split_at(tiles_x);
    let base = r * 4 * t_total + first;
    let (v01, v23) = out[base..].split_at_mut(2 * t_total);
    let (v0, v1) = v01.split_at_mut(t_total);
    let (v2, v3) = v23.split_at_mut(t_total);
    for tx in 0..tiles_x {
        let (e, o) = (sign * e[tx], sign * o[tx]);
        v0[tx] = e;
        v1[tx] = e + o;
        v2[tx] = e - o;
        v3[tx] = -o;
    }
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
