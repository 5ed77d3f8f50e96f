//! The command line of `orien-node`: its commands and flags, and how `run`'s flags
//! become a [`SessionConfig`] and [`ChainSettings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use orien_daemon::payments::ChainSettings;
use orien_daemon::session::{OperatorControls, PeerAccess};
use orien_daemon::{LedgerPayments, SessionConfig};
use orien_ledger::chain::{ChainConfig, Url};
use orien_protocol::{EvmAddress, Millis, Usdc};

use crate::commands;

/// An ORIEN node: sell time on whitelisted tools, or rent it.
#[derive(Debug, Parser)]
#[command(name = "orien-node", version, long_about = None)]
pub(crate) struct Cli {
    /// Data directory (identity key, config, ledger).
    #[arg(long, env = "ORIEN_DATA_DIR", default_value_os_t = default_data_dir(), global = true)]
    pub(crate) data_dir: PathBuf,
    /// The running node's API (default: the address `run` wrote to the data directory,
    /// else http://127.0.0.1:7400).
    #[arg(long, env = "ORIEN_API_URL", global = true)]
    pub(crate) api_url: Option<String>,
    /// Print results as JSON (the API's documents).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Configuration file for `run` (default: config.toml in the data directory).
    #[arg(long, env = "ORIEN_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the data directory: ed25519 identity, API token, payout wallet (all 0600)
    /// and a commented config.toml.
    Init {
        /// What the node will do; shapes the config file it writes.
        #[arg(long, value_parser = ["provider", "renter", "both"], default_value = "both")]
        role: String,
    },
    /// Run the node until interrupted (Ctrl-C or SIGTERM).
    ///
    /// Interrupted, it stops in order: its sessions end first (each one it rents and
    /// each one it provides closes on a closing receipt, so both sides are paid up to
    /// the stop; up to 15 s, and no session opens meanwhile), then a provider on a
    /// chain settles what it is owed (up to a minute; --no-settle-on-shutdown skips
    /// it), then its offers are withdrawn and the network stops.
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
    /// A provider's signed result of a call (offline: no node needed).
    Result {
        #[command(subcommand)]
        command: crate::result::ResultCommand,
    },
    /// Serve MCP on standard input and output for an agent host that spawns its
    /// servers (Claude Desktop, Cursor, …): it forwards to the running node's /mcp, whose
    /// budget policy applies. Add `{"command": "orien-node", "args": ["mcp"]}` to the host.
    /// `mcp client …` gives an agent host its own token and limits.
    Mcp {
        /// Use this client's token and limits (from `orien-node mcp client add`).
        #[arg(long)]
        client: Option<String>,
        #[command(subcommand)]
        command: Option<McpCommand>,
    },
    #[command(flatten)]
    Client(commands::ClientCommand),
    /// Check what a provider host needs (the engine and its confinement, the cgroup
    /// freezer, free disk, the tools' images, the ports to listen on, the clock) and
    /// print each problem with its fix; exits non-zero when one stops the provider.
    /// Changes nothing.
    Doctor {
        /// The provider config whose engine socket and tools to check (default: the
        /// engine at /var/run/docker.sock, no tools).
        #[arg(long, env = "ORIEN_PROVIDER_CONFIG")]
        provider_config: Option<PathBuf>,
        /// Addresses `run` will listen on (default: the config file's `listen`, else
        /// run's default).
        #[arg(long = "listen", value_delimiter = ',')]
        listen: Vec<Multiaddr>,
        /// Address of the API (default: the config file's `api`, else 127.0.0.1:7400).
        #[arg(long)]
        api: Option<SocketAddr>,
    },
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
pub(crate) enum McpCommand {
    /// MCP clients with their own token and limits (within the node's).
    Client {
        #[command(subcommand)]
        command: McpClientCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum McpClientCommand {
    /// Add a client: prints its token and the config to give its host. The running node
    /// picks it up at once.
    Add {
        /// Its name (letters, digits, `-`, `_`).
        name: String,
        /// Most one of its calls may cost (USDC).
        #[arg(long, value_name = "USDC", default_value = "0.5")]
        max_call: Usdc,
        /// Largest budget of a session it opens (USDC).
        #[arg(long, value_name = "USDC", default_value = "2")]
        max_session: Usdc,
        /// Most its sessions may cost in a UTC day (USDC).
        #[arg(long, value_name = "USDC", default_value = "10")]
        max_day: Usdc,
    },
    /// List the clients and their limits.
    List,
    /// Remove a client: its token stops working at once.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print it.
    Show,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Address to listen on; repeat for several.
    #[arg(long = "listen", env = "ORIEN_LISTEN", value_delimiter = ',', default_values_t = default_listen())]
    pub(crate) listen: Vec<Multiaddr>,
    /// Bootstrap peer (`/ip4/…/tcp/…/p2p/<peer id>`); repeat for several.
    #[arg(long = "bootstrap", env = "ORIEN_BOOTSTRAP", value_delimiter = ',')]
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Address of the local HTTP API.
    #[arg(long, env = "ORIEN_API", default_value = "127.0.0.1:7400")]
    pub(crate) api: SocketAddr,
    /// An address at which others reach this node (e.g. a public address with port
    /// forwarding); repeat for several.
    #[arg(
        long = "external-address",
        env = "ORIEN_EXTERNAL_ADDRESS",
        value_delimiter = ','
    )]
    pub(crate) external_addresses: Vec<Multiaddr>,
    /// Lifetime of this node's offers (seconds); they are re-announced at a third of it.
    #[arg(long, env = "ORIEN_OFFER_TTL_SECS", default_value_t = 3600)]
    pub(crate) offer_ttl_secs: u64,
    /// Serve as a relay for nodes that cannot be reached directly (providers behind
    /// NAT listen through it with `--listen <relay addr>/p2p-circuit`).
    #[arg(long, env = "ORIEN_RELAY_SERVER")]
    pub(crate) relay_server: bool,
    /// Peers to stay connected to at most: above it the node closes the least useful
    /// connections (never a live session's or a relay's) down to two thirds of it.
    /// At least 12.
    #[arg(long, env = "ORIEN_MAX_PEERS", default_value_t = 48)]
    pub(crate) max_peers: usize,
    /// Allow the API to listen on a non-loopback address (anyone who can reach it
    /// and holds the token can spend this node's money).
    #[arg(long, env = "ORIEN_API_ALLOW_REMOTE")]
    pub(crate) api_allow_remote: bool,
    /// A host name the API and the dashboard answer to besides IP addresses and
    /// `localhost` (e.g. `node.lan`); repeat for several. Requests naming any other
    /// host are refused, so a web page cannot reach the node by DNS rebinding.
    #[arg(long = "api-host", env = "ORIEN_API_HOSTS", value_delimiter = ',')]
    pub(crate) api_hosts: Vec<String>,
    /// Sell the tools of this provider configuration
    /// (see configs/provider.example.toml); without it the node only rents.
    #[arg(long, env = "ORIEN_PROVIDER_CONFIG")]
    pub(crate) provider_config: Option<PathBuf>,
    /// Where earnings are paid (EVM address); defaults to this node's wallet.
    #[arg(long, env = "ORIEN_PAYOUT")]
    pub(crate) payout: Option<EvmAddress>,
    #[command(flatten)]
    pub(crate) timing: Timing,
    #[command(flatten)]
    pub(crate) chain: ChainArgs,
    #[command(flatten)]
    pub(crate) mcp: McpArgs,
}

/// What AI agents may spend through the node's MCP endpoint (`/mcp` on the API port,
/// or `orien-node mcp` over stdio).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Agents (MCP)")]
pub(crate) struct McpArgs {
    /// Most one tool call through MCP may cost (USDC).
    #[arg(
        long,
        env = "ORIEN_MCP_MAX_CALL",
        value_name = "USDC",
        default_value = "0.5"
    )]
    pub(crate) mcp_max_call: Usdc,
    /// Largest budget of a session opened through MCP (USDC).
    #[arg(
        long,
        env = "ORIEN_MCP_MAX_SESSION",
        value_name = "USDC",
        default_value = "2"
    )]
    pub(crate) mcp_max_session: Usdc,
    /// Most this node's rented sessions may cost in a UTC day before MCP opens no more
    /// (USDC; open sessions count their whole budget).
    #[arg(
        long,
        env = "ORIEN_MCP_MAX_DAY",
        value_name = "USDC",
        default_value = "10"
    )]
    pub(crate) mcp_max_day: Usdc,
    /// Do not serve MCP at all.
    #[arg(long, env = "ORIEN_NO_MCP")]
    pub(crate) no_mcp: bool,
}

