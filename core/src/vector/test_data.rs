//! Seeded test vectors: clustered like embeddings (a few directions plus
//! noise), so HNSW behaves as it does on real data rather than on uniform
//! noise, where every method's recall collapses in high dimensions.

/// splitmix64: a tiny, well-mixed generator whose output is the same on
/// every target, unlike `rand`'s `SmallRng` (which differs on 32-bit wasm).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `n` records `("r{i}", vector)` of `dim` dimensions around 8 centres.
pub fn records(seed: u64, n: usize, dim: usize) -> Vec<(String, Vec<f32>)> {
    let mut rng = SplitMix(seed);
    let centres: Vec<Vec<f32>> = (0..8)
        .map(|_| (0..dim).map(|_| rng.next_f32()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let v = c.iter().map(|x| x + 0.6 * rng.next_f32()).collect();
            (format!("r{i}"), v)
        })
        .collect()
}

/// Queries from the same distribution.
pub fn queries(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    records(seed ^ 0x5eed, n, dim)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}
