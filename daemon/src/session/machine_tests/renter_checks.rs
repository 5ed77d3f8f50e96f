//! What the renter checks: receipts against its meter, silence, output streams, exits.

use orien_ledger::{DisputeReason, ResultFault, SuspendReason};
use orien_protocol::{ArtefactKept, ResultsCommitment};

use super::*;
use crate::session::simulation::session::received;

#[test]
fn a_receipt_above_the_renters_meter_is_refused_with_evidence() {
    let (rig, mut p, mut r) = rig(1_000_000);
    // A call the renter never asked for: the provider meters 2.5 s of exec time the
    // renter's meter does not have, beyond its 2 s tolerance.
    p.handle(ProviderInput::Exec {
        exec: exec(rig.session, "{}"),
        terms: terms(),
        reply: 1,
    });
    rig.advance(Duration::from_millis(2_500));
    let receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let actions = r.handle(RenterInput::Receipt {
        receipt,
        reply: 2,
        lane_acked: Usdc::ZERO,
    });
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
        result: None,
    }
}

#[test]
fn broken_output_streams_are_refused_as_abuse_and_good_ones_kept() {
    let (rig, _p, mut r) = rig(1_000_000);
    let call = ExecId::random();
    r.start_exec(call, terms(), "{}", &[]).unwrap();
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
    assert!(r.accept_events(&good, received(&good)).is_empty());
    let next = batch(s, call, 1, vec![chunk(call, 3, b"de")]);
    assert_eq!(r.check_events(&next).unwrap(), 2);
}

