//! Escrow sessions between in-process nodes (real libp2p, real RocksDB, the modelled
//! sandbox) on a real anvil: a lane whose last receipt only the renter committed resyncs
//! at the next open instead of wedging.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/hostile.rs"]
mod hostile;

use std::time::Duration;

use harness::{Chain, PATIENCE, TestNode, eventually, is_ack_in, work_tool};

/// Receipts every 200 ms; the ack timeout leaves room for the chain's round trips.
fn fast() -> SessionConfig {
    SessionConfig {
        ack_timeout: Millis(3_000),
        ..harness::fast()
    }
}
use orien_daemon::{Fault, LedgerPayments, PaymentChoice, SessionConfig, SessionError};
use orien_ledger::chain::EscrowClient;
use orien_ledger::{Cause, SessionStatus};
use orien_protocol::*;

const USDC: u64 = 1_000_000;

/// Waits until the renter's offer book holds an offer of `work` by `provider` issued
/// after `after` (by gossip or the DHT), and returns it.
async fn fresh_offer(renter: &TestNode, provider: NodeId, after: Timestamp) -> OfferId {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found = renter
            .on(move |node| async move { node.find_offers(work_tool(), Some(provider)).await })
            .await
            .unwrap();
        if let Some(entry) = found.iter().find(|e| e.offer.issued_at >= after) {
            return entry.id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renter never learns a fresh offer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens an escrow session on `offer`.
async fn open_escrow(renter: &TestNode, offer: OfferId) -> Result<SessionId, String> {
    open(renter, offer, PaymentChoice::Escrow, Millis(600_000))
        .await
        .map_err(|e| e.to_string())
}

/// Opens a session of half a USDC on `offer`.
async fn open(
    renter: &TestNode,
    offer: OfferId,
    payment: PaymentChoice,
    max_duration: Millis,
) -> Result<SessionId, SessionError> {
    renter
        .on(move |node| async move {
            node.sessions()
                .unwrap()
                .open_paid(offer, Usdc::from_micros(USDC / 2), max_duration, payment)
                .await
                .map(|r| r.session)
        })
        .await
}

fn rejection(result: Result<SessionId, SessionError>) -> RejectReason {
    match result {
        Err(SessionError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A provider paid on chain and a funded renter, their directories under `dir`.
async fn paid_pair(
    chain: &Chain,
    dir: &std::path::Path,
    config: SessionConfig,
) -> (TestNode, TestNode) {
    for side in ["provider", "renter"] {
        std::fs::create_dir_all(dir.join(side)).unwrap();
    }
    let provider_chain = chain.wallet(Usdc::ZERO, None).await;
    let renter_chain = chain
        .wallet(
            Usdc::from_micros(20 * USDC),
            Some(Usdc::from_micros(10 * USDC)),
        )
        .await;
    let mut provider =
        TestNode::provider_paid(&dir.join("provider"), config.clone(), Some(provider_chain)).await;
    let renter =
        TestNode::renter_paid(&dir.join("renter"), config, &provider, Some(renter_chain)).await;
    provider.bootstrap = renter.node().listen_addrs().to_vec();
    provider.publish(&work_tool()).await;
    (provider, renter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_last_receipt_only_the_renter_committed_resyncs_at_the_next_open() {
    let chain = Chain::start(Duration::from_secs(24 * 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut provider, renter) = paid_pair(&chain, dir.path(), fast()).await;
    let provider_id = provider.key.node_id();
    let offer = fresh_offer(&renter, provider_id, Timestamp(0)).await;

    let first = open_escrow(&renter, offer).await.unwrap();
    assert!(
        eventually(PATIENCE, || provider.head(&first).seq >= 2).await,
        "the first session runs"
    );
    // From now on the provider never hears an ack: the renter commits receipts the
    // provider does not. Then the provider dies.
    provider
        .rules
        .add(|point| is_ack_in(point).then_some(Fault::Drop));
    let committed = provider.head(&first).seq;
    assert!(
        eventually(PATIENCE, || renter.head(&first).seq > committed).await,
        "the renter commits a receipt the provider never hears acknowledged"
    );
    provider.crash().await;
    let _ = renter
        .on(move |node| async move { node.sessions().unwrap().close(first).await })
        .await;
    renter.closed(&first).await;

    provider.rules.clear();
    let restarted = SystemClock::new().wall();
    provider.restart().await;
    provider.publish(&work_tool()).await;
    // Offers of the provider before its crash died with it.
    let offer = fresh_offer(&renter, provider_id, restarted).await;

    // The next session on the same lane opens, runs and closes: nothing is wedged.
    let second = open_escrow(&renter, offer).await.unwrap();
    assert!(
        eventually(PATIENCE, || provider.head(&second).seq >= 3
            && renter.head(&second).seq >= 3)
        .await,
        "receipts of the next session are committed on both sides (provider at {:?})",
        provider.head(&second)
    );
    renter
        .on(move |node| async move { node.sessions().unwrap().close(second).await })
        .await
        .unwrap();
    let provider_head = provider.closed(&second).await;
    assert_eq!(
        provider_head.status,
        SessionStatus::Closed(CloseReason::RenterRequested)
    );
    assert_eq!(provider.chain(&second), renter.chain(&second));

    // Both ledgers count the same lane total; the provider recorded what it missed.
    let lane = provider.store().lanes().unwrap();
    let renter_lane = renter.store().lanes().unwrap();
    assert_eq!(lane.len(), 1);
    assert_eq!(
        lane[0].1.acked, renter_lane[0].1.acked,
        "the lane totals agree"
    );
    let gap: u64 = provider
        .store()
        .postings()
        .unwrap()
        .iter()
        .filter(|p| matches!(p.cause, Cause::LaneGap { .. }))
        .map(|p| u64::try_from(p.lane_debit()).unwrap())
        .sum();
    let missed = renter.head(&first).amount.micros() - provider.head(&first).amount.micros();
    assert!(missed > 0);
    assert_eq!(gap, missed, "the gap is what the provider never committed");
    provider.store().verify().unwrap();
    renter.store().verify().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_renter_asks_to_close_it_is_settled_at_once_and_takes_no_new_session() {
    let chain = Chain::start(Duration::from_secs(24 * 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, renter) = paid_pair(&chain, dir.path(), fast()).await;
    // Enough on the lane that no session tops it up (a top-up cancels a close request).
    let (wallet, settings) = renter.chain.clone().unwrap();
    let escrow = EscrowClient::connect(settings.chain.clone(), &wallet, settings.escrow)
        .await
        .unwrap();
    escrow
        .fund(provider.payout(), Usdc::from_micros(5 * USDC))
        .await
        .unwrap();
    let provider_id = provider.key.node_id();
    let offer = fresh_offer(&renter, provider_id, Timestamp(0)).await;
    let session = open_escrow(&renter, offer).await.unwrap();
    assert!(
        eventually(PATIENCE, || provider.head(&session).seq >= 3).await,
        "the session runs"
    );

    // The renter asks the chain for its deposit back.
    escrow.request_close(provider.payout()).await.unwrap();

    // The provider ends the session and settles everything acknowledged on the lane.
    let head = provider.closed(&session).await;
    assert_eq!(head.status, SessionStatus::Closed(CloseReason::LaneClosing));
    let lane = escrow.lane_id(wallet.address(), provider.payout());
    let acked = provider
        .store()
        .lane_settlement(&lane)
        .unwrap()
        .unwrap()
        .acked;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let on_chain = escrow.lane(lane).await.unwrap();
        if on_chain.settled == acked {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lane is settled ({} of {acked})",
            on_chain.settled
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        renter.head(&session).amount,
        acked,
        "what was acknowledged was paid"
    );

    // A lane that is closing takes no new session.
    let refused = open(&renter, offer, PaymentChoice::Escrow, Millis(600_000)).await;
    assert_eq!(rejection(refused), RejectReason::LaneClosing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_thaw_window_ends_before_the_session_could_is_refused() {
    // A 30-minute thaw window leaves 20 minutes after the settle margin.
    let chain = Chain::start(Duration::from_secs(30 * 60)).await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, renter) = paid_pair(&chain, dir.path(), fast()).await;
    let offer = fresh_offer(&renter, provider.key.node_id(), Timestamp(0)).await;
    let refused = open(&renter, offer, PaymentChoice::Escrow, Millis(25 * 60_000)).await;
    assert_eq!(
        rejection(refused),
        RejectReason::DurationTooLong {
            max: Millis(20 * 60_000)
        }
    );
    let session = open(&renter, offer, PaymentChoice::Escrow, Millis(20 * 60_000))
        .await
        .unwrap();
    renter
        .on(move |node| async move { node.sessions().unwrap().close(session).await })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_on_a_chain_takes_ledger_payments_only_from_the_peers_it_lists() {
    let chain = Chain::start(Duration::from_secs(24 * 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, stranger) = paid_pair(&chain, dir.path(), fast()).await;
    let offer = fresh_offer(&stranger, provider.key.node_id(), Timestamp(0)).await;
    let refused = open(&stranger, offer, PaymentChoice::Ledger, Millis(600_000)).await;
    assert_eq!(rejection(refused), RejectReason::EscrowRequired);

    // An operator who lists a peer serves it on the ledgers.
    let friend_dir = tempfile::tempdir().unwrap();
    let friend_key = NodeKey::generate();
    let listed = SessionConfig {
        ledger_payments: LedgerPayments::Peers([friend_key.node_id()].into()),
        ..fast()
    };
    let provider_chain = chain.wallet(Usdc::ZERO, None).await;
    let generous = TestNode::provider_paid(
        &friend_dir.path().join("provider"),
        listed,
        Some(provider_chain),
    )
    .await;
    let friend = TestNode::renter_with_key(
        &friend_dir.path().join("renter"),
        fast(),
        &generous,
        friend_key,
    )
    .await;
    generous.publish(&work_tool()).await;
    let offer = fresh_offer(&friend, generous.key.node_id(), Timestamp(0)).await;
    let session = open(&friend, offer, PaymentChoice::Ledger, Millis(600_000))
        .await
        .unwrap();
    assert!(eventually(PATIENCE, || generous.head(&session).seq >= 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_holds_at_most_the_providers_cap_of_sessions_at_once() {
    let config = SessionConfig {
        max_sessions_per_peer: 2,
        ..fast()
    };
    let pair = harness::Pair::start(config).await;
    let budget = Usdc::from_micros(USDC / 2);
    let first = pair.open(budget).await.unwrap();
    let _second = pair.open(budget).await.unwrap();
    let third = pair.open(budget).await;
    assert_eq!(rejection(third), RejectReason::TooManySessions { max: 2 });
    pair.close(first).await.unwrap();
    pair.provider.closed(&first).await;
    pair.open(budget)
        .await
        .expect("a closed session frees its place");
}

/// Both ledgers hold `total` acknowledged on `lane`, with a voucher for exactly it and
/// nothing waiting above it, and both verify.
fn assert_lane_total_on_both_sides(
    provider: &TestNode,
    renter: &TestNode,
    lane: LaneId,
    total: u64,
) {
    for side in [provider, renter] {
        let state = side.store().lane_settlement(&lane).unwrap().unwrap();
        assert_eq!(state.acked.micros(), total);
        assert_eq!(
            state.latest_voucher.map(|v| v.cumulative.micros()),
            Some(total)
        );
        side.store().verify().unwrap();
    }
    assert_eq!(provider.store().ahead_voucher(&lane).unwrap(), None);
}

/// The provider settles every unpaid voucher now.
async fn settle_now(provider: &TestNode) {
    let payments = provider
        .on(|node| async move { node.sessions().unwrap().payments().cloned() })
        .await
        .unwrap();
    payments.settle().await.unwrap();
}

/// The session an ack a node receives acknowledges, if the point is one.
fn ack_in_of(point: &orien_daemon::Point<'_>) -> Option<SessionId> {
    match point {
        orien_daemon::Point::InboundResponse {
            response: SessionResponse::Ack(ack),
            ..
        } => ack.verify().ok().map(|a| a.session),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_at_once_on_one_lane_settle_to_the_micro_usdc() {
    let chain = Chain::start(Duration::from_secs(24 * 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, renter) = paid_pair(&chain, dir.path(), fast()).await;
    let offer = fresh_offer(&renter, provider.key.node_id(), Timestamp(0)).await;

    // Two sessions with one provider: one escrow lane, both open at once. The first
    // session's acks reach the provider late, so the second opens while the renter's
    // total is ahead of the provider's (nothing is lost: no gap may be recorded), and its
    // vouchers, which count the first's receipts, overtake them.
    let first = open_escrow(&renter, offer).await.unwrap();
    provider.rules.add(move |point| {
        (ack_in_of(point) == Some(first)).then_some(Fault::Delay(Duration::from_millis(700)))
    });
    assert!(
        eventually(PATIENCE, || renter.head(&first).seq >= 2).await,
        "the first session runs"
    );
    let second = open_escrow(&renter, offer).await.unwrap();
    let (wallet, settings) = renter.chain.clone().unwrap();
    let escrow = EscrowClient::connect(settings.chain.clone(), &wallet, settings.escrow)
        .await
        .unwrap();
    let lane = escrow.lane_id(wallet.address(), provider.payout());
    // The deposit holds both budgets (auto-funded), and a third session whose budget the
    // cap cannot add on top of the two open ones is refused before the provider is asked.
    assert!(escrow.lane(lane).await.unwrap().deposit.micros() >= USDC);
    let greedy = renter
        .on(move |node| async move {
            node.sessions()
                .unwrap()
                .open_paid(
                    offer,
                    Usdc::from_micros(9 * USDC + USDC / 2),
                    Millis(600_000),
                    PaymentChoice::Escrow,
                )
                .await
        })
        .await;
    match greedy {
        Err(SessionError::Payment(orien_daemon::payments::PaymentError::InsufficientDeposit {
            held,
            ..
        })) => assert_eq!(held.micros(), USDC, "the two open budgets are held"),
        other => panic!("expected a refusal for the deposit, got {other:?}"),
    }
    for session in [first, second] {
        renter
            .on(move |node| async move {
                node.sessions()
                    .unwrap()
                    .exec(session, None, harness::work(400))
                    .await
            })
            .await
            .unwrap();
    }
    assert!(
        eventually(PATIENCE, || provider
            .store()
            .ahead_voucher(&lane)
            .unwrap()
            .is_some())
        .await,
        "a voucher reaches the provider before a receipt it pays for"
    );
    assert!(
        eventually(PATIENCE, || provider.head(&first).seq >= 4
            && provider.head(&second).seq >= 8)
        .await,
        "both sessions run side by side"
    );
    provider.rules.clear();
    for session in [first, second] {
        renter
            .on(move |node| async move { node.sessions().unwrap().close(session).await })
            .await
            .unwrap();
        provider.closed(&session).await;
    }

    // The provider's profile counts both sessions, as the renter's own ledger does.
    let provider_id = provider.key.node_id();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let counted = renter
            .on(move |node| async move { node.provider(provider_id).await })
            .await
            .unwrap()
            .map(|e| e.profile.sessions_completed);
        if counted == Some(2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the profile counts {counted:?} completed sessions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each session's chain is the same on both sides, and the lane's total is the sum of
    // both sessions on both ledgers, with the latest voucher for exactly that.
    let total = renter.head(&first).amount.micros() + renter.head(&second).amount.micros();
    for session in [first, second] {
        assert_eq!(provider.chain(&session), renter.chain(&session));
    }
    assert_lane_total_on_both_sides(&provider, &renter, lane, total);
    for side in [&provider, &renter] {
        let postings = side.store().postings().unwrap();
        assert!(
            !postings
                .iter()
                .any(|p| matches!(p.cause, Cause::LaneGap { .. })),
            "no receipt was lost, so no gap is recorded"
        );
    }

    // Settled on chain: the lane, the provider's earnings, the fee and the reserve are the
    // ledger's split of the total to the micro-USDC.
    settle_now(&provider).await;
    let split = Split::of(Usdc::from_micros(total));
    assert_eq!(escrow.lane(lane).await.unwrap().settled.micros(), total);
    assert_eq!(
        escrow.earnings(provider.payout()).await.unwrap().balance,
        split.provider()
    );
    assert_eq!(
        escrow.protocol_balances().await.unwrap(),
        (split.fee(), split.reserve())
    );
    let settled = provider
        .store()
        .lane_settlement(&lane)
        .unwrap()
        .unwrap()
        .settled;
    assert_eq!(
        settled.micros(),
        total,
        "the provider's ledger saw the settlement"
    );
    provider.store().verify().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_counts_every_open_session_of_a_lane_against_its_deposit() {
    let chain = Chain::start(Duration::from_secs(24 * 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let provider_chain = chain.wallet(Usdc::ZERO, None).await;
    let provider = TestNode::provider_paid(dir.path(), fast(), Some(provider_chain)).await;
    let offer = provider.publish(&work_tool()).await;
    // A renter that skips its own deposit check: a scripted peer whose wallet put one
    // half-USDC session's worth on the lane.
    let peer = hostile::HostilePeer::start(NodeKey::generate()).await;
    let (wallet, settings) = chain.wallet(Usdc::from_micros(2 * USDC), None).await;
    let escrow = EscrowClient::connect(settings.chain.clone(), &wallet, settings.escrow)
        .await
        .unwrap();
    escrow
        .fund(provider.payout(), Usdc::from_micros(USDC / 2))
        .await
        .unwrap();
    let open = |budget: u64| {
        SessionRequest::Open(OpenSession {
            offer,
            renter: peer.id(),
            budget: Usdc::from_micros(budget),
            max_duration: Millis(600_000),
            payment: PaymentLane::Escrow {
                chain_id: settings.chain.chain_id,
                contract: settings.escrow,
                lane: escrow.lane_id(wallet.address(), provider.payout()),
                renter_wallet: wallet.address(),
            },
            lane: LaneHead::default(),
        })
    };
    let addr = provider.node().listen_addrs()[0]
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(
            provider.key.node_id().to_peer_id(),
        ));
    peer.dial(addr).await;
    let provider_id = provider.key.node_id();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let first = loop {
        match peer.request(provider_id, open(USDC / 2)).await {
            Ok(answer) => break answer,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the provider never answers: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        matches!(first, SessionResponse::Accepted(_)),
        "the deposit holds one budget: {first:?}"
    );
    // The same lane again while the first session is open: its budget is held.
    match peer.request(provider_id, open(USDC / 4)).await.unwrap() {
        SessionResponse::Rejected(rejected) => assert_eq!(
            rejected.reason,
            RejectReason::InsufficientDeposit {
                available: Usdc::ZERO
            }
        ),
        other => panic!("expected a refusal for the deposit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_of_a_shared_lane_whose_acks_were_lost_are_paid_once_the_lane_is_idle() {
    let chain = Chain::start(Duration::from_secs(24 * 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, renter) = paid_pair(&chain, dir.path(), fast()).await;
    let offer = fresh_offer(&renter, provider.key.node_id(), Timestamp(0)).await;
    let first = open_escrow(&renter, offer).await.unwrap();
    let second = open_escrow(&renter, offer).await.unwrap();
    assert!(
        eventually(PATIENCE, || provider.head(&first).seq >= 2
            && provider.head(&second).seq >= 2)
        .await,
        "both sessions run"
    );
    // From now on the provider never hears the first session's acks: the renter commits
    // a receipt the provider does not, and the second session's vouchers count it.
    provider
        .rules
        .add(move |point| (ack_in_of(point) == Some(first)).then_some(Fault::Drop));
    let committed = provider.head(&first).seq;
    assert!(
        eventually(PATIENCE, || renter.head(&first).seq > committed).await,
        "the renter commits a receipt the provider never hears acknowledged"
    );
    let ended = provider.closed(&first).await;
    assert_eq!(ended.status, SessionStatus::Closed(CloseReason::AckTimeout));
    let (wallet, _) = renter.chain.clone().unwrap();
    let lane = provider
        .store()
        .lanes()
        .unwrap()
        .iter()
        .find(|(_, s)| s.key.renter == renter.key.node_id())
        .map(|(id, _)| *id)
        .unwrap();
    assert!(
        eventually(PATIENCE, || provider
            .store()
            .ahead_voucher(&lane)
            .unwrap()
            .is_some())
        .await,
        "the second session's vouchers wait above the provider's total"
    );
    let running = provider.head(&second).seq;
    assert!(eventually(PATIENCE, || provider.head(&second).seq >= running + 2).await);
    renter
        .on(move |node| async move { node.sessions().unwrap().close(second).await })
        .await
        .unwrap();
    provider.closed(&second).await;
    renter.closed(&first).await;

    // The lane went idle: what the lost ack's receipt was worth is the provider's gap, and
    // both ledgers hold the same total with a voucher for exactly it.
    let total = renter.head(&first).amount.micros() + renter.head(&second).amount.micros();
    let missed = renter.head(&first).amount.micros() - provider.head(&first).amount.micros();
    assert!(missed > 0);
    assert_lane_total_on_both_sides(&provider, &renter, lane, total);
    let gap: u64 = provider
        .store()
        .postings()
        .unwrap()
        .iter()
        .filter(|p| matches!(p.cause, Cause::LaneGapAtEnd { .. }))
        .map(|p| u64::try_from(p.lane_debit()).unwrap())
        .sum();
    assert_eq!(gap, missed, "the gap is what the provider never committed");
    settle_now(&provider).await;
    let (_, settings) = renter.chain.clone().unwrap();
    let escrow = EscrowClient::connect(settings.chain.clone(), &wallet, settings.escrow)
        .await
        .unwrap();
    assert_eq!(escrow.lane(lane).await.unwrap().settled.micros(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_withdraws_its_earnings_on_its_own_once_they_reach_its_threshold() {
    let chain = Chain::start(Duration::from_secs(24 * 3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (provider, renter) = paid_pair(&chain, dir.path(), fast()).await;
    let offer = fresh_offer(&renter, provider.key.node_id(), Timestamp(0)).await;
    let session = open_escrow(&renter, offer).await.unwrap();
    assert!(
        eventually(PATIENCE, || provider.head(&session).seq >= 2).await,
        "the session runs"
    );
    renter
        .on(move |node| async move { node.sessions().unwrap().close(session).await })
        .await
        .unwrap();
    let earned = Split::of(provider.closed(&session).await.amount).provider();
    assert!(!earned.is_zero());
    let payments = provider
        .on(|node| async move { node.sessions().unwrap().payments().cloned() })
        .await
        .unwrap();
    let token = payments.escrow().token();
    assert_eq!(
        token.balance_of(payments.wallet()).await.unwrap(),
        Usdc::ZERO
    );

    // Settle anything unsettled, withdraw from half the earnings up: nobody asks.
    let settler = payments
        .spawn_settler(
            None,
            Some(Usdc::from_micros(1)),
            Some(Usdc::from_micros(earned.micros() / 2)),
        )
        .expect("a threshold runs the settler");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let withdrawn = loop {
        let held = token.balance_of(payments.wallet()).await.unwrap();
        if !held.is_zero() || tokio::time::Instant::now() > deadline {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    settler.abort();
    // The escrow may keep one micro-USDC per lane back (see `Earnings::withdrawable`).
    assert!(
        withdrawn <= earned && withdrawn.micros() + 1 >= earned.micros(),
        "withdrew {withdrawn} of {earned}"
    );
    let left = payments.escrow().earnings(payments.wallet()).await.unwrap();
    assert!(left.withdrawable.is_zero(), "{left:?}");
}
