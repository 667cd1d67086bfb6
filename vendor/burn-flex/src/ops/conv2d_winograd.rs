//! Lethe patch (issue #29): 3×3, stride-1 convolutions — the forward, the input gradient and the
//! weight gradient — by Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray, "Fast Algorithms
//! for Convolutional Neural Networks", 2016).
//!
//! Why: after im2col + GEMM reached ~75% of the fp32 peak, the 3×3 convolutions were still three
//! quarters of a google/ddpm-cifar10-32-sized training step. F(4×4, 3×3) computes each 4×4
//! output tile from a 6×6 input patch with 36 multiplications instead of 144, so the GEMM work
//! falls by 4× for a few additions per value in the transforms. (Rounds 3–4 used F(2×2, 3×3),
//! 2.25×; with the transforms run over all of a pass's tiles at once, 4×4 tiles are faster on
//! every level of the demo's and google/ddpm-cifar10-32's UNets, 7×7 and 4×4 planes included —
//! `lethe bench`, round 5.)
//!
//! Per 4×4 output tile, with `d` the 6×6 input patch and `g` a 3×3 kernel:
//!
//! - forward: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Batched over tiles and channels, the element-wise
//!   product summed over input channels is 36 GEMMs, one per position ξ of the transformed
//!   tile: `M[ξ] [Cout, T] = U[ξ] [Cout, Cin] · V[ξ] [Cin, T]`.
//! - input gradient: a stride-1 3×3 convolution of the output gradient with the kernels flipped
//!   and input/output channels swapped, padded by `2 − pad`: the same routine.
//! - weight gradient: `Y` is bilinear in `U = G g Gᵀ` and `V`, so `∂L/∂U[ξ] = Σ_tiles
//!   (A dY Aᵀ)[ξ] · V[ξ]` — 36 GEMMs `[Cout, T] · [T, Cin]` — and `∂L/∂g = Gᵀ (∂L/∂U) G`.
//!
//! The kernel transforms (`G` has sixths and twenty-fourths) run in f64 and are rounded once.
//! Tiles past the output's last rows or columns read zeros and are not written. The transformed
//! data is laid out `[channel][ξ][tile]`, so each transform runs in parallel over channels on
//! disjoint memory and each GEMM reads one ξ through a row stride of `36·T`. Images are
//! processed in passes whose transformed buffers stay near [`PASS_BYTES`].

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use rayon::prelude::*;

use super::conv2d_gemm::{Real, gemm_into};

/// Outputs along each side of a tile.
const TILE: usize = 4;
/// Inputs along each side of a tile's patch (`TILE + 3 − 1`).
const PATCH: usize = 6;
/// Values in a transformed 6×6 tile.
const XI: usize = PATCH * PATCH;

/// Upper bound for one pass's transformed input or output (bytes): small enough that both stay
/// in a 32 MiB L3 between the transforms and the GEMMs, large enough that each GEMM gets
/// hundreds of columns.
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
    /// convolutions and the demo's 32–128-channel ones gain; the UNet's conv_in and conv_out
    /// with 1–3 channels stay on im2col + GEMM). Padding up to 2 on either side keeps the input
    /// gradient a convolution of the same kind.
    pub(crate) fn worth_it(&self, pad_end: [usize; 2]) -> bool {
        self.c_in >= 32
            && self.c_out >= 32
            && self.pad.iter().chain(&pad_end).all(|&p| p <= 2)
            && self.h_out >= 2
            && self.w_out >= 2
    }
}

/// `G v` for a kernel row or column `v`: the 6 values of its transform.
fn g_times([a, b, c]: [f64; 3]) -> [f64; PATCH] {
    [
        a / 4.0,
        -(a + b + c) / 6.0,
        -(a - b + c) / 6.0,
        a / 24.0 + b / 12.0 + c / 6.0,
        a / 24.0 - b / 12.0 + c / 6.0,
        c,
    ]
}

/// `Gᵀ v` for 6 transformed values: the 3 kernel values they came from (the adjoint of
/// [`g_times`]).
fn g_transpose_times([v0, v1, v2, v3, v4, v5]: [f64; PATCH]) -> [f64; 3] {
    [
        v0 / 4.0 - (v1 + v2) / 6.0 + (v3 + v4) / 24.0,
        (v2 - v1) / 6.0 + (v3 - v4) / 12.0,
        (v3 + v4 - v1 - v2) / 6.0 + v5,
    ]
}

