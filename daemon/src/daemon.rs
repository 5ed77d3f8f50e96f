//! A whole node as `orien-node run` starts it, from a data directory: the ledger, the
//! sandbox when the node sells tools, the escrow when it pays on a chain, the network
//! node with its sessions, its offers, and the local HTTP API. [`Daemon::start`] is the
//! one place this wiring lives; the binary parses its flags into a [`DaemonConfig`] and
//! calls it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use orien_ledger::Store;
use orien_ledger::chain::{Wallet, WalletError};
use orien_protocol::{Clock, EvmAddress, Millis, NodeKey, OfferId, SystemClock, ToolName};
use orien_provider::config::ConfigError;
use orien_provider::{ProfileConfig, Provider, ProviderConfig, ProviderError, Reaper, Sandbox};
use orien_web_api::mcp::McpConfig;
use orien_web_api::{ApiConfig, BearerToken, TokenError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::NodeService;
use crate::identity::{self, IdentityError};
use crate::payments::{ChainSettings, PaymentError, Payments, RECONCILE_EVERY};
use crate::session::Stopped;
use crate::{Node, NodeConfig, NodeError, OfferSpec, ProfileText, SessionConfig, SessionServices};

/// The payout wallet's key file in the data directory.
pub const WALLET_FILE: &str = "wallet.key";
/// The ledger's directory in the data directory.
pub const LEDGER_DIR: &str = "ledger";
/// How long shutdown waits for each rented session to close.
const CLOSE_ON_SHUTDOWN: Duration = Duration::from_secs(15);
/// How long shutdown waits for the sessions this node provides to close.
const STOP_PROVIDING: Duration = Duration::from_secs(15);
/// How long shutdown waits for a provider's last settlement.
const SETTLE_ON_SHUTDOWN: Duration = Duration::from_secs(60);

/// What a node runs with, beyond its data directory.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The network node: listen and bootstrap addresses, tuning, offer lifetime. Its
    /// `sessions` are replaced by the ones the daemon wires.
    pub node: NodeConfig,
    /// Session timings and policies.
    pub sessions: SessionConfig,
    /// The provider configuration whose tools this node sells (`None`: it only rents).
    pub provider: Option<PathBuf>,
    /// Where earnings are paid (`None`: this node's wallet).
    pub payout: Option<EvmAddress>,
    /// The escrow (`None`: sessions are paid through the ledgers only).
    pub chain: Option<ChainSettings>,
    /// Provider on a chain: settle what is owed at shutdown.
    pub settle_on_shutdown: bool,
    /// Address of the local HTTP API.
    pub api: SocketAddr,
    /// The MCP endpoint at `/mcp` on the API (`None`: not served).
    pub mcp: Option<McpConfig>,
    /// Host names the API and dashboard answer to besides IP addresses and
    /// `localhost` (requests naming any other host are refused: DNS rebinding).
    pub api_hosts: Vec<String>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The data directory has no usable identity.
    #[error("loading the node's identity from {dir} (run `orien-node init` first): {source}")]
    Identity {
        /// The data directory.
        dir: PathBuf,
        /// What went wrong.
        source: IdentityError,
    },
    /// The API token could not be read or created.
    #[error("the API token in {dir}: {source}")]
    Token {
        /// The data directory.
        dir: PathBuf,
        /// What went wrong.
        source: TokenError,
    },
    /// The ledger could not be opened.
    #[error("opening the ledger at {path}: {source}")]
    Ledger {
        /// The ledger's directory.
        path: PathBuf,
        /// What went wrong.
        source: orien_ledger::StoreError,
    },
    /// The provider configuration is invalid.
    #[error("the provider configuration {path}: {source}")]
    ProviderConfig {
        /// Its file.
        path: PathBuf,
        /// What is wrong with it.
        source: ConfigError,
    },
    /// The sandbox could not start.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The wallet could not be loaded or created.
    #[error("loading the wallet {path}: {source}")]
    Wallet {
        /// Its key file.
        path: PathBuf,
        /// What went wrong.
        source: WalletError,
    },
    /// The escrow is unreachable or not what the settings say.
    #[error("connecting to the escrow (--chain-rpc, --chain-id, --escrow): {0}")]
    Escrow(#[source] PaymentError),
    /// The network node could not start or publish.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A tool's image is not present, so it cannot be offered.
    #[error("making the offer of tool `{0}`: its image is not present")]
    Offer(ToolName),
    /// The API's address could not be bound.
    #[error(
        "binding the API to {addr}; is another node running? choose another with --api: {source}"
    )]
    ApiBind {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The API's address could not be recorded in the data directory.
    #[error("writing {path}: {source}")]
    ApiAddrFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// A running node: everything [`Daemon::start`] wired, until [`Daemon::serve`] ends.
pub struct Daemon {
    node: Arc<Node>,
    payments: Option<Arc<Payments>>,
    escrow: Option<(EvmAddress, u64, EvmAddress)>,
    offers: Vec<(ToolName, OfferId)>,
    listener: tokio::net::TcpListener,
    api: SocketAddr,
    api_addr_file: PathBuf,
    token: BearerToken,
    settle_on_shutdown: bool,
    mcp: Option<McpConfig>,
    api_hosts: Vec<String>,
    _reaper: Option<Reaper>,
    /// The sandbox it sells from, to stop its warm pool at shutdown.
    provider: Option<Provider>,
    _background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("node", &self.node.id())
            .field("api", &self.api)
            .field("offers", &self.offers)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts the node of `data_dir` (made by `orien-node init`): opens its ledger,
    /// starts the sandbox and the escrow client it is configured with, assembles the
    /// network node from those parts ([`DaemonParts::assemble`]), publishes an offer
    /// per tool it sells and binds the API (the address is written to `api.addr` in
    /// the data directory for the CLI).
    pub async fn start(data_dir: &Path, config: DaemonConfig) -> Result<Self, DaemonError> {
        let key = identity::load(data_dir).map_err(|source| DaemonError::Identity {
            dir: data_dir.to_owned(),
            source,
        })?;
        let token = BearerToken::create_or_load(data_dir).map_err(|source| DaemonError::Token {
            dir: data_dir.to_owned(),
            source,
        })?;
        let ledger = data_dir.join(LEDGER_DIR);
        let store = Arc::new(Store::open(&ledger).map_err(|source| DaemonError::Ledger {
            path: ledger.clone(),
            source,
        })?);
        let (provider, profile) = match &config.provider {
            Some(path) => {
                let (provider, profile) = start_provider(path, data_dir, &key).await?;
                (Some(provider), profile)
            }
            None => (None, ProfileConfig::default()),
        };
        let reaper = provider.as_ref().map(Provider::spawn_reaper);
        let wallet_file = data_dir.join(WALLET_FILE);
        let wallet =
            Wallet::load_or_create(&wallet_file).map_err(|source| DaemonError::Wallet {
                path: wallet_file,
                source,
            })?;
        let payout = config.payout.unwrap_or_else(|| wallet.address());
        let mut background = Vec::new();
        let payments = match &config.chain {
            Some(settings) => {
                let payments = Payments::connect(settings, &wallet, store.clone(), key.node_id())
                    .await
                    .map_err(DaemonError::Escrow)?;
                background.push(payments.spawn_reconciler(RECONCILE_EVERY));
                if provider.is_some() {
                    background.extend(payments.spawn_settler(
                        settings.settle_every,
                        settings.settle_above,
                        settings.withdraw_above,
                    ));
                }
                Some(payments)
            }
            None => None,
        };
        let escrow = config
            .chain
            .as_ref()
            .map(|s| (s.escrow, s.chain.chain_id, wallet.address()));
        let sells = provider.is_some();
        let parts = DaemonParts {
            key,
            clock: Arc::new(SystemClock::new()),
            store,
            sandbox: provider.clone().map(|p| Arc::new(p) as Arc<dyn Sandbox>),
            payments: payments.clone(),
            payout,
            node: NodeConfig {
                profile: ProfileText {
                    display_name: profile.name,
                    description: profile.description,
                },
                ..config.node
            },
            sessions: config.sessions,
        };
        let Assembled { node, offers } = parts.assemble(true).await?;
        let node = Arc::new(node);
        let listener = tokio::net::TcpListener::bind(config.api)
            .await
            .map_err(|source| DaemonError::ApiBind {
                addr: config.api,
                source,
            })?;
        let api = listener
            .local_addr()
            .map_err(|source| DaemonError::ApiBind {
                addr: config.api,
                source,
            })?;
        let api_addr_file = data_dir.join(crate::client::API_ADDR_FILE);
        std::fs::write(&api_addr_file, api.to_string()).map_err(|source| {
            DaemonError::ApiAddrFile {
                path: api_addr_file.clone(),
                source,
            }
        })?;
        Ok(Self {
            node,
            settle_on_shutdown: config.settle_on_shutdown && sells,
            mcp: config.mcp,
            api_hosts: config.api_hosts,
            payments,
            escrow,
            offers,
            listener,
            api,
            api_addr_file,
            token,
            _reaper: reaper,
            provider,
            _background: background,
        })
    }

    /// The network node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The addresses the node listens on.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        self.node.listen_addrs()
    }

    /// The escrow it pays through, the chain's id and its wallet (`None`: ledger only).
    pub fn escrow(&self) -> Option<(EvmAddress, u64, EvmAddress)> {
        self.escrow
    }

    /// The offer published for each tool it sells.
    pub fn offers(&self) -> &[(ToolName, OfferId)] {
        &self.offers
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// Serves the API until `shutdown` completes, then stops in order: the API, the
    /// node's sessions ([`end_sessions`]), a provider's settlement when configured, and
    /// the network node (its offers withdrawn).
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = Arc::new(NodeService::new(self.node.clone()));
        // Long-lived MCP streams (notifications) end when shutdown begins, so the
        // graceful shutdown does not wait on them.
        let streams = CancellationToken::new();
        let api = ApiConfig {
            mcp: self.mcp,
            shutdown: streams.clone(),
            hosts: orien_web_api::HostPolicy::new(self.api_hosts.clone()),
            ..ApiConfig::new(self.token.clone())
        };
        let app = orien_web_api::router(service, api);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                streams.cancel();
            })
            .await;
        let _ = std::fs::remove_file(&self.api_addr_file);
        end_sessions(&self.node).await;
        if self.settle_on_shutdown
            && let Some(payments) = &self.payments
        {
            settle_at_shutdown(payments).await;
        }
        match Arc::try_unwrap(self.node) {
            Ok(node) => node.shutdown().await,
            Err(_) => {
                tracing::warn!("API connections still open; stopping without withdrawing offers")
            }
        }
        if let Some(provider) = &self.provider {
            provider.shutdown().await;
        }
        served
    }
}