#[test]
fn an_exit_the_renter_could_not_have_seen_suspends_the_session() {
    let (rig, mut p, mut r) = rig(1_000_000);
    // The provider signs an exit of 2.9 s the renter timed at 0.5 s.
    let late = |exec| {
        rig.advance(Duration::from_millis(500));
        exit_of(exec, Millis(2_900), b"")
    };
    let (events, _) = run_call(&rig, &mut p, &mut r, late, b"");
    r.check_events(&events).unwrap();
    let actions = r.accept_events(&events, received(&events));
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

/// The dispute a renter machine's actions record, if any.
fn disputed(actions: &[RenterAction<u32>]) -> Option<DisputeReason> {
    actions.iter().find_map(|a| match a {
        RenterAction::Suspend {
            status: SessionStatus::Suspended(SuspendReason::Dispute { reason, .. }),
            ..
        } => Some(reason.clone()),
        _ => None,
    })
}

fn prints(out: &'static [u8]) -> impl FnOnce(ExecId) -> ExecExit {
    move |exec| exit_of(exec, Millis(5), out)
}

#[test]
fn a_provider_that_lies_about_an_output_hash_is_caught() {
    let (rig, mut p, mut r) = rig(1_000_000);
    // The provider signs the hash of "hello\n" but the renter receives "hellO\n".
    let (mut events, receipt) = run_call(&rig, &mut p, &mut r, prints(b"hello\n"), b"hello\n");
    let ExecEvent::Output(chunk) = &mut events.events[0] else {
        unreachable!("the batch starts with the output")
    };
    chunk.data = b"hellO\n".to_vec();
    r.check_events(&events).unwrap();
    let actions = r.accept_events(&events, received(&events));
    assert_eq!(
        disputed(&actions),
        Some(DisputeReason::FalseResult {
            exec: events.exec,
            fault: ResultFault::Stdout,
        })
    );
    assert_eq!(
        r.call_end(events.exec).and_then(|e| e.fault),
        Some(ResultFault::Stdout)
    );
    assert!(!r.meter().is_running(), "the renter stops paying");
    // Every later receipt is refused for it.
    let receipt = receipt.unwrap();
    let actions = r.handle(RenterInput::Receipt {
        receipt,
        reply: 9,
        lane_acked: Usdc::ZERO,
    });
    assert!(
        actions.iter().any(|a| matches!(a,
            RenterAction::Reply(9, SessionResponse::Disputed { detail }) if detail.contains("stdout hash"))),
        "{actions:?}"
    );
}

#[test]
fn a_result_someone_else_signed_or_for_another_call_is_caught() {
    let (rig, mut p, mut r) = rig(1_000_000);
    let (mut events, _) = run_call(&rig, &mut p, &mut r, prints(b"x"), b"x");
    let claimed = events.result.as_ref().unwrap().claimed().unwrap();
    events.result = Some(NodeKey::generate().sign(&claimed).unwrap());
    r.check_events(&events).unwrap();
    let actions = r.accept_events(&events, received(&events));
    assert!(matches!(
        disputed(&actions),
        Some(DisputeReason::FalseResult {
            fault: ResultFault::Signature,
            ..
        })
    ));

    // A true result of another call, sent with this one's exit.
    let (rig, mut p, mut r) = super::rig(1_000_000);
    let (first, _) = run_call(&rig, &mut p, &mut r, prints(b"x"), b"x");
    let (mut second, _) = run_call(&rig, &mut p, &mut r, prints(b"x"), b"x");
    second.result = first.result.clone();
    r.check_events(&second).unwrap();
    let actions = r.accept_events(&second, received(&second));
    assert!(matches!(
        disputed(&actions),
        Some(DisputeReason::FalseResult {
            fault: ResultFault::WrongCall,
            ..
        })
    ));
}

#[test]
fn receipts_commit_to_the_results_the_renter_took_and_no_others() {
    let (rig, mut p, mut r) = rig(1_000_000);
    let committed = |receipt: &Signed<UsageReceipt>| receipt.claimed().unwrap().results;
    let (one, first) = run_call(&rig, &mut p, &mut r, prints(b"1"), b"1");
    let (two, _) = run_call(&rig, &mut p, &mut r, prints(b"2"), b"2");
    // The second result is taken first: the receipts wait for the first.
    for batch in [&two, &one] {
        r.check_events(batch).unwrap();
        assert!(disputed(&r.accept_events(batch, received(batch))).is_none());
    }
    p.handle(ProviderInput::ResultDelivered { exec: two.exec });
    let first = first.unwrap();
    assert_eq!(
        committed(&first),
        ResultsCommitment::NONE,
        "issued at the first exit"
    );
    // The receipt issued at the second exit waited for the first's ack.
    let second = sent(&rig.deliver(&mut p, &mut r, first)).unwrap();
    assert_eq!(committed(&second).count, 0, "result 1 was not taken then");
    rig.deliver(&mut p, &mut r, second);
    p.handle(ProviderInput::ResultDelivered { exec: one.exec });
    rig.advance(Duration::from_millis(1_000));
    let third = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let hash = |b: &ExecEvents| b.result.as_ref().unwrap().result_hash();
    let both = ResultsCommitment::NONE
        .extend(&hash(&one))
        .extend(&hash(&two));
    assert_eq!(
        committed(&third),
        both,
        "both results, in the provider's numbering"
    );
    rig.deliver(&mut p, &mut r, third);
    assert_eq!(r.chain().len(), 3);

    // A provider that commits to a result the renter never took is refused.
    let (three, at_exit) = run_call(&rig, &mut p, &mut r, prints(b"3"), b"3");
    rig.deliver(&mut p, &mut r, at_exit.unwrap());
    p.handle(ProviderInput::ResultDelivered { exec: three.exec });
    rig.advance(Duration::from_millis(1_000));
    let receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let actions = r.handle(RenterInput::Receipt {
        receipt,
        reply: 9,
        lane_acked: Usdc::ZERO,
    });
    assert!(matches!(
        disputed(&actions),
        Some(DisputeReason::ResultsNotHeld {
            claimed: 3,
            held: 2
        })
    ));
}

#[test]
fn a_disputed_result_ends_the_provider_side_at_once() {
    let (rig, mut p, mut r) = rig(1_000_000);
    // The receipt sent at the exit is in flight when the renter disputes the result.
    let (mut events, receipt) = run_call(&rig, &mut p, &mut r, prints(b"ok\n"), b"ok\n");
    assert!(receipt.is_some());
    let ExecEvent::Output(chunk) = &mut events.events[0] else {
        unreachable!("the batch starts with the output")
    };
    chunk.data = b"no\n".to_vec();
    r.check_events(&events).unwrap();
    assert!(disputed(&r.accept_events(&events, received(&events))).is_some());
    let actions = p.handle(ProviderInput::ResultDisputed {
        exec: events.exec,
        detail: "the provider's signed result states a stdout hash …".into(),
    });
    assert_eq!(ended(&actions), Some(CloseReason::Dispute), "{actions:?}");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, ProviderAction::CloseSandbox)),
        "the sandbox goes with it"
    );
    assert!(p.has_ended());
    assert!(r.chain().is_empty(), "nothing was acknowledged");
}

