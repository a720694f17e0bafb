//! Similarity metrics and the validation every vector passes at ingest and
//! at query time.
//!
//! A bad vector never enters an index: a NaN poisons every comparison it
//! takes part in (the top-k order stops being a total order), and a zero
//! vector has no direction, so cosine similarity is undefined for it.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::kernels;

/// How a collection compares vectors, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Angle only. Vectors are normalized at ingest, so search is a dot product.
    Cosine,
    /// Inner product, for embeddings whose norm carries meaning.
    Dot,
    /// Euclidean distance.
    L2,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum VectorError {
    #[error("vector has {actual} dimensions, the collection has {expected}")]
    WrongDimension { expected: usize, actual: usize },
    #[error("vector component {index} is not a finite number")]
    NonFinite { index: usize },
    #[error("a zero vector has no direction and cannot be compared by cosine")]
    ZeroNorm,
}

impl Metric {
    /// Checks `vector` for a collection of `dimension` dimensions.
    pub fn validate(self, vector: &[f32], dimension: usize) -> Result<(), VectorError> {
        if vector.len() != dimension {
            return Err(VectorError::WrongDimension {
                expected: dimension,
                actual: vector.len(),
            });
        }
        if let Some(index) = vector.iter().position(|x| !x.is_finite()) {
            return Err(VectorError::NonFinite { index });
        }
        if self == Metric::Cosine && vector.iter().all(|&x| x == 0.0) {
            return Err(VectorError::ZeroNorm);
        }
        Ok(())
    }

    /// The form a valid vector is stored and searched in: unit length under
    /// cosine, unchanged otherwise.
    pub fn prepare(self, vector: &[f32]) -> Vec<f32> {
        match self {
            Metric::Cosine => {
                let norm = kernels::dot(vector, vector).sqrt();
                vector.iter().map(|x| x / norm).collect()
            }
            Metric::Dot | Metric::L2 => vector.to_vec(),
        }
    }

    /// A distance between two prepared vectors: smaller is closer, for every
    /// metric, so one top-k routine serves all three.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine | Metric::Dot => -kernels::dot(a, b),
            Metric::L2 => kernels::l2_squared(a, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rejects_bad_vectors() {
        let cosine = Metric::Cosine;
        assert_eq!(
            cosine.validate(&[1.0, 2.0], 3),
            Err(VectorError::WrongDimension {
                expected: 3,
                actual: 2
            })
        );
        assert_eq!(
            cosine.validate(&[1.0, f32::NAN, 0.0], 3),
            Err(VectorError::NonFinite { index: 1 })
        );
        assert_eq!(
            cosine.validate(&[f32::INFINITY, 0.0, 0.0], 3),
            Err(VectorError::NonFinite { index: 0 })
        );
        assert_eq!(
            cosine.validate(&[0.0, -0.0, 0.0], 3),
            Err(VectorError::ZeroNorm)
        );
        assert_eq!(Metric::Dot.validate(&[0.0, 0.0, 0.0], 3), Ok(()));
        assert_eq!(Metric::L2.validate(&[0.5, -1.0, 2.0], 3), Ok(()));
    }

    #[test]
    fn cosine_prepares_unit_vectors_and_ranks_by_angle() {
        let a = Metric::Cosine.prepare(&[3.0, 4.0]);
        assert!((a[0] - 0.6).abs() < 1e-6 && (a[1] - 0.8).abs() < 1e-6);
        let near = Metric::Cosine.prepare(&[30.0, 41.0]);
        let far = Metric::Cosine.prepare(&[-4.0, 3.0]);
        assert!(Metric::Cosine.distance(&a, &near) < Metric::Cosine.distance(&a, &far));
        assert_eq!(Metric::L2.distance(&[0.0, 0.0], &[3.0, 4.0]), 25.0);
    }

    #[test]
    fn metric_names_on_the_wire_are_lowercase() {
        let json = serde_json::to_string(&Metric::L2).unwrap();
        assert_eq!(json, "\"l2\"");
    }
}
