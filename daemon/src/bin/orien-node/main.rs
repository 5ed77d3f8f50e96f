//! `orien-node`: run an ORIEN node. `init` prepares a data directory (identity, API
//! token, payout wallet); `run` starts the network node with its ledger, the sandbox when
//! it sells tools, and the local HTTP API. The other commands are thin clients of that
//! API (`commands`), or read the data directory of a stopped node.

mod commands;
mod config_file;
mod prepare;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use orien_daemon::api::NodeService;
use orien_daemon::payments::{ChainSettings, Payments};
use orien_daemon::{
    LedgerPayments, Node, NodeConfig, OfferSpec, SessionConfig, SessionServices, identity,
};
use orien_ledger::chain::{ChainConfig, Url, Wallet};
use orien_ledger::{Store, StoreOptions};

use orien_protocol::{Clock, EvmAddress, Millis, SystemClock, Usdc};
use orien_provider::{Provider, ProviderConfig};
use orien_web_api::{ApiConfig, BearerToken};

/// An ORIEN node: sell time on whitelisted tools, or rent it.
#[derive(Debug, Parser)]
#[command(name = "orien-node", version, long_about = None)]
struct Cli {
    /// Data directory (identity key, config, ledger).
    #[arg(long, env = "ORIEN_DATA_DIR", default_value_os_t = default_data_dir(), global = true)]
    data_dir: PathBuf,
    /// The running node's API (default: the address `run` wrote to the data directory,
    /// else http://127.0.0.1:7400).
    #[arg(long, env = "ORIEN_API_URL", global = true)]
    api_url: Option<String>,
    /// Print results as JSON (the API's documents).
    #[arg(long, global = true)]
    json: bool,
    /// Configuration file for `run` (default: config.toml in the data directory).
    #[arg(long, env = "ORIEN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data directory: ed25519 identity, API token, payout wallet (all 0600)
    /// and a commented config.toml.
    Init {
        /// What the node will do; shapes the config file it writes.
        #[arg(long, value_parser = ["provider", "renter", "both"], default_value = "both")]
        role: String,
    },
    /// Run the node until interrupted (Ctrl-C or SIGTERM).
    Run(Box<RunArgs>),
    /// Print this node's id.
    Id,
    /// The node's payout/payment wallet.
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// The node's ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    #[command(flatten)]
    Client(commands::ClientCommand),
    /// Show the effective configuration: data directory, files, API, environment.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print shell completions (e.g. `orien-node completions bash > /etc/bash_completion.d/orien-node`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print it.
    Show,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address to listen on; repeat for several.
    #[arg(long = "listen", env = "ORIEN_LISTEN", value_delimiter = ',', default_values_t = default_listen())]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer (`/ip4/…/tcp/…/p2p/<peer id>`); repeat for several.
    #[arg(long = "bootstrap", env = "ORIEN_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<Multiaddr>,
    /// Address of the local HTTP API.
    #[arg(long, env = "ORIEN_API", default_value = "127.0.0.1:7400")]
    api: SocketAddr,
    /// An address at which others reach this node (e.g. a public address with port
    /// forwarding); repeat for several.
    #[arg(
        long = "external-address",
        env = "ORIEN_EXTERNAL_ADDRESS",
        value_delimiter = ','
    )]
    external_addresses: Vec<Multiaddr>,
    /// Lifetime of this node's offers (seconds); they are re-announced at a third of it.
    #[arg(long, env = "ORIEN_OFFER_TTL_SECS", default_value_t = 3600)]
    offer_ttl_secs: u64,
    /// Serve as a relay for nodes that cannot be reached directly (providers behind
    /// NAT listen through it with `--listen <relay addr>/p2p-circuit`).
    #[arg(long, env = "ORIEN_RELAY_SERVER")]
    relay_server: bool,
    /// Allow the API to listen on a non-loopback address (anyone who can reach it
    /// and holds the token can spend this node's money).
    #[arg(long, env = "ORIEN_API_ALLOW_REMOTE")]
    api_allow_remote: bool,
    /// Sell the tools of this provider configuration
    /// (see configs/provider.example.toml); without it the node only rents.
    #[arg(long, env = "ORIEN_PROVIDER_CONFIG")]
    provider_config: Option<PathBuf>,
    /// Where earnings are paid (EVM address); defaults to this node's wallet.
    #[arg(long, env = "ORIEN_PAYOUT")]
    payout: Option<EvmAddress>,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    chain: ChainArgs,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Print the wallet's address (fund it with USDC and gas to rent over escrow).
    Address,
    /// USDC in the wallet and what the escrow holds for this node (running node).
    Balance,
    /// Add USDC from the wallet to the lane to a provider's payout address (running node).
    Fund {
        /// The provider's payout address (an offer's `payout`).
        #[arg(long)]
        to: EvmAddress,
        /// USDC to add, e.g. 5 or 0.25.
        #[arg(long)]
        amount: String,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Check the whole ledger: chains, signatures, balanced postings, balances
    /// (stopped node: it opens the ledger read-only).
    Verify,
    /// Every account and its balance (running node).
    Balances,
    /// Every posting, one line per leg (stopped node).
    Export {
        /// CSV or JSON lines.
        #[arg(long, value_parser = ["csv", "json"], default_value = "csv")]
        format: String,
    },
}

