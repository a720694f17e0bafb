//! What reading a snapshot costs in memory, measured by the allocator: the
//! stream holds one chunk and one record, never the frame. (Its own test
//! binary, so no other test allocates while it measures.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;
use tidemark_core::limits::Limits;
use tidemark_core::log::Offset;
use tidemark_core::model::{CollectionKey, CollectionName, Fields, Namespace, RecordId};
use tidemark_core::shard::ShardId;
use tidemark_core::snapshot::{DocsSection, Snapshot, SnapshotRecord};
use tidemark_core::snapshot_stream::{SnapshotHead, SnapshotSink, SnapshotStream};
use tidemark_core::wire::{self, DecodeError, Message};
use tidemark_core::{SigningKey, VerifyingKey};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts what it is given and keeps nothing.
#[derive(Default)]
struct Count {
    records: usize,
    components: usize,
}

impl SnapshotSink for Count {
    fn head(&mut self, _: &SnapshotHead) -> Result<(), DecodeError> {
        Ok(())
    }

    fn record(
        &mut self,
        _: RecordId,
        _: Fields,
        vector: Option<&[f32]>,
    ) -> Result<(), DecodeError> {
        self.records += 1;
        self.components += vector.map_or(0, <[f32]>::len);
        Ok(())
    }

    fn wants_docs(&self) -> bool {
        false
    }
}

#[test]
fn streaming_a_snapshot_holds_a_chunk_not_the_frame() {
    const RECORDS: usize = 4000;
    const DIM: usize = 384;
    const CHUNK: usize = 64 << 10;
    let limits = Limits::default();
    let key = CollectionKey::new(
        Namespace::new("acme").unwrap(),
        CollectionName::new("notes").unwrap(),
    );
    let ids: Vec<RecordId> = (0..RECORDS)
        .map(|i| RecordId::new(format!("r{i:05}"), &limits).unwrap())
        .collect();
    let snapshot = Snapshot {
        collection: key,
        shard: ShardId(0),
        offset: Offset(RECORDS as u64),
        records: ids
            .iter()
            .enumerate()
            .map(|(i, id)| SnapshotRecord {
                id: id.clone(),
                fields: match json!({"row": i}) {
                    serde_json::Value::Object(map) => map,
                    _ => unreachable!(),
                },
                vector: Some(vec![0.5; DIM]),
            })
            .collect(),
        docs: DocsSection::encode(ids.iter().map(|id| (id, vec![7; 200]))),
        index_segment: Some(vec![1; 1 << 20]),
    };
    let key = SigningKey::from_bytes(&[7; 32]);
    let writer: VerifyingKey = key.verifying_key();
    let frame = wire::encode_signed(&Message::Snapshot(snapshot), &key);
    assert!(frame.len() > 7 << 20, "a frame of several megabytes");

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut stream = SnapshotStream::new(writer, limits);
    let mut sink = Count::default();
    for chunk in frame.chunks(CHUNK) {
        stream.push(chunk, &mut sink).unwrap();
    }
    let (head, tail) = stream.finish().unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;

    assert_eq!((head.records, sink.records), (RECORDS, RECORDS));
    assert_eq!(sink.components, RECORDS * DIM);
    assert!(tail.docs.is_empty(), "the sink did not want the documents");
    // The index segment (1 MB) is kept; beyond it, about one chunk in
    // transit and one record's buffers.
    let segment = tail.index_segment.as_ref().map_or(0, Vec::len);
    let overhead = peak - segment;
    assert!(
        overhead < 3 * CHUNK,
        "streaming {} bytes peaked {overhead} bytes above the segment",
        frame.len()
    );
}
