//! `tidemark-writer import`: bulk-loads records into a running writer over
//! its HTTP API, with a progress line.
//!
//! Going through the API, rather than writing the database directly, keeps
//! one process owning the database and makes an import exactly like any
//! other client's writes (validated, logged, pushed to replicas). Re-running
//! an import changes nothing: a put of identical fields and vector is no
//! change and produces no log entry.
//!
//! Two inputs:
//! - `--dataset DIR` in the layout of `shared/data/debian-minilm-20k`:
//!   `base.f32` (rows × dim little-endian f32) and `texts.jsonl` (one JSON
//!   string per row, `name: description`). Record ids are the names.
//! - `--jsonl FILE`: one `{"id", "fields", "vector"}` object per line.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::http::{Method, header};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::config::ImportArgs;
use crate::http_client::HttpClient;

/// Batches in flight at once: enough to overlap the writer's fsyncs.
const IN_FLIGHT: usize = 4;

pub struct Record {
    pub id: String,
    pub fields: Value,
    pub vector: Vec<f32>,
}

pub async fn run(args: &ImportArgs, token: &str) -> anyhow::Result<()> {
    let records = match (&args.dataset, &args.jsonl) {
        (Some(dir), None) => read_dataset(dir)?,
        (None, Some(file)) => read_jsonl(file)?,
        _ => bail!("give exactly one of --dataset DIR or --jsonl FILE"),
    };
    let dimension = records
        .first()
        .map(|r| r.vector.len())
        .context("nothing to import")?;
    let client = HttpClient::new(Duration::from_secs(60));
    let auth = [
        (header::AUTHORIZATION, format!("Bearer {token}")),
        (header::CONTENT_TYPE, "application/json".into()),
    ];
    let base = format!(
        "{}/v1/ns/{}/collections/{}",
        args.url.trim_end_matches('/'),
        args.namespace,
        args.collection
    );
    let schema = json!({ "dimension": dimension, "metric": args.metric, "shards": args.shards });
    let created = client
        .send(Method::PUT, &base, &auth, schema.to_string())
        .await?;
    ensure!(
        created.status.is_success(),
        "creating the collection failed ({}): {}",
        created.status,
        String::from_utf8_lossy(&created.body)
    );

    let total = records.len();
    let started = Instant::now();
    let mut done = 0usize;
    let mut tasks = JoinSet::new();
    let url = format!("{base}/records");
    for chunk in records.chunks(args.batch.max(1)) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|r| json!({ "op": "put", "id": r.id, "fields": r.fields, "vector": r.vector }))
            .collect();
        let body = json!({ "ops": ops }).to_string();
        let (client, url, auth, count) = (client.clone(), url.clone(), auth.clone(), chunk.len());
        tasks.spawn(async move {
            let answer = client.send(Method::POST, &url, &auth, body).await?;
            ensure!(
                answer.status.is_success(),
                "a batch failed ({}): {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            anyhow::Ok(count)
        });
        if tasks.len() >= IN_FLIGHT {
            done += joined(tasks.join_next().await)?;
            progress(done, total, started);
        }
    }
    while let Some(result) = tasks.join_next().await {
        done += joined(Some(result))?;
        progress(done, total, started);
    }
    eprintln!();
    println!(
        "imported {total} records into {}/{} in {:.1} s",
        args.namespace,
        args.collection,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn joined(
    result: Option<Result<anyhow::Result<usize>, tokio::task::JoinError>>,
) -> anyhow::Result<usize> {
    match result {
        Some(Ok(count)) => count,
        Some(Err(err)) => Err(err.into()),
        None => Ok(0),
    }
}

fn progress(done: usize, total: usize, started: Instant) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} records, {rate:.0}/s",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
    let _ = err.flush();
}

/// The shared dataset layout: `base.f32` + `texts.jsonl`.
pub fn read_dataset(dir: &Path) -> anyhow::Result<Vec<Record>> {
    let texts = std::fs::File::open(dir.join("texts.jsonl"))
        .with_context(|| format!("opening {}/texts.jsonl", dir.display()))?;
    let texts: Vec<String> = std::io::BufReader::new(texts)
        .lines()
        .map(|line| Ok(serde_json::from_str::<String>(&line?)?))
        .collect::<anyhow::Result<_>>()?;
    let raw = std::fs::read(dir.join("base.f32"))
        .with_context(|| format!("reading {}/base.f32", dir.display()))?;
    ensure!(
        !texts.is_empty() && raw.len() % (4 * texts.len()) == 0,
        "base.f32 does not hold one vector per line of texts.jsonl"
    );
    let dimension = raw.len() / 4 / texts.len();
    let floats: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(texts
        .into_iter()
        .enumerate()
        .map(|(row, text)| {
            let name = text.split(':').next().unwrap_or(&text).trim().to_string();
            Record {
                id: name.clone(),
                fields: json!({ "name": name, "text": text, "row": row }),
                vector: floats[row * dimension..(row + 1) * dimension].to_vec(),
            }
        })
        .collect())
}

fn read_jsonl(file: &Path) -> anyhow::Result<Vec<Record>> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    reader
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(n, line)| {
            let value: Value =
                serde_json::from_str(&line?).with_context(|| format!("line {}", n + 1))?;
            let id = value["id"]
                .as_str()
                .with_context(|| format!("line {}: no string `id`", n + 1))?
                .to_string();
            let vector = value["vector"]
                .as_array()
                .with_context(|| format!("line {}: no `vector` array", n + 1))?
                .iter()
                .map(|x| {
                    x.as_f64().map(|x| x as f32).with_context(|| {
                        format!("line {}: a vector component is not a number", n + 1)
                    })
                })
                .collect::<anyhow::Result<Vec<f32>>>()?;
            Ok(Record {
                id,
                fields: value.get("fields").cloned().unwrap_or_else(|| json!({})),
                vector,
            })
        })
        .collect()
}
