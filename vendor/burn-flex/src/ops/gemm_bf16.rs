//! Lethe patch (issue #29): a GEMM that rounds its f32 operands to bfloat16 and multiplies
//! them with AVX-512-BF16's `vdpbf16ps` — each instruction adds two bf16 products into each
//! of 16 f32 lanes — accumulating in f32. This is what oneDNN runs for PyTorch's bf16
//! autocast on such CPUs: twice the products per instruction of an f32 FMA, and half the
//! bytes per packed operand.
//!
//! Chosen at run time: [`available`] is true only on x86-64 CPUs that report AVX-512F, BW and
//! BF16; elsewhere callers keep the f32 GEMM, so nothing changes on other machines.
//!
//! Operands that are already bf16 values held in f32 (a bf16 tensor widened for the im2col)
//! are rounded exactly, so the only rounding is f32 accumulation — the result equals an f64
//! product of the same bf16 operands to about 1e-6 relative. Both instructions treat
//! denormal inputs as zero (below 1.2e-38, far under anything a UNet's activations hold).
//!
//! Layout (BLIS-style blocking): per `KC × NC` block, B is packed into `NR`-column panels
//! with K in pairs — `[K/2][NR]` 32-bit words, each two bf16 of one column, so one 64-byte
//! row holds 16 columns' pairs — and per `MC × KC` block A into `MR`-row panels of
//! `[K/2][MR]` words (a pair is broadcast to all lanes). Packing converts with
//! `vcvtne2ps2bf16`, whichever way the operand runs in memory. The micro-kernel keeps an
//! `MR × NR` f32 tile in 24 of the 32 vector registers. An odd K is padded with a zero pair
//! element; tiles at the matrix's edge are computed in a scratch tile and copied out.

use alloc::vec::Vec;
use burn_std::bf16;

/// Rows of A per micro-kernel tile.
const MR: usize = 12;
/// Columns of B per micro-kernel tile (two 16-lane registers).
const NR: usize = 32;
/// Depth of a packed block (even): a B panel is `KC × NR × 2` bytes = 16 KiB, in L1.
const KC: usize = 256;
/// Rows of A packed at once (a multiple of MR): `MC × KC × 2` bytes = 48 KiB, in L2.
const MC: usize = 96;
/// Columns of B packed at once (a multiple of NR): `KC × NC × 2` bytes = 512 KiB, in L2/L3.
const NC: usize = 1024;

/// Whether this CPU runs the bf16 GEMM natively (checked once).
pub fn available() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512bf16")
        })
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// bf16 → f32 (exact), branch-free so element loops around it vectorise.
#[inline(always)]
pub(crate) fn bf16_to_f32(b: bf16) -> f32 {
    f32::from_bits((b.to_bits() as u32) << 16)
}

/// f32 → bf16, nearest even, as `bf16::from_f32` but inlined (a select, not a branch).
#[inline(always)]
pub(crate) fn f32_to_bf16(x: f32) -> bf16 {
    bf16::from_bits(to_bf16(x))
}

/// f32 → bf16 bits, rounding to nearest even; NaN stays NaN (quietened).
#[inline(always)]
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) | 0x0040) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// bf16 → f32 over a slice: exact (a bf16 is the top half of an f32), in a loop the compiler
/// vectorises — `half`'s per-element conversion call was a tenth of a bf16 training step.
/// Collected rather than zero-filled and overwritten: the fill was a pass of its own
/// (`memset`, 2% of a bf16 training step).
pub(crate) fn widen(src: &[bf16]) -> Vec<f32> {
    src.iter().map(|&b| bf16_to_f32(b)).collect()
}

/// f32 → bf16 over a slice, rounding to nearest even as `half::bf16::from_f32` does.
pub(crate) fn narrow(src: &[f32]) -> Vec<bf16> {
    src.iter().map(|&x| f32_to_bf16(x)).collect()
}

/// A matrix operand: element `(row, col)` is at `ptr + row·rs + col·cs`.
#[derive(Clone, Copy)]
struct Operand {
    ptr: *const f32,
    cs: isize,
    rs: isize,
}

