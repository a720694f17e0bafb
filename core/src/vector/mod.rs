//! Vector search.
//!
//! # Layout
//!
//! - [`kernels`]: dot product and squared L2 distance, with a scalar
//!   reference, a `wasm32` SIMD128 version and an `x86_64` AVX2+FMA version
//!   chosen at run time.
//! - [`metric`]: cosine / dot / l2, vector validation and preparation.

pub mod kernels;
pub mod metric;

pub use metric::{Metric, VectorError};
