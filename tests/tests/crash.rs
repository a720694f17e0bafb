//! The writer survives SIGKILL: acknowledged writes are durable, each shard's
//! log stays a gapless, prefix-closed sequence, and a batch is all or nothing.
//!
//! Each crash point starts the real writer on the same data dir, runs
//! concurrent clients writing batches into a 4-shard collection (each batch's
//! records routed to one shard, so the writer applies and commits it as one
//! unit), SIGKILLs the process after a seeded delay, restarts it, and checks
//! everything it serves against what the clients were told:
//!
//! - every batch that was acknowledged is in its shard's log, whole, below
//!   the offset its consistency token named, and readable by id;
//! - every shard's log reads back from 0 to the head through the API with
//!   valid writer signatures and consecutive offsets, and the log seen after
//!   the previous restart is still its prefix, byte for byte;
//! - every batch found in a log is complete and contiguous (a batch in flight
//!   at the kill is either fully present or absent), and was really sent.
//!
//! `TIDEMARK_CRASH_POINTS=N` runs N points (default 50);
//! `TIDEMARK_CRASH_SEED=S` starts from seed S (default: from the clock) and
//! on its own runs one point. A failure prints the command that re-runs its
//! inputs. Points share a data dir in epochs of [`EPOCH`], so recovery is
//! also tested from logs that already went through earlier crashes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use tidemark_core::limits::Limits;
use tidemark_core::model::{CollectionKey, CollectionName, Namespace, RecordId};
use tidemark_core::shard::ShardCount;
use tidemark_e2e::client::WriterClient;
use tidemark_e2e::rng::SplitMix;
use tidemark_e2e::shard_log::read_log;
use tidemark_e2e::{WriterProcess, issue_token, workspace_binary};

const NAMESPACE: &str = "crash";
const COLLECTION: &str = "events";
const SHARDS: u32 = 4;
const DIMENSION: usize = 8;
const CLIENTS: usize = 4;
/// Records per batch at most.
const BATCH_MAX: u64 = 8;
/// Crash points sharing one data dir before it is started afresh: bounds
/// how much log every check rereads.
const EPOCH: u64 = 25;
/// Bounds each client's loop if a kill never came.
const MAX_BATCHES_PER_CLIENT: u64 = 5_000;

/// What the clients of one crash point learned.
#[derive(Default)]
struct Outcomes {
    /// batch → (shard, records, the token's offset for that shard).
    acked: BTreeMap<u64, (u32, u64, u64)>,
    /// Batches sent without an answer (in flight at the kill).
    unacked: Vec<u64>,
    /// Errors before the kill: a writer that refuses good writes is a bug.
    early_errors: Vec<String>,
}

/// What every crash point of an epoch adds up to.
#[derive(Default)]
struct History {
    /// Every acknowledged batch so far: batch → (shard, records, token offset).
    acked: BTreeMap<u64, (u32, u64, u64)>,
    /// Each shard's log as read after the previous restart (entry bytes).
    logs: HashMap<u32, Vec<Vec<u8>>>,
    /// Batch ids handed out so far (ids are `[0, next_batch)`).
    next_batch: Arc<AtomicU64>,
    /// Whether the collection was created (the epoch's first start has none).
    created: bool,
}

