//! `scripts/bench dashboard`, the marketplace part: a renter's dashboard over a full
//! offer book. Starts `--providers` ORIEN nodes on loopback TCP (in this process), each
//! publishing `--tools` offers (and so its signed profile), and a renter `orien-node`
//! process (`--bin`) bootstrapped to them; once the renter's book holds every offer,
//! runs `web-api/dashboard/e2e/bench.mjs market` in chromium: the first load's bytes,
//! and navigation to the rendered marketplace beside the API call the page makes.
//!
//! Usage: `cargo bench -p orien-daemon --bench dashboard -- --bin PATH [--providers 50]
//! [--tools 20] [--loads 5] [--out FILE]`
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A benchmark reports loudly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use orien_daemon::{Node, NodeConfig, OfferSpec, TransportKind};
use orien_protocol::*;

mod support;
use support::flag;

/// A tool that takes one workspace file, priced `price` µUSDC a minute of session.
fn spec(tool: &str, price: u64) -> OfferSpec {
    let mut spec = support::offer_spec(
        tool,
        price,
        price * 10,
        r#"{"type":"object","properties":{"file":{"type":"string","description":"A workspace file"}},"required":["file"]}"#,
    );
    spec.description = format!("{tool}: a benchmark tool");
    spec.limits.max_exec = Millis(10_000);
    spec
}

/// The renter: `orien-node` as users run it, in its own data directory.
struct Renter {
    child: std::process::Child,
    api: String,
    token: String,
    dir: tempfile::TempDir,
    bin: String,
}

impl Renter {
    fn start(bin: &str, bootstrap: &Multiaddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_owned();
        let init = Command::new(bin)
            .args(["--data-dir", &data, "init", "--role", "renter"])
            .output()
            .unwrap();
        assert!(init.status.success(), "{init:?}");
        let mut child = Command::new(bin)
            .args([
                "--data-dir",
                &data,
                "run",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .args([
                "--api",
                "127.0.0.1:0",
                "--bootstrap",
                &bootstrap.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let api = loop {
            let line = lines
                .next()
                .expect("the renter printed its API address")
                .unwrap();
            if let Some(api) = line.strip_prefix("API on ") {
                break api.to_owned();
            }
        };
        // Keep reading its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(dir.path().join("api.token")).unwrap();
        Self {
            child,
            api,
            token: token.trim().to_owned(),
            dir,
            bin: bin.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn login_link(&self) -> String {
        let out = Command::new(&self.bin)
            .args([
                "--data-dir",
                self.dir.path().to_str().unwrap(),
                "--json",
                "dashboard",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let link: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        link["url"].as_str().unwrap().to_owned()
    }
}

impl Drop for Renter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin: String = flag("--bin", String::new());
    assert!(
        !bin.is_empty(),
        "--bin PATH (the orien-node to run as the renter)"
    );
    let (providers, tools, loads) = (
        flag("--providers", 50usize),
        flag("--tools", 20usize),
        flag("--loads", 5usize),
    );
    let out: String = flag("--out", String::new());
    let offers = providers * tools;

    let started = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..providers {
        let config = NodeConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: nodes
                .first()
                .map(|first| vec![first.listen_addrs()[0].clone()])
                .unwrap_or_default(),
            transport: TransportKind::Network,
            ..NodeConfig::default()
        };
        let node = Node::start(NodeKey::generate(), config, clock.clone())
            .await
            .unwrap();
        for t in 0..tools {
            node.publish_offer(spec(
                &format!("tool-{t:02}"),
                1 + (i * tools + t) as u64 % 97,
            ))
            .await
            .unwrap();
        }
        nodes.push(node);
    }
    let renter = Renter::start(&bin, &nodes[0].listen_addrs()[0]);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let node = renter.get("/v1/node").await;
        let page = renter.get("/v1/providers?limit=100").await;
        let listed = page["providers"].as_array().map_or(0, Vec::len);
        let known = node["offers_known"].as_u64().unwrap_or(0) as usize;
        if known >= offers && listed >= providers {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renter holds {known} of {offers} offers and {listed} of {providers} profiles after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{providers} providers, {offers} offers in the renter's book after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let run = Command::new("node")
        .arg("web-api/dashboard/e2e/bench.mjs")
        .arg("market")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("LOGIN", renter.login_link())
        .env("LOADS", loads.to_string())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(run.status.success(), "bench.mjs market failed");
    let stdout = String::from_utf8(run.stdout).unwrap();
    let measured: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    println!("{measured}");
    assert_eq!(
        measured["offers"].as_u64(),
        Some(offers as u64),
        "{measured}"
    );

    let f = |key: &str| measured[key].as_f64().unwrap();
    let rows = serde_json::json!([
        {"name": "first load, as sent (no compression)", "value": f("first_load_bytes") / 1000.0,
         "unit": "KB", "baseline": null, "ratio": null, "goal": "<= 250 KB gzipped"},
        {"name": "first load, gzipped", "value": f("first_load_gzip_bytes") / 1000.0, "unit": "KB",
         "baseline": 250.0, "ratio": f("first_load_gzip_bytes") / 250_000.0, "goal": "<= 250 KB (ratio <= 1)"},
        {"name": format!("marketplace rendered, {offers} offers from {providers} providers"),
         "value": f("market_ms"), "unit": "ms", "baseline": f("market_api_ms"),
         "ratio": f("market_ms") / f("market_api_ms"), "goal": "<= 1000 ms (baseline: the page's API call alone)"},
    ]);
    if !out.is_empty() {
        std::fs::write(&out, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    }
    for node in nodes {
        node.shutdown().await;
    }
}
