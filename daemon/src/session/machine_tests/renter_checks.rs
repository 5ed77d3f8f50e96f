//! What the renter checks: receipts against its meter, silence, output streams, exits.

use super::*;

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
