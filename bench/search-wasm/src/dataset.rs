//! The shared dataset's layout (see its README): `base.f32` and `queries.f32`
//! are row-major little-endian f32, `gt.i32` holds each query's exact top-10
//! base rows, best first. Records are keyed by their row number as a string.

/// Row-major f32 values from little-endian bytes.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Row-major i32 values from little-endian bytes.
pub fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Recall@k of `found` (rows) against `truth` (the first k rows count).
pub fn recall(found: &[u32], truth: &[i32], k: usize) -> f64 {
    let truth = &truth[..k.min(truth.len())];
    let hits = found
        .iter()
        .take(k)
        .filter(|&&row| truth.contains(&(row as i32)))
        .count();
    hits as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_counts_recall() {
        assert_eq!(f32s(&1.5f32.to_le_bytes()), vec![1.5]);
        assert_eq!(i32s(&(-3i32).to_le_bytes()), vec![-3]);
        assert_eq!(recall(&[1, 2, 9], &[2, 1, 3], 3), 2.0 / 3.0);
    }
}