#[derive(Default)]
struct Totals {
    points: u64,
    acked_batches: u64,
    acked_records: u64,
    in_flight: u64,
    in_flight_present: u64,
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let seed: Option<u64> = std::env::var("TIDEMARK_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("TIDEMARK_CRASH_SEED is a u64"));
    let points: u64 = std::env::var("TIDEMARK_CRASH_POINTS")
        .ok()
        .map(|s| s.parse().expect("TIDEMARK_CRASH_POINTS is a u64"))
        .unwrap_or(if seed.is_some() { 1 } else { 50 });
    let base = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!("crash test: {points} crash points from seed {base}");
    let binary = workspace_binary("tidemark-writer").unwrap();
    let root = std::env::temp_dir().join(format!("tidemark-crash-{}", std::process::id()));
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut point = 0;
    while point < points {
        let epoch_seed = base.wrapping_add(point);
        let dir = root.join(format!("epoch-{epoch_seed}"));
        let _ = std::fs::remove_dir_all(&dir);
        let token = issue_token(&binary, &dir, NAMESPACE, "read,write,admin").unwrap();
        let mut history = History::default();
        let epoch_end = (point + EPOCH).min(points);
        for i in point..epoch_end {
            let seed = base.wrapping_add(i);
            if let Err(err) = crash_point(&binary, &dir, &token, seed, &mut history, &mut totals) {
                panic!(
                    "crash point {i} (seed {seed}) failed: {err:#}\n\
                     re-run its inputs with TIDEMARK_CRASH_SEED={epoch_seed} TIDEMARK_CRASH_POINTS={}\n\
                     (the data dir is kept at {})",
                    i - point + 1,
                    dir.display()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        point = epoch_end;
    }
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "crash test: {} crash points in {:.1} s; {} acknowledged batches ({} records), 0 lost; \
         {} batches in flight at a kill: {} fully present, {} absent, none partial",
        totals.points,
        started.elapsed().as_secs_f64(),
        totals.acked_batches,
        totals.acked_records,
        totals.in_flight,
        totals.in_flight_present,
        totals.in_flight - totals.in_flight_present,
    );
    assert!(
        totals.acked_batches > 0,
        "no write was acknowledged: the test checked nothing"
    );
}

fn crash_point(
    binary: &Path,
    dir: &Path,
    token: &str,
    seed: u64,
    history: &mut History,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let mut rng = SplitMix::new(seed);
    // Mostly mid-load kills; one in eight lands right after the start, while
    // the first requests are still connecting.
    let kill_after = if rng.range(0, 8) == 0 {
        Duration::from_millis(rng.range(0, 20))
    } else {
        Duration::from_millis(rng.range(20, 400))
    };
    let writer = WriterProcess::start_binary(binary, dir)?;
    let client = WriterClient::new(&writer.base_url, NAMESPACE, token, Duration::from_secs(10));
    let key = client.writer_key()?;
    // After the kill, check what survived from the previous points first:
    // recovery must not depend on this point's writes.
    verify(&client, &key, history, &Outcomes::default(), totals)?;
    client.create_collection(COLLECTION, DIMENSION, SHARDS)?;
    history.created = true;

    let killed = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let client = client.clone();
            let killed = Arc::clone(&killed);
            let outcomes = Arc::clone(&outcomes);
            let next_batch = Arc::clone(&history.next_batch);
            let seed = rng.next_u64() ^ c as u64;
            std::thread::spawn(move || {
                write_until_killed(&client, seed, &next_batch, &killed, &outcomes)
            })
        })
        .collect();
    std::thread::sleep(kill_after);
    killed.store(true, Ordering::SeqCst);
    writer.kill()?;
    for handle in clients {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|p| p.into_inner()));
    ensure!(
        outcomes.early_errors.is_empty(),
        "writes failed before the kill: {:?}",
        outcomes.early_errors
    );

    let writer = WriterProcess::start_binary(binary, dir)?;
    let client = WriterClient::new(&writer.base_url, NAMESPACE, token, Duration::from_secs(10));
    let key2 = client.writer_key()?;
    ensure!(key == key2, "the writer's key changed across a restart");
    for (&batch, &ack) in &outcomes.acked {
        history.acked.insert(batch, ack);
        totals.acked_batches += 1;
        totals.acked_records += ack.1;
    }
    verify(&client, &key, history, &outcomes, totals)?;
    // Acknowledged records of this point, read by id through the API too.
    for (&batch, &(_, records, _)) in outcomes.acked.iter().rev().take(8) {
        for i in 0..records {
            let id = record_id(batch, i)?;
            let (status, body) = client.get_record(COLLECTION, &id)?;
            ensure!(
                status == 200 && body["fields"]["batch"] == json!(batch),
                "acknowledged record {id} after restart: {status} {body}"
            );
        }
    }
    writer.kill()?;
    totals.points += 1;
    Ok(())
}

/// Record `i` of `batch`: the id the client derived, recomputed.
fn record_id(batch: u64, i: u64) -> anyhow::Result<String> {
    let shard = ack_shard_of(batch);
    ids_for(batch, shard, i + 1)
        .pop()
        .context("no id generated")
}

/// The shard a batch goes to: a function of its id, so checks recompute it.
fn ack_shard_of(batch: u64) -> u32 {
    (SplitMix::new(batch).next_u64() % u64::from(SHARDS)) as u32
}

/// The first `n` record ids of `batch`, each salted until it routes to
/// `shard`, so the whole batch lands in one shard and commits as one unit.
fn ids_for(batch: u64, shard: u32, n: u64) -> Vec<String> {
    let limits = Limits::default();
    let key = CollectionKey::new(
        Namespace::new(NAMESPACE).expect("namespace"),
        CollectionName::new(COLLECTION).expect("collection"),
    );
    let count = ShardCount::new(SHARDS).expect("shards");
    (0..n)
        .map(|i| {
            (0u32..)
                .map(|salt| format!("b{batch}-{i}-{salt}"))
                .find(|id| {
                    let id = RecordId::new(id.clone(), &limits).expect("record id");
                    key.shard_of(&id, count).0 == shard
                })
                .expect("some salt routes to every shard")
        })
        .collect()
}