widest_simd_fn! {
/// `d = Bᵀ s` across six vectors, `Bᵀ` with rows `[4 0 −5 0 1 0]`, `[0 −4 −4 1 1 0]`, `[0 4 −4 −1 1 0]`,
/// `[0 −2 −1 2 1 0]`, `[0 2 −1 −2 1 0]`, `[0 4 0 −5 0 1]`.
fn b_transpose_times<T: Real>(s: [&[T]; PATCH], d: [&mut [T]; PATCH]) {
    let n = d[0].len();
    let [s0, s1, s2, s3, s4, s5] = s.map(|s| &s[..n]);
    let [d0, d1, d2, d3, d4, d5] = d.map(|d| &mut d[..n]);
    let (two, four, five) = (real::<T>(2.0), real::<T>(4.0), real::<T>(5.0));
    for t in 0..n {
        let (a0, a1, a2, a3, a4, a5) = (s0[t], s1[t], s2[t], s3[t], s4[t], s5[t]);
        d0[t] = four * a0 - five * a2 + a4;
        d1[t] = a3 + a4 - four * (a1 + a2);
        d2[t] = four * (a1 - a2) + a4 - a3;
        d3[t] = two * (a3 - a1) + a4 - a2;
        d4[t] = two * (a1 - a3) + a4 - a2;
        d5[t] = four * a1 - five * a3 + a5;
    }
}
}

widest_simd_fn! {
/// `d = Aᵀ s + bias` across six vectors, `Aᵀ` with rows `[1 1 1 1 1 0]`, `[0 1 −1 2 −2 0]`, `[0 1 1 4 4 0]`,
/// `[0 1 −1 8 −8 1]`.
fn a_transpose_times<T: Real>(s: [&[T]; PATCH], d: [&mut [T]; TILE], bias: T) {
    let n = d[0].len();
    let [s0, s1, s2, s3, s4, s5] = s.map(|s| &s[..n]);
    let [d0, d1, d2, d3] = d.map(|d| &mut d[..n]);
    let (two, four, eight) = (real::<T>(2.0), real::<T>(4.0), real::<T>(8.0));
    for t in 0..n {
        let (sum12, diff12) = (s1[t] + s2[t], s1[t] - s2[t]);
        let (sum34, diff34) = (s3[t] + s4[t], s3[t] - s4[t]);
        d0[t] = s0[t] + sum12 + sum34 + bias;
        d1[t] = diff12 + two * diff34 + bias;
        d2[t] = sum12 + four * sum34 + bias;
        d3[t] = diff12 + eight * diff34 + s5[t] + bias;
    }
}
}

