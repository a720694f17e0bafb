//! `cargo xtask bench sdk [--json FILE]`: the browser SDK in headless
//! Chromium against the real writer, on loopback: a new client bootstrapping
//! 50k records from snapshots (to searchable, to persisted in IndexedDB),
//! local search p50 on 20k records, and bytes on the wire per record change
//! against the same change as JSON.
//!
//! Builds the release writer and the npm package (`cargo xtask build sdk`),
//! then runs `bench/sdk/bench.mjs`, which loads the writer (a template data
//! dir kept under `target/bench-sdk`, built on the first run), serves the
//! page `bench/sdk/` with the package, drives fresh Chromium profiles with
//! Playwright, prints its inputs, the figures and a breakdown, and writes
//! the JSON. This checks the goal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::provision::run;
use crate::toolchain::Toolchain;
use crate::{bench_edge, sdk_package};

/// The goal: a new client searchable on 50k records within a second.
const GOAL_BOOTSTRAP_MS: f64 = 1000.0;

pub fn run_bench(t: &Toolchain, args: &[&str]) -> anyhow::Result<ExitCode> {
    let mut json_out = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--json" => json_out = Some(PathBuf::from(rest.next().context("--json FILE")?)),
            other => bail!("unknown argument {other:?}: bench sdk [--json FILE]"),
        }
    }
    println!("bench sdk: building the writer (release) and the SDK's npm package");
    bench_edge::build_release_writer(t)?;
    sdk_package::build(t)?;

    let work = t.target_dir.join("bench-sdk");
    std::fs::create_dir_all(&work)?;
    let mut node = t.command("node");
    node.env(
        "TIDEMARK_DATA",
        t.repo.join("../shared/data/debian-minilm-20k"),
    )
    .env("TIDEMARK_WRITER_PROFILE", "release")
    .arg(t.repo.join("bench/sdk/bench.mjs"))
    .arg("--work")
    .arg(&work);
    if let Some(path) = &json_out {
        // node runs in the repo; a relative path means the caller's directory.
        let path = std::env::current_dir()?.join(path);
        node.arg("--json").arg(path);
    }
    run(&mut node)?;

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("results.json"))?)?;
    match results["bootstrap_50k_ms"].as_f64() {
        Some(ms) => println!(
            "bench sdk: goal: 50k records searchable in a new client ≤ {GOAL_BOOTSTRAP_MS} ms: {} ({ms:.0} ms)",
            if ms <= GOAL_BOOTSTRAP_MS {
                "met"
            } else {
                "missed"
            }
        ),
        None => bail!("bench sdk: bootstrap_50k_ms was not measured"),
    }
    Ok(ExitCode::SUCCESS)
}
