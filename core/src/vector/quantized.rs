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
//! Quantized distances are approximate; where the f32 vectors are kept, a
//! search reranks its quantized candidates with exact distances.

use super::kernels;
use super::metric::Metric;

/// The int8 codes of a set of vectors, with the scale and squared norm of each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizedVectors {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    norms_squared: Vec<f32>,
}

/// A query in the quantized form, made once per search.
#[derive(Clone, Debug)]
pub struct QuantizedQuery {
    codes: Vec<i8>,
    scale: f32,
    norm_squared: f32,
}

/// Writes the codes of `vector` into `out` and returns its scale.
pub fn quantize_into(vector: &[f32], out: &mut [i8]) -> f32 {
    let max = vector.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    for (code, x) in out.iter_mut().zip(vector) {
        *code = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

impl QuantizedQuery {
    pub fn new(vector: &[f32]) -> Self {
        let mut codes = vec![0; vector.len()];
        let scale = quantize_into(vector, &mut codes);
        Self {
            codes,
            scale,
            norm_squared: kernels::dot(vector, vector),
        }
    }
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
    ) -> Self {
        debug_assert_eq!(codes.len(), dim * scales.len());
        Self {
            dim,
            codes,
            scales,
            norms_squared,
        }
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

    pub fn push(&mut self, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let start = self.codes.len();
        self.codes.resize(start + self.dim, 0);
        let scale = quantize_into(vector, &mut self.codes[start..]);
        self.scales.push(scale);
        self.norms_squared.push(kernels::dot(vector, vector));
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + 8 * self.scales.len()
    }

    /// The approximate [`Metric::distance`] between point `index` and `query`.
    #[inline]
    pub fn distance(&self, metric: Metric, index: usize, query: &QuantizedQuery) -> f32 {
        let row = &self.codes[index * self.dim..(index + 1) * self.dim];
        let dot = kernels::dot_i8(row, &query.codes) as f32 * (self.scales[index] * query.scale);
        match metric {
            Metric::Cosine | Metric::Dot => -dot,
            Metric::L2 => self.norms_squared[index] + query.norm_squared - 2.0 * dot,
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
