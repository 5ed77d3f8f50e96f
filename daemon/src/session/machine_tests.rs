//! The session machines' rules, one test each, on a manual clock and real ledgers (a
//! receipt only counts as durable once RocksDB says so).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::receipts::Tolerance;
use orien_ledger::{
    Countersigner, Issuer, Meter, MeterConfig, SessionRecord, SessionStatus, Store, StoreOptions,
};
use orien_protocol::{
    Clock, CloseReason, Exec, ExecEvent, ExecEvents, ExecExit, ExecId, ExecOutcome, ManualClock,
    Millis, NodeKey, OutputChunk, OutputStream, PaymentLane, Pricing, RpcErrorCode, SessionId,
    SessionResponse, Signed, Timestamp, UsageReceipt, Usdc,
};

use super::provider_machine::{
    Delivery, ProviderAction, ProviderInput, ProviderMachine, ProviderTerms, RETRY,
};
use super::renter_machine::{
    Refused, RenterAction, RenterInput, RenterMachine, RenterTerms, StartRefused,
};
use crate::peer_guard::Abuse;

const INTERVAL: Millis = Millis(1_000);
const ACK_TIMEOUT: Millis = Millis(3_000);
const MAX_EXEC: Millis = Millis(2_000);
const PRICING: Pricing = Pricing {
    session_per_minute: Usdc::from_micros(60_000),
    exec_per_minute: Usdc::from_micros(600_000),
};
const GRACE: Duration = Duration::from_secs(5);

type P = ProviderMachine<u32>;
type R = RenterMachine<u32>;

struct Rig {
    clock: Arc<ManualClock>,
    session: SessionId,
    provider_store: Store,
    renter_store: Store,
    _dir: tempfile::TempDir,
}

fn rig(budget: u64) -> (Rig, P, R) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    let store = |name: &str| {
        let options = StoreOptions {
            clock: clock.clone(),
            read_only: false,
        };
        Store::open_with(dir.path().join(name), options).unwrap()
    };
    let (provider_store, renter_store) = (store("provider"), store("renter"));
    let (provider, renter) = (NodeKey::generate(), NodeKey::generate());
    let session = SessionId::random();
    let budget = Usdc::from_micros(budget);
    let record = SessionRecord {
        session,
        provider: provider.node_id(),
        renter: renter.node_id(),
        payment: PaymentLane::Ledger,
        pricing: PRICING,
        budget,
        opened_at: clock.wall(),
    };
    provider_store.open_session(record.clone()).unwrap();
    renter_store.open_session(record).unwrap();
    let config = MeterConfig {
        pricing: PRICING,
        budget,
        receipt_interval: INTERVAL,
        call_cap: MeterConfig::call_cap_for(MAX_EXEC),
    };
    let c: Arc<dyn Clock> = clock.clone();
    let p = ProviderMachine::new(
        ProviderTerms {
            session,
            max_calls: 2,
            max_duration: Duration::from_secs(60),
        },
        Meter::start(config, c.clone()),
        Issuer::new(
            provider.clone(),
            session,
            renter.node_id(),
            ACK_TIMEOUT,
            c.clone(),
        ),
        None,
        c.clone(),
    );
    let r = RenterMachine::new(
        RenterTerms {
            session,
            max_calls: 2,
            output_cap: 64,
            call_cap: MeterConfig::call_cap_for(MAX_EXEC),
            grace: GRACE,
            slack: Tolerance::default().slack,
        },
        Meter::start(config, c.clone()),
        Countersigner::new(
            renter,
            session,
            provider.node_id(),
            PRICING,
            budget,
            Tolerance::default(),
        ),
        c,
    );
    let rig = Rig {
        clock,
        session,
        provider_store,
        renter_store,
        _dir: dir,
    };
    (rig, p, r)
}

