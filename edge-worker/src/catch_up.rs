//! Keeping held shards fresh: bootstrap from the writer's signed snapshot,
//! catch up from its signed log, and decide when to ask again.
//!
//! When the edge asks the writer (all three rules feed one check per shard):
//!
//! - bounded staleness: a read without a token is answered from a shard
//!   whose head was compared with the writer's at most `MAX_STALENESS_MS`
//!   ago;
//! - invalidations: a signed invalidation announcing a head above the
//!   tidemark makes the next read (and the invalidation itself) catch up;
//! - consistency tokens: a read whose token is ahead of the tidemark
//!   catches up, retrying until `CONSISTENCY_WAIT_MS`, then answers `503
//!   behind_consistency_token`.
//!
//! Every frame is verified with the writer's key and checked to be the
//! message, collection and shard that was asked for before core applies it;
//! a frame that fails changes nothing.

use std::time::Duration;

use tidemark_core::limits::Limits;
use tidemark_core::log::{ConsistencyToken, Offset};
use tidemark_core::model::{CollectionKey, CollectionSchema};
use tidemark_core::shard::ShardId;
use tidemark_core::snapshot_stream::SnapshotStream;
use tidemark_core::wire::{self, Message};
use worker::Delay;

use crate::config::Config;
use crate::edge_shard::EdgeShard;
use crate::error::{EdgeError, untrusted_decode};
use crate::holder::{self, HeldCollection, Loading};
use crate::upstream::Upstream;

/// Pause between catch-up attempts while a token is not yet satisfied.
const RETRY_PAUSE_MS: u64 = 20;

pub fn now_ms() -> f64 {
    worker::Date::now().as_millis() as f64
}

pub struct Fresh<'a> {
    pub config: &'a Config,
    pub upstream: Upstream<'a>,
    pub key: &'a CollectionKey,
}

