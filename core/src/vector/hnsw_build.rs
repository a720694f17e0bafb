//! Sealing: building an [`HnswSegment`] with instant-distance.
//!
//! instant-distance builds the graph (seeded `SmallRng`, heuristic neighbor
//! selection, M = 32 links per point on the upper layers and 64 at layer 0).
//! Its graph is then read out through its serde form and laid out as
//! [`HnswSegment`] keeps it. The points handed to it are rows of one prepared
//! vector block that serialize as their row number only, so reading the graph
//! out costs the links, not a copy of the vectors.
//!
//! Determinism: instant-distance inserts the points of each layer in
//! parallel on rayon's pool, so the graph is a function of the seed only when
//! that pool has one thread (which is always so on wasm32, and so in the
//! writer, which seals on a one-thread pool of its own). A multi-threaded
//! native build is a valid graph but not bit-for-bit reproducible; replicas
//! never rebuild, they load the writer's bytes, so they agree regardless.
//!
//! Entropy: instant-distance's `Builder::default()` draws a random default
//! seed (`rand::random`) before [`BuildOptions::seed`] replaces it. The graph
//! depends only on the seed given, but the draw itself happens, so sealing
//! needs an entropy source (the OS natively, `crypto.getRandomValues` in
//! wasm); searching and loading never touch one.

use std::collections::HashSet;

use instant_distance::{Builder, Point};
use serde::{Deserialize, Serialize, Serializer};
use thiserror::Error;

use super::hnsw_segment::{Adjacency, HnswSegment};
use super::metric::{Metric, VectorError};

/// Seal-time parameters. The seed is a parameter: core draws no entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    pub seed: u64,
    /// Beam width while inserting; 200 reaches recall@10 ≥ 0.99 on 384-d text
    /// embeddings with an ef of 64 at query time.
    pub ef_construction: u32,
    /// Links kept per point at layer 0 (instant-distance fills 64; see
    /// [`HnswSegment::limit_layer0_links`]). 32 is hnswlib's `2·M` for
    /// M = 16: on the 20k MiniLM set it is ~10% faster at equal recall than 64
    /// and saves 2.5 MB.
    pub layer0_links: u32,
}

impl BuildOptions {
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            ef_construction: 200,
            layer0_links: 32,
        }
    }
}

/// The most records one segment holds: point numbers are `u32` and
/// instant-distance requires fewer than `u32::MAX`.
pub const MAX_SEGMENT_POINTS: usize = 1 << 28;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum BuildError {
    #[error("record {id:?}: {error}")]
    Vector { id: String, error: VectorError },
    #[error("record id {0:?} appears twice")]
    DuplicateId(String),
    #[error("a segment holds at most {MAX_SEGMENT_POINTS} records")]
    TooManyPoints,
    #[error("record ids must be 1..={max} bytes", max = super::segment_codec::MAX_ID_BYTES)]
    BadId,
}

/// A row of the prepared vector block, as instant-distance sees it.
#[derive(Clone)]
struct Row<'a> {
    index: u32,
    vector: &'a [f32],
    metric: Metric,
}

impl Point for Row<'_> {
    fn distance(&self, other: &Self) -> f32 {
        self.metric.distance(self.vector, other.vector)
    }
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.index)
    }
}

/// The shape of instant-distance's serialized `Hnsw`: `points` in graph
/// order (as our row numbers), the layer-0 links of every point, and the
/// upper layers bottom-up, each a prefix of the points. Unused slots hold
/// `u32::MAX`.
#[derive(Deserialize)]
struct GraphParts {
    points: Vec<u32>,
    zero: Vec<Vec<u32>>,
    layers: Vec<Vec<Vec<u32>>>,
}

const INVALID: u32 = u32::MAX;

impl HnswSegment {
    /// Validates, prepares and indexes `records` (id, vector).
    pub fn build(
        metric: Metric,
        dim: usize,
        records: &[(String, Vec<f32>)],
        options: BuildOptions,
    ) -> Result<Self, BuildError> {
        if records.len() > MAX_SEGMENT_POINTS {
            return Err(BuildError::TooManyPoints);
        }
        let mut seen = HashSet::with_capacity(records.len());
        let mut block = Vec::with_capacity(records.len() * dim);
        for (id, vector) in records {
            if id.is_empty() || id.len() > super::segment_codec::MAX_ID_BYTES {
                return Err(BuildError::BadId);
            }
            if !seen.insert(id.as_str()) {
                return Err(BuildError::DuplicateId(id.clone()));
            }
            metric
                .validate(vector, dim)
                .map_err(|error| BuildError::Vector {
                    id: id.clone(),
                    error,
                })?;
            block.extend(metric.prepare(vector));
        }
        let ids: Vec<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
        Ok(Self::build_prepared(metric, dim, &ids, &block, options))
    }

