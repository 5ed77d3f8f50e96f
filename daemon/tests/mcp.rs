//! The MCP endpoint as agents use it: rmcp's own client against `orien-node` processes
//! (a bootstrap node, a provider running the real Docker sandbox, a renter), over
//! Streamable HTTP at `/mcp` (the 2026-07-28 stateless protocol and the 2025-11-25 one
//! with sessions) and over stdio through `orien-node mcp`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientConfig, ProtocolVersion, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use support::{NodeProcess, example_config};

const LONG: Duration = Duration::from_secs(90);

fn provider(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start_with(
        &[bootstrap],
        &[
            "--provider-config",
            &example_config(),
            "--receipt-interval-ms",
            "500",
        ],
    )
}

/// Counts the tool-list changes a client of the 2025-11-25 protocol hears.
#[derive(Clone, Default)]
struct Counting {
    changes: Arc<AtomicUsize>,
}

impl ClientHandler for Counting {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
}

fn transport(node: &NodeProcess) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", node.api))
            .auth_header(node.token.trim().to_owned()),
    )
}

/// A client of the current protocol (stateless, `server/discover`).
async fn modern_client(node: &NodeProcess) -> RunningService<RoleClient, ClientConfig> {
    support::mcp_client::connect(format!("{}/mcp", node.api), node.token.trim().to_owned()).await
}

async fn tool_names(
    client: &RunningService<RoleClient, impl rmcp::Service<RoleClient>>,
) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    names
}

