//! The fresh segment: records written since the last seal, searched exactly.
//!
//! It stays small (the reseal policy bounds it), so an exact scan over a
//! contiguous block is both simpler and faster than maintaining a graph. The
//! scan reads int8 codes kept beside the f32 rows and reranks with f32 only
//! where the codes' error bound leaves doubt ([`quantized::exact_top_k`]):
//! exact results for a quarter of the bytes and about half the instructions
//! of an f32 pass. Removal swaps the last row into the hole, keeping the
//! blocks dense.

use std::collections::HashMap;

use serde_json::Value;

use super::field_column::FieldColumn;
use super::metric::Metric;
use super::quantized::{self, QuantizedQuery, QuantizedVectors};
use super::topk::Scored;

/// Rows to add when the segment is full: an eighth of it (at least 64).
///
/// Not the doubling `Vec` would do: after a replica loads a 20k-record
/// shard into its fresh segment, the next write would ask for a 60 MB block
/// beside the 30 MB one, in a wasm heap that never shrinks and an isolate
/// capped at 128 MB. An eighth costs at most eight copies of each row over
/// the segment's life and a transient 1⅛ of it.
fn growth(len: usize) -> usize {
    (len / 8).max(64)
}

#[derive(Clone, Debug, Default)]
pub struct FreshSegment {
    dim: usize,
    ids: Vec<String>,
    fields: FieldColumn,
    /// `ids.len() × dim` prepared vectors.
    vectors: Vec<f32>,
    codes: QuantizedVectors,
    slots: HashMap<String, u32>,
}

impl FreshSegment {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            codes: QuantizedVectors::new(dim),
            ..Self::default()
        }
    }

    /// A segment of `ids.len()` records whose prepared vectors are `vectors`
    /// (`len × dim`, in the same order), taken as the segment's block.
    pub(crate) fn from_rows(
        dim: usize,
        ids: Vec<String>,
        fields: FieldColumn,
        vectors: Vec<f32>,
    ) -> Self {
        debug_assert_eq!(ids.len(), fields.len());
        debug_assert_eq!(ids.len() * dim, vectors.len());
        let codes = QuantizedVectors::from_rows(dim, &vectors);
        let slots = ids
            .iter()
            .enumerate()
            .map(|(slot, id)| (id.clone(), slot as u32))
            .collect();
        Self {
            dim,
            ids,
            fields,
            vectors,
            codes,
            slots,
        }
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

    pub fn contains(&self, id: &str) -> bool {
        self.slots.contains_key(id)
    }

    /// A record's prepared vector.
    pub fn vector(&self, id: &str) -> Option<&[f32]> {
        let start = *self.slots.get(id)? as usize * self.dim;
        self.vectors.get(start..start + self.dim)
    }

    /// Room for `additional` more records, exactly: a replica loading a
    /// known number of records skips the doubling growth, whose abandoned
    /// blocks a wasm heap (which never shrinks) would keep.
    pub fn reserve_exact(&mut self, additional: usize) {
        self.ids.reserve_exact(additional);
        self.fields.reserve_exact(additional);
        self.vectors.reserve_exact(additional * self.dim);
        self.codes.reserve_exact(additional);
        self.slots.reserve(additional);
    }

    /// Inserts or replaces a record; `vector` must be validated and prepared.
    pub fn upsert(&mut self, id: &str, vector: &[f32], fields: Value) {
        debug_assert_eq!(vector.len(), self.dim);
        match self.slots.get(id) {
            Some(&slot) => {
                let start = slot as usize * self.dim;
                self.vectors[start..start + self.dim].copy_from_slice(vector);
                self.codes.set(slot as usize, vector);
                self.fields.set(slot as usize, fields);
            }
            None => {
                if self.vectors.capacity() - self.vectors.len() < self.dim {
                    self.reserve_exact(growth(self.ids.len()));
                }
                self.slots.insert(id.to_string(), self.ids.len() as u32);
                self.ids.push(id.to_string());
                self.fields.push(fields);
                self.vectors.extend_from_slice(vector);
                self.codes.push(vector);
            }
        }
    }

    /// Replaces a record's fields only; false if it is not here.
    pub fn set_fields(&mut self, id: &str, fields: Value) -> bool {
        match self.slots.get(id) {
            Some(&slot) => {
                self.fields.set(slot as usize, fields);
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        let slot = slot as usize;
        let last = self.ids.len() - 1;
        if slot != last {
            let (dim, moved) = (self.dim, self.ids[last].clone());
            self.vectors
                .copy_within(last * dim..(last + 1) * dim, slot * dim);
            self.slots.insert(moved, slot as u32);
        }
        self.ids.swap_remove(slot);
        self.fields.swap_remove(slot);
        self.codes.swap_remove(slot);
        self.vectors.truncate(last * self.dim);
        true
    }

    /// Every record as (id, prepared vector, fields), for a reseal.
    pub fn records(&self) -> impl Iterator<Item = (&str, &[f32], &Value)> {
        self.ids
            .iter()
            .zip(self.vectors.chunks_exact(self.dim.max(1)))
            .enumerate()
            .map(|(slot, (id, v))| (id.as_str(), v, self.fields.get(slot)))
    }

    pub fn id(&self, slot: u32) -> &str {
        &self.ids[slot as usize]
    }

    pub fn fields(&self, slot: u32) -> &Value {
        self.fields.get(slot as usize)
    }

    /// Exact top-k among the slots `accept` lets through; `query` prepared.
    pub fn search(
        &self,
        metric: Metric,
        query: &[f32],
        k: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let dim = self.dim;
        quantized::exact_top_k(
            &self.codes,
            metric,
            &QuantizedQuery::new(query),
            k,
            accept,
            |slot| {
                let start = slot as usize * dim;
                metric.distance(query, &self.vectors[start..start + dim])
            },
        )
    }

    pub fn memory_bytes(&self) -> usize {
        4 * self.vectors.len()
            + self.codes.memory_bytes()
            + self.ids.iter().map(|id| 2 * id.len() + 64).sum::<usize>()
    }
}
