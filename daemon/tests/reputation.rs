//! Reputation from this node's own evidence, between in-process nodes (real libp2p over
//! loopback, real RocksDB, the modelled sandbox) and the renter's MCP endpoint served as
//! `orien-node run` serves it: a provider that fails half its calls sinks below one
//! that delivers, and the MCP chooser stops picking it although it is cheaper.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/mcp_client.rs"]
mod mcp_client;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{TestNode, fast, model_run, model_tools_priced, work_tool};
use orien_daemon::api::NodeService;
use orien_provider::model::ModelRun;
use orien_web_api::{ApiConfig, BearerToken, NodeApi};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failing_half_its_calls_sinks_and_the_chooser_stops_picking_it() {
    let dir = tempfile::tempdir().unwrap();
    // Every second call of the flaky provider runs past the tool's 2 s limit and is
    // killed (timed out); it sells at half the reliable provider's price.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let flaky_model = move |tool: &orien_provider::Tool, args: &Value| {
        if counted.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
            ModelRun::exits_after(Duration::from_secs(5), b"late\n".to_vec())
        } else {
            model_run(tool, args)
        }
    };
    let flaky = TestNode::provider_modelled(
        &dir.path().join("flaky"),
        fast(),
        model_tools_priced("0.300000"),
        flaky_model,
    )
    .await;
    let reliable = TestNode::provider(&dir.path().join("reliable"), fast()).await;
    let mut bootstrap = flaky.node().listen_addrs().to_vec();
    bootstrap.extend(reliable.node().listen_addrs().iter().cloned());
    let renter = TestNode::renter_at(&dir.path().join("renter"), fast(), bootstrap).await;
    flaky.publish(&work_tool()).await;
    reliable.publish(&work_tool()).await;
    let (flaky_id, reliable_id) = (flaky.key.node_id(), reliable.key.node_id());
    for provider in [flaky_id, reliable_id] {
        let found = renter
            .on(move |node| async move { node.find_offers(work_tool(), Some(provider)).await })
            .await
            .unwrap();
        assert!(!found.is_empty(), "the renter finds {provider}'s offer");
    }

    // The renter's API with its MCP endpoint, on the renter's own runtime.
    let token = BearerToken::generate();
    let served = token.clone();
    let base = renter
        .on(move |node| async move {
            let app =
                orien_web_api::router(Arc::new(NodeService::new(node)), ApiConfig::new(served));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            base
        })
        .await;
    let client = mcp_client::connect(format!("{base}/mcp"), token.expose().to_owned()).await;
    let mut listed = false;
    for _ in 0..100 {
        let tools = client.list_all_tools().await.unwrap();
        if tools.iter().any(|t| t.name == "work") {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed, "the catalogue lists `work`");
    let call = |provider: Option<String>| {
        let mut args = json!({"ms": "20"});
        if let Some(provider) = provider {
            args["provider"] = json!(provider);
        }
        let Value::Object(args) = args else {
            unreachable!()
        };
        CallToolRequestParams::new("work").with_arguments(args)
    };

    // Unknown to the renter, both score alike: the cheaper flaky provider is chosen.
    let first = client.call_tool(call(None)).await.unwrap();
    let first = first.structured_content.unwrap();
    assert_eq!(first["provider"], flaky_id.to_string(), "{first}");

    // Calls pinned to the flaky provider: half of them time out.
    for _ in 0..7 {
        client
            .call_tool(call(Some(flaky_id.to_string())))
            .await
            .unwrap();
    }
    let api = NodeService::new(renter.node().clone());
    let seen = api.reputation().await.unwrap();
    let of = |p: &orien_protocol::NodeId| {
        seen.iter()
            .find(|r| r.provider == p.to_string())
            .map(|r| r.reputation.clone())
    };
    let sunk = of(&flaky_id).expect("evidence of the flaky provider");
    assert!(sunk.calls_failed >= 3, "{sunk:?}");
    assert!(sunk.calls_completed >= 3, "{sunk:?}");
    assert!(
        sunk.score < 2.0 / 3.0,
        "below a provider never tried: {sunk:?}"
    );

    // Now the chooser passes it over for the dearer provider that delivers, every time.
    for _ in 0..3 {
        let chosen = client.call_tool(call(None)).await.unwrap();
        let chosen = chosen.structured_content.unwrap();
        assert_eq!(chosen["provider"], reliable_id.to_string(), "{chosen}");
        assert_eq!(chosen["state"], "completed", "{chosen}");
    }
    let trusted = of(&reliable_id);
    let trusted = api
        .reputation()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.provider == reliable_id.to_string())
        .map(|r| r.reputation)
        .or(trusted)
        .unwrap();
    assert!(trusted.score > sunk.score, "{trusted:?} vs {sunk:?}");

    // The offer book: cheapest first by default, the provider that delivers first by
    // reputation.
    let offers = |sort| {
        let api = &api;
        async move {
            api.offers(orien_web_api::OfferFilter {
                tool: Some(work_tool()),
                sort,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.provider)
            .collect::<Vec<_>>()
        }
    };
    use orien_web_api::api::OfferSort;
    assert_eq!(offers(OfferSort::Price).await[0], flaky_id.to_string());
    assert_eq!(
        offers(OfferSort::Reputation).await[0],
        reliable_id.to_string()
    );
    assert!(trusted.start_p50_ms.is_some(), "{trusted:?}");
    assert!(trusted.open_p50_ms.is_some(), "{trusted:?}");
    client.cancel().await.unwrap();
}
