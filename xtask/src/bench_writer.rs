//! `cargo xtask bench writer [--json FILE] [driver flags]`: durable ingest
//! into the real writer against raw SQLite with the same bytes and
//! durability.
//!
//! Builds the writer and the e2e crate's `writer_bench` driver in release and
//! runs the driver, which starts the writer on loopback, measures, prints its
//! inputs and a table, and writes the JSON. The driver lives in the e2e crate
//! (it needs core's wire format, an HTTP client and rusqlite); this command
//! only builds and runs it, so xtask stays free of those dependencies.

use std::process::ExitCode;

use crate::provision::run;
use crate::toolchain::Toolchain;

pub fn run_bench(t: &Toolchain, args: &[&str]) -> anyhow::Result<ExitCode> {
    println!("bench writer: building the writer and the driver (release)");
    run(t.cargo().args([
        "build",
        "--locked",
        "--release",
        "-p",
        "tidemark-regional-writer",
        "-p",
        "tidemark-e2e",
        "--bin",
        "tidemark-writer",
        "--bin",
        "writer_bench",
    ]))?;
    let release = t.target_dir.join("release");
    // Flags pass through: --json FILE, and the driver's --records, --batch,
    // --clients, --shards, --seed.
    run(t
        .command(release.join("writer_bench"))
        .arg("--writer")
        .arg(release.join("tidemark-writer"))
        .args(args))?;
    Ok(ExitCode::SUCCESS)
}
