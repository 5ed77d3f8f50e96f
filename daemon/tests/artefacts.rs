//! Outputs as artefacts, between a renter and a provider with the real Docker sandbox
//! over loopback TCP, through the renter's HTTP API: a call names output paths, its
//! signed result names the SHA-256 of the copy the provider kept of each, and the
//! renter fetches those bytes by path — after the tool changed the file, and after the
//! session closed — until the provider's keeping time is up; the offer states that time
//! and a price per GiB kept, and the receipts charge it for what the results kept.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/loopback.rs"]
mod loopback;

use std::time::Duration;

use orien_daemon::SessionConfig;
use orien_protocol::{ArtefactKept, ContentHash, ExecResult, Millis, Signed};
use serde_json::{Value, json};

use loopback::Market;

/// The example provider plus `build`, a shell standing for a tool that writes its
/// results into the workspace.
fn provider_config(dir: &std::path::Path) -> std::path::PathBuf {
    let example = std::fs::read_to_string(loopback::example_config()).unwrap();
    let build = r#"
[tools.build]
description = "A shell: stands for a build that writes its outputs into the workspace."
version = "test"
image = "orien/busybox:1"
argv = ["sh", "-c", "{script}"]
schema = '''{"type": "object", "additionalProperties": false, "required": ["script"],
             "properties": {"script": {"type": "string", "maxLength": 4096}}}'''
[tools.build.limits]
max_exec_ms = 10_000
cpus = 0.5
memory = "32MiB"
pids = 32
tmpfs = "1MiB"
output = "4KiB"
workspace = "8MiB"
concurrent_execs = 2
[tools.build.pricing]
session_per_minute = "0.000100"
exec_per_minute = "0.001000"
artefact_per_gib = "1.000000"
"#;
    let path = dir.join("provider.toml");
    std::fs::write(&path, format!("{example}\n{build}")).unwrap();
    path
}

