//! Receipts, acks, retries and the calls a provider takes.

use super::*;

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
fn on_a_link_slower_than_the_interval_receipts_do_not_queue_up_behind_each_other() {
    // Each ack takes two intervals to come back (within the ack timeout). Had every
    // interval's reading been signed and queued, the acknowledged total would fall
    // further behind the meter with every receipt while acks kept arriving: unpaid work
    // without bound (seed 1796557258 of tests/loss_bound.rs lost 39,510 µUSDC against
    // a bound of 37,800 this way, its receipts four behind after three seconds).
    let (rig, mut p, mut r) = rig(1_000_000);
    rig.advance(INTERVAL.to_duration());
    let mut receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    for round in 0..10 {
        // The session's start counts as the first ack: one interval in the first round.
        for _ in 0..if round == 0 { 1 } else { 2 } {
            rig.advance(INTERVAL.to_duration());
            assert!(
                sent(&p.handle(ProviderInput::Tick)).is_none(),
                "one at a time"
            );
        }
        let after = rig.deliver(&mut p, &mut r, receipt);
        receipt = sent(&after).expect("the newest reading goes once the ack is committed");
        let content = receipt.claimed().unwrap();
        let now = Millis::from_duration(rig.clock.monotonic());
        assert!(
            content.session_time.get() + INTERVAL.get() > now.get(),
            "receipt {} covers {} of {now}: the newest reading, not a queued one",
            content.seq,
            content.session_time
        );
    }
    assert!(!p.has_ended());
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
        lane_acked: Usdc::ZERO,
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
        lane_acked: Usdc::ZERO,
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
        terms: terms(),
        reply: 1,
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, ProviderAction::StartCall { .. }))
    );
    // The same request again (a retry): the same answer, and it does not run twice.
    let repeated = p.handle(ProviderInput::Exec {
        exec: one.clone(),
        terms: terms(),
        reply: 2,
    });
    assert!(
        matches!(
            repeated.as_slice(),
            [ProviderAction::Reply(2, SessionResponse::ExecStarted { exec })] if *exec == one.exec
        ),
        "{repeated:?}"
    );
    // Another request under the same id is refused.
    let reused = p.handle(ProviderInput::Exec {
        exec: Exec {
            args_json: r#"{"other": 1}"#.into(),
            ..one
        },
        terms: terms(),
        reply: 2,
    });
    assert_eq!(code(&reused), Some(RpcErrorCode::BadRequest));
    let not_json = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{"),
        terms: terms(),
        reply: 3,
    });
    assert_eq!(code(&not_json), Some(RpcErrorCode::BadRequest));
    let two = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        terms: terms(),
        reply: 4,
    });
    assert_eq!(code(&two), None);
    let three = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        terms: terms(),
        reply: 5,
    });
    assert_eq!(code(&three), Some(RpcErrorCode::RateLimited));
    assert_eq!(p.running_calls(), 2);
}

#[test]
fn an_exec_repeated_after_its_call_ended_is_answered_again_not_run_again() {
    // The renter meters a call once; a second run of the same id (a duplicated, retried
    // or replayed request) would be metered by the provider alone, and an honest renter
    // would dispute the session over it.
    let (rig, mut p, mut r) = rig(1_000_000);
    let ended = |exec| exit_of(exec, Millis(100), b"ok");
    let (batch, receipt) = run_call(&rig, &mut p, &mut r, ended, b"ok");
    rig.deliver(&mut p, &mut r, receipt.unwrap());
    let again = Exec {
        exec: batch.exec,
        ..exec(rig.session, "{}")
    };
    let actions = p.handle(ProviderInput::Exec {
        exec: again.clone(),
        terms: terms(),
        reply: 9,
    });
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, ProviderAction::StartCall { .. })),
        "the call ran again: {actions:?}"
    );
    assert!(
        matches!(
            actions.as_slice(),
            [ProviderAction::Reply(
                9,
                SessionResponse::ExecStarted { .. }
            )]
        ),
        "{actions:?}"
    );
    assert_eq!(p.running_calls(), 0);
    let other = p.handle(ProviderInput::Exec {
        exec: Exec {
            outputs: vec!["out/x".into()],
            ..again
        },
        terms: terms(),
        reply: 10,
    });
    assert_eq!(code(&other), Some(RpcErrorCode::BadRequest), "{other:?}");
}

#[test]
fn a_call_whose_worst_case_does_not_fit_the_budget_is_refused() {
    // Room for one call's worst case (3 s of exec and session time), not two.
    let (rig, mut p, mut r) = rig(36_000);
    assert!(
        code(&p.handle(ProviderInput::Exec {
            exec: exec(rig.session, "{}"),
            terms: terms(),
            reply: 1
        }))
        .is_none()
    );
    let second = p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        terms: terms(),
        reply: 2,
    });
    assert_eq!(code(&second), Some(RpcErrorCode::BadRequest));
    r.start_exec(ExecId::random(), terms(), "{}", &[]).unwrap();
    assert!(matches!(
        r.start_exec(ExecId::random(), terms(), "{}", &[]),
        Err(StartRefused::Budget(_))
    ));
}