widest_simd_fn! {
/// `d = A s` across four vectors (`A` the transpose of [`a_transpose_times`]'s `Aᵀ`).
fn a_times<T: Real>(s: [&[T]; TILE], d: [&mut [T]; PATCH]) {
    let n = d[0].len();
    let [s0, s1, s2, s3] = s.map(|s| &s[..n]);
    let [d0, d1, d2, d3, d4, d5] = d.map(|d| &mut d[..n]);
    let (two, four, eight) = (real::<T>(2.0), real::<T>(4.0), real::<T>(8.0));
    for t in 0..n {
        let (q0, q1, q2, q3) = (s0[t], s1[t], s2[t], s3[t]);
        let (even, odd) = (q0 + q2, q1 + q3);
        let (even4, odd8) = (q0 + four * q2, two * q1 + eight * q3);
        d0[t] = q0;
        d1[t] = even + odd;
        d2[t] = even - odd;
        d3[t] = even4 + odd8;
        d4[t] = even4 - odd8;
        d5[t] = q3;
    }
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

/// How a pass numbers its tiles: `t = (ty·images + image)·tiles_x + tx`, so that each tile row
/// of every image in the pass sits next to the others — the 1-D transforms down the tile
/// columns then read and write whole vectors of all the pass's tiles.
#[derive(Clone, Copy)]
struct TileOrder {
    tiles_y: usize,
    tiles_x: usize,
    /// Tiles in one tile row across the pass's images.
    row_len: usize,
    /// Tiles in the pass.
    total: usize,
}

impl TileOrder {
    /// The tiles covering an output of `size`, for `images` images.
    fn new(size: [usize; 2], images: usize) -> Self {
        let [tiles_y, tiles_x] = size.map(|s| s.div_ceil(TILE));
        Self {
            tiles_y,
            tiles_x,
            row_len: images * tiles_x,
            total: images * tiles_y * tiles_x,
        }
    }
}

/// Images per pass so that `channels × ξ × tiles` values stay near [`PASS_BYTES`].
fn images_per_pass<T>(channels: usize, values_per_image: usize, batch: usize) -> usize {
    let per_image = channels * values_per_image * core::mem::size_of::<T>();
    (PASS_BYTES / per_image.max(1)).clamp(1, batch.max(1))
}

fn real<T: Real>(v: f64) -> T {
    T::from(v).unwrap()
}

fn wide<T: Real>(v: T) -> f64 {
    num_traits::ToPrimitive::to_f64(&v).unwrap()
}

/// `N` equal consecutive slices of `len` values from the start of `buffer`.
fn split_n<T, const N: usize>(buffer: &mut [T], len: usize) -> [&mut [T]; N] {
    let mut parts = buffer.chunks_exact_mut(len);
    core::array::from_fn(|_| parts.next().expect("buffer holds N slices"))
}

/// Copies every fourth value of `row` from `first` on into `dst` (one value per tile column;
/// a short row leaves the rest of `dst` as it was).
fn gather_every_tile<T: Copy>(row: &[T], first: usize, dst: &mut [T]) {
    for (d, &value) in dst.iter_mut().zip(row[first..].iter().step_by(TILE)) {
        *d = value;
    }
}

/// `U[o][ξ][i] = (G k Gᵀ)[ξ]` for every 3×3 kernel `k = kernels[o][i]` of `[outer, inner, 3, 3]`,
/// in parallel over `o` (on the UNet's 4×4 levels this costs as much as the convolution itself
/// if done on one thread). GEMM `ξ` reads `U[·][ξ][·]` with a row stride of `36·inner`.
fn transform_kernels<T: Real>(kernels: &[T], outer: usize, inner: usize) -> Vec<T> {
    let mut u = vec![T::zero(); XI * outer * inner];
    u.par_chunks_mut(XI * inner).enumerate().for_each(|(o, u)| {
        for i in 0..inner {
            let k = &kernels[(o * inner + i) * 9..][..9];
            let k = |at: usize| wide(k[at]);
            // Columns first: G k is 6×3.
            let cols: [[f64; PATCH]; 3] =
                core::array::from_fn(|c| g_times([k(c), k(3 + c), k(6 + c)]));
            for r in 0..PATCH {
                let row = g_times([cols[0][r], cols[1][r], cols[2][r]]);
                for (c, &value) in row.iter().enumerate() {
                    u[(r * PATCH + c) * inner + i] = real(value);
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
/// the 6×6 patch whose top-left input pixel is `(4·ty − pad, 4·tx − pad)` (zeros outside).
/// Tiles are numbered `t = (ty·images + image)·tiles_x + tx` (see [`TileOrder`]).
fn transform_input<T: Real>(
    src: Planes<T>,
    images: Range<usize>,
    pad: [usize; 2],
    order: TileOrder,
    v: &mut [T],
) {
    let TileOrder {
        tiles_y,
        tiles_x,
        row_len,
        total,
    } = order;
    // Each plane is copied into a zero-bordered scratch covering every tile's patch (the border
    // is zeroed once and never written), then gathered as the patches' six columns: column `k`
    // of tile `tx` of image `i` in padded row `y` is `columns[k][slot(y)][i][tx]`, with the rows
    // grouped by `y mod 4` (`slot(y) = (y mod 4)·(tiles_y + 1) + y / 4`). Both 1-D transforms
    // then run as unit-stride loops over all the pass's images at once — along the rows over
    // `columns`, down the columns over the row groups, where patch row `k` of tile row `ty` is
    // row `ty + k / 4` of group `k mod 4`. (A UNet's lower levels have rows of 2–16 tiles, too
    // short for the loops to vectorise one plane, let alone one tile row, at a time.)
    let (ph, pw) = (TILE * tiles_y + 2, TILE * tiles_x + 2);
    let group_rows = tiles_y + 1;
    let column_len = TILE * group_rows * row_len;
    v.par_chunks_mut(XI * total).enumerate().for_each_init(
        || {
            (
                vec![T::zero(); ph * pw],
                vec![T::zero(); PATCH * column_len],
                vec![T::zero(); PATCH * column_len],
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
                    let slot = (y % TILE) * group_rows + y / TILE;
                    let at = slot * row_len + local * tiles_x;
                    for k in 0..PATCH {
                        gather_every_tile(row, k, &mut columns[k * column_len + at..][..tiles_x]);
                    }
                }
            }
            // Bᵀ along each row: the patch's columns → its row transforms `rows[c]`.
            let mut cols = columns.chunks_exact(column_len);
            b_transpose_times(
                core::array::from_fn(|_| cols.next().unwrap()),
                split_n(rows, column_len),
            );
            // Bᵀ down each column of tiles, into ξ = 6·r + c.
            for (c, transformed) in rows.chunks_exact(column_len).enumerate() {
                let patch_row = |k: usize| {
                    let group = (k % TILE) * group_rows + k / TILE;
                    &transformed[group * row_len..][..total]
                };
                let mut out = v.chunks_exact_mut(total).skip(c).step_by(PATCH);
                b_transpose_times(
                    core::array::from_fn(patch_row),
                    core::array::from_fn(|_| out.next().unwrap()),
                );
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

/// The 36 GEMMs `M[ξ] [m, T] (+)= lhs[ξ] [m, k] · rhs[ξ] [k, T]`, in parallel over ξ, each
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
/// this pass) from `M[c][ξ][t]`. Both 1-D transforms run over a channel's tiles of all images
/// at once (unit stride; see [`transform_input`]) and leave the 16 values of each tile in the
/// first 16 rows of `m[c]`; those are then scattered into the output planes.
fn transform_output<T: Real>(
    m: &mut [T],
    order: TileOrder,
    [h_out, w_out]: [usize; 2],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    let TileOrder {
        tiles_x,
        row_len,
        total,
        ..
    } = order;
    let c_out = m.len() / (XI * total);
    m.par_chunks_mut(XI * total).enumerate().for_each_init(
        || vec![T::zero(); TILE * PATCH * total],
        |s, (c, m)| {
            // s[i][col] = (Aᵀ M)[i][col].
            for col in 0..PATCH {
                let mut out = s.chunks_exact_mut(total).skip(col).step_by(PATCH);
                a_transpose_times(
                    core::array::from_fn(|k| &m[(k * PATCH + col) * total..][..total]),
                    core::array::from_fn(|_| out.next().unwrap()),
                    T::zero(),
                );
            }
            // m[4i + j] = (Aᵀ M A)[i][j] + bias (M is read in full above).
            let bias = bias.map_or(T::zero(), |b| b[c]);
            for (i, s) in s.chunks_exact(PATCH * total).enumerate() {
                let mut cols = s.chunks_exact(total);
                a_transpose_times(
                    core::array::from_fn(|_| cols.next().unwrap()),
                    split_n(&mut m[i * TILE * total..], total),
                    bias,
                );
            }
        },
    );
    let m: &[T] = m;
    y.par_chunks_mut(h_out * w_out)
        .enumerate()
        .for_each(|(plane, y)| {
            let (local, c) = (plane / c_out, plane % c_out);
            let corners = &m[c * XI * total..][..TILE * TILE * total];
            for (corner, values) in corners.chunks_exact(total).enumerate() {
                let (i, j) = (corner / TILE, corner % TILE);
                for (ty, values) in values.chunks_exact(row_len).enumerate() {
                    let oy = TILE * ty + i;
                    if oy >= h_out {
                        break;
                    }
                    let values = &values[local * tiles_x..][..tiles_x];
                    let slots = y[oy * w_out..][..w_out][j.min(w_out)..]
                        .iter_mut()
                        .step_by(TILE);
                    for (slot, &value) in slots.zip(values) {
                        *slot = value;
                    }
                }
            }
        });
}

/// `Ŷ[c][ξ][t] = (A dY Aᵀ)[ξ]` for every output-gradient tile (4×4, zeros past the edge), in
/// the tile order of [`transform_input`]. Each channel's tiles are gathered as their 16 values
/// `q[4i + j][t] = dY[4ty + i][4tx + j]`, then both 1-D transforms run over all the pass's
/// images at once (unit stride).
fn transform_output_grad<T: Real>(
    src: Planes<T>,
    images: Range<usize>,
    order: TileOrder,
    y_hat: &mut [T],
) {
    let TileOrder {
        tiles_y,
        tiles_x,
        row_len,
        total,
    } = order;
    let (ph, pw) = (TILE * tiles_y, TILE * tiles_x);
    y_hat.par_chunks_mut(XI * total).enumerate().for_each_init(
        || {
            (
                vec![T::zero(); ph * pw],
                vec![T::zero(); TILE * TILE * total],
                vec![T::zero(); PATCH * TILE * total],
            )
        },
        |(padded, q, p), (channel, out)| {
            for (local, image) in images.clone().enumerate() {
                // Sizes that are no multiple of 4: the last tiles read the scratch's zeros.
                copy_padded(
                    src.plane(image, channel),
                    [src.h, src.w],
                    [0, 0],
                    [ph, pw],
                    padded,
                );
                for (y, row) in padded.chunks_exact(pw).enumerate() {
                    let (ty, i) = (y / TILE, y % TILE);
                    let at = ty * row_len + local * tiles_x;
                    for j in 0..TILE {
                        let dst = &mut q[(TILE * i + j) * total + at..][..tiles_x];
                        gather_every_tile(row, j, dst);
                    }
                }
            }
            // A dY, per column j: p[r][j] = Σ_i A[r][i] q[i][j].
            for j in 0..TILE {
                let mut dst = p.chunks_exact_mut(total).skip(j).step_by(TILE);
                a_times(
                    core::array::from_fn(|i| &q[(TILE * i + j) * total..][..total]),
                    core::array::from_fn(|_| dst.next().unwrap()),
                );
            }
            // (A dY) Aᵀ, per row r: into ξ = 6·r + c.
            for r in 0..PATCH {
                let mut dst = out.chunks_exact_mut(total).skip(PATCH * r);
                a_times(
                    core::array::from_fn(|j| &p[(TILE * r + j) * total..][..total]),
                    core::array::from_fn(|_| dst.next().unwrap()),
                );
            }
        },
    );
}

/// A 3×3 stride-1 convolution of `src` with the transformed kernels `u` (`[c_out, 36,
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
    let per_image = TileOrder::new(out_size, 1).total;
    let pass = images_per_pass::<T>(c_in.max(c_out), XI * per_image, batch);
    let out_len = c_out * out_size[0] * out_size[1];
    let mut y = vec![T::zero(); batch * out_len];
    let (mut v, mut m) = (Vec::new(), Vec::new());
    for first in (0..batch).step_by(pass) {
        let images = first..(first + pass).min(batch);
        let order = TileOrder::new(out_size, images.len());
        let t = order.total;
        v.resize(c_in * XI * t, T::zero());
        m.resize(c_out * XI * t, T::zero());
        transform_input(src, images.clone(), pad, order, &mut v);
        // M[c_out][ξ][t] = U[ξ] [c_out, c_in] · V[c_in][ξ][t]
        multiply_per_xi(
            [c_out, t, c_in],
            (&mut m, t, XI * t),
            false,
            (u, c_in, [1, (XI * c_in) as isize]),
            (&v, t, [1, (XI * t) as isize]),
        );
        let y = &mut y[images.start * out_len..images.end * out_len];
        transform_output(&mut m, order, out_size, bias, y);
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
    let flipped = flipped_transposed(w, s.c_out, s.c_in);
    let u = transform_kernels(&flipped, s.c_in, s.c_out);
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
    let per_image = TileOrder::new([s.h_out, s.w_out], 1).total;
    let pass = images_per_pass::<T>(s.c_in.max(s.c_out), XI * per_image, s.batch);
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
    // ∂L/∂U [c_out][36][c_in], summed over passes.
    let mut du = vec![T::zero(); XI * s.c_out * s.c_in];
    let (mut v, mut y_hat) = (Vec::new(), Vec::new());
    for first in (0..s.batch).step_by(pass) {
        let images = first..(first + pass).min(s.batch);
        let order = TileOrder::new([s.h_out, s.w_out], images.len());
        let t = order.total;
        v.resize(s.c_in * XI * t, T::zero());
        y_hat.resize(s.c_out * XI * t, T::zero());
        transform_input(xs, images.clone(), s.pad, order, &mut v);
        transform_output_grad(dys, images, order, &mut y_hat);
        // ∂L/∂U[ξ] [c_out, c_in] += Ŷ[c_out][ξ][t] · V[c_in][ξ][t]ᵀ
        multiply_per_xi(
            [s.c_out, s.c_in, t],
            (&mut du, s.c_in, XI * s.c_in),
            first > 0,
            (&y_hat, t, [1, (XI * t) as isize]),
            (&v, t, [(XI * t) as isize, 1]),
        );
    }
    // ∂L/∂k = Gᵀ (∂L/∂U) G per kernel (in f64, like the kernel transform), in parallel over
    // output channels.
    let mut dw = vec![T::zero(); s.c_out * s.c_in * 9];
    dw.par_chunks_mut(s.c_in * 9)
        .zip(du.par_chunks(XI * s.c_in))
        .for_each(|(dw, du)| {
            for (i, dk) in dw.chunks_mut(9).enumerate() {
                let d = |r: usize, c: usize| wide(du[(r * PATCH + c) * s.c_in + i]);
                let cols: [[f64; 3]; PATCH] =
                    core::array::from_fn(|c| g_transpose_times(core::array::from_fn(|r| d(r, c))));
                for r in 0..3 {
                    let row = g_transpose_times(core::array::from_fn(|c| cols[c][r]));
                    for (d, v) in dk[r * 3..r * 3 + 3].iter_mut().zip(row) {
                        *d = real(v);
                    }
                }
            }
        });
    dw
}
