//! `cargo xtask`: the project's own commands.
//!
//! The README's two commands are `cargo xtask demo` and `cargo xtask test`.
//! Both provision whatever the machine is missing first (see [`provision`]),
//! so a fresh clone on a fresh Debian machine needs nothing but Rust, node and
//! access to the package registries.
//!
//! # Layout
//!
//! - `toolchain.rs`: where tools live (the per-user cache) and the environment
//!   every sub-command runs in.
//! - `provision.rs`: idempotent installs, each announced before it runs.
//! - `pipeline.rs`: ordered steps, stop at the first failure, a summary.
//! - `sdk_package.rs`: `cargo xtask build sdk`, the npm package `tidemark`.
//! - `test.rs`: the steps of `cargo xtask test`.
//! - `test_writer.rs`: a real writer on 127.0.0.1 for suites that need one.
//! - `simd_scan.rs`: proof that a wasm module really contains SIMD128 code.
//! - `demo.rs`: `cargo xtask demo`.
//! - `bench_search.rs`: `cargo xtask bench search`, Tidemark's wasm search
//!   against the npm peers.
//! - `bench_writer.rs`: `cargo xtask bench writer`, durable ingest into the
//!   real writer against raw SQLite.
//! - `bench_edge.rs`: `cargo xtask bench edge`, the edge worker in workerd
//!   next to the real writer.
//! - `bench_sdk.rs`: `cargo xtask bench sdk`, the browser SDK in headless
//!   Chromium against the real writer.

mod bench_edge;
mod bench_sdk;
mod bench_search;
mod bench_writer;
mod demo;
mod pipeline;
mod provision;
mod sdk_package;
mod simd_scan;
mod test;
mod test_writer;
mod toolchain;

use std::process::ExitCode;

use toolchain::Toolchain;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test        provision what is missing, then run every check and test suite
  demo        provision what is missing, then start the demo
  setup       provision only (idempotent; says what it installs)
  build edge  build the edge worker with worker-build (used by wrangler.toml)
  build sdk   build the npm package `tidemark` into browser-sdk/pkg
  bench search [--data DIR] [--json FILE]
              seal the dataset natively, then measure Tidemark's wasm search and
              the npm peers in one node process (default data:
              ../shared/data/debian-minilm-20k)
  bench writer [--json FILE] [--records N --batch N --clients N --shards N --seed N]
              durable ingest into the release writer on loopback (binary and JSON
              endpoints) against raw SQLite inserts of the same bytes
  bench edge [--json FILE]
              the edge in workerd next to the real writer: write → visible with
              push (p50, p99), cold start to first search on 10k records, memory
              for the 20k set; prints the wasm's gzipped size
  bench sdk [--json FILE]
              the SDK's npm package in headless Chromium against the release
              writer: a new client bootstrapping 50k records from snapshots (to
              searchable, to persisted in IndexedDB), search p50 on 20k, bytes
              per record change against JSON
  simd-scan F count the SIMD128 instructions in the wasm module F

environment:
  TIDEMARK_CACHE   where tools are installed (default: ~/.cache/tidemark)
  TIDEMARK_ONLY    run only the test steps whose names contain this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    match args {
        ["test"] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            Ok(test::suite(&toolchain))
        }
        ["demo"] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            demo::run_demo(&toolchain)
        }
        ["setup"] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            println!(
                "setup: everything is in place ({})",
                toolchain.cache.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ["build", "edge"] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            test::build_edge(&toolchain)?;
            Ok(ExitCode::SUCCESS)
        }
        ["build", "sdk"] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            sdk_package::build(&toolchain)?;
            Ok(ExitCode::SUCCESS)
        }
        ["bench", "search", rest @ ..] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            bench_search::run_bench(&toolchain, rest)
        }
        ["bench", "writer", rest @ ..] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            bench_writer::run_bench(&toolchain, rest)
        }
        ["bench", "edge", rest @ ..] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            bench_edge::run_bench(&toolchain, rest)
        }
        ["bench", "sdk", rest @ ..] => {
            let toolchain = Toolchain::discover()?;
            provision::all(&toolchain)?;
            bench_sdk::run_bench(&toolchain, rest)
        }
        ["simd-scan", file] => {
            let counts = simd_scan::scan_file(std::path::Path::new(file))?;
            println!("{counts}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}
