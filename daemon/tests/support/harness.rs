//! The hostile-peer harness: in-process nodes over real libp2p (loopback TCP) with real
//! RocksDB ledgers on disk, whose behaviour a test programs — lose, delay or hold back
//! any session-protocol message ([`Rules`]), crash a node and restart it on the same data
//! directory ([`TestNode::crash`], [`TestNode::restart`]) — and a modelled sandbox
//! ([`ModelSandbox`]) whose calls run as long as a test says and can misbehave like a
//! dishonest provider's. `#[path]`-included; needs nothing else from `support`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use libp2p::Multiaddr;
use orien_daemon::payments::{ChainSettings, Payments};
use orien_daemon::{
    DaemonParts, Fault, Faults, LinkFaults, Node, NodeConfig, OfferSpec, Point, SessionConfig,
};
use orien_ledger::chain::Wallet;
use orien_ledger::chain::devnet::{Anvil, Deployment};
use orien_ledger::{AckedReceipt, SessionHead, SessionStatus, Store};
use orien_protocol::{
    Clock, EvmAddress, Millis, NodeKey, OfferId, Pricing, SessionId, SessionRequest,
    SessionResponse, SystemClock, ToolName, Usage, Usdc,
};
use orien_provider::model::{ModelRun, ModelSandbox, SessionWork};
use orien_provider::{ProviderConfig, Tool};

/// How long a test waits for something that should happen soon.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Session settings of the harness: receipts every 200 ms, an ack within a second.
pub fn fast() -> SessionConfig {
    SessionConfig {
        receipt_interval: Millis(200),
        ack_timeout: Millis(1_000),
        disconnect_grace: Millis(3_000),
        ..SessionConfig::default()
    }
}

