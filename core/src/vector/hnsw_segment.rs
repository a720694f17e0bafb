//! The sealed segment: an HNSW graph over a shard's records at a seal, in a
//! compact layout searched with the SIMD kernels and a per-query `ef`.
//!
//! # Why not search with instant-distance itself
//!
//! The graph is built by `instant-distance` ([`super::hnsw_build`]), seeded,
//! as the design says. Its own search is not used, for reasons measured on
//! the 20k × 384 MiniLM set (`seal --instant-distance-efs`: native, queries
//! on one thread, all 64 layer-0 links kept, both searches computing
//! distances with the same SIMD kernel, so the difference is the walk):
//!
//! - It is slower per query at equal recall: ef 32 gave recall@10 0.986 at
//!   2,567 q/s through instant-distance against 0.985 at 4,746 q/s for this
//!   walk (ef 64: 0.994 at 1,338 vs 0.995 at 2,716). It goes through the
//!   `Point` trait pair by pair, keeps `OrderedFloat` heaps, and reads
//!   vectors out of `Vec<P>` rather than one contiguous block.
//! - `ef_search` is fixed when the index is built: a replica cannot trade
//!   recall for speed per query, and a filtered query (which must look past
//!   non-matching points to still return k) cannot widen its beam.
//! - It has no notion of tombstones or filters, nor of int8 codes: walking
//!   on int8 codes and reranking the beam with f32 is what doubles the wasm
//!   throughput here (`cargo xtask bench search`).
//! - Loading it means deserializing its structure (serde), with 64 link
//!   slots per point at layer 0 (all of them filled: its heuristic keeps the
//!   pruned candidates). The layout here is CSR with the first 32 links
//!   (the heuristic's picks come first; see [`HnswSegment::limit_layer0_links`])
//!   and the vectors in one `f32` block in graph order, which is also the
//!   byte layout of a snapshot: loading is a copy, not a rebuild.
//!
//! The layout mirrors instant-distance's invariants: points are numbered so
//! that layer `l` holds exactly points `0..layer_sizes[l]`, and the search
//! enters at point 0 on the top layer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::id_list::IdList;
use super::metric::Metric;
use super::quantized::{self, QuantizedQuery, QuantizedVectors};
use super::topk::{Scored, TopK};

/// One layer's links in compressed sparse rows: the neighbors of point `i`
/// are `neighbors[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adjacency {
    pub(crate) offsets: Vec<u32>,
    pub(crate) neighbors: Vec<u32>,
}

impl Adjacency {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn neighbors(&self, point: u32) -> &[u32] {
        let i = point as usize;
        &self.neighbors[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn memory_bytes(&self) -> usize {
        4 * (self.offsets.len() + self.neighbors.len())
    }
}

/// How the points' vectors are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32 only: exact distances everywhere.
    F32,
    /// int8 codes for the walk and the scan, f32 kept to rerank candidates.
    Int8Rerank,
    /// int8 codes only (a quarter of the memory); distances are approximate.
    Int8,
}

/// Per-query knobs of an approximate search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchParams {
    pub k: usize,
    /// Beam width at layer 0: larger is slower and more accurate; at least k
    /// is used.
    pub ef: usize,
}

/// A sealed HNSW segment. Immutable: updates and deletes after the seal are
/// the shard index's tombstones and fresh segment.
#[derive(Clone, Debug, PartialEq)]
pub struct HnswSegment {
    pub(crate) metric: Metric,
    pub(crate) dim: usize,
    /// The build parameters, kept so a reseal can reproduce them.
    pub(crate) seed: u64,
    pub(crate) ef_construction: u32,
    /// Record id of each point, in graph order.
    pub(crate) ids: IdList,
    /// `len × dim` prepared vectors in graph order; empty under [`Precision::Int8`].
    pub(crate) vectors: Vec<f32>,
    pub(crate) quantized: Option<QuantizedVectors>,
    /// `layers[0]` links every point; `layers[l]` the points `0..layers[l].len()`.
    pub(crate) layers: Vec<Adjacency>,
}

/// A visited set of one search: one bit per point, allocated per query
/// (2.5 KB for 20k points), so a segment can be searched through `&self`.
struct Visited(Vec<u64>);

