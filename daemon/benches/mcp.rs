//! `scripts/bench mcp`: a trivial tool call over MCP Streamable HTTP end to end (rmcp's
//! client, the 2026-07-28 protocol, `tools/call` in a kept session to its structured
//! result) beside the same call over the HTTP API (POST the execution, follow its
//! server-sent log to the exit), interleaved in the same run against the same renter.
//!
//! Usage: `cargo bench -p orien-daemon --bench mcp -- [--calls N] [--out FILE]`.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A benchmark reports loudly.

#[path = "../tests/support/mcp_client.rs"]
mod mcp_client;
mod support;

use std::sync::Arc;
use std::time::Instant;

use orien_daemon::api::NodeService;
use orien_protocol::*;
use orien_web_api::{ApiConfig, BearerToken};
use rmcp::model::CallToolRequestParams;
use serde_json::json;
use support::{call_over_api, flag, market, ms, percentile as p};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls = flag("--calls", 40usize);
    let out: String = flag("--out", String::new());
    let m = market("sha256").await;
    let renter = m.renter.clone();

    // The renter's API with its MCP endpoint, served in-process as `orien-node run` does.
    let token = BearerToken::generate();
    let app = orien_web_api::router(
        Arc::new(NodeService::new(renter.clone())),
        ApiConfig::new(token.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let client = mcp_client::connect(format!("{base}/mcp"), token.expose().to_owned()).await;
    // The catalogue holds the tool once the book does.
    for _ in 0..100 {
        let tools = client.list_all_tools().await.unwrap();
        if tools.iter().any(|t| t.name == "sha256") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let sessions = renter.sessions().unwrap();
    let session = sessions
        .open(m.offer, Usdc::from_micros(2_000_000), Millis(900_000))
        .await
        .unwrap()
        .session;
    sessions
        .put_file(session, "data/in.txt", b"hello orien\n".to_vec())
        .await
        .unwrap();
    let args = json!({"file": "data/in.txt"});
    let serde_json::Value::Object(mcp_args) =
        json!({"file": "data/in.txt", "session": session.to_string()})
    else {
        unreachable!()
    };
    println!("mcp: {calls} calls each way (sha256 of 12 bytes, one kept session)");
    let (mut over_mcp, mut over_api) = (Vec::new(), Vec::new());
    for i in 0..calls + 3 {
        let t = Instant::now();
        let result = client
            .call_tool(CallToolRequestParams::new("sha256").with_arguments(mcp_args.clone()))
            .await
            .unwrap();
        let mcp_ms = ms(t.elapsed());
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["exit_code"], 0, "{structured}");

        let t = Instant::now();
        call_over_api(&http, &base, token.expose(), session, &args).await;
        let api_ms = ms(t.elapsed());
        if i >= 3 {
            over_mcp.push(mcp_ms);
            over_api.push(api_ms);
        }
    }
    sessions.close(session).await.unwrap();
    client.cancel().await.unwrap();
    let (m50, m95, a50, a95) = (
        p(&mut over_mcp, 50.0),
        p(&mut over_mcp, 95.0),
        p(&mut over_api, 50.0),
        p(&mut over_api, 95.0),
    );
    println!(
        "trivial call: MCP p50 {m50:.1} ms, p95 {m95:.1} ms; HTTP API p50 {a50:.1} ms, p95 {a95:.1} ms"
    );
    drop(renter);
    m.shutdown().await;

    let results = json!([
        { "name": "trivial tool call over MCP Streamable HTTP p50 (tools/call in a kept session to its structured result)", "value": m50, "unit": "ms",
          "baseline": a50, "ratio": m50 / a50, "goal": "ratio <= 1.1 (baseline: the same call over the HTTP API, POST + SSE log to exit)" },
        { "name": "trivial tool call over MCP p95", "value": m95, "unit": "ms",
          "baseline": a95, "ratio": m95 / a95, "goal": serde_json::Value::Null },
    ]);
    if !out.is_empty() {
        std::fs::write(&out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
        println!("wrote {out}");
    }
}
