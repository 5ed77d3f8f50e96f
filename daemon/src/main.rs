//! `orien-node`: run an ORIEN node. The full command line (sessions, ledger, wallet)
//! arrives with the local HTTP API; this binary initialises a data directory and runs
//! the network node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use orien_daemon::api::NodeService;
use orien_daemon::{Node, NodeConfig, identity};
use orien_protocol::SystemClock;
use orien_web_api::{ApiConfig, BearerToken};

/// An ORIEN node: sell time on whitelisted tools, or rent it.
#[derive(Debug, Parser)]
#[command(name = "orien-node", version, about, long_about = None)]
struct Cli {
    /// Data directory (identity key, config, ledger).
    #[arg(long, env = "ORIEN_DATA_DIR", default_value_os_t = default_data_dir(), global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data directory and a new node identity (ed25519, mode 0600).
    Init,
    /// Run the node until interrupted (Ctrl-C or SIGTERM).
    Run {
        /// Address to listen on; repeat for several.
        #[arg(long = "listen", env = "ORIEN_LISTEN", value_delimiter = ',', default_values_t = default_listen())]
        listen: Vec<Multiaddr>,
        /// Bootstrap peer (`/ip4/…/tcp/…/p2p/<peer id>`); repeat for several.
        #[arg(long = "bootstrap", env = "ORIEN_BOOTSTRAP", value_delimiter = ',')]
        bootstrap: Vec<Multiaddr>,
        /// Address of the local HTTP API.
        #[arg(long, env = "ORIEN_API", default_value = "127.0.0.1:7400")]
        api: SocketAddr,
        /// Allow the API to listen on a non-loopback address (anyone who can reach it
        /// and holds the token can spend this node's money).
        #[arg(long, env = "ORIEN_API_ALLOW_REMOTE")]
        api_allow_remote: bool,
    },
    /// Print this node's id.
    Id,
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("orien")
}

fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORIEN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Init => {
            let key = identity::create(&cli.data_dir)
                .with_context(|| format!("initialising {}", cli.data_dir.display()))?;
            BearerToken::create_or_load(&cli.data_dir)?;
            emit(&format!(
                "created node {} in {}",
                key.node_id(),
                cli.data_dir.display()
            ));
            emit(&format!(
                "API token: {}",
                cli.data_dir.join(orien_web_api::auth::TOKEN_FILE).display()
            ));
        }
        Command::Id => {
            let key = identity::load(&cli.data_dir).context("run `orien-node init` first")?;
            emit(&key.node_id().to_string());
        }
        Command::Run {
            listen,
            bootstrap,
            api,
            api_allow_remote,
        } => {
            if !api.ip().is_loopback() && !api_allow_remote {
                anyhow::bail!(
                    "--api {api} is not a loopback address; pass --api-allow-remote if the API must be reachable from other machines"
                );
            }
            let key = identity::load(&cli.data_dir).context("run `orien-node init` first")?;
            let token = BearerToken::create_or_load(&cli.data_dir)?;
            let config = NodeConfig {
                listen,
                bootstrap,
                ..NodeConfig::default()
            };
            let node = Arc::new(Node::start(key, config, Arc::new(SystemClock::new())).await?);
            for addr in node.listen_addrs() {
                emit(&format!("listening on {addr}"));
            }
            let listener = tokio::net::TcpListener::bind(api).await.with_context(|| {
                format!(
                    "binding the API to {api}; is another node running? choose another with --api"
                )
            })?;
            emit(&format!("API on http://{}", listener.local_addr()?));
            let service = Arc::new(NodeService::new(node.clone()));
            let app = orien_web_api::router(service, ApiConfig::new(token));
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
            match Arc::try_unwrap(node) {
                Ok(node) => node.shutdown().await,
                Err(_) => tracing::warn!(
                    "API connections still open; stopping without withdrawing offers"
                ),
            }
        }
    }
    Ok(())
}

/// Prints a line of the command's output (stdout is the command's result).
#[allow(clippy::print_stdout)]
fn emit(line: &str) {
    println!("{line}");
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
