//! One shard's vector index: a sealed HNSW segment, a fresh segment of the
//! writes since the seal, and tombstones over the sealed points that those
//! writes replaced or deleted.
//!
//! The writer seals (builds the graph, natively, with a seed) and ships the
//! segment in snapshots; replicas load it with [`ShardIndex::from_sealed`]
//! and apply the log after the snapshot with [`ShardIndex::upsert`] and
//! [`ShardIndex::delete`]. A record lives in exactly one place: a write to a
//! sealed record tombstones its sealed point and puts the new version in the
//! fresh segment. [`ResealPolicy`] says when the fresh segment and the
//! tombstones have grown enough that a new seal pays for itself.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::field_column::FieldColumn;
use super::filter::Filter;
use super::fresh_segment::FreshSegment;
use super::hnsw_build::{BuildError, BuildOptions};
use super::hnsw_segment::{HnswSegment, SearchParams};
use super::metric::Metric;
use super::query::{Hit, Mode, Query, QueryError};
use super::topk::Scored;

/// When to reseal. The fresh segment is scanned exactly on every query, so
/// its size is a per-query cost; tombstoned points still cost graph hops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResealPolicy {
    /// Reseal once the fresh segment holds this many records. 2,048 × 384-d
    /// is ~0.1 ms of exact scan in wasm, about the cost of one HNSW query.
    pub max_fresh: usize,
    /// …or once this fraction of the sealed points are tombstoned.
    pub max_tombstone_ratio: f32,
}