impl Visited {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    /// Marks `i`; returns whether it was new.
    #[inline]
    fn insert(&mut self, i: u32) -> bool {
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        let seen = self.0[word] & bit != 0;
        self.0[word] |= bit;
        !seen
    }
}

impl HnswSegment {
    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Record ids in graph order: point `i` is `ids().get(i)`.
    pub fn ids(&self) -> &IdList {
        &self.ids
    }

    pub fn id(&self, point: u32) -> &str {
        self.ids.get(point as usize)
    }

    pub fn precision(&self) -> Precision {
        match (
            &self.quantized,
            self.vectors.is_empty() && !self.ids.is_empty(),
        ) {
            (None, _) => Precision::F32,
            (Some(_), false) => Precision::Int8Rerank,
            (Some(_), true) => Precision::Int8,
        }
    }

    /// The prepared f32 vector of a point, unless only int8 codes are kept.
    pub fn vector(&self, point: u32) -> Option<&[f32]> {
        let start = point as usize * self.dim;
        self.vectors.get(start..start + self.dim)
    }

    /// All prepared f32 vectors, `len × dim` in graph order (empty under
    /// [`Precision::Int8`]).
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Heap bytes held by the segment: what it costs an isolate.
    pub fn memory_bytes(&self) -> usize {
        4 * self.vectors.len()
            + self.quantized.as_ref().map_or(0, |q| q.memory_bytes())
            + self
                .layers
                .iter()
                .map(Adjacency::memory_bytes)
                .sum::<usize>()
            + self.ids.memory_bytes()
    }

    /// Converts the segment's storage. Quantizing needs the f32 vectors (a
    /// segment already reduced to [`Precision::Int8`] stays so); it is done
    /// after the build so the graph itself is built on exact distances.
    pub fn set_precision(&mut self, precision: Precision) {
        if precision != Precision::F32 && self.quantized.is_none() && !self.vectors.is_empty() {
            self.quantized = Some(QuantizedVectors::from_rows(self.dim, &self.vectors));
        }
        match precision {
            Precision::F32 if !self.vectors.is_empty() || self.ids.is_empty() => {
                self.quantized = None
            }
            Precision::Int8 if self.quantized.is_some() => self.vectors = Vec::new(),
            _ => {}
        }
        self.vectors.shrink_to_fit();
    }

    /// Keeps at most `max` links per point at layer 0, the first ones.
    ///
    /// instant-distance fills all 64 layer-0 slots of every point: first
    /// the neighbors its heuristic selects (nearest first, each closer to the
    /// point than to any neighbor already kept), then the pruned candidates
    /// (`keep_pruned`). Cutting the list keeps the heuristic's choice and
    /// drops pruned links, which costs hops less than it saves distances.
    pub fn limit_layer0_links(&mut self, max: usize) {
        let Some(zero) = self.layers.first_mut() else {
            return;
        };
        let mut offsets = Vec::with_capacity(zero.offsets.len());
        let mut neighbors = Vec::with_capacity(zero.len() * max);
        offsets.push(0);
        for point in 0..zero.len() as u32 {
            let links = zero.neighbors(point);
            neighbors.extend_from_slice(&links[..links.len().min(max)]);
            offsets.push(neighbors.len() as u32);
        }
        *zero = Adjacency { offsets, neighbors };
    }

    /// The query-side state of one search: the int8 form when the walk uses codes.
    fn distances<'a>(&'a self, query: &'a [f32]) -> impl Fn(u32) -> f32 + 'a {
        let quantized = self
            .quantized
            .as_ref()
            .map(|codes| (codes, QuantizedQuery::new(query)));
        let (metric, dim) = (self.metric, self.dim);
        move |point: u32| match &quantized {
            Some((codes, q)) => codes.distance(metric, point as usize, q),
            None => {
                let start = point as usize * dim;
                metric.distance(query, &self.vectors[start..start + dim])
            }
        }
    }

