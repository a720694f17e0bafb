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

/// How far from 1 a squared norm may be for [`Metric::prepare`] to take the
/// vector as unit length: the rounding of a 4096-term f32 dot product stays
/// well inside it, and a cosine computed on such a vector is off by at most
/// this relative amount.
pub const UNIT_TOLERANCE: f32 = 1e-5;

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
    ///
    /// Idempotent, bit for bit: a vector already of unit length (within
    /// [`UNIT_TOLERANCE`]) is kept as it is, because dividing by a norm
    /// computed as 0.99999994 would move its last bits. So a prepared vector
    /// stored by the writer is exactly the one its sealed segment holds, and
    /// a snapshot can ship it once.
    pub fn prepare(self, vector: &[f32]) -> Vec<f32> {
        let mut prepared = Vec::with_capacity(vector.len());
        self.prepare_into(vector, &mut prepared);
        prepared
    }

    /// [`Self::prepare`], appending to `out`: a loader filling one block of
    /// vectors prepares each in place, without an allocation per vector.
    pub fn prepare_into(self, vector: &[f32], out: &mut Vec<f32>) {
        match self {
            Metric::Cosine => {
                let norm_squared = kernels::dot(vector, vector);
                if (norm_squared - 1.0).abs() <= UNIT_TOLERANCE {
                    out.extend_from_slice(vector);
                } else {
                    let norm = norm_squared.sqrt();
                    out.extend(vector.iter().map(|x| x / norm));
                }
            }
            Metric::Dot | Metric::L2 => out.extend_from_slice(vector),
        }
    }

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
    fn preparing_twice_changes_no_bit() {
        let mut state = 7u64;
        for dim in [2, 3, 16, 384, 1536] {
            for _ in 0..50 {
                let v: Vec<f32> = (0..dim)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state % 2001) as f32 / 1000.0 - 1.0
                    })
                    .collect();
                let once = Metric::Cosine.prepare(&v);
                assert_eq!(Metric::Cosine.prepare(&once), once, "dim {dim}");
            }
        }
    }

    #[test]
    fn metric_names_on_the_wire_are_lowercase() {
        let json = serde_json::to_string(&Metric::L2).unwrap();
        assert_eq!(json, "\"l2\"");
    }
}
