//! The receipt protocol end to end: provider and renter, each with its own meter,
//! receipt logic and on-disk ledger, exchange receipts and acks.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use orien_ledger::dispute::{DisputeReason, Quantity};
use orien_ledger::receipts::Tolerance;
use orien_ledger::{Account, SuspendReason};
use orien_protocol::{Clock as _, Millis, Pricing, Split, Usdc};
use support::sim::Sim;

fn pricing() -> Pricing {
    Pricing {
        session_per_minute: Usdc::from_micros(6_000),
        exec_per_minute: Usdc::from_micros(60_000),
        artefact_per_gib: Usdc::ZERO,
    }
}

#[test]
fn both_sides_end_with_the_same_dual_signed_chain_and_the_same_ledger() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    for i in 0..20 {
        sim.advance(1_700);
        assert!(sim.poll());
        assert!(sim.exec(300 + i * 10, 100));
    }
    assert!(sim.close());
    assert_eq!(sim.issuer.chain(), sim.countersigner.chain());
    let provider = sim.provider.store.receipts(&sim.session).unwrap();
    let renter = sim.renter.store.receipts(&sim.session).unwrap();
    assert_eq!(provider.len(), sim.issuer.chain().len());
    assert!(
        provider
            .iter()
            .zip(&renter)
            .all(|(a, b)| a.acked == b.acked)
    );
    assert_eq!(
        sim.provider.store.balances().unwrap(),
        sim.renter.store.balances().unwrap()
    );
    let totals = sim.provider.store.session_totals(&sim.session).unwrap();
    assert_eq!(totals.split, Split::of(totals.amount));
    assert!(totals.amount > Usdc::ZERO);
    sim.provider.store.verify().unwrap();
    sim.renter.store.verify().unwrap();
}

#[test]
fn a_receipt_claiming_more_time_than_the_renter_measured_is_refused_and_kept() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance {
            slack: Millis(500),
            percent: 0,
        },
    );
    sim.advance(5_000);
    assert!(sim.poll());
    // The renter's meter was suspended for 3 s the provider billed.
    sim.renter_meter.suspend();
    sim.advance(3_000);
    sim.renter_meter.resume();
    sim.advance(2_000);
    assert!(!sim.poll(), "an overcharging receipt must be refused");
    let refusal = &sim.refusals[0];
    assert!(
        matches!(
            refusal.reason,
            DisputeReason::AboveOwnMeter {
                quantity: Quantity::SessionTime,
                claimed: Millis(10_000),
                measured: Millis(7_000),
                ..
            }
        ),
        "{:?}",
        refusal.reason
    );
    assert!(matches!(
        sim.countersigner.suspension(),
        Some(SuspendReason::Dispute { seq: 2, .. })
    ));
    let evidence = sim.renter.store.evidence(&sim.session).unwrap();
    assert_eq!(evidence.len(), 1);
    // Nothing of the refused receipt was posted on either side.
    assert_eq!(
        sim.renter
            .store
            .session_totals(&sim.session)
            .unwrap()
            .receipts,
        1
    );
    assert_eq!(
        sim.provider
            .store
            .session_totals(&sim.session)
            .unwrap()
            .receipts,
        1
    );
    sim.renter.store.verify().unwrap();
}

#[test]
fn a_receipt_with_a_changed_amount_is_refused() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    sim.advance(10_000);
    let mut reading = sim.provider_meter.poll().unwrap();
    reading.amount = reading.amount.checked_add(Usdc::from_micros(1)).unwrap();
    assert!(!sim.exchange(reading, false));
    assert!(matches!(
        sim.refusals[0].reason,
        DisputeReason::WrongAmount { .. }
    ));
}

