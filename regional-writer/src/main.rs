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
    server::run(listener, AppState::new(config), shutdown_signal()).await?;
    Ok(())
}

/// Ctrl-C (a terminal, `cargo xtask demo`) or SIGTERM (service managers).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
