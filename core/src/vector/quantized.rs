//! int8 scalar quantization: a quarter of the memory of f32, and a kernel
//! ([`kernels::dot_i8`]) that reads a quarter of the bytes.
//!
//! Each vector gets its own symmetric scale, `max |x_i| / 127`, so codes lie in
//! `-127..=127` (never -128: the SIMD kernels rely on that bound). A dot
//! product is then `scale_a · scale_b · Σ code_a·code_b`; squared L2 is
//! `|a|² + |b|² − 2·a·b` with the exact f32 norms kept beside the codes.
//! Per-vector scales suit embeddings, whose components are of similar size
//! within a vector but whose norms differ between vectors (under `dot` / `l2`).
//!
//! Quantized distances are approximate, but their error has a hard bound
//! (each code is off by at most half a step): with `x = s·q + e`, `|e_i| ≤ s/2`,
//!
//! `|a·b − s_a·s_b·Σ q_a·q_b| ≤ ½·s_a·|b|₁ + ½·s_b·|a|₁ + ¼·n·s_a·s_b`.
//!
//! [`exact_top_k`] uses it to return the *exact* f32 top-k from an int8 scan:
//! it computes every estimate with its interval, and reranks with f32 only the
//! points whose interval can reach below the k-th smallest upper bound.
//! The result is the f32 scan's, ids and order, at the int8 scan's cost.

use super::kernels;
use super::metric::Metric;
use super::topk::{Scored, TopK};

/// The int8 codes of a set of vectors, with the scale and squared norm of each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizedVectors {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    norms_squared: Vec<f32>,
    /// `|x|₁` of each vector, for the error bound.
    l1_norms: Vec<f32>,
    /// Upper bounds of the three per-vector terms of the error bound over
    /// every vector (kept through removals, where they only loosen).
    largest: Largest,
}

/// The largest scale, squared norm and L1 norm of a set of vectors: the
/// error bound evaluated with them bounds every vector's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Largest {
    scale: f32,
    norm_squared: f32,
    l1_norm: f32,
}

impl Largest {
    fn include(&mut self, scale: f32, norm_squared: f32, l1_norm: f32) {
        self.scale = self.scale.max(scale);
        self.norm_squared = self.norm_squared.max(norm_squared);
        self.l1_norm = self.l1_norm.max(l1_norm);
    }
}

/// A query in the quantized form, made once per search.
#[derive(Clone, Debug)]
pub struct QuantizedQuery {
    /// The codes, with [`Self::levels`] levels, as i16 for [`kernels::dot_i8_i16`].
    wide: Vec<i16>,
    scale: f32,
    norm_squared: f32,
    l1_norm: f32,
}

/// Writes the codes of `vector` into `out` and returns its scale.
pub fn quantize_into(vector: &[f32], out: &mut [i8]) -> f32 {
    quantize_with_max(vector, max_and_l1(vector).0, out)
}

/// A row's codes, scale, squared norm and L1 norm. The maximum and the L1
/// norm come from one pass in lanes ([`max_and_l1`]): a replica quantizes
/// every row of an unsealed snapshot as it loads, and sequential folds were
/// most of that time.
fn quantize_row(vector: &[f32], out: &mut [i8]) -> (f32, f32, f32) {
    let (max, l1_norm) = max_and_l1(vector);
    let scale = quantize_with_max(vector, max, out);
    (scale, kernels::dot(vector, vector), l1_norm)
}

/// [`quantize_into`] with `max = max |x_i|` known.
fn quantize_with_max(vector: &[f32], max: f32, out: &mut [i8]) -> f32 {
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let inverse = 127.0 / max;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = simd128::codes(vector, inverse, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    // `round_ties_even` is one instruction (wasm `f32.nearest`, x86
    // `roundss`); `round` is a call. Either is within half a step.
    for (code, x) in out[done..].iter_mut().zip(&vector[done..]) {
        *code = (x * inverse).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// The codes loop in wasm SIMD, which LLVM does not make of the scalar one
/// (its saturating `as i8` stays a scalar sequence per element).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::{
        f32x4_mul, f32x4_nearest, f32x4_splat, i8x16_narrow_i16x8, i16x8_narrow_i32x4,
        i32x4_trunc_sat_f32x4, v128, v128_load, v128_store,
    };

    /// Writes the codes of the first `16·⌊n/16⌋` components (the same as
    /// the scalar loop's: every `|x·inverse|` is at most 127 plus rounding,
    /// so the saturating narrows clamp exactly where it does) and returns
    /// how many it wrote.
    pub fn codes(vector: &[f32], inverse: f32, out: &mut [i8]) -> usize {
        let n = vector.len().min(out.len()) / 16 * 16;
        let scale = f32x4_splat(inverse);
        let lane = |i: usize| {
            // SAFETY: `i + 4 <= n <= vector.len()`; v128_load has no
            // alignment requirement.
            let x = unsafe { v128_load(vector.as_ptr().add(i).cast::<v128>()) };
            i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(x, scale)))
        };
        for i in (0..n).step_by(16) {
            let low = i16x8_narrow_i32x4(lane(i), lane(i + 4));
            let high = i16x8_narrow_i32x4(lane(i + 8), lane(i + 12));
            // SAFETY: `i + 16 <= n <= out.len()`; no alignment requirement.
            unsafe {
                v128_store(
                    out.as_mut_ptr().add(i).cast::<v128>(),
                    i8x16_narrow_i16x8(low, high),
                );
            }
        }
        n
    }
}

