//! What the session benchmarks share: flags, percentiles, and a two-node market (a
//! provider with the real Docker sandbox selling the example tools, and a renter) on
//! loopback TCP with RocksDB ledgers in a temporary directory.
#![allow(dead_code, unreachable_pub)]

#[path = "../../tests/support/loopback.rs"]
mod loopback;

use std::time::Duration;

use orien_daemon::SessionConfig;

pub use loopback::Market;

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

/// An offer of `tool` at these prices (µUSDC a minute of session and of execution)
/// with this argument schema, small limits, and a made-up image and payout.
pub fn offer_spec(
    tool: &str,
    session_per_minute: u64,
    exec_per_minute: u64,
    args_schema: &str,
) -> orien_daemon::OfferSpec {
    use orien_protocol::*;
    orien_daemon::OfferSpec {
        tool: ToolName::new(tool).unwrap(),
        version: "1".into(),
        description: "benchmark tool".into(),
        image_digest: ImageDigest::from_bytes([3; 32]),
        args_schema: args_schema.into(),
        pricing: Pricing {
            session_per_minute: Usdc::from_micros(session_per_minute),
            exec_per_minute: Usdc::from_micros(exec_per_minute),
            artefact_per_gib: Usdc::ZERO,
        },
        limits: ResourceLimits {
            max_exec: Millis(1_000),
            cpu_millis: 1_000,
            memory_bytes: 1 << 26,
            pids: 16,
            tmpfs_bytes: 1 << 20,
            output_bytes: 1 << 20,
            workspace_bytes: 1 << 20,
            concurrent_execs: 1,
        },
        payout: EvmAddress::from_bytes([5; 20]),
    }
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

/// One call through a node's HTTP API end to end: POST the execution with `args`, read
/// its server-sent log to the exit. Panics when the log does not reach `exit`.
pub async fn call_over_api(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: orien_protocol::SessionId,
    args: &serde_json::Value,
) {
    let started: serde_json::Value = http
        .post(format!("{base}/v1/sessions/{session}/executions"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "args": args }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let log = http
        .get(format!(
            "{base}/v1/executions/{}/logs",
            started["id"].as_str().unwrap()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("event: exit"), "{log}");
}

/// Starts the market for `tool` (one of configs/provider.example.toml).
pub async fn market(tool: &str) -> Market {
    Market::start(tool, SessionConfig::default()).await
}
