//! The node's configuration file: `config.toml` in the data directory (or `--config`).
//!
//! Settings are layered: a command-line flag beats its `ORIEN_*` environment variable,
//! which beats the file, which beats the built-in default. The file uses the flags'
//! names with underscores; an unknown key is an error naming it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;
use libp2p::Multiaddr;
use orien_protocol::{EvmAddress, Usdc};
use serde::Deserialize;

/// The file's name in the data directory.
pub(crate) const CONFIG_FILE: &str = "config.toml";

/// What `config.toml` may set (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    listen: Option<Vec<Multiaddr>>,
    bootstrap: Option<Vec<Multiaddr>>,
    external_addresses: Option<Vec<Multiaddr>>,
    relay_server: Option<bool>,
    max_peers: Option<usize>,
    api: Option<std::net::SocketAddr>,
    api_hosts: Option<Vec<String>>,
    provider_config: Option<PathBuf>,
    payout: Option<EvmAddress>,
    receipt_interval_ms: Option<u64>,
    ack_timeout_ms: Option<u64>,
    disconnect_grace_ms: Option<u64>,
    max_sessions_per_peer: Option<usize>,
    ledger_peers: Option<Vec<orien_protocol::NodeId>>,
    allow_renters: Option<Vec<orien_protocol::NodeId>>,
    deny_renters: Option<Vec<orien_protocol::NodeId>>,
    allow_providers: Option<Vec<orien_protocol::NodeId>>,
    deny_providers: Option<Vec<orien_protocol::NodeId>>,
    max_opens_per_minute_per_peer: Option<u32>,
    accept_ledger_payments: Option<bool>,
    max_output_mib: Option<u64>,
    kept_output_kib: Option<usize>,
    keep_artefacts_secs: Option<u64>,
    chain_rpc: Option<String>,
    chain_id: Option<u64>,
    escrow: Option<EvmAddress>,
    confirmations: Option<u64>,
    auto_fund: Option<Usdc>,
    settle_every_secs: Option<u64>,
    settle_above: Option<Usdc>,
    auto_withdraw_above: Option<Usdc>,
    mcp_max_call: Option<Usdc>,
    mcp_max_session: Option<Usdc>,
    mcp_max_day: Option<Usdc>,
    no_mcp: Option<bool>,
}

impl FileConfig {
    /// Reads `path`; a missing file is an empty configuration unless it was named
    /// explicitly.
    pub(crate) fn load(path: &Path, explicit: bool) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The addresses `run` would listen on from this file: peers, and the API.
    pub(crate) fn addresses(&self) -> (Option<Vec<Multiaddr>>, Option<std::net::SocketAddr>) {
        (self.listen.clone(), self.api)
    }