/// Where the escrow is; without `--chain-rpc` sessions are paid through the ledgers only.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "On-chain payment")]
struct ChainArgs {
    /// JSON-RPC endpoint of the EVM chain holding the escrow.
    #[arg(long, env = "ORIEN_CHAIN_RPC", requires_all = ["chain_id", "escrow"])]
    chain_rpc: Option<Url>,
    /// Its chain id (checked against the endpoint).
    #[arg(long, env = "ORIEN_CHAIN_ID")]
    chain_id: Option<u64>,
    /// Address of the `OrienEscrow` contract.
    #[arg(long, env = "ORIEN_ESCROW")]
    escrow: Option<EvmAddress>,
    /// Blocks on top of a transaction before it counts.
    #[arg(long, env = "ORIEN_CONFIRMATIONS", default_value_t = 1)]
    confirmations: u64,
    /// Renter: top a lane up by what a new session needs instead of refusing to open,
    /// up to this much USDC deposited on the lane in all (e.g. 20).
    #[arg(long, env = "ORIEN_AUTO_FUND", value_name = "CAP")]
    auto_fund: Option<Usdc>,
    /// Provider: settle unsettled vouchers every this many seconds (0: not on a timer).
    #[arg(long, env = "ORIEN_SETTLE_EVERY_SECS", default_value_t = 3600)]
    settle_every_secs: u64,
    /// Provider: settle as soon as this much USDC is acknowledged and unsettled.
    #[arg(long, env = "ORIEN_SETTLE_ABOVE", value_name = "USDC")]
    settle_above: Option<Usdc>,
    /// Provider: do not settle at shutdown.
    #[arg(long, env = "ORIEN_NO_SETTLE_ON_SHUTDOWN")]
    no_settle_on_shutdown: bool,
}

impl ChainArgs {
    fn settings(&self) -> anyhow::Result<Option<ChainSettings>> {
        let (Some(rpc), Some(chain_id), Some(escrow)) =
            (self.chain_rpc.clone(), self.chain_id, self.escrow)
        else {
            return Ok(None);
        };
        anyhow::ensure!(
            self.confirmations >= 1,
            "--confirmations must be at least 1"
        );
        let mut chain = ChainConfig::new(rpc, chain_id);
        chain.confirmations = self.confirmations;
        Ok(Some(ChainSettings {
            chain,
            escrow,
            auto_fund_cap: self.auto_fund,
            settle_every: (self.settle_every_secs > 0)
                .then(|| Duration::from_secs(self.settle_every_secs)),
            settle_above: self.settle_above,
        }))
    }
}