impl McpArgs {
    /// The MCP endpoint's settings (`None`: not served); `api` is where the API binds,
    /// `api_hosts` the names it answers to besides addresses and `localhost`,
    /// `data_dir` holds the clients.
    pub(crate) fn config(
        &self,
        api: std::net::SocketAddr,
        api_hosts: &[String],
        data_dir: &std::path::Path,
    ) -> Option<orien_web_api::mcp::McpConfig> {
        if self.no_mcp {
            return None;
        }
        // Beyond loopback, requests name the bound address as their `Host`.
        let mut extra_hosts = if api.ip().is_loopback() {
            Vec::new()
        } else {
            vec![api.ip().to_string(), api.to_string()]
        };
        extra_hosts.extend(api_hosts.iter().cloned());
        Some(orien_web_api::mcp::McpConfig {
            policy: orien_web_api::mcp::BudgetPolicy {
                per_call: self.mcp_max_call,
                per_session: self.mcp_max_session,
                per_day: self.mcp_max_day,
            },
            extra_hosts,
            clients: Some(orien_web_api::mcp::clients::Clients::new(
                data_dir.to_owned(),
            )),
            ..Default::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum WalletCommand {
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
    /// Take earnings out of the escrow into the wallet: a provider's earnings (credited
    /// when it settles), or with --fees / --reserve the treasury's or reserve's share
    /// (running node).
    Withdraw {
        /// Withdraw the network fees (this wallet must be the escrow's treasury).
        #[arg(long, conflicts_with = "reserve")]
        fees: bool,
        /// Withdraw the reserve (this wallet must be the escrow's reserve).
        #[arg(long)]
        reserve: bool,
    },
    /// Every escrow lane of this node: deposit, acknowledged, settled, owed, refundable,
    /// open sessions and close state (running node).
    Lanes,
    /// The settlement history, newest first: each transaction with what it paid and its
    /// 90 / 7 / 3 parts (running node).
    Settlements,
    /// Take a lane's unspent deposit back: asks to close the lane (the thaw window
    /// starts; the provider may settle what it is owed until it ends), then, with
    /// --finish after the window, refunds it to the wallet. Funding the lane again
    /// cancels (running node).
    Reclaim {
        /// The provider's payout address (as for `wallet fund`).
        #[arg(long)]
        to: EvmAddress,
        /// Finish: take the deposit back once the thaw window is over.
        #[arg(long)]
        finish: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
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
pub(crate) struct ChainArgs {
    /// JSON-RPC endpoint of the EVM chain holding the escrow.
    #[arg(long, env = "ORIEN_CHAIN_RPC", requires_all = ["chain_id", "escrow"])]
    pub(crate) chain_rpc: Option<Url>,
    /// Its chain id (checked against the endpoint).
    #[arg(long, env = "ORIEN_CHAIN_ID")]
    pub(crate) chain_id: Option<u64>,
    /// Address of the `OrienEscrow` contract.
    #[arg(long, env = "ORIEN_ESCROW")]
    pub(crate) escrow: Option<EvmAddress>,
    /// Blocks on top of a transaction before it counts.
    #[arg(long, env = "ORIEN_CONFIRMATIONS", default_value_t = 1)]
    pub(crate) confirmations: u64,
    /// Renter: top a lane up by what a new session needs instead of refusing to open,
    /// up to this much USDC deposited on the lane in all (e.g. 20).
    #[arg(long, env = "ORIEN_AUTO_FUND", value_name = "CAP")]
    pub(crate) auto_fund: Option<Usdc>,
    /// Provider: settle unsettled vouchers every this many seconds (0: not on a timer).
    #[arg(long, env = "ORIEN_SETTLE_EVERY_SECS", default_value_t = 3600)]
    pub(crate) settle_every_secs: u64,
    /// Provider: settle as soon as this much USDC is acknowledged and unsettled.
    #[arg(long, env = "ORIEN_SETTLE_ABOVE", value_name = "USDC")]
    pub(crate) settle_above: Option<Usdc>,
    /// Provider: withdraw earnings to the wallet whenever this much USDC can be
    /// withdrawn (checked every 10 s; without it only `wallet withdraw` does).
    #[arg(long, env = "ORIEN_AUTO_WITHDRAW_ABOVE", value_name = "USDC")]
    pub(crate) auto_withdraw_above: Option<Usdc>,
    /// Provider: do not settle at shutdown.
    #[arg(long, env = "ORIEN_NO_SETTLE_ON_SHUTDOWN")]
    pub(crate) no_settle_on_shutdown: bool,
}

impl ChainArgs {
    pub(crate) fn settings(&self) -> anyhow::Result<Option<ChainSettings>> {
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
            withdraw_above: self.auto_withdraw_above,
        }))
    }
}

/// Session timings; the defaults suit real use, tests shorten them.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Session timing")]
pub(crate) struct Timing {
    /// How often a provider sends a usage receipt (ms).
    #[arg(long, env = "ORIEN_RECEIPT_INTERVAL_MS", default_value_t = 5_000)]
    pub(crate) receipt_interval_ms: u64,
    /// How long a provider waits for an ack before suspending a session (ms).
    #[arg(long, env = "ORIEN_ACK_TIMEOUT_MS", default_value_t = 10_000)]
    pub(crate) ack_timeout_ms: u64,
    /// How long a renter rides out silence from its provider before closing the
    /// session as disconnected (ms; at least twice the provider's receipt interval).
    #[arg(long, env = "ORIEN_DISCONNECT_GRACE_MS", default_value_t = 30_000)]
    pub(crate) disconnect_grace_ms: u64,
    /// Provider: most sessions one renter may hold at once.
    #[arg(long, env = "ORIEN_MAX_SESSIONS_PER_PEER", default_value_t = 4)]
    pub(crate) max_sessions_per_peer: usize,
    /// Provider on a chain: also serve this renter (peer id) on ledger-paid sessions,
    /// IOUs with nothing escrowed; repeat for several.
    #[arg(
        long = "ledger-peer",
        env = "ORIEN_LEDGER_PEERS",
        value_delimiter = ','
    )]
    pub(crate) ledger_peers: Vec<orien_protocol::NodeId>,
    /// Provider on a chain: serve anyone on ledger-paid sessions (IOUs from strangers;
    /// without it, and without --ledger-peer, every session is paid from escrow).
    #[arg(long, env = "ORIEN_ACCEPT_LEDGER_PAYMENTS")]
    pub(crate) accept_ledger_payments: bool,
    /// Renter: most output of executions kept in memory, in MiB (the oldest ended
    /// sessions' output is forgotten first).
    #[arg(long, env = "ORIEN_MAX_OUTPUT_MIB", default_value_t = 256)]
    pub(crate) max_output_mib: u64,
    /// KiB of each output stream an execution record keeps in the ledger (renter and
    /// provider; the stream's SHA-256 and length cover all of it), 0 to 1024.
    #[arg(long, env = "ORIEN_KEPT_OUTPUT_KIB", default_value_t = 64)]
    pub(crate) kept_output_kib: usize,
    /// Provider: seconds a closed session's artefacts (the copies of its calls' output
    /// paths) are kept for its renter to fetch; 0 keeps them only while it is open.
    /// At most a week. Every offer states it; a tool's price for keeping them is its
    /// `artefact_per_gib` in the provider config.
    #[arg(long, env = "ORIEN_KEEP_ARTEFACTS_SECS", default_value_t = 600)]
    pub(crate) keep_artefacts_secs: u64,
    /// Provider: serve only these renters (peer ids); repeat for several (default:
    /// anyone not denied).
    #[arg(
        long = "allow-renter",
        env = "ORIEN_ALLOW_RENTERS",
        value_delimiter = ','
    )]
    pub(crate) allow_renters: Vec<orien_protocol::NodeId>,
    /// Provider: never serve this renter (peer id); repeat for several.
    #[arg(
        long = "deny-renter",
        env = "ORIEN_DENY_RENTERS",
        value_delimiter = ','
    )]
    pub(crate) deny_renters: Vec<orien_protocol::NodeId>,
    /// Renter: rent only from these providers (peer ids); repeat for several (default:
    /// anyone not denied). Others' offers are not listed.
    #[arg(
        long = "allow-provider",
        env = "ORIEN_ALLOW_PROVIDERS",
        value_delimiter = ','
    )]
    pub(crate) allow_providers: Vec<orien_protocol::NodeId>,
    /// Renter: never rent from this provider (peer id); repeat for several.
    #[arg(
        long = "deny-provider",
        env = "ORIEN_DENY_PROVIDERS",
        value_delimiter = ','
    )]
    pub(crate) deny_providers: Vec<orien_protocol::NodeId>,
    /// Provider: most sessions one renter may open in a minute (0: no limit).
    #[arg(
        long,
        env = "ORIEN_MAX_OPENS_PER_MINUTE_PER_PEER",
        default_value_t = 120
    )]
    pub(crate) max_opens_per_minute_per_peer: u32,
}

