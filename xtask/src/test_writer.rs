//! A real `tidemark-writer` for test suites that need one (the SDK's
//! Chromium suite): built from the shared target dir, run on 127.0.0.1 with
//! a port the OS picks and a fresh data dir, stopped (and its data removed)
//! when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use crate::provision::{capture, run};
use crate::toolchain::Toolchain;

/// The namespace the test token is for.
pub const NAMESPACE: &str = "acme";

pub struct TestWriter {
    child: Child,
    data_dir: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// A token for [`NAMESPACE`] with the read, write and admin scopes.
    pub token: String,
}

impl TestWriter {
    pub fn start(t: &Toolchain) -> anyhow::Result<Self> {
        run(t
            .cargo()
            .args(["build", "--locked", "-p", "tidemark-regional-writer"]))?;
        let binary = t.target_dir.join("debug").join("tidemark-writer");
        let data_dir =
            std::env::temp_dir().join(format!("tidemark-test-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let token = capture(
            Command::new(&binary)
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["token", "--namespace", NAMESPACE])
                .args(["--scopes", "read,write,admin"]),
        )?
        .trim()
        .to_string();
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("writer stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the writer did not say where it listens (got {line:?})");
        };
        println!("test writer: {url} (data in {})", data_dir.display());
        Ok(Self {
            url: url.to_string(),
            child,
            data_dir,
            token,
        })
    }
}

impl Drop for TestWriter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
