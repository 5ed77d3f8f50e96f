//! Settlement on a real anvil: lanes funded once and reused across many sessions, vouchers
//! settled in batches, and the on-chain 90/7/3 split equal to `Split::delta` to the
//! micro-USDC, including the 1 µUSDC step onto a multiple of 100 where the provider's
//! cumulative share goes down by one.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod chain_support;

use std::collections::BTreeMap;

use chain_support::{Actor, Rng, THAW, USDC, World};
use orien_ledger::chain::SkipReason;
use orien_protocol::{LaneId, Split, Usdc, Voucher};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Off-chain totals, posted receipt by receipt as the ledger does: `Split::delta` of each
/// new cumulative amount against the previous one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    provider: i128,
    fee: u64,
    reserve: u64,
}

impl Totals {
    fn post(&mut self, before: Usdc, after: Usdc) {
        let delta = Split::delta(before, after).unwrap();
        self.provider += delta.provider_micros();
        self.fee += delta.fee().micros();
        self.reserve += delta.reserve().micros();
    }
}

/// The next cumulative amount of a session's receipt: mostly ordinary increments, sometimes
/// the 1 µUSDC step onto a multiple of 100.
fn next_cumulative(rng: &mut Rng, current: u64) -> u64 {
    match rng.below(6) {
        0 if current % 100 == 99 => current + 1,
        0 => current + (99 - current % 100), // land on …99 so the next step can be the 1 µUSDC one
        1 => current + 1,
        _ => current + 1 + rng.below(25_000),
    }
}

#[tokio::test]
async fn many_sessions_settle_to_the_exact_off_chain_split() {
    let world = World::start().await;
    let providers = [world.actor(0).await, world.actor(0).await];
    let mut renters = Vec::new();
    for _ in 0..4 {
        renters.push(world.actor(1_000 * USDC).await);
    }
    // Every renter funds one lane per provider, once.
    let deposit = Usdc::from_micros(200 * USDC);
    for renter in &renters {
        for provider in &providers {
            let funded = renter
                .escrow
                .fund(provider.address(), deposit)
                .await
                .unwrap();
            assert_eq!(funded.deposit, deposit);
        }
    }

    let mut rng = Rng(0x5eed_0f0e_1e00);
    let mut cumulative: BTreeMap<LaneId, u64> = BTreeMap::new();
    let mut latest: BTreeMap<LaneId, Voucher> = BTreeMap::new();
    let mut off_chain = [Totals::default(), Totals::default()];
    let mut settled_batches = 0;
    // Rounds of sessions: each renter runs a session with each provider, every receipt
    // acknowledged with a voucher that the provider verifies before "serving" more.
    for round in 0..6 {
        for renter in &renters {
            for (p, provider) in providers.iter().enumerate() {
                let lane = renter.escrow.lane_id(renter.address(), provider.address());
                let receipts = 1 + rng.below(8);
                for _ in 0..receipts {
                    let before = *cumulative.get(&lane).unwrap_or(&0);
                    let after = next_cumulative(&mut rng, before);
                    let voucher = renter
                        .escrow
                        .sign_voucher(provider.address(), Usdc::from_micros(after));
                    provider
                        .escrow
                        .domain()
                        .verify_next(
                            &voucher,
                            renter.address(),
                            provider.address(),
                            Usdc::from_micros(before),
                            Usdc::from_micros(after),
                        )
                        .unwrap();
                    off_chain[p].post(Usdc::from_micros(before), Usdc::from_micros(after));
                    cumulative.insert(lane, after);
                    latest.insert(lane, voucher);
                }
            }
        }
        // Providers settle every other round, one batch each with the latest voucher of
        // each of their lanes.
        if round % 2 == 1 {
            for provider in &providers {
                let batch: Vec<Voucher> = renters
                    .iter()
                    .map(|r| latest[&r.escrow.lane_id(r.address(), provider.address())])
                    .collect();
                let outcome = provider.escrow.settle_batch(&batch).await.unwrap();
                assert_eq!(outcome.skipped, vec![], "nothing is stale or invalid here");
                settled_batches += 1;
            }
        }
    }
    assert_eq!(settled_batches, 6);

    // On-chain balances equal the off-chain postings to the micro-USDC.
    let mut expected_fee = 0;
    let mut expected_reserve = 0;
    for (p, provider) in providers.iter().enumerate() {
        let earnings = world.escrow.earnings(provider.address()).await.unwrap();
        assert_eq!(i128::from(earnings.balance.micros()), off_chain[p].provider);
        expected_fee += off_chain[p].fee;
        expected_reserve += off_chain[p].reserve;
    }
    let (fees, reserves) = world.escrow.protocol_balances().await.unwrap();
    assert_eq!(fees.micros(), expected_fee);
    assert_eq!(reserves.micros(), expected_reserve);
    for (lane, total) in &cumulative {
        let state = world.escrow.lane(*lane).await.unwrap();
        assert_eq!(state.settled.micros(), *total);
        assert_eq!(state.deposit, deposit);
    }

    // Everyone withdraws; token balances are the exact split.
    for (p, provider) in providers.iter().enumerate() {
        let earnings = world.escrow.earnings(provider.address()).await.unwrap();
        let at_risk = renters
            .iter()
            .filter(|r| cumulative[&r.escrow.lane_id(r.address(), provider.address())] % 100 == 99)
            .count() as u64;
        assert_eq!(
            earnings.withdrawable.micros(),
            earnings.balance.micros() - at_risk
        );
        let (amount, _) = provider.escrow.withdraw_earnings().await.unwrap();
        assert_eq!(amount, earnings.withdrawable);
        let held = provider.usdc.balance_of(provider.address()).await.unwrap();
        assert_eq!(i128::from(held.micros() + at_risk), off_chain[p].provider);
    }
    let (fee_paid, _) = world.treasury().await.withdraw_fees().await.unwrap();
    let (reserve_paid, _) = world.reserve().await.withdraw_reserve().await.unwrap();
    assert_eq!(fee_paid.micros(), expected_fee);
    assert_eq!(reserve_paid.micros(), expected_reserve);
    assert_eq!(
        world
            .usdc
            .balance_of(world.treasury.address())
            .await
            .unwrap()
            .micros(),
        expected_fee
    );
    assert_eq!(
        world
            .usdc
            .balance_of(world.reserve.address())
            .await
            .unwrap()
            .micros(),
        expected_reserve
    );
}

