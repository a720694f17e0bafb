//! The writer's configuration: flags, each also settable from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "tidemark-writer",
    version,
    about = "Tidemark's regional writer"
)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port; the bound address is
    /// printed as `listening on http://ADDR`.
    #[arg(long, env = "TIDEMARK_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,

    /// Directory holding the writer's database.
    #[arg(long, env = "TIDEMARK_DATA_DIR", default_value = "data/writer")]
    pub data_dir: PathBuf,
}
