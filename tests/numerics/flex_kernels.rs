//! Lethe's patches to burn-flex (vendor/README.md) against plain references.
//!
//! The convolution (`ops/conv2d_gemm.rs`) against a direct six-loop convolution in f64:
//! forward, input, weight and bias gradients, for the shapes the UNet uses (3×3 stride 1 and 2, 1×1, right/bottom-padded downsampling) and the
//! cases the patch claims beyond them (groups, dilation, f64, half precision), and the
//! Winograd F(4×4, 3×3) path that 3×3 stride-1 convolutions with ≥ 32 input and ≥ 32 output
//! channels take. The loss is
//! `sum(y · g)` with a random `g`, so the gradients are `conv_transpose(g)` and `g ⋆ x`.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};
use lethe::backend::{BackendChoice, device};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    name: &'static str,
    input: [usize; 4],
    weight: [usize; 4],
    stride: usize,
    /// (begin, end) zeros per spatial axis.
    padding: [(usize, usize); 2],
    dilation: usize,
    groups: usize,
}

fn cases() -> Vec<Case> {
    let case = |name, input, weight, stride, pad, dilation, groups| Case {
        name,
        input,
        weight,
        stride,
        padding: [pad, pad],
        dilation,
        groups,
    };
    vec![
        case("3×3 s1 p1", [3, 5, 9, 8], [4, 5, 3, 3], 1, (1, 1), 1, 1),
        case("3×3 s2 p1", [2, 4, 9, 9], [6, 4, 3, 3], 2, (1, 1), 1, 1),
        case("1×1", [2, 6, 5, 7], [3, 6, 1, 1], 1, (0, 0), 1, 1),
        case(
            "3×3 s2 pad right/bottom",
            [2, 3, 8, 8],
            [3, 3, 3, 3],
            2,
            (0, 1),
            1,
            1,
        ),
        case(
            "3×3 dilation 2",
            [2, 3, 9, 9],
            [2, 3, 3, 3],
            1,
            (2, 2),
            2,
            1,
        ),
        case("3×3 groups 2", [2, 4, 6, 6], [6, 2, 3, 3], 1, (1, 1), 1, 2),
        // 3×3 stride 1 with ≥ 32 input and ≥ 32 output channels takes the Winograd path
        // (`ops/conv2d_winograd.rs`): on small planes (one or two 4×4 tiles a side, the last
        // one partly outside), with the paddings it accepts (0–2 zeros, asymmetric).
        case(
            "Winograd 3×3 s1 p1, odd sizes",
            [2, 64, 7, 9],
            [33, 64, 3, 3],
            1,
            (1, 1),
            1,
            1,
        ),
        case(
            "Winograd unpadded",
            [2, 66, 6, 7],
            [32, 66, 3, 3],
            1,
            (0, 0),
            1,
            1,
        ),
        case(
            "Winograd pad 2",
            [1, 64, 5, 4],
            [40, 64, 3, 3],
            1,
            (2, 2),
            1,
            1,
        ),
        case(
            "Winograd pad right/bottom",
            [3, 64, 6, 6],
            [36, 64, 3, 3],
            1,
            (0, 2),
            1,
            1,
        ),
        // The same four geometries on planes of six or more tiles a side (sizes mostly no
        // multiple of 4).
        case(
            "Winograd p1, 24×26",
            [2, 32, 24, 26],
            [32, 32, 3, 3],
            1,
            (1, 1),
            1,
            1,
        ),
        case(
            "Winograd unpadded, 27×29",
            [1, 33, 27, 29],
            [34, 33, 3, 3],
            1,
            (0, 0),
            1,
            1,
        ),
        case(
            "Winograd pad 2, 23×22",
            [1, 32, 23, 22],
            [32, 32, 3, 3],
            1,
            (2, 2),
            1,
            1,
        ),
        case(
            "Winograd pad right/bottom, 25×26",
            [2, 32, 25, 26],
            [33, 32, 3, 3],
            1,
            (0, 2),
            1,
            1,
        ),
        // 512 output channels at 8×8: the transformed buffers fill a pass (≈ 4 MiB) at 14
        // images, so 15 images take two passes, the second with one image.
        case(
            "Winograd two passes",
            [15, 32, 8, 8],
            [512, 32, 3, 3],
            1,
            (1, 1),
            1,
            1,
        ),
        case(
            "1 input channel (conv_in)",
            [4, 1, 7, 7],
            [8, 1, 3, 3],
            1,
            (1, 1),
            1,
            1,
        ),
    ]
}

fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    // f32-representable values, so every dtype starts from the same numbers.
    (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) as f64)
        .collect()
}

/// Output size along one axis.
fn out_size(c: &Case, axis: usize) -> usize {
    let (b, e) = c.padding[axis];
    let k = c.weight[2 + axis];
    (c.input[2 + axis] + b + e - c.dilation * (k - 1) - 1) / c.stride + 1
}

/// y, dL/dx, dL/dw and dL/db of L = sum(y · g), by direct summation.
fn reference(c: &Case, x: &[f64], w: &[f64], bias: &[f64], g: &[f64]) -> [Vec<f64>; 4] {
    let [n, ci, h, wd] = c.input;
    let [co, cig, kh, kw] = c.weight;
    let (ho, wo) = (out_size(c, 0), out_size(c, 1));
    let cog = co / c.groups;
    let mut y = vec![0.0; n * co * ho * wo];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; bias.len()];
    for b in 0..n {
        for o in 0..co {
            let group = o / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((b * co + o) * ho + oy) * wo + ox;
                    let mut acc = bias[o];
                    for i in 0..cig {
                        let cin = group * cig + i;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride + ky * c.dilation) as isize
                                    - c.padding[0].0 as isize;
                                let ix = (ox * c.stride + kx * c.dilation) as isize
                                    - c.padding[1].0 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((b * ci + cin) * h + iy as usize) * wd + ix as usize;
                                let wi = ((o * cig + i) * kh + ky) * kw + kx;
                                acc += x[xi] * w[wi];
                                dx[xi] += g[yi] * w[wi];
                                dw[wi] += g[yi] * x[xi];
                            }
                        }
                    }
                    y[yi] = acc;
                    db[o] += g[yi];
                }
            }
        }
    }
    [y, dx, dw, db]
}

fn tensor<const D: usize>(v: &[f64], shape: [usize; D], dtype: DType, dev: &Device) -> Tensor<D> {
    let data = TensorData::new(v.iter().map(|&a| a as f32).collect::<Vec<_>>(), shape);
    Tensor::<D>::from_data(data, dev).cast(dtype)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.cast(DType::F64)
        .into_data()
        .try_to_vec::<f64>()
        .expect("f64 values")
}

fn assert_close(what: &str, case: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{case}: {what} length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= tol * scale,
        "{case}: {what} differs from the direct convolution by {worst:e} (scale {scale})"
    );
}

/// F(4×4, 3×3)'s transforms scale values by up to ~100 on their way through its GEMMs, so its
/// results carry a few times the rounding of a direct sum: in f32 up to 1.5e-5 of the largest
/// value at 512 channels ("Winograd two passes"), against ≤ 1e-6 off the Winograd path.
const WINOGRAD_ROUNDING: f64 = 3.0;

/// Whether `conv2d_gemm` hands the case to the Winograd path (`Conv3x3::worth_it`).
fn takes_winograd(c: &Case) -> bool {
    let [c_out, c_in, kh, kw] = c.weight;
    [kh, kw] == [3, 3]
        && c.stride == 1
        && c.dilation == 1
        && c.groups == 1
        && c_in >= 32
        && c_out >= 32
}

fn check(dtype: DType, tol: f64) {
    check_from(dtype, tol, |v| v);
}