/// `dst[m × n] (=|+=) lhs[m × k] · rhs[k × n]` with operands rounded to bf16 and f32
/// accumulation; `dst` has row stride `dst_rs` and column stride 1, `lhs`/`rhs` are given by
/// pointer and (column, row) strides like `gemm::gemm`'s.
///
/// # Safety
/// [`available`] must be true; the pointers and strides must describe matrices of the given
/// sizes, and `dst` must not overlap the operands.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    [m, n, k]: [usize; 3],
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    lhs: *const f32,
    [lhs_cs, lhs_rs]: [isize; 2],
    rhs: *const f32,
    [rhs_cs, rhs_rs]: [isize; 2],
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                unsafe { core::slice::from_raw_parts_mut(dst.add(row * dst_rs), n) }.fill(0.0);
            }
        }
        return;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    unsafe {
        x86::gemm(
            [m, n, k],
            (dst, dst_rs),
            accumulate,
            Operand {
                ptr: lhs,
                cs: lhs_cs,
                rs: lhs_rs,
            },
            Operand {
                ptr: rhs,
                cs: rhs_cs,
                rs: rhs_rs,
            },
        )
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        let _ = (
            dst, dst_rs, accumulate, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs,
        );
        unreachable!("gemm_bf16::gemm called where gemm_bf16::available() is false");
    }
}

