//! The wasm-bindgen exports. Results are dataset row numbers (the record ids
//! parsed once at load), so node compares them with the ground truth without
//! touching strings in the timed loops.

use tidemark_core::vector::fresh_segment::FreshSegment;
use tidemark_core::vector::{HnswSegment, Metric, Precision, SearchParams, SegmentDecoder};
use wasm_bindgen::prelude::*;

/// Loads a sealed segment from chunks, so node never holds the whole file
/// in wasm memory next to the decoded segment.
#[wasm_bindgen]
pub struct Loader(SegmentDecoder);

#[wasm_bindgen]
impl Loader {
    #[wasm_bindgen(constructor)]
    pub fn new(total_len: usize) -> Result<Loader, JsError> {
        Ok(Loader(SegmentDecoder::new(total_len)?))
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        Ok(self.0.push(chunk)?)
    }

    pub fn finish(self) -> Result<Segment, JsError> {
        let inner = self.0.finish()?;
        let rows = inner
            .ids()
            .iter()
            .map(|id| id.parse::<u32>())
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| JsError::new("bench segments are keyed by row number"))?;
        Ok(Segment { inner, rows })
    }
}

#[wasm_bindgen]
pub struct Segment {
    inner: HnswSegment,
    rows: Vec<u32>,
}

#[wasm_bindgen]
impl Segment {
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// "f32", "int8-rerank" or "int8".
    pub fn set_precision(&mut self, name: &str) -> Result<(), JsError> {
        let precision = match name {
            "f32" => Precision::F32,
            "int8-rerank" => Precision::Int8Rerank,
            "int8" => Precision::Int8,
            _ => return Err(JsError::new("precision is f32, int8-rerank or int8")),
        };
        self.inner.set_precision(precision);
        Ok(())
    }

    /// Approximate top-k with a per-query beam width; `query` must already
    /// be prepared (the dataset's vectors are unit length).
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<u32> {
        let found = self.inner.search(query, SearchParams { k, ef }, |_| true);
        found.iter().map(|s| self.rows[s.index as usize]).collect()
    }

    /// Exact top-k: one pass over every vector.
    pub fn scan(&self, query: &[f32], k: usize) -> Vec<u32> {
        let found = self.inner.scan(query, k, |_| true);
        found.iter().map(|s| self.rows[s.index as usize]).collect()
    }

    /// Reads every f32 of the vector block once with SIMD loads and one add
    /// per four floats: the fastest a scan of these bytes could go, i.e. the
    /// memory-bandwidth bound the exact scan is compared with.
    pub fn stream_read(&self) -> f32 {
        stream_sum(self.inner.vectors())
    }
}

fn stream_sum(block: &[f32]) -> f32 {
    use core::arch::wasm32::{f32x4_add, f32x4_extract_lane, f32x4_splat, v128, v128_load};
    let body = block.len() - block.len() % 16;
    let mut acc = [f32x4_splat(0.0); 4];
    let mut i = 0;
    while i < body {
        for (lane, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4·lane + 4 <= body <= block.len(); no alignment needed.
            let v = unsafe { v128_load(block.as_ptr().add(i + 4 * lane).cast::<v128>()) };
            *acc = f32x4_add(*acc, v);
        }
        i += 16;
    }
    let v = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + block[body..].iter().sum::<f32>()
}

/// The fresh segment (exact, no graph) over a set of rows: what a shard's
/// recent writes cost per query.
#[wasm_bindgen]
pub struct Fresh {
    inner: FreshSegment,
    first_row: u32,
}

#[wasm_bindgen]
impl Fresh {
    /// `vectors`: `n × dim` prepared rows, keyed by `first_row..first_row + n`.
    #[wasm_bindgen(constructor)]
    pub fn new(vectors: &[f32], dim: usize, first_row: u32) -> Result<Fresh, JsError> {
        let mut inner = FreshSegment::new(dim);
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            Metric::Cosine.validate(v, dim)?;
            let row = first_row + i as u32;
            inner.upsert(&row.to_string(), v, Default::default());
        }
        Ok(Fresh { inner, first_row })
    }

    pub fn search(&self, query: &[f32], k: usize) -> Vec<u32> {
        let found = self.inner.search(Metric::Cosine, query, k, |_| true);
        // Nothing is removed, so slot i holds row first_row + i.
        found.iter().map(|s| self.first_row + s.index).collect()
    }
}

/// Bytes of this module's linear memory: what the isolate holds for it
/// (wasm memory grows and never shrinks, so this is the high-water mark).
#[wasm_bindgen]
pub fn wasm_memory_bytes() -> usize {
    core::arch::wasm32::memory_size::<0>() * 65536
}

/// Which kernels the module runs ("wasm32-simd128").
#[wasm_bindgen]
pub fn kernels() -> String {
    tidemark_core::vector::kernels::implementation().to_string()
}