/// A call of another tool of the provider, ten times dearer than the session's own.
fn dear_terms() -> CallTerms {
    CallTerms {
        tool: ToolName::new("grep").unwrap(),
        rate: CallRate {
            exec_per_minute: Usdc::from_micros(PRICING.exec_per_minute.micros() * 10),
            cap: MeterConfig::call_cap_for(MAX_EXEC),
        },
        output_cap: 64,
    }
}

#[test]
fn calls_of_several_tools_are_each_priced_at_their_own_rate_on_both_sides() {
    let (rig, mut p, mut r) = rig(10_000_000);
    let (own, dear) = (exec(rig.session, "{}"), exec(rig.session, "{}"));
    r.start_exec(own.exec, terms(), "{}", &[]).unwrap();
    r.start_exec(dear.exec, dear_terms(), "{}", &[]).unwrap();
    for (call, terms) in [(own, terms()), (dear, dear_terms())] {
        let started = p.handle(ProviderInput::Exec {
            exec: call,
            terms,
            reply: 1,
        });
        assert!(code(&started).is_none(), "{started:?}");
    }
    rig.advance(INTERVAL.to_duration());
    let receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let claimed = receipt.verify().unwrap();
    let per_ms = |rate: Usdc| rate.micros() * INTERVAL.get() / 60_000;
    assert_eq!(
        claimed.exec_amount.micros(),
        per_ms(PRICING.exec_per_minute) + per_ms(dear_terms().rate.exec_per_minute),
        "one interval of each call at its own price"
    );
    assert_eq!(
        claimed.amount,
        PRICING
            .session_amount(claimed.session_time)
            .saturating_add(claimed.exec_amount)
    );
    assert!(matches!(
        rig.renter_acks(&mut r, receipt),
        SessionResponse::Ack(_)
    ));
}

#[test]
fn a_provider_pricing_a_cheap_call_dear_is_disputed() {
    let (rig, mut p, mut r) = rig(10_000_000);
    // The renter asked for its session's own tool; the provider meters the call at
    // another tool's price ten times higher.
    let call = exec(rig.session, "{}");
    r.start_exec(call.exec, terms(), "{}", &[]).unwrap();
    p.handle(ProviderInput::Exec {
        exec: call,
        terms: dear_terms(),
        reply: 1,
    });
    rig.advance(Duration::from_millis(1_500));
    let receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let actions = r.handle(RenterInput::Receipt {
        receipt,
        reply: 2,
        lane_acked: Usdc::ZERO,
    });
    match actions.as_slice() {
        [
            RenterAction::Suspend {
                status: SessionStatus::Suspended(SuspendReason::Dispute { reason, .. }),
                evidence: Some(_),
            },
            RenterAction::Reply(2, SessionResponse::Disputed { .. }),
        ] => assert!(
            matches!(reason, DisputeReason::ExecAmountAboveOwnMeter { .. }),
            "{reason:?}"
        ),
        other => panic!("expected a dispute with evidence, got {other:?}"),
    }
}

#[test]
fn a_call_naming_an_output_outside_the_workspace_or_unnormalised_is_refused_before_it_starts() {
    let (rig, mut p, _r) = rig(1_000_000);
    // Outside the workspace, and a path with two spellings.
    for bad in ["../etc/passwd", "./out//a"] {
        let mut call = exec(rig.session, "{}");
        call.outputs = vec![bad.into()];
        let refused = p.handle(ProviderInput::Exec {
            exec: call,
            terms: terms(),
            reply: 1,
        });
        assert_eq!(
            code(&refused),
            Some(RpcErrorCode::BadRequest),
            "{bad}: {refused:?}"
        );
        assert!(
            !refused
                .iter()
                .any(|a| matches!(a, ProviderAction::StartCall { .. })),
            "{bad}: nothing starts"
        );
    }
}

