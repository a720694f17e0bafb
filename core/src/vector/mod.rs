//! Vector search.
//!
//! A shard's index ([`ShardIndex`]) is a sealed HNSW segment
//! ([`HnswSegment`], built with instant-distance by the writer and shipped as
//! bytes), a fresh segment of later writes searched exactly, and tombstones.
//! Results merge across segments and shards by distance, then id.
//!
//! # Layout
//!
//! - [`kernels`]: dot product, squared L2 and the int8 dot product, with a
//!   scalar reference, a `wasm32` SIMD128 version and an `x86_64` AVX2
//!   version chosen at run time; f32 results are bit-identical across them.
//! - [`metric`]: cosine / dot / l2, vector validation and preparation.
//! - [`quantized`]: int8 codes with per-vector scales.
//! - [`topk`]: scored points and a bounded top-k with a deterministic order.
//! - [`filter`]: field filters (equality, set membership, numeric range).
//! - [`query`]: a query (k, exact or per-query `ef`, filter), hits, errors.
//! - [`hnsw_segment`]: the sealed segment's layout and its SIMD layer walk,
//!   and why instant-distance's own search is not used.
//! - [`hnsw_build`]: sealing with instant-distance.
//! - [`segment_codec`]: the sealed segment's bytes, decoded in a streaming,
//!   bounded way.
//! - [`fresh_segment`]: recent writes, exact search.
//! - [`shard_index`]: a shard's segments, tombstones, reseal policy, queries.
//! - [`loader`]: a replica's index built from a streamed snapshot, each
//!   vector copied once.

mod field_column;
pub mod filter;
pub mod fresh_segment;
pub mod hnsw_build;
pub mod hnsw_segment;
pub mod id_list;
pub mod kernels;
pub mod loader;
pub mod metric;
pub mod quantized;
pub mod query;
pub mod segment_codec;
pub mod shard_index;
#[cfg(test)]
pub(crate) mod test_data;
pub mod topk;

pub use filter::{Filter, FilterError};
pub use hnsw_build::{BuildError, BuildOptions};
pub use hnsw_segment::{HnswSegment, Precision, SearchParams};
pub use loader::IndexLoader;
pub use metric::{Metric, VectorError};
pub use query::{Hit, Mode, Query, QueryError};
pub use segment_codec::{DecodeError, SegmentDecoder};
pub use shard_index::{IngestError, ResealError, ResealPolicy, ShardIndex, merge_top_k};
