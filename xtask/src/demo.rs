//! `cargo xtask demo`: the main job, started with everything it needs.
//!
//! Builds the writer, the edge worker and the SDK's npm package, starts the
//! regional writer on `data/writer` (git-ignored), imports the shared
//! dataset (20k Debian package descriptions with real embeddings) on the
//! first run, then starts the edge in workerd and the demo web app
//! (`demo/`, on the SDK) and prints where they are and what to try. A second
//! run reuses the data. Ctrl-C reaches the whole foreground process group,
//! so every process the demo started stops with it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};

use anyhow::{Context, bail};

use crate::provision::{capture, run};
use crate::toolchain::Toolchain;
use crate::{sdk_package, test};

const WRITER_ADDR: &str = "127.0.0.1:7700";
const EDGE_PORT: u16 = 8787;
const APP_PORT: u16 = 8080;
const NAMESPACE: &str = "demo";
const COLLECTION: &str = "packages";

pub fn run_demo(t: &Toolchain) -> anyhow::Result<ExitCode> {
    println!(
        "demo: building the writer, the edge worker and the SDK (the first build takes minutes)"
    );
    run(t
        .cargo()
        .args(["build", "--locked", "-p", "tidemark-regional-writer"]))?;
    test::build_edge(t)?;
    sdk_package::build(t)?;
    let writer_bin = t.target_dir.join("debug").join("tidemark-writer");
    let data_dir = t.repo.join("data").join("writer");
    std::fs::create_dir_all(&data_dir)?;
    let dataset = dataset_dir(t)?;

    println!(
        "demo: starting the regional writer on http://{WRITER_ADDR} (data in {})",
        data_dir.display()
    );
    let mut writer = Running(start_writer(t, &writer_bin, &data_dir)?);
    // The app's token; a real app gets one from its own sign-in.
    let app_token = capture(
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

    println!("demo: starting the edge in workerd and the web app");
    let (stack, urls) = start_stack(t, &app_token, &dataset)?;
    let mut stack = Running(stack);
    let base = format!("{}/v1/ns/{NAMESPACE}/collections/{COLLECTION}", urls.edge);
    println!(
        "\ndemo: ready.\n\n\
         app      {app}   <- open this\n\
         edge     {edge}  (Cloudflare Worker in workerd: reads, search, write forwarding)\n\
         writer   http://{WRITER_ADDR}  (the authoritative store; API: docs/api.md)\n\n\
         try in the app:\n  \
         - search by meaning: pick one of the 200 sample queries, or type a package name\n  \
         - \"More like this\" on any result; star it, add a note\n  \
         - turn \"Online\" off, edit, turn it back on: the edit syncs (watch the tidemark)\n  \
         - open the app in a second window (or a private one): edits show up there too\n\n\
         or with curl (export TOKEN={app_token}):\n  \
         curl -s -H \"authorization: Bearer $TOKEN\" {base}/records/libgmp-dev\n  \
         curl -s -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n    \
         -d '{{\"ops\":[{{\"op\":\"patch\",\"id\":\"libgmp-dev\",\"fields\":{{\"starred\":true}}}}]}}' {base}/records\n\n\
         press Ctrl-C to stop",
        app = urls.app,
        edge = urls.edge,
    );
    // Whichever stops first ends the demo; the other is stopped with it.
    let status = loop {
        if let Some(status) = writer.0.try_wait()? {
            eprintln!("demo: the writer stopped ({status})");
            break status;
        }
        if let Some(status) = stack.0.try_wait()? {
            eprintln!("demo: the edge and app stopped ({status})");
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A process the demo started, stopped when the demo ends for any reason
/// (an error on the way included), not left holding its port.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM first: node then disposes of workerd, its own child, which
        // a SIGKILL would leave running.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct StackUrls {
    edge: String,
    app: String,
}

/// `node demo/main.mjs`: the edge in workerd and the app server; waits for
/// both URLs.
fn start_stack(t: &Toolchain, token: &str, dataset: &Path) -> anyhow::Result<(Child, StackUrls)> {
    let mut child = t
        .command("node")
        .arg("demo/main.mjs")
        .args(["--writer", &format!("http://{WRITER_ADDR}")])
        .args(["--token", token, "--dataset"])
        .arg(dataset)
        .args(["--namespace", NAMESPACE, "--collection", COLLECTION])
        .args(["--edge-port", &EDGE_PORT.to_string()])
        .args(["--app-port", &APP_PORT.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting node demo/main.mjs")?;
    let stdout = child.stdout.take().context("demo/main.mjs stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut edge, mut app) = (None, None);
    while edge.is_none() || app.is_none() {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("edge ") {
                    edge = Some(url.to_string());
                } else if let Some(url) = line.strip_prefix("app ") {
                    app = Some(url.to_string());
                } else {
                    println!("{line}");
                }
            }
            _ => {
                let _ = child.kill();
                bail!("the edge and app did not start (ports {EDGE_PORT} and {APP_PORT} in use?)");
            }
        }
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    let urls = StackUrls {
        edge: edge.unwrap_or_default(),
        app: app.unwrap_or_default(),
    };
    Ok((child, urls))
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
    Ok(dir.canonicalize()?)
}

/// Starts the writer and waits for its `listening on` line.
fn start_writer(t: &Toolchain, bin: &Path, data_dir: &Path) -> anyhow::Result<Child> {
    let mut child = t
        .command(bin)
        .args(["--listen", WRITER_ADDR, "--data-dir"])
        .arg(data_dir)
        // The edge catches up at once on the writer's signed invalidations.
        .args([
            "--webhook",
            &format!("http://127.0.0.1:{EDGE_PORT}/v1/invalidate"),
        ])
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
