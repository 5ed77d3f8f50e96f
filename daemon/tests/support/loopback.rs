//! In-process nodes on loopback TCP, shared by the tests and benchmarks that run a
//! market inside one process (`#[path]`-included, so it needs nothing else from
//! `support`).
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orien_daemon::{DaemonParts, Node, NodeConfig, OfferSpec, SessionConfig};
use orien_ledger::Store;
use orien_protocol::{Clock, EvmAddress, Millis, NodeKey, OfferId, SystemClock, ToolName};
use orien_provider::{Provider, ProviderConfig};

/// `configs/provider.example.toml`: the example tools, on the locally built image.
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/provider.example.toml")
}

/// A node listening on a fresh loopback port, bootstrapped from `bootstrap`, with its
/// ledger `store`, selling the tools of `sandbox` (offers published by the caller).
pub async fn node(
    key: NodeKey,
    bootstrap: &[&Node],
    store: Arc<Store>,
    sandbox: Option<Provider>,
    sessions: SessionConfig,
) -> Node {
    let parts = DaemonParts {
        key,
        clock: Arc::new(SystemClock::new()),
        store,
        sandbox: sandbox.map(|p| Arc::new(p) as Arc<dyn orien_provider::Sandbox>),
        payments: None,
        payout: PAYOUT,
        node: NodeConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
            bootstrap: bootstrap
                .iter()
                .map(|n| n.listen_addrs()[0].clone())
                .collect(),
            ..NodeConfig::default()
        },
        sessions,
    };
    parts.assemble(false).await.expect("the node starts").node
}

/// Where the loopback providers are paid.
pub const PAYOUT: EvmAddress = EvmAddress::from_bytes([0x42; 20]);

/// A provider with the real Docker sandbox selling the example tools and a renter that
/// found the provider's offer of one tool, each with a RocksDB ledger in a temporary
/// directory.
pub struct Market {
    pub provider_key: NodeKey,
    pub renter_key: NodeKey,
    pub sandbox: Provider,
    pub provider: Node,
    pub renter: Arc<Node>,
    pub provider_store: Arc<Store>,
    pub renter_store: Arc<Store>,
    pub tool: ToolName,
    pub offer: OfferId,
    dir: tempfile::TempDir,
}

impl Market {
    /// Serves the renter's HTTP API on a fresh loopback port; its base URL and token.
    pub async fn serve_api(&self) -> (String, String) {
        let token = orien_web_api::BearerToken::generate();
        let app = orien_web_api::router(
            Arc::new(orien_daemon::api::NodeService::new(self.renter.clone())),
            orien_web_api::ApiConfig::new(token.clone()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the API serves") });
        (base, token.expose().to_owned())
    }

    /// Opens a ledger-paid session of the market's offer with a budget of 2 USDC for up
    /// to an hour.
    pub async fn open(&self) -> orien_protocol::SessionId {
        self.renter
            .sessions()
            .expect("the renter runs sessions")
            .open(
                self.offer,
                orien_protocol::Usdc::from_micros(2_000_000),
                Millis(3_600_000),
            )
            .await
            .expect("the session opens")
            .session
    }

    /// Starts the market for `tool` (one of configs/provider.example.toml), both sides
    /// with the session settings `config`.
    pub async fn start(tool: &str, config: SessionConfig) -> Self {
        Self::start_with(&example_config(), tool, config).await
    }

    /// Starts the market for `tool` of the provider configuration at `provider`.
    pub async fn start_with(provider: &Path, tool: &str, config: SessionConfig) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (mut provider_config, tools) =
            ProviderConfig::load(provider).expect("the provider config loads");
        provider_config.engine.workspaces = Some(provider_config.engine.workspaces_in(dir.path()));
        let (provider_key, renter_key) = (NodeKey::generate(), NodeKey::generate());
        let sandbox = Provider::start(&provider_config.engine, tools, provider_key.node_id())
            .await
            .expect("the Docker engine and orien/busybox:1 (scripts/test prepares both)");
        let store =
            |name: &str| Arc::new(Store::open(dir.path().join(name)).expect("the ledger opens"));
        let (provider_store, renter_store) = (store("provider"), store("renter"));
        let provider = node(
            provider_key.clone(),
            &[],
            Arc::clone(&provider_store),
            Some(sandbox.clone()),
            config.clone(),
        )
        .await;
        let renter = node(
            renter_key.clone(),
            &[&provider],
            Arc::clone(&renter_store),
            None,
            config,
        )
        .await;
        let tool = ToolName::new(tool).expect("a valid tool name");
        let offer = sandbox
            .offer(&tool, PAYOUT, SystemClock::new().wall(), Millis(3_600_000))
            .expect("the tool is in the example config");
        let published = provider
            .publish_offer(OfferSpec::from(offer))
            .await
            .expect("the offer is published");
        let found = renter.find_tool(tool.clone()).await.expect("a lookup");
        // The provider re-announces (a newer offer, another id) when the renter joins
        // the offer topic; what is found is the provider's offer of the tool, either one,
        // and the market opens the one the renter holds, as a user would.
        let offer = found
            .iter()
            .find(|e| {
                e.id == published
                    || (e.offer.provider == provider_key.node_id() && e.offer.tool == tool)
            })
            .map(|e| e.id)
            .unwrap_or_else(|| panic!("the renter finds the provider's offer: {found:?}"));
        Self {
            provider_key,
            renter_key,
            sandbox,
            provider,
            renter: Arc::new(renter),
            provider_store,
            renter_store,
            tool,
            offer,
            dir,
        }
    }

    /// Stops both nodes (the renter only if nothing else holds it).
    pub async fn shutdown(self) {
        if let Ok(renter) = Arc::try_unwrap(self.renter) {
            renter.shutdown().await;
        }
        self.provider.shutdown().await;
        // The warm sandboxes go with the node, and so do the sandboxes of sessions a test
        // left open: a provider of the same node with no session reaps them at its start.
        self.sandbox.shutdown().await;
        let engine = orien_provider::EngineConfig {
            warm_pool: 0,
            workspaces: Some(self.dir.path().join("workspaces")),
            ..orien_provider::EngineConfig::default()
        };
        Provider::start(&engine, Vec::new(), self.sandbox.node())
            .await
            .expect("the engine reaps the node's sandboxes");
    }
}