    /// Fills every setting of `run` that neither a flag nor the environment gave.
    pub(crate) fn apply(
        self,
        run: &mut crate::args::RunArgs,
        matches: &ArgMatches,
    ) -> anyhow::Result<()> {
        let given = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        macro_rules! layer {
            ($value:expr, $id:literal, $target:expr) => {
                if let Some(value) = $value
                    && !given($id)
                {
                    $target = value;
                }
            };
        }
        layer!(self.listen, "listen", run.listen);
        layer!(self.bootstrap, "bootstrap", run.bootstrap);
        layer!(
            self.external_addresses,
            "external_addresses",
            run.external_addresses
        );
        layer!(self.relay_server, "relay_server", run.relay_server);
        layer!(self.max_peers, "max_peers", run.max_peers);
        layer!(self.api, "api", run.api);
        layer!(self.api_hosts, "api_hosts", run.api_hosts);
        layer!(
            self.provider_config.map(Some),
            "provider_config",
            run.provider_config
        );
        layer!(self.payout.map(Some), "payout", run.payout);
        layer!(
            self.receipt_interval_ms,
            "receipt_interval_ms",
            run.timing.receipt_interval_ms
        );
        layer!(
            self.ack_timeout_ms,
            "ack_timeout_ms",
            run.timing.ack_timeout_ms
        );
        layer!(
            self.disconnect_grace_ms,
            "disconnect_grace_ms",
            run.timing.disconnect_grace_ms
        );
        layer!(
            self.max_sessions_per_peer,
            "max_sessions_per_peer",
            run.timing.max_sessions_per_peer
        );
        layer!(self.ledger_peers, "ledger_peers", run.timing.ledger_peers);
        layer!(
            self.allow_renters,
            "allow_renters",
            run.timing.allow_renters
        );
        layer!(self.deny_renters, "deny_renters", run.timing.deny_renters);
        layer!(
            self.allow_providers,
            "allow_providers",
            run.timing.allow_providers
        );
        layer!(
            self.deny_providers,
            "deny_providers",
            run.timing.deny_providers
        );
        layer!(
            self.max_opens_per_minute_per_peer,
            "max_opens_per_minute_per_peer",
            run.timing.max_opens_per_minute_per_peer
        );
        layer!(
            self.accept_ledger_payments,
            "accept_ledger_payments",
            run.timing.accept_ledger_payments
        );
        layer!(
            self.max_output_mib,
            "max_output_mib",
            run.timing.max_output_mib
        );
        layer!(
            self.kept_output_kib,
            "kept_output_kib",
            run.timing.kept_output_kib
        );
        layer!(
            self.keep_artefacts_secs,
            "keep_artefacts_secs",
            run.timing.keep_artefacts_secs
        );
        let rpc = self
            .chain_rpc
            .map(|url| {
                url.parse()
                    .with_context(|| format!("chain_rpc = {url:?} is not a URL"))
            })
            .transpose()?;
        layer!(rpc.map(Some), "chain_rpc", run.chain.chain_rpc);
        layer!(self.chain_id.map(Some), "chain_id", run.chain.chain_id);
        layer!(self.escrow.map(Some), "escrow", run.chain.escrow);
        layer!(self.confirmations, "confirmations", run.chain.confirmations);
        layer!(self.auto_fund.map(Some), "auto_fund", run.chain.auto_fund);
        layer!(
            self.settle_every_secs,
            "settle_every_secs",
            run.chain.settle_every_secs
        );
        layer!(
            self.settle_above.map(Some),
            "settle_above",
            run.chain.settle_above
        );
        layer!(
            self.auto_withdraw_above.map(Some),
            "auto_withdraw_above",
            run.chain.auto_withdraw_above
        );
        layer!(self.mcp_max_call, "mcp_max_call", run.mcp.mcp_max_call);
        layer!(
            self.mcp_max_session,
            "mcp_max_session",
            run.mcp.mcp_max_session
        );
        layer!(self.mcp_max_day, "mcp_max_day", run.mcp.mcp_max_day);
        layer!(self.no_mcp, "no_mcp", run.mcp.no_mcp);
        Ok(())
    }
}

/// The file `init` writes: every key commented out at its default, with what the role
/// needs first.
pub(crate) fn template(role: &str) -> String {
    let first = match role {
        "renter" => {
            "# A renter needs nothing more here; with a chain, set chain_rpc, chain_id,
# escrow and perhaps auto_fund below.
"
        }
        _ => {
            "# To sell tools, name your whitelist (see configs/provider.example.toml):
"
        }
    };
    format!(
        r#"# ORIEN node configuration. A flag beats its ORIEN_* environment variable, which
# beats this file, which beats the default. Keys are the flags of `orien-node run`.

{first}# provider_config = "/etc/orien/provider.toml"

# Network.
# listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# bootstrap = ["/dns4/bootstrap.example/tcp/4001/p2p/12D3KooW..."]
# external_addresses = ["/ip4/203.0.113.7/tcp/4001"]
# relay_server = false
# Peers to stay connected to at most (the least useful connections above it close).
# max_peers = 48
# api = "127.0.0.1:7400"
# Host names the API and the dashboard answer to besides IP addresses and localhost
# (a request naming another host is refused, against DNS rebinding).
# api_hosts = ["node.lan"]

# Sessions.
# receipt_interval_ms = 5000
# ack_timeout_ms = 10000
# disconnect_grace_ms = 30000

# Peers (peer ids). A provider serves anyone but deny_renters (only allow_renters when
# set); a renter rents from anyone but deny_providers (only allow_providers when set).
# allow_renters = ["12D3KooW..."]
# deny_renters = []
# allow_providers = []
# deny_providers = []
# max_sessions_per_peer = 4            # provider: sessions one renter holds at once
# max_opens_per_minute_per_peer = 120  # provider: sessions one renter opens a minute

# On-chain payment (without chain_rpc, sessions are paid through the ledgers only).
# chain_rpc = "https://rpc.example"
# chain_id = 8453
# escrow = "0x..."
# confirmations = 1
# auto_fund = "20"          # renter: top lanes up, never past this much per lane
# settle_every_secs = 3600  # provider
# settle_above = "5"        # provider
# payout = "0x..."          # provider: where earnings go (default: this node's wallet)

# AI agents over MCP (/mcp on the API port, or `orien-node mcp`): what they may spend.
# mcp_max_call = "0.5"      # one tool call
# mcp_max_session = "2"     # one session's budget
# mcp_max_day = "10"        # all rented sessions in a UTC day
# no_mcp = false
"#
    )
}