#[test]
fn the_provider_suspends_when_no_ack_comes_in_time() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    sim.advance(5_000);
    let reading = sim.provider_meter.poll().unwrap();
    let _unacked = sim.issuer.issue(&reading).unwrap();
    // The timeout counts from the last ack, here the start of the session.
    sim.advance(4_999);
    assert!(!sim.issuer.ack_timed_out());
    assert_eq!(sim.issuer.suspension(), None);
    sim.advance(1);
    assert!(sim.issuer.ack_timed_out());
    assert_eq!(
        sim.issuer.suspension(),
        Some(&SuspendReason::AckTimeout { seq: 1 })
    );
    assert!(!sim.issuer.resume(), "still unacked");
}

#[test]
fn reaching_the_budget_suspends_and_caps_the_amount() {
    let budget = Usdc::from_micros(5_000);
    let mut sim = Sim::new(pricing(), budget, Tolerance::default());
    for _ in 0..20 {
        sim.advance(5_000);
        assert!(sim.exec(1_000, 10));
    }
    assert_eq!(sim.issuer.suspension(), Some(&SuspendReason::BudgetReached));
    let totals = sim.provider.store.session_totals(&sim.session).unwrap();
    assert_eq!(totals.amount, budget);
    let lane = sim
        .provider
        .store
        .session(&sim.session)
        .unwrap()
        .unwrap()
        .lane();
    let spent = sim.renter.store.balance(&Account::Lane(lane)).unwrap();
    assert_eq!(spent.amount(&Account::Lane(lane)), Some(budget));
}

#[test]
fn a_renter_crash_between_commit_and_ack_is_harmless() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    sim.advance(5_000);
    let reading = sim.provider_meter.poll().unwrap();
    assert!(sim.exchange(reading, true));
    sim.advance(5_000);
    assert!(sim.poll());
    assert_eq!(sim.issuer.chain(), sim.countersigner.chain());
    sim.renter.store.verify().unwrap();
}

#[test]
fn the_ack_timeout_counts_from_the_last_ack_not_from_the_receipt_waiting() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    sim.advance(5_000);
    assert!(sim.poll(), "the first receipt is acknowledged at 5 s");
    sim.advance(5_000);
    let reading = sim.provider_meter.poll().unwrap();
    let _unacked = sim.issuer.issue(&reading).unwrap();
    assert_eq!(
        sim.issuer.ack_deadline(),
        Some(std::time::Duration::from_millis(15_000)),
        "one ack timeout after the last ack"
    );
    sim.advance(4_999);
    assert!(!sim.issuer.ack_timed_out());
    sim.advance(1);
    assert!(sim.issuer.ack_timed_out());
}

#[test]
fn spending_the_budget_is_not_an_ack_timeout() {
    let budget = Usdc::from_micros(5_000);
    let mut sim = Sim::new(pricing(), budget, Tolerance::default());
    let reading = loop {
        sim.advance(5_000);
        let reading = sim.provider_meter.poll().unwrap();
        if reading.budget_reached {
            break reading;
        }
        assert!(sim.exchange(reading, false));
    };
    let _last = sim.issuer.issue(&reading).unwrap();
    assert_eq!(sim.issuer.suspension(), Some(&SuspendReason::BudgetReached));
    assert!(
        !sim.issuer.ack_timed_out(),
        "the receipt that spends the budget still waits for its ack"
    );
}

#[test]
fn a_receipt_sent_again_gets_the_same_ack_again() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    sim.advance(5_000);
    let reading = sim.provider_meter.poll().unwrap();
    let _ = sim.renter_meter.poll();
    let receipt = sim.issuer.issue(&reading).unwrap();
    let own = sim.renter_meter.current();
    let Ok(orien_ledger::receipts::Checked::New(pending)) =
        sim.countersigner
            .check(&receipt, &own, sim.clock.wall(), Usdc::ZERO)
    else {
        panic!("a new receipt");
    };
    let durable = sim.renter.store.ingest(pending.acked().clone()).unwrap();
    let ack = sim.countersigner.release(pending, &durable);
    // The ack is lost; the provider sends the same receipt again.
    match sim
        .countersigner
        .check(&receipt, &own, sim.clock.wall(), Usdc::ZERO)
    {
        Ok(orien_ledger::receipts::Checked::Again(again)) => assert_eq!(again, ack),
        other => panic!("expected the same ack again, got {other:?}"),
    }
    // A different receipt with the same number is not a resend: refused.
    let mut forged = reading;
    forged.amount = forged.amount.checked_add(Usdc::from_micros(1)).unwrap();
    let mut other_issuer = orien_ledger::Issuer::new(
        orien_protocol::NodeKey::generate(),
        sim.session,
        orien_protocol::NodeKey::generate().node_id(),
        Millis(10_000),
        std::sync::Arc::new(sim.clock.clone()),
    );
    let stranger = other_issuer.issue(&forged).unwrap();
    assert!(
        sim.countersigner
            .check(&stranger, &own, sim.clock.wall(), Usdc::ZERO)
            .is_err()
    );
}

