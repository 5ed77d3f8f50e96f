//! The loss bound between in-process nodes (real libp2p over loopback, real RocksDB, the
//! modelled sandbox): a session that runs out of budget ends cleanly on both sides, a
//! receipt resent after a lost ack is acknowledged again, running calls are paid while
//! they run, a renter that withholds acks costs the provider at most one ack window, a
//! provider that delays an exit cannot charge past the call's limit, and a provider that
//! lies about a call's output hash is caught with its signed claim as evidence.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/hostile.rs"]
mod hostile;

use std::time::Duration;

use harness::{
    PATIENCE, Pair, TestNode, eventually, fast, is_ack_in, receipt_of, work, work_pricing,
    work_tool, worth,
};
use hostile::ScriptedProvider;
use orien_daemon::{Fault, SessionConfig};
use orien_ledger::SessionStatus;
use orien_protocol::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_runs_out_of_budget_ends_with_the_same_chain_and_reason_on_both_sides() {
    let pair = Pair::start(fast()).await;
    // 1 µUSDC per millisecond of session: the budget lasts about five seconds.
    let budget = Usdc::from_micros(5_000);
    let session = pair.open(budget).await.unwrap();

    let provider = pair.provider.closed(&session).await;
    let renter = pair.renter.closed(&session).await;
    assert_eq!(
        provider.status,
        SessionStatus::Closed(CloseReason::BudgetExhausted),
        "the provider ends the session for its budget"
    );
    assert_eq!(
        renter.status,
        SessionStatus::Closed(CloseReason::BudgetExhausted),
        "the renter records the same reason"
    );
    assert_eq!(provider.amount, budget, "the whole budget is acknowledged");
    assert_eq!((provider.seq, provider.hash), (renter.seq, renter.hash));
    let chain = pair.provider.chain(&session);
    assert_eq!(chain, pair.renter.chain(&session), "identical chains");
    // The receipt that reached the budget, then the closing receipt: both acknowledged.
    let amounts: Vec<Usdc> = chain
        .iter()
        .map(|a| a.receipt.verify().unwrap().amount)
        .collect();
    assert!(
        amounts.len() >= 2 && amounts[amounts.len() - 2..] == [budget, budget],
        "{amounts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_resent_after_a_lost_ack_is_acknowledged_again_not_disputed() {
    let pair = Pair::start(fast()).await;
    // The provider loses the renter's ack of the second receipt: the renter has committed
    // it, the provider has not, and sends it again.
    let mut acks = 0;
    pair.provider.rules.add(move |point| {
        if is_ack_in(point) {
            acks += 1;
            if acks == 2 {
                return Some(Fault::Drop);
            }
        }
        None
    });
    let session = pair.open(Usdc::from_micros(1_000_000)).await.unwrap();
    let renter = &pair.renter;
    assert!(
        eventually(Duration::from_secs(15), || renter.head(&session).seq >= 6).await,
        "receipts keep coming after the lost ack (renter at {:?})",
        renter.head(&session)
    );
    pair.close(session).await.unwrap();
    let provider = pair.provider.closed(&session).await;
    let renter_head = pair.renter.closed(&session).await;
    assert_eq!(
        provider.status,
        SessionStatus::Closed(CloseReason::RenterRequested)
    );
    assert_eq!(
        renter_head.status,
        SessionStatus::Closed(CloseReason::RenterRequested)
    );
    assert!(
        pair.renter.store().evidence(&session).unwrap().is_empty(),
        "nothing was disputed"
    );
    assert_eq!(pair.provider.chain(&session), pair.renter.chain(&session));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_calls_are_metered_in_the_interval_receipts() {
    let pair = Pair::start(fast()).await;
    let session = pair.open(Usdc::from_micros(1_000_000)).await.unwrap();
    pair.exec(session, work(1_500)).await.unwrap();
    let renter = &pair.renter;
    assert!(
        eventually(PATIENCE, || renter.head(&session).exec_time
            >= Millis(1_500))
        .await,
        "the call is paid in the end"
    );
    pair.close(session).await.unwrap();
    pair.provider.closed(&session).await;
    let during: Vec<Millis> = pair
        .renter
        .chain(&session)
        .iter()
        .map(|a| a.receipt.verify().unwrap().exec_time)
        .filter(|t| *t > Millis::ZERO && *t < Millis(1_000))
        .collect();
    assert!(
        !during.is_empty(),
        "an acknowledged receipt paid for part of the call while it ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_that_withholds_acks_while_calls_run_costs_the_provider_at_most_one_ack_window() {
    let config = SessionConfig {
        receipt_interval: Millis(200),
        ack_timeout: Millis(600),
        ..fast()
    };
    let pair = Pair::start(config).await;
    // The renter acknowledges receipts of session time only: anything that charges for a
    // call never reaches it, so it never acknowledges it.
    pair.renter.rules.add(|point| {
        receipt_of(point)
            .filter(|r| r.exec_time > Millis::ZERO)
            .map(|_| Fault::Drop)
    });
    let session = pair.open(Usdc::from_micros(1_000_000)).await.unwrap();
    // Both of the session's call slots, each as long as the tool allows.
    pair.exec(session, work(2_000)).await.unwrap();
    pair.exec(session, work(2_000)).await.unwrap();
    let provider = pair.provider.closed(&session).await;
    assert_eq!(
        provider.status,
        SessionStatus::Closed(CloseReason::AckTimeout)
    );

    let done = pair.provider.work(&session);
    let now = pair.provider.clock.monotonic();
    let worked = worth(&done, work_pricing(), now, Duration::from_secs(3));
    let unpaid = worked.micros().saturating_sub(provider.amount.micros());
    // One ack window of session time and of both running calls, with room for
    // scheduling on a busy machine.
    let window = Millis(600 + 250);
    let bound = work_pricing().amount_for(Usage {
        session: window,
        exec: Millis(window.get() * 2),
    });
    assert!(
        unpaid <= bound.micros(),
        "unpaid {unpaid} µUSDC of {worked} worked, bound {bound} (acked {})",
        provider.amount
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_worst_case_does_not_fit_the_remaining_budget_is_refused() {
    let pair = Pair::start(fast()).await;
    // A call may run 2 s at 10 µUSDC per millisecond: its worst case is over 20,000.
    let session = pair.open(Usdc::from_micros(10_000)).await.unwrap();
    let refused = pair.exec(session, work(10)).await;
    let error = refused.expect_err("the call does not fit the budget");
    assert!(
        error.to_string().contains("budget"),
        "the refusal says why: {error}"
    );
    pair.close(session).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_below_one_receipt_intervals_worst_case_is_refused() {
    let pair = Pair::start(fast()).await;
    // One interval of 200 ms with both call slots busy costs 200 + 2 × 2,000 µUSDC.
    let refused = pair.open(Usdc::from_micros(1_000)).await;
    match refused {
        Err(orien_daemon::SessionError::Rejected(RejectReason::BudgetTooLow { minimum })) => {
            assert_eq!(minimum, Usdc::from_micros(4_200));
        }
        other => panic!("expected BudgetTooLow, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_delays_an_exit_cannot_charge_past_the_calls_limit() {
    let mut scripted = ScriptedProvider::start("a provider that delays exits", fast()).await;
    let budget = Usdc::from_micros(1_000_000);
    let session = scripted.open(budget, Millis(200), Millis(1_000)).await;
    let opened = tokio::time::Instant::now();
    let exec = scripted.start_call(session, work(10)).await;
    let (hostile, renter) = (&scripted.peer, &scripted.renter);
    let tools = harness::model_tools();
    let tool = &tools[0];

    // Receipts of session time while the call "runs"; the exit comes 7 s later and claims
    // 7 s of execution, far past the tool's 2 s limit.
    let renter_id = renter.key.node_id();
    let pricing = *tool.pricing();
    let mut seq = 0;
    let mut prev = ReceiptHash::GENESIS;
    let mut receipt = |exec_ms: u64| {
        seq += 1;
        let session_time = Millis::from_duration(opened.elapsed());
        let exec_time = Millis(exec_ms);
        let signed = hostile
            .key
            .sign(&UsageReceipt {
                session,
                seq,
                session_time,
                exec_time,
                cpu_time: Millis::ZERO,
                exec_amount: pricing.exec_amount(exec_time),
                amount: pricing
                    .session_amount(session_time)
                    .saturating_add(pricing.exec_amount(exec_time)),
                prev,
                issued_at: SystemClock::new().wall(),
                results: orien_protocol::ResultsCommitment::NONE,
                artefact_amount: Usdc::ZERO,
            })
            .unwrap();
        prev = signed.receipt_hash();
        signed
    };
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(7_000) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = hostile
            .request(renter_id, SessionRequest::Receipt(receipt(0)))
            .await;
        assert!(
            matches!(answer, Ok(SessionResponse::Ack(_))),
            "session-time receipts are honest: {answer:?}"
        );
    }
    let exit = ExecExit {
        exec,
        outcome: ExecOutcome::Exited,
        exit_code: Some(0),
        wall: Millis(7_000),
        cpu: Millis::ZERO,
        peak_memory_bytes: 0,
        stdout_bytes: 0,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
    };
    // Signed as the protocol asks, so the exit reaches the renter's checks.
    let result = hostile
        .key
        .sign(&orien_protocol::ExecResult {
            session,
            seq: 1,
            tool: tool.name().clone(),
            args: orien_protocol::ContentHash::of(work(10).as_bytes()),
            exit: exit.clone(),
            stdout: orien_protocol::ContentHash::of(b""),
            stderr: orien_protocol::ContentHash::of(b""),
            artefacts: Vec::new(),
        })
        .unwrap();
    let _ = hostile
        .request(
            renter_id,
            SessionRequest::Events(ExecEvents {
                session,
                exec,
                seq: 0,
                events: vec![ExecEvent::Exit(exit)],
                result: Some(result),
            }),
        )
        .await;
    let _ = hostile
        .request(renter_id, SessionRequest::Receipt(receipt(7_000)))
        .await;

    let head = renter.head(&session);
    let limit = tool.limits().max_exec.get() + 1_000;
    let tolerance = SessionConfig::default().tolerance.slack.get();
    assert!(
        head.exec_time.get() <= limit + tolerance,
        "the renter acknowledged {} of execution for a call limited to {}",
        head.exec_time,
        tool.limits().max_exec
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_lies_about_an_output_hash_is_caught() {
    let mut scripted =
        ScriptedProvider::start("a provider that lies about its output", fast()).await;
    let budget = Usdc::from_micros(1_000_000);
    let session = scripted.open(budget, Millis(200), Millis(10_000)).await;
    let args = work(10);
    let exec = scripted.start_call(session, args.clone()).await;
    let (hostile, renter) = (&scripted.peer, &scripted.renter);
    let renter_id = renter.key.node_id();
    let tool = harness::model_tools()[0].name().clone();

    // The provider sends "hello\n" and signs that it sent "bye\n".
    let exit = ExecExit {
        exec,
        outcome: ExecOutcome::Exited,
        exit_code: Some(0),
        wall: Millis(5),
        cpu: Millis(1),
        peak_memory_bytes: 0,
        stdout_bytes: 6,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
    };
    let claim = ExecResult {
        session,
        seq: 1,
        tool,
        args: ContentHash::of(args.as_bytes()),
        exit: exit.clone(),
        stdout: ContentHash::of(b"bye\n"),
        stderr: ContentHash::of(b""),
        artefacts: Vec::new(),
    };
    let signed = hostile.key.sign(&claim).unwrap();
    let output = ExecEvent::Output(OutputChunk {
        exec,
        stream: OutputStream::Stdout,
        offset: 0,
        data: b"hello\n".to_vec(),
    });
    let answer = hostile
        .request(
            renter_id,
            SessionRequest::Events(ExecEvents {
                session,
                exec,
                seq: 0,
                events: vec![output, ExecEvent::Exit(exit)],
                result: Some(signed.clone()),
            }),
        )
        .await;
    assert!(
        matches!(&answer, Ok(SessionResponse::Disputed { detail }) if detail.contains("stdout hash")),
        "the renter refuses the batch as a dispute: {answer:?}"
    );

    // The renter's durable record keeps the evidence: the provider's signed claim beside
    // the hash of what it received, which anyone can check.
    let record = renter.store().execution(&exec).unwrap().unwrap();
    assert_eq!(
        record.state,
        orien_ledger::ExecState::Failed(orien_ledger::ExecFailure::Disputed)
    );
    let end = record.end.unwrap();
    assert_eq!(end.result.as_ref(), Some(&signed));
    assert_eq!(end.stdout.kept, b"hello\n");
    let said = end.result.unwrap().verify_from(&hostile.id()).unwrap();
    assert_eq!(said.stdout, ContentHash::of(b"bye\n"));
    assert_ne!(said.stdout.as_bytes(), &end.stdout.sha256);

    // The session is disputed for it, and no receipt is acknowledged any more.
    match renter.head(&session).status {
        SessionStatus::Suspended(orien_ledger::SuspendReason::Dispute { reason, .. }) => {
            assert!(
                matches!(
                    reason,
                    orien_ledger::DisputeReason::FalseResult {
                        fault: orien_ledger::ResultFault::Stdout,
                        ..
                    }
                ),
                "{reason:?}"
            );
        }
        other => panic!("expected a dispute, got {other:?}"),
    }
    let receipt = hostile
        .key
        .sign(&UsageReceipt {
            session,
            seq: 1,
            session_time: Millis(100),
            exec_time: Millis(5),
            cpu_time: Millis(1),
            exec_amount: work_pricing().exec_amount(Millis(5)),
            amount: work_pricing()
                .session_amount(Millis(100))
                .saturating_add(work_pricing().exec_amount(Millis(5))),
            prev: ReceiptHash::GENESIS,
            issued_at: SystemClock::new().wall(),
            results: ResultsCommitment::NONE,
            artefact_amount: Usdc::ZERO,
        })
        .unwrap();
    let answer = hostile
        .request(renter_id, SessionRequest::Receipt(receipt))
        .await;
    assert!(
        matches!(answer, Ok(SessionResponse::Disputed { .. })),
        "{answer:?}"
    );
    assert_eq!(renter.head(&session).seq, 0, "nothing acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_of_another_tool_is_not_charged_for_making_its_container() {
    let dir = tempfile::tempdir().unwrap();
    for side in ["provider", "renter"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
    }
    // The provider sells `work` and `dear` (the same model, 100 µUSDC per millisecond of
    // execution); making `dear` ready in a session takes 3 s, as a slow engine would.
    let tools_toml = format!(
        "{}{}",
        harness::MODEL_TOOLS,
        harness::MODEL_TOOLS
            .replace("[tools.work", "[tools.dear")
            .replace(
                "exec_per_minute = \"0.600000\"",
                "exec_per_minute = \"6.000000\""
            )
    );
    let tools = orien_provider::ProviderConfig::parse(&tools_toml, std::path::Path::new("t.toml"))
        .unwrap()
        .1;
    let config = harness::fast();
    let (provider, sandbox) =
        TestNode::provider_selling(&dir.path().join("provider"), config.clone(), tools).await;
    sandbox.set_prepare_delay(Duration::from_secs(3));
    let renter = TestNode::renter(&dir.path().join("renter"), config, &provider).await;
    let dear = ToolName::new("dear").unwrap();
    provider.publish(&work_tool()).await;
    provider.publish(&dear).await;
    let provider_id = provider.key.node_id();
    let session = renter
        .on(move |node| async move {
            let found = node
                .find_offers(work_tool(), Some(provider_id))
                .await
                .unwrap();
            node.sessions()
                .unwrap()
                .open(found[0].id, Usdc::from_micros(2_000_000), Millis(600_000))
                .await
                .map(|r| r.session)
        })
        .await
        .unwrap();
    let exec = renter
        .on(move |node| async move {
            node.sessions()
                .unwrap()
                .exec(session, Some(dear), work(100))
                .await
        })
        .await
        .unwrap();
    assert!(
        eventually(PATIENCE, || provider
            .store()
            .execution(&exec)
            .unwrap()
            .is_some_and(|r| r.end.is_some()))
        .await,
        "the call ends"
    );
    let record = provider.store().execution(&exec).unwrap().unwrap();
    assert_eq!(record.tool.as_str(), "dear");
    let cost = record.end.unwrap().cost.micros();
    // 100 ms of work at 100 µUSDC/ms is 10,000; the 3 s of making it ready would add
    // 300,000. Anything under 1.5 s of execution leaves room for a busy machine.
    assert!(
        cost > 0 && cost < 150_000,
        "charged {cost} µUSDC: the container's making was metered"
    );
    renter
        .on(move |node| async move { node.sessions().unwrap().close(session).await })
        .await
        .unwrap();
    provider.closed(&session).await;
    assert_eq!(provider.chain(&session), renter.chain(&session));
}