impl Default for ResealPolicy {
    fn default() -> Self {
        Self {
            max_fresh: 2048,
            max_tombstone_ratio: 0.2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResealError {
    #[error("the sealed segment keeps int8 codes only; resealing needs the f32 vectors")]
    NoF32Vectors,
    #[error(transparent)]
    Build(#[from] BuildError),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Vector(#[from] super::metric::VectorError),
    #[error("record ids must be 1..={max} bytes", max = super::segment_codec::MAX_ID_BYTES)]
    BadId,
}

#[derive(Debug)]
pub struct ShardIndex {
    metric: Metric,
    dim: usize,
    sealed: Option<HnswSegment>,
    /// Materialized fields of each sealed point (graph order).
    sealed_fields: FieldColumn,
    /// The sealed points in the order of their ids, for lookups by id
    /// (binary search over the segment's own ids: a map would hold a second
    /// copy of every id, over a megabyte for 20k records).
    sealed_by_id: Vec<u32>,
    /// One bit per sealed point: replaced or deleted since the seal.
    tombstones: Vec<u64>,
    tombstone_count: usize,
    fresh: FreshSegment,
    pub policy: ResealPolicy,
}

impl ShardIndex {
    pub fn new(metric: Metric, dim: usize) -> Self {
        Self {
            metric,
            dim,
            sealed: None,
            sealed_fields: FieldColumn::default(),
            sealed_by_id: Vec::new(),
            tombstones: Vec::new(),
            tombstone_count: 0,
            fresh: FreshSegment::new(dim),
            policy: ResealPolicy::default(),
        }
    }

    /// A replica's index from a snapshot: the sealed segment and the
    /// materialized fields of its records (records missing from `fields` get
    /// an empty object, which no filter matches).
    pub fn from_sealed(segment: HnswSegment, mut fields: HashMap<String, Value>) -> Self {
        let mut index = Self::new(segment.metric(), segment.dim());
        index.install(segment, |id| {
            fields
                .remove(id)
                .unwrap_or_else(|| Value::Object(Default::default()))
        });
        index
    }

    fn install(&mut self, segment: HnswSegment, mut fields_of: impl FnMut(&str) -> Value) {
        let fields = segment.ids().iter().map(&mut fields_of).collect();
        self.install_sealed(segment, fields);
    }

    /// Makes `segment` the sealed segment, with its points' fields in graph
    /// order and no tombstones.
    pub(crate) fn install_sealed(&mut self, segment: HnswSegment, fields: FieldColumn) {
        debug_assert_eq!(fields.len(), segment.len());
        self.sealed_fields = fields;
        let ids = segment.ids();
        let mut by_id: Vec<u32> = (0..ids.len() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| ids.get(a as usize).cmp(ids.get(b as usize)));
        self.sealed_by_id = by_id;
        self.tombstones = vec![0; segment.len().div_ceil(64)];
        self.tombstone_count = 0;
        self.sealed = Some(segment);
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn sealed(&self) -> Option<&HnswSegment> {
        self.sealed.as_ref()
    }

    /// Mutable access, e.g. to quantize the sealed segment on a replica.
    pub fn sealed_mut(&mut self) -> Option<&mut HnswSegment> {
        self.sealed.as_mut()
    }

    pub fn fresh_len(&self) -> usize {
        self.fresh.len()
    }

    pub fn tombstone_count(&self) -> usize {
        self.tombstone_count
    }

    /// Live records with a vector.
    pub fn len(&self) -> usize {
        self.sealed.as_ref().map_or(0, HnswSegment::len) - self.tombstone_count + self.fresh.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn memory_bytes(&self) -> usize {
        self.sealed.as_ref().map_or(0, HnswSegment::memory_bytes)
            + self.fresh.memory_bytes()
            + 4 * self.sealed_by_id.len()
            + 8 * self.tombstones.len()
    }

    /// The sealed point of `id`, tombstoned or not.
    fn sealed_point(&self, id: &str) -> Option<u32> {
        let ids = self.sealed.as_ref()?.ids();
        self.sealed_by_id
            .binary_search_by(|&point| ids.get(point as usize).cmp(id))
            .ok()
            .map(|at| self.sealed_by_id[at])
    }

    fn is_tombstoned(&self, point: u32) -> bool {
        self.tombstones[(point / 64) as usize] & (1 << (point % 64)) != 0
    }

    /// Tombstones the live sealed version of `id`, if any.
    fn bury(&mut self, id: &str) {
        if let Some(point) = self.sealed_point(id)
            && !self.is_tombstoned(point)
        {
            self.tombstones[(point / 64) as usize] |= 1 << (point % 64);
            self.tombstone_count += 1;
        }
    }

    /// Replaces the fresh segment (a loader built it whole).
    pub(crate) fn set_fresh(&mut self, fresh: FreshSegment) {
        debug_assert_eq!(fresh.dim(), self.dim);
        self.fresh = fresh;
    }

    /// Room for `additional` more records in the fresh segment, exactly
    /// (see [`FreshSegment::reserve_exact`]).
    pub fn reserve_fresh(&mut self, additional: usize) {
        self.fresh.reserve_exact(additional);
    }

    /// Applies a write: the record's vector (validated here; `None` when the
    /// record has none, which takes it out of the index) and its materialized
    /// fields after the write.
    pub fn upsert(
        &mut self,
        id: &str,
        vector: Option<&[f32]>,
        fields: Value,
    ) -> Result<(), IngestError> {
        if id.is_empty() || id.len() > super::segment_codec::MAX_ID_BYTES {
            return Err(IngestError::BadId);
        }
        let Some(vector) = vector else {
            self.delete(id);
            return Ok(());
        };
        self.metric.validate(vector, self.dim)?;
        let prepared = self.metric.prepare(vector);
        // A write that leaves a sealed record's vector as it was (a field
        // edit) keeps its place in the graph.
        if let (Some(sealed), Some(point)) = (&self.sealed, self.sealed_point(id))
            && !self.is_tombstoned(point)
            && sealed.vector(point) == Some(prepared.as_slice())
        {
            self.sealed_fields.set(point as usize, fields);
            return Ok(());
        }
        self.bury(id);
        self.fresh.upsert(id, &prepared, fields);
        Ok(())
    }

    /// A record's prepared vector, unless the index keeps only int8 codes
    /// for it. Under every metric a stored vector is prepared, so this is
    /// the vector the writer stores: a replica whose index holds the vectors
    /// need not keep a second copy ([`crate::replica::ReplicaShard::without_vectors`]).
    pub fn vector(&self, id: &str) -> Option<&[f32]> {
        if let Some(vector) = self.fresh.vector(id) {
            return Some(vector);
        }
        let point = self.sealed_point(id)?;
        if self.is_tombstoned(point) {
            return None;
        }
        self.sealed.as_ref()?.vector(point)
    }

    /// Whether the sealed segment holds `id`, live, with exactly `vector`:
    /// then [`Self::upsert`] with it would only replace the fields. A
    /// replica rebuilding its index from a snapshot skips those records
    /// (most of them) without preparing each vector again.
    pub fn holds(&self, id: &str, vector: &[f32]) -> bool {
        match (&self.sealed, self.sealed_point(id)) {
            (Some(sealed), Some(point)) => {
                !self.is_tombstoned(point) && sealed.vector(point) == Some(vector)
            }
            _ => false,
        }
    }

    /// Removes a record; false if the index did not hold it.
    pub fn delete(&mut self, id: &str) -> bool {
        let before = self.len();
        self.bury(id);
        self.fresh.remove(id);
        self.len() != before
    }

    pub fn needs_reseal(&self) -> bool {
        let sealed = self.sealed.as_ref().map_or(0, HnswSegment::len);
        self.fresh.len() >= self.policy.max_fresh
            || (self.tombstone_count as f32) > self.policy.max_tombstone_ratio * sealed as f32
    }

    /// Builds a new sealed segment from every live record (the writer does
    /// this when [`Self::needs_reseal`]); the fresh segment and tombstones
    /// start empty again. Keeps the old segment's precision.
    pub fn reseal(&mut self, options: BuildOptions) -> Result<(), ResealError> {
        let mut ids: Vec<String> = Vec::with_capacity(self.len());
        let mut block = Vec::with_capacity(self.len() * self.dim);
        let mut fields = Vec::with_capacity(self.len());
        let mut precision = None;
        if let Some(sealed) = &self.sealed {
            precision = Some(sealed.precision());
            for point in 0..sealed.len() as u32 {
                if self.is_tombstoned(point) {
                    continue;
                }
                let vector = sealed.vector(point).ok_or(ResealError::NoF32Vectors)?;
                ids.push(sealed.id(point).to_string());
                block.extend_from_slice(vector);
                fields.push(self.sealed_fields.get(point as usize).clone());
            }
        }
        for (id, vector, f) in self.fresh.records() {
            ids.push(id.to_string());
            block.extend_from_slice(vector);
            fields.push(f.clone());
        }
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut segment =
            HnswSegment::build_prepared(self.metric, self.dim, &id_refs, &block, options);
        if let Some(precision) = precision {
            segment.set_precision(precision);
        }
        let mut by_id: HashMap<String, Value> = ids.into_iter().zip(fields).collect();
        self.fresh = FreshSegment::new(self.dim);
        self.install(segment, |id| by_id.remove(id).unwrap_or(Value::Null));
        Ok(())
    }

    /// Top-k of this shard, best first, ties by id; a filter reads the
    /// fields the index was given.
    pub fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>, QueryError> {
        self.search_by(query, |_, fields| {
            query.filter.is_none_or(|f: &Filter| f.matches(fields))
        })
    }

    /// [`Self::search`] for a host that keeps the records' fields itself
    /// and gave the index `Value::Null` for them (the edge: a replica's
    /// fields held once, not twice): a filter reads `fields_of(id)`, and a
    /// record it does not find passes no filter.
    pub fn search_with_fields<'f>(
        &self,
        query: &Query<'_>,
        fields_of: impl Fn(&str) -> Option<&'f Map<String, Value>>,
    ) -> Result<Vec<Hit>, QueryError> {
        self.search_by(query, |id, _| {
            query
                .filter
                .is_none_or(|f: &Filter| fields_of(id).is_some_and(|m| f.matches_fields(m)))
        })
    }

    /// Top-k over the records `matches(id, stored fields)` lets through.
    fn search_by(
        &self,
        query: &Query<'_>,
        matches: impl Fn(&str, &Value) -> bool,
    ) -> Result<Vec<Hit>, QueryError> {
        query.validate(self.metric, self.dim)?;
        let prepared = self.metric.prepare(query.vector);
        let k = query.k;
        let mut hits: Vec<Hit> = Vec::with_capacity(2 * k);
        if let Some(sealed) = &self.sealed {
            let accept = |p: u32| {
                !self.is_tombstoned(p) && matches(sealed.id(p), self.sealed_fields.get(p as usize))
            };
            let found = match query.mode {
                Mode::Exact => sealed.scan(&prepared, k, accept),
                Mode::Approximate { ef } => {
                    let found = sealed.search(&prepared, SearchParams { k, ef }, accept);
                    // The walk may end with fewer than k accepted points when
                    // a filter matches few records far apart in the graph;
                    // an exact pass then finds every match there is.
                    if found.len() < k && found.len() < sealed.len() - self.tombstone_count {
                        sealed.scan(&prepared, k, accept)
                    } else {
                        found
                    }
                }
            };
            hits.extend(found.into_iter().map(|s| hit(sealed.id(s.index), s)));
        }
        let fresh = self.fresh.search(self.metric, &prepared, k, |slot| {
            matches(self.fresh.id(slot), self.fresh.fields(slot))
        });
        hits.extend(fresh.into_iter().map(|s| hit(self.fresh.id(s.index), s)));
        Ok(merge_top_k(k, [hits]))
    }
}

fn hit(id: &str, scored: Scored) -> Hit {
    Hit {
        id: id.to_string(),
        distance: scored.distance,
    }
}

/// Merges per-segment or per-shard results into one top-k: by distance,
/// then by id, so the order is the same wherever the merge runs.
pub fn merge_top_k(k: usize, lists: impl IntoIterator<Item = Vec<Hit>>) -> Vec<Hit> {
    let mut all: Vec<Hit> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then_with(|| a.id.cmp(&b.id))
    });
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::vector::hnsw_segment::Precision;
    use crate::vector::metric::VectorError;
    use crate::vector::test_data::{SplitMix, queries, records};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const DIM: usize = 16;

    fn fields(i: usize) -> Value {
        json!({"parity": if i.is_multiple_of(2) { "even" } else { "odd" }, "n": i, "tags": [format!("t{}", i % 7)]})
    }

    fn sealed_index(n: usize) -> (ShardIndex, BTreeMap<String, (Vec<f32>, Value)>) {
        let recs = records(11, n, DIM);
        let segment =
            HnswSegment::build(Metric::Cosine, DIM, &recs, BuildOptions::with_seed(5)).unwrap();
        let mut model = BTreeMap::new();
        let mut field_map = HashMap::new();
        for (i, (id, v)) in recs.into_iter().enumerate() {
            field_map.insert(id.clone(), fields(i));
            model.insert(id, (Metric::Cosine.prepare(&v), fields(i)));
        }
        (ShardIndex::from_sealed(segment, field_map), model)
    }

    /// The reference: brute force over the model, by (distance, id).
    fn brute_force(
        model: &BTreeMap<String, (Vec<f32>, Value)>,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Vec<String> {
        let q = Metric::Cosine.prepare(query);
        let hits = model
            .iter()
            .filter(|(_, (_, f))| filter.is_none_or(|flt| flt.matches(f)))
            .map(|(id, (v, _))| Hit {
                id: id.clone(),
                distance: Metric::Cosine.distance(&q, v),
            })
            .collect();
        merge_top_k(k, [hits]).into_iter().map(|h| h.id).collect()
    }

    fn ids(hits: &[Hit]) -> Vec<String> {
        hits.iter().map(|h| h.id.clone()).collect()
    }

    /// Random upserts and deletes against a BTreeMap model; the exact mode
    /// must agree with brute force after every batch, and a reseal keeps it so.
    #[test]
    fn exact_search_matches_a_model_through_writes_deletes_and_reseals() {
        let (mut index, mut model) = sealed_index(300);
        let mut rng = SplitMix(21);
        let qs = queries(12, 5, DIM);
        for round in 0..4 {
            for _ in 0..60 {
                let id = format!("r{}", rng.next_u64() % 360);
                if rng.next_u64().is_multiple_of(4) {
                    assert_eq!(index.delete(&id), model.remove(&id).is_some());
                } else {
                    let v: Vec<f32> = (0..DIM).map(|_| rng.next_f32()).collect();
                    let f = fields((rng.next_u64() % 100) as usize);
                    index.upsert(&id, Some(&v), f.clone()).unwrap();
                    model.insert(id, (Metric::Cosine.prepare(&v), f));
                }
            }
            assert_eq!(index.len(), model.len());
            let even = Filter::eq("parity", "even");
            for q in &qs {
                let found = index.search(&Query::new(q, 10).exact()).unwrap();
                assert_eq!(
                    ids(&found),
                    brute_force(&model, q, 10, None),
                    "round {round}"
                );
                let found = index
                    .search(&Query::new(q, 10).exact().filter(&even))
                    .unwrap();
                assert_eq!(ids(&found), brute_force(&model, q, 10, Some(&even)));
            }
            if round == 0 {
                // From here on the sealed segment walks and scans int8 codes;
                // the exact mode must stay exact (bounded rerank), through
                // the reseal below too (which keeps the precision).
                index
                    .sealed_mut()
                    .unwrap()
                    .set_precision(crate::vector::Precision::Int8Rerank);
            }
            if round == 1 {
                assert!(index.tombstone_count() > 0 && index.fresh_len() > 0);
                index.reseal(BuildOptions::with_seed(round)).unwrap();
                assert_eq!((index.tombstone_count(), index.fresh_len()), (0, 0));
                assert_eq!(
                    index.sealed().unwrap().precision(),
                    crate::vector::Precision::Int8Rerank
                );
                assert_eq!(index.len(), model.len());
            }
        }
    }

    #[test]
    fn approximate_search_sees_fresh_writes_and_hides_tombstones() {
        let (mut index, _) = sealed_index(300);
        let q = queries(13, 1, DIM).remove(0);
        let before = index.search(&Query::new(&q, 5)).unwrap();
        // Delete the best hit; write a new record equal to the query.
        assert!(index.delete(&before[0].id));
        index.upsert("new", Some(&q), json!({})).unwrap();
        let after = index.search(&Query::new(&q, 5)).unwrap();
        assert_eq!(after[0].id, "new");
        assert!(after.iter().all(|h| h.id != before[0].id));
        // Moving a sealed record's vector far away moves it out of the top.
        index
            .upsert(
                &before[1].id,
                Some(&q.iter().map(|x| -x).collect::<Vec<_>>()),
                json!({}),
            )
            .unwrap();
        let moved = index.search(&Query::new(&q, 5)).unwrap();
        assert!(moved.iter().all(|h| h.id != before[1].id));
    }

    #[test]
    fn filters_return_k_whenever_k_records_match() {
        let (index, model) = sealed_index(400);
        // n ∈ [100, 112): 12 records, scattered over the graph.
        let narrow = Filter::range("n", Some(100.0), Some(112.0));
        let tag = Filter::one_of("tags", [json!("t3")]);
        for q in queries(14, 5, DIM) {
            for filter in [&narrow, &tag] {
                let found = index
                    .search(&Query::new(&q, 10).ef(10).filter(filter))
                    .unwrap();
                assert_eq!(found.len(), 10);
                assert!(found.iter().all(|h| filter.matches(&model[&h.id].1)));
            }
            let none = Filter::eq("parity", "neither");
            assert!(
                index
                    .search(&Query::new(&q, 10).filter(&none))
                    .unwrap()
                    .is_empty()
            );
        }
    }

    /// An index given no fields, filtering through the host's, answers as
    /// one holding them.
    #[test]
    fn filters_read_the_hosts_fields_as_the_indexs_own() {
        let (index, model) = sealed_index(300);
        let mut bare = ShardIndex::from_sealed(
            index.sealed().unwrap().clone(),
            model.keys().map(|id| (id.clone(), Value::Null)).collect(),
        );
        // Some fresh records too, also without fields.
        for (id, (vector, _)) in model.iter().take(20) {
            bare.upsert(
                id,
                Some(&vector.iter().map(|x| -x).collect::<Vec<_>>()),
                Value::Null,
            )
            .unwrap();
        }
        let mut full = ShardIndex::from_sealed(
            index.sealed().unwrap().clone(),
            model
                .iter()
                .map(|(id, (_, f))| (id.clone(), f.clone()))
                .collect(),
        );
        for (id, (vector, fields)) in model.iter().take(20) {
            full.upsert(
                id,
                Some(&vector.iter().map(|x| -x).collect::<Vec<_>>()),
                fields.clone(),
            )
            .unwrap();
        }
        let fields_of = |id: &str| model.get(id).and_then(|(_, f)| f.as_object());
        let filters = [
            Filter::range("n", Some(100.0), Some(180.0)),
            Filter::one_of("tags", [json!("t3")]),
            Filter::eq("parity", "neither"),
        ];
        for q in queries(15, 5, DIM) {
            for filter in &filters {
                for query in [
                    Query::new(&q, 10).filter(filter),
                    Query::new(&q, 10).exact().filter(filter),
                ] {
                    assert_eq!(
                        bare.search_with_fields(&query, fields_of).unwrap(),
                        full.search(&query).unwrap()
                    );
                }
            }
            let plain = Query::new(&q, 10);
            assert_eq!(
                bare.search_with_fields(&plain, |_| None).unwrap(),
                full.search(&plain).unwrap()
            );
        }
    }

    #[test]
    fn field_only_writes_keep_the_sealed_point() {
        let (mut index, model) = sealed_index(100);
        let (v, _) = &model["r7"];
        index
            .upsert("r7", Some(v), json!({"parity": "seven"}))
            .unwrap();
        assert_eq!((index.tombstone_count(), index.fresh_len()), (0, 0));
        let only = Filter::eq("parity", "seven");
        let found = index.search(&Query::new(v, 3).filter(&only)).unwrap();
        assert_eq!(ids(&found), vec!["r7".to_string()]);
        // A record without a vector leaves the index.
        index.upsert("r7", None, json!({})).unwrap();
        assert_eq!(index.len(), 99);
    }

    #[test]
    fn answers_each_records_prepared_vector() {
        let (mut index, model) = sealed_index(60);
        for (id, (v, _)) in &model {
            assert_eq!(index.vector(id), Some(v.as_slice()), "{id}");
        }
        let moved = Metric::Cosine.prepare(&[0.5; DIM]);
        index.upsert("r3", Some(&[0.5; DIM]), json!({})).unwrap();
        assert_eq!(index.vector("r3"), Some(moved.as_slice()));
        index.delete("r4");
        assert_eq!(index.vector("r4"), None);
        assert_eq!(index.vector("nobody"), None);
        index.sealed_mut().unwrap().set_precision(Precision::Int8);
        assert_eq!(index.vector("r5"), None);
        assert_eq!(index.vector("r3"), Some(moved.as_slice()));
    }

    #[test]
    fn holds_exactly_the_live_sealed_vectors() {
        let (mut index, model) = sealed_index(60);
        for (id, (v, _)) in &model {
            assert!(index.holds(id, v), "{id}");
        }
        let (v3, _) = &model["r3"];
        assert!(!index.holds("r4", v3), "another point's vector");
        assert!(!index.holds("nobody", v3));
        index.upsert("r3", Some(&[0.5; DIM]), json!({})).unwrap();
        assert!(!index.holds("r3", v3), "moved to the fresh segment");
        let (v4, _) = &model["r4"];
        index.delete("r4");
        assert!(!index.holds("r4", v4), "deleted");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let (mut index, _) = sealed_index(50);
        assert_eq!(
            index.upsert("x", Some(&[1.0; 3]), json!({})),
            Err(IngestError::Vector(VectorError::WrongDimension {
                expected: DIM,
                actual: 3
            }))
        );
        assert_eq!(
            index.upsert("x", Some(&[0.0; DIM]), json!({})),
            Err(IngestError::Vector(VectorError::ZeroNorm))
        );
        assert_eq!(
            index.upsert("", Some(&[1.0; DIM]), json!({})),
            Err(IngestError::BadId)
        );
        let mut nan = vec![1.0; DIM];
        nan[3] = f32::NAN;
        assert_eq!(
            index.search(&Query::new(&nan, 3)),
            Err(QueryError::Vector(VectorError::NonFinite { index: 3 }))
        );
        let q = vec![1.0; DIM];
        assert_eq!(index.search(&Query::new(&q, 0)), Err(QueryError::BadK(0)));
        assert_eq!(
            index.search(&Query::new(&q, 3).ef(0)),
            Err(QueryError::BadEf(0))
        );
        let open = Filter::Range {
            field: "n".into(),
            gt: None,
            gte: None,
            lt: None,
            lte: None,
        };
        assert!(matches!(
            index.search(&Query::new(&q, 3).filter(&open)),
            Err(QueryError::Filter(_))
        ));
        assert_eq!(index.len(), 50);
    }

    #[test]
    fn reseal_policy_thresholds() {
        let (mut index, _) = sealed_index(100);
        index.policy = ResealPolicy {
            max_fresh: 3,
            max_tombstone_ratio: 0.05,
        };
        assert!(!index.needs_reseal());
        for i in 0..5 {
            index.delete(&format!("r{i}"));
        }
        assert!(!index.needs_reseal(), "5 of 100 is not more than 5%");
        index.delete("r5");
        assert!(index.needs_reseal());
        index.reseal(BuildOptions::with_seed(1)).unwrap();
        assert!(!index.needs_reseal());
        for i in 0..3 {
            index
                .upsert(&format!("n{i}"), Some(&[1.0; DIM]), json!({}))
                .unwrap();
        }
        assert!(index.needs_reseal());
    }

    #[test]
    fn shards_merge_by_distance_then_id() {
        let a = vec![
            Hit {
                id: "b".into(),
                distance: 0.5,
            },
            Hit {
                id: "d".into(),
                distance: 0.9,
            },
        ];
        let b = vec![
            Hit {
                id: "a".into(),
                distance: 0.5,
            },
            Hit {
                id: "c".into(),
                distance: 0.1,
            },
        ];
        assert_eq!(ids(&merge_top_k(3, [a, b])), vec!["c", "a", "b"]);
    }
}