/// Polls `check` every 20 ms until it holds, for at most `patience`.
pub async fn eventually(patience: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// The modelled tool `work`: runs `{"ms": "<n>"}` milliseconds (cut at its 2 s limit);
/// `"wall"` makes the exit report another wall time and `"late": "yes"` makes it run
/// past the limit, as a dishonest provider's would. 1 µUSDC per millisecond of session,
/// 10 per millisecond of call.
pub const MODEL_TOOLS: &str = r#"
[tools.work]
description = "A modelled call that runs as long as it is asked to."
version = "1"
image = "orien/model:1"
argv = ["work", "{ms}"]
schema = '''
{
  "type": "object",
  "additionalProperties": false,
  "required": ["ms"],
  "properties": {
    "ms": {"type": "string", "pattern": "^[0-9]{1,6}$"},
    "wall": {"type": "string", "pattern": "^[0-9]{1,6}$"},
    "late": {"type": "string", "enum": ["yes"]}
  }
}
'''

[tools.work.limits]
max_exec_ms = 2_000
cpus = 0.5
memory = "64MiB"
pids = 16
tmpfs = "8MiB"
output = "64KiB"
workspace = "1MiB"
concurrent_execs = 2

[tools.work.pricing]
session_per_minute = "0.060000"
exec_per_minute = "0.600000"
"#;

/// The name of the modelled tool.
pub fn work_tool() -> ToolName {
    ToolName::new("work").unwrap()
}

/// The modelled tools, `work` at `exec_per_minute` USDC per minute of execution.
pub fn model_tools_priced(exec_per_minute: &str) -> Vec<Tool> {
    let config = MODEL_TOOLS.replace(
        r#"exec_per_minute = "0.600000""#,
        &format!(r#"exec_per_minute = "{exec_per_minute}""#),
    );
    ProviderConfig::parse(&config, Path::new("harness.toml"))
        .expect("the modelled tools parse")
        .1
}

/// The modelled tools.
pub fn model_tools() -> Vec<Tool> {
    ProviderConfig::parse(MODEL_TOOLS, Path::new("harness.toml"))
        .expect("the modelled tools parse")
        .1
}

/// Arguments of a modelled call of `ms` milliseconds.
pub fn work(ms: u64) -> String {
    format!(r#"{{"ms":"{ms}"}}"#)
}

/// What a modelled call does, from its arguments.
pub fn model_run(_tool: &Tool, args: &serde_json::Value) -> ModelRun {
    let number = |key: &str| {
        args.get(key)
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let ms = number("ms").unwrap_or(0);
    let mut run = ModelRun::exits_after(Duration::from_millis(ms), format!("{ms}\n").into_bytes());
    run.reported_wall = number("wall").map(Millis);
    run.ignore_limit = args.get("late").is_some();
    run
}

/// Programmable faults of one node: the first rule that has an opinion decides, and
/// everything else is delivered.
#[derive(Default)]
pub struct Rules {
    rules: Mutex<Vec<Rule>>,
}

type Rule = Box<dyn FnMut(&Point<'_>) -> Option<Fault> + Send>;

impl Rules {
    /// Adds a rule, consulted after the earlier ones.
    pub fn add(&self, rule: impl FnMut(&Point<'_>) -> Option<Fault> + Send + 'static) {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(rule));
    }

    /// Removes every rule: the node is honest and its links perfect again.
    pub fn clear(&self) {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl LinkFaults for Rules {
    fn decide(&self, point: Point<'_>) -> Fault {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        rules
            .iter_mut()
            .find_map(|rule| rule(&point))
            .unwrap_or(Fault::Deliver)
    }
}

/// A receipt a node receives.
pub fn is_receipt(point: &Point<'_>) -> bool {
    matches!(
        point,
        Point::InboundRequest {
            request: SessionRequest::Receipt(_),
            ..
        }
    )
}

/// An ack a node sends.
pub fn is_ack_out(point: &Point<'_>) -> bool {
    matches!(
        point,
        Point::OutboundResponse {
            response: SessionResponse::Ack(_),
            ..
        }
    )
}

/// An ack a node receives.
pub fn is_ack_in(point: &Point<'_>) -> bool {
    matches!(
        point,
        Point::InboundResponse {
            response: SessionResponse::Ack(_),
            ..
        }
    )
}

/// The decoded receipt a node receives, if the point is one.
pub fn receipt_of(point: &Point<'_>) -> Option<orien_protocol::UsageReceipt> {
    match point {
        Point::InboundRequest {
            request: SessionRequest::Receipt(receipt),
            ..
        } => receipt.verify().ok(),
        _ => None,
    }
}

/// A local chain with MockUSDC and an escrow, for nodes that pay on chain.
pub struct Chain {
    pub anvil: Anvil,
    pub deployment: Deployment,
}

impl Chain {
    /// Starts anvil and deploys the contracts with a `thaw` window.
    pub async fn start(thaw: Duration) -> Self {
        let anvil = Anvil::spawn().expect("anvil (scripts/test installs it)");
        let deployment = anvil.deploy(thaw).await.expect("the contracts deploy");
        Self { anvil, deployment }
    }

    /// A wallet with gas and `usdc`, and the settings of a node paying with it.
    pub async fn wallet(&self, usdc: Usdc, auto_fund_cap: Option<Usdc>) -> (Wallet, ChainSettings) {
        let wallet = Wallet::generate();
        self.deployment
            .fund(&self.anvil, wallet.address(), usdc)
            .await
            .expect("the wallet is funded");
        let settings = ChainSettings {
            chain: self.anvil.config(),
            escrow: self.deployment.escrow.address(),
            auto_fund_cap,
            settle_every: None,
            settle_above: None,
            withdraw_above: None,
        };
        (wallet, settings)
    }
}

/// One in-process node with its own tokio runtime, so that a crash drops every task
/// it runs (swarm, sessions, calls) at once, and its ledger in its own directory.
pub struct TestNode {
    pub key: NodeKey,
    pub dir: PathBuf,
    pub rules: Arc<Rules>,
    pub sandbox: Option<ModelSandbox>,
    pub config: SessionConfig,
    pub clock: Arc<dyn Clock>,
    /// On-chain payment: the node's wallet and escrow settings.
    pub chain: Option<(Wallet, ChainSettings)>,
    /// Limits of the node's offer book.
    pub book: orien_daemon::OfferBookLimits,
    pub bootstrap: Vec<Multiaddr>,
    runtime: Option<tokio::runtime::Runtime>,
    node: Option<Arc<Node>>,
    store: Option<Arc<Store>>,
}

impl TestNode {
    /// A provider selling the modelled tools from `dir`.
    pub async fn provider(dir: &Path, config: SessionConfig) -> Self {
        Self::provider_paid(dir, config, None).await
    }

    /// A provider selling `tools` (modelled) from `dir`; returns its sandbox too.
    pub async fn provider_selling(
        dir: &Path,
        config: SessionConfig,
        tools: Vec<Tool>,
    ) -> (Self, ModelSandbox) {
        let key = NodeKey::generate();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let sandbox = ModelSandbox::with_clock(key.node_id(), tools, model_run, Arc::clone(&clock));
        let node = Self::start(
            key,
            dir,
            Some(sandbox.clone()),
            config,
            Vec::new(),
            clock,
            None,
        )
        .await;
        (node, sandbox)
    }

    /// A provider selling `tools` from `dir`, each call behaving as `model` says.
    pub async fn provider_modelled(
        dir: &Path,
        config: SessionConfig,
        tools: Vec<Tool>,
        model: impl orien_provider::model::CallModel,
    ) -> Self {
        let key = NodeKey::generate();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let sandbox = ModelSandbox::with_clock(key.node_id(), tools, model, Arc::clone(&clock));
        Self::start(key, dir, Some(sandbox), config, Vec::new(), clock, None).await
    }

    /// A provider selling the modelled tools from `dir`, paid on chain with `chain`.
    pub async fn provider_paid(
        dir: &Path,
        config: SessionConfig,
        chain: Option<(Wallet, ChainSettings)>,
    ) -> Self {
        let key = NodeKey::generate();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let sandbox =
            ModelSandbox::with_clock(key.node_id(), model_tools(), model_run, Arc::clone(&clock));
        Self::start(key, dir, Some(sandbox), config, Vec::new(), clock, chain).await
    }

    /// A renter bootstrapped from `provider`.
    pub async fn renter(dir: &Path, config: SessionConfig, bootstrap: &TestNode) -> Self {
        Self::renter_paid(dir, config, bootstrap, None).await
    }

    /// A renter bootstrapped from `provider`, paying on chain with `chain`.
    pub async fn renter_paid(
        dir: &Path,
        config: SessionConfig,
        bootstrap: &TestNode,
        chain: Option<(Wallet, ChainSettings)>,
    ) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let addrs = bootstrap.node().listen_addrs().to_vec();
        Self::start(NodeKey::generate(), dir, None, config, addrs, clock, chain).await
    }

    /// A renter with `key`, bootstrapped from `provider`.
    pub async fn renter_with_key(
        dir: &Path,
        config: SessionConfig,
        bootstrap: &TestNode,
        key: NodeKey,
    ) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let addrs = bootstrap.node().listen_addrs().to_vec();
        Self::start(key, dir, None, config, addrs, clock, None).await
    }

    /// A renter bootstrapped from `addrs` (each ending in `/p2p/<peer>`).
    pub async fn renter_at(dir: &Path, config: SessionConfig, addrs: Vec<Multiaddr>) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        Self::start(NodeKey::generate(), dir, None, config, addrs, clock, None).await
    }

    async fn start(
        key: NodeKey,
        dir: &Path,
        sandbox: Option<ModelSandbox>,
        config: SessionConfig,
        bootstrap: Vec<Multiaddr>,
        clock: Arc<dyn Clock>,
        chain: Option<(Wallet, ChainSettings)>,
    ) -> Self {
        let mut node = Self {
            key,
            dir: dir.to_owned(),
            rules: Arc::new(Rules::default()),
            sandbox,
            config,
            clock,
            chain,
            book: orien_daemon::OfferBookLimits::default(),
            bootstrap,
            runtime: None,
            node: None,
            store: None,
        };
        node.boot().await;
        node
    }

    async fn boot(&mut self) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-node")
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(Store::open(self.dir.join("ledger")).expect("the ledger opens"));
        let payments = match self.chain.clone() {
            Some((wallet, settings)) => {
                let store = Arc::clone(&store);
                let node = self.key.node_id();
                let connected = runtime
                    .spawn(async move {
                        let payments = Payments::connect(&settings, &wallet, store, node).await;
                        if let Ok(payments) = &payments {
                            payments.spawn_reconciler(Duration::from_millis(200));
                        }
                        payments
                    })
                    .await
                    .unwrap()
                    .expect("the node reaches the escrow");
                Some(connected)
            }
            None => None,
        };
        let parts = DaemonParts {
            key: self.key.clone(),
            clock: Arc::clone(&self.clock),
            store: Arc::clone(&store),
            sandbox: self
                .sandbox
                .clone()
                .map(|s| Arc::new(s) as Arc<dyn orien_provider::Sandbox>),
            payments,
            payout: self.payout(),
            node: NodeConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                bootstrap: self.bootstrap.clone(),
                offer_book: self.book,
                faults: Some(Faults::shared(
                    Arc::clone(&self.rules) as Arc<dyn LinkFaults>
                )),
                // Renters that paid attest every second, so tests hear them soon.
                attestation_interval: Duration::from_secs(1),
                ..NodeConfig::default()
            },
            sessions: self.config.clone(),
        };
        let node = runtime
            .spawn(parts.assemble(false))
            .await
            .unwrap()
            .expect("the node starts")
            .node;
        self.runtime = Some(runtime);
        self.node = Some(Arc::new(node));
        self.store = Some(store);
    }

    /// The running node.
    pub fn node(&self) -> &Arc<Node> {
        self.node.as_ref().expect("the node runs")
    }

    /// Its ledger.
    pub fn store(&self) -> &Arc<Store> {
        self.store.as_ref().expect("the node runs")
    }

    /// Runs `f` on the node's own runtime, so whatever it spawns dies with a crash.
    pub async fn on<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f).await.expect("the task is not cancelled")
    }

    /// Starts `f` on the node's own runtime now; await the handle for its result.
    pub fn spawn<F, Fut, T>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let node = Arc::clone(self.node());
        self.runtime
            .as_ref()
            .expect("the node runs")
            .spawn(async move { f(node).await })
    }

    /// Publishes the offer of a modelled tool; returns its id.
    pub async fn publish(&self, tool: &ToolName) -> OfferId {
        let offer = self
            .sandbox
            .as_ref()
            .expect("a provider")
            .offer(tool, self.payout(), self.clock.wall(), Millis(3_600_000))
            .expect("a modelled tool");
        self.on(move |node| async move { node.publish_offer(OfferSpec::from(offer)).await })
            .await
            .expect("the offer is published")
    }

    /// Where the node is paid: its wallet on a chain, a fixed address otherwise.
    pub fn payout(&self) -> EvmAddress {
        self.chain
            .as_ref()
            .map_or(EvmAddress::from_bytes([0x42; 20]), |(w, _)| w.address())
    }

    /// Kills the node as `kill -9` would: every task dropped mid-flight, nothing flushed
    /// but what was already durable. The ledger is closed once the last write in flight
    /// has returned.
    pub async fn crash(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            drop_runtime(runtime);
        }
        self.node = None;
        let store = self.store.take().expect("the node runs");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while Arc::strong_count(&store) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the crashed node's ledger is still held"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(store);
    }

    /// Restarts the node with offer-book limits `book`.
    pub async fn with_book(mut self, book: orien_daemon::OfferBookLimits) -> Self {
        self.crash().await;
        self.book = book;
        self.restart().await;
        self
    }

    /// Starts the node again on the same data directory, key and configuration.
    pub async fn restart(&mut self) {
        assert!(self.node.is_none(), "crash the node before restarting it");
        self.boot().await;
    }

    /// Stops the node cleanly (offers withdrawn, sessions closed as they would be).
    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            let runtime = self.runtime.take().expect("the node runs");
            if let Ok(node) = Arc::try_unwrap(node) {
                let _ = runtime.spawn(node.shutdown()).await;
            }
            drop_runtime(runtime);
        }
    }

    /// The session's head in this node's ledger.
    pub fn head(&self, session: &SessionId) -> SessionHead {
        self.store()
            .head(session)
            .unwrap()
            .expect("the session is recorded")
    }

    /// The session's dual-signed chain in this node's ledger.
    pub fn chain(&self, session: &SessionId) -> Vec<AckedReceipt> {
        self.store()
            .receipts(session)
            .unwrap()
            .into_iter()
            .map(|r| r.acked)
            .collect()
    }

    /// Waits until the session is closed in this node's ledger and returns the head.
    pub async fn closed(&self, session: &SessionId) -> SessionHead {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let head = self.head(session);
            if matches!(head.status, SessionStatus::Closed(_)) {
                return head;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {session} still {:?} on {}",
                head.status,
                self.key.node_id()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The work the modelled sandbox did for a session.
    pub fn work(&self, session: &SessionId) -> SessionWork {
        self.sandbox
            .as_ref()
            .expect("a provider")
            .work(session)
            .expect("the session ran here")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            drop_runtime(runtime);
        }
    }
}