impl Rig {
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Passes one receipt through the renter and its ack back, committing on both sides
    /// as the drivers do; the provider's actions after the commit.
    fn deliver(
        &self,
        p: &mut P,
        r: &mut R,
        receipt: Signed<UsageReceipt>,
    ) -> Vec<ProviderAction<u32>> {
        let ack = self.renter_acks(r, receipt);
        let actions = p.handle(ProviderInput::Delivered(Delivery::Answered(ack)));
        let Some(ProviderAction::Commit(acked)) = actions.into_iter().next() else {
            panic!("an ack is committed first");
        };
        let durable = self.provider_store.ingest(acked).unwrap();
        p.handle(ProviderInput::Committed(Ok(durable)))
    }

    fn renter_acks(&self, r: &mut R, receipt: Signed<UsageReceipt>) -> SessionResponse {
        let actions = r.handle(RenterInput::Receipt { receipt, reply: 7 });
        match actions.as_slice() {
            [RenterAction::Commit(acked)] => {
                let durable = self.renter_store.ingest(acked.clone()).unwrap();
                let mut out = r.handle(RenterInput::Committed(Ok(durable)));
                match out.pop() {
                    Some(RenterAction::Reply(7, response)) => response,
                    other => panic!("no reply after the commit: {other:?}"),
                }
            }
            [RenterAction::Reply(7, response)] => response.clone(),
            other => panic!("unexpected: {other:?}"),
        }
    }
}

fn sent(actions: &[ProviderAction<u32>]) -> Option<Signed<UsageReceipt>> {
    actions.iter().find_map(|a| match a {
        ProviderAction::Send(receipt) => Some(receipt.clone()),
        _ => None,
    })
}

