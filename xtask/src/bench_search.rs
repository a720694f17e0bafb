//! `cargo xtask bench search [--data DIR] [--json FILE]`: Tidemark's search
//! in wasm against the npm peers, in one node process on one thread.
//!
//! 1. Provision the peers (`bench/search/package-lock.json`, installed into
//!    the tools cache like the root packages; hnswlib-node's addon is built
//!    offline against `/usr/include/node`, and left out if that fails).
//! 2. Seal the dataset natively (`seal`, release), as the writer does: the
//!    graph is built once with a seed and shipped to wasm as bytes. The
//!    segment is cached under a key of the dataset, the parameters and core's
//!    vector sources; the build time reported is that of the native build.
//! 3. Build the wasm module (release, simd128) and bind it with the pinned
//!    wasm-bindgen CLI for node.
//! 4. Run `bench/search/bench.mjs`, print the table (inputs first) and the
//!    goals, and write the JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::provision::{self, NodeScripts, capture, run};
use crate::simd_scan;
use crate::toolchain::{Toolchain, WASM_TARGET};

const SEED: u64 = 42;
const EF_CONSTRUCTION: u32 = 200;
const LAYER0_LINKS: u32 = 32;
const DIM: usize = 384;
const EFS: &[usize] = &[16, 24, 32, 48, 64];
const PEER_EFS: &[usize] = &[16, 32, 48, 64, 100];
const EDGEVEC_EF: usize = 64;
const ROUNDS: usize = 5;
const VOY_QUERIES: usize = 20;
const PEERS: &[&str] = &["hnswlib-wasm", "hnswlib-node", "edgevec", "voy-search"];

