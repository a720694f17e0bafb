//! The driver of `cargo xtask bench writer`: durable ingest into the real
//! writer over loopback, against raw SQLite inserting the same bytes.
//!
//! For each endpoint (binary `WriteBatch` envelopes, then JSON), a fresh
//! writer (the release build) on a fresh data dir receives `--records`
//! records of a 384-d vector plus small fields from `--clients` concurrent
//! clients, in batches of `--batch` records with ids spread over the
//! collection's shards. Every request's time to acknowledgement is kept for
//! p50/p99. Then, with the writer stopped, the log rows it stored are
//! re-inserted into a fresh SQLite database with the writer's schema and
//! durability (WAL, `synchronous = FULL`), one transaction per `--batch`
//! rows: the ceiling the writer's overhead is measured against.
//!
//! Lives in the e2e crate rather than xtask because it needs core (to encode
//! envelopes), an HTTP client and rusqlite, which the e2e crate already has
//! and xtask should not carry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};
use tidemark_core::limits::Limits;
use tidemark_core::model::{CollectionKey, CollectionName, Namespace, RecordId};
use tidemark_core::wire::{self, Message};
use tidemark_core::writer::{WriteBatch, WriteOp};
use tidemark_e2e::client::WriterClient;
use tidemark_e2e::rng::SplitMix;
use tidemark_e2e::{WriterProcess, issue_token};

const NAMESPACE: &str = "bench";
const COLLECTION: &str = "ingest";
const DIMENSION: usize = 384;

struct Args {
    writer: PathBuf,
    json: Option<PathBuf>,
    records: u64,
    batch: u64,
    clients: usize,
    shards: u32,
    seed: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        writer: PathBuf::new(),
        json: None,
        records: 100_000,
        batch: 100,
        clients: 8,
        shards: 8,
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--writer" => args.writer = PathBuf::from(value()?),
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--records" => args.records = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--clients" => args.clients = value()?.parse()?,
            "--shards" => args.shards = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            other => bail!(
                "unknown argument {other} (--writer PATH --json FILE --records N --batch N --clients N --shards N --seed N)"
            ),
        }
    }
    if args.writer.as_os_str().is_empty() {
        bail!("--writer PATH (the release tidemark-writer) is required");
    }
    if args.batch == 0 || args.clients == 0 || args.records < args.batch {
        bail!("--batch and --clients must be positive and --records at least --batch");
    }
    Ok(args)
}

#[derive(Clone, Copy)]
enum Endpoint {
    Binary,
    Json,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Binary => "binary",
            Endpoint::Json => "json",
        }
    }
}

/// A row of the writer's `log` table: namespace, collection, shard, offset,
/// entry bytes.
type LogRow = (String, String, i64, i64, Vec<u8>);

struct Run {
    records_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The writer's log rows, `(namespace, collection, shard, offset, entry)`.
    log: Vec<LogRow>,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    println!("writer bench inputs:");
    println!("  writer    {}", args.writer.display());
    println!(
        "  records   {} (dimension {DIMENSION}, fields: title, n, tag)",
        args.records
    );
    println!(
        "  batch     {} records per request / raw transaction",
        args.batch
    );
    println!("  clients   {} concurrent, keep-alive", args.clients);
    println!(
        "  shards    {} (ids spread by the writer's routing hash)",
        args.shards
    );
    println!("  seed      {}", args.seed);
    println!(
        "  cores     {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  durability: SQLite WAL, synchronous=FULL (writer and raw)");

    let binary = run_writer(&args, Endpoint::Binary)?;
    let json_run = run_writer(&args, Endpoint::Json)?;
    let raw = raw_sqlite(&binary.log, args.batch as usize)?;
    let bytes: usize = binary.log.iter().map(|row| row.4.len()).sum();

    println!();
    println!(
        "| {:<28} | {:>12} | {:>9} | {:>9} | {:>8} |",
        "run", "records/s", "p50 ms", "p99 ms", "vs raw"
    );
    println!(
        "|{:-<30}|{:->14}|{:->11}|{:->11}|{:->10}|",
        "", "", "", "", ""
    );
    for (name, run) in [
        ("writer, binary envelopes", &binary),
        ("writer, JSON", &json_run),
    ] {
        println!(
            "| {name:<28} | {:>12.0} | {:>9.2} | {:>9.2} | {:>7.0}% |",
            run.records_per_s,
            run.p50_ms,
            run.p99_ms,
            100.0 * run.records_per_s / raw
        );
    }
    println!(
        "| {:<28} | {:>12.0} | {:>9} | {:>9} | {:>7}% |",
        "raw SQLite, same bytes", raw, "-", "-", 100
    );
    println!(
        "\nlog bytes per record: {:.0} (the same rows in both databases)",
        bytes as f64 / binary.log.len().max(1) as f64
    );
    let goal = binary.records_per_s >= 20_000.0 && binary.records_per_s >= 0.5 * raw;
    println!(
        "goal (>= 20000 records/s and >= 50% of raw, binary endpoint): {}",
        if goal { "met" } else { "MISSED" }
    );