/// Drops a node's runtime on a thread of its own (a runtime cannot be dropped where
/// blocking is not allowed) and waits: every task is dropped at its next await, and the
/// ledger writes already on the blocking pool finish, as they would in a killed process
/// whose last synced write returned.
fn drop_runtime(runtime: tokio::runtime::Runtime) {
    std::thread::spawn(move || drop(runtime))
        .join()
        .expect("the runtime drops");
}

/// A provider selling the modelled tools and a renter that found its offer.
pub struct Pair {
    pub provider: TestNode,
    pub renter: TestNode,
    pub offer: OfferId,
    pub dir: tempfile::TempDir,
}

impl Pair {
    /// Starts both nodes with the same session settings and publishes `work`.
    pub async fn start(config: SessionConfig) -> Self {
        Self::start_with(config.clone(), config, NodeKey::generate()).await
    }

    /// Starts a provider with `provider_config` and a renter with `renter_config` and
    /// `renter_key`, and publishes `work`.
    pub async fn start_with(
        provider_config: SessionConfig,
        renter_config: SessionConfig,
        renter_key: NodeKey,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("provider")).unwrap();
        std::fs::create_dir_all(dir.path().join("renter")).unwrap();
        let provider = TestNode::provider(&dir.path().join("provider"), provider_config).await;
        let renter = TestNode::renter_with_key(
            &dir.path().join("renter"),
            renter_config,
            &provider,
            renter_key,
        )
        .await;
        let offer = provider.publish(&work_tool()).await;
        let found = renter
            .on(|node| async move { node.find_tool(work_tool()).await })
            .await
            .unwrap();
        assert_eq!(
            found.first().map(|e| e.id),
            Some(offer),
            "the renter finds the offer"
        );
        Self {
            provider,
            renter,
            offer,
            dir,
        }
    }

    /// Opens a session of `budget` on the renter, on the provider's current offer (it is
    /// re-signed, with a new id, whenever the provider re-announces it).
    pub async fn open(&self, budget: Usdc) -> Result<SessionId, orien_daemon::SessionError> {
        let provider = self.provider.key.node_id();
        self.renter
            .on(move |node| async move {
                let offer = node
                    .find_offers(work_tool(), Some(provider))
                    .await
                    .ok()
                    .and_then(|found| found.first().map(|e| e.id))
                    .ok_or(orien_daemon::SessionError::Disabled)?;
                node.sessions()
                    .unwrap()
                    .open(offer, budget, Millis(600_000))
                    .await
                    .map(|r| r.session)
            })
            .await
    }

    /// Starts a modelled call of `ms` milliseconds in `session`.
    pub async fn exec(
        &self,
        session: SessionId,
        args: String,
    ) -> Result<orien_protocol::ExecId, orien_daemon::SessionError> {
        self.renter
            .on(move |node| async move { node.sessions().unwrap().exec(session, None, args).await })
            .await
    }

    /// Closes `session` from the renter.
    pub async fn close(&self, session: SessionId) -> Result<(), orien_daemon::SessionError> {
        self.renter
            .on(move |node| async move { node.sessions().unwrap().close(session).await })
            .await
    }
}

/// The modelled tool's prices.
pub fn work_pricing() -> Pricing {
    *model_tools()[0].pricing()
}

/// What the work a session really did is worth at `pricing`: session time from open to
/// close (or `until`), each call from start to end (or `until`), a call counted at most
/// `call_cap`.
pub fn worth(work: &SessionWork, pricing: Pricing, until: Duration, call_cap: Duration) -> Usdc {
    let end = work.closed.unwrap_or(until);
    let session = end.saturating_sub(work.opened);
    let exec: Duration = work
        .calls
        .iter()
        .map(|c| {
            c.ended
                .unwrap_or(until)
                .saturating_sub(c.started)
                .min(call_cap)
        })
        .sum();
    pricing.amount_for(Usage {
        session: Millis::from_duration(session),
        exec: Millis::from_duration(exec),
    })
}