impl QuantizedQuery {
    /// Levels of the query's codes: far finer than the rows' 127, which
    /// halves the error bound (and so the f32 reranks of [`exact_top_k`])
    /// at no cost, since the kernels widen the rows to i16 anyway. Capped
    /// so that `127 · Σ|code|` stays within `i32` at any dimension.
    fn levels(dim: usize) -> f32 {
        const FINE: usize = 2047;
        FINE.min(i32::MAX as usize / (127 * dim.max(1))) as f32
    }

    pub fn new(vector: &[f32]) -> Self {
        let (max, l1_norm) = max_and_l1(vector);
        let levels = Self::levels(vector.len());
        let inverse = if max == 0.0 { 0.0 } else { levels / max };
        Self {
            // Rounded values already lie within ±levels (the clamp is for
            // safety), so the i32 → i16 step is exact; written this way the
            // loop vectorizes.
            wide: vector
                .iter()
                .map(|x| {
                    let code = (x * inverse).round_ties_even();
                    let code = if code > levels { levels } else { code };
                    let code = if code < -levels { -levels } else { code };
                    code as i32 as i16
                })
                .collect(),
            scale: max / levels,
            norm_squared: kernels::dot(vector, vector),
            l1_norm,
        }
    }
}

/// `(max |x_i|, Σ |x_i|)` in eight independent lanes, so that both
/// reductions vectorize instead of forming one long dependency chain. The
/// order is fixed by the code, so every target gets the same bits.
fn max_and_l1(vector: &[f32]) -> (f32, f32) {
    const LANES: usize = 8;
    let (mut max, mut l1) = ([0.0f32; LANES], [0.0f32; LANES]);
    let chunks = vector.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for j in 0..LANES {
            let x = chunk[j].abs();
            max[j] = if x > max[j] { x } else { max[j] };
            l1[j] += x;
        }
    }
    tail.iter().fold(
        (max.into_iter().fold(0.0, f32::max), l1.iter().sum()),
        |(m, s), x| (m.max(x.abs()), s + x.abs()),
    )
}

impl QuantizedVectors {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    /// Quantizes `vectors` (`n × dim`, row-major).
    pub fn from_rows(dim: usize, vectors: &[f32]) -> Self {
        let mut out = Self::new(dim);
        // Exact capacities: growing by doubling would leave a wasm heap
        // (which never shrinks) holding the abandoned half-size blocks.
        let n = vectors.len() / dim.max(1);
        out.codes.reserve_exact(n * dim);
        out.scales.reserve_exact(n);
        out.norms_squared.reserve_exact(n);
        out.l1_norms.reserve_exact(n);
        if dim > 0 {
            for row in vectors.chunks_exact(dim) {
                out.push(row);
            }
        }
        out
    }

    pub(crate) fn from_parts(
        dim: usize,
        codes: Vec<i8>,
        scales: Vec<f32>,
        norms_squared: Vec<f32>,
        l1_norms: Vec<f32>,
    ) -> Self {
        debug_assert_eq!(codes.len(), dim * scales.len());
        let mut largest = Largest::default();
        for ((&scale, &norm_squared), &l1_norm) in scales.iter().zip(&norms_squared).zip(&l1_norms)
        {
            largest.include(scale, norm_squared, l1_norm);
        }
        Self {
            dim,
            codes,
            scales,
            norms_squared,
            l1_norms,
            largest,
        }
    }

    pub(crate) fn l1_norms(&self) -> &[f32] {
        &self.l1_norms
    }

    pub(crate) fn codes(&self) -> &[i8] {
        &self.codes
    }