impl Fresh<'_> {
    /// The collection's schema, held after the first time.
    pub async fn schema(&self) -> Result<CollectionSchema, EdgeError> {
        if let Some(schema) = holder::with(|h| h.collections.get(self.key).map(|c| c.schema)) {
            return Ok(schema);
        }
        let schema = self.upstream.schema(self.key).await?;
        holder::with(|h| {
            h.collections
                .entry(self.key.clone())
                .or_insert_with(|| HeldCollection::new(schema));
        });
        Ok(schema)
    }

    /// Brings `shards` to the freshness a read needs: loaded, checked within
    /// the staleness bound, and past `token` (for the shards it names among
    /// `shards`) before the deadline.
    pub async fn read(
        &self,
        schema: &CollectionSchema,
        shards: &[ShardId],
        token: Option<&ConsistencyToken>,
    ) -> Result<(), EdgeError> {
        let deadline = now_ms() + self.config.consistency_wait_ms as f64;
        for &shard in shards {
            let target = token
                .and_then(|t| t.shards.get(&shard).copied())
                .unwrap_or_default();
            loop {
                let outcome = self.shard(schema, shard, target).await;
                let tidemark = self.tidemark(shard);
                match outcome {
                    Ok(()) if tidemark >= target => break,
                    // The writer could not be reached for a staleness check:
                    // the shard is still served, at the tidemark it reports.
                    Err(err) if tidemark >= target && self.loaded(shard) => {
                        worker::console_warn!(
                            "tidemark-edge: serving {} shard {} at {} without a fresh head: {}",
                            self.key.collection,
                            shard.0,
                            tidemark,
                            err.message
                        );
                        break;
                    }
                    Err(err) if target == Offset(0) || !err.retryable() => return Err(err),
                    _ => {}
                }
                if now_ms() >= deadline {
                    return Err(EdgeError::behind(format!(
                        "shard {} is at {tidemark}, the token asks for {target}; retry",
                        shard.0
                    )));
                }
                Delay::from(Duration::from_millis(RETRY_PAUSE_MS)).await;
            }
        }
        Ok(())
    }

    fn loaded(&self, shard: ShardId) -> bool {
        holder::with(|h| {
            h.collections
                .get(self.key)
                .is_some_and(|c| c.shard(shard).is_some())
        })
    }

    fn tidemark(&self, shard: ShardId) -> Offset {
        holder::with(|h| {
            h.collections
                .get(self.key)
                .and_then(|c| c.shard(shard))
                .map_or(Offset(0), EdgeShard::tidemark)
        })
    }

    /// One attempt: load the shard if needed, then catch up if the staleness
    /// bound, an invalidation or `target` says so.
    pub async fn shard(
        &self,
        schema: &CollectionSchema,
        shard: ShardId,
        target: Offset,
    ) -> Result<(), EdgeError> {
        // One bootstrap per shard at a time: a second request (a search and
        // a pushed invalidation arriving together at a fresh isolate) waits
        // for the first rather than loading a second copy, which a 128 MB
        // isolate may not have room for. If the first fails, the next
        // waiter tries.
        let mut waited = 0;
        while !self.loaded(shard) {
            if let Some(_loading) = Loading::begin(self.key, shard) {
                self.bootstrap(schema, shard).await?;
                break;
            }
            if waited >= LOAD_WAIT_MS {
                return Err(EdgeError::unavailable(
                    "another request is still loading this shard; try again",
                ));
            }
            Delay::from(Duration::from_millis(LOAD_POLL_MS)).await;
            waited += LOAD_POLL_MS;
        }
        let now = now_ms();
        let due = holder::with(|h| {
            h.collections
                .get(self.key)
                .and_then(|c| c.shard(shard))
                .is_none_or(|s| {
                    now - s.checked_at_ms >= self.config.max_staleness_ms as f64
                        || s.announced_head > s.tidemark()
                        || target > s.tidemark()
                })
        });
        if due {
            self.catch_up(shard, now).await?;
        }
        Ok(())
    }

    async fn bootstrap(&self, schema: &CollectionSchema, shard: ShardId) -> Result<(), EdgeError> {
        let budget = self.config.memory_budget_bytes;
        let used = holder::with(|h| h.memory_bytes());
        if used >= budget {
            return Err(over_budget(used, 0, budget));
        }
        let loaded = match self.upstream.snapshot(self.key, shard).await? {
            None => EdgeShard::empty(self.key.clone(), shard, schema),
            Some(body) => {
                // The frame's size is a close lower bound of what it costs
                // loaded (records + index), so it is checked before reading.
                let length = body.length().unwrap_or(0);
                if used + length > budget {
                    return Err(over_budget(used, length, budget));
                }
                // The shard is built beside the held ones as the frame
                // streams in, and used only once its signature verified.
                let mut stream = SnapshotStream::new(self.config.writer_key, Limits::default());
                let mut loader =
                    EdgeShard::loader(self.key.clone(), shard, schema, self.config.precision);
                body.feed(|piece| {
                    stream
                        .push(piece, &mut loader)
                        .map_err(|e| untrusted_decode("snapshot", e))
                })
                .await?;
                let (head, tail) = stream
                    .finish()
                    .map_err(|e| untrusted_decode("snapshot", e))?;
                loader.finish(head, tail)?
            }
        };
        holder::with(|h| {
            let used = h.memory_bytes();
            if used + loaded.memory_bytes() > budget {
                return Err(over_budget(used, loaded.memory_bytes(), budget));
            }
            let collection = h
                .collections
                .entry(self.key.clone())
                .or_insert_with(|| HeldCollection::new(*schema));
            let slot = &mut collection.shards[shard.0 as usize];
            // Another request may have loaded the shard meanwhile: keep the
            // one further along.
            if slot
                .as_ref()
                .is_none_or(|s| s.tidemark() < loaded.tidemark())
            {
                *slot = Some(loaded);
            }
            Ok(())
        })
    }

    fn verify(&self, frame: &[u8], what: &str) -> Result<Message, EdgeError> {
        wire::decode_verified(frame, &self.config.writer_key, &Limits::default())
            .map_err(|e| untrusted_decode(what, e))
    }

    /// Reads the writer's head and applies the log up to it.
    async fn catch_up(&self, shard: ShardId, now: f64) -> Result<(), EdgeError> {
        let head = self.upstream.head(self.key, shard).await?;
        let gap = head.0.saturating_sub(self.tidemark(shard).0);
        if gap > CATCH_UP_STEP {
            // A long way behind (a snapshot older than the log's head): room
            // for every entry to be a new record, exactly and once, rather
            // than the index growing step by step; bounded by the budget.
            let budget = self.config.memory_budget_bytes;
            holder::with(|h| {
                let free = budget.saturating_sub(h.memory_bytes());
                if let Some(held) = h
                    .collections
                    .get_mut(self.key)
                    .and_then(|c| c.shard_mut(shard))
                {
                    held.reserve_for_entries(gap as usize, free);
                }
            });
        }
        loop {
            let from = self.tidemark(shard);
            if from >= head {
                break;
            }
            let to = Offset(head.0.min(from.0 + CATCH_UP_STEP));
            let frame = self.upstream.log(self.key, shard, from, to).await?;
            let message = self.verify(&frame, "log range")?;
            drop(frame);
            let range = match message {
                Message::LogRange(range) => range,
                _ => {
                    return Err(EdgeError::untrusted(
                        "the writer sent another message for a log range",
                    ));
                }
            };
            if range.from != from || range.entries.is_empty() {
                return Err(EdgeError::untrusted(format!(
                    "asked for the log from {from}, got {} entries from {}",
                    range.entries.len(),
                    range.from
                )));
            }
            holder::with(|h| {
                match h
                    .collections
                    .get_mut(self.key)
                    .and_then(|c| c.shard_mut(shard))
                {
                    Some(held) => held.apply(&range).map(|_| ()),
                    None => Ok(()),
                }
            })?;
        }
        holder::with(|h| {
            if let Some(held) = h
                .collections
                .get_mut(self.key)
                .and_then(|c| c.shard_mut(shard))
            {
                held.checked_at_ms = now;
                held.announced_head = held.announced_head.max(head);
            }
        });
        Ok(())
    }
}

/// How often, and how long, a request waits for another's bootstrap of the
/// same shard.
const LOAD_POLL_MS: u64 = 5;
const LOAD_WAIT_MS: u64 = 30_000;

/// Log entries asked for at once: a range is read whole and decoded beside
/// its frame, so its size is a transient cost on top of the replica (~3 MB
/// of 384-d entries, against the writer's 8 MB cap).
const CATCH_UP_STEP: u64 = 2048;

fn over_budget(used: usize, more: usize, budget: usize) -> EdgeError {
    EdgeError::over_budget(format!(
        "loading this shard would take the edge's replicas past its memory budget \
         ({} MB held, about {} MB more, budget {} MB); read it from the writer",
        used >> 20,
        more.div_ceil(1 << 20),
        budget >> 20
    ))
}
