//! `cargo xtask bench edge [--json FILE]`: the edge worker in workerd next
//! to the real writer, on loopback: write → visible at the edge with push,
//! cold start to the first search on a 10k-record shard, and the worker's
//! memory for the shared 20k dataset. The measuring is
//! `tests/edge/bench.mjs`; this builds what it runs and checks the goals.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::provision::run;
use crate::test::build_edge;
use crate::toolchain::Toolchain;

/// The goals, as (key, limit); lower is better for all four.
const GOALS: &[(&str, f64)] = &[
    ("visible_p50_ms", 20.0),
    ("visible_p99_ms", 100.0),
    ("cold_first_search_ms", 150.0),
    ("memory_mb_20k", 45.0),
];

pub fn run_bench(t: &Toolchain, args: &[&str]) -> anyhow::Result<ExitCode> {
    let mut json_out = t.target_dir.join("bench-edge.json");
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--json" => json_out = PathBuf::from(rest.next().context("--json FILE")?),
            other => bail!("unknown argument {other:?}: bench edge [--json FILE]"),
        }
    }
    build_release_writer(t)?;
    build_edge(t)?;
    let wasm = t.repo.join("edge-worker/build/index_bg.wasm");
    let bytes = std::fs::read(&wasm)?;
    println!(
        "bench edge: worker wasm {} bytes, {} bytes gzipped",
        bytes.len(),
        gzipped_len(&wasm)?
    );
    let data = t.repo.join("../shared/data/debian-minilm-20k");
    run(t
        .command("node")
        .env("TIDEMARK_DATA", &data)
        .env("TIDEMARK_WRITER_PROFILE", "release")
        .arg(t.repo.join("tests/edge/bench.mjs"))
        .arg("--json")
        .arg(&json_out))?;
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_out)?)?;
    println!("bench edge: goals");
    for (key, goal) in GOALS {
        match results[key].as_f64() {
            Some(value) => println!(
                "  {key:<22} {value:>8.1}  goal ≤ {goal:<6} {}",
                if value <= *goal { "met" } else { "missed" }
            ),
            None => println!("  {key:<22} not measured"),
        }
    }
    println!("bench edge: wrote {}", json_out.display());
    Ok(ExitCode::SUCCESS)
}

/// The size Cloudflare's limit counts (compressed), via the system gzip
/// reading the file itself (piping both ways would need two threads).
fn gzipped_len(wasm: &std::path::Path) -> anyhow::Result<usize> {
    let out = std::process::Command::new("gzip")
        .arg("-9c")
        .arg(wasm)
        .output()
        .context("running gzip")?;
    anyhow::ensure!(out.status.success(), "gzip failed on {}", wasm.display());
    Ok(out.stdout.len())
}

/// Builds the release writer for the benchmarks: they have it seal whole
/// shards' HNSW graphs (for the snapshots they load) inside a request, which
/// an unoptimised build does not finish within the request's timeout.
pub fn build_release_writer(t: &Toolchain) -> anyhow::Result<()> {
    run(t.cargo().args([
        "build",
        "--locked",
        "--release",
        "-p",
        "tidemark-regional-writer",
    ]))
}