    /// Approximate top-k by a layer walk: greedy descent through the upper
    /// layers, then a beam of width `max(ef, k)` at layer 0 (HNSW, Malkov &
    /// Yashunin 2016, algorithm 2).
    ///
    /// Points for which `accept` is false (filtered out, tombstoned) still
    /// route the walk but never enter the results, and the beam only starts
    /// to prune once it holds `ef` accepted points: a selective filter widens
    /// the walk instead of returning fewer than k. `query` must be prepared
    /// ([`Metric::prepare`]) and of the segment's dimension.
    pub fn search(
        &self,
        query: &[f32],
        params: SearchParams,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        debug_assert_eq!(query.len(), self.dim);
        if self.is_empty() || params.k == 0 {
            return Vec::new();
        }
        let distance = self.distances(query);
        let mut current = Scored {
            distance: distance(0),
            index: 0,
        };
        for layer in self.layers.iter().skip(1).rev() {
            loop {
                let mut moved = false;
                for &next in layer.neighbors(current.index) {
                    let candidate = Scored {
                        distance: distance(next),
                        index: next,
                    };
                    if candidate < current {
                        current = candidate;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        let ef = params.ef.max(params.k);
        let mut visited = Visited::new(self.len());
        let mut frontier = BinaryHeap::with_capacity(4 * ef);
        let mut results = TopK::new(ef);
        visited.insert(current.index);
        frontier.push(Reverse(current));
        if accept(current.index) {
            results.push(current);
        }
        let zero = &self.layers[0];
        while let Some(Reverse(nearest)) = frontier.pop() {
            if nearest.distance > results.threshold() {
                break;
            }
            for &next in zero.neighbors(nearest.index) {
                if !visited.insert(next) {
                    continue;
                }
                let d = distance(next);
                if d < results.threshold() {
                    let candidate = Scored {
                        distance: d,
                        index: next,
                    };
                    frontier.push(Reverse(candidate));
                    if accept(next) {
                        results.push(candidate);
                    }
                }
            }
        }
        self.finish(query, results.into_sorted_vec(), params.k)
    }

    /// Exact top-k over every accepted point: one sequential pass over the
    /// vectors. With int8 codes and the f32 kept, the pass reads the codes and
    /// reranks with f32 only where the codes' error bound leaves doubt
    /// ([`quantized::exact_top_k`]): the same result as the f32 pass. With
    /// codes only, the order is the codes' (approximate).
    pub fn scan(&self, query: &[f32], k: usize, accept: impl Fn(u32) -> bool) -> Vec<Scored> {
        debug_assert_eq!(query.len(), self.dim);
        let (metric, dim) = (self.metric, self.dim);
        match (&self.quantized, self.precision()) {
            (Some(codes), Precision::Int8Rerank) => {
                quantized::exact_top_k(codes, metric, &QuantizedQuery::new(query), k, accept, |i| {
                    let start = i as usize * dim;
                    metric.distance(query, &self.vectors[start..start + dim])
                })
            }
            _ => {
                let mut top = TopK::new(k);
                let distance = self.distances(query);
                for index in 0..self.len() as u32 {
                    if accept(index) {
                        let d = distance(index);
                        if d < top.threshold() {
                            top.push(Scored { distance: d, index });
                        }
                    }
                }
                top.into_sorted_vec()
            }
        }
    }

    /// Turns candidates into results: reranked with exact f32 distances when
    /// the walk used int8 codes and the f32 are kept, then cut to k.
    fn finish(&self, query: &[f32], mut candidates: Vec<Scored>, k: usize) -> Vec<Scored> {
        if self.precision() == Precision::Int8Rerank {
            for c in &mut candidates {
                let start = c.index as usize * self.dim;
                c.distance = self
                    .metric
                    .distance(query, &self.vectors[start..start + self.dim]);
            }
            candidates.sort();
        }
        candidates.truncate(k);
        candidates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::hnsw_build::BuildOptions;
    use crate::vector::kernels;
    use crate::vector::test_data::{queries, records};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const DIM: usize = 24;

    fn segment(n: usize) -> HnswSegment {
        HnswSegment::build(
            Metric::Cosine,
            DIM,
            &records(1, n, DIM),
            BuildOptions::with_seed(7),
        )
        .unwrap()
    }

    /// Brute force with the scalar reference kernel.
    fn truth(s: &HnswSegment, query: &[f32], k: usize, accept: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = (0..s.len() as u32)
            .filter(|&p| accept(p))
            .map(|p| (-kernels::scalar::dot(query, s.vector(p).unwrap()), p))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, p)| p).collect()
    }

    fn recall(s: &HnswSegment, ef: usize) -> f64 {
        let qs = queries(2, 40, DIM);
        let mut hits = 0;
        for q in &qs {
            let q = Metric::Cosine.prepare(q);
            let expected = truth(s, &q, 10, |_| true);
            let found = s.search(&q, SearchParams { k: 10, ef }, |_| true);
            hits += found.iter().filter(|f| expected.contains(&f.index)).count();
        }
        hits as f64 / (10 * qs.len()) as f64
    }

    #[test]
    fn layer_walk_finds_the_true_neighbours() {
        let s = segment(600);
        assert_eq!(s.len(), 600);
        assert!(s.layers.len() >= 2, "600 points make more than one layer");
        let r = recall(&s, 64);
        assert!(r >= 0.95, "recall@10 at ef 64 was {r}");
        // ef is a real knob: a beam of k explores less than a beam of 200.
        assert!(recall(&s, 200) >= r);
    }

    #[test]
    fn scan_is_exact_and_sorted() {
        let s = segment(300);
        for q in queries(3, 10, DIM) {
            let q = Metric::Cosine.prepare(&q);
            let found = s.scan(&q, 10, |_| true);
            let ids: Vec<u32> = found.iter().map(|f| f.index).collect();
            let expected = truth(&s, &q, 10, |_| true);
            // Distances come from SIMD and scalar kernels: compare as sets of
            // near-equal distances, and require the same ids unless tied.
            assert_eq!(ids.len(), 10);
            assert!(found.windows(2).all(|w| w[0] <= w[1]));
            let common = ids.iter().filter(|p| expected.contains(p)).count();
            assert!(common >= 9, "{ids:?} vs {expected:?}");
        }
    }

    #[test]
    fn rejected_points_route_but_never_return_and_k_is_kept() {
        let s = segment(600);
        // Keep one point in 50: a selective filter.
        let accept = |p: u32| {
            s.id(p)
                .trim_start_matches('r')
                .parse::<u32>()
                .unwrap()
                .is_multiple_of(50)
        };
        for q in queries(4, 10, DIM) {
            let q = Metric::Cosine.prepare(&q);
            let found = s.search(&q, SearchParams { k: 10, ef: 16 }, accept);
            assert_eq!(found.len(), 10, "12 points match, so k = 10 are returned");
            assert!(found.iter().all(|f| accept(f.index)));
        }
    }

    #[test]
    fn int8_storage_keeps_recall_and_saves_memory() {
        let mut s = segment(600);
        let f32_bytes = s.memory_bytes();
        s.set_precision(Precision::Int8Rerank);
        assert_eq!(s.precision(), Precision::Int8Rerank);
        assert!(recall(&s, 64) >= 0.93);
        s.set_precision(Precision::Int8);
        assert_eq!(s.precision(), Precision::Int8);
        assert!(s.vector(0).is_none());
        // 4 bytes per component become 1, plus a scale and two norms per point.
        assert_eq!(f32_bytes - s.memory_bytes(), 600 * (3 * DIM - 12));
        let q = Metric::Cosine.prepare(&queries(5, 1, DIM)[0]);
        assert_eq!(s.scan(&q, 10, |_| true).len(), 10);
        assert_eq!(
            s.search(&q, SearchParams { k: 10, ef: 32 }, |_| true).len(),
            10
        );
    }

    #[test]
    fn empty_and_tiny_segments() {
        let empty = HnswSegment::build(Metric::L2, 4, &[], BuildOptions::with_seed(1)).unwrap();
        assert!(empty.is_empty());
        assert!(
            empty
                .search(&[0.0; 4], SearchParams { k: 3, ef: 8 }, |_| true)
                .is_empty()
        );
        let one = HnswSegment::build(
            Metric::L2,
            2,
            &[("a".into(), vec![1.0, 0.0])],
            BuildOptions::with_seed(1),
        )
        .unwrap();
        let found = one.search(&[0.0, 0.0], SearchParams { k: 3, ef: 8 }, |_| true);
        assert_eq!(
            found,
            vec![Scored {
                distance: 1.0,
                index: 0
            }]
        );
    }
}
