//! `tidemark-writer`: a shell around [`server::run`].

use clap::Parser;
use tidemark_core::auth::{self, Claims, Scope};
use tidemark_regional_writer::auth::unix_now;
use tidemark_regional_writer::config::{Cli, Command, TokenArgs};
use tidemark_regional_writer::keys::Keys;
use tidemark_regional_writer::server::{self, AppState};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => print_token(&cli.config.data_dir, &args),
        Some(Command::Import(args)) => {
            let token = match &args.token {
                Some(token) => token.clone(),
                None => issue(
                    &cli.config.data_dir,
                    &args.namespace,
                    "read,write,admin",
                    3600,
                    None,
                )?,
            };
            tidemark_regional_writer::import::run(&args, &token).await
        }
        None => serve(cli.config).await,
    }
}

async fn serve(config: tidemark_regional_writer::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let webhooks = config.webhooks.clone();
    let state = AppState::open(config)?;
    tidemark_regional_writer::webhooks::start(&state.engine, state.keys.writer.clone(), &webhooks);
    // Tests and `cargo xtask demo` read this line to learn the port.
    println!("listening on http://{}", listener.local_addr()?);
    server::run(listener, state, shutdown_signal()).await?;
    Ok(())
}

fn print_token(data_dir: &std::path::Path, args: &TokenArgs) -> anyhow::Result<()> {
    let token = issue(
        data_dir,
        &args.namespace,
        &args.scopes,
        args.ttl_secs,
        args.subject.clone(),
    )?;
    println!("{token}");
    Ok(())
}

/// A token signed by the data dir's issuer key.
fn issue(
    data_dir: &std::path::Path,
    namespace: &str,
    scopes: &str,
    ttl_secs: u64,
    subject: Option<String>,
) -> anyhow::Result<String> {
    let keys = Keys::load_or_create(data_dir)?;
    let scopes = scopes
        .split(',')
        .map(|s| match s.trim() {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(anyhow::anyhow!(
                "unknown scope {other:?} (read, write, admin)"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let claims = Claims {
        namespace: namespace.to_string(),
        scopes,
        expires_at: unix_now() + ttl_secs,
        not_before: None,
        subject,
    };
    Ok(auth::issue(&claims, &keys.issuer))
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
