//! `scripts/bench network` (second part): a session opened and a trivial call made from
//! a renter's node across loopback TCP, beside the same operations run locally on the
//! provider's sandbox, in the same run. The difference is what the network, the session
//! protocol, metering and the two ledgers cost per call.
//!
//! Usage: `cargo bench -p orien-daemon --bench remote_call -- [--calls N] [--opens N] [--out FILE]`
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A benchmark reports loudly.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orien_protocol::*;
use support::{flag, market, ms, percentile};

fn stats(mut samples: Vec<f64>) -> (f64, f64) {
    (
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 95.0),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (calls, opens) = (flag("--calls", 40usize), flag("--opens", 10usize));
    let out: Option<String> = flag("--out", String::new()).into();
    let m = market("sha256").await;
    let (sandbox, renter, tool, offer_id) = (&m.sandbox, &m.renter, &m.tool, m.offer);
    let sessions = renter.sessions().unwrap();
    let input = b"hello orien\n".to_vec();
    let call_args = serde_json::json!({"file": "data/in.txt"});
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    println!(
        "remote call: {} opens, {} calls (sha256 of 12 bytes)",
        opens, calls
    );

    // Session open: from the renter's node vs creating the sandbox directly.
    let (mut remote_open, mut local_open) = (Vec::new(), Vec::new());
    for _ in 0..opens {
        let t = Instant::now();
        let rented = sessions
            .open(offer_id, Usdc::from_micros(500_000), Millis(600_000))
            .await
            .unwrap();
        remote_open.push(ms(t.elapsed()));
        sessions.close(rented.session).await.unwrap();
        let t = Instant::now();
        let local = sandbox
            .open_session(SessionId::random(), tool)
            .await
            .unwrap();
        local_open.push(ms(t.elapsed()));
        local.close().await.unwrap();
    }

    // A trivial call: exec and wait for its exit, remote vs in the local sandbox.
    let rented = sessions
        .open(offer_id, Usdc::from_micros(500_000), Millis(600_000))
        .await
        .unwrap();
    sessions
        .put_file(rented.session, "data/in.txt", input.clone())
        .await
        .unwrap();
    let local = sandbox
        .open_session(SessionId::random(), tool)
        .await
        .unwrap();
    local
        .upload(
            &orien_provider::WorkspacePath::new("data/in.txt").unwrap(),
            &input,
        )
        .await
        .unwrap();
    let (mut remote_call, mut local_call) = (Vec::new(), Vec::new());
    for i in 0..calls + 3 {
        let t = Instant::now();
        let exec = sessions
            .exec(rented.session, None, call_args.to_string())
            .await
            .unwrap();
        let view = sessions
            .wait_exec(rented.session, exec, Duration::from_secs(60))
            .await
            .unwrap();
        let remote = ms(t.elapsed());
        assert_eq!(view.exit.unwrap().exit_code, Some(0));
        let t = Instant::now();
        let result = local
            .exec(ExecId::random(), call_args.clone(), clock.clone())
            .collect_output()
            .await;
        let local_ms = ms(t.elapsed());
        assert_eq!(result.exit.exit_code, Some(0));
        if i >= 3 {
            // The first calls warm caches on both paths.
            remote_call.push(remote);
            local_call.push(local_ms);
        }
    }
    sessions.close(rented.session).await.unwrap();
    local.close().await.unwrap();
    m.shutdown().await;

    let (ro50, ro95) = stats(remote_open);
    let (lo50, lo95) = stats(local_open);
    let (rc50, rc95) = stats(remote_call);
    let (lc50, lc95) = stats(local_call);
    println!(
        "session open: remote p50 {ro50:.1} ms, p95 {ro95:.1} ms; local p50 {lo50:.1} ms, p95 {lo95:.1} ms"
    );
    println!(
        "trivial call: remote p50 {rc50:.1} ms, p95 {rc95:.1} ms; local p50 {lc50:.1} ms, p95 {lc95:.1} ms"
    );
    let results = serde_json::json!([
        { "name": "session open p50 (renter node → provider, loopback)", "value": ro50, "unit": "ms",
          "baseline": lo50, "ratio": ro50 / lo50, "goal": "informational (baseline: sandbox opened locally)" },
        { "name": "session open p95", "value": ro95, "unit": "ms",
          "baseline": lo95, "ratio": ro95 / lo95, "goal": "informational" },
        { "name": "trivial remote call p50", "value": rc50, "unit": "ms",
          "baseline": lc50, "ratio": rc50 / lc50, "goal": "ratio <= 1.2 (baseline: same call in the local sandbox)" },
        { "name": "trivial remote call p95", "value": rc95, "unit": "ms",
          "baseline": lc95, "ratio": rc95 / lc95, "goal": "ratio <= 1.2" },
    ]);
    if let Some(out) = out.filter(|o| !o.is_empty()) {
        std::fs::write(&out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
        println!("wrote {out}");
    }
}
