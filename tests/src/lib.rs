//! The harness of Tidemark's end-to-end suites: real processes on loopback.
//!
//! Suites start the binaries `cargo xtask test` has built (the writer from the
//! shared target dir) and talk to them over HTTP on 127.0.0.1 only.
//!
//! # Layout
//!
//! - `lib.rs`: [`WriterProcess`], locating binaries, HTTP helpers.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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
    pub fn start(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut child = Command::new(workspace_binary("tidemark-writer")?)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
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
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(base_url) => Ok(Self { child, base_url }),
            Err(_) => {
                let _ = child.kill();
                bail!("the writer did not report its address within 20 s")
            }
        }
    }

    pub fn get_json(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        get_json(&format!("{}{path}", self.base_url))
    }
}

impl Drop for WriterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url` and parse its JSON body, whatever the status.
pub fn get_json(url: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(url).call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_json()?;
    Ok((status, body))
}