#[test]
fn receipts_checked_on_their_way_in_commit_on_both_sides_without_a_second_check() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    sim.advance(5_000);
    let reading = sim.provider_meter.close();
    let _ = sim.renter_meter.close();
    let receipt = sim.issuer.issue(&reading).unwrap();
    let own = sim.renter_meter.current();
    let Ok(orien_ledger::receipts::Checked::New(pending)) =
        sim.countersigner
            .check(&receipt, &own, sim.clock.wall(), Usdc::ZERO)
    else {
        panic!("an honest receipt is countersigned");
    };
    let renter_durable = sim
        .renter
        .store
        .ingest_checked(pending.checked().clone())
        .unwrap();
    let ack = sim.countersigner.release(pending, &renter_durable);
    let checked = sim.issuer.on_ack_checked(&ack).unwrap();
    assert_eq!(checked.ack().seq, checked.receipt().seq);
    let provider_durable = sim.provider.store.ingest_checked(checked.clone()).unwrap();
    assert!(provider_durable.newly_applied());
    assert_eq!(provider_durable.receipt(), renter_durable.receipt());
    // The same again is idempotent, and the stored chain is what both signed.
    assert!(
        !sim.provider
            .store
            .ingest_checked(checked.clone())
            .unwrap()
            .newly_applied()
    );
    sim.issuer.committed(checked.into(), &provider_durable);
    assert_eq!(sim.issuer.chain(), sim.countersigner.chain());
    sim.provider.store.verify().unwrap();
    sim.renter.store.verify().unwrap();
}

#[test]
fn a_checked_receipt_is_refused_by_a_session_whose_parties_did_not_sign_it() {
    let mut sim = Sim::new(
        pricing(),
        Usdc::from_micros(1_000_000),
        Tolerance::default(),
    );
    sim.advance(5_000);
    let reading = sim.provider_meter.close();
    let receipt = sim.issuer.issue(&reading).unwrap();
    let own = sim.renter_meter.close();
    let Ok(orien_ledger::receipts::Checked::New(pending)) =
        sim.countersigner
            .check(&receipt, &own, sim.clock.wall(), Usdc::ZERO)
    else {
        panic!("an honest receipt is countersigned");
    };
    // A ledger that holds the same session with the roles the other way round: both
    // signatures are good, but not by this session's provider and renter.
    let other = support::temp_store();
    let parties = support::chain::parties();
    let mut record = support::chain::session_record(
        sim.session,
        &parties,
        orien_protocol::PaymentLane::Ledger,
        Usdc::from_micros(1_000_000),
    );
    std::mem::swap(&mut record.provider, &mut record.renter);
    other.store.open_session(record).unwrap();
    let refused = other.store.ingest_checked(pending.checked().clone());
    assert!(
        matches!(refused, Err(orien_ledger::StoreError::Refused { .. })),
        "{refused:?}"
    );
    assert!(other.store.receipts(&sim.session).unwrap().is_empty());
}

fn with_artefacts(per_gib: u64) -> Pricing {
    Pricing {
        artefact_per_gib: Usdc::from_micros(per_gib),
        ..pricing()
    }
}

