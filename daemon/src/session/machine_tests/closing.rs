//! How a session ends: renter close, budget, maximum duration, disputes, forgotten sessions.

use super::*;

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
fn a_stopping_node_closes_on_a_receipt_for_the_time_served_and_ends_once_it_is_acknowledged() {
    // A provider going offline (its owner stops the daemon) is paid for what it served:
    // the session closes as a renter's close does, not as the node's disappearance.
    let (rig, mut p, mut r) = rig(1_000_000);
    rig.advance(Duration::from_millis(700));
    let actions = p.handle(ProviderInput::Stop);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, ProviderAction::CloseSandbox)),
        "no work after the closing reading: {actions:?}"
    );
    let closing = sent(&actions).expect("the closing receipt");
    assert_eq!(
        closing.claimed().unwrap().session_time,
        Millis::from_duration(Duration::from_millis(700))
    );
    assert_eq!(ended(&actions), None, "not before its ack is committed");
    let again = p.handle(ProviderInput::Stop);
    assert!(again.is_empty(), "a second stop changes nothing: {again:?}");
    let after = rig.deliver(&mut p, &mut r, closing);
    match after.as_slice() {
        [
            ProviderAction::Ended {
                reason: CloseReason::ProviderShutdown,
                replies,
            },
        ] if replies.is_empty() => {}
        other => panic!("expected the end for the shutdown, got {other:?}"),
    }
    assert_eq!(
        p.chain().len(),
        1,
        "the closing receipt is the session's last"
    );
    assert_eq!(r.chain().len(), 1, "and its renter holds it acknowledged");
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
        terms: terms(),
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
    let refused = rig
        .provider_store
        .ingest_checked(*acked)
        .map_err(|e| e.to_string());
    assert!(refused.is_err(), "receipt 2 without receipt 1");
    let after = p.handle(ProviderInput::Committed(refused));
    assert_eq!(ended(&after), Some(CloseReason::ProviderShutdown));
}
