//! Building a replica's index from a snapshot as it streams in, with each
//! vector copied once, into the block it will be searched in.
//!
//! A snapshot lists its records (sorted by id) before its sealed segment,
//! so while records arrive it is not yet known which of them the graph
//! holds, nor in which order. [`IndexLoader`] gathers their prepared vectors
//! into one block in record order; [`IndexLoader::finish`] then:
//!
//! - without a segment, makes the block the fresh segment's;
//! - with a segment shipped without its vectors (the writer sealed exactly
//!   these records), moves the records that are not points to the fresh
//!   segment, puts the points' rows in graph order by swapping rows in place,
//!   and hands the block to the segment;
//! - with a segment carrying its own vectors (sealed at an earlier offset),
//!   keeps in the graph the records whose vector is their point's, puts the
//!   others in the fresh segment and tombstones points no record matches.
//!
//! So the peak is the index itself, not the index plus a staging copy: in a
//! wasm heap, which never shrinks, the peak is what a replica keeps.

use std::collections::HashMap;

use serde_json::Value;

use super::field_column::FieldColumn;
use super::fresh_segment::FreshSegment;
use super::hnsw_segment::{HnswSegment, Precision};
use super::id_list::IdList;
use super::metric::Metric;
use super::segment_codec::{DecodeError, MAX_ID_BYTES, SegmentDecoder};
use super::shard_index::{IngestError, ShardIndex};

/// A shard's index being loaded; see the module docs.
#[derive(Debug)]
pub struct IndexLoader {
    metric: Metric,
    dim: usize,
    ids: IdList,
    fields: FieldColumn,
    /// `ids.len() × dim` prepared vectors, in the order they were pushed.
    vectors: Vec<f32>,
}

