//! One sync pass of one collection, and the retry schedule between passes.
//!
//! A pass pushes the outbox (oldest first; re-sending is safe because the
//! writer knows changes by hash), then pulls every shard from its tidemark
//! to the writer's head: from a snapshot when the client is new or far
//! behind, then log ranges. Everything received is verified with the
//! writer's key before it touches the replica, and a range or snapshot that
//! fails verification or does not fit is refused whole, so a bad answer
//! leaves the replica as it was and ends the pass with an error. Settled
//! writes leave the outbox, and the replica shards and outbox are persisted
//! in one store batch.
//!
//! The pass holds no borrow of the collection across an `await`: each step
//! reads or updates it synchronously between requests.

use std::cell::RefCell;

use tidemark_core::VerifyingKey;
use tidemark_core::log::Offset;
use tidemark_core::replica::Progress;
use tidemark_core::shard::ShardId;
use tidemark_core::snapshot_stream::SnapshotStream;
use tidemark_core::wire::{self, Message};

use crate::error::SdkError;
use crate::local::LocalCollection;
use crate::store::Store;
use crate::transport::Transport;

/// Writes per pushed batch (the writer's limit is 500; smaller batches keep
/// one refused write from holding back many).
pub const PUSH_BATCH_OPS: usize = 100;

/// A shard this many entries behind bootstraps from a snapshot instead of
/// replaying the log (a new client always does).
pub const SNAPSHOT_AFTER_ENTRIES: u64 = 4096;

/// Something a pass reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum SyncEvent {
    /// A shard moved towards the writer's head: `done` of `total` entries
    /// since the pass started on it.
    Progress {
        shard: ShardId,
        phase: Phase,
        done: u64,
        total: u64,
    },
    /// Records changed by data from the writer.
    Changed { ids: Vec<String> },
    /// The writer refused a local write for good; it left the outbox.
    Rejected { id: String, error: SdkError },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Loading a snapshot into an empty (or far behind) shard.
    Bootstrap,
    /// Applying log ranges.
    CatchUp,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Bootstrap => "bootstrap",
            Phase::CatchUp => "catchup",
        }
    }
}

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Writes newly acknowledged by the writer.
    pub acknowledged: usize,
    /// Log entries applied (snapshots count their offset gain).
    pub applied: u64,
    /// Writes that left the outbox because the replica caught up.
    pub settled: usize,
}

pub struct SyncPass<'a> {
    pub transport: &'a dyn Transport,
    pub store: &'a dyn Store,
    pub writer: &'a VerifyingKey,
    pub emit: &'a dyn Fn(SyncEvent),
}

