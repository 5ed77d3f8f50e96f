//! `orien-node` as users run it: separate processes, driven through the HTTP API.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use support::NodeProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_start_connect_and_answer_through_the_api() {
    let bootstrap = NodeProcess::start(&[]);
    let node = NodeProcess::start(&[&bootstrap]);

    let health = reqwest::get(format!("{}/healthz", node.api)).await.unwrap();
    assert_eq!(health.status(), 200);
    let anonymous = reqwest::get(format!("{}/v1/node", node.api)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let info = loop {
        let info: serde_json::Value = node.get("/v1/node").await.json().await.unwrap();
        if info["peers"].as_u64() >= Some(1) || tokio::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(info["id"], node.id.as_str());
    assert!(
        info["peers"].as_u64() >= Some(1),
        "connected to the bootstrap node: {info}"
    );

    let offers: serde_json::Value = node
        .get("/v1/offers?tool=sha256sum")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(offers, serde_json::json!([]));
    let bad = node.get("/v1/offers?max_price=abc").await;
    assert_eq!(bad.status(), 400);
    let metrics = node.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("orien_network_peers"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_node_gracefully() {
    let mut node = NodeProcess::start(&[]);
    assert_eq!(node.get("/healthz").await.status(), 200);
    assert!(node.terminate(), "orien-node exits 0 on SIGTERM");
}

#[test]
fn the_api_refuses_a_public_address_without_the_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_orien-node");
    assert!(
        std::process::Command::new(bin)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("init")
            .status()
            .unwrap()
            .success()
    );
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-allow-remote"));
}