pub fn run_bench(t: &Toolchain, args: &[&str]) -> anyhow::Result<ExitCode> {
    let mut data = t.repo.join("../shared/data/debian-minilm-20k");
    let mut json_out = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--data" => data = PathBuf::from(rest.next().context("--data DIR")?),
            "--json" => json_out = Some(PathBuf::from(rest.next().context("--json FILE")?)),
            other => bail!("unknown argument {other:?}: bench search [--data DIR] [--json FILE]"),
        }
    }
    let data = data
        .canonicalize()
        .with_context(|| format!("dataset {} not found", data.display()))?;
    let base_len = std::fs::metadata(data.join("base.f32"))?.len() as usize;
    let query_len = std::fs::metadata(data.join("queries.f32"))?.len() as usize;
    let work = t.target_dir.join("bench-search");
    std::fs::create_dir_all(&work)?;

    let modules = provision::node_packages_in(t, Path::new("bench/search"), NodeScripts::Skip)?;
    let hnswlib_node = hnswlib_node_addon(t, &modules);

    println!("bench search: inputs");
    println!("  dataset      {}", data.display());
    println!(
        "  vectors      {} × {DIM} f32, {} queries, k = 10, exact ground truth",
        base_len / (4 * DIM),
        query_len / (4 * DIM)
    );
    println!(
        "  tidemark     seed {SEED}, ef_construction {EF_CONSTRUCTION}, layer-0 links {LAYER0_LINKS}, ef {EFS:?}"
    );
    println!(
        "  peers        {PEERS:?}, ef {PEER_EFS:?} (edgevec: {EDGEVEC_EF}, fixed at build), M = 16, efConstruction 200"
    );
    println!(
        "  timing       one node process, one thread; queries per CPU-second, median of {ROUNDS} passes after a warm-up"
    );
    println!(
        "  node         {}",
        capture(t.command("node").arg("--version"))?.trim()
    );
    println!("  cpu          {}", cpu_model());
    if let Err(why) = &hnswlib_node {
        println!("  note         hnswlib-node unavailable: {why}");
    }

    let (segment, native_results) = seal(t, &data, &work)?;
    let pkg = build_wasm(t, &work)?;

    let config = json!({
        "data": data, "dim": DIM, "bench_dir": t.repo.join("bench/search"),
        "pkg": pkg, "segment": segment, "native_results": native_results,
        "out": work.join("results.json"), "rounds": ROUNDS, "efs": EFS,
        "peer_efs": PEER_EFS, "edgevec_ef": EDGEVEC_EF, "voy_queries": VOY_QUERIES,
        "seed": SEED, "ef_construction": EF_CONSTRUCTION, "layer0_links": LAYER0_LINKS,
        "peers": PEERS.iter().filter(|p| **p != "hnswlib-node" || hnswlib_node.is_ok()).collect::<Vec<_>>(),
    });
    let config_path = work.join("config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    println!(
        "\nbench search: measuring (node {})",
        t.repo.join("bench/search/bench.mjs").display()
    );
    run(t
        .command("node")
        .arg(t.repo.join("bench/search/bench.mjs"))
        .arg(&config_path))?;

    let results: Value = serde_json::from_slice(&std::fs::read(work.join("results.json"))?)?;
    print_table(&results);
    let ok = print_goals(&results);
    if let Some(path) = json_out {
        let out = json!({
            "dataset": results["dataset"],
            "rows": results["rows"],
            "scan": results["scan"],
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&out)?)?;
        println!("\nbench search: wrote {}", path.display());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// hnswlib-node's native addon, built offline: `npm ci` ran without install
/// scripts (its script would download node headers), so build it here
/// against the headers Debian's nodejs ships.
fn hnswlib_node_addon(t: &Toolchain, modules: &Path) -> anyhow::Result<()> {
    let dir = modules.join("hnswlib-node");
    if dir.join("build/Release/addon.node").exists() {
        return Ok(());
    }
    ensure!(
        Path::new("/usr/include/node/node.h").exists(),
        "no node headers in /usr/include/node"
    );
    println!("provision: building hnswlib-node's addon with node-gyp (offline, --nodedir=/usr)");
    run(t
        .command("npx")
        .args(["--yes", "node-gyp", "rebuild", "--nodedir=/usr"])
        .current_dir(&dir))
}

/// The sealed segment and the native results, from the cache when the
/// dataset, parameters and core's vector code are unchanged.
fn seal(t: &Toolchain, data: &Path, work: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    run(t.cargo().args([
        "build",
        "--locked",
        "--release",
        "-p",
        "tidemark-bench-search",
        "--bin",
        "seal",
    ]))?;
    let mut parts: Vec<Vec<u8>> = vec![
        std::fs::read(data.join("base.f32"))?,
        std::fs::read(data.join("queries.f32"))?,
        format!("{SEED} {EF_CONSTRUCTION} {LAYER0_LINKS} {EFS:?}").into_bytes(),
    ];
    let mut sources: Vec<PathBuf> = std::fs::read_dir(t.repo.join("core/src/vector"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    sources.push(t.repo.join("bench/search-wasm/src/bin/seal.rs"));
    sources.sort();
    for source in sources {
        parts.push(std::fs::read(source)?);
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let dir = work.join(format!("sealed-{:016x}", provision::fnv1a64(&refs)));
    let (segment, results) = (dir.join("segment.bin"), dir.join("native.json"));
    if segment.exists() && results.exists() {
        let built: Value = serde_json::from_slice(&std::fs::read(&results)?)?;
        println!(
            "\nbench search: reusing the segment sealed earlier ({}; native build took {:.1} s)",
            dir.display(),
            built["build_s"].as_f64().unwrap_or(f64::NAN)
        );
        return Ok((segment, results));
    }
    std::fs::create_dir_all(&dir)?;
    println!("\nbench search: sealing natively (release build, all cores)");
    let efs: Vec<String> = EFS.iter().map(usize::to_string).collect();
    run(t
        .command(t.target_dir.join("release/seal"))
        .arg(data)
        .arg(&segment)
        .arg(dir.join("native.json.partial"))
        .args(["--seed", &SEED.to_string()])
        .args(["--ef-construction", &EF_CONSTRUCTION.to_string()])
        .args(["--layer0-links", &LAYER0_LINKS.to_string()])
        .args(["--efs", &efs.join(",")]))?;
    std::fs::rename(dir.join("native.json.partial"), &results)?;
    Ok((segment, results))
}

fn build_wasm(t: &Toolchain, work: &Path) -> anyhow::Result<PathBuf> {
    println!("\nbench search: building the wasm module (release, simd128)");
    run(t.cargo().args([
        "build",
        "--locked",
        "--release",
        "--target",
        WASM_TARGET,
        "-p",
        "tidemark-bench-search",
        "--lib",
    ]))?;
    let wasm = t
        .target_dir
        .join(WASM_TARGET)
        .join("release/tidemark_bench_search.wasm");
    let pkg = work.join("pkg");
    run(t
        .command(t.tool("wasm-bindgen"))
        .args(["--target", "nodejs", "--out-dir"])
        .arg(&pkg)
        .arg(&wasm))?;
    // The workspace's package.json says "type": "module"; the nodejs
    // target's glue is CommonJS.
    std::fs::write(pkg.join("package.json"), "{\"type\": \"commonjs\"}\n")?;
    let counts = simd_scan::scan_file(&pkg.join("tidemark_bench_search_bg.wasm"))?;
    println!("simd scan: {counts}");
    ensure!(counts.f32x4_arithmetic > 0, "the bench module lost simd128");
    Ok(pkg)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .map(|model| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            format!("{model}, {cores} cores (shared: figures are noisy; ratios are from this run)")
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_table(results: &Value) {
    println!(
        "\n{:<30} {:<52} {:>9} {:>10} {:>8} {:>10}",
        "engine", "params", "recall@10", "qps (cpu)", "build s", "memory MB"
    );
    let cell = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x}"));
    for row in results["rows"].as_array().into_iter().flatten() {
        println!(
            "{:<30} {:<52} {:>9} {:>10} {:>8} {:>10}",
            row["engine"].as_str().unwrap_or(""),
            row["params"].as_str().unwrap_or(""),
            cell(&row["recall_at_10"]),
            cell(&row["qps_cpu"]),
            cell(&row["build_s"]),
            cell(&row["memory_mb"]),
        );
    }
    let scan = &results["scan"];
    println!(
        "\nscan (ns per 384-d vector, 20k rows): f32 {}, int8 {}, bandwidth bound (streaming read of the f32 bytes) {}",
        cell(&scan["f32_ns_per_vector"]),
        cell(&scan["int8_ns_per_vector"]),
        cell(&scan["bandwidth_bound_ns_per_vector"])
    );
    for note in results["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or(""));
    }
}

/// The goals, from this run's figures. Returns false only when the
/// run is wrong (native and wasm results differ), not when a goal is missed.
fn print_goals(results: &Value) -> bool {
    let rows: Vec<&Value> = results["rows"].as_array().into_iter().flatten().collect();
    let best = |engine: &str, params_has: &str| {
        rows.iter()
            .filter(|r| r["engine"].as_str().is_some_and(|e| e.starts_with(engine)))
            .filter(|r| r["params"].as_str().is_some_and(|p| p.contains(params_has)))
            .filter(|r| r["recall_at_10"].as_f64().unwrap_or(0.0) >= 0.98)
            .max_by(|a, b| {
                a["qps_cpu"]
                    .as_f64()
                    .partial_cmp(&b["qps_cpu"].as_f64())
                    .unwrap()
            })
            .map(|r| {
                (
                    r["qps_cpu"].as_f64().unwrap_or(0.0),
                    r["params"].as_str().unwrap_or("").to_string(),
                )
            })
    };
    println!("\ngoals (this run):");
    let mark = |ok: bool| if ok { "met    " } else { "NOT MET" };
    let tidemark = best("tidemark", "ef=");
    for (peer, factor) in [("hnswlib-wasm", 2.0), ("hnswlib-node", 1.0)] {
        match (&tidemark, best(peer, "")) {
            (Some((t, tp)), Some((p, pp))) => println!(
                "  {} tidemark wasm {t:.0} q/s ({tp}) = {:.2}× {peer} {p:.0} q/s ({pp}) at recall@10 ≥ 0.98 (goal ≥ {factor}×)",
                mark(t / p >= factor),
                t / p
            ),
            _ => println!("  NOT MET no rows at recall@10 ≥ 0.98 for tidemark or {peer}"),
        }
    }
    let scan = &results["scan"];
    let (f32_ns, int8_ns, bound) = (
        scan["f32_ns_per_vector"].as_f64().unwrap_or(f64::NAN),
        scan["int8_ns_per_vector"].as_f64().unwrap_or(f64::NAN),
        scan["bandwidth_bound_ns_per_vector"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    println!(
        "  {} exact f32 scan at {:.2}× the bandwidth bound (goal ≥ 0.8×)",
        mark(bound / f32_ns >= 0.8),
        bound / f32_ns
    );
    println!(
        "  {} int8 scan {:.2}× faster than f32 (goal ≥ 2×)",
        mark(f32_ns / int8_ns >= 2.0),
        f32_ns / int8_ns
    );
    let mut consistent = true;
    for check in results["checks"].as_array().into_iter().flatten() {
        let ok = check["ok"].as_bool().unwrap_or(false);
        let name = check["check"].as_str().unwrap_or("");
        if name.starts_with("wasm ids") && !ok {
            consistent = false;
        }
        println!(
            "  {} {name}: {}",
            mark(ok),
            check["detail"].as_str().unwrap_or("")
        );
    }
    consistent
}