fn ended<T: std::fmt::Debug>(actions: &[ProviderAction<T>]) -> Option<CloseReason> {
    actions.iter().find_map(|a| match a {
        ProviderAction::Ended { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn exec(session: SessionId, args: &str) -> Exec {
    Exec {
        session,
        exec: ExecId::random(),
        args_json: args.into(),
    }
}

fn code(actions: &[ProviderAction<u32>]) -> Option<RpcErrorCode> {
    actions.iter().find_map(|a| match a {
        ProviderAction::Reply(_, SessionResponse::Error { code, .. }) => Some(*code),
        _ => None,
    })
}

#[test]
fn a_receipt_is_issued_each_interval_and_the_next_waits_for_the_commit() {
    let (rig, mut p, mut r) = rig(1_000_000);
    assert_eq!(p.wake_at(), Some(INTERVAL.to_duration()));
    assert!(
        p.handle(ProviderInput::Tick).is_empty(),
        "nothing is due before the interval"
    );
    rig.advance(INTERVAL.to_duration());
    let first = sent(&p.handle(ProviderInput::Tick)).expect("the interval receipt is sent");
    rig.advance(INTERVAL.to_duration());
    assert!(
        sent(&p.handle(ProviderInput::Tick)).is_none(),
        "one receipt in flight at a time"
    );
    let after = rig.deliver(&mut p, &mut r, first);
    assert!(
        sent(&after).is_some(),
        "the queued receipt goes once the first is committed"
    );
    assert_eq!(p.chain().len(), 1);
    assert_eq!(rig.provider_store.receipts(&rig.session).unwrap().len(), 1);
}

#[test]
fn a_silent_renter_ends_the_session_one_ack_timeout_after_the_last_ack() {
    let (rig, mut p, _r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    assert!(sent(&p.handle(ProviderInput::Tick)).is_some());
    assert_eq!(
        p.wake_at(),
        Some(2 * INTERVAL.to_duration()),
        "the next interval is first"
    );
    rig.advance(ACK_TIMEOUT.to_duration() - INTERVAL.to_duration() - Duration::from_millis(1));
    assert_eq!(
        ended(&p.handle(ProviderInput::Tick)),
        None,
        "not before the timeout"
    );
    rig.advance(Duration::from_millis(1));
    let actions = p.handle(ProviderInput::Tick);
    assert_eq!(ended(&actions), Some(CloseReason::AckTimeout));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, ProviderAction::CloseSandbox))
    );
    assert!(p.has_ended() && p.wake_at().is_none());
}

#[test]
fn an_undelivered_receipt_is_sent_again_after_the_retry_pause() {
    let (rig, mut p, _r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    let first = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let actions = p.handle(ProviderInput::Delivered(Delivery::Failed("lost".into())));
    assert!(sent(&actions).is_none(), "not at once");
    rig.advance(RETRY);
    let again = sent(&p.handle(ProviderInput::Tick)).expect("resent after the pause");
    assert_eq!(again, first, "byte for byte the same receipt");
}

#[test]
fn a_resent_receipt_is_acked_again_without_a_second_commit() {
    let (rig, mut p, mut r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    let first = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let ack = rig.renter_acks(&mut r, first.clone());
    // The ack is lost: the provider sends the same receipt again.
    let again = r.handle(RenterInput::Receipt {
        receipt: first,
        reply: 8,
    });
    match again.as_slice() {
        [RenterAction::Reply(8, response)] => assert_eq!(response, &ack),
        other => panic!("expected the stored ack, got {other:?}"),
    }
    assert_eq!(r.chain().len(), 1);
}

#[test]
fn the_renter_releases_no_ack_when_its_commit_fails() {
    let (rig, mut p, mut r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    let first = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let actions = r.handle(RenterInput::Receipt {
        receipt: first,
        reply: 1,
    });
    assert!(
        matches!(actions.as_slice(), [RenterAction::Commit(_)]),
        "commit first: {actions:?}"
    );
    let actions = r.handle(RenterInput::Committed(Err("disk full".into())));
    match actions.as_slice() {
        [RenterAction::Reply(1, SessionResponse::Error { code, .. })] => {
            assert_eq!(*code, RpcErrorCode::Internal);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(r.chain().is_empty());
}

#[test]
fn calls_are_refused_past_the_limit_with_bad_arguments_or_a_repeated_id() {
    let (rig, mut p, _r) = rig(1_000_000);
    let one = exec(rig.session, "{}");
    let actions = p.handle(ProviderInput::Exec {
        exec: one.clone(),
        reply: 1,
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, ProviderAction::StartCall { .. }))
    );
    let repeated = p.handle(ProviderInput::Exec {
        exec: one,
        reply: 2,
    });
    assert_eq!(code(&repeated), Some(RpcErrorCode::BadRequest));
    let not_json = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{"),
        reply: 3,
    });
    assert_eq!(code(&not_json), Some(RpcErrorCode::BadRequest));
    let two = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        reply: 4,
    });
    assert_eq!(code(&two), None);
    let three = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        reply: 5,
    });
    assert_eq!(code(&three), Some(RpcErrorCode::RateLimited));
    assert_eq!(p.running_calls(), 2);
}

#[test]
fn a_call_whose_worst_case_does_not_fit_the_budget_is_refused() {
    // Room for one call's worst case (3 s of exec and session time), not two.
    let (rig, mut p, mut r) = rig(36_000);
    assert!(
        code(&p.handle(ProviderInput::Exec {
            exec: exec(rig.session, "{}"),
            reply: 1
        }))
        .is_none()
    );
    let second = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        reply: 2,
    });
    assert_eq!(code(&second), Some(RpcErrorCode::BadRequest));
    r.start_exec(ExecId::random()).unwrap();
    assert!(matches!(
        r.start_exec(ExecId::random()),
        Err(StartRefused::Budget(_))
    ));
}

#[test]
fn a_renter_close_ends_after_the_closing_receipt_is_committed() {
    let (rig, mut p, mut r) = rig(1_000_000);
    rig.advance(Duration::from_millis(400));
    let actions = p.handle(ProviderInput::Close {
        reason: CloseReason::RenterRequested,
        reply: 9,
    });
    let closing = sent(&actions).expect("the closing receipt");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, ProviderAction::CloseSandbox))
    );
    assert_eq!(
        ended(&actions),
        None,
        "not before the closing receipt is committed"
    );
    let after = rig.deliver(&mut p, &mut r, closing);
    match after.as_slice() {
        [
            ProviderAction::Ended {
                reason: CloseReason::RenterRequested,
                replies,
            },
        ] if replies == &[9] => {}
        other => panic!("expected the end with the close's reply, got {other:?}"),
    }
    assert_eq!(p.chain().len(), 1);
}