/// An authenticated `GET` of a JSON answer.
async fn get_json(http: &reqwest::Client, (base, token): &(String, String), path: &str) -> Value {
    http.get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Runs `script` in the session naming `outputs`, and waits for its end; the ended
/// execution's view.
async fn build(
    http: &reqwest::Client,
    api: &(String, String),
    session: &str,
    script: &str,
    outputs: &[&str],
) -> Value {
    let (base, token) = api;
    let started: Value = http
        .post(format!("{base}/v1/sessions/{session}/executions"))
        .bearer_auth(token)
        .json(&json!({"args": {"script": script}, "outputs": outputs}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"));
    for _ in 0..300 {
        let view = get_json(http, api, &format!("/v1/executions/{id}")).await;
        if view["state"] != "pending" && view["state"] != "running" && view["ended_at"].is_u64() {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the call did not end");
}

/// `GET /v1/executions/{exec}/artefacts/{path}`: status, ETag and body.
async fn fetch(
    http: &reqwest::Client,
    (base, token): &(String, String),
    exec: &str,
    path: &str,
) -> (u16, Option<String>, Vec<u8>) {
    let response = http
        .get(format!("{base}/v1/executions/{exec}/artefacts/{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_owned());
    (status, etag, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_outputs_are_kept_named_in_its_signed_result_and_fetched_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let config = SessionConfig {
        receipt_interval: Millis(2_000),
        keep_artefacts: Millis(3_000),
        ..SessionConfig::default()
    };
    let market = Market::start_with(&provider_config(dir.path()), "build", config).await;
    let api = market.serve_api().await;
    let http = reqwest::Client::new();
    // The offer says how long artefacts are kept after a session, and at what price.
    let offers = get_json(&http, &api, "/v1/offers?tool=build").await;
    let offers = offers.as_array().unwrap();
    let offer = offers
        .iter()
        .find(|o| o["id"] == market.offer.to_string())
        .unwrap_or_else(|| panic!("{offers:?}"));
    assert_eq!(offer["keep_artefacts_ms"], 3_000, "{offer}");
    assert_eq!(offer["pricing"]["artefact_per_gib"], "1.000000", "{offer}");
    let session = market.open().await.to_string();

    let view = build(
        &http,
        &api,
        &session,
        "mkdir -p out/dir && echo built > out/report.txt",
        &[
            "out/report.txt",
            "out/none.txt",
            "out/dir",
            "out/report.txt",
        ],
    )
    .await;
    assert_eq!(view["state"], "completed", "{view}");
    let exec = view["id"].as_str().unwrap().to_owned();
    let built = ContentHash::of(b"built\n").to_string();
    // A path named twice counts once; each is named in order with what became of it.
    assert_eq!(
        view["artefacts"],
        json!([
            {"path": "out/report.txt", "state": "kept", "size": 6, "sha256": built},
            {"path": "out/none.txt", "state": "missing", "size": null, "sha256": null},
            {"path": "out/dir", "state": "not_a_file", "size": null, "sha256": null},
        ]),
        "{view}"
    );
    // The signed result says the same, under the provider's signature.
    let signed = Signed::<ExecResult>::from_bytes(
        &hex::decode(view["signed_result"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let result = signed.verify_from(&market.provider_key.node_id()).unwrap();
    assert_eq!(result.artefacts.len(), 3);
    assert_eq!(
        result.artefacts[0].kept,
        ArtefactKept::File {
            size: 6,
            sha256: ContentHash::of(b"built\n")
        }
    );

    let (status, etag, body) = fetch(&http, &api, &exec, "out/report.txt").await;
    assert_eq!(
        (status, etag.as_deref(), body.as_slice()),
        (200, Some(built.as_str()), &b"built\n"[..])
    );
    // What was not kept cannot be fetched.
    for path in ["out/none.txt", "out/dir", "out/other.txt"] {
        let (status, _, _) = fetch(&http, &api, &exec, path).await;
        assert_eq!(status, 404, "{path}");
    }

    // The tool changes the file: the artefact is still the call's.
    let later = build(&http, &api, &session, "echo changed > out/report.txt", &[]).await;
    assert_eq!(later["artefacts"], json!([]), "{later}");
    let (_, _, body) = fetch(&http, &api, &exec, "out/report.txt").await;
    assert_eq!(body, b"built\n");

    // Keeping 1 MiB costs 1/1024 USDC, charged by the receipts that commit to the
    // result; the 6 bytes above cost less than a micro-USDC.
    let blob = build(
        &http,
        &api,
        &session,
        "dd if=/dev/zero of=out/blob bs=1024 count=1024 2>/dev/null",
        &["out/blob"],
    )
    .await;
    assert_eq!(blob["artefacts"][0]["size"], 1 << 20, "{blob}");

    // After the close, for as long as the provider keeps artefacts.
    let closed = http
        .post(format!("{}/v1/sessions/{session}/close", api.0))
        .bearer_auth(&api.1)
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "{:?}", closed.text().await);
    let (status, etag, body) = fetch(&http, &api, &exec, "out/report.txt").await;
    assert_eq!(
        (status, etag.as_deref(), body.as_slice()),
        (200, Some(built.as_str()), &b"built\n"[..])
    );
    let receipts = get_json(&http, &api, &format!("/v1/receipts?session={session}")).await;
    let receipts = receipts.as_array().unwrap();
    let last = receipts.last().unwrap();
    assert_eq!(last["artefact_amount"], "0.000976", "{receipts:?}");
    let usdc = |k: &str| {
        last[k]
            .as_str()
            .unwrap()
            .parse::<orien_protocol::Usdc>()
            .unwrap()
    };
    // 0.0001 USDC a minute open, the calls at their price, and the artefacts.
    let session_amount = orien_protocol::Pricing {
        session_per_minute: orien_protocol::Usdc::from_micros(100),
        ..orien_protocol::Pricing::default()
    }
    .session_amount(Millis(last["session_ms"].as_u64().unwrap()));
    assert_eq!(
        Some(usdc("amount")),
        session_amount
            .checked_add(usdc("exec_amount"))
            .and_then(|a| a.checked_add(usdc("artefact_amount"))),
        "{last}"
    );
    // The provider's ledger holds the same receipts.
    let held = market
        .provider_store
        .receipts(&session.parse().unwrap())
        .unwrap();
    assert_eq!(held.len(), receipts.len());
    // Then no more: the provider removed it.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (status, _, body) = fetch(&http, &api, &exec, "out/report.txt").await;
    let problem = String::from_utf8_lossy(&body);
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem.contains("no longer keeps `out/report.txt`"),
        "{problem}"
    );
    market.shutdown().await;
}
