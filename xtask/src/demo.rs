//! `cargo xtask demo`: the main job, started with everything it needs.
//!
//! Starts the regional writer on `data/writer` (git-ignored), imports the
//! shared dataset (20k Debian package descriptions with real embeddings) on
//! the first run, and prints what to try. A second run reuses the data.
//! Ctrl-C reaches the whole foreground process group, so every process the
//! demo started stops with it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};

use anyhow::{Context, bail};

use crate::provision::{capture, run};
use crate::toolchain::Toolchain;

const WRITER_ADDR: &str = "127.0.0.1:7700";
const NAMESPACE: &str = "demo";
const COLLECTION: &str = "packages";

pub fn run_demo(t: &Toolchain) -> anyhow::Result<ExitCode> {
    run(t
        .cargo()
        .args(["build", "--locked", "-p", "tidemark-regional-writer"]))?;
    let writer_bin = t.target_dir.join("debug").join("tidemark-writer");
    let data_dir = t.repo.join("data").join("writer");
    std::fs::create_dir_all(&data_dir)?;
    let dataset = dataset_dir(t)?;

    println!(
        "demo: starting the regional writer on http://{WRITER_ADDR} (data in {})",
        data_dir.display()
    );
    let mut writer = start_writer(t, &writer_bin, &data_dir)?;
    let token = capture(
        t.command(&writer_bin)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["token", "--namespace", NAMESPACE, "--scopes", "read,write"]),
    )?
    .trim()
    .to_string();

    let marker = data_dir.join(format!(".imported-{NAMESPACE}-{COLLECTION}"));
    if marker.exists() {
        println!(
            "demo: reusing the imported dataset (delete {} to import again)",
            data_dir.display()
        );
    } else {
        println!("demo: importing {} (first run only)", dataset.display());
        run(t
            .command(&writer_bin)
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "import",
                "--url",
                &format!("http://{WRITER_ADDR}"),
                "--namespace",
                NAMESPACE,
            ])
            .args(["--collection", COLLECTION, "--dataset"])
            .arg(&dataset))?;
        std::fs::write(&marker, "")?;
    }

    let base = format!("http://{WRITER_ADDR}/v1/ns/{NAMESPACE}/collections/{COLLECTION}");
    println!(
        "\ndemo: ready.\n\n\
         writer   http://{WRITER_ADDR}  (API: docs/api.md)\n\
         token    {token}\n\n\
         try:\n  \
         curl -s -H \"authorization: Bearer $TOKEN\" {base}/records/libgmp-dev\n  \
         curl -s -H \"authorization: Bearer $TOKEN\" {base}\n  \
         curl -s -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n    \
         -d '{{\"ops\":[{{\"op\":\"patch\",\"id\":\"libgmp-dev\",\"fields\":{{\"starred\":true}}}}]}}' {base}/records\n\n\
         (export TOKEN=<the token above>; press Ctrl-C to stop)"
    );
    let status = writer.wait()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `../shared/data/debian-minilm-20k` beside the clone.
fn dataset_dir(t: &Toolchain) -> anyhow::Result<PathBuf> {
    let dir = t
        .repo
        .join("..")
        .join("shared")
        .join("data")
        .join("debian-minilm-20k");
    if !dir.join("base.f32").exists() {
        bail!("the demo dataset is missing: expected {}", dir.display());
    }
    Ok(dir)
}

/// Starts the writer and waits for its `listening on` line.
fn start_writer(t: &Toolchain, bin: &Path, data_dir: &Path) -> anyhow::Result<Child> {
    let mut child = t
        .command(bin)
        .args(["--listen", WRITER_ADDR, "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("writer stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line.starts_with("listening on ") => {
            // Keep draining stdout so the writer never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            Ok(child)
        }
        other => {
            let _ = child.kill();
            bail!("the writer did not start (port {WRITER_ADDR} in use?): {other:?}")
        }
    }
}
