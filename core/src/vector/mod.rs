//! Vector search.
//!
//! # Layout
//!
//! - [`kernels`]: dot product and squared L2 distance, with a scalar
//!   reference, a `wasm32` SIMD128 version and an `x86_64` AVX2+FMA version
//!   chosen at run time.

pub mod kernels;
