//! Paid sessions between separate `orien-node` processes, driven only through their HTTP
//! APIs: a bootstrap node, a provider running the real Docker sandbox, and a renter,
//! each with its own RocksDB ledger, over loopback TCP.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::process::Command;
use std::time::Duration;

use orien_protocol::Usdc;
use reqwest::Method;
use serde_json::{Value, json};
use support::{NodeProcess, example_config, parse_sse};

const LONG: Duration = Duration::from_secs(90);

/// A provider selling the example tools, with short session timings.
fn provider(bootstrap: &NodeProcess, ack_timeout_ms: u64) -> NodeProcess {
    let config = example_config();
    let ack = ack_timeout_ms.to_string();
    NodeProcess::start_with(
        &[bootstrap],
        &[
            "--provider-config",
            &config,
            "--receipt-interval-ms",
            "500",
            "--ack-timeout-ms",
            &ack,
        ],
    )
}

fn renter(bootstrap: &NodeProcess, grace_ms: u64) -> NodeProcess {
    let grace = grace_ms.to_string();
    NodeProcess::start_with(&[bootstrap], &["--disconnect-grace-ms", &grace])
}

/// Waits until `renter` has the provider's offer of `tool`, and returns its id.
/// The value of one sample (`name{labels}`) in a metrics exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn offer_of(renter: &NodeProcess, provider: &NodeProcess, tool: &str) -> String {
    let path = format!("/v1/offers?tool={tool}&provider={}", provider.id);
    let offers = renter
        .wait_for(&path, LONG, |o| o.as_array().is_some_and(|a| !a.is_empty()))
        .await;
    offers[0]["id"].as_str().unwrap().to_owned()
}

async fn logs(
    node: &NodeProcess,
    exec: &str,
    last_event: Option<u64>,
) -> Vec<(Option<u64>, String, String)> {
    let last = last_event.map(|l| l.to_string());
    let headers: Vec<(&str, &str)> = last.iter().map(|l| ("last-event-id", l.as_str())).collect();
    let response = tokio::time::timeout(
        LONG,
        node.send(
            Method::GET,
            &format!("/v1/executions/{exec}/logs"),
            None,
            &headers,
        ),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = tokio::time::timeout(LONG, response.text())
        .await
        .unwrap()
        .unwrap();
    parse_sse(&text)
}

/// Opens a session of the provider's `sha256` offer (budget 0.5) and waits until its
/// first receipt is acknowledged; its id, and when the renter had it open.
async fn a_session_with_a_receipt(
    renter: &NodeProcess,
    provider: &NodeProcess,
) -> (String, std::time::Instant) {
    let offer = offer_of(renter, provider, "sha256").await;
    let session = renter
        .post_json("/v1/sessions", json!({"offer": offer, "budget": "0.5"}))
        .await;
    let opened = std::time::Instant::now();
    let id = session["id"].as_str().unwrap().to_owned();
    renter
        .wait_for(&format!("/v1/sessions/{id}"), LONG, |s| {
            s["usage"]["receipts"].as_u64() >= Some(1)
        })
        .await;
    (id, opened)
}

/// Closes session `id` through the renter's API and returns the closed session and both
/// sides' receipt chains, the provider's once it holds as many receipts as the renter's.
async fn close_and_fetch_chains(
    renter: &NodeProcess,
    provider: &NodeProcess,
    id: &str,
) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    let closed = renter
        .post_json(&format!("/v1/sessions/{id}/close"), json!({}))
        .await;
    assert_eq!(closed["state"], "completed", "{closed}");
    assert_eq!(closed["close_reason"], "renter_requested", "{closed}");
    let renter_chain = renter.get_json(&format!("/v1/receipts?session={id}")).await;
    let provider_chain = provider
        .wait_for(&format!("/v1/receipts?session={id}"), LONG, |c| {
            c.as_array().map(Vec::len) == renter_chain.as_array().map(Vec::len)
        })
        .await;
    (closed, renter_chain, provider_chain)
}