impl IndexLoader {
    /// A loader with room for `records` vectors, reserved exactly.
    pub fn new(metric: Metric, dim: usize, records: usize) -> Self {
        Self {
            metric,
            dim,
            ids: IdList::with_capacity(records),
            fields: {
                let mut fields = FieldColumn::default();
                fields.reserve_exact(records);
                fields
            },
            vectors: Vec::with_capacity(records * dim),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a record with a vector (validated and prepared here, as
    /// [`ShardIndex::upsert`] does). Ids must be unique.
    pub fn push(&mut self, id: &str, vector: &[f32], fields: Value) -> Result<(), IngestError> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(IngestError::BadId);
        }
        self.metric.validate(vector, self.dim)?;
        self.metric.prepare_into(vector, &mut self.vectors);
        self.ids.push(id);
        self.fields.push(fields);
        Ok(())
    }

    /// The index of the pushed records and the snapshot's sealed segment,
    /// stored at `precision`. The segment must match the metric and
    /// dimension; a point without its record is an error when the segment
    /// shipped without vectors (they are the records'). The segment's
    /// bytes are freed as soon as they are decoded.
    pub fn finish(
        self,
        segment: Option<Vec<u8>>,
        precision: Precision,
    ) -> Result<ShardIndex, DecodeError> {
        let Some(bytes) = segment else {
            let mut index = ShardIndex::new(self.metric, self.dim);
            index.set_fresh(FreshSegment::from_rows(
                self.dim,
                self.ids.iter().map(str::to_owned).collect(),
                self.fields,
                self.vectors,
            ));
            return Ok(index);
        };
        let mut decoder = SegmentDecoder::new(bytes.len())?;
        decoder.push(&bytes)?;
        // Decoded: free the bytes before the index takes more memory.
        drop(bytes);
        let head = decoder.head().ok_or(DecodeError::Truncated("head"))?;
        if head.metric() != self.metric || head.dim() != self.dim {
            return Err(DecodeError::Malformed(
                "the segment's metric or dimension is not the collection's",
            ));
        }
        if decoder.vectors_from_records() {
            self.finish_sharing(decoder, precision)
        } else {
            let segment = decoder.finish()?;
            Ok(self.finish_beside(segment, precision))
        }
    }

    /// The segment's vectors are the records': the block becomes the graph's.
    fn finish_sharing(
        mut self,
        decoder: SegmentDecoder,
        precision: Precision,
    ) -> Result<ShardIndex, DecodeError> {
        let dim = self.dim;
        let row_of: HashMap<&str, u32> = self
            .ids
            .iter()
            .enumerate()
            .map(|(row, id)| (id, row as u32))
            .collect();
        let empty = IdList::default();
        let points = decoder.head().map_or(&empty, HnswSegment::ids);
        let mut order = Vec::with_capacity(points.len());
        let mut used = vec![false; self.ids.len()];
        for id in points {
            match row_of.get(id) {
                Some(&row) if !used[row as usize] => {
                    used[row as usize] = true;
                    order.push(row);
                }
                Some(_) => return Err(DecodeError::Malformed("a point id repeats")),
                None => return Err(DecodeError::MissingVector(id.to_owned())),
            }
        }
        drop(row_of);

        // Records the graph does not hold go to the fresh segment first,
        // while every row is still where it was pushed.
        let rows = self.ids.len();
        let rest = rows - order.len();
        let mut fresh = FreshSegment::new(dim);
        fresh.reserve_exact(rest);
        for (row, _) in used.iter().enumerate().filter(|(_, used)| !**used) {
            let fields = self.fields.take(row);
            fresh.upsert(
                self.ids.get(row),
                &self.vectors[row * dim..(row + 1) * dim],
                fields,
            );
        }
        // The ids are the segment's now (and the fresh segment's).
        drop(std::mem::take(&mut self.ids));

        // Rows into graph order by swaps: `at[row]` is where a row's vector
        // is now, `holds[pos]` which row is at a position. Positions below
        // `point` are final, so the wanted row is always at or after it.
        let mut at: Vec<u32> = (0..rows as u32).collect();
        let mut holds = at.clone();
        let mut sealed_fields = FieldColumn::default();
        sealed_fields.reserve_exact(order.len());
        for (point, &row) in order.iter().enumerate() {
            let from = at[row as usize] as usize;
            if from != point {
                let (front, back) = self.vectors.split_at_mut(from * dim);
                front[point * dim..(point + 1) * dim].swap_with_slice(&mut back[..dim]);
                let displaced = holds[point];
                holds[point] = row;
                holds[from] = displaced;
                at[row as usize] = point as u32;
                at[displaced as usize] = from as u32;
            }
            sealed_fields.push(self.fields.take(row as usize));
        }
        self.vectors.truncate(order.len() * dim);
        let mut segment = decoder.finish_with_block(self.vectors)?;
        segment.set_precision(precision);
        let mut index = ShardIndex::new(self.metric, dim);
        index.install_sealed(segment, sealed_fields);
        index.set_fresh(fresh);
        Ok(index)
    }

    /// The segment has its own vectors (sealed at an earlier offset): a
    /// record stays in the graph only if its vector is its point's.
    fn finish_beside(mut self, mut segment: HnswSegment, precision: Precision) -> ShardIndex {
        let dim = self.dim;
        let point_of: HashMap<&str, u32> = segment
            .ids()
            .iter()
            .enumerate()
            .map(|(point, id)| (id, point as u32))
            .collect();
        let mut sealed_fields: Vec<Value> = vec![Value::Null; segment.len()];
        let mut live = vec![false; segment.len()];
        let mut fresh_rows = Vec::new();
        for (row, id) in self.ids.iter().enumerate() {
            let vector = &self.vectors[row * dim..(row + 1) * dim];
            match point_of.get(id) {
                Some(&point) if segment.vector(point) == Some(vector) => {
                    live[point as usize] = true;
                    sealed_fields[point as usize] = self.fields.take(row);
                }
                _ => fresh_rows.push(row),
            }
        }
        drop(point_of);
        let mut fresh = FreshSegment::new(dim);
        fresh.reserve_exact(fresh_rows.len());
        for row in fresh_rows {
            let fields = self.fields.take(row);
            fresh.upsert(
                self.ids.get(row),
                &self.vectors[row * dim..(row + 1) * dim],
                fields,
            );
        }
        drop(self.vectors);
        let dead: Vec<String> = segment
            .ids()
            .iter()
            .zip(&live)
            .filter(|(_, live)| !**live)
            .map(|(id, _)| id.to_owned())
            .collect();
        segment.set_precision(precision);
        let mut index = ShardIndex::new(self.metric, dim);
        index.install_sealed(segment, sealed_fields.into_iter().collect());
        for id in &dead {
            index.delete(id);
        }
        index.set_fresh(fresh);
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::hnsw_build::BuildOptions;
    use crate::vector::query::{Hit, Query};
    use crate::vector::test_data;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const DIM: usize = 24;

    /// Records sorted by id, as a snapshot lists them.
    fn records(n: usize) -> Vec<(String, Vec<f32>, Value)> {
        let mut records: Vec<_> = test_data::records(3, n, DIM)
            .into_iter()
            .enumerate()
            .map(|(i, (id, v))| (id, v, json!({"i": i, "even": i % 2 == 0})))
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        records
    }

    fn segment(records: &[(String, Vec<f32>, Value)]) -> HnswSegment {
        let points: Vec<(String, Vec<f32>)> = records
            .iter()
            .map(|(id, v, _)| (id.clone(), Metric::Cosine.prepare(v)))
            .collect();
        HnswSegment::build(Metric::Cosine, DIM, &points, BuildOptions::with_seed(9)).unwrap()
    }

    fn load(records: &[(String, Vec<f32>, Value)], segment: Option<Vec<u8>>) -> ShardIndex {
        let mut loader = IndexLoader::new(Metric::Cosine, DIM, records.len());
        for (id, v, f) in records {
            loader.push(id, v, f.clone()).unwrap();
        }
        loader.finish(segment, Precision::F32).unwrap()
    }

    /// The index the upsert path builds: the segment installed, then every
    /// record upserted and every point without a record deleted.
    fn upserted(records: &[(String, Vec<f32>, Value)], segment: Option<HnswSegment>) -> ShardIndex {
        let mut index = match segment {
            Some(segment) => {
                let ids = segment.ids().clone();
                let mut index = ShardIndex::from_sealed(segment, HashMap::new());
                for id in ids.iter().filter(|id| !records.iter().any(|r| r.0 == *id)) {
                    index.delete(id);
                }
                index
            }
            None => ShardIndex::new(Metric::Cosine, DIM),
        };
        for (id, v, f) in records {
            index.upsert(id, Some(v), f.clone()).unwrap();
        }
        index
    }

    fn answers(index: &ShardIndex) -> Vec<Vec<Hit>> {
        let filter: crate::vector::Filter =
            serde_json::from_value(json!({"eq": {"field": "even", "value": true}})).unwrap();
        test_data::queries(4, 12, DIM)
            .iter()
            .flat_map(|q| {
                let exact = Query::new(q, 7).exact();
                let mut filtered = Query::new(q, 5);
                filtered.filter = Some(&filter);
                [Query::new(q, 7), exact, filtered]
                    .iter()
                    .map(|query| index.search(query).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn same(loaded: &ShardIndex, expected: &ShardIndex) {
        assert_eq!(loaded.len(), expected.len());
        assert_eq!(loaded.fresh_len(), expected.fresh_len());
        assert_eq!(loaded.tombstone_count(), expected.tombstone_count());
        assert_eq!(answers(loaded), answers(expected));
    }

    #[test]
    fn without_a_segment_the_block_is_the_fresh_segment() {
        let records = records(300);
        let loaded = load(&records, None);
        same(&loaded, &upserted(&records, None));
        assert_eq!(loaded.fresh_len(), 300);
    }

    #[test]
    fn a_segment_sharing_the_records_vectors_takes_their_block() {
        let records = records(400);
        // Sealed over 350 of the records; 50 arrived after the seal.
        let sealed: Vec<_> = records
            .iter()
            .filter(|r| !r.0.ends_with('7'))
            .cloned()
            .collect();
        let segment = segment(&sealed);
        let bytes = segment.to_bytes_without_vectors();
        let loaded = load(&records, Some(bytes));
        same(&loaded, &upserted(&records, Some(segment)));
        assert_eq!(loaded.fresh_len(), records.len() - sealed.len());
        for (id, v, _) in &records {
            assert_eq!(
                loaded.vector(id),
                Some(Metric::Cosine.prepare(v).as_slice())
            );
        }
    }

    #[test]
    fn a_segment_with_its_own_vectors_keeps_only_unchanged_records() {
        let mut records = records(400);
        let segment = segment(&records);
        // Since the seal: one record changed, one deleted, one new.
        records[10].1 = test_data::queries(8, 1, DIM).remove(0);
        records.remove(20);
        records.push((
            "zz-new".into(),
            test_data::queries(9, 1, DIM).remove(0),
            json!({}),
        ));
        let loaded = load(&records, Some(segment.to_bytes()));
        same(&loaded, &upserted(&records, Some(segment)));
        assert_eq!((loaded.fresh_len(), loaded.tombstone_count()), (2, 2));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let records = records(50);
        let segment = segment(&records);
        let bytes = segment.to_bytes_without_vectors();
        let mut loader = IndexLoader::new(Metric::Cosine, DIM, 50);
        assert!(loader.push("", &records[0].1, json!({})).is_err());
        assert!(loader.push("a", &[1.0; 3], json!({})).is_err());
        assert!(loader.push("a", &[f32::NAN; DIM], json!({})).is_err());
        assert!(loader.is_empty());
        // A point whose record is missing.
        for (id, v, f) in &records[1..] {
            loader.push(id, v, f.clone()).unwrap();
        }
        assert!(matches!(
            loader.finish(Some(bytes.clone()), Precision::F32),
            Err(DecodeError::MissingVector(_))
        ));
        // Another metric or dimension.
        let loader = IndexLoader::new(Metric::L2, DIM, 0);
        assert!(matches!(
            loader.finish(Some(bytes.clone()), Precision::F32),
            Err(DecodeError::Malformed(_))
        ));
        let loader = IndexLoader::new(Metric::Cosine, DIM, 0);
        assert!(
            loader
                .finish(Some(bytes[..bytes.len() - 1].to_vec()), Precision::F32)
                .is_err()
        );
    }
}
