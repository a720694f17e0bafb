//! Scored candidates and a bounded top-k, shared by every segment.
//!
//! Order is total and deterministic: by distance (`f32::total_cmp`; validated
//! vectors never produce NaN), then by the point's index. The tie-break is
//! what makes two builds of the same segment (native and wasm) return the
//! same ids in the same order even when distances tie exactly.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A point of a segment and its distance to the query (smaller is closer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub distance: f32,
    pub index: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `k` closest points seen so far: a max-heap whose top is the current
/// worst, so a candidate that is not better costs one comparison.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// The distance a candidate must beat to enter (`+∞` until full).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap.peek().map_or(f32::INFINITY, |s| s.distance)
        } else {
            f32::INFINITY
        }
    }

    /// The current worst member, if full.
    pub fn worst(&self) -> Option<Scored> {
        if self.is_full() {
            self.heap.peek().copied()
        } else {
            None
        }
    }

    /// Offers a candidate; returns whether it was kept.
    #[inline]
    pub fn push(&mut self, candidate: Scored) -> bool {
        if self.k == 0 {
            return false;
        }
        if self.heap.len() < self.k {
            self.heap.push(candidate);
            return true;
        }
        match self.heap.peek() {
            Some(worst) if candidate < *worst => {
                self.heap.pop();
                self.heap.push(candidate);
                true
            }
            _ => false,
        }
    }

    /// Best first.
    pub fn into_sorted_vec(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    proptest! {
        #[test]
        fn keeps_the_k_smallest(distances in prop::collection::vec(-10.0f32..10.0, 0..200), k in 0usize..20) {
            let mut top = TopK::new(k);
            for (i, &d) in distances.iter().enumerate() {
                top.push(Scored { distance: d, index: i as u32 });
            }
            let mut all: Vec<Scored> = distances
                .iter()
                .enumerate()
                .map(|(i, &d)| Scored { distance: d, index: i as u32 })
                .collect();
            all.sort();
            all.truncate(k);
            prop_assert_eq!(top.into_sorted_vec(), all);
        }
    }

    #[test]
    fn ties_break_by_index() {
        let mut top = TopK::new(2);
        for index in [7, 3, 5] {
            top.push(Scored {
                distance: 1.0,
                index,
            });
        }
        let kept: Vec<u32> = top.into_sorted_vec().iter().map(|s| s.index).collect();
        assert_eq!(kept, vec![3, 5]);
    }
}
