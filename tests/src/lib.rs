//! The harness of Tidemark's end-to-end suites: real processes on loopback.
//!
//! Suites start the binaries `cargo xtask test` has built (the writer from the
//! shared target dir) and talk to them over HTTP on 127.0.0.1 only.
//!
//! # Layout
//!
//! - `lib.rs`: [`WriterProcess`], locating binaries, HTTP helpers.
//! - `client.rs`: [`client::WriterClient`], an authenticated client of one
//!   writer (tokens, collections, writes, reads).
//! - `shard_log.rs`: [`shard_log::read_log`], a shard's whole log read back
//!   through the API and checked (signatures, consecutive offsets).
//! - `rng.rs`: [`rng::SplitMix`], the seeded generator suites draw from.
//! - `bin/writer_bench.rs`: the driver of `cargo xtask bench writer`.

pub mod client;
pub mod rng;
pub mod shard_log;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// The workspace's target dir, as `cargo xtask` sets it.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A binary of the workspace, built beforehand by `cargo build` (the xtask
/// does it before running these suites).
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = target_dir().join("debug").join(name);
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build -p tidemark-regional-writer` first (cargo xtask test does)",
            path.display()
        );
    }
    Ok(path)
}

/// A `tidemark-writer` process on 127.0.0.1 with a port picked by the OS;
/// killed when dropped.
pub struct WriterProcess {
    child: Child,
    pub base_url: String,
}

impl WriterProcess {
    /// The debug build `cargo xtask test` made, serving `data_dir`.
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_binary(&workspace_binary("tidemark-writer")?, data_dir)
    }

    /// A given writer binary (the bench runs the release build).
    pub fn start_binary(binary: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            // Only warnings: suites start many writers and read their output
            // only when something fails.
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("writer stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base_url) => Ok(Self { child, base_url }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the writer did not report its address within 60 s")
            }
        }
    }

    pub fn get_json(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        get_json(&format!("{}{path}", self.base_url))
    }

    /// SIGKILL, the crash a writer must survive: no shutdown code runs, and
    /// whatever SQLite had not made durable is gone with the process.
    pub fn kill(mut self) -> anyhow::Result<()> {
        // `Child::kill` is SIGKILL on Unix.
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WriterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token from the writer binary's `token` subcommand, signed with the
/// issuer key under `data_dir` (created there if missing).
pub fn issue_token(
    binary: &Path,
    data_dir: &Path,
    namespace: &str,
    scopes: &str,
) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["token", "--namespace", namespace, "--scopes", scopes])
        .env("RUST_LOG", "warn")
        .output()?;
    if !output.status.success() {
        bail!(
            "tidemark-writer token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let token = String::from_utf8(output.stdout)?.trim().to_string();
    if token.is_empty() {
        bail!("tidemark-writer token printed nothing");
    }
    Ok(token)
}

/// An HTTP agent that returns 4xx/5xx as answers, bounded in time.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// GET `url` and parse its JSON body, whatever the status.
pub fn get_json(url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut response = agent(Duration::from_secs(10)).get(url).call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_json()?;
    Ok((status, body))
}
