//! Routing a record to its shard.
//!
//! A record's shard must never change: replicas, snapshots and consistency
//! tokens all name shards by number, and a browser computes the shard of a
//! record it writes offline. So the hash is fixed here, byte for byte, rather
//! than borrowed from `std` (whose `Hasher`s are allowed to change between
//! releases and are seeded per process).
//!
//! The algorithm, for every platform and forever:
//!
//! 1. Feed FNV-1a 64 (offset basis `0xcbf29ce484222325`, prime
//!    `0x100000001b3`) the namespace, collection and record id, each as its
//!    byte length (`u32`, little-endian) followed by its UTF-8 bytes. The
//!    length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
//! 2. Finish with MurmurHash3's 64-bit `fmix64`, so that the low bits (the
//!    ones a power-of-two shard count keeps) depend on every input byte.
//! 3. The shard is `hash & (shard_count - 1)`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest shard count a collection may have.
pub const MAX_SHARD_COUNT: u32 = 1024;

/// A collection's shard count: a power of two in `1..=MAX_SHARD_COUNT`, fixed
/// at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ShardCount(u32);

/// A shard's number within its collection, `0..shard_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub u32);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardCountError {
    #[error("shard count {0} is not a power of two between 1 and {MAX_SHARD_COUNT}")]
    Invalid(u32),
}

impl ShardCount {
    pub fn new(count: u32) -> Result<Self, ShardCountError> {
        if count.is_power_of_two() && count <= MAX_SHARD_COUNT {
            Ok(Self(count))
        } else {
            Err(ShardCountError::Invalid(count))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Every shard of a collection with this count, in order.
    pub fn shards(self) -> impl Iterator<Item = ShardId> {
        (0..self.0).map(ShardId)
    }
}

impl TryFrom<u32> for ShardCount {
    type Error = ShardCountError;
    fn try_from(count: u32) -> Result<Self, Self::Error> {
        Self::new(count)
    }
}

impl From<ShardCount> for u32 {
    fn from(count: ShardCount) -> u32 {
        count.0
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The routing hash of a record (steps 1 and 2 of the module docs).
pub fn route_hash(namespace: &str, collection: &str, id: &str) -> u64 {
    let mut hash = Fnv1a64::new();
    for part in [namespace, collection, id] {
        // Names and ids are bounded far below 4 GiB by the limits module; the
        // saturation only keeps this function total.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        hash.write(&len.to_le_bytes());
        hash.write(part.as_bytes());
    }
    fmix64(hash.0)
}

/// The shard that owns record `id` of `namespace/collection`.
pub fn shard_for(namespace: &str, collection: &str, id: &str, count: ShardCount) -> ShardId {
    // `count` is a power of two, so the mask is the modulus; the result is
    // below `count` and so fits a u32.
    ShardId((route_hash(namespace, collection, id) & u64::from(count.0 - 1)) as u32)
}

struct Fnv1a64(u64);

impl Fnv1a64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Golden values, computed independently of this code (a Python transcription
    /// of the module docs). If one of these changes, every deployed replica would
    /// route records to the wrong shard. Never update them; fix the code.
    #[test]
    fn route_hash_is_frozen() {
        assert_eq!(route_hash("", "", ""), 0x1239_8e96_d395_9659);
        assert_eq!(route_hash("acme", "notes", "note-1"), 0x8ddd_9299_6e01_2ad5);
        let count = ShardCount::new(16).unwrap();
        assert_eq!(shard_for("acme", "notes", "note-1", count), ShardId(5));
    }

    #[test]
    fn length_prefixes_separate_fields() {
        assert_ne!(route_hash("ab", "c", "x"), route_hash("a", "bc", "x"));
        assert_ne!(route_hash("a", "", "bc"), route_hash("a", "b", "c"));
    }

    #[test]
    fn shard_counts_are_powers_of_two() {
        for ok in [1, 2, 4, 64, MAX_SHARD_COUNT] {
            assert_eq!(ShardCount::new(ok).map(ShardCount::get), Ok(ok));
        }
        for bad in [0, 3, 6, 100, 2 * MAX_SHARD_COUNT, u32::MAX] {
            assert_eq!(ShardCount::new(bad), Err(ShardCountError::Invalid(bad)));
        }
    }

    #[test]
    fn records_spread_over_shards() {
        let count = ShardCount::new(8).unwrap();
        let mut per_shard = [0u32; 8];
        for i in 0..8_000 {
            let shard = shard_for("tenant", "memories", &format!("m-{i}"), count);
            per_shard[shard.0 as usize] += 1;
        }
        // 1,000 expected per shard; a decent hash stays well within ±15%.
        assert!(
            per_shard.iter().all(|&n| (850..1150).contains(&n)),
            "{per_shard:?}"
        );
    }

    proptest! {
        #[test]
        fn shard_is_in_range_and_nested(ns in ".{0,12}", coll in ".{0,12}", id in ".{0,40}", bits in 0u32..=10) {
            let count = ShardCount::new(1 << bits).unwrap();
            let shard = shard_for(&ns, &coll, &id, count);
            prop_assert!(shard.0 < count.get());
            // Doubling the shard count splits a shard in two, never reshuffles:
            // the record stays in `shard` or moves to `shard + count`.
            if bits < 10 {
                let doubled = shard_for(&ns, &coll, &id, ShardCount::new(2 << bits).unwrap());
                prop_assert!(doubled.0 == shard.0 || doubled.0 == shard.0 + count.get());
            }
        }
    }
}