fn call(name: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

/// The renter's rented sessions, as its HTTP API lists them.
async fn rented(renter: &NodeProcess) -> Vec<Value> {
    let sessions = renter.get_json("/v1/sessions").await;
    sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "renter")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lists_the_market_runs_a_tool_and_is_held_to_its_budget() {
    let bootstrap = NodeProcess::start(&[]);
    // sha256 may cost up to 0.341 USDC a call (30 s + 1 s at 0.06 + 0.6 per minute),
    // wc up to 0.186: a per-call limit of 0.2 allows wc and refuses sha256.
    let renter = NodeProcess::start_with(&[&bootstrap], &["--mcp-max-call", "0.2"]);

    // Both protocol versions listen before any tool is on the market.
    let modern = modern_client(&renter).await;
    assert_eq!(
        tool_names(&modern).await,
        [
            "orien_balance",
            "orien_close_session",
            "orien_download",
            "orien_open_session",
            "orien_providers",
            "orien_upload"
        ]
    );
    let mut subscription = modern
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .unwrap();
    let legacy_handler = Counting::default();
    let legacy = legacy_handler
        .clone()
        .serve_with_lifecycle(transport(&renter), ClientLifecycleMode::Initialize)
        .await
        .unwrap();
    assert_eq!(
        legacy.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2025_11_25),
        "the legacy client negotiated the previous version"
    );

    let provider = provider(&bootstrap);
    let notified = tokio::time::timeout(LONG, subscription.next())
        .await
        .expect("a tool-list change within 90 s")
        .unwrap()
        .expect("the subscription is open");
    assert!(
        matches!(notified, ServerNotification::ToolListChangedNotification(_)),
        "{notified:?}"
    );
    let mut names = Vec::new();
    for _ in 0..300 {
        names = tool_names(&modern).await;
        if names.iter().any(|n| n == "wc") && names.iter().any(|n| n == "sha256") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(names.contains(&"wc".to_owned()), "{names:?}");
    assert!(names.contains(&"sha256".to_owned()), "{names:?}");
    for _ in 0..100 {
        if legacy_handler.changes.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        legacy_handler.changes.load(Ordering::SeqCst) > 0,
        "the 2025-11-25 client heard of the change on its session"
    );
    subscription.cancel().await.unwrap();

    // The tool as the agent sees it: the provider's schema with the server's options.
    let tools = modern.list_all_tools().await.unwrap();
    let wc = tools.iter().find(|t| t.name == "wc").unwrap();
    assert_eq!(wc.input_schema["required"], json!(["file"]));
    for option in ["provider", "max_price", "session", "files", "outputs"] {
        assert!(
            wc.input_schema["properties"].get(option).is_some(),
            "{option}"
        );
    }
    let description = wc.description.as_deref().unwrap();
    assert!(
        description.contains("0.300000 USDC per minute"),
        "{description}"
    );

    // A call in a session of its own: files in, output, cost and the signed result out,
    // and the session closed after it.
    let before = rented(&renter).await.len();
    let result = modern
        .call_tool(call(
            "wc",
            json!({"file": "in.txt", "mode": "-w", "files": [{"path": "in.txt", "text": "one two three\n"}], "outputs": ["in.txt", "none.txt"]}),
        ))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let out = result.structured_content.clone().unwrap();
    // The outputs named: what the provider kept, readable after the call's session closed.
    let kept = &out["artefacts"][0];
    assert_eq!(
        (&kept["path"], &kept["state"], &kept["size"]),
        (&json!("in.txt"), &json!("kept"), &json!(14)),
        "{out}"
    );
    assert_eq!(out["artefacts"][1]["state"], "missing", "{out}");
    assert_eq!(out["artefacts"][1]["uri"], Value::Null, "{out}");
    let artefact = modern
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            kept["uri"].as_str().unwrap(),
        ))
        .await
        .unwrap();
    let blob = serde_json::to_value(&artefact.contents[0]).unwrap();
    assert_eq!(blob["blob"], "b25lIHR3byB0aHJlZQo=", "{blob}");
    assert_eq!(out["state"], "completed", "{out}");
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(out["stdout"].as_str().unwrap().starts_with('3'), "{out}");
    assert_eq!(out["provider"], provider.id.as_str(), "{out}");
    assert!(out["cost"].as_str().is_some(), "{out}");
    let session_cost: orien_protocol::Usdc = out["session_cost"].as_str().unwrap().parse().unwrap();
    assert!(!session_cost.is_zero(), "{out}");
    assert!(
        session_cost <= "0.2".parse().unwrap(),
        "a call's session never costs more than the per-call limit: {out}"
    );
    assert_eq!(
        out["signed_result_sha256"].as_str().unwrap().len(),
        64,
        "{out}"
    );
    let sessions = rented(&renter).await;
    assert_eq!(sessions.len(), before + 1);
    let session = sessions.iter().find(|s| s["id"] == out["session"]).unwrap();
    assert_ne!(
        session["state"], "active",
        "the call's session is closed: {session}"
    );
    assert_eq!(session["amount"], out["session_cost"], "{session}");
    // The signed result verifies offline against the provider's id.
    let verified = std::process::Command::new(support::binary())
        .args(["result", "verify", out["signed_result"].as_str().unwrap()])
        .args(["--provider", provider.id.as_str()])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");

    // What the agent may read: the call's receipts as the ledger holds them, balances.
    let resources: Vec<String> = modern
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert!(
        resources.contains(&"orien://ledger/balances".to_owned()),
        "{resources:?}"
    );
    let read = |uri: String| {
        let modern = &modern;
        async move {
            let read = modern
                .read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
                .await?;
            let text = match &read.contents[0] {
                rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
                other => panic!("{other:?}"),
            };
            Ok::<Value, rmcp::ServiceError>(serde_json::from_str(&text).unwrap())
        }
    };
    let receipts = read(format!(
        "orien://sessions/{}/receipts",
        out["session"].as_str().unwrap()
    ))
    .await
    .unwrap();
    let over_http = renter
        .get_json(&format!(
            "/v1/receipts?session={}",
            out["session"].as_str().unwrap()
        ))
        .await;
    assert!(!receipts.as_array().unwrap().is_empty(), "{receipts}");
    assert_eq!(receipts, over_http, "the same receipts as GET /v1/receipts");
    let balances = read("orien://ledger/balances".into()).await.unwrap();
    assert!(!balances.as_array().unwrap().is_empty(), "{balances}");
    assert!(
        read("orien://nothing/here".into()).await.is_err(),
        "an unknown resource is an error"
    );

    // Beyond the per-call limit: refused before anything is spent, saying why.
    let refused = modern
        .call_tool(call(
            "sha256",
            json!({"file": "in.txt", "files": [{"path": "in.txt", "text": "hello\n"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    let text = format!("{:?}", refused.content);
    assert!(text.contains("per-call limit of 0.200000 USDC"), "{text}");
    assert!(text.contains("mcp_max_call"), "{text}");
    assert_eq!(rented(&renter).await.len(), before + 1, "no session opened");

    // A kept session: open, upload, two calls in one workspace, download, close.
    let opened = modern
        .call_tool(call(
            "orien_open_session",
            json!({"tool": "wc", "budget": "0.5"}),
        ))
        .await
        .unwrap();
    assert_eq!(opened.is_error, Some(false), "{opened:?}");
    let handle = opened.structured_content.unwrap()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let uploaded = modern
        .call_tool(call(
            "orien_upload",
            json!({"session": handle, "path": "notes/a.txt", "text": "a\nb\n"}),
        ))
        .await
        .unwrap();
    assert_eq!(uploaded.is_error, Some(false), "{uploaded:?}");
    for (mode, expected) in [("-l", '2'), ("-c", '4')] {
        let counted = modern
            .call_tool(call(
                "wc",
                json!({"file": "notes/a.txt", "mode": mode, "session": handle}),
            ))
            .await
            .unwrap();
        let out = counted.structured_content.unwrap();
        assert_eq!(out["session"], handle.as_str(), "{out}");
        assert!(
            out["stdout"].as_str().unwrap().starts_with(expected),
            "{out}"
        );
        assert_eq!(out["session_cost"], Value::Null, "{out}");
    }
    let downloaded = modern
        .call_tool(call(
            "orien_download",
            json!({"session": handle, "path": "notes/a.txt"}),
        ))
        .await
        .unwrap();
    assert_eq!(downloaded.structured_content.unwrap()["text"], "a\nb\n");

    // Inputs by resource link, each into a session of its own: the kept session's file
    // and the first call's whole standard output.
    let linked = modern
        .call_tool(call(
            "wc",
            json!({"file": "in.txt", "mode": "-l", "files": [{"path": "in.txt", "uri": format!("orien://sessions/{handle}/files/notes/a.txt")}]}),
        ))
        .await
        .unwrap();
    let linked = linked.structured_content.unwrap();
    assert!(
        linked["stdout"].as_str().unwrap().starts_with('2'),
        "{linked}"
    );
    assert_ne!(linked["session"], handle.as_str(), "{linked}");
    let first_stdout = out["stdout"].as_str().unwrap();
    let piped = modern
        .call_tool(call(
            "wc",
            json!({"file": "prev.txt", "mode": "-c", "files": [{"path": "prev.txt", "uri": format!("orien://executions/{}/stdout", out["exec"].as_str().unwrap())}]}),
        ))
        .await
        .unwrap();
    let piped = piped.structured_content.unwrap();
    assert!(
        piped["stdout"]
            .as_str()
            .unwrap()
            .starts_with(&first_stdout.len().to_string()),
        "{piped} of {first_stdout:?}"
    );
    let read = modern
        .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
            "orien://sessions/{handle}/files/notes/a.txt"
        )))
        .await
        .unwrap();
    let blob = serde_json::to_value(&read.contents[0]).unwrap();
    assert_eq!(blob["blob"], "YQpiCg==", "{blob}");
    // A link to nothing spends nothing.
    let before_bad = rented(&renter).await.len();
    let bad = modern
        .call_tool(call(
            "wc",
            json!({"file": "x", "files": [{"path": "x", "uri": format!("orien://sessions/{handle}/files/missing.txt")}]}),
        ))
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true), "{bad:?}");
    assert_eq!(rented(&renter).await.len(), before_bad, "no session opened");
    let closed = modern
        .call_tool(call("orien_close_session", json!({"session": handle})))
        .await
        .unwrap();
    let closed = closed.structured_content.unwrap();
    assert_ne!(closed["state"], "active", "{closed}");
    let balance = modern
        .call_tool(call("orien_balance", json!({})))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(balance["per_call"], "0.200000", "{balance}");
    let left: orien_protocol::Usdc = balance["today_left"].as_str().unwrap().parse().unwrap();
    assert!(
        left < "10".parse().unwrap(),
        "today's spending counted: {balance}"
    );

    // The same market over stdio, through `orien-node mcp` and the running node.
    let stdio = ()
        .serve(
            rmcp::transport::TokioChildProcess::new({
                let mut command = tokio::process::Command::new(support::binary());
                command.arg("--data-dir").arg(renter.data_dir()).arg("mcp");
                command
            })
            .unwrap(),
        )
        .await
        .unwrap();
    let names = tool_names(&stdio).await;
    assert!(names.contains(&"wc".to_owned()), "{names:?}");
    let result = stdio
        .call_tool(call(
            "wc",
            json!({"file": "x", "mode": "-c", "files": [{"path": "x", "text": "12345"}]}),
        ))
        .await
        .unwrap();
    let out = result.structured_content.unwrap();
    assert!(out["stdout"].as_str().unwrap().starts_with('5'), "{out}");
    stdio.cancel().await.unwrap();

    // A client with its own token and a day of 0.2 USDC: its first call runs, a session
    // it keeps open counts its whole budget, so a call that may cost 0.186 no longer
    // fits; the owner's sessions are not its own, and its token dies with its removal.
    let added = support::run_ok(
        renter.data_dir(),
        &[
            "--json",
            "mcp",
            "client",
            "add",
            "agent",
            "--max-day",
            "0.2",
        ],
    );
    let added: Value = serde_json::from_str(&added).unwrap();
    let agent_token = added["token"].as_str().unwrap().to_owned();
    let agent =
        support::mcp_client::connect(format!("{}/mcp", renter.api), agent_token.clone()).await;
    let first = agent
        .call_tool(call(
            "wc",
            json!({"file": "x", "files": [{"path": "x", "text": "a b"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(first.is_error, Some(false), "{first:?}");
    // An open session counts its whole budget against the day.
    let kept = agent
        .call_tool(call(
            "orien_open_session",
            json!({"tool": "wc", "budget": "0.1"}),
        ))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    let kept = kept["session"].as_str().unwrap().to_owned();
    let second = agent
        .call_tool(call(
            "wc",
            json!({"file": "x", "files": [{"path": "x", "text": "a b"}]}),
        ))
        .await
        .unwrap();
    let text = format!("{:?}", second.content);
    assert_eq!(second.is_error, Some(true), "{text}");
    assert!(text.contains("of today's 0.200000 USDC is left"), "{text}");
    let owners = modern
        .call_tool(call(
            "orien_open_session",
            json!({"tool": "wc", "budget": "0.3"}),
        ))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    let owners = owners["session"].as_str().unwrap().to_owned();
    let borrowed = agent
        .call_tool(call("orien_close_session", json!({"session": owners})))
        .await
        .unwrap();
    let text = format!("{:?}", borrowed.content);
    assert!(
        text.contains("not opened with this client's token"),
        "{text}"
    );
    assert!(
        agent
            .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
                "orien://sessions/{owners}/receipts"
            )))
            .await
            .is_err(),
        "the owner's receipts are not the client's to read"
    );
    let listed = agent
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "orien://sessions",
        ))
        .await
        .unwrap();
    let rmcp::model::ResourceContents::TextResourceContents { text, .. } = &listed.contents[0]
    else {
        panic!("{listed:?}")
    };
    let theirs: Vec<Value> = serde_json::from_str(text).unwrap();
    assert_eq!(
        theirs.len(),
        2,
        "the client sees its two sessions only: {text}"
    );
    let agent_balance = agent
        .call_tool(call("orien_balance", json!({})))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(agent_balance["per_day"], "0.200000", "{agent_balance}");
    let closed = agent
        .call_tool(call("orien_close_session", json!({"session": kept})))
        .await
        .unwrap();
    assert_eq!(closed.is_error, Some(false), "its own session: {closed:?}");
    modern
        .call_tool(call("orien_close_session", json!({"session": owners})))
        .await
        .unwrap();
    // Over stdio with the client's token: its own limits.
    let stdio_agent = ()
        .serve(
            rmcp::transport::TokioChildProcess::new({
                let mut command = tokio::process::Command::new(support::binary());
                command
                    .arg("--data-dir")
                    .arg(renter.data_dir())
                    .args(["mcp", "--client", "agent"]);
                command
            })
            .unwrap(),
        )
        .await
        .unwrap();
    let over_stdio = stdio_agent
        .call_tool(call("orien_balance", json!({})))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(over_stdio["per_day"], "0.200000", "{over_stdio}");
    stdio_agent.cancel().await.unwrap();
    support::run_ok(renter.data_dir(), &["mcp", "client", "remove", "agent"]);
    agent.cancel().await.unwrap();
    let refused = reqwest::Client::new()
        .post(format!("{}/mcp", renter.api))
        .bearer_auth(&agent_token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        401,
        "a removed client's token opens nothing"
    );

    legacy.cancel().await.unwrap();
    modern.cancel().await.unwrap();
    drop(provider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_refuses_strangers_web_pages_and_rebound_names() {
    let node = NodeProcess::start(&[]);
    let url = format!("{}/mcp", node.api);
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
    });
    let http = reqwest::Client::new();
    let send = |origin: Option<&str>, host: Option<&str>, token: Option<&str>| {
        let mut request = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let token = node.token.trim();
    assert_eq!(send(None, None, None).await.unwrap().status(), 401);
    assert_eq!(
        send(None, None, Some("wrong-token-of-enough-length-000000"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send(Some("https://evil.example"), None, Some(token))
            .await
            .unwrap()
            .status(),
        403,
        "a web page's request is refused"
    );
    assert_eq!(
        send(None, Some("evil.example:7400"), Some(token))
            .await
            .unwrap()
            .status(),
        403,
        "a rebound name is refused"
    );
    let answered = send(None, None, Some(token)).await.unwrap();
    assert!(answered.status().is_success(), "{answered:?}");
}

/// A provider configuration selling `sleep`, a call that takes as long as asked.
fn sleep_config(dir: &std::path::Path) -> String {
    let path = dir.join("sleep.toml");
    std::fs::write(
        &path,
        r#"
[engine]
socket = "/var/run/docker.sock"
warm_pool = 0

[tools.sleep]
description = "Waits the given number of seconds."
version = "busybox-1.37"
image = "orien/busybox:1"
argv = ["sleep", "{secs}"]
schema = '''
{"type": "object", "additionalProperties": false, "required": ["secs"],
 "properties": {"secs": {"type": "string", "pattern": "^[0-9]{1,2}$"}}}
'''

[tools.sleep.limits]
max_exec_ms = 25_000
cpus = 0.5
memory = "32MiB"
pids = 8
tmpfs = "1MiB"
output = "4KiB"
workspace = "1MiB"
concurrent_execs = 1

[tools.sleep.pricing]
session_per_minute = "0.060000"
exec_per_minute = "0.300000"
"#,
    )
    .unwrap();
    path.display().to_string()
}

/// Counts the progress notifications a client hears.
#[derive(Clone, Default)]
struct Progressing {
    notifications: Arc<AtomicUsize>,
}

impl ClientHandler for Progressing {
    async fn on_progress(
        &self,
        _params: rmcp::model::ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.notifications.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_call_reports_progress_and_cancelling_it_stops_its_meter() {
    let bootstrap = NodeProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = sleep_config(dir.path());
    let provider = NodeProcess::start_with(
        &[&bootstrap],
        &["--provider-config", &config, "--receipt-interval-ms", "500"],
    );
    let renter = NodeProcess::start_with(&[&bootstrap], &["--receipt-interval-ms", "500"]);
    let handler = Progressing::default();
    let client = handler
        .clone()
        .serve_with_lifecycle(
            transport(&renter),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    let mut listed = false;
    for _ in 0..450 {
        if tool_names(&client).await.iter().any(|n| n == "sleep") {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(listed, "the provider's sleep tool reached the renter");

    // Progress while a call runs (one notification a second without output).
    let request = |secs: &str| {
        rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(call(
            "sleep",
            json!({"secs": secs}),
        )))
    };
    let handle = client
        .send_cancellable_request(
            request("3"),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let answer = handle.await_response().await.unwrap();
    assert!(format!("{answer:?}").contains("completed"), "{answer:?}");
    assert!(
        handler.notifications.load(Ordering::SeqCst) >= 1,
        "progress while the 3 s call ran"
    );

    // A 20 s call cancelled after 2 s: its session ends and the meter stops with it.
    let before: Vec<Value> = rented(&renter)
        .await
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    let started = std::time::Instant::now();
    let handle = client
        .send_cancellable_request(
            request("20"),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let mut session = Value::Null;
    for _ in 0..300 {
        if let Some(s) = rented(&renter)
            .await
            .into_iter()
            .find(|s| !before.contains(&s["id"]))
        {
            session = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = session["id"]
        .as_str()
        .expect("the call's session opened")
        .to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cancelled_after = started.elapsed();
    handle
        .cancel(Some("the agent changed its mind".into()))
        .await
        .unwrap();
    let ended = renter
        .wait_for(&format!("/v1/sessions/{id}"), LONG, |s| {
            s["state"] != "active"
        })
        .await;
    let exec_ms = ended["usage"]["exec_ms"].as_u64().unwrap();
    let limit = cancelled_after.as_millis() as u64 + 500 + 2_500;
    assert!(
        exec_ms <= limit,
        "metered {exec_ms} ms of a 20 s call cancelled after {cancelled_after:?} (at most {limit} ms: the time until the cancel, one receipt interval and the engine's slack): {ended}"
    );
    assert_eq!(ended["close_reason"], "renter_requested", "{ended}");

    client.cancel().await.unwrap();
    drop(provider);
}
