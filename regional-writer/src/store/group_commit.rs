//! Group commit: concurrent writers share one transaction and one fsync.
//!
//! A single committer thread owns the store's write connection. It blocks
//! for the first job, then takes every job already queued behind it (up to a
//! bound) and commits them together, so under load the fsync cost is paid
//! once per group rather than once per request; with one writer it commits
//! at once, so latency is one fsync. Each job's sender learns the outcome
//! only after the commit returned: nothing is acknowledged before it is
//! durable.
//!
//! Jobs are committed in the order they were submitted. The writer assigns
//! log offsets under a shard lock and submits before releasing it, so the log
//! rows reach the database in offset order.
//!
//! A failed commit poisons the committer: the writer's in-memory shard state
//! already counted the failed jobs' offsets, so continuing would leave a gap
//! or fork the log. Every later job fails fast with [`CommitError::Poisoned`]
//! and the writer must be restarted, when it rebuilds its state from what the
//! store holds (crash-only recovery, the same path as after a SIGKILL).
//! A thread rather than a tokio task because SQLite calls block.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use thiserror::Error;
use tokio::sync::oneshot;

use super::{Store, StoreError, WriteSet};

/// Jobs merged into one transaction at most: bounds the transaction's size
/// and the latency the first job of a group waits for the others.
const MAX_GROUP: usize = 512;

#[derive(Debug, Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("an earlier commit failed; the writer must restart to recover its state")]
    Poisoned,
    #[error("the committer has stopped")]
    Stopped,
}

struct Job {
    set: WriteSet,
    done: oneshot::Sender<Result<(), CommitError>>,
}

/// Counters for `/metrics` and tests.
#[derive(Default)]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Jobs made durable by those transactions.
    pub jobs: AtomicU64,
}

/// The handle writers submit to; cheap to clone.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<CommitStats>,
}

impl Committer {
    /// Starts the committer thread, which owns `store` until every
    /// `Committer` handle is dropped.
    pub fn start<S: Store>(store: S) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("tidemark-commit".into())
            .spawn(move || commit_loop(store, &queue, &thread_stats))?;
        Ok(Self { jobs, stats })
    }

    /// Queues `set`; the receiver resolves once it is durable (or failed).
    /// Submission order is commit order.
    pub fn submit(&self, set: WriteSet) -> oneshot::Receiver<Result<(), CommitError>> {
        let (done, receiver) = oneshot::channel();
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { set, done }) {
            let _ = job.done.send(Err(CommitError::Stopped));
        }
        receiver
    }

    /// Makes `set` durable.
    pub async fn commit(&self, set: WriteSet) -> Result<(), CommitError> {
        self.submit(set).await.unwrap_or(Err(CommitError::Stopped))
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

fn commit_loop<S: Store>(mut store: S, queue: &mpsc::Receiver<Job>, stats: &CommitStats) {
    let mut poisoned = false;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if poisoned {
            for job in group {
                let _ = job.done.send(Err(CommitError::Poisoned));
            }
            continue;
        }
        let mut merged = WriteSet::default();
        let mut waiting = Vec::with_capacity(group.len());
        for job in group {
            merged.extend(job.set);
            waiting.push(job.done);
        }
        match store.commit(&merged) {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .jobs
                    .fetch_add(waiting.len() as u64, Ordering::Relaxed);
                for done in waiting {
                    let _ = done.send(Ok(()));
                }
            }
            Err(err) => {
                tracing::error!(%err, jobs = waiting.len(), "commit failed; refusing further writes");
                poisoned = true;
                let message = err.to_string();
                let mut first = Some(err);
                for done in waiting {
                    let err = first
                        .take()
                        .unwrap_or_else(|| StoreError::Backend(message.clone()));
                    let _ = done.send(Err(CommitError::Store(err)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::store::{LogRow, ShardKey, SqliteStore};

    fn dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tidemark-group-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn append(offset: u64) -> WriteSet {
        let shard = ShardKey {
            namespace: "acme".into(),
            collection: "notes".into(),
            shard: 0,
        };
        WriteSet {
            log: vec![LogRow {
                shard,
                offset,
                entry: vec![0; 64],
            }],
            ..WriteSet::default()
        }
    }

    /// A real SQLite store whose first commit waits until the test has queued
    /// more jobs, so grouping is deterministic rather than timing-dependent.
    struct GatedStore {
        inner: SqliteStore,
        gate: Option<Arc<Barrier>>,
    }

    impl Store for GatedStore {
        fn commit(&mut self, set: &WriteSet) -> Result<(), StoreError> {
            if let Some(gate) = self.gate.take() {
                gate.wait();
                gate.wait();
            }
            self.inner.commit(set)
        }
        fn collections(&self) -> Result<Vec<crate::store::CollectionRow>, StoreError> {
            self.inner.collections()
        }
        fn head(&self, shard: &ShardKey) -> Result<u64, StoreError> {
            self.inner.head(shard)
        }
        fn log_range(
            &self,
            s: &ShardKey,
            f: u64,
            t: u64,
            m: usize,
        ) -> Result<Vec<LogRow>, StoreError> {
            self.inner.log_range(s, f, t, m)
        }
        fn latest_snapshot(
            &self,
            s: &ShardKey,
        ) -> Result<Option<crate::store::SnapshotRow>, StoreError> {
            self.inner.latest_snapshot(s)
        }
    }

    #[tokio::test]
    async fn queued_jobs_share_one_commit() {
        let path = dir("share");
        let sqlite = SqliteStore::open(&path).unwrap();
        let reader = sqlite.reader().unwrap();
        let gate = Arc::new(Barrier::new(2));
        let committer = Committer::start(GatedStore {
            inner: sqlite,
            gate: Some(Arc::clone(&gate)),
        })
        .unwrap();

        let first = committer.submit(append(0));
        gate.wait(); // the committer holds job 0 inside its first commit
        let rest: Vec<_> = (1..100).map(|o| committer.submit(append(o))).collect();
        gate.wait(); // let it go: jobs 1..100 are all queued now
        first.await.unwrap().unwrap();
        for done in rest {
            done.await.unwrap().unwrap();
        }
        assert_eq!(committer.stats().jobs.load(Ordering::Relaxed), 100);
        assert_eq!(committer.stats().commits.load(Ordering::Relaxed), 2);
        assert_eq!(reader.head(&append(0).log[0].shard).unwrap(), 100);
        let _ = std::fs::remove_dir_all(path);
    }

    #[tokio::test]
    async fn a_failed_commit_poisons_the_committer() {
        let path = dir("poison");
        let committer = Committer::start(SqliteStore::open(&path).unwrap()).unwrap();
        committer.commit(append(0)).await.unwrap();
        // Offset 0 again: the fencing check fails this commit.
        assert!(matches!(
            committer.commit(append(0)).await,
            Err(CommitError::Store(StoreError::OffsetTaken { .. }))
        ));
        assert!(matches!(
            committer.commit(append(1)).await,
            Err(CommitError::Poisoned)
        ));
        let _ = std::fs::remove_dir_all(path);
    }
}
