//! Lethe patch (issue #29): kernels compiled for the widest vectors the CPU has.

/// Defines `fn $name` (optionally generic over one element type) whose body is compiled three
/// times — for AVX-512F, for AVX2 and for baseline x86-64 — and picks the widest the CPU has
/// at run time. The crate is built for baseline x86-64, whose SSE2 vectors hold four f32s. The
/// kernels spell their sums in a fixed order (GroupNorm's as eight explicit lanes) and Rust
/// never contracts `a·b + c` into an FMA, so every version computes the same bits.
macro_rules! widest_simd_fn {
    (
        $(#[$attr:meta])*
        fn $name:ident $(<$t:ident: $bound:path>)? ($($arg:ident: $ty:ty),* $(,)?) $body:block
    ) => {
        $(#[$attr])*
        fn $name $(<$t: $bound>)? ($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn kernel $(<$t: $bound>)? ($($arg: $ty),*) $body
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512 $(<$t: $bound>)? ($($arg: $ty),*) {
                    kernel $(::<$t>)? ($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2 $(<$t: $bound>)? ($($arg: $ty),*) {
                    kernel $(::<$t>)? ($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512 $(::<$t>)? ($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2 $(::<$t>)? ($($arg),*) };
                }
            }
            kernel $(::<$t>)? ($($arg),*)
        }
    };
}
