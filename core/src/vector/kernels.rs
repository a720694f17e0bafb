//! Distance kernels: the inner loops of every search.
//!
//! Three implementations of each kernel, one contract:
//!
//! - [`scalar`]: the reference, written for clarity, used for tails and as
//!   the oracle of the property tests.
//! - `simd128` (on `wasm32` built with `+simd128`, which the workspace's
//!   `.cargo/config.toml` sets): four 128-bit accumulators, so that a loop
//!   iteration issues four independent multiply-adds and hides their latency.
//! - `avx2` (on `x86_64`): two 256-bit accumulators that hold the same 16
//!   partial sums as simd128's four, used when the CPU reports AVX2 at run
//!   time; otherwise [`blocked`], a portable loop in the same order.
//!
//! The f32 kernels add in one fixed order on every target and use separate
//! multiplies and adds (no FMA, which rounds once instead of twice): a
//! distance is the same bits natively and in wasm, so the writer and every
//! replica rank a segment identically. The tests check this bit for bit.
//!
//! [`dot_i8`] is the int8 kernel of quantized search; its sums are exact
//! integers, so every implementation returns the same value.
//!
//! The SIMD versions sum in a different order from the scalar one, so results
//! differ by rounding. The bound the tests hold them to, for vectors `a`, `b`
//! of length `n`: `|simd - scalar| <= n * f32::EPSILON * Σ|a_i·b_i|` (and the
//! same with squared differences for L2): each summation order is within
//! `n·ε·Σ|terms|` of the exact value.

/// Calls kernel `$name` in the best implementation for this target:
/// `simd128` on wasm32, `avx2` on x86_64 when the CPU has it, else
/// `$fallback` (the implementation that sums in the same order as the SIMD
/// ones where results must be bit-identical).
macro_rules! dispatch {
    ($name:ident, $fallback:ident, $a:expr, $b:expr) => {{
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            simd128::$name($a, $b)
        }
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                return unsafe { avx2::$name($a, $b) };
            }
            $fallback::$name($a, $b)
        }
        #[cfg(not(any(
            all(target_arch = "wasm32", target_feature = "simd128"),
            target_arch = "x86_64"
        )))]
        {
            $fallback::$name($a, $b)
        }
    }};
}

/// `Σ a_i·b_i`. The slices must have the same length (callers validate
/// dimensions at ingest and at query time; a mismatch here is a bug).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    dispatch!(dot, blocked, a, b)
}

/// `Σ (a_i - b_i)²`. Same length contract as [`dot`].
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    dispatch!(l2_squared, blocked, a, b)
}

/// `Σ a_i·b_i` over int8 codes, exact in `i32`. Codes must lie in
/// `-127..=127` ([`super::quantized`] never produces -128): then a pair of
/// products fits an `i16` lane, which the SIMD versions rely on, and a sum of
/// up to 2^17 products cannot overflow `i32`.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    dispatch!(dot_i8, scalar, a, b)
}

/// `Σ a_i·b_i` of int8 codes `a` and a query's codes `b` widened to `i16`
/// once per search: only the stored side is widened in the loop (as it
/// loads), which roughly halves the instructions of [`dot_i8`] per code.
/// Exact, like [`dot_i8`], for codes `a` in `-127..=127` and any `b` with
/// `127 · Σ|b_i| ≤ i32::MAX`: the query may carry more levels than the
/// stored rows ([`super::quantized::QuantizedQuery`] does).
#[inline]
pub fn dot_i8_i16(a: &[i8], b: &[i16]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    dispatch!(dot_i8_i16, scalar, a, b)
}