/// [`check`] with every input first passed through `start` (e.g. rounded to bf16, so the
/// reference sums exactly the values the low-precision tensors hold).
fn check_from(dtype: DType, tol: f64, start: fn(f64) -> f64) {
    let dev = device(BackendChoice::Cpu).unwrap().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let random =
        |n, rng: &mut ChaCha8Rng| -> Vec<f64> { random(n, rng).into_iter().map(start).collect() };
    for c in cases() {
        let tol = if takes_winograd(&c) {
            tol * WINOGRAD_ROUNDING
        } else {
            tol
        };
        let (ho, wo) = (out_size(&c, 0), out_size(&c, 1));
        let y_shape = [c.input[0], c.weight[0], ho, wo];
        let x = random(c.input.iter().product(), &mut rng);
        let w = random(c.weight.iter().product(), &mut rng);
        let b = random(c.weight[0], &mut rng);
        let g = random(y_shape.iter().product(), &mut rng);
        let [y_ref, dx_ref, dw_ref, db_ref] = reference(&c, &x, &w, &b, &g);

        let xt = tensor(&x, c.input, dtype, &dev).require_grad();
        let wt = tensor(&w, c.weight, dtype, &dev).require_grad();
        let bt = tensor(&b, [c.weight[0]], dtype, &dev).require_grad();
        let gt = tensor(&g, y_shape, dtype, &dev);
        let options =
            ConvOptions::new_with_padding([c.stride; 2], c.padding, [c.dilation; 2], c.groups);
        let y = conv2d(xt.clone(), wt.clone(), Some(bt.clone()), options);
        assert_eq!(y.dims(), y_shape, "{}: output shape", c.name);
        let grads = (y.clone() * gt).sum().backward();
        assert_close("forward", c.name, &values(y), &y_ref, tol);
        assert_close(
            "input gradient",
            c.name,
            &values(xt.grad(&grads).expect("x grad")),
            &dx_ref,
            tol,
        );
        assert_close(
            "weight gradient",
            c.name,
            &values(wt.grad(&grads).expect("w grad")),
            &dw_ref,
            tol,
        );
        assert_close(
            "bias gradient",
            c.name,
            &values(bt.grad(&grads).expect("b grad")),
            &db_ref,
            tol,
        );
    }
}

#[test]
fn f32_convolution_and_gradients_equal_direct_summation() {
    check(DType::F32, 1e-5);
}

#[test]
fn f64_convolution_and_gradients_equal_direct_summation() {
    // Inputs are f32-rounded before widening, so f64 agrees to rounding of the sums.
    check(DType::F64, 1e-12);
}

#[test]
fn half_precision_runs_through_f32_and_rounds_once() {
    check(DType::BF16, 2e-2);
}

/// `v` (an f32 value) rounded to the nearest bf16. Through f32: `half`'s `bf16::from_f64`
/// drops the low 32 bits of an f64 before rounding, which can turn an f32 just above a
/// rounding tie into a tie and round it the other way.
fn to_bf16(v: f64) -> f64 {
    half::bf16::from_f32(v as f32).to_f64()
}

/// On bf16 values, a bf16 convolution and its gradients (native `vdpbf16ps` products on CPUs
/// with AVX-512-BF16, f32 products elsewhere — both accumulate in f32) equal the exact sums
/// up to the one rounding of each result to bf16 (2⁻⁸ relative, here against the largest
/// value) plus f32 accumulation.
#[test]
fn bf16_convolution_on_bf16_values_rounds_only_its_results() {
    check_from(DType::BF16, 5e-3, to_bf16);
}

