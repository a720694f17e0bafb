//! Deterministic simulation: one writer, 5 read replicas and 3 offline-first
//! clients (outbox + merging replica) in one process, talking only through
//! encoded frames on a network that reorders, duplicates and drops, with
//! nodes restarting. After the faults stop and everyone reconnects, every
//! replica's and client's state must equal the writer's.
//!
//! Seeds: 1,000 natively by default (a few seconds; seeds run in parallel),
//! 200 under wasm32 in node (single-threaded and several times slower
//! there, and wasm has no environment variables to raise it). `TIDEMARK_SEEDS=N` runs N seeds,
//! `TIDEMARK_SEED=S` re-runs seed S alone. Every failing seed is printed.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod sim;

use sim::{CHAOS_STEPS, Sim, Stats};
use tidemark_core::log::Offset;
use tidemark_core::replica::{ReadOnly, Replica};
use tidemark_core::shard::ShardId;
use tidemark_core::wire::LogRange;

fn run(seed: u64) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    for _ in 0..CHAOS_STEPS {
        sim.step()?;
    }
    sim.heal()?;
    sim.check()
}

/// Runs one seed; a panic inside counts as a failure of that seed (natively;
/// on wasm32 a panic aborts the test, and the runner shows its message).
fn run_reporting(seed: u64) -> bool {
    let outcome = std::panic::catch_unwind(|| run(seed))
        .unwrap_or_else(|_| Err("panicked (message above)".into()));
    match outcome {
        Ok(()) => true,
        Err(why) => {
            println!("seed {seed} FAILED (re-run with TIDEMARK_SEED={seed}): {why}");
            false
        }
    }
}

fn seeds() -> Vec<u64> {
    let env = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("TIDEMARK_SEED") {
        return vec![seed];
    }
    let default = if cfg!(target_arch = "wasm32") {
        200
    } else {
        1_000
    };
    (0..env("TIDEMARK_SEEDS").unwrap_or(default)).collect()
}

#[test]
fn replicas_converge_to_the_writer() {
    let seeds = seeds();
    // Seeds are independent, so natively they run on every core; each seed's
    // simulation is single-threaded and deterministic either way.
    let threads = if cfg!(target_arch = "wasm32") {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    };
    let mut failures: Vec<u64> = if threads == 1 {
        seeds
            .iter()
            .copied()
            .filter(|&s| !run_reporting(s))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                    scope.spawn(move || {
                        mine.into_iter()
                            .filter(|&s| !run_reporting(s))
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        })
    };
    failures.sort_unstable();
    println!(
        "convergence: {} seeds, {} divergences",
        seeds.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

/// The simulation exercises what it claims to (every kind of fault happens
/// across a few seeds), and its check notices a replica that misses one entry.
#[test]
fn the_simulation_injects_faults_and_detects_divergence() {
    let mut total = Stats::default();
    let mut last = None;
    for seed in 0..30 {
        let mut sim = Sim::new(seed);
        for _ in 0..CHAOS_STEPS {
            sim.step().unwrap();
        }
        sim.heal().unwrap();
        sim.check().unwrap();
        let s = &sim.stats;
        total.gaps += s.gaps;
        total.duplicate_entries += s.duplicate_entries;
        total.dropped += s.dropped;
        total.offline_writes += s.offline_writes;
        total.replica_restarts += s.replica_restarts;
        total.client_restarts += s.client_restarts;
        total.writer_restarts += s.writer_restarts;
        total.snapshots_loaded += s.snapshots_loaded;
        last = Some(sim);
    }
    let mut sim = last.unwrap();
    println!("{total:?}");
    let counts = [
        total.gaps,
        total.duplicate_entries,
        total.dropped,
        total.offline_writes,
        total.replica_restarts,
        total.client_restarts,
        total.writer_restarts,
        total.snapshots_loaded,
    ];
    assert!(counts.iter().all(|&n| n > 0), "{total:?}");

    // Forget the newest entry of the busiest shard in one replica.
    let log = |shard: ShardId| sim.writer.store.log(shard).to_vec();
    let busiest = sim.count().shards().max_by_key(|&s| log(s).len()).unwrap();
    assert!(!log(busiest).is_empty());
    let mut replica = Replica::<ReadOnly>::new(sim.key.clone(), sim.count(), sim.limits.clone());
    for shard in sim.count().shards() {
        let log = log(shard);
        let keep = if shard == busiest {
            log.len() - 1
        } else {
            log.len()
        };
        replica
            .apply_range(&LogRange {
                collection: sim.key.clone(),
                shard,
                from: Offset(0),
                entries: log[..keep].to_vec(),
            })
            .unwrap();
    }
    sim.replicas[0] = Box::new(replica);
    let error = sim.check().unwrap_err();
    assert!(error.starts_with("replica 0 shard"), "{error}");
}
