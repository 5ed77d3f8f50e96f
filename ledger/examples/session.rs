//! One metered session between a provider and a renter, each with its own ledger.
//!
//! `cargo run -p orien-ledger --example session`
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::meter::{Meter, MeterConfig};
use orien_ledger::receipts::{Checked, Countersigner, Issuer, Tolerance};
use orien_ledger::{SessionRecord, Store, StoreOptions};
use orien_protocol::{
    Clock, ManualClock, Millis, NodeKey, PaymentLane, Pricing, SessionId, Timestamp, Usdc,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(Timestamp(1_763_856_000_000));
    let options = StoreOptions {
        clock: Arc::new(clock.clone()),
        ..StoreOptions::default()
    };
    let provider_ledger = Store::open_with(dir.path().join("provider"), options.clone())?;
    let renter_ledger = Store::open_with(dir.path().join("renter"), options)?;

    let (provider, renter) = (NodeKey::generate(), NodeKey::generate());
    let pricing = Pricing {
        session_per_minute: Usdc::from_micros(10_000),
        exec_per_minute: Usdc::from_micros(50_000),
        artefact_per_gib: Usdc::ZERO,
    };
    let budget: Usdc = "1.5".parse()?;
    let session = SessionId::random();
    let record = SessionRecord {
        session,
        provider: provider.node_id(),
        renter: renter.node_id(),
        payment: PaymentLane::Ledger,
        pricing,
        budget,
        opened_at: clock.wall(),
    };
    provider_ledger.open_session(record.clone())?;
    renter_ledger.open_session(record)?;

    // Each side meters on its own; here both read the same manual clock.
    let config = MeterConfig::new(pricing, budget);
    let mut provider_meter = Meter::start(config, Arc::new(clock.clone()));
    let mut renter_meter = Meter::start(config, Arc::new(clock.clone()));
    let mut issuer = Issuer::new(
        provider.clone(),
        session,
        renter.node_id(),
        Millis(10_000),
        Arc::new(clock.clone()),
    );
    let mut countersigner = Countersigner::new(
        renter,
        session,
        provider.node_id(),
        pricing,
        budget,
        Tolerance::default(),
    );

    for _ in 0..3 {
        // A 2-second call, then the receipt that follows it.
        let (timer, renter_timer) = (provider_meter.start_exec(), renter_meter.start_exec());
        clock.advance(Duration::from_secs(2));
        let reading = provider_meter.finish_exec(timer, Millis(1_500));
        renter_meter.finish_exec(renter_timer, Millis::ZERO);

        let receipt = issuer.issue(&reading)?; // provider → renter
        let Checked::New(pending) =
            countersigner.check(&receipt, &renter_meter.current(), clock.wall(), Usdc::ZERO)?
        else {
            unreachable!("every receipt here is new");
        };
        let durable = renter_ledger.ingest(pending.acked().clone())?; // durable before the ack leaves
        let ack = countersigner.release(pending, &durable); // renter → provider
        let acked = issuer.on_ack(&ack)?;
        let durable = provider_ledger.ingest(acked.clone())?; // durable before the ack is accepted
        issuer.committed(acked, &durable);
        clock.advance(Duration::from_secs(3));
    }

    let totals = provider_ledger.session_totals(&session)?;
    println!("{} receipts, {} charged", totals.receipts, totals.amount);
    println!(
        "provider {} · fee {} · reserve {}",
        totals.split.provider(),
        totals.split.fee(),
        totals.split.reserve()
    );
    assert_eq!(issuer.chain(), countersigner.chain());
    provider_ledger.verify()?;
    renter_ledger.verify()?;
    Ok(())
}