#[test]
fn a_close_sent_again_is_answered_like_the_first() {
    // The renter resends its close when the answer is slow (a lost or late reply):
    // every copy is answered when the session ends, none is refused, and no notice is
    // sent (the renter asked). Seen in the simulation: the first copy was answered
    // "closed by a later request", the renter ended RenterRequested and the provider,
    // whose later copy was lost, Disconnected.
    let (rig, mut p, mut r) = rig(1_000_000);
    rig.advance(Duration::from_millis(400));
    let first = p.handle(ProviderInput::Close {
        reason: CloseReason::RenterRequested,
        reply: 1,
    });
    let closing = sent(&first).expect("the closing receipt");
    let again = p.handle(ProviderInput::Close {
        reason: CloseReason::RenterRequested,
        reply: 2,
    });
    assert!(
        again.is_empty(),
        "the second copy waits for the end like the first: {again:?}"
    );
    let after = rig.deliver(&mut p, &mut r, closing);
    match after.as_slice() {
        [
            ProviderAction::Ended {
                reason: CloseReason::RenterRequested,
                replies,
            },
        ] if replies == &[1, 2] => {}
        other => panic!("expected both copies answered at the end, got {other:?}"),
    }
}

#[test]
fn a_restarted_renter_ends_the_session_without_a_closing_receipt() {
    let (_rig, mut p, _r) = rig(1_000_000);
    let actions = p.handle(ProviderInput::Close {
        reason: CloseReason::Restarted,
        reply: 3,
    });
    assert!(sent(&actions).is_none());
    assert_eq!(ended(&actions), Some(CloseReason::Restarted));
}

#[test]
fn reaching_the_budget_closes_for_the_budget_with_every_receipt_committed() {
    let (rig, mut p, mut r) = rig(6_000);
    let mut receipts = 0;
    let mut reason = None;
    for _ in 0..20 {
        rig.advance(INTERVAL.to_duration());
        let mut actions = p.handle(ProviderInput::Tick);
        while let Some(receipt) = sent(&actions) {
            receipts += 1;
            actions = rig.deliver(&mut p, &mut r, receipt);
        }
        reason = reason.or(ended(&actions));
        if reason.is_some() {
            break;
        }
    }
    assert_eq!(reason, Some(CloseReason::BudgetExhausted));
    assert_eq!(p.chain(), r.chain(), "identical chains");
    assert_eq!(p.chain().len(), receipts);
    assert!(
        r.handle(RenterInput::Closed {
            reason: CloseReason::BudgetExhausted,
            reply: 1
        })
        .iter()
        .any(|a| matches!(a, RenterAction::Ended(CloseReason::BudgetExhausted)))
    );
}

#[test]
fn a_renter_close_that_races_the_budgets_end_is_recorded_as_the_budget_on_both_sides() {
    // 6,000 µUSDC: six seconds of session time.
    let (rig, mut p, mut r) = rig(6_000);
    for _ in 0..5 {
        rig.advance(INTERVAL.to_duration());
        let mut actions = p.handle(ProviderInput::Tick);
        while let Some(receipt) = sent(&actions) {
            actions = rig.deliver(&mut p, &mut r, receipt);
        }
    }
    // The budget runs out while the renter's close is on its way.
    rig.advance(Duration::from_millis(1_500));
    let actions = p.handle(ProviderInput::Close {
        reason: CloseReason::RenterRequested,
        reply: 5,
    });
    let closing = sent(&actions).expect("the closing receipt");
    let after = rig.deliver(&mut p, &mut r, closing);
    assert_eq!(ended(&after), Some(CloseReason::BudgetExhausted));
    let renter = r.handle(RenterInput::Finish);
    assert!(
        matches!(
            renter.as_slice(),
            [RenterAction::Ended(CloseReason::BudgetExhausted)]
        ),
        "{renter:?}"
    );
}

