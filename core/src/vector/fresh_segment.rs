//! The fresh segment: records written since the last seal, searched exactly.
//!
//! It stays small (the reseal policy bounds it), so an exact SIMD scan over a
//! contiguous block is both simpler and faster than maintaining a graph: at
//! ~30–60 ns per 384-d vector in wasm, 1,000 records cost 0.03–0.06 ms.
//! Removal swaps the last row into the hole, keeping the block dense.

use std::collections::HashMap;

use serde_json::Value;

use super::metric::Metric;
use super::topk::{Scored, TopK};

#[derive(Clone, Debug, Default)]
pub struct FreshSegment {
    dim: usize,
    ids: Vec<String>,
    fields: Vec<Value>,
    /// `ids.len() × dim` prepared vectors.
    vectors: Vec<f32>,
    slots: HashMap<String, u32>,
}

impl FreshSegment {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
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

    /// Inserts or replaces a record; `vector` must be validated and prepared.
    pub fn upsert(&mut self, id: &str, vector: &[f32], fields: Value) {
        debug_assert_eq!(vector.len(), self.dim);
        match self.slots.get(id) {
            Some(&slot) => {
                let start = slot as usize * self.dim;
                self.vectors[start..start + self.dim].copy_from_slice(vector);
                self.fields[slot as usize] = fields;
            }
            None => {
                self.slots.insert(id.to_string(), self.ids.len() as u32);
                self.ids.push(id.to_string());
                self.fields.push(fields);
                self.vectors.extend_from_slice(vector);
            }
        }
    }

    /// Replaces a record's fields only; false if it is not here.
    pub fn set_fields(&mut self, id: &str, fields: Value) -> bool {
        match self.slots.get(id) {
            Some(&slot) => {
                self.fields[slot as usize] = fields;
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
        self.vectors.truncate(last * self.dim);
        true
    }

    /// Every record as (id, prepared vector, fields), for a reseal.
    pub fn records(&self) -> impl Iterator<Item = (&str, &[f32], &Value)> {
        self.ids
            .iter()
            .zip(self.vectors.chunks_exact(self.dim.max(1)))
            .zip(&self.fields)
            .map(|((id, v), f)| (id.as_str(), v, f))
    }

    pub fn id(&self, slot: u32) -> &str {
        &self.ids[slot as usize]
    }

    pub fn fields(&self, slot: u32) -> &Value {
        &self.fields[slot as usize]
    }

    /// Exact top-k among the slots `accept` lets through; `query` prepared.
    pub fn search(
        &self,
        metric: Metric,
        query: &[f32],
        k: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let mut top = TopK::new(k);
        if self.dim == 0 {
            return Vec::new();
        }
        for (slot, row) in self.vectors.chunks_exact(self.dim).enumerate() {
            let slot = slot as u32;
            if accept(slot) {
                top.push(Scored {
                    distance: metric.distance(query, row),
                    index: slot,
                });
            }
        }
        top.into_sorted_vec()
    }

    pub fn memory_bytes(&self) -> usize {
        4 * self.vectors.len() + self.ids.iter().map(|id| 2 * id.len() + 64).sum::<usize>()
    }
}