/// What a node is made of, ready to run: what [`Daemon::start`] loads from a data
/// directory, or what a test or a simulation hands over itself (a modelled sandbox, a
/// manual clock, faults on its links, its own runtime to crash).
pub struct DaemonParts {
    /// The node's identity.
    pub key: NodeKey,
    /// The clock its sessions and offers run on.
    pub clock: Arc<dyn Clock>,
    /// Its ledger.
    pub store: Arc<Store>,
    /// The sandbox of the tools it sells (`None`: it only rents).
    pub sandbox: Option<Arc<dyn Sandbox>>,
    /// Escrow payments, when it is connected to a chain.
    pub payments: Option<Arc<Payments>>,
    /// Where its earnings are paid (the payout of its offers).
    pub payout: EvmAddress,
    /// The network node: listen and bootstrap addresses, tuning, offer lifetime, faults.
    /// Its `sessions` are replaced by the ones wired from these parts.
    pub node: NodeConfig,
    /// Session timings and policies.
    pub sessions: SessionConfig,
}

impl std::fmt::Debug for DaemonParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonParts")
            .field("key", &self.key.node_id())
            .field("store", &self.store.path())
            .field("sandbox", &self.sandbox.is_some())
            .field("payments", &self.payments.is_some())
            .field("payout", &self.payout)
            .finish_non_exhaustive()
    }
}

