//! The sealed segment's bytes: what a snapshot carries (as one opaque
//! section) and what a replica loads without rebuilding the graph.
//!
//! Little-endian throughout:
//!
//! ```text
//! prefix   magic "TMHS" · version u16 · flags u16 · head_len u64
//! head     metric u8 · dim u32 · len u32 · seed u64 · ef_construction u32 · layer_count u32
//!          per layer: point count u32 · offsets (count + 1) × u32 · link count u32 · links × u32
//!          per point: id length u16 · id bytes (UTF-8)
//!          if flags & INT8: scales, squared norms, L1 norms (len × f32 each) · codes len × dim × i8
//! vectors  if flags & F32: len × dim × f32, in graph order
//! ```
//!
//! A segment that ships inside a snapshot next to the records it indexes may
//! leave its vectors out (flag `F32_RECORDS` instead of `F32`): they are the
//! records' own vectors, which the snapshot already carries, and
//! [`HnswSegment::from_bytes_with_vectors`] takes them from there by id.
//! This halves a snapshot's bytes, and what a replica verifies, hashes and
//! copies on bootstrap.
//!
//! The vectors come last and outside the head so that [`SegmentDecoder`] can
//! stream them straight into their final allocation: a replica loading a
//! 30 MB segment from a chunked source holds the head plus one chunk in
//! transit, not a second copy of the segment. Bytes are untrusted: every
//! count is checked against the declared total length before anything is
//! allocated, every link must point inside its layer, every float must be
//! finite, and every failure is a [`DecodeError`], never a panic.

use thiserror::Error;

use super::hnsw_segment::{Adjacency, HnswSegment};
use super::id_list::IdList;
use super::metric::Metric;
use super::quantized::QuantizedVectors;

const MAGIC: &[u8; 4] = b"TMHS";
const VERSION: u16 = 1;
const FLAG_F32: u16 = 1;
const FLAG_INT8: u16 = 2;
const FLAG_F32_RECORDS: u16 = 4;
const PREFIX_LEN: usize = 16;

/// Longest record id, in bytes (also checked at ingest).
pub const MAX_ID_BYTES: usize = 512;
/// Largest dimension a segment may declare.
pub const MAX_DIM: usize = 4096;
/// Most layers a segment may declare (instant-distance makes ~log_32(n)).
pub const MAX_LAYERS: usize = 32;
/// Largest encoded segment: a wasm32 isolate cannot address more.
pub const MAX_SEGMENT_BYTES: usize = 1 << 31;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("not a Tidemark HNSW segment (bad magic)")]
    BadMagic,
    #[error("segment format version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("segment is {0} bytes, more than the {MAX_SEGMENT_BYTES} a replica accepts")]
    TooLarge(usize),
    #[error("segment ends early: {0}")]
    Truncated(&'static str),
    #[error("segment declares {declared} bytes but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("segment is malformed: {0}")]
    Malformed(&'static str),
    #[error("the segment's vectors ship with its records; load it with them")]
    VectorsElsewhere,
    #[error("point {0:?} has no vector of the segment's dimension among the records")]
    MissingVector(String),
}

impl HnswSegment {
    /// The segment's bytes (see the module docs for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(true)
    }

    /// The segment's bytes without its f32 vectors, for shipping next to
    /// records that carry exactly those vectors (a snapshot): load it with
    /// [`HnswSegment::from_bytes_with_vectors`]. A segment that keeps only
    /// int8 codes has no vectors to leave out and encodes as with
    /// [`HnswSegment::to_bytes`].
    pub fn to_bytes_without_vectors(&self) -> Vec<u8> {
        self.encode(false)
    }

    fn encode(&self, with_vectors: bool) -> Vec<u8> {
        let mut head = Vec::new();
        head.push(metric_code(self.metric));
        put_u32(&mut head, self.dim as u32);
        put_u32(&mut head, self.len() as u32);
        head.extend(self.seed.to_le_bytes());
        put_u32(&mut head, self.ef_construction);
        put_u32(&mut head, self.layers.len() as u32);
        for layer in &self.layers {
            put_u32(&mut head, layer.len() as u32);
            layer.offsets.iter().for_each(|&o| put_u32(&mut head, o));
            put_u32(&mut head, layer.neighbors.len() as u32);
            layer.neighbors.iter().for_each(|&p| put_u32(&mut head, p));
        }
        for id in &self.ids {
            head.extend((id.len() as u16).to_le_bytes());
            head.extend(id.as_bytes());
        }
        let mut flags = 0;
        if let Some(q) = &self.quantized {
            flags |= FLAG_INT8;
            q.scales().iter().for_each(|x| head.extend(x.to_le_bytes()));
            q.norms_squared()
                .iter()
                .for_each(|x| head.extend(x.to_le_bytes()));
            q.l1_norms()
                .iter()
                .for_each(|x| head.extend(x.to_le_bytes()));
            head.extend(q.codes().iter().map(|&c| c as u8));
        }
        let vectors: &[f32] = if !self.vectors.is_empty() || self.quantized.is_none() {
            if with_vectors {
                flags |= FLAG_F32;
                &self.vectors
            } else {
                flags |= FLAG_F32_RECORDS;
                &[]
            }
        } else {
            &[]
        };
        let mut out = Vec::with_capacity(PREFIX_LEN + head.len() + 4 * vectors.len());
        out.extend(MAGIC);
        out.extend(VERSION.to_le_bytes());
        out.extend(flags.to_le_bytes());
        out.extend((head.len() as u64).to_le_bytes());
        out.extend(head);
        for x in vectors {
            out.extend(x.to_le_bytes());
        }
        out
    }

    /// Loads a segment from [`HnswSegment::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut decoder = SegmentDecoder::new(bytes.len())?;
        decoder.push(bytes)?;
        decoder.finish()
    }

    /// Loads a segment from either encoding; one without its vectors takes
    /// each point's vector from `vector_of(id)` (the records it shipped
    /// with), which must have the segment's dimension and be finite.
    pub fn from_bytes_with_vectors<'v>(
        bytes: &[u8],
        vector_of: impl FnMut(&str) -> Option<&'v [f32]>,
    ) -> Result<Self, DecodeError> {
        let mut decoder = SegmentDecoder::new(bytes.len())?;
        decoder.push(bytes)?;
        decoder.finish_with_vectors(vector_of)
    }
}