#[test]
fn the_maximum_duration_closes_the_session() {
    let (rig, mut p, mut r) = rig(100_000_000);
    let mut reason = None;
    for _ in 0..61 {
        rig.advance(INTERVAL.to_duration());
        let mut actions = p.handle(ProviderInput::Tick);
        while let Some(receipt) = sent(&actions) {
            actions = rig.deliver(&mut p, &mut r, receipt);
        }
        reason = reason.or(ended(&actions));
        if reason.is_some() {
            break;
        }
    }
    assert_eq!(reason, Some(CloseReason::MaxDuration));
    assert_eq!(p.chain(), r.chain());
}

#[test]
fn a_renter_that_forgot_the_session_ends_it_at_once() {
    let (rig, mut p, _r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    assert!(sent(&p.handle(ProviderInput::Tick)).is_some());
    let answer = SessionResponse::Error {
        code: RpcErrorCode::SessionEnded,
        detail: "gone".into(),
    };
    let after = p.handle(ProviderInput::Delivered(Delivery::Answered(answer)));
    assert_eq!(
        ended(&after),
        Some(CloseReason::Disconnected),
        "not at the timeout"
    );
}

#[test]
fn a_dispute_ends_the_session_and_nothing_follows() {
    let (rig, mut p, _r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    sent(&p.handle(ProviderInput::Tick)).unwrap();
    let disputed = SessionResponse::Disputed {
        detail: "no".into(),
    };
    let actions = p.handle(ProviderInput::Delivered(Delivery::Answered(disputed)));
    assert_eq!(ended(&actions), Some(CloseReason::Dispute));
    let late = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        reply: 4,
    });
    assert_eq!(
        code(&late),
        Some(RpcErrorCode::SessionEnded),
        "nothing after the end"
    );
}

#[test]
fn an_ack_the_provider_cannot_commit_closes_the_session() {
    let (rig, mut p, mut r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    let receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let ack = rig.renter_acks(&mut r, receipt);
    let actions = p.handle(ProviderInput::Delivered(Delivery::Answered(ack)));
    assert!(matches!(actions.as_slice(), [ProviderAction::Commit(_)]));
    let actions = p.handle(ProviderInput::Committed(Err("disk full".into())));
    assert!(sent(&actions).is_some(), "the closing receipt");
    assert!(p.chain().is_empty(), "nothing counts as committed");
    // Its ledger still lacks receipt 1, so the closing receipt cannot be committed
    // either: the session ends there, for the provider's failure.
    let ack = rig.renter_acks(&mut r, sent(&actions).unwrap());
    let actions = p.handle(ProviderInput::Delivered(Delivery::Answered(ack)));
    let Some(ProviderAction::Commit(acked)) = actions.into_iter().next() else {
        panic!("the closing ack is committed first");
    };
    let refused = rig.provider_store.ingest(acked).map_err(|e| e.to_string());
    assert!(refused.is_err(), "receipt 2 without receipt 1");
    let after = p.handle(ProviderInput::Committed(refused));
    assert_eq!(ended(&after), Some(CloseReason::ProviderShutdown));
}

#[test]
fn a_receipt_above_the_renters_meter_is_refused_with_evidence() {
    let (rig, mut p, mut r) = rig(1_000_000);
    // A call the renter never asked for: the provider meters 2.5 s of exec time the
    // renter's meter does not have, beyond its 2 s tolerance.
    p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        reply: 1,
    });
    rig.advance(Duration::from_millis(2_500));
    let receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let actions = r.handle(RenterInput::Receipt { receipt, reply: 2 });
    match actions.as_slice() {
        [
            RenterAction::Suspend {
                evidence: Some(_), ..
            },
            RenterAction::Reply(2, SessionResponse::Disputed { .. }),
        ] => {}
        other => panic!("expected a dispute with evidence, got {other:?}"),
    }
    assert!(!r.meter().is_running(), "the renter stops paying");
}

