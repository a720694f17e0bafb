//! The bounds every input is checked against.
//!
//! Every byte that reaches core comes from somebody else: a browser that
//! may be buggy or hostile, a network that truncates, a disk that rots. Each
//! size therefore has a limit, checked before the work it would cost is done
//! (a frame's length before it is decoded, a batch's length before any change
//! is applied), and each violation is a typed error that a host maps to a 4xx.
//!
//! One `Limits` value is shared by the decoders, the writer's state machine
//! and the outbox, so a browser refuses locally exactly what the writer would
//! refuse remotely.

use thiserror::Error;

/// Size limits. [`Limits::default`] documents the defaults; hosts may lower
/// them (an edge isolate has 128 MB) or raise them for trusted deployments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Records one write batch may touch. Default 500: a batch is applied
    /// atomically while the shard is locked, so it must stay short.
    pub max_batch_ops: usize,
    /// Automerge changes one record may carry in one write. Default 256.
    pub max_changes_per_op: usize,
    /// Bytes of one record in one write or log entry: change bytes plus
    /// materialized fields plus vector. Default 1 MiB.
    pub max_record_bytes: usize,
    /// Bytes of a record's materialized fields as JSON text. Default 256 KiB:
    /// fields are for metadata and text snippets, not blobs.
    pub max_fields_bytes: usize,
    /// Bytes of a saved Automerge document of one record. Default 4 MiB:
    /// history grows with every edit, unlike the materialized fields.
    pub max_doc_bytes: usize,
    /// Bytes (UTF-8) of a record id. Default 256.
    pub max_id_bytes: usize,
    /// Largest vector dimension a collection may declare. Default 4096
    /// (today's large embedding models use up to 3072).
    pub max_dimension: usize,
    /// Bytes of one frame on the wire, checked before decoding starts.
    /// Default 64 MiB, which bounds the largest snapshot of one shard.
    pub max_frame_bytes: usize,
    /// Entries in one log range message. Default 4096.
    pub max_range_entries: usize,
    /// Changes a record may hold while waiting for missing dependencies.
    /// Default 1024: enough for a long offline session, small enough that a
    /// peer sending orphans cannot grow memory without bound.
    pub max_pending_changes: usize,
    /// Local writes an outbox holds before it refuses more. Default 10,000.
    pub max_outbox_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_ops: 500,
            max_changes_per_op: 256,
            max_record_bytes: 1 << 20,
            max_fields_bytes: 256 << 10,
            max_doc_bytes: 4 << 20,
            max_id_bytes: 256,
            max_dimension: 4096,
            max_frame_bytes: 64 << 20,
            max_range_entries: 4096,
            max_pending_changes: 1024,
            max_outbox_ops: 10_000,
        }
    }
}

/// Which limit an input exceeded, with the sizes, so the client can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("batch has {actual} operations, the limit is {limit}")]
    BatchTooLarge { actual: usize, limit: usize },
    #[error("record carries {actual} changes, the limit is {limit}")]
    TooManyChanges { actual: usize, limit: usize },
    #[error("record is {actual} bytes, the limit is {limit}")]
    RecordTooLarge { actual: usize, limit: usize },
    #[error("fields are {actual} bytes of JSON, the limit is {limit}")]
    FieldsTooLarge { actual: usize, limit: usize },
    #[error("record document is {actual} bytes, the limit is {limit}")]
    DocTooLarge { actual: usize, limit: usize },
    #[error("dimension {actual} is above the limit of {limit}")]
    DimensionTooLarge { actual: usize, limit: usize },
    #[error("frame is {actual} bytes, the limit is {limit}")]
    FrameTooLarge { actual: usize, limit: usize },
    #[error("log range has {actual} entries, the limit is {limit}")]
    RangeTooLong { actual: usize, limit: usize },
    #[error("{actual} changes are waiting for dependencies, the limit is {limit}")]
    TooManyPending { actual: usize, limit: usize },
    #[error("outbox holds {actual} writes, the limit is {limit}")]
    OutboxFull { actual: usize, limit: usize },
}

/// `Ok` if `actual <= limit`, else the error built by `error`.
pub(crate) fn check(
    actual: usize,
    limit: usize,
    error: fn(usize, usize) -> LimitError,
) -> Result<(), LimitError> {
    if actual <= limit {
        Ok(())
    } else {
        Err(error(actual, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn check_accepts_the_limit_itself_and_rejects_one_more() {
        let make = |actual, limit| LimitError::BatchTooLarge { actual, limit };
        assert_eq!(check(500, 500, make), Ok(()));
        assert_eq!(
            check(501, 500, make),
            Err(LimitError::BatchTooLarge {
                actual: 501,
                limit: 500
            })
        );
    }

    #[test]
    fn defaults_leave_room_for_a_record_in_a_frame() {
        let limits = Limits::default();
        assert!(limits.max_fields_bytes < limits.max_record_bytes);
        assert!(limits.max_record_bytes < limits.max_frame_bytes);
        assert!(limits.max_dimension * 4 < limits.max_record_bytes);
    }
}