fn write_until_killed(
    client: &WriterClient,
    seed: u64,
    next_batch: &AtomicU64,
    killed: &AtomicBool,
    outcomes: &Mutex<Outcomes>,
) {
    let mut rng = SplitMix::new(seed);
    for _ in 0..MAX_BATCHES_PER_CLIENT {
        if killed.load(Ordering::SeqCst) {
            return;
        }
        let batch = next_batch.fetch_add(1, Ordering::SeqCst);
        let shard = ack_shard_of(batch);
        let n = rng.range(1, BATCH_MAX + 1);
        let ops: Vec<Value> = ids_for(batch, shard, n)
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let vector: Vec<f32> = (0..DIMENSION).map(|_| rng.unit_f32() + 2.0).collect();
                json!({
                    "op": "put",
                    "id": id,
                    "fields": {"batch": batch, "i": i, "n": n},
                    "vector": vector,
                })
            })
            .collect();
        let result = client.write_json(COLLECTION, &Value::Array(ops));
        let mut outcomes = outcomes.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(token) => {
                let offset = token[shard.to_string()].as_u64().unwrap_or(0);
                outcomes.acked.insert(batch, (shard, n, offset));
            }
            Err(err) => {
                outcomes.unacked.push(batch);
                if !killed.load(Ordering::SeqCst) {
                    outcomes
                        .early_errors
                        .push(format!("batch {batch}: {err:#}"));
                }
                return;
            }
        }
    }
}

/// Reads every shard's log and checks it against the history; then makes the
/// logs read now the history's.
fn verify(
    client: &WriterClient,
    key: &VerifyingKey,
    history: &mut History,
    outcomes: &Outcomes,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    if !history.created {
        // The epoch's first start: the collection does not exist yet.
        return Ok(());
    }
    let sent = history.next_batch.load(Ordering::SeqCst);
    // batch → (shard, first offset, `i`s seen in log order)
    let mut found: BTreeMap<u64, (u32, u64, Vec<u64>, u64)> = BTreeMap::new();
    for shard in 0..SHARDS {
        let entries = read_log(client, key, COLLECTION, shard)?;
        let previous = history.logs.get(&shard).map_or(&[][..], Vec::as_slice);
        ensure!(
            entries.len() >= previous.len(),
            "shard {shard}: the log shrank from {} to {} entries",
            previous.len(),
            entries.len()
        );
        for (offset, (old, new)) in previous.iter().zip(&entries).enumerate() {
            ensure!(
                *old == new.to_bytes(),
                "shard {shard}: entry {offset} changed across a restart"
            );
        }
        for entry in &entries {
            let fields = &entry.fields;
            let (Some(batch), Some(i), Some(n)) = (
                fields.get("batch").and_then(Value::as_u64),
                fields.get("i").and_then(Value::as_u64),
                fields.get("n").and_then(Value::as_u64),
            ) else {
                bail!("shard {shard} entry {}: fields {fields:?}", entry.offset.0);
            };
            ensure!(batch < sent, "shard {shard}: batch {batch} was never sent");
            ensure!(
                !entry.deleted && entry.vector.as_ref().map(Vec::len) == Some(DIMENSION),
                "shard {shard} entry {}: deleted or without its vector",
                entry.offset.0
            );
            let slot = found
                .entry(batch)
                .or_insert((shard, entry.offset.0, Vec::new(), n));
            ensure!(
                slot.0 == shard,
                "batch {batch} is in shards {} and {shard}",
                slot.0
            );
            ensure!(
                slot.1 + slot.2.len() as u64 == entry.offset.0,
                "batch {batch} is not contiguous in shard {shard} (offset {})",
                entry.offset.0
            );
            slot.2.push(i);
        }
        history
            .logs
            .insert(shard, entries.iter().map(|e| e.to_bytes()).collect());
    }
    for (batch, (shard, first, is, n)) in &found {
        let expected: Vec<u64> = (0..*n).collect();
        ensure!(
            *is == expected,
            "batch {batch} is partial in shard {shard} at {first}: records {is:?} of {n}"
        );
    }
    for (batch, (shard, records, token_offset)) in &history.acked {
        let Some((found_shard, first, is, _)) = found.get(batch) else {
            bail!(
                "LOST: acknowledged batch {batch} ({records} records, shard {shard}, token offset {token_offset}) is not in the log"
            );
        };
        ensure!(
            found_shard == shard && is.len() as u64 == *records,
            "acknowledged batch {batch} found in shard {found_shard} with {} records, expected shard {shard} with {records}",
            is.len()
        );
        ensure!(
            first + records <= *token_offset,
            "acknowledged batch {batch} sits at {first}..{} but its token said {token_offset}",
            first + records
        );
    }
    for batch in &outcomes.unacked {
        totals.in_flight += 1;
        if found.contains_key(batch) {
            totals.in_flight_present += 1;
        }
    }
    Ok(())
}