#[test]
fn a_silent_provider_ends_the_session_as_disconnected_after_the_grace() {
    let (rig, _p, mut r) = rig(1_000_000);
    rig.advance(GRACE - Duration::from_millis(1));
    assert!(r.handle(RenterInput::Tick).is_empty());
    r.heard();
    rig.advance(GRACE - Duration::from_millis(1));
    assert!(
        r.handle(RenterInput::Tick).is_empty(),
        "hearing from it restarts the grace"
    );
    rig.advance(Duration::from_millis(1));
    let actions = r.handle(RenterInput::Tick);
    assert!(matches!(
        actions.as_slice(),
        [RenterAction::Ended(CloseReason::Disconnected)]
    ));
}

fn chunk(exec: ExecId, offset: u64, data: &[u8]) -> ExecEvent {
    ExecEvent::Output(OutputChunk {
        exec,
        stream: OutputStream::Stdout,
        offset,
        data: data.to_vec(),
    })
}

fn batch(session: SessionId, exec: ExecId, seq: u64, events: Vec<ExecEvent>) -> ExecEvents {
    ExecEvents {
        session,
        exec,
        seq,
        events,
    }
}

#[test]
fn broken_output_streams_are_refused_as_abuse_and_good_ones_kept() {
    let (rig, _p, mut r) = rig(1_000_000);
    let call = ExecId::random();
    r.start_exec(call).unwrap();
    let s = rig.session;
    let empty = r.check_events(&batch(s, call, 0, vec![chunk(call, 0, b"")]));
    assert!(matches!(
        empty,
        Err(Refused {
            abuse: Some(Abuse::BrokenOutput),
            ..
        })
    ));
    let gap = r.check_events(&batch(s, call, 0, vec![chunk(call, 3, b"abc")]));
    assert!(matches!(
        gap,
        Err(Refused {
            abuse: Some(Abuse::BrokenOutput),
            ..
        })
    ));
    let over = r.check_events(&batch(s, call, 0, vec![chunk(call, 0, &[b'x'; 65])]));
    assert!(
        matches!(
            over,
            Err(Refused {
                abuse: Some(Abuse::BrokenOutput),
                ..
            })
        ),
        "over the cap"
    );
    let later = r.check_events(&batch(s, call, 1, vec![chunk(call, 0, b"abc")]));
    assert!(
        matches!(later, Err(Refused { abuse: None, .. })),
        "out of order is refused, not abuse"
    );
    let good = batch(s, call, 0, vec![chunk(call, 0, b"abc")]);
    assert_eq!(r.check_events(&good).unwrap(), 3);
    assert!(r.accept_events(&good).is_empty());
    let next = batch(s, call, 1, vec![chunk(call, 3, b"de")]);
    assert_eq!(r.check_events(&next).unwrap(), 2);
}

#[test]
fn an_exit_the_renter_could_not_have_seen_suspends_the_session() {
    let (rig, _p, mut r) = rig(1_000_000);
    let call = ExecId::random();
    r.start_exec(call).unwrap();
    rig.advance(Duration::from_millis(500));
    let exit = ExecExit {
        exec: call,
        outcome: ExecOutcome::Exited,
        exit_code: Some(0),
        wall: Millis(2_900),
        cpu: Millis(10),
        peak_memory_bytes: 0,
        stdout_bytes: 0,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
    };
    let events = batch(rig.session, call, 0, vec![ExecEvent::Exit(exit)]);
    r.check_events(&events).unwrap();
    let actions = r.accept_events(&events);
    match actions.as_slice() {
        [
            RenterAction::Suspend {
                status: SessionStatus::Suspended(_),
                evidence: None,
            },
        ] => {}
        other => panic!("expected a suspension, got {other:?}"),
    }
    assert_eq!(r.running_calls(), 0);
}