/// Session timings; the defaults suit real use, tests shorten them.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Session timing")]
struct Timing {
    /// How often a provider sends a usage receipt (ms).
    #[arg(long, env = "ORIEN_RECEIPT_INTERVAL_MS", default_value_t = 5_000)]
    receipt_interval_ms: u64,
    /// How long a provider waits for an ack before suspending a session (ms).
    #[arg(long, env = "ORIEN_ACK_TIMEOUT_MS", default_value_t = 10_000)]
    ack_timeout_ms: u64,
    /// How long a renter rides out silence from its provider before closing the
    /// session as disconnected (ms; at least twice the provider's receipt interval).
    #[arg(long, env = "ORIEN_DISCONNECT_GRACE_MS", default_value_t = 30_000)]
    disconnect_grace_ms: u64,
    /// Provider: most sessions one renter may hold at once.
    #[arg(long, env = "ORIEN_MAX_SESSIONS_PER_PEER", default_value_t = 4)]
    max_sessions_per_peer: usize,
    /// Provider on a chain: also serve this renter (peer id) on ledger-paid sessions,
    /// IOUs with nothing escrowed; repeat for several.
    #[arg(
        long = "ledger-peer",
        env = "ORIEN_LEDGER_PEERS",
        value_delimiter = ','
    )]
    ledger_peers: Vec<orien_protocol::NodeId>,
    /// Provider on a chain: serve anyone on ledger-paid sessions (IOUs from strangers;
    /// without it, and without --ledger-peer, every session is paid from escrow).
    #[arg(long, env = "ORIEN_ACCEPT_LEDGER_PAYMENTS")]
    accept_ledger_payments: bool,
    /// Renter: most output of executions kept in memory, in MiB (the oldest ended
    /// sessions' output is forgotten first).
    #[arg(long, env = "ORIEN_MAX_OUTPUT_MIB", default_value_t = 256)]
    max_output_mib: u64,
}

impl Timing {
    fn session_config(&self) -> anyhow::Result<SessionConfig> {
        anyhow::ensure!(
            self.receipt_interval_ms >= 100,
            "--receipt-interval-ms must be at least 100"
        );
        anyhow::ensure!(
            self.ack_timeout_ms > self.receipt_interval_ms,
            "--ack-timeout-ms must be longer than --receipt-interval-ms"
        );
        anyhow::ensure!(
            self.disconnect_grace_ms >= 1_000,
            "--disconnect-grace-ms must be at least 1000"
        );
        anyhow::ensure!(
            self.max_sessions_per_peer >= 1,
            "--max-sessions-per-peer must be at least 1"
        );
        let ledger_payments = if self.accept_ledger_payments {
            LedgerPayments::Anyone
        } else if self.ledger_peers.is_empty() {
            LedgerPayments::EscrowOnly
        } else {
            LedgerPayments::Peers(self.ledger_peers.iter().copied().collect())
        };
        Ok(SessionConfig {
            receipt_interval: Millis(self.receipt_interval_ms),
            ack_timeout: Millis(self.ack_timeout_ms),
            disconnect_grace: Millis(self.disconnect_grace_ms),
            max_sessions_per_peer: self.max_sessions_per_peer,
            ledger_payments,
            max_output_held: self.max_output_mib.saturating_mul(1 << 20),
            ..SessionConfig::default()
        })
    }
}