#[test]
fn a_results_artefacts_are_charged_once_by_the_receipts_that_commit_to_it() {
    // 0.4 USDC per GiB kept; a result that kept 1.5 GiB costs 0.6 USDC.
    let mut sim = Sim::new(
        with_artefacts(400_000),
        Usdc::from_micros(5_000_000),
        Tolerance::default(),
    );
    sim.advance(5_000);
    assert!(sim.poll());
    let before = sim.countersigner.last().unwrap().clone();
    assert_eq!(before.artefact_amount, Usdc::ZERO);

    sim.deliver_result(3 << 29, Usdc::from_micros(400_000));
    sim.advance(5_000);
    assert!(sim.poll(), "{:?}", sim.refusals);
    let charged = sim.countersigner.last().unwrap().clone();
    assert_eq!(charged.results.count, 1);
    assert_eq!(charged.artefact_amount, Usdc::from_micros(600_000));
    let session = with_artefacts(0).session_amount(charged.session_time);
    assert_eq!(
        charged.amount,
        session.checked_add(Usdc::from_micros(600_000)).unwrap(),
        "the session time plus the artefacts"
    );

    // Cumulative: later receipts carry the same artefact amount, not a second charge.
    sim.advance(5_000);
    assert!(sim.poll());
    assert!(sim.close());
    let last = sim.countersigner.last().unwrap();
    assert_eq!(last.artefact_amount, Usdc::from_micros(600_000));
    assert_eq!(
        last.amount,
        with_artefacts(0)
            .session_amount(last.session_time)
            .checked_add(Usdc::from_micros(600_000))
            .unwrap()
    );
    let totals = sim.provider.store.session_totals(&sim.session).unwrap();
    assert_eq!(totals.amount, last.amount);
    assert_eq!(
        sim.provider.store.balances().unwrap(),
        sim.renter.store.balances().unwrap()
    );
    sim.provider.store.verify().unwrap();
    sim.renter.store.verify().unwrap();
}

#[test]
fn a_receipt_charging_other_artefacts_than_its_results_kept_is_refused() {
    // The provider prices the artefacts at double the offer's price.
    let mut sim = Sim::new(
        with_artefacts(400_000),
        Usdc::from_micros(5_000_000),
        Tolerance::default(),
    );
    sim.deliver_result(1 << 30, Usdc::from_micros(800_000));
    sim.advance(5_000);
    assert!(!sim.poll(), "an overcharge for artefacts must be refused");
    assert_eq!(
        sim.refusals[0].reason,
        DisputeReason::WrongArtefactAmount {
            claimed: Usdc::from_micros(800_000),
            expected: Usdc::from_micros(400_000),
        }
    );
    assert!(matches!(
        sim.countersigner.suspension(),
        Some(SuspendReason::Dispute { .. })
    ));
}

#[test]
fn artefacts_that_reach_the_budget_cap_the_amount_and_end_the_session() {
    let budget = Usdc::from_micros(300_000);
    let mut sim = Sim::new(with_artefacts(400_000), budget, Tolerance::default());
    sim.deliver_result(1 << 30, Usdc::from_micros(400_000));
    sim.advance(1_000);
    let reading = sim.provider_meter.read_now().unwrap();
    assert!(reading.budget_reached);
    assert_eq!(reading.amount, budget);
    assert!(sim.exchange(reading, false), "{:?}", sim.refusals);
    assert!(sim.countersigner.budget_spent());
    assert!(
        !sim.provider_meter.is_running(),
        "the meter stops at the budget"
    );
}

#[test]
#[should_panic(expected = "a reading charges for other artefacts than its receipt's results kept")]
fn the_issuer_refuses_to_sign_a_reading_that_missed_the_artefacts_its_receipt_commits_to() {
    let mut sim = Sim::new(
        with_artefacts(400_000),
        Usdc::from_micros(5_000_000),
        Tolerance::default(),
    );
    sim.deliver_result(1 << 30, Usdc::from_micros(400_000));
    sim.advance(1_000);
    let mut reading = sim.provider_meter.read_now().unwrap();
    reading.artefact_amount = Usdc::ZERO;
    let _ = sim.issuer.issue(&reading);
}
