//! Distance kernels: the inner loops of every search.
//!
//! Three implementations of each kernel, one contract:
//!
//! - [`scalar`]: the reference, written for clarity, used for tails and as
//!   the oracle of the property tests.
//! - `simd128` (on `wasm32` built with `+simd128`, which the workspace's
//!   `.cargo/config.toml` sets): four 128-bit accumulators, so that a loop
//!   iteration issues four independent multiply-adds and hides their latency.
//! - `avx2` (on `x86_64`): four 256-bit FMA accumulators, used when the CPU
//!   reports AVX2 and FMA at run time; otherwise the scalar path.
//!
//! The SIMD versions sum in a different order from the scalar one, so results
//! differ by rounding. The bound the tests hold them to, for vectors `a`, `b`
//! of length `n`: `|simd - scalar| <= n * f32::EPSILON * Σ|a_i·b_i|` (and the
//! same with squared differences for L2): each summation order is within
//! `n·ε·Σ|terms|` of the exact value.

/// `Σ a_i·b_i`. The slices must have the same length (callers validate
/// dimensions at ingest and at query time; a mismatch here is a bug).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::dot(a, b)
    }
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2::dot(a, b) };
        }
        scalar::dot(a, b)
    }
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    {
        scalar::dot(a, b)
    }
}

/// `Σ (a_i - b_i)²`. Same length contract as [`dot`].
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::l2_squared(a, b)
    }
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2::l2_squared(a, b) };
        }
        scalar::l2_squared(a, b)
    }
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    {
        scalar::l2_squared(a, b)
    }
}

/// The name of the implementation [`dot`] and [`l2_squared`] use here, for
/// benchmarks and health reports.
pub fn implementation() -> &'static str {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        "wasm32-simd128"
    }
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            "x86_64-avx2-fma"
        } else {
            "scalar"
        }
    }
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    {
        "scalar"
    }
}

/// The reference kernels.
pub mod scalar {
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let d = x - y;
                d * d
            })
            .sum()
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::{
        f32x4_add, f32x4_extract_lane, f32x4_mul, f32x4_splat, f32x4_sub, v128, v128_load,
    };

    /// Floats per loop iteration: four accumulators of four lanes.
    const STEP: usize = 16;

    #[inline]
    fn load(s: &[f32], i: usize) -> v128 {
        debug_assert!(i + 4 <= s.len());
        // SAFETY: callers only pass `i` with `i + 4 <= s.len()`; `v128_load`
        // has no alignment requirement.
        unsafe { v128_load(s.as_ptr().add(i).cast::<v128>()) }
    }

    #[inline]
    fn horizontal_sum(v: v128) -> f32 {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
            + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    }

    #[inline]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % STEP;
        let mut acc = [f32x4_splat(0.0); 4];
        let mut i = 0;
        while i < body {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let j = i + 4 * lane;
                *acc = f32x4_add(*acc, f32x4_mul(load(a, j), load(b, j)));
            }
            i += STEP;
        }
        let sum = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
        horizontal_sum(sum) + super::scalar::dot(&a[body..n], &b[body..n])
    }

    #[inline]
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % STEP;
        let mut acc = [f32x4_splat(0.0); 4];
        let mut i = 0;
        while i < body {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let j = i + 4 * lane;
                let d = f32x4_sub(load(a, j), load(b, j));
                *acc = f32x4_add(*acc, f32x4_mul(d, d));
            }
            i += STEP;
        }
        let sum = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
        horizontal_sum(sum) + super::scalar::l2_squared(&a[body..n], &b[body..n])
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm_add_ps, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps, _mm256_add_ps,
        _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm256_sub_ps,
    };
    use std::sync::OnceLock;

    /// Floats per loop iteration: four accumulators of eight lanes.
    const STEP: usize = 32;

    pub fn available() -> bool {
        // `is_x86_feature_detected!` caches too, but behind an atomic load per
        // call and two checks; one `OnceLock` read is cheaper in the hot loop.
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE
            .get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let single = _mm_add_ps(pair, _mm_shuffle_ps::<0b01>(pair, pair));
        _mm_cvtss_f32(single)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % STEP;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < body {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * lane;
                // SAFETY: j + 8 <= body <= n, within both slices.
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(j)), _mm256_loadu_ps(pb.add(j))) };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += STEP;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        horizontal_sum(sum) + super::scalar::dot(&a[body..n], &b[body..n])
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % STEP;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < body {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * lane;
                // SAFETY: j + 8 <= body <= n, within both slices.
                let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(j)), _mm256_loadu_ps(pb.add(j))) };
                let d = _mm256_sub_ps(x, y);
                *acc = _mm256_fmadd_ps(d, d, *acc);
            }
            i += STEP;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        horizontal_sum(sum) + super::scalar::l2_squared(&a[body..n], &b[body..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The module's error bound for a sum of `terms`.
    fn bound(terms: impl Iterator<Item = f32>, n: usize) -> f32 {
        let magnitude: f32 = terms.map(f32::abs).sum();
        (n as f32) * f32::EPSILON * magnitude + f32::MIN_POSITIVE
    }

    fn pair(max_len: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (0..=max_len).prop_flat_map(|n| {
            (
                prop::collection::vec(-100.0f32..100.0, n),
                prop::collection::vec(-100.0f32..100.0, n),
            )
        })
    }

    #[test]
    fn known_values() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| (i % 3) as f32 - 1.0).collect();
        assert_eq!(dot(&a, &b), scalar::dot(&a, &b));
        assert_eq!(dot(&a, &a), (0..37).map(|i| (i * i) as f32).sum::<f32>());
        assert_eq!(l2_squared(&a, &a), 0.0);
        assert_eq!(l2_squared(&[1.0, 2.0], &[4.0, 6.0]), 25.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn the_simd_path_is_used_where_it_exists() {
        #[cfg(target_arch = "wasm32")]
        assert_eq!(implementation(), "wasm32-simd128");
        #[cfg(not(target_arch = "wasm32"))]
        assert!(["x86_64-avx2-fma", "scalar"].contains(&implementation()));
    }

    proptest! {
        #[test]
        fn dot_matches_scalar((a, b) in pair(300)) {
            let expected = scalar::dot(&a, &b);
            let tolerance = bound(a.iter().zip(&b).map(|(x, y)| x * y), a.len());
            prop_assert!((dot(&a, &b) - expected).abs() <= tolerance);
        }

        #[test]
        fn l2_matches_scalar((a, b) in pair(300)) {
            let expected = scalar::l2_squared(&a, &b);
            let tolerance = bound(a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)), a.len());
            prop_assert!((l2_squared(&a, &b) - expected).abs() <= tolerance);
        }
    }
}
