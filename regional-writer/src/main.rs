//! `tidemark-writer`: a shell around [`server::run`].

use clap::Parser;
use tidemark_regional_writer::config::Config;
use tidemark_regional_writer::server::{self, AppState};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // Tests and `cargo xtask demo` read this line to learn the port.
    println!("listening on http://{}", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    server::run(listener, AppState::new(config), shutdown).await?;
    Ok(())
}