/// A node assembled from its parts.
pub struct Assembled {
    /// The network node with its sessions.
    pub node: Node,
    /// The offer published for each tool it sells (empty when none were published).
    pub offers: Vec<(ToolName, OfferId)>,
}

impl std::fmt::Debug for Assembled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembled")
            .field("node", &self.node.id())
            .field("offers", &self.offers)
            .finish()
    }
}

impl DaemonParts {
    /// Wires the parts into a running network node — the ledger, sandbox and escrow
    /// lent to its sessions — and, when `publish` is set, publishes an offer of every
    /// tool the sandbox sells. The one place a node's parts are put together: the
    /// binary reaches it through [`Daemon::start`], the tests and simulations directly.
    pub async fn assemble(self, publish: bool) -> Result<Assembled, DaemonError> {
        let node_config = NodeConfig {
            sessions: Some(SessionServices {
                staging: crate::transfer::staging::beside(self.store.path()),
                store: self.store,
                provider: self.sandbox.clone(),
                config: self.sessions,
                payments: self.payments,
            }),
            ..self.node
        };
        let offer_ttl = Millis::from_duration(node_config.offer_ttl);
        let node = Node::start(self.key, node_config, Arc::clone(&self.clock)).await?;
        let mut offers = Vec::new();
        if publish && let Some(sandbox) = &self.sandbox {
            for tool in sandbox.tool_names() {
                let offer = sandbox
                    .offer(&tool, self.payout, self.clock.wall(), offer_ttl)
                    .ok_or_else(|| DaemonError::Offer(tool.clone()))?;
                let id = node.publish_offer(OfferSpec::from(offer)).await?;
                offers.push((tool, id));
            }
        }
        Ok(Assembled { node, offers })
    }
}