/// Containers (running or not) carrying the label `key=value`.
fn containers_labelled(key: &str, value: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={key}={value}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn containers_of(session: &str) -> Vec<String> {
    containers_labelled("orien.session", session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_through_the_api_leaves_identical_receipts_on_both_sides() {
    let bootstrap = NodeProcess::start(&[]);
    let provider = provider(&bootstrap, 10_000);
    let renter = renter(&bootstrap, 30_000);

    let tools = provider.get_json("/v1/tools").await;
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tool"] == "sha256"),
        "{tools}"
    );
    let offer = offer_of(&renter, &provider, "sha256").await;
    let renter_before = renter.get("/metrics").await.text().await.unwrap();
    let opened_before = sample(
        &renter_before,
        "orien_sessions_opening_seconds_count{role=\"renter\"}",
    );
    assert!(opened_before.unwrap_or(0.0) == 0.0, "{renter_before}");

    // Opening is idempotent under a key: the retry gets the same session.
    let open = json!({"offer": offer, "budget": "0.5", "max_duration_secs": 600});
    let key = [("idempotency-key", "open-1")];
    let first = renter
        .send(Method::POST, "/v1/sessions", Some(open.clone()), &key)
        .await;
    assert_eq!(first.status(), 201);
    let session: Value = first.json().await.unwrap();
    let replay = renter
        .send(Method::POST, "/v1/sessions", Some(open), &key)
        .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed["id"], session["id"]);
    let id = session["id"].as_str().unwrap().to_owned();
    assert_eq!(session["role"], "renter");
    assert_eq!(session["state"], "active");
    assert_eq!(session["tool"], "sha256");
    for node in [&renter, &provider] {
        let health = node.get_json("/healthz").await;
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["active_sessions"], 1, "{health}");
    }
    assert_eq!(
        renter
            .get_json("/v1/sessions")
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "the replay opened nothing"
    );

    // A file in, listed, read back.
    let put = reqwest::Client::new()
        .put(format!(
            "{}/v1/sessions/{id}/files/data/hello.txt",
            renter.api
        ))
        .bearer_auth(&renter.token)
        .body("hello orien\n")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let written: Value = put.json().await.unwrap();
    // sha256("hello orien\n"), to check the upload against.
    assert_eq!(
        written["sha256"], "48f65f7f50d5a5b5ca780fd1fdfd485c8dc18758c0dee79f16384c838eee25fe",
        "{written}"
    );
    let files = renter.get_json(&format!("/v1/sessions/{id}/files")).await;
    assert!(
        files
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "data/hello.txt" && f["size"] == 12),
        "{files}"
    );
    let back = renter
        .get(&format!("/v1/sessions/{id}/files/data/hello.txt"))
        .await;
    assert_eq!(back.status(), 200);
    assert_eq!(
        back.headers()["repr-digest"],
        "sha-256=:SPZff1DVpbXKeA/R/f1IXI3Bh1jA3uefFjhMg47uJf4=:",
        "the download's own SHA-256 (RFC 9530)"
    );
    assert_eq!(back.bytes().await.unwrap().as_ref(), b"hello orien\n");
    let missing = renter
        .get(&format!("/v1/sessions/{id}/files/data/missing.txt"))
        .await;
    assert_eq!(
        missing.status(),
        404,
        "a missing file is the documented 404"
    );
    let escape = renter
        .get(&format!("/v1/sessions/{id}/files/..%2F..%2Fetc%2Fpasswd"))
        .await;
    assert_eq!(
        escape.status(),
        400,
        "a path out of the workspace is refused"
    );

    // An execution: 202 with a Location, its log as server-sent events.
    let started = renter
        .send(
            Method::POST,
            &format!("/v1/sessions/{id}/executions"),
            Some(json!({"args": {"file": "data/hello.txt"}})),
            &[],
        )
        .await;
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let exec: Value = started.json().await.unwrap();
    let exec_id = exec["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/executions/{exec_id}"));
    let events = logs(&renter, &exec_id, None).await;
    let stdout: String = events
        .iter()
        .filter(|e| e.1 == "stdout")
        .map(|e| e.2.as_str())
        .collect();
    // sha256("hello orien\n")
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"hello orien\n"))
    };
    assert!(stdout.starts_with(&digest), "{events:?}");
    let (last_id, last_name, last_data) = events.last().unwrap().clone();
    assert_eq!(
        last_name, "exit",
        "the stream ends with the exit: {events:?}"
    );
    let exit: Value = serde_json::from_str(&last_data).unwrap();
    assert_eq!(
        (exit["state"].as_str(), exit["exit_code"].as_i64()),
        (Some("completed"), Some(0))
    );
    // Resuming after the first event replays only what followed it.
    let resumed = logs(&renter, &exec_id, events[0].0).await;
    assert_eq!(resumed.len(), events.len() - 1);
    assert_eq!(resumed.last().unwrap().0, last_id);
    let polled = renter.get_json(&location).await;
    assert_eq!(polled["state"], "completed");
    assert!(polled["stdout"].as_str().unwrap().starts_with(&digest));

    // Refused arguments are reported and not charged.
    let refused = renter
        .run_to_end(&id, json!({"file": "../etc/passwd"}), LONG)
        .await;
    assert_eq!(
        (refused["state"].as_str(), refused["failure"].as_str()),
        (Some("failed"), Some("invalid_arguments")),
        "{refused}"
    );

    // Close: both ledgers hold the same dual-signed chain and the same 90/7/3 totals.
    let (closed, renter_chain, provider_chain) =
        close_and_fetch_chains(&renter, &provider, &id).await;
    assert!(!renter_chain.as_array().unwrap().is_empty());
    assert_eq!(
        renter_chain, provider_chain,
        "byte-identical receipts and acks"
    );
    let last = renter_chain.as_array().unwrap().last().unwrap().clone();
    assert!(last["exec_ms"].as_u64().unwrap() > 0);
    let on_provider = provider
        .wait_for(&format!("/v1/sessions/{id}"), LONG, |s| {
            s["state"] != "active"
        })
        .await;
    assert_eq!(on_provider["role"], "provider");
    assert_eq!(on_provider["amount"], last["amount"]);
    assert_eq!(on_provider["amount"], closed["amount"]);
    assert_eq!(on_provider["split"], closed["split"]);
    let micros = |s: &Value| s.as_str().unwrap().parse::<Usdc>().unwrap().micros();
    let amount = micros(&closed["amount"]);
    let (fee, reserve, provider_share) = (
        micros(&closed["split"]["fee"]),
        micros(&closed["split"]["reserve"]),
        micros(&closed["split"]["provider"]),
    );
    assert_eq!((fee, reserve), (amount * 7 / 100, amount * 3 / 100));
    assert_eq!(provider_share + fee + reserve, amount);
    assert_eq!(
        renter.get_json("/v1/ledger/balances").await,
        provider.get_json("/v1/ledger/balances").await,
        "both ledgers posted the same entries"
    );
    // The provider removed the session's container.
    for _ in 0..100 {
        if containers_of(&id).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        containers_of(&id).is_empty(),
        "the sandbox is gone after close"
    );

    // The metrics count what happened, on both sides.
    let renter_metrics = renter.get("/metrics").await.text().await.unwrap();
    for line in [
        "orien_sessions_opened_total{role=\"renter\"} 1",
        "orien_sessions_closed_total{role=\"renter\",reason=\"renter_requested\"} 1",
        "orien_sessions_open{role=\"renter\"} 0",
    ] {
        assert!(renter_metrics.contains(line), "{line} in {renter_metrics}");
    }
    let provider_metrics = provider.get("/metrics").await.text().await.unwrap();
    let chain_len = renter_chain.as_array().unwrap().len();
    for line in [
        "orien_executions_total{outcome=\"exited\"} 1".to_owned(),
        "orien_executions_total{outcome=\"invalid_arguments\"} 1".to_owned(),
        format!("orien_receipts_committed_total{{role=\"provider\"}} {chain_len}"),
    ] {
        assert!(
            provider_metrics.contains(&line),
            "{line} in {provider_metrics}"
        );
    }
    // The timings moved: each histogram counted what this session did.
    let chain_len = chain_len as f64;
    for (text, name, at_least) in [
        (
            &renter_metrics,
            "orien_sessions_opening_seconds_count{role=\"renter\"}",
            1.0,
        ),
        (
            &renter_metrics,
            "orien_executions_first_output_seconds_count",
            1.0,
        ),
        (
            &renter_metrics,
            "orien_executions_duration_seconds_count{role=\"renter\"}",
            1.0,
        ),
        (
            &renter_metrics,
            "orien_ledger_commit_seconds_count{role=\"renter\"}",
            chain_len,
        ),
        (
            &provider_metrics,
            "orien_sessions_opening_seconds_count{role=\"provider\"}",
            1.0,
        ),
        (
            &provider_metrics,
            "orien_executions_duration_seconds_count{role=\"provider\"}",
            1.0,
        ),
        (&provider_metrics, "orien_receipts_ack_seconds_count", 1.0),
        (
            &provider_metrics,
            "orien_receipts_durable_seconds_count",
            1.0,
        ),
        (
            &provider_metrics,
            "orien_ledger_commit_seconds_count{role=\"provider\"}",
            chain_len,
        ),
        (
            &renter_metrics,
            "orien_ledger_commit_group_receipts_count{role=\"renter\"}",
            chain_len,
        ),
        (
            &provider_metrics,
            "orien_ledger_commit_group_receipts_count{role=\"provider\"}",
            chain_len,
        ),
    ] {
        let value = sample(text, name).unwrap_or_else(|| panic!("{name} in {text}"));
        assert!(
            value >= at_least,
            "{name} is {value}, expected at least {at_least}"
        );
    }
    for (text, name) in [
        (&renter_metrics, "orien_executions_running{role=\"renter\"}"),
        (
            &provider_metrics,
            "orien_executions_running{role=\"provider\"}",
        ),
    ] {
        assert_eq!(
            sample(text, name),
            Some(0.0),
            "no call runs after close: {text}"
        );
    }

    // A closed session takes no more work; unknown ids are 404 problems.
    let late = renter
        .send(
            Method::POST,
            &format!("/v1/sessions/{id}/executions"),
            Some(json!({"args": {}})),
            &[],
        )
        .await;
    assert!(late.status().is_client_error(), "{}", late.status());
    let unknown = renter
        .get(&format!("/v1/sessions/{}", "00".repeat(16)))
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_provider_leaves_the_renter_owing_only_what_it_acknowledged() {
    let bootstrap = NodeProcess::start(&[]);
    let mut provider = provider(&bootstrap, 10_000);
    let renter = renter(&bootstrap, 2_000);
    let (id, _) = a_session_with_a_receipt(&renter, &provider).await;
    // Then the provider dies without a word.
    provider.kill();
    let after = renter
        .wait_for(&format!("/v1/sessions/{id}"), LONG, |s| {
            s["state"] != "active"
        })
        .await;
    assert_eq!(after["close_reason"], "disconnected", "{after}");
    let chain = renter.get_json(&format!("/v1/receipts?session={id}")).await;
    let last = chain.as_array().unwrap().last().unwrap();
    assert_eq!(
        after["amount"], last["amount"],
        "owed = the last acknowledged receipt"
    );
    assert_eq!(after["usage"]["receipts"], last["seq"]);
    // Work on the dead session is refused with a problem, not hung or a 5xx.
    let refused = renter
        .send(
            Method::POST,
            &format!("/v1/sessions/{id}/executions"),
            Some(json!({"args": {"file": "x"}})),
            &[],
        )
        .await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    // The killed provider's container is left to its reaper; remove it here.
    for container in containers_of(&id) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &container])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_stops_closes_its_sessions_on_a_receipt_for_the_time_served() {
    // Before: a provider's shutdown withdrew its offers and stopped, and the sessions it
    // served ended with the process, unpaid since their last acknowledged receipt (up to
    // an interval), their renters left to find the provider silent ("disconnected").
    let bootstrap = NodeProcess::start(&[]);
    let mut provider = provider(&bootstrap, 10_000);
    let renter = renter(&bootstrap, 2_000);
    let (id, opened) = a_session_with_a_receipt(&renter, &provider).await;
    // Off an interval's boundary (500 ms), where the last acknowledged receipt stops.
    tokio::time::sleep(Duration::from_millis(750)).await;
    let served = opened.elapsed();
    assert!(provider.terminate(), "the provider stops cleanly");
    let after = renter
        .wait_for(&format!("/v1/sessions/{id}"), LONG, |s| {
            s["state"] != "active"
        })
        .await;
    assert_eq!(after["close_reason"], "provider_shutdown", "{after}");
    let chain = renter.get_json(&format!("/v1/receipts?session={id}")).await;
    let last = chain.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        after["amount"], last["amount"],
        "owed = the closing receipt"
    );
    let covered = Duration::from_millis(last["session_ms"].as_u64().unwrap());
    assert!(
        covered >= served,
        "the closing receipt covers {covered:?}, the session ran {served:?} before the stop"
    );
    assert!(
        containers_of(&id).is_empty(),
        "the session's sandbox went with its close"
    );
    // The provider's ledger holds the same chain, and its next start finds nothing open.
    provider.restart(&[&bootstrap], &[]);
    let provider_chain = provider
        .get_json(&format!("/v1/receipts?session={id}"))
        .await;
    assert_eq!(provider_chain, chain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_renter_makes_the_provider_close_and_remove_the_sandbox() {
    let bootstrap = NodeProcess::start(&[]);
    let provider = provider(&bootstrap, 2_000);
    let mut renter = renter(&bootstrap, 30_000);
    let offer = offer_of(&renter, &provider, "sha256").await;
    let session = renter
        .post_json("/v1/sessions", json!({"offer": offer, "budget": "0.5"}))
        .await;
    let id = session["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/sessions/{id}");
    provider
        .wait_for(&path, LONG, |s| s["usage"]["receipts"].as_u64() >= Some(1))
        .await;
    assert_eq!(
        containers_of(&id).len(),
        1,
        "one warm container per session"
    );
    renter.kill();
    let after = provider
        .wait_for(&path, LONG, |s| s["state"] != "active")
        .await;
    assert_eq!(
        (after["state"].as_str(), after["close_reason"].as_str()),
        (Some("failed"), Some("ack_timeout")),
        "{after}"
    );
    let chain = provider
        .get_json(&format!("/v1/receipts?session={id}"))
        .await;
    let last = chain.as_array().unwrap().last().unwrap();
    assert_eq!(
        after["amount"], last["amount"],
        "charged up to the last ack, no further"
    );
    for _ in 0..100 {
        if containers_of(&id).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        containers_of(&id).is_empty(),
        "the provider removed the container"
    );
}

/// `orien-node` run as a command against a running node's data directory.
fn cli(node: &NodeProcess, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orien-node"))
        .arg("--data-dir")
        .arg(node.data_dir())
        .args(args)
        .env("ORIEN_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_rents_through_the_local_api() {
    let bootstrap = NodeProcess::start(&[]);
    let provider = provider(&bootstrap, 10_000);
    let renter = renter(&bootstrap, 30_000);
    offer_of(&renter, &provider, "sha256").await;

    let (code, out, err) = cli(&renter, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&renter.id), "{out}");
    let (code, out, _) = cli(&renter, &["--json", "offers", "--tool", "sha256"]);
    assert_eq!(code, 0);
    let offers: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(offers[0]["provider"], provider.id.as_str());
    let (code, out, _) = cli(&provider, &["tools"]);
    assert_eq!(code, 0);
    assert!(out.contains("sha256"), "{out}");

    let (code, session, err) = cli(
        &renter,
        &["session", "open", "--tool", "sha256", "--budget", "0.5"],
    );
    assert_eq!(code, 0, "{err}");
    let session = session.trim().to_owned();
    let input = renter.data_dir().join("input.txt");
    std::fs::write(&input, b"hello orien\n").unwrap();
    let upload = format!("{}=data/hello.txt", input.display());
    let (code, out, err) = cli(
        &renter,
        &[
            "session",
            "exec",
            &session,
            "--upload",
            &upload,
            "--args",
            r#"{"file":"data/hello.txt"}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"hello orien\n"))
    };
    assert!(
        out.starts_with(&digest),
        "the tool's stdout is streamed: {out}"
    );
    // Outputs: what the call left at each path is kept, named in the signed result and
    // fetched; one that is not there is said so.
    let kept = renter.data_dir().join("kept.txt");
    let output = format!("data/hello.txt={}", kept.display());
    let (code, out, err) = cli(
        &renter,
        &[
            "session",
            "exec",
            &session,
            "--args",
            r#"{"file":"data/hello.txt"}"#,
            "--output",
            &output,
            "--output",
            "data/none.txt",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&kept).unwrap(), b"hello orien\n");
    assert!(out.contains(&format!("sha256 {digest}")), "{out}");
    assert!(
        err.contains("outputs not kept: data/none.txt (missing)"),
        "{err}"
    );
    // A refused argument: a non-zero exit and the reason on stderr.
    let (code, _, err) = cli(
        &renter,
        &[
            "session",
            "exec",
            &session,
            "--args",
            r#"{"file":"../etc/passwd"}"#,
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("invalid_arguments"), "{err}");

    let (code, out, err) = cli(&renter, &["session", "close", &session]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("closed: "), "{out}");
    let (code, out, _) = cli(&renter, &["--json", "receipts", &session]);
    assert_eq!(code, 0);
    let receipts: Value = serde_json::from_str(&out).unwrap();
    assert!(!receipts.as_array().unwrap().is_empty());
    let (code, out, _) = cli(&renter, &["--json", "session", "list"]);
    assert_eq!(code, 0);
    let sessions: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sessions[0]["id"], session.as_str());
    assert_eq!(sessions[0]["state"], "completed");
    let (code, out, _) = cli(&renter, &["ledger", "balances"]);
    assert_eq!(code, 0);
    assert!(out.contains("fee"), "{out}");

    // Bad input is named, and the command fails.
    let (code, _, err) = cli(&renter, &["session", "show", "not-a-session"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("bad-request") && err.contains("session"),
        "{err}"
    );
    let (code, _, err) = cli(&renter, &["settle"]);
    assert_ne!(code, 0);
    assert!(err.contains("not connected to a chain"), "{err}");
    let (code, out, _) = cli(&renter, &["tools", "validate", &example_config()]);
    assert_eq!(code, 0);
    assert!(out.contains("4 tool(s)"), "{out}");
}

/// A provider with no address of its own: it listens only through a relay (the
/// bootstrap node), as a provider behind home NAT does, and still serves a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reachable_only_through_a_relay_serves_a_session() {
    let relay = NodeProcess::start_with(&[], &["--relay-server"]);
    let circuit = format!("{}/p2p-circuit", relay.listen[0]);
    let config = example_config();
    let provider = NodeProcess::start_with_listen(
        &[&relay],
        &circuit,
        &["--provider-config", &config, "--receipt-interval-ms", "500"],
    );
    assert!(
        !provider.listen.is_empty() && provider.listen.iter().all(|a| a.contains("/p2p-circuit")),
        "the provider listens only through the relay: {:?}",
        provider.listen
    );
    let renter = renter(&relay, 30_000);
    let offer = offer_of(&renter, &provider, "sha256").await;
    let session = renter
        .post_json("/v1/sessions", json!({"offer": offer, "budget": "0.5"}))
        .await;
    let id = session["id"].as_str().unwrap().to_owned();
    let done = renter
        .run_to_end(&id, json!({"file": "missing.txt"}), LONG)
        .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_ne!(
        done["exit_code"], 0,
        "sha256sum of a missing file fails: {done}"
    );
    let (_, renter_chain, provider_chain) = close_and_fetch_chains(&renter, &provider, &id).await;
    assert_eq!(renter_chain, provider_chain);
}

/// The market as separate processes: a renter sees both providers' offers, a node that
/// joins late rents a tool at once (its book is empty, so it asks the DHT), and the
/// offer of a provider that died without withdrawing expires from the book.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_from_two_providers_reach_renters_and_expire_when_their_provider_dies() {
    let bootstrap = NodeProcess::start(&[]);
    let config = example_config();
    let first = provider(&bootstrap, 10_000);
    let mut second = NodeProcess::start_with(
        &[&bootstrap],
        &["--provider-config", &config, "--offer-ttl-secs", "4"],
    );
    let renter = renter(&bootstrap, 30_000);
    let both = renter
        .wait_for("/v1/offers?tool=sha256", LONG, |o| {
            o.as_array().is_some_and(|a| a.len() == 2)
        })
        .await;
    let mut providers: Vec<&str> = both
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["provider"].as_str().unwrap())
        .collect();
    providers.sort_unstable();
    let mut expected = [first.id.as_str(), second.id.as_str()];
    expected.sort_unstable();
    assert_eq!(providers, expected);

    // A late joiner opens by tool straight away.
    let late = NodeProcess::start(&[&bootstrap]);
    let opened = late
        .send(
            Method::POST,
            "/v1/sessions",
            Some(json!({"tool": "wc", "provider": first.id, "budget": "0.5"})),
            &[],
        )
        .await;
    let status = opened.status();
    let session: Value = opened.json().await.unwrap();
    assert_eq!(status, 201, "{session}");
    late.post_json(
        &format!("/v1/sessions/{}/close", session["id"].as_str().unwrap()),
        json!({}),
    )
    .await;

    // The second provider dies without withdrawing: its offer expires (4 s).
    second.kill();
    renter
        .wait_for("/v1/offers?tool=sha256", LONG, |o| {
            o.as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["provider"] == first.id.as_str())
        })
        .await;
    for container in containers_labelled("orien.node", &second.id) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &container])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_runs_three_tools_of_its_provider_with_identical_receipts_on_both_sides() {
    let bootstrap = NodeProcess::start(&[]);
    let provider = provider(&bootstrap, 10_000);
    let renter = renter(&bootstrap, 30_000);
    let offer = offer_of(&renter, &provider, "sha256").await;
    let session = renter
        .post_json(
            "/v1/sessions",
            json!({"offer": offer, "budget": "0.5", "max_duration_secs": 600}),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_owned();
    let put = reqwest::Client::new()
        .put(format!(
            "{}/v1/sessions/{id}/files/data/words.txt",
            renter.api
        ))
        .bearer_auth(&renter.token)
        .body(b"alpha\nbeta\ngamma beta\n".to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());

    // The session's own tool, then two other tools of its provider over the same
    // workspace, each at its own offer's execution price.
    let calls = [
        (None, json!({"file": "data/words.txt"}), "sha256"),
        (
            Some("wc"),
            json!({"mode": "-l", "file": "data/words.txt"}),
            "wc",
        ),
        (
            Some("grep"),
            json!({"pattern": "beta", "file": "data/words.txt"}),
            "grep",
        ),
    ];
    let mut outputs = Vec::new();
    for (tool, args, name) in calls {
        let mut body = json!({ "args": args });
        if let Some(tool) = tool {
            body["tool"] = json!(tool);
        }
        let exec = renter
            .post_json(&format!("/v1/sessions/{id}/executions"), body)
            .await;
        assert_eq!(exec["tool"], name, "{exec}");
        let done = renter
            .wait_for(
                &format!("/v1/executions/{}", exec["id"].as_str().unwrap()),
                LONG,
                |e| e["state"] == "completed" || e["state"] == "failed",
            )
            .await;
        assert_eq!(done["state"], "completed", "{done}");
        outputs.push(done["stdout"].as_str().unwrap().to_owned());
    }
    let digest = orien_protocol::ContentHash::of(b"alpha\nbeta\ngamma beta\n").to_string();
    assert!(
        outputs[0].starts_with(&digest),
        "sha256: {} for {digest}",
        outputs[0]
    );
    assert_eq!(outputs[1].split_whitespace().next(), Some("3"), "wc");
    assert_eq!(outputs[2], "beta\ngamma beta\n", "grep");
    // A tool the provider does not sell is refused before anything is asked of it.
    let refused = renter
        .send(
            Method::POST,
            &format!("/v1/sessions/{id}/executions"),
            Some(json!({"args": {}, "tool": "curl"})),
            &[],
        )
        .await;
    assert_eq!(refused.status(), 404);

    let (closed, renter_chain, provider_chain) =
        close_and_fetch_chains(&renter, &provider, &id).await;
    assert_eq!(renter_chain, provider_chain, "identical receipt chains");
    let last = renter_chain.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["amount"], closed["amount"], "{last} {closed}");
    // The provider's audit records name each call's tool.
    let records = provider
        .get_json(&format!("/v1/executions?session={id}&limit=10"))
        .await;
    let mut tools: Vec<&str> = records["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tool"].as_str().unwrap())
        .collect();
    tools.sort_unstable();
    assert_eq!(tools, ["grep", "sha256", "wc"]);
    // Every container of the session went with it.
    let deadline = std::time::Instant::now() + LONG;
    while !containers_of(&id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            containers_of(&id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