/// Longest a provider keeps a closed session's artefacts: a week.
const MAX_KEEP_ARTEFACTS_SECS: u64 = 7 * 24 * 3600;

/// Peers allowed (all when `allow` is empty) and denied.
fn access(allow: &[orien_protocol::NodeId], deny: &[orien_protocol::NodeId]) -> PeerAccess {
    PeerAccess {
        allow: (!allow.is_empty()).then(|| allow.iter().copied().collect()),
        deny: deny.iter().copied().collect(),
    }
}

impl Timing {
    pub(crate) fn session_config(&self) -> anyhow::Result<SessionConfig> {
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
        anyhow::ensure!(
            self.kept_output_kib <= orien_ledger::executions::MAX_KEPT_OUTPUT >> 10,
            "--kept-output-kib must be at most {}",
            orien_ledger::executions::MAX_KEPT_OUTPUT >> 10
        );
        anyhow::ensure!(
            self.keep_artefacts_secs <= MAX_KEEP_ARTEFACTS_SECS,
            "--keep-artefacts-secs must be at most {MAX_KEEP_ARTEFACTS_SECS} (a week)"
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
            kept_output: self.kept_output_kib << 10,
            keep_artefacts: Millis(self.keep_artefacts_secs * 1000),
            operator: OperatorControls {
                renters: access(&self.allow_renters, &self.deny_renters),
                providers: access(&self.allow_providers, &self.deny_providers),
                opens_per_minute: self.max_opens_per_minute_per_peer,
            },
            ..SessionConfig::default()
        })
    }
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("orien")
}

/// The API's address unless told otherwise.
pub(crate) const DEFAULT_API: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7400);

/// Where `run` listens for peers unless told otherwise.
pub(crate) fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}
