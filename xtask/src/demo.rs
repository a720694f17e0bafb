//! `cargo xtask demo`: the main job, started with everything it needs.
//!
//! Today it starts the regional writer on its data dir; the edge in workerd,
//! the dataset import and the demo app join as they land (issues 6–8).

use std::process::ExitCode;

use crate::provision::run;
use crate::toolchain::Toolchain;

pub fn run_demo(t: &Toolchain) -> anyhow::Result<ExitCode> {
    run(t
        .cargo()
        .args(["build", "--locked", "-p", "tidemark-regional-writer"]))?;
    let data_dir = t.repo.join("data").join("writer");
    std::fs::create_dir_all(&data_dir)?;
    println!(
        "demo: starting the regional writer (data in {})",
        data_dir.display()
    );
    println!("demo: not part of the demo yet: the edge worker, the dataset import and the web app");
    println!("demo: press Ctrl-C to stop");
    // Ctrl-C reaches the whole foreground process group, so the writer and
    // this process stop together.
    let status = t
        .command(t.target_dir.join("debug").join("tidemark-writer"))
        .args(["--listen", "127.0.0.1:7700", "--data-dir"])
        .arg(&data_dir)
        .status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