/// [`dot_i8_i16`] of four stored rows against one query, the exact scan's
/// inner loop: each step loads the query's lanes once for all four rows,
/// and the four sums are reduced together. Same contract and same exact
/// results as four calls of [`dot_i8_i16`].
#[inline]
pub fn dot_i8_i16_x4(rows: [&[i8]; 4], b: &[i16]) -> [i32; 4] {
    debug_assert!(rows.iter().all(|row| row.len() == b.len()));
    dispatch!(dot_i8_i16_x4, scalar, rows, b)
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
            "x86_64-avx2"
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

/// Floats per step of every f32 implementation: 16 lanes of partial sums
/// (four accumulators of four lanes in simd128, two of eight in AVX2).
const BLOCK: usize = 16;

/// The f32 kernels in exactly the summation order of the SIMD versions, for
/// machines without them. Every implementation of [`dot`] and [`l2_squared`]
/// therefore returns the same bits on every machine, so a segment searched by
/// the native writer and by a wasm replica ranks identically (ties included).
pub mod blocked {
    use super::BLOCK;

    fn sum_in_simd_order(lanes: &[f32; BLOCK]) -> f32 {
        // Accumulator k holds lanes 4k..4k+4; simd128 adds (0+1)+(2+3)
        // lane by lane, then the four lanes as (l0+l1)+(l2+l3).
        let v: [f32; 4] =
            core::array::from_fn(|m| (lanes[m] + lanes[4 + m]) + (lanes[8 + m] + lanes[12 + m]));
        (v[0] + v[1]) + (v[2] + v[3])
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % BLOCK;
        let mut lanes = [0.0f32; BLOCK];
        for (x, y) in a[..body]
            .chunks_exact(BLOCK)
            .zip(b[..body].chunks_exact(BLOCK))
        {
            for j in 0..BLOCK {
                lanes[j] += x[j] * y[j];
            }
        }
        sum_in_simd_order(&lanes) + super::scalar::dot(&a[body..n], &b[body..n])
    }

    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % BLOCK;
        let mut lanes = [0.0f32; BLOCK];
        for (x, y) in a[..body]
            .chunks_exact(BLOCK)
            .zip(b[..body].chunks_exact(BLOCK))
        {
            for j in 0..BLOCK {
                let d = x[j] - y[j];
                lanes[j] += d * d;
            }
        }
        sum_in_simd_order(&lanes) + super::scalar::l2_squared(&a[body..n], &b[body..n])
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

    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum()
    }

    pub fn dot_i8_i16(a: &[i8], b: &[i16]) -> i32 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum()
    }

    pub fn dot_i8_i16_x4(rows: [&[i8]; 4], b: &[i16]) -> [i32; 4] {
        rows.map(|row| dot_i8_i16(row, b))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::{
        f32x4_add, f32x4_extract_lane, f32x4_mul, f32x4_splat, f32x4_sub, i16x8_extmul_high_i8x16,
        i16x8_extmul_low_i8x16, i16x8_load_extend_i8x8, i32x4_add, i32x4_dot_i16x8,
        i32x4_extadd_pairwise_i16x8, i32x4_extract_lane, i32x4_shuffle, i32x4_splat, v128,
        v128_load,
    };

    /// Floats per loop iteration: four accumulators of four lanes.
    const STEP: usize = super::BLOCK;

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

    /// Sixteen codes per step: `extmul` widens the products to i16 (exact for
    /// codes in -127..=127) and a pairwise add widens them again to i32.
    #[inline]
    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let body = n - n % 32;
        let mut acc = [i32x4_splat(0); 2];
        let mut i = 0;
        while i < body {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let j = i + 16 * lane;
                // SAFETY: j + 16 <= body <= n, within both slices; no alignment needed.
                let (x, y) = unsafe {
                    (
                        v128_load(a.as_ptr().add(j).cast::<v128>()),
                        v128_load(b.as_ptr().add(j).cast::<v128>()),
                    )
                };
                let low = i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(x, y));
                let high = i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(x, y));
                *acc = i32x4_add(*acc, i32x4_add(low, high));
            }
            i += 32;
        }
        sum_lanes(i32x4_add(acc[0], acc[1])) + super::scalar::dot_i8(&a[body..n], &b[body..n])
    }

    /// Eight stored codes from `s[i..]`, sign-extended to i16 as they load
    /// (`v128.load8x8_s`: one instruction, where a load and two extends
    /// would be three).
    #[inline]
    fn load_codes(s: &[i8], i: usize) -> v128 {
        debug_assert!(i + 8 <= s.len());
        // SAFETY: callers only pass `i` with `i + 8 <= s.len()`; no alignment needed.
        unsafe { i16x8_load_extend_i8x8(s.as_ptr().add(i)) }
    }

    /// Eight i16 query lanes from `s[i..]`.
    #[inline]
    fn load_wide(s: &[i16], i: usize) -> v128 {
        debug_assert!(i + 8 <= s.len());
        // SAFETY: callers only pass `i` with `i + 8 <= s.len()`; no alignment needed.
        unsafe { v128_load(s.as_ptr().add(i).cast::<v128>()) }
    }

    #[inline]
    fn sum_lanes(v: v128) -> i32 {
        (i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v))
            + (i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v))
    }

    /// Sixteen codes per step, multiply-added in pairs against the widened
    /// query (`i32x4.dot_i16x8_s`) into two accumulators.
    #[inline]
    pub fn dot_i8_i16(a: &[i8], b: &[i16]) -> i32 {
        let n = a.len().min(b.len());
        let body = n - n % 16;
        let mut acc = [i32x4_splat(0); 2];
        let mut i = 0;
        while i < body {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * lane;
                *acc = i32x4_add(*acc, i32x4_dot_i16x8(load_codes(a, j), load_wide(b, j)));
            }
            i += 16;
        }
        sum_lanes(i32x4_add(acc[0], acc[1])) + super::scalar::dot_i8_i16(&a[body..n], &b[body..n])
    }

    /// Sixteen codes of four rows per step: the two query vectors are
    /// loaded once for all four rows, and each row keeps one accumulator.
    /// At the end a transpose-and-add reduces the four accumulators at once.
    #[inline]
    pub fn dot_i8_i16_x4(rows: [&[i8]; 4], b: &[i16]) -> [i32; 4] {
        let n = rows.iter().fold(b.len(), |n, row| n.min(row.len()));
        let body = n - n % 16;
        let mut acc = [i32x4_splat(0); 4];
        let mut i = 0;
        while i < body {
            let (low, high) = (load_wide(b, i), load_wide(b, i + 8));
            for (acc, row) in acc.iter_mut().zip(rows) {
                let pair = i32x4_add(
                    i32x4_dot_i16x8(load_codes(row, i), low),
                    i32x4_dot_i16x8(load_codes(row, i + 8), high),
                );
                *acc = i32x4_add(*acc, pair);
            }
            i += 16;
        }
        // [r0 lanes 0+2, r1 lanes 0+2, r0 lanes 1+3, r1 lanes 1+3], and the same for r2, r3.
        let r01 = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(acc[0], acc[1]),
            i32x4_shuffle::<2, 6, 3, 7>(acc[0], acc[1]),
        );
        let r23 = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(acc[2], acc[3]),
            i32x4_shuffle::<2, 6, 3, 7>(acc[2], acc[3]),
        );
        let sums = i32x4_add(
            i32x4_shuffle::<0, 1, 4, 5>(r01, r23),
            i32x4_shuffle::<2, 3, 6, 7>(r01, r23),
        );
        let lanes = [
            i32x4_extract_lane::<0>(sums),
            i32x4_extract_lane::<1>(sums),
            i32x4_extract_lane::<2>(sums),
            i32x4_extract_lane::<3>(sums),
        ];
        core::array::from_fn(|r| {
            lanes[r] + super::scalar::dot_i8_i16(&rows[r][body..n], &b[body..n])
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256, __m256i, _mm_add_epi32, _mm_add_ps, _mm_add_ss, _mm_cvtsi128_si32,
        _mm_cvtss_f32, _mm_loadu_si128, _mm_movehl_ps, _mm_shuffle_epi32, _mm_shuffle_ps,
        _mm256_add_epi32, _mm256_add_ps, _mm256_castps256_ps128, _mm256_castsi256_si128,
        _mm256_cvtepi8_epi16, _mm256_extractf128_ps, _mm256_extracti128_si256, _mm256_loadu_ps,
        _mm256_loadu_si256, _mm256_madd_epi16, _mm256_mul_ps, _mm256_setzero_ps,
        _mm256_setzero_si256, _mm256_sub_ps,
    };
    use std::sync::OnceLock;

    pub fn available() -> bool {
        // `is_x86_feature_detected!` caches too, but behind an atomic load per
        // call and two checks; one `OnceLock` read is cheaper in the hot loop.
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE
            .get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// Reduces the two registers exactly as `simd128` reduces its four:
    /// `lo` holds its accumulators 0|1 and `hi` 2|3, so `(0+1)+(2+3)` lane by
    /// lane, then `(l0+l1)+(l2+l3)`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn reduce(lo: __m256, hi: __m256) -> f32 {
        let s01 = _mm_add_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps::<1>(lo));
        let s23 = _mm_add_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps::<1>(hi));
        let s = _mm_add_ps(s01, s23);
        // [l0+l1, l1+l0, l2+l3, l3+l2]
        let pairs = _mm_add_ps(s, _mm_shuffle_ps::<0b10_11_00_01>(s, s));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehl_ps(pairs, pairs)))
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % super::BLOCK;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 <= body <= n, within both slices.
            unsafe {
                lo = _mm256_add_ps(
                    lo,
                    _mm256_mul_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))),
                );
                hi = _mm256_add_ps(
                    hi,
                    _mm256_mul_ps(
                        _mm256_loadu_ps(pa.add(i + 8)),
                        _mm256_loadu_ps(pb.add(i + 8)),
                    ),
                );
            }
            i += super::BLOCK;
        }
        reduce(lo, hi) + super::scalar::dot(&a[body..n], &b[body..n])
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n - n % super::BLOCK;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 <= body <= n, within both slices.
            unsafe {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                lo = _mm256_add_ps(lo, _mm256_mul_ps(d, d));
                let d = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                hi = _mm256_add_ps(hi, _mm256_mul_ps(d, d));
            }
            i += super::BLOCK;
        }
        reduce(lo, hi) + super::scalar::l2_squared(&a[body..n], &b[body..n])
    }

    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let body = n - n % 32;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc: [__m256i; 2] = [_mm256_setzero_si256(); 2];
        let mut i = 0;
        while i < body {
            for (lane, acc) in acc.iter_mut().enumerate() {
                let j = i + 16 * lane;
                // SAFETY: j + 16 <= body <= n, within both slices.
                let (x, y) = unsafe {
                    (
                        _mm_loadu_si128(pa.add(j).cast::<__m128i>()),
                        _mm_loadu_si128(pb.add(j).cast::<__m128i>()),
                    )
                };
                // Widen to i16, multiply, and add adjacent pairs into i32.
                let products = _mm256_madd_epi16(_mm256_cvtepi8_epi16(x), _mm256_cvtepi8_epi16(y));
                *acc = _mm256_add_epi32(*acc, products);
            }
            i += 32;
        }
        sum_i32(_mm256_add_epi32(acc[0], acc[1])) + super::scalar::dot_i8(&a[body..n], &b[body..n])
    }

    /// The sum of the eight i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sum_i32(v: __m256i) -> i32 {
        let quad = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let pair = _mm_add_epi32(quad, _mm_shuffle_epi32::<0b01_00_11_10>(quad));
        let single = _mm_add_epi32(pair, _mm_shuffle_epi32::<0b00_00_00_01>(pair));
        _mm_cvtsi128_si32(single)
    }

    /// Sixteen stored codes from `p`, sign-extended to i16.
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_codes(p: *const i8) -> __m256i {
        // SAFETY: the caller guarantees 16 readable bytes.
        _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p.cast::<__m128i>()) })
    }

    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_i8_i16(a: &[i8], b: &[i16]) -> i32 {
        let n = a.len().min(b.len());
        let body = n - n % 16;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 <= body <= n, within both slices.
            let (x, y) = unsafe {
                (
                    load_codes(pa.add(i)),
                    _mm256_loadu_si256(pb.add(i).cast::<__m256i>()),
                )
            };
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
            i += 16;
        }
        sum_i32(acc) + super::scalar::dot_i8_i16(&a[body..n], &b[body..n])
    }

    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_i8_i16_x4(rows: [&[i8]; 4], b: &[i16]) -> [i32; 4] {
        let n = rows.iter().fold(b.len(), |n, row| n.min(row.len()));
        let body = n - n % 16;
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 <= body <= n, within the query and every row.
            unsafe {
                let query = _mm256_loadu_si256(b.as_ptr().add(i).cast::<__m256i>());
                for (acc, row) in acc.iter_mut().zip(rows) {
                    let x = load_codes(row.as_ptr().add(i));
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(x, query));
                }
            }
            i += 16;
        }
        core::array::from_fn(|r| {
            sum_i32(acc[r]) + super::scalar::dot_i8_i16(&rows[r][body..n], &b[body..n])
        })
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
        assert!(["x86_64-avx2", "scalar"].contains(&implementation()));
    }

    proptest! {
        /// Every target must produce the same bits as the portable order.
        #[test]
        fn f32_kernels_are_bit_identical_to_the_blocked_order((a, b) in pair(300)) {
            prop_assert_eq!(dot(&a, &b).to_bits(), blocked::dot(&a, &b).to_bits());
            prop_assert_eq!(l2_squared(&a, &b).to_bits(), blocked::l2_squared(&a, &b).to_bits());
        }

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

        /// Integer sums are exact, so the int8 kernel must equal the scalar one.
        #[test]
        fn dot_i8_matches_scalar_exactly(
            (a, b) in (0usize..=600).prop_flat_map(|n| (
                prop::collection::vec(-127i8..=127, n),
                prop::collection::vec(-127i8..=127, n),
            ))
        ) {
            prop_assert_eq!(dot_i8(&a, &b), scalar::dot_i8(&a, &b));
            let wide: Vec<i16> = b.iter().map(|&x| i16::from(x)).collect();
            prop_assert_eq!(dot_i8_i16(&a, &wide), scalar::dot_i8(&a, &b));
        }

        /// The four-row kernel equals four scalar sums, with query lanes far
        /// beyond the int8 range (queries carry more levels than rows).
        #[test]
        fn dot_i8_i16_x4_matches_scalar_exactly(
            (rows, b) in (0usize..=600).prop_flat_map(|n| (
                prop::collection::vec(prop::collection::vec(-127i8..=127, n), 4),
                prop::collection::vec(-2047i16..=2047, n),
            ))
        ) {
            let rows: [&[i8]; 4] = core::array::from_fn(|r| rows[r].as_slice());
            let expected = rows.map(|row| scalar::dot_i8_i16(row, &b));
            prop_assert_eq!(dot_i8_i16_x4(rows, &b), expected);
            prop_assert_eq!(rows.map(|row| dot_i8_i16(row, &b)), expected);
        }
    }

    #[test]
    fn dot_i8_extremes() {
        let a = vec![127i8; 1000];
        let b = vec![-127i8; 1000];
        assert_eq!(dot_i8(&a, &b), -127 * 127 * 1000);
        assert_eq!(dot_i8(&a, &a), 127 * 127 * 1000);
        // The widest sums the quantized query can produce at the dimension limit.
        let row = vec![-127i8; 4096];
        let query = vec![2047i16; 4096];
        let expected = -127 * 2047 * 4096;
        assert_eq!(dot_i8_i16(&row, &query), expected);
        assert_eq!(dot_i8_i16_x4([&row[..]; 4], &query), [expected; 4]);
    }
}