/// Loads the provider configuration at `path` and starts its sandbox (disk-backed
/// workspaces under `<data_dir>/workspaces` unless the file says where); returns it
/// with what the provider says of itself in its profile.
async fn start_provider(
    path: &Path,
    data_dir: &Path,
    key: &NodeKey,
) -> Result<(Provider, ProfileConfig), DaemonError> {
    let (mut config, tools) =
        ProviderConfig::load(path).map_err(|source| DaemonError::ProviderConfig {
            path: path.to_owned(),
            source,
        })?;
    config.engine.workspaces = Some(config.engine.workspaces_in(data_dir));
    let provider = Provider::start(&config.engine, tools, key.node_id()).await?;
    Ok((provider, config.profile))
}

/// Settles what this provider is owed before it stops (bounded in time).
async fn settle_at_shutdown(payments: &Payments) {
    match tokio::time::timeout(SETTLE_ON_SHUTDOWN, payments.settle()).await {
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

/// Ends a stopping node's sessions, both kinds at once: each one it rents is closed on a
/// countersigned closing receipt rather than left to its provider's ack timeout, and
/// each one it provides closes on a closing receipt for the time it served, its renter
/// told why, rather than losing that time with the process. What `orien-node` does at
/// shutdown before it settles and stops its network.
pub async fn end_sessions(node: &Node) {
    tokio::join!(close_rented_sessions(node), stop_providing(node));
}

/// Closes every session this node provides, and takes no new one.
async fn stop_providing(node: &Node) {
    let Some(sessions) = node.sessions() else {
        return;
    };
    let stopped = sessions
        .stop_providing(tokio::time::Instant::now() + STOP_PROVIDING)
        .await;
    if stopped == Stopped::default() {
        return;
    }
    if stopped.unfinished == 0 {
        tracing::info!(
            closed = stopped.closed,
            "provided sessions closed at shutdown"
        );
    } else {
        tracing::warn!(
            closed = stopped.closed,
            unfinished = stopped.unfinished,
            "provided sessions still open at shutdown end with the node; its next start closes them out"
        );
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