    pub(crate) fn scales(&self) -> &[f32] {
        &self.scales
    }

    pub(crate) fn norms_squared(&self) -> &[f32] {
        &self.norms_squared
    }

    /// Room for `additional` more vectors, exactly (see [`Self::from_rows`]).
    pub fn reserve_exact(&mut self, additional: usize) {
        self.codes.reserve_exact(additional * self.dim);
        self.scales.reserve_exact(additional);
        self.norms_squared.reserve_exact(additional);
        self.l1_norms.reserve_exact(additional);
    }

    pub fn push(&mut self, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let start = self.codes.len();
        self.codes.resize(start + self.dim, 0);
        let (scale, norm_squared, l1_norm) = quantize_row(vector, &mut self.codes[start..]);
        self.largest.include(scale, norm_squared, l1_norm);
        self.scales.push(scale);
        self.norms_squared.push(norm_squared);
        self.l1_norms.push(l1_norm);
    }

    /// Replaces vector `index`.
    pub fn set(&mut self, index: usize, vector: &[f32]) {
        let row = &mut self.codes[index * self.dim..(index + 1) * self.dim];
        let (scale, norm_squared, l1_norm) = quantize_row(vector, row);
        self.largest.include(scale, norm_squared, l1_norm);
        self.scales[index] = scale;
        self.norms_squared[index] = norm_squared;
        self.l1_norms[index] = l1_norm;
    }

    /// Removes vector `index`, moving the last one into its place.
    pub fn swap_remove(&mut self, index: usize) {
        let (dim, last) = (self.dim, self.len() - 1);
        self.codes
            .copy_within(last * dim..(last + 1) * dim, index * dim);
        self.codes.truncate(last * dim);
        self.scales.swap_remove(index);
        self.norms_squared.swap_remove(index);
        self.l1_norms.swap_remove(index);
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + 12 * self.scales.len()
    }

    #[inline]
    fn row(&self, index: usize) -> &[i8] {
        &self.codes[index * self.dim..(index + 1) * self.dim]
    }

    /// The approximate [`Metric::distance`] between point `index` and `query`.
    #[inline]
    pub fn distance(&self, metric: Metric, index: usize, query: &QuantizedQuery) -> f32 {
        let sum = kernels::dot_i8_i16(self.row(index), &query.wide);
        self.distance_from_sum(metric, index, query, sum)
    }

    /// [`Self::distance`] of four points at once ([`kernels::dot_i8_i16_x4`]).
    #[inline]
    fn distances_x4(&self, metric: Metric, indices: [u32; 4], query: &QuantizedQuery) -> [f32; 4] {
        let rows = indices.map(|i| self.row(i as usize));
        let sums = kernels::dot_i8_i16_x4(rows, &query.wide);
        core::array::from_fn(|r| {
            self.distance_from_sum(metric, indices[r] as usize, query, sums[r])
        })
    }

    /// The distance estimate from the integer dot product of the codes.
    #[inline]
    fn distance_from_sum(
        &self,
        metric: Metric,
        index: usize,
        query: &QuantizedQuery,
        sum: i32,
    ) -> f32 {
        let dot = sum as f32 * (self.scales[index] * query.scale);
        match metric {
            Metric::Cosine | Metric::Dot => -dot,
            Metric::L2 => self.norms_squared[index] + query.norm_squared - 2.0 * dot,
        }
    }
}

/// The per-query constants of the error bound, so that a row costs a few
/// multiply-adds: for row i with scale s_i, L1 norm l_i and squared norm
/// ν_i, the bound on the dot product is `s_i·A + l_i·B`, plus `C·ν_i + D`:
///
/// - `A = h·|q|₁ + h²·n·t` and `B = h·t` are the quantization bound of the
///   module docs (t the query's scale, h half a step, inflated by 10⁻⁴ for
///   the rounding of the scaling itself);
/// - `C·(ν_i + |q|²)` with `C = 3·(n + 4)·ε` covers the rounding of the f32
///   kernels and of this estimate, more than either summation can lose.
///
/// Under l2 the distance is `ν_i + |q|² − 2·dot`: twice the dot's bound.
struct ErrorBound {
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    factor: f32,
}

impl ErrorBound {
    fn new(codes: &QuantizedVectors, metric: Metric, query: &QuantizedQuery) -> Self {
        const HALF_STEP: f32 = 0.5 * (1.0 + 1e-4);
        let n = codes.dim as f32;
        let t = query.scale;
        let c = 3.0 * (n + 4.0) * f32::EPSILON;
        Self {
            a: HALF_STEP * query.l1_norm + HALF_STEP * HALF_STEP * n * t,
            b: HALF_STEP * t,
            c,
            d: c * query.norm_squared,
            factor: if metric == Metric::L2 { 2.0 } else { 1.0 },
        }
    }

