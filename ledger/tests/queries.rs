//! Queries and exports over a real store.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use orien_protocol::{PaymentLane, SessionId, Split, Usdc};
use support::chain::{ChainBuilder, parties, session_record};
use support::temp_store;

#[test]
fn earnings_by_day_spend_and_exports_agree_with_the_postings() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            Usdc::from_micros(10_000_000),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(session, None);
    t.store.ingest(chain.next(&p, 1_000)).unwrap();
    t.clock.advance(Duration::from_secs(86_400));
    t.store.ingest(chain.next(&p, 2_000)).unwrap();

    let days = t
        .store
        .provider_earnings_by_day(&p.provider.node_id())
        .unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(
        (days[0].day.as_str(), days[1].day.as_str()),
        ("2025-11-23", "2025-11-24")
    );
    assert_eq!(
        days[0].earned_micros + days[1].earned_micros,
        i128::from(Split::of(Usdc::from_micros(3_000)).provider().micros())
    );
    assert_eq!(
        t.store.renter_spend(&p.renter.node_id()).unwrap(),
        Usdc::from_micros(3_000)
    );
    assert_eq!(
        t.store.renter_spend(&p.provider.node_id()).unwrap(),
        Usdc::ZERO
    );

    let mut csv = Vec::new();
    t.store.export_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "at_unix_ms,cause,account,side,amount_usdc");
    assert_eq!(lines.len(), 1 + 8, "two postings of four legs:\n{csv}");
    assert!(lines[1].contains(",debit,0.001000"), "{}", lines[1]);

    let mut json = Vec::new();
    t.store.export_json(&mut json).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.len(), 8);
    let debits: u64 = rows
        .iter()
        .filter(|r| r["side"] == "debit")
        .map(|r| {
            r["amount"]
                .as_str()
                .unwrap()
                .parse::<Usdc>()
                .unwrap()
                .micros()
        })
        .sum();
    assert_eq!(debits, 3_000);
}
