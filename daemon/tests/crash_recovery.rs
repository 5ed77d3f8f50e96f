//! `kill -9` of either side of a paid escrow session at a random point, and a restart on
//! the same data directory, as a new user would try it: `orien-node` processes with the
//! real Docker sandbox on a real anvil. After every crash a new session between the same
//! two nodes opens, runs and settles; nobody is banned; no container is left; no session
//! reads open that is not; both ledgers verify.
//!
//! `ORIEN_CRASH_TRIALS` (default 3) trials from `ORIEN_CRASH_SEED` (default: the clock,
//! printed).
#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail loudly on purpose.

#[path = "support/rows.rs"]
mod rows;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Devnet, NodeProcess, init_data_dir as init, wallet_of};

const LONG: Duration = Duration::from_secs(90);

fn as_str(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `orien_peers_banned_total` of a node.
async fn banned(node: &NodeProcess) -> u64 {
    let text = node.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("orien_peers_banned_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Sessions a node lists as open or suspended.
async fn not_closed(node: &NodeProcess) -> Vec<serde_json::Value> {
    node.get_json("/v1/sessions")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "active")
        .cloned()
        .collect()
}

/// Containers the engine still holds for the provider's sessions (not its warm
/// sandboxes, which no session has taken: their ids name no session of its ledger).
async fn session_containers(provider: &NodeProcess) -> Vec<String> {
    let sessions: std::collections::HashSet<String> = provider
        .get_json("/v1/sessions")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter"])
        .arg(format!("label=orien.node={}", provider.id))
        .args(["--format", "{{.Label \"orien.session\"}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|session| sessions.contains(*session))
        .map(str::to_owned)
        .collect()
}

/// Opens a session with the provider paid by `payment` (retrying while the restarted
/// side comes back, or the renter has yet to find the offer) and returns its id and how
/// long it took.
async fn open_until(renter: &NodeProcess, provider: &str, payment: &str) -> (String, Duration) {
    let started = Instant::now();
    let body = json!({"tool": "sha256", "provider": provider, "budget": "0.5",
                      "payment": payment, "max_duration_secs": 600});
    loop {
        let response = renter
            .send(
                reqwest::Method::POST,
                "/v1/sessions",
                Some(body.clone()),
                &[],
            )
            .await;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap();
        if status.is_success() {
            return (answer["id"].as_str().unwrap().to_owned(), started.elapsed());
        }
        assert!(
            started.elapsed() < LONG,
            "no new session within {LONG:?}: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_session_restarts_and_nothing_is_stuck() {
    let trials = env_u64("ORIEN_CRASH_TRIALS").unwrap_or(3);
    let seed = env_u64("ORIEN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    eprintln!("crash recovery: {trials} trials from seed {seed}");
    let (renter_dir, provider_dir) = (init(), init());
    let devnet = Devnet::start(&[
        format!("{}=20", wallet_of(renter_dir.path())),
        format!("{}=0", wallet_of(provider_dir.path())),
    ]);
    let chain = devnet.args();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/provider.example.toml")
        .display()
        .to_string();
    let mut provider_args: Vec<String> = [
        "--provider-config",
        &config,
        "--receipt-interval-ms",
        "500",
        "--settle-every-secs",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    provider_args.extend(chain.iter().cloned());
    let mut renter_args: Vec<String> = ["--auto-fund", "10", "--disconnect-grace-ms", "3000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    renter_args.extend(chain.iter().cloned());

    let bootstrap = NodeProcess::start(&[]);
    let mut provider = NodeProcess::start_in(provider_dir, &[&bootstrap], &as_str(&provider_args));
    let mut renter = NodeProcess::start_in(renter_dir, &[&bootstrap], &as_str(&renter_args));
    let provider_id = provider.id.clone();

    let mut rng = seed.max(1);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut reopen = Vec::new();
    for trial in 0..trials {
        let (session, _) = open_until(&renter, &provider_id, "escrow").await;
        renter
            .post_json(
                &format!("/v1/sessions/{session}/executions"),
                json!({"args": {"file": "nothing-here"}}),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(next() % 2_000)).await;
        let victim = if next() % 2 == 0 {
            "renter"
        } else {
            "provider"
        };
        eprintln!("trial {trial}: kill -9 of the {victim} in session {session}");
        if victim == "renter" {
            renter.restart(&[&bootstrap], &as_str(&renter_args));
        } else {
            provider.restart(&[&bootstrap], &as_str(&provider_args));
        }
        let (session, took) = open_until(&renter, &provider_id, "escrow").await;
        reopen.push(took);
        let exec = renter
            .run_to_end(&session, json!({"file": "nothing-here"}), LONG)
            .await;
        assert_ne!(exec["failure"], "lost", "{exec}");
        assert!(
            exec["state"] == "completed" || exec["state"] == "failed",
            "{exec}"
        );
        renter
            .post_json(&format!("/v1/sessions/{session}/close"), json!({}))
            .await;
    }
    eprintln!("reopen after restart: {reopen:?}");
    let bans = banned(&renter).await + banned(&provider).await;
    let slowest = reopen.iter().max().copied().unwrap_or_default();
    rows::report(json!([
        {
            "name": format!("honest peers banned over {trials} kill -9 trials"),
            "value": bans, "unit": "peers", "baseline": null, "ratio": null,
            "goal": "0",
        },
        {
            "name": format!("slowest restart to a new session with the same peer ({trials} trials)"),
            "value": slowest.as_secs_f64() * 1000.0, "unit": "ms",
            "baseline": 10_000.0,
            "ratio": slowest.as_secs_f64() / 10.0,
            "goal": "ratio <= 1 (baseline: the provider's ack timeout)",
        },
    ]));

    assert_eq!(banned(&renter).await, 0, "the renter banned nobody");
    assert_eq!(banned(&provider).await, 0, "the provider banned nobody");
    // Everything that ended reads closed, on both sides, once the provider noticed.
    for node in [&renter, &provider] {
        let deadline = Instant::now() + LONG;
        loop {
            let open = not_closed(node).await;
            if open.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sessions still read open: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let deadline = Instant::now() + LONG;
    while !session_containers(&provider).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "containers left: {:?}",
            session_containers(&provider).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for mut node in [renter, provider] {
        assert!(node.terminate(), "a clean exit");
        let out = Command::new(env!("CARGO_BIN_EXE_orien-node"))
            .arg("--data-dir")
            .arg(node.data_dir())
            .args(["ledger", "verify"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ledger verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The execution records of a session, as `GET /v1/executions?session=` lists them.
async fn records_of(node: &NodeProcess, session: &str) -> Vec<serde_json::Value> {
    node.get_json(&format!("/v1/executions?session={session}&limit=10"))
        .await["executions"]
        .as_array()
        .unwrap()
        .clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A renter killed with `kill -9` in the middle of its history serves every execution
/// record after the restart, from its ledger: a completed call with its output, cost and
/// hashes as they read before the kill, a refused one, and the one it was running when
/// it died ended (completed, or lost) instead of pending forever. The provider keeps an
/// audit record of each call it ran, with the same output hashes, and the command line
/// lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_records_outlive_a_kill_on_both_sides() {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/provider.example.toml")
        .display()
        .to_string();
    let bootstrap = NodeProcess::start(&[]);
    let provider = NodeProcess::start_with(&[&bootstrap], &["--provider-config", &config]);
    let mut renter = NodeProcess::start(&[&bootstrap]);
    let (session, _) = open_until(&renter, &provider.id, "ledger").await;
    let input = b"records outlive the process\n";
    let put = reqwest::Client::new()
        .put(format!(
            "{}/v1/sessions/{session}/files/data/in.txt",
            renter.api
        ))
        .bearer_auth(&renter.token)
        .body(input.to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());

    let done = renter
        .run_to_end(&session, json!({"file": "data/in.txt"}), LONG)
        .await;
    assert_eq!(done["state"], "completed", "{done}");
    let stdout = done["stdout"].as_str().unwrap().to_owned();
    assert!(stdout.starts_with(&sha256_hex(input)), "{done}");
    assert_eq!(
        done["stdout_sha256"],
        sha256_hex(stdout.as_bytes()),
        "{done}"
    );
    assert_eq!(done["stdout_bytes"], stdout.len());
    assert_eq!(done["tool"], "sha256");
    assert!(
        done["cost"].is_string() && done["ended_at"].is_u64(),
        "{done}"
    );
    let refused = renter
        .run_to_end(&session, json!({"file": "../etc/passwd"}), LONG)
        .await;
    assert_eq!(
        (&refused["state"], &refused["failure"], &refused["cost"]),
        (
            &json!("failed"),
            &json!("invalid_arguments"),
            &json!("0.000000")
        ),
        "{refused}"
    );
    // A call asked for at the moment of the kill.
    let last = renter
        .post_json(
            &format!("/v1/sessions/{session}/executions"),
            json!({"args": {"file": "data/in.txt"}}),
        )
        .await;
    assert!(
        last["state"] == "pending" || last["state"] == "running",
        "{last}"
    );
    renter.restart(&[&bootstrap], &[]);

    let after = records_of(&renter, &session).await;
    let ids: Vec<&str> = after.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [&last["id"], &refused["id"], &done["id"]].map(|id| id.as_str().unwrap()),
        "every call, newest first"
    );
    for (listed, before) in after[1..].iter().zip([&refused, &done]) {
        assert_eq!(listed, before, "the record reads as the live call did");
        let one = renter
            .get_json(&format!(
                "/v1/executions/{}",
                listed["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(&one, before);
    }
    let last = &after[0];
    assert!(
        last["state"] == "completed" || last["failure"] == "lost",
        "nothing stays pending or running after a restart: {last}"
    );
    // Its log, from the record: the output kept, then the exit.
    let log = renter
        .get(&format!(
            "/v1/executions/{}/logs",
            done["id"].as_str().unwrap()
        ))
        .await;
    let events = support::parse_sse(&log.text().await.unwrap());
    let kinds: Vec<&str> = events.iter().map(|(_, kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["stdout", "exit"], "{events:?}");

    // The provider's audit records: every call it ran, with the same output hashes.
    let audit = provider
        .wait_for(&format!("/v1/executions?session={session}"), LONG, |page| {
            page["executions"]
                .as_array()
                .is_some_and(|e| e.len() == 3 && e.iter().all(|r| r["state"] != "running"))
        })
        .await;
    let audit = audit["executions"].as_array().unwrap();
    let ran = |id: &serde_json::Value| {
        audit
            .iter()
            .find(|r| &r["id"] == id)
            .unwrap_or_else(|| panic!("the provider recorded {id}"))
    };
    for field in [
        "state",
        "stdout_sha256",
        "stdout_bytes",
        "stderr_sha256",
        "tool",
    ] {
        assert_eq!(ran(&done["id"])[field], done[field], "{field}");
    }
    assert_eq!(ran(&refused["id"])["failure"], "invalid_arguments");

    // The command line lists them.
    let cli = |args: &[&str]| support::run_ok(renter.data_dir(), args);
    let listed = cli(&[
        "--json",
        "executions",
        "--session",
        &session,
        "--limit",
        "2",
    ]);
    let page: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(page["executions"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], refused["id"], "a second page follows");
    let text = cli(&["executions", "--state", "failed", "--session", &session]);
    assert!(
        text.contains(refused["id"].as_str().unwrap()) && text.contains("invalid_arguments"),
        "{text}"
    );
    assert!(!text.contains(done["id"].as_str().unwrap()), "{text}");

    // Anyone can check what the provider said the call computed: its signed result
    // verifies as the provider's and names the SHA-256 of the output received; other
    // bytes do not match it.
    let signed = done["signed_result"].as_str().expect("a signed result");
    let dir = tempfile::tempdir().unwrap();
    let (held, forged) = (dir.path().join("stdout"), dir.path().join("forged"));
    std::fs::write(&held, stdout.as_bytes()).unwrap();
    std::fs::write(&forged, b"something else").unwrap();
    let held_path = held.to_str().unwrap();
    let verified = cli(&[
        "result",
        "verify",
        signed,
        "--provider",
        &provider.id,
        "--stdout",
        held_path,
    ]);
    assert!(
        verified.contains(&format!("signed by   {}", provider.id))
            && !verified.contains("MISMATCH"),
        "{verified}"
    );
    let mismatch = std::process::Command::new(support::binary())
        .args([
            "result",
            "verify",
            signed,
            "--stdout",
            forged.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(mismatch.status.code(), Some(1), "a mismatch exits 1");
    assert!(String::from_utf8_lossy(&mismatch.stdout).contains("MISMATCH"));
    let someone_else = orien_protocol::NodeKey::generate().node_id().to_string();
    let wrong_signer = std::process::Command::new(support::binary())
        .args(["result", "verify", signed, "--provider", &someone_else])
        .output()
        .unwrap();
    assert!(!wrong_signer.status.success(), "another signer is refused");
}
