//! The writer's configuration: flags, each also settable from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "tidemark-writer",
    version,
    about = "Tidemark's regional writer"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    /// Without a command, the writer serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print an access token signed by this writer's built-in issuer key.
    Token(TokenArgs),
    /// Bulk-load records into a running writer (see `import.rs`).
    Import(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port; the bound address is
    /// printed as `listening on http://ADDR`.
    #[arg(
        long,
        env = "TIDEMARK_LISTEN",
        default_value = "127.0.0.1:7700",
        global = true
    )]
    pub listen: SocketAddr,

    /// Directory holding the writer's database and keys.
    #[arg(
        long,
        env = "TIDEMARK_DATA_DIR",
        default_value = "data/writer",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Public key (64 hex digits) of the access-token issuer to trust.
    /// Default: this writer's own issuer key (`keys/issuer.key`).
    #[arg(long, env = "TIDEMARK_TOKEN_PUBLIC_KEY", global = true)]
    pub token_public_key: Option<String>,

    /// URL that receives signed invalidations (an edge's `/v1/invalidate`);
    /// repeat for several targets.
    #[arg(
        long = "webhook",
        env = "TIDEMARK_WEBHOOKS",
        value_delimiter = ',',
        global = true
    )]
    pub webhooks: Vec<String>,

    /// Megabytes of recent snapshot bodies kept in memory, so that replicas
    /// bootstrapping from the same snapshot do not each read it from disk.
    #[arg(
        long,
        env = "TIDEMARK_SNAPSHOT_CACHE_MB",
        default_value_t = 256,
        global = true
    )]
    pub snapshot_cache_mb: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The running writer to import into.
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// An admin token for the namespace; default: one from this data dir's issuer key.
    #[arg(long, env = "TIDEMARK_TOKEN")]
    pub token: Option<String>,
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub collection: String,
    /// A dataset directory (`base.f32` + `texts.jsonl`).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// A JSONL file of `{"id", "fields", "vector"}` objects.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Metric of the collection, if the import creates it.
    #[arg(long, default_value = "cosine")]
    pub metric: String,
    /// Shard count of the collection, if the import creates it.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Records per write batch.
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The namespace (tenant) the token is for.
    #[arg(long)]
    pub namespace: String,

    /// Comma-separated scopes: read, write, admin.
    #[arg(long, default_value = "read,write")]
    pub scopes: String,

    /// Lifetime in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    pub ttl_secs: u64,

    /// Who the token is for (the `sub` claim).
    #[arg(long)]
    pub subject: Option<String>,
}

impl Config {
    /// Defaults with `data_dir`, for tests and embedding.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Cli::parse_from(["tidemark-writer"]).config;
        config.data_dir = data_dir.into();
        config
    }
}
