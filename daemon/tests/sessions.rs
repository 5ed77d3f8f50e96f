//! A paid session across the network: a provider node with the real Docker sandbox and
//! a renter node, each with its own RocksDB ledger, over loopback TCP.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/loopback.rs"]
mod loopback;

use std::time::Duration;

use orien_daemon::{OfferQuery, SessionConfig};
use orien_protocol::*;

use loopback::Market;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_runs_a_tool_and_both_ledgers_hold_the_same_receipts() {
    let session_config = SessionConfig {
        receipt_interval: Millis(1_000),
        ..SessionConfig::default()
    };
    let market = Market::start("sha256", session_config).await;
    let Market {
        sandbox,
        renter,
        provider_store,
        renter_store,
        tool,
        ..
    } = &market;
    let found = renter.find_tool(tool.clone()).await.unwrap();
    assert_eq!(found.len(), 1, "the renter finds the provider's offer");
    let sessions = renter.sessions().unwrap();

    let rented = sessions
        .open(found[0].id, Usdc::from_micros(500_000), Millis(600_000))
        .await
        .unwrap();
    let session = rented.session;
    sessions
        .put_file(session, "data/hello.txt", b"hello orien\n".to_vec())
        .await
        .unwrap();
    let listed = sessions.list_files(session).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|f| f.path == "data/hello.txt" && f.size == 12),
        "{listed:?}"
    );

    let exec = sessions
        .exec(session, None, r#"{"file":"data/hello.txt"}"#.into())
        .await
        .unwrap();
    let view = sessions
        .wait_exec(session, exec, Duration::from_secs(120))
        .await
        .unwrap();
    let exit = view.exit.clone().expect("the execution exits");
    assert_eq!(exit.outcome, ExecOutcome::Exited);
    assert_eq!(exit.exit_code, Some(0));
    let stdout = String::from_utf8(view.output(OutputStream::Stdout)).unwrap();
    // sha256("hello orien\n")
    let expected = {
        use std::fmt::Write;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"hello orien\n");
        digest.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    assert!(stdout.starts_with(&expected), "{stdout}");

    // A refused argument is reported, not run, and costs nothing.
    let refused = sessions
        .exec(session, None, r#"{"file":"../etc/passwd"}"#.into())
        .await
        .unwrap();
    let refused = sessions
        .wait_exec(session, refused, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(
        refused.exit.unwrap().outcome,
        ExecOutcome::InvalidArguments { .. }
    ));

    sessions.close(session).await.unwrap();

    // Both ledgers hold the same dual-signed chain, ending with the closing receipt.
    let provider_chain = provider_store.receipts(&session).unwrap();
    let renter_chain = renter_store.receipts(&session).unwrap();
    assert!(!renter_chain.is_empty());
    assert_eq!(
        provider_chain.iter().map(|r| &r.acked).collect::<Vec<_>>(),
        renter_chain.iter().map(|r| &r.acked).collect::<Vec<_>>()
    );
    let last = renter_chain.last().unwrap().acked.receipt.verify().unwrap();
    assert!(last.exec_time > Millis::ZERO);
    assert!(last.amount > Usdc::ZERO && last.amount <= Usdc::from_micros(500_000));
    let provider_totals = provider_store.session_totals(&session).unwrap();
    let renter_totals = renter_store.session_totals(&session).unwrap();
    assert_eq!(provider_totals, renter_totals);
    assert_eq!(provider_totals.amount, last.amount);
    assert_eq!(
        provider_totals.split,
        Split::of(last.amount),
        "90/7/3 of what was charged"
    );
    provider_store.verify().unwrap();
    renter_store.verify().unwrap();

    // The provider removed the session's sandbox.
    assert!(sandbox.live_sessions().is_empty());
    assert!(renter.offers(OfferQuery::default()).await.unwrap().len() == 1);
    market.shutdown().await;
}