#[tokio::test]
async fn provider_share_step_down_is_held_back_never_lost() {
    let world = World::start().await;
    let provider = world.actor(0).await;
    let renter = world.actor(10 * USDC).await;
    renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(USDC))
        .await
        .unwrap();
    let settle = |amount: u64| {
        let voucher = renter
            .escrow
            .sign_voucher(provider.address(), Usdc::from_micros(amount));
        let escrow = provider.escrow.clone();
        async move { escrow.settle_batch(&[voucher]).await.unwrap() }
    };

    // split(99) = 91 / 6 / 2: the provider is credited 91 but may withdraw only 90, because
    // a 1 µUSDC step onto 100 will lower its cumulative share to 90.
    let first = settle(99).await;
    assert_eq!(
        (
            first.provider_credit,
            first.fee.micros(),
            first.reserve.micros()
        ),
        (91, 6, 2)
    );
    let earnings = world.escrow.earnings(provider.address()).await.unwrap();
    assert_eq!(
        (earnings.balance.micros(), earnings.withdrawable.micros()),
        (91, 90)
    );
    let (withdrawn, _) = provider.escrow.withdraw_earnings().await.unwrap();
    assert_eq!(withdrawn.micros(), 90);

    // split(100) = 90 / 7 / 3: the provider part of the delta is −1, taken from the held µUSDC.
    let second = settle(100).await;
    assert_eq!(
        (
            second.provider_credit,
            second.fee.micros(),
            second.reserve.micros()
        ),
        (-1, 1, 1)
    );
    let delta = Split::delta(Usdc::from_micros(99), Usdc::from_micros(100)).unwrap();
    assert_eq!(second.provider_credit, delta.provider_micros());
    let earnings = world.escrow.earnings(provider.address()).await.unwrap();
    assert_eq!(
        (earnings.balance.micros(), earnings.withdrawable.micros()),
        (0, 0)
    );

    // Nothing lost, nothing invented: 90 + 7 + 3 = 100 left the lane.
    let (fees, reserves) = world.escrow.protocol_balances().await.unwrap();
    assert_eq!((fees.micros(), reserves.micros()), (7, 3));
    let escrow_holds = world.usdc.balance_of(world.escrow.address()).await.unwrap();
    assert_eq!(escrow_holds.micros(), USDC - 100 + 7 + 3);
}

#[tokio::test]
async fn renter_takes_back_the_rest_after_the_thaw_window_and_the_provider_settles_within_it() {
    let world = World::start().await;
    let provider = world.actor(0).await;
    let renter = world.actor(50 * USDC).await;
    let lane = renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(20 * USDC))
        .await
        .unwrap()
        .lane;
    // A top-up reuses the same lane.
    let topped = renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(5 * USDC))
        .await
        .unwrap();
    assert_eq!((topped.lane, topped.deposit.micros()), (lane, 25 * USDC));

    let voucher = renter
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(3 * USDC + 17));
    let (thaw_ends, _) = renter
        .escrow
        .request_close(provider.address())
        .await
        .unwrap();
    let state = world.escrow.lane(lane).await.unwrap();
    assert_eq!(
        state.close_requested_at.map(|t| t + THAW.as_secs()),
        Some(thaw_ends)
    );

    // The provider still settles its last voucher during the thaw window.
    let settled = provider.escrow.settle_batch(&[voucher]).await.unwrap();
    assert_eq!(settled.paid().micros(), 3 * USDC + 17);

    world.anvil.advance_time(THAW).await.unwrap();
    let (refund, _) = renter
        .escrow
        .finish_close(provider.address())
        .await
        .unwrap();
    assert_eq!(refund.micros(), 25 * USDC - (3 * USDC + 17));
    assert_eq!(
        renter
            .usdc
            .balance_of(renter.address())
            .await
            .unwrap()
            .micros(),
        50 * USDC - (3 * USDC + 17)
    );
    let state = world.escrow.lane(lane).await.unwrap();
    assert_eq!(state.unspent(), Usdc::ZERO);
    assert_eq!(state.close_requested_at, None);

    // The same voucher cannot pay again after the lane is refunded and reused.
    renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(USDC))
        .await
        .unwrap();
    let again = provider.escrow.settle_batch(&[voucher]).await.unwrap();
    assert_eq!(again.settled, vec![]);
    assert_eq!(again.skipped[0].reason, SkipReason::Stale);
}