    #[inline]
    fn error(&self, codes: &QuantizedVectors, index: usize) -> f32 {
        self.of(
            codes.scales[index],
            codes.l1_norms[index],
            codes.norms_squared[index],
        )
    }

    /// The bound for any vector of `codes`: the formula is increasing in
    /// each per-vector term (and rounding is monotone), so the largest terms
    /// give an error no vector's exceeds.
    fn largest(&self, codes: &QuantizedVectors) -> f32 {
        let largest = codes.largest;
        self.of(largest.scale, largest.l1_norm, largest.norm_squared)
    }

    #[inline]
    fn of(&self, scale: f32, l1_norm: f32, norm_squared: f32) -> f32 {
        self.factor * (scale * self.a + l1_norm * self.b) + self.c * norm_squared + self.d
    }
}

/// The exact top-k by f32 distance among the accepted points, found with
/// int8 estimates: `exact(i)` (the f32 distance) is computed only for points
/// whose error interval reaches below the k-th smallest upper bound, which
/// every true top-k point's does. Same ids and order as an f32 scan.
pub fn exact_top_k(
    codes: &QuantizedVectors,
    metric: Metric,
    query: &QuantizedQuery,
    k: usize,
    accept: impl Fn(u32) -> bool,
    exact: impl Fn(u32) -> f32,
) -> Vec<Scored> {
    if k == 0 {
        return Vec::new();
    }
    let bound = ErrorBound::new(codes, metric, query);
    let mut scan = BoundedScan {
        largest_error: bound.largest(codes),
        bound,
        upper: TopK::new(k),
        limit: f32::INFINITY,
        candidates: Vec::with_capacity(4 * k),
    };
    // Accepted points go through the four-row kernel in groups of four, so
    // a filter leaves the kernel as dense as an unfiltered scan.
    let mut group = [0u32; 4];
    let mut filled = 0;
    for index in (0..codes.len() as u32).filter(|&i| accept(i)) {
        group[filled] = index;
        filled += 1;
        if filled == 4 {
            let estimates = codes.distances_x4(metric, group, query);
            // Most groups hold no point near the top k: one test for all
            // four (without short-circuits, so it stays branch-free).
            if estimates
                .iter()
                .fold(false, |near, &e| near | scan.may_enter(e))
            {
                for (index, estimate) in group.into_iter().zip(estimates) {
                    scan.consider(codes, index, estimate);
                }
            }
            filled = 0;
        }
    }
    for &index in &group[..filled] {
        let estimate = codes.distance(metric, index as usize, query);
        scan.consider(codes, index, estimate);
    }
    let BoundedScan {
        limit, candidates, ..
    } = scan;
    let mut top = TopK::new(k);
    for (low, index) in candidates {
        if low <= limit {
            top.push(Scored {
                distance: exact(index),
                index,
            });
        }
    }
    top.into_sorted_vec()
}

/// The state of [`exact_top_k`]'s int8 pass.
struct BoundedScan {
    bound: ErrorBound,
    /// No point's error exceeds this.
    largest_error: f32,
    /// The k smallest upper bounds so far.
    upper: TopK,
    /// The k-th smallest upper bound, cached: it only changes on a push.
    limit: f32,
    /// (lower bound, index) of every point that could still be in the top k.
    candidates: Vec<(f32, u32)>,
}

impl BoundedScan {
    /// Whether a point estimated at `estimate` may be in the top k, judged
    /// by the largest error of any point: most are ruled out by this alone,
    /// without reading their own terms.
    #[inline]
    fn may_enter(&self, estimate: f32) -> bool {
        estimate - self.largest_error <= self.limit
    }