#[test]
fn a_result_that_does_not_name_the_outputs_asked_for_is_disputed() {
    let (rig, mut p, mut r) = rig(1_000_000);
    let mut call = exec(rig.session, "{}");
    call.outputs = vec!["out/report.txt".into()];
    r.start_exec(call.exec, terms(), &call.args_json, &call.outputs)
        .unwrap();
    let started = p.handle(ProviderInput::Exec {
        exec: call.clone(),
        terms: terms(),
        reply: 1,
    });
    let outputs = started.iter().find_map(|a| match a {
        ProviderAction::StartCall { outputs, .. } => Some(outputs.clone()),
        _ => None,
    });
    assert_eq!(
        outputs.map(|o| o.iter().map(ToString::to_string).collect::<Vec<_>>()),
        Some(vec!["out/report.txt".to_owned()]),
        "the driver is told which outputs to keep"
    );
    // A provider that signs a result naming no artefact for the output asked for.
    let exit = exit_of(call.exec, Millis(5), b"");
    let ended = p.handle(ProviderInput::Exited {
        exit: exit.clone(),
        output: [ContentHash::of(b""), ContentHash::of(b"")],
        artefacts: Vec::new(),
    });
    let result = ended.into_iter().find_map(|a| match a {
        ProviderAction::CallEnded { result, .. } => result,
        _ => None,
    });
    let events = ExecEvents {
        session: rig.session,
        exec: call.exec,
        seq: 0,
        events: vec![ExecEvent::Exit(exit)],
        result,
    };
    r.check_events(&events).unwrap();
    let actions = r.accept_events(&events, received(&events));
    assert_eq!(
        disputed(&actions),
        Some(DisputeReason::FalseResult {
            exec: call.exec,
            fault: ResultFault::WrongCall,
        })
    );
}

/// A call that kept one file of `size` bytes at `path`.
fn kept(path: &str, size: u64) -> Vec<Artefact> {
    vec![Artefact {
        path: path.into(),
        kept: ArtefactKept::File {
            size,
            sha256: ContentHash::of(path.as_bytes()),
        },
    }]
}

#[test]
fn the_artefacts_a_taken_result_kept_are_charged_at_the_offers_price_and_fill_the_budget() {
    // 0.4 USDC per GiB on a 1 GiB workspace: the session's artefacts cost 0.4 at most.
    let pricing = Pricing {
        artefact_per_gib: Usdc::from_micros(400_000),
        ..super::PRICING
    };
    let (rig, mut p, mut r) = super::rig_priced(1_000_000, pricing, 1 << 30);
    let claimed = |receipt: &Signed<UsageReceipt>| receipt.claimed().unwrap();
    let (batch, at_exit) = super::run_call_keeping(
        &rig,
        &mut p,
        &mut r,
        prints(b"done"),
        b"done",
        kept("out/frame.exr", 512 << 20),
    );
    let at_exit = at_exit.unwrap();
    assert_eq!(
        claimed(&at_exit).artefact_amount,
        Usdc::ZERO,
        "not taken yet"
    );
    rig.deliver(&mut p, &mut r, at_exit);
    r.check_events(&batch).unwrap();
    assert!(disputed(&r.accept_events(&batch, received(&batch))).is_none());
    p.handle(ProviderInput::ResultDelivered { exec: batch.exec });

    rig.advance(Duration::from_millis(1_000));
    let receipt = sent(&p.handle(ProviderInput::Tick)).unwrap();
    let charged = claimed(&receipt);
    assert_eq!(charged.results.count, 1);
    assert_eq!(
        charged.artefact_amount,
        Usdc::from_micros(200_000),
        "half a GiB"
    );
    assert_eq!(
        charged.amount,
        pricing
            .session_amount(charged.session_time)
            .checked_add(charged.exec_amount)
            .and_then(|a| a.checked_add(Usdc::from_micros(200_000)))
            .unwrap()
    );
    rig.deliver(&mut p, &mut r, receipt);
    assert_eq!(r.chain().len(), 2, "the renter acknowledged the charge");

    // The budget left must cover the workspace's artefacts at most beside a call's worst
    // case: with 0.2 charged and 0.4 at most, 0.2 more may come.
    rig.advance(Duration::from_millis(1_000));
    let call = super::exec(rig.session, "{}");
    let left = r.start_exec(call.exec, super::terms(), &call.args_json, &call.outputs);
    assert!(left.is_ok(), "{left:?}");

    // A call's worst case is 3 s of session and of execution, 33,000; with the
    // artefacts' 400,000 it passes a budget of 420,000.
    let (rig, _p, mut r) = super::rig_priced(420_000, pricing, 1 << 30);
    let call = super::exec(rig.session, "{}");
    match r.start_exec(call.exec, super::terms(), &call.args_json, &call.outputs) {
        Err(StartRefused::Budget(refused)) => {
            assert_eq!(refused.artefacts, Usdc::from_micros(400_000));
        }
        other => panic!("a call whose worst case with the artefacts passes the budget: {other:?}"),
    }
}