    /// Builds from vectors already validated and prepared (`ids.len() × dim`,
    /// row-major), as the shard index holds them.
    pub(crate) fn build_prepared(
        metric: Metric,
        dim: usize,
        ids: &[&str],
        block: &[f32],
        options: BuildOptions,
    ) -> Self {
        let rows: Vec<Row<'_>> = if dim == 0 {
            Vec::new()
        } else {
            block
                .chunks_exact(dim)
                .enumerate()
                .map(|(index, vector)| Row {
                    index: index as u32,
                    vector,
                    metric,
                })
                .collect()
        };
        let (hnsw, _) = Builder::default()
            .seed(options.seed)
            .ef_construction(options.ef_construction as usize)
            .build_hnsw(rows);
        // The serde form is the crate's only public view of its graph.
        let json = serde_json::to_vec(&hnsw).expect("an HNSW graph serializes to JSON");
        drop(hnsw);
        let parts: GraphParts =
            serde_json::from_slice(&json).expect("instant-distance 0.6's graph has this shape");

        let mut vectors = Vec::with_capacity(parts.points.len() * dim);
        for &row in &parts.points {
            let start = row as usize * dim;
            vectors.extend_from_slice(&block[start..start + dim]);
        }
        let n = parts.points.len() as u32;
        // An empty segment has no layers at all (instant-distance's `zero`
        // is empty then too).
        let mut layers = Vec::new();
        if n > 0 {
            layers.push(adjacency(&parts.zero, n));
            for upper in &parts.layers {
                layers.push(adjacency(upper, upper.len() as u32));
            }
        }
        let mut segment = Self {
            metric,
            dim,
            seed: options.seed,
            ef_construction: options.ef_construction,
            ids: parts.points.iter().map(|&row| ids[row as usize]).collect(),
            vectors,
            quantized: None,
            layers,
        };
        segment.limit_layer0_links(options.layer0_links as usize);
        segment
    }
}

/// CSR from fixed-size slot arrays: valid links up to the first unused slot,
/// and only links to points the layer holds.
fn adjacency(slots: &[Vec<u32>], layer_len: u32) -> Adjacency {
    let mut offsets = Vec::with_capacity(slots.len() + 1);
    let mut neighbors = Vec::new();
    offsets.push(0);
    for links in slots {
        neighbors.extend(
            links
                .iter()
                .take_while(|&&p| p != INVALID)
                .filter(|&&p| p < layer_len),
        );
        offsets.push(neighbors.len() as u32);
    }
    Adjacency { offsets, neighbors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::hnsw_segment::SearchParams;
    use crate::vector::test_data::queries;
    #[cfg(not(target_arch = "wasm32"))]
    use crate::vector::test_data::records;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A segment sealed natively (one thread, seed 42) and the ids its
    /// searches return, committed. Both targets load the same bytes and must
    /// return exactly these ids: native and wasm replicas agree.
    const FIXTURE: &[u8] = include_bytes!("fixtures/segment-400x32.bin");
    const FIXTURE_IDS: &str = include_str!("fixtures/segment-400x32.ids");
    const DIM: usize = 32;

    /// One line per query: the approximate (ef 24) then the exact top-10.
    fn result_lines(segment: &HnswSegment) -> String {
        let mut out = String::new();
        for q in queries(43, 20, DIM) {
            let q = Metric::Cosine.prepare(&q);
            let approx = segment.search(&q, SearchParams { k: 10, ef: 24 }, |_| true);
            let exact = segment.scan(&q, 10, |_| true);
            let line: Vec<&str> = approx
                .iter()
                .chain(&exact)
                .map(|s| segment.id(s.index))
                .collect();
            out.push_str(&line.join(" "));
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_fixture_returns_the_committed_ids_on_this_target() {
        let segment = HnswSegment::from_bytes(FIXTURE).unwrap();
        assert_eq!(result_lines(&segment), FIXTURE_IDS);
    }

    /// Native only: a one-thread build with the same seed reproduces the
    /// fixture byte for byte. `TIDEMARK_BLESS=1` rewrites it instead.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_one_thread_build_reproduces_the_fixture() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let segment = pool.install(|| {
            HnswSegment::build(
                Metric::Cosine,
                DIM,
                &records(42, 400, DIM),
                BuildOptions::with_seed(42),
            )
            .unwrap()
        });
        if std::env::var_os("TIDEMARK_BLESS").is_some() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/vector/fixtures");
            std::fs::write(format!("{dir}/segment-400x32.bin"), segment.to_bytes()).unwrap();
            std::fs::write(format!("{dir}/segment-400x32.ids"), result_lines(&segment)).unwrap();
        }
        assert!(segment.to_bytes() == FIXTURE, "the seeded build changed");
    }

    #[test]
    fn invalid_records_are_refused() {
        let bad = [("a".to_string(), vec![1.0, f32::INFINITY])];
        assert_eq!(
            HnswSegment::build(Metric::L2, 2, &bad, BuildOptions::with_seed(1)),
            Err(BuildError::Vector {
                id: "a".into(),
                error: VectorError::NonFinite { index: 1 }
            })
        );
        let twice = [
            ("a".to_string(), vec![1.0, 0.0]),
            ("a".to_string(), vec![0.0, 1.0]),
        ];
        assert_eq!(
            HnswSegment::build(Metric::L2, 2, &twice, BuildOptions::with_seed(1)),
            Err(BuildError::DuplicateId("a".into()))
        );
    }
}