    #[inline]
    fn consider(&mut self, codes: &QuantizedVectors, index: u32, estimate: f32) {
        if !self.may_enter(estimate) {
            return;
        }
        let error = self.bound.error(codes, index as usize);
        let low = estimate - error;
        if low <= self.limit {
            self.candidates.push((low, index));
            self.upper.push(Scored {
                distance: estimate + error,
                index,
            });
            self.limit = self.upper.threshold();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    proptest! {
        /// The quantized dot product is within the rounding error of the codes:
        /// each code is off by at most half a step, so
        /// |Σ a·b − est| ≤ ½·s_a·Σ|b| + ½·s_b·Σ|a| + ¼·n·s_a·s_b.
        #[test]
        fn dot_error_is_bounded(
            (a, b) in (1usize..100).prop_flat_map(|n| (
                prop::collection::vec(-2.0f32..2.0, n),
                prop::collection::vec(-2.0f32..2.0, n),
            ))
        ) {
            let store = QuantizedVectors::from_rows(a.len(), &a);
            let query = QuantizedQuery::new(&b);
            let estimate = -store.distance(Metric::Dot, 0, &query);
            let exact = kernels::scalar::dot(&a, &b);
            let (sa, sb) = (store.scales[0], query.scale);
            let l1 = |v: &[f32]| v.iter().map(|x| x.abs()).sum::<f32>();
            let bound = 0.5 * sa * l1(&b) + 0.5 * sb * l1(&a) + 0.25 * a.len() as f32 * sa * sb + 1e-4;
            prop_assert!((estimate - exact).abs() <= bound, "{estimate} vs {exact} (bound {bound})");
        }
    }

    proptest! {
        /// The int8 top-k with bounded rerank equals the f32 scan, ids and order.
        #[test]
        fn exact_top_k_equals_the_f32_scan(
            seed in 0u64..1000,
            n in 1usize..300,
            k in 1usize..20,
            metric in prop::sample::select(vec![Metric::Cosine, Metric::Dot, Metric::L2]),
        ) {
            let dim = 24;
            let rows: Vec<f32> = crate::vector::test_data::records(seed, n, dim)
                .into_iter()
                .flat_map(|(_, v)| metric.prepare(&v))
                .collect();
            let query = metric.prepare(&crate::vector::test_data::queries(seed, 1, dim)[0]);
            let codes = QuantizedVectors::from_rows(dim, &rows);
            let f32_distance = |i: u32| metric.distance(&query, &rows[i as usize * dim..(i as usize + 1) * dim]);
            let mut scan = TopK::new(k);
            for i in 0..n as u32 {
                scan.push(Scored { distance: f32_distance(i), index: i });
            }
            let found = exact_top_k(&codes, metric, &QuantizedQuery::new(&query), k, |_| true, f32_distance);
            prop_assert_eq!(found, scan.into_sorted_vec());
        }
    }

    proptest! {
        /// Codes are each component scaled to ±127 and rounded half to
        /// even, whatever loop writes them (wasm's SIMD one covers the first
        /// multiple of 16), and the norms are the vector's.
        #[test]
        fn rows_quantize_as_the_scalar_definition_says(
            row in (1usize..100).prop_flat_map(|n| prop::collection::vec(-3.0f32..3.0, n)),
        ) {
            let mut codes = vec![0i8; row.len()];
            let (scale, norm_squared, l1_norm) = quantize_row(&row, &mut codes);
            let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let inverse = 127.0 / max;
            let expected: Vec<i8> = row
                .iter()
                .map(|x| (x * inverse).round_ties_even().clamp(-127.0, 127.0) as i8)
                .collect();
            prop_assert_eq!(codes, expected);
            prop_assert_eq!(scale, max / 127.0);
            prop_assert_eq!(norm_squared, kernels::dot(&row, &row));
            let l1: f32 = row.iter().map(|x| x.abs()).sum();
            prop_assert!((l1_norm - l1).abs() <= 1e-5 * l1.max(1.0), "{l1_norm} vs {l1}");
        }
    }

    #[test]
    fn codes_stay_within_127_and_zero_vectors_are_zero() {
        let mut codes = [0i8; 3];
        let scale = quantize_into(&[-1.0, 0.5, 1.0], &mut codes);
        assert_eq!(codes, [-127, 64, 127]);
        assert!((scale - 1.0 / 127.0).abs() < 1e-9);
        assert_eq!(quantize_into(&[0.0; 3], &mut codes), 0.0);
        assert_eq!(codes, [0, 0, 0]);
    }

    #[test]
    fn l2_uses_exact_norms() {
        // |a|² = 25 exactly; the codes' dot is 24.95 (3 is 95.25 steps of 4/127).
        let store = QuantizedVectors::from_rows(2, &[3.0, 4.0]);
        let query = QuantizedQuery::new(&[3.0, 4.0]);
        let d = store.distance(Metric::L2, 0, &query);
        assert!(d.abs() < 0.25, "{d}");
        let far = QuantizedQuery::new(&[-3.0, -4.0]);
        assert!((store.distance(Metric::L2, 0, &far) - 100.0).abs() < 0.25);
    }
}
