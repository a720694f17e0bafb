//! The sealing thread: HNSW builds off the request path, one at a time, on
//! one thread that yields the CPU to request handling.
//!
//! instant-distance inserts each layer's points in parallel on the current
//! rayon pool. On the global pool that is every core, so a seal of a large
//! shard starved ingest (on two cores it took ~65% of the writer's CPU during
//! a bulk load) and, being multi-threaded, was not reproducible from its seed.
//! Here it runs in a pool of its own with one thread, so:
//!
//! - a seal uses at most one core, and on Linux that thread runs at a lower
//!   priority (nice [`SEAL_NICENESS`]): while writes keep the cores busy the
//!   seal mostly waits, and it catches up when they pause. Reads stay correct
//!   meanwhile; the shard's recent writes are searched exactly until it lands;
//! - the same records and seed build the same graph, as the design asks of a
//!   sealed segment.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// How much nicer than the process the seal thread runs (Linux): from nice 0
/// that is CFS weight 110 against request handling's 1024, so the scheduler
/// favours writes and reads, while a seal still advances on a busy machine.
pub const SEAL_NICENESS: i32 = 10;

/// The highest (least favoured) nice value Linux accepts.
const MAX_NICE: i32 = 19;

#[derive(Debug, Error)]
pub enum SealerError {
    #[error("the sealing thread could not start: {0}")]
    Start(String),
    #[error("a seal panicked")]
    Panicked,
    #[error("the sealing thread stopped")]
    Stopped,
}

pub struct Sealer {
    pool: rayon::ThreadPool,
    stats: Arc<SealStats>,
}

/// Seals queued and finished since start (`/metrics`): equal counts mean
/// the sealing thread is idle, so a replica asking now gets the latest graph.
#[derive(Debug, Default)]
pub struct SealStats {
    pub queued: AtomicU64,
    pub finished: AtomicU64,
}

impl Sealer {
    pub fn start() -> Result<Self, SealerError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "tidemark-seal".into())
            .start_handler(|_| lower_priority())
            .build()
            .map_err(|e| SealerError::Start(e.to_string()))?;
        Ok(Self {
            pool,
            stats: Arc::default(),
        })
    }

    pub fn stats(&self) -> &SealStats {
        &self.stats
    }

    /// Runs `job` on the sealing thread (after the seals queued before it)
    /// and waits for its result without blocking the runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SealerError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let stats = Arc::clone(&self.stats);
        stats.queued.fetch_add(1, Ordering::Relaxed);
        self.pool.spawn(move || {
            // A panic escaping a rayon job aborts the process; report it.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(job));
            stats.finished.fetch_add(1, Ordering::Relaxed);
            let _ = done.send(outcome.map_err(|_| SealerError::Panicked));
        });
        result.await.map_err(|_| SealerError::Stopped)?
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value belongs to the thread: PRIO_PROCESS with this
    // thread's id changes this thread alone. It starts as its creator's.
    let current = thread_nice();
    // SAFETY: plain syscalls on the calling thread, no pointers involved.
    let result = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            (current + SEAL_NICENESS).min(MAX_NICE),
        )
    };
    if result != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "the sealing thread keeps the default priority"
        );
    }
}

/// The calling thread's nice value (Linux).
#[cfg(target_os = "linux")]
fn thread_nice() -> i32 {
    // SAFETY: reads the calling thread's nice value; no pointers involved.
    // (-1 is also a valid value; errors cannot happen for one's own thread.)
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_one_thread_and_reports_panics() {
        let sealer = Sealer::start().unwrap();
        let threads = sealer.run(rayon::current_num_threads).await.unwrap();
        assert_eq!(threads, 1, "a seal must see a one-thread pool");
        let name = sealer
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("tidemark-seal"));
        let panicked = sealer.run(|| panic!("a bad seal")).await;
        assert!(matches!(panicked, Err(SealerError::Panicked)));
        // The thread survives a panicking job.
        assert_eq!(sealer.run(|| 7).await.unwrap(), 7);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_sealing_thread_runs_below_request_handling() {
        let own = thread_nice();
        let sealer = Sealer::start().unwrap();
        let nice = sealer.run(thread_nice).await.unwrap();
        assert_eq!(nice, (own + SEAL_NICENESS).min(MAX_NICE), "caller at {own}");
    }
}