/// The payout wallet's key file in the data directory.
const WALLET_FILE: &str = "wallet.key";
/// The ledger's directory in the data directory.
const LEDGER_DIR: &str = "ledger";
/// How long `run` waits for each rented session to close at shutdown.
const CLOSE_ON_SHUTDOWN: Duration = Duration::from_secs(15);

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
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
    if let (Command::Run(args), Some(run_matches)) =
        (&mut cli.command, matches.subcommand_matches("run"))
    {
        let (path, explicit) = match &cli.config {
            Some(path) => (path.clone(), true),
            None => (cli.data_dir.join(config_file::CONFIG_FILE), false),
        };
        config_file::FileConfig::load(&path, explicit)?.apply(args, run_matches)?;
    }
    // A running node logs what it does; one-shot commands only what went wrong.
    let default_filter = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORIEN_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Init { role } => {
            let key = identity::create(&cli.data_dir)
                .with_context(|| format!("initialising {}", cli.data_dir.display()))?;
            let config = cli.data_dir.join(config_file::CONFIG_FILE);
            if !config.exists() {
                std::fs::write(&config, config_file::template(&role))
                    .with_context(|| format!("writing {}", config.display()))?;
            }
            BearerToken::create_or_load(&cli.data_dir)?;
            let wallet = Wallet::load_or_create(&cli.data_dir.join(WALLET_FILE))
                .context("creating the payout wallet")?;
            emit(&format!(
                "created node {} in {}",
                key.node_id(),
                cli.data_dir.display()
            ));
            emit(&format!("payout wallet: {}", wallet.address()));
            emit(&format!("config: {}", config.display()));
            emit(&format!(
                "API token: {}",
                cli.data_dir.join(orien_web_api::auth::TOKEN_FILE).display()
            ));
        }
        Command::Id => {
            let key = identity::load(&cli.data_dir).context("run `orien-node init` first")?;
            emit(&key.node_id().to_string());
        }
        Command::Wallet {
            command: WalletCommand::Address,
        } => {
            let wallet = Wallet::load(&cli.data_dir.join(WALLET_FILE))
                .context("run `orien-node init` first")?;
            emit(&wallet.address().to_string());
        }
        Command::Wallet {
            command: WalletCommand::Balance,
        } => {
            let wallet: serde_json::Value = client(&cli.data_dir, cli.api_url.as_deref())?
                .get("/v1/wallet")
                .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&wallet)?);
            } else {
                for key in ["address", "usdc", "earnings", "escrow", "chain_id"] {
                    emit(&format!(
                        "{key:<9} {}",
                        wallet[key].to_string().trim_matches('"')
                    ));
                }
            }
        }
        Command::Wallet {
            command: WalletCommand::Fund { to, amount },
        } => {
            let api = client(&cli.data_dir, cli.api_url.as_deref())?;
            let body = serde_json::json!({"to": to.to_string(), "amount": amount});
            let funded: serde_json::Value = commands::with_spinner(
                "funding the lane, waiting for confirmations…",
                cli.json,
                api.post("/v1/wallet/fund", &body),
            )
            .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&funded)?);
            } else {
                emit(&format!(
                    "lane {} now holds {} USDC (tx {})",
                    funded["lane"].as_str().unwrap_or("?"),
                    funded["deposit"].as_str().unwrap_or("?"),
                    funded["tx"].as_str().unwrap_or("?")
                ));
            }
        }
        Command::Ledger {
            command: LedgerCommand::Balances,
        } => {
            let balances: serde_json::Value = client(&cli.data_dir, cli.api_url.as_deref())?
                .get("/v1/ledger/balances")
                .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&balances)?);
            } else {
                for b in balances.as_array().into_iter().flatten() {
                    emit(&format!(
                        "{:>14} µUSDC  {}",
                        b["net_micros"],
                        b["account"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        Command::Ledger {
            command: LedgerCommand::Export { format },
        } => {
            let store = open_ledger_read_only(&cli.data_dir)?;
            let out = std::io::stdout().lock();
            match format.as_str() {
                "json" => store.export_json(out)?,
                _ => store.export_csv(out)?,
            }
        }
        Command::Client(commands::ClientCommand::Tools {
            command: Some(commands::ToolsCommand::Prepare { file }),
        }) => prepare::prepare(&file, cli.json).await?,
        Command::Client(commands::ClientCommand::Tools {
            command: Some(commands::ToolsCommand::Validate { file }),
        }) => {
            let (config, tools) = ProviderConfig::load(&file)?;
            emit(&format!(
                "{}: {} tool(s), engine at {}",
                file.display(),
                tools.len(),
                config.engine.socket.display()
            ));
            for tool in &tools {
                emit(&format!(
                    "  {:<10} {} ({}), {} USDC/exec-min",
                    tool.name(),
                    tool.image(),
                    tool.version(),
                    tool.pricing().exec_per_minute
                ));
            }
        }
        Command::Client(command) => {
            let code = commands::run(
                &client(&cli.data_dir, cli.api_url.as_deref())?,
                command,
                cli.json,
            )
            .await?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            let api = client(&cli.data_dir, cli.api_url.as_deref())
                .map(|c| c.base().to_owned())
                .ok();
            let config = serde_json::json!({
                "data_dir": cli.data_dir,
                "identity": cli.data_dir.join(identity::IDENTITY_FILE),
                "api_token": cli.data_dir.join(orien_web_api::auth::TOKEN_FILE),
                "wallet": cli.data_dir.join(WALLET_FILE),
                "ledger": cli.data_dir.join(LEDGER_DIR),
                "config_file": cli.config.clone().unwrap_or_else(|| cli.data_dir.join(config_file::CONFIG_FILE)),
                "api_url": api,
                "environment": std::env::vars()
                    .filter(|(k, _)| k.starts_with("ORIEN_"))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            });
            if cli.json {
                emit(&serde_json::to_string_pretty(&config)?);
            } else {
                for (key, value) in config.as_object().into_iter().flatten() {
                    emit(&format!("{key:<12} {value}"));
                }
            }
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "orien-node", &mut std::io::stdout());
        }
        Command::Ledger {
            command: LedgerCommand::Verify,
        } => {
            let json = cli.json;
            let path = cli.data_dir.join(LEDGER_DIR);
            let store = open_ledger_read_only(&cli.data_dir)?;
            let report = store
                .verify()
                .with_context(|| format!("the ledger at {} is inconsistent", path.display()))?;
            if json {
                emit(&serde_json::to_string(&report)?);
            } else {
                emit(&format!(
                    "ledger OK: {} sessions, {} receipts, {} postings, {} accounts, {} µUSDC moved",
                    report.sessions,
                    report.receipts,
                    report.postings,
                    report.accounts,
                    report.total_moved_micros
                ));
            }
        }
        Command::Run(args) => {
            let RunArgs {
                listen,
                bootstrap,
                relay_server,
                external_addresses,
                offer_ttl_secs,
                api,
                api_allow_remote,
                provider_config,
                payout,
                timing,
                chain,
            } = *args;
            if !api.ip().is_loopback() && !api_allow_remote {
                anyhow::bail!(
                    "--api {api} is not a loopback address; pass --api-allow-remote if the API must be reachable from other machines"
                );
            }
            let key = identity::load(&cli.data_dir).context("run `orien-node init` first")?;
            let token = BearerToken::create_or_load(&cli.data_dir)?;
            let session_config = timing.session_config()?;
            let ledger = cli.data_dir.join(LEDGER_DIR);
            let store = Arc::new(
                Store::open(&ledger)
                    .with_context(|| format!("opening the ledger at {}", ledger.display()))?,
            );
            let provider = match &provider_config {
                Some(path) => {
                    let (config, tools) = ProviderConfig::load(path)?;
                    Some(Provider::start(&config.engine, tools, key.node_id()).await?)
                }
                None => None,
            };
            let _reaper = provider.as_ref().map(Provider::spawn_reaper);
            let wallet = Wallet::load_or_create(&cli.data_dir.join(WALLET_FILE))
                .context("loading the wallet")?;
            let payout = payout.unwrap_or_else(|| wallet.address());
            let payments = match chain.settings()? {
                Some(settings) => {
                    let payments = Payments::connect(&settings, &wallet, store.clone())
                        .await
                        .context("connecting to the escrow (--chain-rpc, --chain-id, --escrow)")?;
                    emit(&format!(
                        "paying through escrow {} on chain {} as {}",
                        settings.escrow,
                        settings.chain.chain_id,
                        wallet.address()
                    ));
                    Some((payments, settings))
                }
                None => None,
            };
            let _reconciler = payments
                .as_ref()
                .map(|(p, _)| p.spawn_reconciler(orien_daemon::payments::RECONCILE_EVERY));
            let _settler = match (&payments, &provider) {
                (Some((p, settings)), Some(_)) => {
                    p.spawn_settler(settings.settle_every, settings.settle_above)
                }
                _ => None,
            };
            let settle_on_shutdown = provider.is_some() && !chain.no_settle_on_shutdown;
            let payments_handle = payments.as_ref().map(|(p, _)| p.clone());
            let config = NodeConfig {
                listen,
                bootstrap,
                tuning: orien_daemon::network::NetworkTuning {
                    relay_server,
                    ..Default::default()
                },
                external_addresses,
                offer_ttl: Duration::from_secs(offer_ttl_secs.max(1)),
                sessions: Some(SessionServices {
                    store,
                    provider: provider
                        .clone()
                        .map(|p| Arc::new(p) as Arc<dyn orien_provider::Sandbox>),
                    config: session_config,
                    payments: payments.map(|(p, _)| p),
                }),
                ..NodeConfig::default()
            };
            let offer_ttl = config.offer_ttl;
            let clock = Arc::new(SystemClock::new());
            let node = Arc::new(Node::start(key, config, clock.clone()).await?);
            for addr in node.listen_addrs() {
                emit(&format!("listening on {addr}"));
            }
            if let Some(provider) = &provider {
                for tool in provider
                    .tools()
                    .map(|t| t.name().clone())
                    .collect::<Vec<_>>()
                {
                    let offer = provider
                        .offer(
                            &tool,
                            payout,
                            clock.wall(),
                            Millis(offer_ttl.as_millis() as u64),
                        )
                        .with_context(|| format!("making the offer of tool `{tool}`"))?;
                    let id = node.publish_offer(OfferSpec::from(offer)).await?;
                    emit(&format!("offering {tool} as {id}"));
                }
            }
            let listener = tokio::net::TcpListener::bind(api).await.with_context(|| {
                format!(
                    "binding the API to {api}; is another node running? choose another with --api"
                )
            })?;
            let bound = listener.local_addr()?;
            let addr_file = cli.data_dir.join(orien_daemon::client::API_ADDR_FILE);
            std::fs::write(&addr_file, bound.to_string())
                .with_context(|| format!("writing {}", addr_file.display()))?;
            emit(&format!("API on http://{bound}"));
            let service = Arc::new(NodeService::new(node.clone()));
            let app = orien_web_api::router(service, ApiConfig::new(token));
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
            let _ = std::fs::remove_file(&addr_file);
            close_rented_sessions(&node).await;
            if settle_on_shutdown && let Some(payments) = &payments_handle {
                settle_at_shutdown(payments).await;
            }
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

use commands::emit;

fn client(
    data_dir: &std::path::Path,
    api_url: Option<&str>,
) -> anyhow::Result<orien_daemon::client::ApiClient> {
    Ok(orien_daemon::client::ApiClient::for_data_dir(
        data_dir, api_url,
    )?)
}

fn open_ledger_read_only(data_dir: &std::path::Path) -> anyhow::Result<Store> {
    let path = data_dir.join(LEDGER_DIR);
    Store::open_with(
        &path,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .with_context(|| {
        format!(
            "opening the ledger at {} read-only (run `orien-node init` first?)",
            path.display()
        )
    })
}

/// Settles what this provider is owed before it stops (bounded in time).
async fn settle_at_shutdown(payments: &Payments) {
    match tokio::time::timeout(Duration::from_secs(60), payments.settle()).await {
        Ok(Ok(batches)) if batches.is_empty() => {}
        Ok(Ok(batches)) => tracing::info!(transactions = batches.len(), "settled at shutdown"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not settle at shutdown; `orien-node settle` after restart")
        }
        Err(_) => {
            tracing::warn!("settling at shutdown timed out; `orien-node settle` after restart")
        }
    }
}

/// Closes every session this node rents, so each ends on a countersigned closing
/// receipt rather than on the provider's ack timeout.
async fn close_rented_sessions(node: &Node) {
    let Some(sessions) = node.sessions() else {
        return;
    };
    for session in sessions.rented_sessions() {
        match tokio::time::timeout(CLOSE_ON_SHUTDOWN, sessions.close(session)).await {
            Ok(Ok(())) => tracing::info!(%session, "closed at shutdown"),
            Ok(Err(e)) => tracing::warn!(%session, error = %e, "could not close at shutdown"),
            Err(_) => tracing::warn!(%session, "closing timed out at shutdown"),
        }
    }
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