/// Safe form for tests: `dst[m × n] (=|+=) lhs · rhs` over slices, each operand given by its
/// (column, row) strides. Panics if a stride reaches outside its slice or the CPU lacks
/// AVX-512-BF16 (check [`available`] first).
#[allow(clippy::too_many_arguments)]
pub fn gemm_checked(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: [usize; 2],
    rhs: &[f32],
    rhs_strides: [usize; 2],
) {
    assert!(available(), "this CPU has no AVX-512-BF16");
    let last = |rows: usize, cols: usize, [cs, rs]: [usize; 2]| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(m * n == 0 || dst.len() >= m * n, "dst too short");
    assert!(
        m * k == 0 || last(m, k, lhs_strides) < lhs.len(),
        "lhs too short"
    );
    assert!(
        k * n == 0 || last(k, n, rhs_strides) < rhs.len(),
        "rhs too short"
    );
    let signed = |[cs, rs]: [usize; 2]| [cs as isize, rs as isize];
    unsafe {
        gemm(
            [m, n, k],
            (dst.as_mut_ptr(), n),
            accumulate,
            lhs.as_ptr(),
            signed(lhs_strides),
            rhs.as_ptr(),
            signed(rhs_strides),
        )
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86 {
    use super::*;
    use core::arch::x86_64::*;

    /// The element at `(row, col)` as a pointer; computed without a bounds requirement, so a
    /// masked load may be given the address just past an operand's end.
    #[inline(always)]
    fn address(m: Operand, row: usize, col: usize) -> *const f32 {
        m.ptr
            .wrapping_offset(row as isize * m.rs + col as isize * m.cs)
    }

    /// The mask of the first `n ≤ 16` lanes.
    #[inline(always)]
    fn first_lanes(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    /// `vpermw` indices: word lane 2i takes bf16 lane i (the low row), 2i + 1 lane 16 + i.
    const INTERLEAVE: [i16; 32] = {
        let mut index = [0i16; 32];
        let mut i = 0;
        while i < 16 {
            index[2 * i] = i as i16;
            index[2 * i + 1] = 16 + i as i16;
            i += 1;
        }
        index
    };

    /// Pair words `bf16(lo[i]) | bf16(hi[i]) << 16` for the first `n ≤ 16` lanes, zero
    /// beyond (`hi` null: a zero high half, for an odd depth's last pair). `vcvtne2ps2bf16`
    /// rounds to nearest even; `vpermw` interleaves.
    ///
    /// # Safety
    /// `lo` and `hi` (unless null) must hold `n` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn interleave(lo: *const f32, hi: *const f32, n: usize) -> __m512i {
        unsafe {
            let mask = first_lanes(n);
            let l = _mm512_maskz_loadu_ps(mask, lo);
            let h = if hi.is_null() {
                _mm512_setzero_ps()
            } else {
                _mm512_maskz_loadu_ps(mask, hi)
            };
            // The second operand fills the low 16 bf16 lanes.
            let both: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(h, l));
            let index = _mm512_loadu_si512(INTERLEAVE.as_ptr() as *const __m512i);
            _mm512_permutexvar_epi16(index, both)
        }
    }

    /// Pair words of `n ≤ 32` consecutive values (a run along K): word i is
    /// `bf16(run[2i]) | bf16(run[2i + 1]) << 16`, zero beyond `n`.
    ///
    /// # Safety
    /// `run` must hold `n` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pairs_of_run(run: *const f32, n: usize) -> [u32; 16] {
        unsafe {
            let lo = _mm512_maskz_loadu_ps(first_lanes(n), run);
            let hi = _mm512_maskz_loadu_ps(first_lanes(n.saturating_sub(16)), run.wrapping_add(16));
            core::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo))
        }
    }

    /// Packs `rows × cols` of A (`cols` = the block's depth) into `MR`-row panels of K pairs:
    /// word `(pair, r)` of a panel at `pair·MR + r`.
    ///
    /// # Safety
    /// The block must lie inside the operand.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pack_a(
        a: Operand,
        [row0, col0]: [usize; 2],
        [rows, cols]: [usize; 2],
        out: &mut [u32],
    ) {
        let pairs = cols.div_ceil(2);
        for panel in 0..rows.div_ceil(MR) {
            let words = &mut out[panel * pairs * MR..(panel + 1) * pairs * MR];
            let height = (rows - panel * MR).min(MR);
            let r_first = row0 + panel * MR;
            if a.rs == 1 {
                // The panel's rows are adjacent: one masked load per column of a pair.
                for pair in 0..pairs {
                    let c = col0 + 2 * pair;
                    let hi = if 2 * pair + 1 < cols {
                        address(a, r_first, c + 1)
                    } else {
                        core::ptr::null()
                    };
                    let v = unsafe { interleave(address(a, r_first, c), hi, height) };
                    let at = words[pair * MR..].as_mut_ptr() as *mut i32;
                    unsafe { _mm512_mask_storeu_epi32(at, first_lanes(MR), v) };
                }
            } else if a.cs == 1 {
                // Each row runs along K: 16 pairs converted at once, then spread over the panel.
                for r in 0..MR {
                    for p0 in (0..pairs).step_by(16) {
                        let run = if r < height {
                            let n = (cols - 2 * p0).min(32);
                            unsafe { pairs_of_run(address(a, r_first + r, col0 + 2 * p0), n) }
                        } else {
                            [0; 16]
                        };
                        for (i, &word) in run.iter().take(pairs - p0).enumerate() {
                            words[(p0 + i) * MR + r] = word;
                        }
                    }
                }
            } else {
                for pair in 0..pairs {
                    for r in 0..MR {
                        let at = |c: usize| {
                            if r < height && c < cols {
                                to_bf16(unsafe { *address(a, r_first + r, col0 + c) }) as u32
                            } else {
                                0
                            }
                        };
                        words[pair * MR + r] = at(2 * pair) | at(2 * pair + 1) << 16;
                    }
                }
            }
        }
    }

    /// Packs `rows × cols` of B (`rows` = the block's depth) into `NR`-column panels of K
    /// pairs: word `(pair, c)` of a panel at `pair·NR + c`.
    ///
    /// # Safety
    /// The block must lie inside the operand.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pack_b(
        b: Operand,
        [row0, col0]: [usize; 2],
        [rows, cols]: [usize; 2],
        out: &mut [u32],
    ) {
        let pairs = rows.div_ceil(2);
        for panel in 0..cols.div_ceil(NR) {
            let words = &mut out[panel * pairs * NR..(panel + 1) * pairs * NR];
            let width = (cols - panel * NR).min(NR);
            let c_first = col0 + panel * NR;
            if b.cs == 1 {
                // Rows run along N (the im2col matrix, an output gradient): two rows of a
                // pair interleaved, 16 columns at a time.
                for pair in 0..pairs {
                    let r = row0 + 2 * pair;
                    for sixteen in 0..NR / 16 {
                        let c = c_first + 16 * sixteen;
                        let n = width.saturating_sub(16 * sixteen);
                        let hi = if 2 * pair + 1 < rows {
                            address(b, r + 1, c)
                        } else {
                            core::ptr::null()
                        };
                        let v = unsafe { interleave(address(b, r, c), hi, n) };
                        let at = words[pair * NR + 16 * sixteen..].as_mut_ptr() as *mut __m512i;
                        unsafe { _mm512_storeu_si512(at, v) };
                    }
                }
            } else if b.rs == 1 {
                // Columns run along K (the im2col matrix transposed, in the weight gradient):
                // 16 pairs of a column at once, spread over the panel.
                for c in 0..NR {
                    for p0 in (0..pairs).step_by(16) {
                        let run = if c < width {
                            let n = (rows - 2 * p0).min(32);
                            unsafe { pairs_of_run(address(b, row0 + 2 * p0, c_first + c), n) }
                        } else {
                            [0; 16]
                        };
                        for (i, &word) in run.iter().take(pairs - p0).enumerate() {
                            words[(p0 + i) * NR + c] = word;
                        }
                    }
                }
            } else {
                for pair in 0..pairs {
                    for c in 0..NR {
                        let at = |r: usize| {
                            if c < width && r < rows {
                                to_bf16(unsafe { *address(b, row0 + r, c_first + c) }) as u32
                            } else {
                                0
                            }
                        };
                        words[pair * NR + c] = at(2 * pair) | at(2 * pair + 1) << 16;
                    }
                }
            }
        }
    }

    /// The whole product, block by block (see the module comment).
    ///
    /// # Safety
    /// As [`super::gemm`].
    pub(super) unsafe fn gemm(
        mnk @ [m, n, _]: [usize; 3],
        dst: (*mut f32, usize),
        accumulate: bool,
        a: Operand,
        b: Operand,
    ) {
        std::thread_local! {
            /// The packed A and B blocks, kept per thread: a convolution runs one GEMM per
            /// image, and a fresh zeroed B buffer is up to 0.5 MiB each time. Packing writes
            /// every word the kernel reads, so a reused buffer needs no clearing.
            static PACKED: core::cell::RefCell<[Vec<u32>; 2]> =
                const { core::cell::RefCell::new([Vec::new(), Vec::new()]) };
        }
        let len_a = KC.div_ceil(2) * MC.min(m.next_multiple_of(MR));
        let len_b = KC.div_ceil(2) * NC.min(n.next_multiple_of(NR));
        PACKED.with_borrow_mut(|[packed_a, packed_b]| {
            for (buffer, len) in [(&mut *packed_a, len_a), (&mut *packed_b, len_b)] {
                if buffer.len() < len {
                    buffer.resize(len, 0);
                }
            }
            // SAFETY: as this function's; the buffers hold a whole block each.
            unsafe { blocks(mnk, dst, accumulate, a, b, packed_a, packed_b) }
        })
    }

    /// [`gemm`]'s loops over blocks, panels and tiles, packing into the given buffers.
    ///
    /// # Safety
    /// As [`super::gemm`]; `packed_a`/`packed_b` must hold a whole packed block.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn blocks(
        [m, n, k]: [usize; 3],
        (dst, dst_rs): (*mut f32, usize),
        accumulate: bool,
        a: Operand,
        b: Operand,
        packed_a: &mut [u32],
        packed_b: &mut [u32],
    ) {
        for jc in (0..n).step_by(NC) {
            let nc = (n - jc).min(NC);
            for pc in (0..k).step_by(KC) {
                let kc = (k - pc).min(KC);
                let pairs = kc.div_ceil(2);
                unsafe { pack_b(b, [pc, jc], [kc, nc], packed_b) };
                let load_c = accumulate || pc > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = (m - ic).min(MC);
                    unsafe { pack_a(a, [ic, pc], [mc, kc], packed_a) };
                    for jr in (0..nc).step_by(NR) {
                        let b_panel = &packed_b[(jr / NR) * pairs * NR..];
                        for ir in (0..mc).step_by(MR) {
                            let a_panel = &packed_a[(ir / MR) * pairs * MR..];
                            let tile = unsafe { dst.add((ic + ir) * dst_rs + jc + jr) };
                            let size = [(mc - ir).min(MR), (nc - jr).min(NR)];
                            unsafe {
                                tile_into(pairs, a_panel, b_panel, (tile, dst_rs), size, load_c)
                            };
                        }
                    }
                }
            }
        }
    }

    /// One `MR × NR` tile of C; an edge tile (`rows < MR` or `cols < NR`) goes through a
    /// scratch tile so the kernel always reads and writes whole registers.
    ///
    /// # Safety
    /// `c` must hold `rows × cols` at row stride `c_rs`; the panels must hold `pairs` pairs.
    #[inline(always)]
    unsafe fn tile_into(
        pairs: usize,
        a_panel: &[u32],
        b_panel: &[u32],
        (c, c_rs): (*mut f32, usize),
        [rows, cols]: [usize; 2],
        load_c: bool,
    ) {
        if rows == MR && cols == NR {
            return unsafe { kernel(pairs, a_panel.as_ptr(), b_panel.as_ptr(), c, c_rs, load_c) };
        }
        let mut scratch = [0f32; MR * NR];
        if load_c {
            for r in 0..rows {
                let src = unsafe { core::slice::from_raw_parts(c.add(r * c_rs), cols) };
                scratch[r * NR..r * NR + cols].copy_from_slice(src);
            }
        }
        unsafe {
            kernel(
                pairs,
                a_panel.as_ptr(),
                b_panel.as_ptr(),
                scratch.as_mut_ptr(),
                NR,
                load_c,
            )
        };
        for r in 0..rows {
            let dst = unsafe { core::slice::from_raw_parts_mut(c.add(r * c_rs), cols) };
            dst.copy_from_slice(&scratch[r * NR..r * NR + cols]);
        }
    }

    /// `C[MR × NR] (=|+=) A_panel · B_panel` over `pairs` K pairs: per pair, two 64-byte
    /// loads of B and MR broadcasts of A feed 2·MR `vdpbf16ps`.
    ///
    /// # Safety
    /// AVX-512F and AVX-512-BF16 must be present; the panels must hold `pairs` pairs and `c`
    /// a whole tile at row stride `c_rs`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn kernel(
        pairs: usize,
        a: *const u32,
        b: *const u32,
        c: *mut f32,
        c_rs: usize,
        load_c: bool,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            if load_c {
                for (r, row) in acc.iter_mut().enumerate() {
                    row[0] = _mm512_loadu_ps(c.add(r * c_rs));
                    row[1] = _mm512_loadu_ps(c.add(r * c_rs + 16));
                }
            }
            for pair in 0..pairs {
                let b_row = b.add(pair * NR) as *const __m512i;
                let b0: __m512bh = core::mem::transmute(_mm512_loadu_si512(b_row));
                let b1: __m512bh = core::mem::transmute(_mm512_loadu_si512(b_row.add(1)));
                let a_pairs = a.add(pair * MR);
                for (r, row) in acc.iter_mut().enumerate() {
                    let a_pair: __m512bh =
                        core::mem::transmute(_mm512_set1_epi32(*a_pairs.add(r) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], a_pair, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], a_pair, b1);
                }
            }
            for (r, row) in acc.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * c_rs), row[0]);
                _mm512_storeu_ps(c.add(r * c_rs + 16), row[1]);
            }
        }
    }
}