/// Where a segment shipped without its vectors finds them.
enum Records<'a, 'v> {
    /// Nowhere: the segment must carry its own.
    None,
    /// By record id.
    Lookup(&'a mut dyn FnMut(&str) -> Option<&'v [f32]>),
    /// One block, already in graph order.
    Block(Vec<f32>),
}

/// Decodes a segment from chunks as they arrive, writing the vectors into
/// their final allocation. The total length comes from the enclosing frame
/// (the snapshot section's length), so nothing is allocated beyond it.
#[derive(Debug)]
pub struct SegmentDecoder {
    declared: usize,
    received: usize,
    buffer: Vec<u8>,
    state: State,
}

#[derive(Debug)]
enum State {
    Prefix,
    Head {
        flags: u16,
        head_len: usize,
    },
    Vectors {
        segment: Box<HnswSegment>,
        carry: Vec<u8>,
        expected: usize,
        from_records: bool,
    },
}

impl SegmentDecoder {
    pub fn new(total_len: usize) -> Result<Self, DecodeError> {
        if total_len > MAX_SEGMENT_BYTES {
            return Err(DecodeError::TooLarge(total_len));
        }
        Ok(Self {
            declared: total_len,
            received: 0,
            buffer: Vec::new(),
            state: State::Prefix,
        })
    }

    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), DecodeError> {
        if self.received + chunk.len() > self.declared {
            return Err(DecodeError::LengthMismatch {
                declared: self.declared,
                actual: self.received + chunk.len(),
            });
        }
        self.received += chunk.len();
        while !chunk.is_empty() {
            match &mut self.state {
                State::Head { flags, head_len }
                    if self.buffer.len() == PREFIX_LEN && chunk.len() >= *head_len =>
                {
                    // The whole head is in this chunk: read it in place
                    // rather than through a copy (megabytes for a large
                    // graph, in a heap that never shrinks).
                    let (flags, head_len) = (*flags, *head_len);
                    self.take_head(flags, head_len, &chunk[..head_len])?;
                    chunk = &chunk[head_len..];
                }
                State::Prefix | State::Head { .. } => {
                    let wanted = match self.state {
                        State::Head { head_len, .. } => PREFIX_LEN + head_len,
                        _ => PREFIX_LEN,
                    };
                    let take = (wanted - self.buffer.len()).min(chunk.len());
                    self.buffer.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if self.buffer.len() == wanted {
                        self.advance()?;
                    }
                }
                // `push` never accepts more than the declared length, which
                // the head made equal to the vectors' size: no overflow here.
                State::Vectors { segment, carry, .. } => {
                    if !carry.is_empty() {
                        let take = (4 - carry.len()).min(chunk.len());
                        carry.extend_from_slice(&chunk[..take]);
                        chunk = &chunk[take..];
                        if carry.len() == 4 {
                            segment
                                .vectors
                                .push(f32::from_le_bytes([carry[0], carry[1], carry[2], carry[3]]));
                            carry.clear();
                        }
                    }
                    let whole = chunk.len() - chunk.len() % 4;
                    segment.vectors.extend(
                        chunk[..whole]
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                    carry.extend_from_slice(&chunk[whole..]);
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    /// Moves past a complete prefix or head held in `buffer`.
    fn advance(&mut self) -> Result<(), DecodeError> {
        match self.state {
            State::Prefix => {
                let b = &self.buffer;
                if &b[..4] != MAGIC {
                    return Err(DecodeError::BadMagic);
                }
                let version = u16::from_le_bytes([b[4], b[5]]);
                if version != VERSION {
                    return Err(DecodeError::UnsupportedVersion(version));
                }
                let flags = u16::from_le_bytes([b[6], b[7]]);
                if flags & !(FLAG_F32 | FLAG_INT8 | FLAG_F32_RECORDS) != 0
                    || flags == 0
                    || flags & (FLAG_F32 | FLAG_F32_RECORDS) == FLAG_F32 | FLAG_F32_RECORDS
                {
                    return Err(DecodeError::Malformed("unknown storage flags"));
                }
                let head_len = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
                if head_len > (self.declared - PREFIX_LEN) as u64 {
                    return Err(DecodeError::Truncated("head"));
                }
                self.state = State::Head {
                    flags,
                    head_len: head_len as usize,
                };
                if head_len == 0 {
                    self.advance()?;
                }
            }
            State::Head { flags, head_len } => {
                let buffer = std::mem::take(&mut self.buffer);
                self.take_head(flags, head_len, &buffer[PREFIX_LEN..])?;
            }
            State::Vectors { .. } => {}
        }
        Ok(())
    }

    /// Reads the head (`head_len` bytes after the prefix) and sets up the
    /// vectors' allocation.
    fn take_head(&mut self, flags: u16, head_len: usize, head: &[u8]) -> Result<(), DecodeError> {
        let mut reader = Reader(head);
        let mut segment = read_head(&mut reader, flags)?;
        if !reader.0.is_empty() {
            return Err(DecodeError::Malformed("bytes after the head"));
        }
        let expected = if flags & FLAG_F32 != 0 {
            segment.len() * segment.dim
        } else {
            0
        };
        // `len × dim` fits: `read_head` bounded it by the head's size.
        let total = expected
            .checked_mul(4)
            .and_then(|v| v.checked_add(PREFIX_LEN + head_len))
            .ok_or(DecodeError::Malformed("vector section size"))?;
        if total != self.declared {
            return Err(DecodeError::LengthMismatch {
                declared: self.declared,
                actual: total,
            });
        }
        segment.vectors = Vec::with_capacity(expected);
        self.state = State::Vectors {
            segment: Box::new(segment),
            carry: Vec::new(),
            expected,
            from_records: flags & FLAG_F32_RECORDS != 0,
        };
        self.buffer = Vec::new();
        Ok(())
    }

    /// The segment's head, once it has arrived: metric, dimension and point
    /// ids (graph order), before the vectors.
    pub fn head(&self) -> Option<&HnswSegment> {
        match &self.state {
            State::Vectors { segment, .. } => Some(segment),
            _ => None,
        }
    }

    /// Whether the segment was encoded without its vectors (they ship with
    /// the records; see [`HnswSegment::from_bytes_with_vectors`]).
    pub fn vectors_from_records(&self) -> bool {
        matches!(
            self.state,
            State::Vectors {
                from_records: true,
                ..
            }
        )
    }

    /// The segment, once every declared byte has arrived.
    pub fn finish(self) -> Result<HnswSegment, DecodeError> {
        self.finish_inner(Records::None)
    }

    /// The segment, taking its vectors from `vector_of` if it was encoded
    /// without them (see [`HnswSegment::from_bytes_with_vectors`]).
    pub fn finish_with_vectors<'v>(
        self,
        mut vector_of: impl FnMut(&str) -> Option<&'v [f32]>,
    ) -> Result<HnswSegment, DecodeError> {
        self.finish_inner(Records::Lookup(&mut vector_of))
    }

    /// The segment of one encoded without its vectors, taking `vectors` as
    /// its block: `len × dim` prepared, finite components in graph order
    /// (a loader that gathered the records' vectors into one block and put
    /// them in graph order hands it over instead of a copy).
    pub fn finish_with_block(self, vectors: Vec<f32>) -> Result<HnswSegment, DecodeError> {
        self.finish_inner(Records::Block(vectors))
    }

    fn finish_inner(self, records: Records<'_, '_>) -> Result<HnswSegment, DecodeError> {
        if self.received != self.declared {
            return Err(DecodeError::Truncated("segment"));
        }
        match self.state {
            State::Vectors {
                mut segment,
                carry,
                expected,
                from_records,
            } => {
                if !carry.is_empty() || segment.vectors.len() != expected {
                    return Err(DecodeError::Truncated("vectors"));
                }
                if segment.vectors.iter().any(|x| !x.is_finite()) {
                    return Err(DecodeError::Malformed("a vector component is not finite"));
                }
                if !from_records {
                    return match records {
                        Records::Block(_) => Err(DecodeError::Malformed(
                            "the segment carries its own vectors",
                        )),
                        _ => Ok(*segment),
                    };
                }
                let dim = segment.dim;
                segment.vectors = match records {
                    Records::None => return Err(DecodeError::VectorsElsewhere),
                    Records::Lookup(vector_of) => {
                        let mut vectors = Vec::with_capacity(segment.len() * dim);
                        for id in segment.ids.iter() {
                            match vector_of(id) {
                                Some(v) if v.len() == dim && v.iter().all(|x| x.is_finite()) => {
                                    vectors.extend_from_slice(v);
                                }
                                _ => return Err(DecodeError::MissingVector(id.to_owned())),
                            }
                        }
                        vectors
                    }
                    Records::Block(vectors) => {
                        if vectors.len() != segment.len() * dim {
                            return Err(DecodeError::Malformed(
                                "the vector block does not match the points",
                            ));
                        }
                        if vectors.iter().any(|x| !x.is_finite()) {
                            return Err(DecodeError::Malformed("a vector component is not finite"));
                        }
                        vectors
                    }
                };
                Ok(*segment)
            }
            _ => Err(DecodeError::Truncated("head")),
        }
    }
}

fn read_head(r: &mut Reader<'_>, flags: u16) -> Result<HnswSegment, DecodeError> {
    let metric = match r.u8()? {
        0 => Metric::Cosine,
        1 => Metric::Dot,
        2 => Metric::L2,
        _ => return Err(DecodeError::Malformed("unknown metric")),
    };
    let dim = r.u32()? as usize;
    let len = r.u32()? as usize;
    if dim == 0 || dim > MAX_DIM {
        return Err(DecodeError::Malformed("dimension out of range"));
    }
    // Every point costs at least 7 head bytes (an offset, an id): bound the
    // counts by the bytes actually present before any allocation.
    if len > r.0.len() / 7
        || len
            .checked_mul(dim)
            .is_none_or(|v| v > MAX_SEGMENT_BYTES / 4)
    {
        return Err(DecodeError::Truncated("points"));
    }
    let seed = r.u64()?;
    let ef_construction = r.u32()?;
    let layer_count = r.u32()? as usize;
    if layer_count > MAX_LAYERS || (layer_count == 0) != (len == 0) {
        return Err(DecodeError::Malformed("layer count"));
    }
    let mut layers = Vec::with_capacity(layer_count);
    for level in 0..layer_count {
        let points = r.u32()? as usize;
        let limit = layers.last().map_or(len, Adjacency::len);
        if (level == 0 && points != len) || points > limit || points == 0 {
            return Err(DecodeError::Malformed("layer size"));
        }
        let offsets = r.u32s(points + 1, "layer offsets")?;
        let links = r.u32()? as usize;
        if offsets[0] != 0
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets[points] as usize != links
        {
            return Err(DecodeError::Malformed("layer offsets"));
        }
        let neighbors = r.u32s(links, "layer links")?;
        if neighbors.iter().any(|&p| p as usize >= points) {
            return Err(DecodeError::Malformed("a link points outside its layer"));
        }
        layers.push(Adjacency { offsets, neighbors });
    }
    let mut ids = IdList::with_capacity(len);
    for _ in 0..len {
        let n = r.u16()? as usize;
        if n == 0 || n > MAX_ID_BYTES {
            return Err(DecodeError::Malformed("record id length"));
        }
        let bytes = r.take(n, "record id")?;
        let id = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::Malformed("record id is not UTF-8"))?;
        ids.push(id);
    }
    ids.shrink_to_fit();
    let quantized = if flags & FLAG_INT8 != 0 {
        let scales = r.f32s(len, "int8 scales")?;
        let norms = r.f32s(len, "int8 norms")?;
        let l1_norms = r.f32s(len, "int8 L1 norms")?;
        let codes: Vec<i8> = r
            .take(len * dim, "int8 codes")?
            .iter()
            .map(|&b| b as i8)
            .collect();
        if codes.contains(&i8::MIN) {
            return Err(DecodeError::Malformed("int8 code -128"));
        }
        Some(QuantizedVectors::from_parts(
            dim, codes, scales, norms, l1_norms,
        ))
    } else {
        None
    };
    Ok(HnswSegment {
        metric,
        dim,
        seed,
        ef_construction,
        ids,
        vectors: Vec::new(),
        quantized,
        layers,
    })
}

fn metric_code(metric: Metric) -> u8 {
    match metric {
        Metric::Cosine => 0,
        Metric::Dot => 1,
        Metric::L2 => 2,
    }
}

fn put_u32(out: &mut Vec<u8>, x: u32) {
    out.extend(x.to_le_bytes());
}

/// A cursor over the head; every read is length-checked first.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1, "head")?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2, "head")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4, "head")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8, "head")?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn u32s(&mut self, n: usize, what: &'static str) -> Result<Vec<u32>, DecodeError> {
        let bytes = self.take(n.checked_mul(4).ok_or(DecodeError::Truncated(what))?, what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn f32s(&mut self, n: usize, what: &'static str) -> Result<Vec<f32>, DecodeError> {
        let values: Vec<f32> = self
            .u32s(n, what)?
            .into_iter()
            .map(f32::from_bits)
            .collect();
        if values.iter().any(|x| !x.is_finite()) {
            return Err(DecodeError::Malformed("a non-finite float"));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::hnsw_build::BuildOptions;
    use crate::vector::hnsw_segment::{Precision, SearchParams};
    use crate::vector::test_data::{SplitMix, records};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn segment(n: usize, dim: usize) -> HnswSegment {
        HnswSegment::build(
            Metric::Cosine,
            dim,
            &records(9, n, dim),
            BuildOptions::with_seed(3),
        )
        .unwrap()
    }

    #[test]
    fn round_trips_in_every_precision() {
        for precision in [Precision::F32, Precision::Int8Rerank, Precision::Int8] {
            let mut s = segment(200, 16);
            s.set_precision(precision);
            let back = HnswSegment::from_bytes(&s.to_bytes()).unwrap();
            assert_eq!(back, s, "{precision:?}");
        }
        let empty = HnswSegment::build(Metric::Dot, 3, &[], BuildOptions::with_seed(0)).unwrap();
        assert_eq!(HnswSegment::from_bytes(&empty.to_bytes()).unwrap(), empty);
    }

    #[test]
    fn streams_in_chunks_of_any_size() {
        let s = segment(150, 16);
        let bytes = s.to_bytes();
        let mut rng = SplitMix(5);
        for _ in 0..20 {
            let mut decoder = SegmentDecoder::new(bytes.len()).unwrap();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = (1 + rng.next_u64() % 700) as usize;
                let (chunk, tail) = rest.split_at(n.min(rest.len()));
                decoder.push(chunk).unwrap();
                rest = tail;
            }
            assert_eq!(decoder.finish().unwrap(), s);
        }
    }

    #[test]
    fn leaves_its_vectors_to_the_records_it_ships_with() {
        let records = records(4, 120, 16);
        let s = HnswSegment::build(Metric::L2, 16, &records, BuildOptions::with_seed(3)).unwrap();
        let bytes = s.to_bytes_without_vectors();
        assert_eq!(bytes.len(), s.to_bytes().len() - 4 * 120 * 16);
        let lookup = |id: &str| {
            records
                .iter()
                .find(|(rid, _)| rid == id)
                .map(|(_, v)| v.as_slice())
        };
        assert_eq!(
            HnswSegment::from_bytes_with_vectors(&bytes, lookup).unwrap(),
            s
        );
        // A full segment ignores the lookup.
        assert_eq!(
            HnswSegment::from_bytes_with_vectors(&s.to_bytes(), |_| None).unwrap(),
            s
        );
        assert_eq!(
            HnswSegment::from_bytes(&bytes),
            Err(DecodeError::VectorsElsewhere)
        );
        assert!(matches!(
            HnswSegment::from_bytes_with_vectors(&bytes, |id| (id != records[7].0).then(|| lookup(id)).flatten()),
            Err(DecodeError::MissingVector(id)) if id == records[7].0
        ));
        let short = [0.5f32; 15];
        assert!(matches!(
            HnswSegment::from_bytes_with_vectors(&bytes, |_| Some(&short[..])),
            Err(DecodeError::MissingVector(_))
        ));
        let nan = [f32::NAN; 16];
        assert!(matches!(
            HnswSegment::from_bytes_with_vectors(&bytes, |_| Some(&nan[..])),
            Err(DecodeError::MissingVector(_))
        ));
        for len in 0..bytes.len() {
            assert!(HnswSegment::from_bytes_with_vectors(&bytes[..len], lookup).is_err());
        }
        // int8 only: nothing to leave out.
        let mut int8 = s.clone();
        int8.set_precision(Precision::Int8);
        assert_eq!(int8.to_bytes_without_vectors(), int8.to_bytes());
    }

    /// A corpus of bad inputs: every one must be a typed error, never a panic.
    #[test]
    fn bad_bytes_are_typed_errors() {
        let good = segment(40, 8).to_bytes();
        assert_eq!(
            HnswSegment::from_bytes(&[]),
            Err(DecodeError::Truncated("head"))
        );
        assert_eq!(
            HnswSegment::from_bytes(b"NOPE\x01\x00\x01\x00\0\0\0\0\0\0\0\0"),
            Err(DecodeError::BadMagic)
        );
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(
            HnswSegment::from_bytes(&v2),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            SegmentDecoder::new(MAX_SEGMENT_BYTES + 1),
            Err(DecodeError::TooLarge(_))
        ));
        // Every truncation.
        for len in 0..good.len() {
            assert!(
                HnswSegment::from_bytes(&good[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        // Trailing garbage.
        let mut long = good.clone();
        long.push(0);
        assert!(HnswSegment::from_bytes(&long).is_err());
        // A head length past the end.
        let mut head = good.clone();
        head[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            HnswSegment::from_bytes(&head),
            Err(DecodeError::Truncated("head"))
        );
        // A NaN among the vectors.
        let mut nan = good.clone();
        let at = nan.len() - 4;
        nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(matches!(
            HnswSegment::from_bytes(&nan),
            Err(DecodeError::Malformed(_))
        ));
    }

    /// Flipping any byte either fails to decode or decodes into a segment that
    /// can be searched without panicking (links stay inside their layers).
    #[test]
    fn corrupted_bytes_never_panic() {
        let good = segment(30, 4).to_bytes();
        let query = Metric::Cosine.prepare(&[1.0, 0.5, -0.5, 0.25]);
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                if let Ok(s) = HnswSegment::from_bytes(&bad) {
                    let _ = s.search(&query, SearchParams { k: 5, ef: 10 }, |_| true);
                    let _ = s.scan(&query, 5, |_| true);
                }
            }
        }
    }

    /// A claimed length larger than the bytes is refused before allocating.
    #[test]
    fn counts_are_bounded_by_the_bytes_present() {
        let mut bytes = segment(10, 4).to_bytes();
        // `len` sits after the metric byte and the dimension in the head.
        let at = PREFIX_LEN + 1 + 4;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            HnswSegment::from_bytes(&bytes),
            Err(DecodeError::Truncated("points"))
        );
    }
}