    if let Some(path) = &args.json {
        let report = json!({
            "records_per_s": binary.records_per_s,
            "raw_sqlite_records_per_s": raw,
            "p50_ack_ms": binary.p50_ms,
            "p99_ack_ms": binary.p99_ms,
            "json_records_per_s": json_run.records_per_s,
            "json_p50_ack_ms": json_run.p50_ms,
            "json_p99_ack_ms": json_run.p99_ms,
            "inputs": {
                "records": args.records,
                "batch": args.batch,
                "clients": args.clients,
                "shards": args.shards,
                "dimension": DIMENSION,
                "seed": args.seed,
                "endpoint": "binary",
            },
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn run_writer(args: &Args, endpoint: Endpoint) -> anyhow::Result<Run> {
    let dir = std::env::temp_dir().join(format!(
        "tidemark-bench-writer-{}-{}",
        endpoint.name(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let token = issue_token(&args.writer, &dir, NAMESPACE, "read,write,admin")?;
    let writer = WriterProcess::start_binary(&args.writer, &dir)?;
    let client = WriterClient::new(&writer.base_url, NAMESPACE, &token, Duration::from_secs(60));
    client.create_collection(COLLECTION, DIMENSION, args.shards)?;

    let requests = args.records / args.batch;
    // Bodies are built before the clock starts: the bench measures the
    // writer, not the client's encoding.
    let bodies = Arc::new(build_bodies(args, endpoint, requests)?);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..args.clients)
        .map(|_| {
            let client = client.clone();
            let bodies = Arc::clone(&bodies);
            let next = Arc::clone(&next);
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = bodies.get(i) else {
                        return Ok(latencies);
                    };
                    let sent = Instant::now();
                    match endpoint {
                        Endpoint::Binary => {
                            client.write_batch(COLLECTION, body)?;
                        }
                        Endpoint::Json => {
                            let ops: Value = serde_json::from_slice(body)?;
                            client.write_json(COLLECTION, &ops)?;
                        }
                    }
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    writer.kill()?;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let records = requests * args.batch;
    let log = read_log_rows(&dir.join("tidemark.db"))?;
    if log.len() as u64 != records {
        bail!(
            "the writer's log holds {} rows, {records} were acknowledged",
            log.len()
        );
    }
    let run = Run {
        records_per_s: records as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        log,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

/// One body per request: binary envelopes, or JSON `ops` arrays (parsed
/// back by the client thread only to hand ureq a `Value`).
fn build_bodies(args: &Args, endpoint: Endpoint, requests: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    let limits = Limits::default();
    let key = CollectionKey::new(Namespace::new(NAMESPACE)?, CollectionName::new(COLLECTION)?);
    let mut rng = SplitMix::new(args.seed);
    let mut bodies = Vec::with_capacity(requests as usize);
    for r in 0..requests {
        let mut ops = Vec::with_capacity(args.batch as usize);
        let mut json_ops = Vec::with_capacity(args.batch as usize);
        for i in 0..args.batch {
            let n = r * args.batch + i;
            let id = format!("doc-{n:08}");
            let vector: Vec<f32> = (0..DIMENSION).map(|_| rng.unit_f32()).collect();
            let mut fields = Map::new();
            fields.insert("title".into(), json!(format!("document {n}")));
            fields.insert("n".into(), json!(n));
            fields.insert(
                "tag".into(),
                json!(["red", "green", "blue"][(n % 3) as usize]),
            );
            match endpoint {
                Endpoint::Binary => ops.push(WriteOp::put(
                    RecordId::new(id, &limits)?,
                    fields,
                    Some(vector),
                )),
                Endpoint::Json => json_ops
                    .push(json!({"op": "put", "id": id, "fields": fields, "vector": vector})),
            }
        }
        bodies.push(match endpoint {
            Endpoint::Binary => wire::encode(&Message::WriteBatch(WriteBatch {
                collection: key.clone(),
                client_ref: r,
                ops,
            })),
            Endpoint::Json => serde_json::to_vec(&json_ops)?,
        });
    }
    Ok(bodies)
}

fn read_log_rows(db: &Path) -> anyhow::Result<Vec<LogRow>> {
    let conn = Connection::open(db)?;
    // Offsets interleaved across shards, as batches spread over shards
    // arrive at the writer.
    let mut stmt = conn.prepare(
        "SELECT namespace, collection, shard, offset, entry FROM log ORDER BY offset, shard",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Inserts `log` into a fresh database with the writer's `log` table and
/// durability, `batch` rows per transaction; returns rows per second.
fn raw_sqlite(log: &[LogRow], batch: usize) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-raw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut conn = Connection::open(dir.join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
    conn.execute_batch(
        "CREATE TABLE log (
            namespace  TEXT    NOT NULL,
            collection TEXT    NOT NULL,
            shard      INTEGER NOT NULL,
            offset     INTEGER NOT NULL,
            entry      BLOB    NOT NULL,
            PRIMARY KEY (namespace, collection, shard, offset)
        ) WITHOUT ROWID;",
    )?;
    // Insert in the order the writer would: offsets ascending per shard,
    // shards interleaved as batches arrive.
    let started = Instant::now();
    for chunk in log.chunks(batch) {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO log (namespace, collection, shard, offset, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (ns, c, shard, offset, entry) in chunk {
                insert.execute(params![ns, c, shard, offset, entry])?;
            }
        }
        tx.commit()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(log.len() as f64 / elapsed)
}