impl SyncPass<'_> {
    pub async fn run(&self, local: &RefCell<LocalCollection>) -> Result<SyncReport, SdkError> {
        let mut report = SyncReport {
            acknowledged: self.push(local).await?,
            ..SyncReport::default()
        };
        let shards: Vec<ShardId> = local.borrow().schema().shard_count.shards().collect();
        for shard in shards {
            report.applied += self.pull(local, shard).await?;
        }
        report.settled = local.borrow_mut().settle();
        self.persist(local).await?;
        Ok(report)
    }

    async fn persist(&self, local: &RefCell<LocalCollection>) -> Result<(), SdkError> {
        let writes = local.borrow_mut().take_persist();
        if writes.is_empty() {
            return Ok(());
        }
        self.store.write_all(writes).await
    }

    /// Sends the outbox until every write is acknowledged.
    async fn push(&self, local: &RefCell<LocalCollection>) -> Result<usize, SdkError> {
        let key = local.borrow().key().clone();
        let mut acknowledged = 0;
        let mut batch_ops = PUSH_BATCH_OPS;
        loop {
            let Some(batch) = local.borrow().outbox().next_batch(batch_ops) else {
                return Ok(acknowledged);
            };
            let frame = wire::encode(&Message::WriteBatch(batch.clone()));
            match self.transport.push(&key, frame).await {
                Ok(bytes) => {
                    let limits = local.borrow().limits().clone();
                    let ack = match wire::decode_verified(&bytes, self.writer, &limits) {
                        Ok(Message::WriteAck(ack)) if ack.client_ref == batch.client_ref => ack,
                        Ok(_) => {
                            return Err(SdkError::BadResponse(
                                "the answer to a write batch is not its ack".into(),
                            ));
                        }
                        Err(e) => return Err(SdkError::from_decode(e)),
                    };
                    acknowledged += local.borrow_mut().ack(&ack);
                    self.persist(local).await?;
                }
                // A batch is refused whole; send one write at a time to find
                // the write the writer will never take, and drop only it.
                Err(SdkError::Http {
                    status: 400 | 413, ..
                }) if batch.ops.len() > 1 => batch_ops = 1,
                Err(
                    error @ SdkError::Http {
                        status: 400 | 413, ..
                    },
                ) => {
                    local.borrow_mut().discard(batch.client_ref);
                    self.persist(local).await?;
                    (self.emit)(SyncEvent::Rejected {
                        id: batch.ops[0].id.as_str().to_string(),
                        error,
                    });
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Brings one shard to the writer's head; returns the entries gained.
    async fn pull(
        &self,
        local: &RefCell<LocalCollection>,
        shard: ShardId,
    ) -> Result<u64, SdkError> {
        let (key, limits, start) = {
            let local = local.borrow();
            (
                local.key().clone(),
                local.limits().clone(),
                local.tidemark().get(shard),
            )
        };
        let head = self.transport.head(&key, shard).await?;
        if head <= start {
            return Ok(0);
        }
        let total = head.0 - start.0;
        let progress = |phase, at: Offset| {
            (self.emit)(SyncEvent::Progress {
                shard,
                phase,
                done: at.0.saturating_sub(start.0).min(total),
                total,
            })
        };
        let mut at = start;
        if start == Offset(0) || total > SNAPSHOT_AFTER_ENTRIES {
            progress(Phase::Bootstrap, at);
            // Decoded as it downloads: the records go to the replica and
            // their vectors into the index's block piece by piece.
            let mut stream = SnapshotStream::new(*self.writer, limits.clone());
            let mut loader = local.borrow().snapshot_loader();
            let mut decode = |piece: &[u8]| {
                stream
                    .push(piece, &mut loader)
                    .map_err(SdkError::from_decode)
            };
            if self.transport.snapshot(&key, shard, &mut decode).await? {
                let (head, tail) = stream.finish().map_err(SdkError::from_decode)?;
                if head.collection != key || head.shard != shard {
                    return Err(SdkError::BadResponse(format!(
                        "asked for a snapshot of shard {}, got one of shard {}",
                        shard.0, head.shard.0
                    )));
                }
                let snapshot = loader.finish(head, tail);
                let ids = snapshot.ids();
                let offset = snapshot.offset();
                if local.borrow_mut().load_snapshot(snapshot)? {
                    at = offset;
                    progress(Phase::Bootstrap, at);
                    if !ids.is_empty() {
                        (self.emit)(SyncEvent::Changed { ids });
                    }
                    // Persisted with the rest of the pass, after every shard
                    // is loaded: a new client is searchable once the last
                    // snapshot is in memory, not after the IndexedDB writes
                    // of the shards before it. A pass cut short fetches the
                    // snapshot again.
                }
            }
        }
        while at < head {
            let bytes = self.transport.log(&key, shard, at, head).await?;
            let range = match wire::decode_verified(&bytes, self.writer, &limits) {
                Ok(Message::LogRange(range)) => range,
                Ok(_) => return Err(SdkError::BadResponse("not a log range".into())),
                Err(e) => return Err(SdkError::from_decode(e)),
            };
            if range.entries.is_empty() {
                // The head moved back (a restored writer): nothing to apply.
                break;
            }
            let (outcome, ids) = local.borrow_mut().apply_range(&range)?;
            match outcome {
                Progress::Applied { tidemark, .. } if tidemark > at => at = tidemark,
                Progress::Applied { .. } => {
                    return Err(SdkError::BadResponse(format!(
                        "log range from {} does not move shard {} past {at}",
                        range.from, shard.0
                    )));
                }
                Progress::Gap { missing } => {
                    return Err(SdkError::BadResponse(format!(
                        "log range starts at {}, entries from {} are missing",
                        range.from, missing.start
                    )));
                }
            }
            progress(Phase::CatchUp, at);
            if !ids.is_empty() {
                (self.emit)(SyncEvent::Changed { ids });
            }
        }
        Ok(at.0 - start.0)
    }
}

/// Milliseconds to wait before retry number `attempt` (0-based) after a
/// failed pass: exponential from `base_ms`, capped at `max_ms`, and spread
/// by `jitter` (a number in [0, 1)) over the upper half of the interval, so
/// clients that lost the network together do not come back together.
pub fn backoff_ms(attempt: u32, base_ms: u32, max_ms: u32, jitter: f64) -> u32 {
    let exp = u64::from(base_ms).saturating_mul(1u64 << attempt.min(20));
    let ceiling = exp.min(u64::from(max_ms)) as f64;
    let jitter = jitter.clamp(0.0, 1.0);
    (ceiling * (0.5 + 0.5 * jitter)) as u32
}
