//! `scripts/bench api`: a trivial call through the renter's HTTP API end to end (start
//! the execution, follow its server-sent log to the exit) beside the same call through
//! the `Node` library, in the same run; and an idle `orien-node run` process's resident
//! memory and CPU beside an idle `sleep` process measured alongside.
//!
//! Usage: `cargo bench -p orien-daemon --bench api -- [--calls N] [--idle-secs S]
//! [--shipped-bin PATH] [--out FILE]`; `--shipped-bin` names the build users install
//! (`--profile release-lto`), whose idle memory the goal applies to.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A benchmark reports loudly.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orien_daemon::api::NodeService;
use orien_protocol::*;
use orien_web_api::{ApiConfig, BearerToken};
use support::{call_over_api, flag, market, ms, percentile as p};

/// Resident memory (kB) and CPU ticks (user + system) of a process.
fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = &stat[stat.rfind(") ").unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rss, ticks)
}

/// Idle RSS (MB) and CPU (% of one core) of `pid` over `secs`, after a settling pause.
fn idle(pid: u32, secs: u64) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(5));
    let (_, t0) = sample(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (rss, t1) = sample(pid);
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (t1 - t0) as f64 / hz / start.elapsed().as_secs_f64() * 100.0;
    (rss as f64 / 1024.0, cpu)
}

/// Starts `bin` as an idle node in a fresh data directory and measures it beside an idle
/// `sleep`: ((node MB, node % CPU), (sleep MB, sleep % CPU)).
async fn idle_process(bin: &str, secs: u64) -> ((f64, f64), (f64, f64)) {
    let data = tempfile::tempdir().unwrap();
    assert!(
        Command::new(bin)
            .arg("--data-dir")
            .arg(data.path())
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let mut node = Command::new(bin)
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ])
        .env("ORIEN_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sleeper = Command::new("sleep").arg("3600").spawn().unwrap();
    let (node_id, sleep_id) = (node.id(), sleeper.id());
    let measured = tokio::task::spawn_blocking(move || {
        let sleeper = std::thread::spawn(move || idle(sleep_id, secs));
        let node = idle(node_id, secs);
        (node, sleeper.join().unwrap())
    })
    .await
    .unwrap();
    for child in [&mut node, &mut sleeper] {
        let _ = child.kill();
        let _ = child.wait();
    }
    measured
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (calls, idle_secs) = (flag("--calls", 40usize), flag("--idle-secs", 20u64));
    let out: Option<String> = flag("--out", String::new()).into();
    let m = market("sha256").await;
    let (renter, offer_id) = (m.renter.clone(), m.offer);

    // The renter's API, served in-process as `orien-node run` serves it.
    let token = BearerToken::generate();
    let app = orien_web_api::router(
        Arc::new(NodeService::new(renter.clone())),
        ApiConfig::new(token.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let sessions = renter.sessions().unwrap();
    let session = sessions
        .open(offer_id, Usdc::from_micros(500_000), Millis(600_000))
        .await
        .unwrap()
        .session;
    sessions
        .put_file(session, "data/in.txt", b"hello orien\n".to_vec())
        .await
        .unwrap();
    let call = r#"{"file":"data/in.txt"}"#;
    println!("api: {} calls each way (sha256 of 12 bytes)", calls);
    let (mut through_api, mut through_library) = (Vec::new(), Vec::new());
    for i in 0..calls + 3 {
        let t = Instant::now();
        let args = serde_json::from_str(call).unwrap();
        call_over_api(&http, &base, token.expose(), session, &args).await;
        let api_ms = ms(t.elapsed());
        let t = Instant::now();
        let exec = sessions.exec(session, None, call.into()).await.unwrap();
        let view = sessions
            .wait_exec(session, exec, Duration::from_secs(60))
            .await
            .unwrap();
        let lib_ms = ms(t.elapsed());
        assert_eq!(view.exit.unwrap().exit_code, Some(0));
        if i >= 3 {
            through_api.push(api_ms);
            through_library.push(lib_ms);
        }
    }
    sessions.close(session).await.unwrap();
    let (a50, a95, l50, l95) = (
        p(&mut through_api, 50.0),
        p(&mut through_api, 95.0),
        p(&mut through_library, 50.0),
        p(&mut through_library, 95.0),
    );
    println!(
        "trivial call: HTTP API p50 {a50:.1} ms, p95 {a95:.1} ms; Node library p50 {l50:.1} ms, p95 {l95:.1} ms"
    );
    drop(renter);
    m.shutdown().await;

    // Idle node processes (no peers, no sessions) beside an idle `sleep`: the shipped
    // build (`--profile release-lto`, when given) and this benchmark's own build.
    let own = env!("CARGO_BIN_EXE_orien-node").to_owned();
    let shipped: Option<String> =
        Some(flag("--shipped-bin", String::new())).filter(|b| !b.is_empty());
    let own_idle = idle_process(&own, idle_secs).await;
    println!(
        "idle orien-node ({own}): {:.1} MB RSS, {:.2} % CPU (sleep: {:.1} MB, {:.2} %)",
        own_idle.0.0, own_idle.0.1, own_idle.1.0, own_idle.1.1
    );
    let shipped_idle = match &shipped {
        Some(bin) => {
            let measured = idle_process(bin, idle_secs).await;
            println!(
                "idle orien-node ({bin}): {:.1} MB RSS, {:.2} % CPU (sleep: {:.1} MB, {:.2} %)",
                measured.0.0, measured.0.1, measured.1.0, measured.1.1
            );
            Some(measured)
        }
        None => None,
    };
    // The goal applies to the build users install.
    let ((node_rss, node_cpu), (sleep_rss, sleep_cpu)) = shipped_idle.unwrap_or(own_idle);
    let which = if shipped.is_some() {
        "shipped build: --profile release-lto"
    } else {
        "release profile"
    };

    let mut results = serde_json::json!([
        { "name": "trivial call through the HTTP API p50 (POST + SSE log to exit)", "value": a50, "unit": "ms",
          "baseline": l50, "ratio": a50 / l50, "goal": "ratio <= 1.1 (baseline: the same call through the Node library)" },
        { "name": "trivial call through the HTTP API p95", "value": a95, "unit": "ms",
          "baseline": l95, "ratio": a95 / l95, "goal": "ratio <= 1.1" },
        { "name": format!("idle orien-node RSS ({which})"), "value": node_rss, "unit": "MB",
          "baseline": sleep_rss, "ratio": node_rss / sleep_rss, "goal": "<= 30 MB (baseline: an idle sleep process)" },
        { "name": format!("idle orien-node CPU ({which})"), "value": node_cpu, "unit": "% of a core",
          "baseline": sleep_cpu, "ratio": serde_json::Value::Null, "goal": "< 1 % (baseline: an idle sleep process)" },
    ]);
    if shipped.is_some()
        && let Some(rows) = results.as_array_mut()
    {
        rows.push(serde_json::json!({
            "name": "idle orien-node RSS (release profile, no cross-crate LTO: what the other benchmarks run)",
            "value": own_idle.0 .0, "unit": "MB", "baseline": own_idle.1 .0,
            "ratio": own_idle.0 .0 / own_idle.1 .0, "goal": serde_json::Value::Null,
        }));
    }
    if let Some(out) = out.filter(|o| !o.is_empty()) {
        std::fs::write(&out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
        println!("wrote {out}");
    }
}
