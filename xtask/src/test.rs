//! `cargo xtask test`: every check and suite, in the order that fails fastest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, ensure};

use crate::pipeline::Pipeline;
use crate::provision::{capture, run};
use crate::test_writer::TestWriter;
use crate::toolchain::{Toolchain, WASM_TARGET};
use crate::{sdk_package, simd_scan};

/// The crates that only exist on wasm32 (empty on the host).
const WASM_CRATES: &[&str] = &[
    "tidemark-core",
    "tidemark-edge-worker",
    "tidemark-browser-sdk",
    "tidemark-bench-search",
];
const NATIVE_CRATES: &[&str] = &[
    "tidemark-core",
    "tidemark-regional-writer",
    "tidemark-bench-search",
    "xtask",
];

pub fn suite(toolchain: &Toolchain) -> ExitCode {
    let t = toolchain;
    let mut p = Pipeline::new("test");
    p.step("cargo fmt --check", || {
        run(t.cargo().args(["fmt", "--all", "--check"]))
    });
    p.step("clippy (host)", || {
        run(t.cargo().args([
            "clippy",
            "--locked",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    p.step("clippy (wasm32)", || {
        run(t
            .cargo()
            .args([
                "clippy",
                "--locked",
                "--target",
                WASM_TARGET,
                "--all-targets",
            ])
            .args(package_args(WASM_CRATES))
            .args(["--", "-D", "warnings"]))
    });
    p.step("native tests", || {
        run(t
            .cargo()
            .args(["test", "--locked"])
            .args(package_args(NATIVE_CRATES)))
    });
    p.step("core on wasm32 + simd128 (node)", || core_wasm(t));
    p.step("browser SDK (node)", || sdk(t, &["--node"]));
    p.step("browser SDK (headless Chromium)", || {
        // The convergence and bad-answer tests talk to a real writer; its
        // address reaches the wasm tests at compile time (`option_env!`).
        let writer = TestWriter::start(t)?;
        let result = run(t
            .command(t.tool("wasm-pack"))
            .args([
                "test",
                "--headless",
                "--chrome",
                "--chromedriver",
                "/usr/bin/chromedriver",
                "browser-sdk",
            ])
            .env("TIDEMARK_TEST_WRITER_URL", &writer.url)
            .env("TIDEMARK_TEST_WRITER_TOKEN", &writer.token));
        drop(writer);
        clean_chromium_leftovers();
        result
    });
    p.step("edge worker in workerd", || {
        // The edge suites run the real writer next to the worker.
        run(t
            .cargo()
            .args(["build", "--locked", "-p", "tidemark-regional-writer"]))?;
        build_edge(t)?;
        node_tests(t, "tests/edge")
    });
    p.step("system suite: the demo app in Chromium", || {
        // The demo's parts, built as `cargo xtask demo` builds them.
        run(t
            .cargo()
            .args(["build", "--locked", "-p", "tidemark-regional-writer"]))?;
        build_edge(t)?;
        sdk_package::build(t)?;
        let result = node_tests(t, "tests/system");
        clean_chromium_leftovers();
        result
    });
    p.step("end-to-end suites", || {
        run(t
            .cargo()
            .args(["build", "--locked", "-p", "tidemark-regional-writer"]))?;
        run(t.cargo().args(["test", "--locked", "-p", "tidemark-e2e"]))
    });
    p.finish()
}

fn package_args(crates: &[&str]) -> Vec<String> {
    crates
        .iter()
        .flat_map(|c| ["-p".to_string(), (*c).to_string()])
        .collect()
}

/// Core's tests compiled for wasm32 with simd128 and run under node by
/// wasm-bindgen-test-runner, after checking that the module they run really
/// contains SIMD128 code (a build that lost `+simd128` fails here).
fn core_wasm(t: &Toolchain) -> anyhow::Result<()> {
    let json = capture(t.cargo().args([
        "test",
        "--locked",
        "--no-run",
        "--message-format=json",
        "--target",
        WASM_TARGET,
        "-p",
        "tidemark-core",
    ]))?;
    let modules = test_executables(&json, "tidemark_core");
    ensure!(
        !modules.is_empty(),
        "no wasm test module of tidemark-core was built"
    );
    for module in &modules {
        let counts = simd_scan::scan_file(module)?;
        println!("simd scan: {} — {counts}", module.display());
        ensure!(
            counts.f32x4_arithmetic > 0,
            "{} has no f32x4 arithmetic: the wasm build lost simd128",
            module.display()
        );
    }
    run(t.cargo().args([
        "test",
        "--locked",
        "--target",
        WASM_TARGET,
        "-p",
        "tidemark-core",
    ]))
}

/// The test executables cargo reported for `target_name` in `--message-format=json` output.
fn test_executables(json: &str, target_name: &str) -> Vec<PathBuf> {
    json.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == target_name)
        .filter(|msg| msg["profile"]["test"] == true)
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .collect()
}

fn sdk(t: &Toolchain, mode: &[&str]) -> anyhow::Result<()> {
    run(t
        .command(t.tool("wasm-pack"))
        .arg("test")
        .args(mode)
        .arg("browser-sdk"))
}

/// Chromium leaves its profile dirs in /tmp after every WebDriver session.
fn clean_chromium_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("org.chromium.")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `edge-worker/build/` from worker-build, the way wrangler.toml's build does it.
pub fn build_edge(t: &Toolchain) -> anyhow::Result<()> {
    run(t
        .command(t.tool("worker-build"))
        .arg("--release")
        .current_dir(t.repo.join("edge-worker")))?;
    let wasm = t.repo.join("edge-worker/build/index_bg.wasm");
    ensure!(
        wasm.exists(),
        "worker-build did not produce {}",
        wasm.display()
    );
    Ok(())
}

/// node's own test runner over the `*.test.mjs` files of `dir`.
fn node_tests(t: &Toolchain, dir: &str) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(t.repo.join(dir))
        .with_context(|| format!("reading {dir}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no *.test.mjs in {dir}");
    run(t.command("node").arg("--test").args(&files))
}