#[tokio::test]
async fn fund_with_permit_opens_a_lane_without_an_approval() {
    let world = World::start().await;
    let provider = world.actor(0).await;
    let renter = world.actor(10 * USDC).await;
    let deadline = u64::MAX / 2;
    let funded = renter
        .escrow
        .fund_with_permit(provider.address(), Usdc::from_micros(4 * USDC), deadline)
        .await
        .unwrap();
    assert_eq!(funded.deposit.micros(), 4 * USDC);
    assert_eq!(
        renter
            .usdc
            .balance_of(renter.address())
            .await
            .unwrap()
            .micros(),
        6 * USDC
    );
}

/// One random case: increments of a lane's cumulative amount, grouped into batches.
fn case_strategy() -> impl Strategy<Value = (Vec<u64>, Vec<usize>, Vec<u64>)> {
    let increment = prop_oneof![
        3 => 1..=3u64,
        3 => 1..=400u64,
        1 => Just(99u64),
        1 => 1_000..=5_000_000u64,
    ];
    (
        proptest::collection::vec(increment, 1..8),
        proptest::collection::vec(1..=3usize, 8),
        proptest::collection::vec(any::<u64>(), 3),
    )
}

#[test]
fn contract_split_equals_split_delta_for_random_cumulative_sequences() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let world = rt.block_on(World::start());
    let provider: Actor = rt.block_on(world.actor(0));
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case_strategy(), |(increments, groups, totals)| {
            rt.block_on(async {
                // A fresh renter, hence a fresh lane, per case.
                let renter = world.actor(100 * USDC).await;
                renter
                    .escrow
                    .fund(provider.address(), Usdc::from_micros(100 * USDC))
                    .await
                    .unwrap();
                let mut cumulative = 0u64;
                let mut vouchers = Vec::new();
                for step in &increments {
                    cumulative += step;
                    vouchers.push(
                        renter
                            .escrow
                            .sign_voucher(provider.address(), Usdc::from_micros(cumulative)),
                    );
                }
                // Submit the vouchers in groups: a batch may hold several vouchers of one
                // lane; each supersedes the one before.
                let mut before = 0u64;
                let mut rest = vouchers.as_slice();
                for group in groups.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (batch, tail) = rest.split_at((*group).min(rest.len()));
                    rest = tail;
                    let after = batch[batch.len() - 1].cumulative.micros();
                    let earnings_before = world.escrow.earnings(provider.address()).await.unwrap();
                    let (fees_before, reserves_before) =
                        world.escrow.protocol_balances().await.unwrap();
                    let outcome = provider.escrow.settle_batch(batch).await.unwrap();
                    let delta =
                        Split::delta(Usdc::from_micros(before), Usdc::from_micros(after)).unwrap();
                    prop_assert_eq!(outcome.provider_credit, delta.provider_micros());
                    prop_assert_eq!(outcome.fee, delta.fee());
                    prop_assert_eq!(outcome.reserve, delta.reserve());
                    let earnings = world.escrow.earnings(provider.address()).await.unwrap();
                    let (fees, reserves) = world.escrow.protocol_balances().await.unwrap();
                    prop_assert_eq!(
                        i128::from(earnings.balance.micros())
                            - i128::from(earnings_before.balance.micros()),
                        delta.provider_micros()
                    );
                    prop_assert_eq!(fees.micros() - fees_before.micros(), delta.fee().micros());
                    prop_assert_eq!(
                        reserves.micros() - reserves_before.micros(),
                        delta.reserve().micros()
                    );
                    before = after;
                }
                // The contract's pure split agrees with `Split::of` anywhere in u64.
                for total in totals.iter().copied().chain([99, 100, u64::MAX]) {
                    let (p, f, r) = world
                        .escrow
                        .split_of(Usdc::from_micros(total))
                        .await
                        .unwrap();
                    let split = Split::of(Usdc::from_micros(total));
                    prop_assert_eq!((p, f, r), (split.provider(), split.fee(), split.reserve()));
                }
                Ok(())
            })
        })
        .unwrap();
}