/// A batched, broadcast bf16 matmul (attention's and the linears' path; native `vdpbf16ps`
/// products on CPUs with AVX-512-BF16, f32 products elsewhere) on bf16 values equals the
/// exact products up to the one rounding of each result to bf16.
#[test]
fn bf16_matmul_on_bf16_values_rounds_only_its_results() {
    let dev = device(BackendChoice::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    let ([b0, b1, m, k], n) = ([2, 3, 20, 33], 17);
    let lhs: Vec<f64> = random(b0 * b1 * m * k, &mut rng)
        .into_iter()
        .map(to_bf16)
        .collect();
    // rhs broadcast over the first batch dimension.
    let rhs: Vec<f64> = random(b1 * k * n, &mut rng)
        .into_iter()
        .map(to_bf16)
        .collect();
    let got = values(
        tensor(&lhs, [b0, b1, m, k], DType::BF16, &dev).matmul(tensor(
            &rhs,
            [1, b1, k, n],
            DType::BF16,
            &dev,
        )),
    );
    assert_eq!(got.len(), b0 * b1 * m * n);
    for (index, &value) in got.iter().enumerate() {
        let (col, row, batch) = (index % n, (index / n) % m, index / (m * n));
        let exact: f64 = (0..k)
            .map(|i| lhs[(batch * m + row) * k + i] * rhs[((batch % b1) * k + i) * n + col])
            .sum();
        assert!(
            (value - exact).abs() <= 2f64.powi(-8) * exact.abs() + 1e-5,
            "[{batch}, {row}, {col}] = {value}, exact {exact}"
        );
    }
}

/// The native bf16 GEMM itself (`ops/gemm_bf16.rs`), where this CPU has AVX-512-BF16: equal
/// to the f64 product of the bf16-rounded operands to f32 accumulation, on shapes with edge
/// tiles in every direction, an odd depth, depths across the 256-deep blocks, transposed
/// operands and accumulation onto the destination.
#[test]
fn bf16_gemm_equals_f64_products_of_its_bf16_operands() {
    use burn::backend::flex::ops::gemm_bf16;
    if !gemm_bf16::available() {
        eprintln!("skipped: this CPU has no AVX-512-BF16, so the native bf16 GEMM is never used");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    // (m, n, k, lhs transposed, rhs transposed, accumulate)
    let shapes = [
        (12, 32, 2, false, false, false),
        (1, 1, 1, false, false, false),
        (13, 33, 7, false, false, true),
        (64, 784, 576, false, false, false),
        (40, 100, 600, true, false, true),
        (96, 65, 513, false, true, false),
        (130, 1100, 300, true, true, true),
    ];
    for (m, n, k, lhs_t, rhs_t, accumulate) in shapes {
        let draw = |len, rng: &mut ChaCha8Rng| -> Vec<f32> {
            (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
        };
        let (lhs, rhs, start) = (
            draw(m * k, &mut rng),
            draw(k * n, &mut rng),
            draw(m * n, &mut rng),
        );
        // (column, row) strides of a row-major matrix, or of its transpose stored row-major.
        let lhs_strides = if lhs_t { [m, 1] } else { [1, k] };
        let rhs_strides = if rhs_t { [k, 1] } else { [1, n] };
        let mut dst = start.clone();
        gemm_bf16::gemm_checked(
            [m, n, k],
            &mut dst,
            accumulate,
            &lhs,
            lhs_strides,
            &rhs,
            rhs_strides,
        );
        let at = |v: &[f32], [cs, rs]: [usize; 2], r: usize, c: usize| {
            to_bf16(v[r * rs + c * cs] as f64)
        };
        for r in 0..m {
            for c in 0..n {
                let exact: f64 = (0..k)
                    .map(|i| at(&lhs, lhs_strides, r, i) * at(&rhs, rhs_strides, i, c))
                    .sum::<f64>()
                    + if accumulate {
                        start[r * n + c] as f64
                    } else {
                        0.0
                    };
                let got = dst[r * n + c] as f64;
                // f32 accumulation over k terms of magnitude ≤ 1: |error| ≲ k·2⁻²⁴·|partial sums|.
                let bound = 1e-6 * (k as f64).sqrt().max(1.0) * 4.0 + 1e-6 * exact.abs();
                assert!(
                    (got - exact).abs() <= bound,
                    "{m}×{n}×{k} (lhs_t {lhs_t}, rhs_t {rhs_t}, accumulate {accumulate}): \
                     [{r},{c}] = {got}, exact {exact}"
                );
            }
        }
    }
}

/// The branch-free sigmoid (`ops/activation.rs`) against `1 / (1 + e^-x)` in f64, over every
/// 2^-10 step of [-100, 100] plus the edge cases; SiLU is built on it.
#[test]
fn sigmoid_equals_the_f64_formula_to_a_few_ulp() {
    let dev = device(BackendChoice::Cpu).unwrap();
    let mut xs: Vec<f32> = (-102_400..=102_400).map(|i| i as f32 / 1024.0).collect();
    xs.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        87.3,
        -87.3,
        -87.4,
        -103.0,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    let n = xs.len();
    let got = burn::tensor::activation::sigmoid(Tensor::<1>::from_data(
        TensorData::new(xs.clone(), [n]),
        &dev,
    ))
    .into_data()
    .try_to_vec::<f32>()
    .expect("f32 values");
    for (&x, &s) in xs.iter().zip(&got) {
        let want = 1.0 / (1.0 + (-(x as f64)).exp());
        let err = (s as f64 - want).abs();
        // 4 ulp of the result; below x = -87.3 the patch flushes to zero (σ < e^-87.3 ≈ 1.22e-38).
        let ok = err <= 4.0 * f32::EPSILON as f64 * want || (x < -87.3 && err < 1.22e-38);
        assert!(ok, "sigmoid({x}) = {s}, want {want} (error {err:e})");
    }
    let nan = burn::tensor::activation::sigmoid(Tensor::<1>::from_data(
        TensorData::new(vec![f32::NAN], [1]),
        &dev,
    ))
    .into_data()
    .try_to_vec::<f32>()
    .expect("f32 values");
    assert!(nan[0].is_nan(), "NaN propagates");
}

/// The vendored bf16 ⇄ f32 casts (`gemm_bf16`'s branch-free conversions) round exactly as
/// `half` does, bit for bit: ties to even, both signs of zero, subnormals, the largest
/// finite values, infinities and NaN (kept a NaN), over every exponent.
#[test]
fn bf16_casts_round_as_half_does_bit_for_bit() {
    let dev = device(BackendChoice::Cpu).unwrap();
    let mut values: Vec<f32> = vec![
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        1e-40,
        -1e-45,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        // Ties: exactly halfway between two bf16 values, below and above an even one.
        f32::from_bits(0x3f80_8000),
        f32::from_bits(0x3f81_8000),
        f32::from_bits(0x3f80_8001),
        f32::from_bits(0x7f7f_ffff),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    values.extend((0..4000).map(|_| f32::from_bits(rng.random::<u32>())));
    let n = values.len();
    let narrowed =
        Tensor::<1>::from_data(TensorData::new(values.clone(), [n]), &dev).cast(DType::BF16);
    let bits: Vec<u16> = narrowed
        .clone()
        .into_data()
        .try_to_vec::<half::bf16>()
        .expect("bf16 values")
        .iter()
        .map(|b| b.to_bits())
        .collect();
    for (v, got) in values.iter().zip(&bits) {
        let want = half::bf16::from_f32(*v);
        if v.is_nan() {
            assert!(half::bf16::from_bits(*got).is_nan(), "{v:e} → {got:#06x}");
        } else {
            assert_eq!(*got, want.to_bits(), "{v:e} ({:#010x})", v.to_bits());
        }
    }
    let widened: Vec<f32> = narrowed
        .cast(DType::F32)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    for (got, b) in widened.iter().zip(&bits) {
        let want = half::bf16::from_bits(*b).to_f32();
        assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()));
    }
}
