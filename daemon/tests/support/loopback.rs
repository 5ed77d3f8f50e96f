//! In-process nodes on loopback TCP, shared by the tests and benchmarks that run a
//! market inside one process (`#[path]`-included, so it needs nothing else from
//! `support`).
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orien_daemon::{Node, NodeConfig, SessionServices};
use orien_protocol::{NodeKey, SystemClock};

/// `configs/provider.example.toml`: the example tools, on the locally built image.
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/provider.example.toml")
}

/// A node listening on a fresh loopback port, bootstrapped from `bootstrap`, serving
/// sessions with `services`.
pub async fn node(key: NodeKey, bootstrap: &[&Node], services: SessionServices) -> Node {
    let config = NodeConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
        bootstrap: bootstrap
            .iter()
            .map(|n| n.listen_addrs()[0].clone())
            .collect(),
        sessions: Some(services),
        ..NodeConfig::default()
    };
    Node::start(key, config, Arc::new(SystemClock::new()))
        .await
        .expect("the node starts")
}
