//! What the session benchmarks share: flags, percentiles, and a two-node market (a
//! provider with the real Docker sandbox selling the example tools, and a renter) on
//! loopback TCP with RocksDB ledgers in a temporary directory.
#![allow(dead_code, unreachable_pub)]

#[path = "../../tests/support/loopback.rs"]
mod loopback;

use std::sync::Arc;
use std::time::Duration;

use orien_daemon::{Node, OfferSpec, SessionConfig, SessionServices};
use orien_ledger::Store;
use orien_protocol::*;
use orien_provider::{Provider, ProviderConfig};

use loopback::{example_config, node};

/// The value after `--name` on the command line, or `default`.
pub fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == name {
            return it
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a value"));
        }
    }
    default
}

/// Milliseconds, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q`-th percentile (nearest rank) of `samples`.
pub fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((q / 100.0) * (samples.len() - 1) as f64).round() as usize]
}

/// A provider and a renter that found the provider's offer of one tool.
pub struct Market {
    pub sandbox: Provider,
    pub provider: Node,
    pub renter: Arc<Node>,
    pub tool: ToolName,
    pub offer: OfferId,
    _dir: tempfile::TempDir,
}

/// Starts the market for `tool` (one of configs/provider.example.toml).
pub async fn market(tool: &str) -> Market {
    let dir = tempfile::tempdir().unwrap();
    let (provider_config, tools) = ProviderConfig::load(&example_config()).unwrap();
    let provider_key = NodeKey::generate();
    let sandbox = Provider::start(&provider_config.engine, tools, provider_key.node_id())
        .await
        .expect("the Docker engine and orien/busybox:1 (scripts/test prepares both)");
    let services = |store: &str, provider: Option<Provider>| SessionServices {
        store: Arc::new(Store::open(dir.path().join(store)).unwrap()),
        provider,
        config: SessionConfig::default(),
        payments: None,
    };
    let provider = node(
        provider_key,
        &[],
        services("provider", Some(sandbox.clone())),
    )
    .await;
    let renter = node(NodeKey::generate(), &[&provider], services("renter", None)).await;
    let tool = ToolName::new(tool).unwrap();
    let offer = sandbox
        .offer(
            &tool,
            EvmAddress::from_bytes([0x42; 20]),
            SystemClock::new().wall(),
            Millis(3_600_000),
        )
        .unwrap();
    provider
        .publish_offer(OfferSpec::from(offer))
        .await
        .unwrap();
    let offer = renter.find_tool(tool.clone()).await.unwrap()[0].id;
    Market {
        sandbox,
        provider,
        renter: Arc::new(renter),
        tool,
        offer,
        _dir: dir,
    }
}

impl Market {
    /// Stops both nodes (the renter only if nothing else holds it).
    pub async fn shutdown(self) {
        if let Ok(renter) = Arc::try_unwrap(self.renter) {
            renter.shutdown().await;
        }
        self.provider.shutdown().await;
    }
}
