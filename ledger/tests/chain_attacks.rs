//! Attacks on the escrow, each on a real anvil, each rejected or harmless: replayed, foreign,
//! tampered, malleable and cross-domain vouchers, settlement by a third party, reentrancy
//! through a malicious token, an early renter withdrawal, and a batch with one bad item.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod chain_support;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolError};
use chain_support::{Actor, USDC, World, eth, funded_lane};
use orien_ledger::chain::bindings::OrienEscrow;
use orien_ledger::chain::{
    BatchSettlement, ChainError, EscrowClient, EscrowParams, SkipReason, VoucherDomain, Wallet,
};
use orien_protocol::{EvmAddress, EvmSignature, Usdc, Voucher};

alloy::sol!(
    #[sol(rpc)]
    ReentrantToken,
    "contracts/out/ReentrantToken.json"
);

fn skipped_reasons(batch: &BatchSettlement) -> Vec<SkipReason> {
    batch.skipped.iter().map(|s| s.reason).collect()
}

async fn provider_balance(world: &World, provider: &Actor) -> u64 {
    world
        .escrow
        .earnings(provider.address())
        .await
        .unwrap()
        .balance
        .micros()
}

fn reverted_with(error: &ChainError, name: &str) -> bool {
    matches!(error, ChainError::Reverted { reason, .. } if reason.contains(name))
}

#[tokio::test]
async fn replayed_old_voucher_pays_nothing() {
    let (world, provider, renter) = funded_lane(10).await;
    let old = renter
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(300));
    let new = renter
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(500));
    provider.escrow.settle_batch(&[new]).await.unwrap();
    let paid_before = provider_balance(&world, &provider).await;

    let replay = provider.escrow.settle_batch(&[old, new]).await.unwrap();
    assert_eq!(replay.settled, vec![]);
    assert_eq!(
        skipped_reasons(&replay),
        [SkipReason::Stale, SkipReason::Stale]
    );
    assert_eq!(provider_balance(&world, &provider).await, paid_before);
}

#[tokio::test]
async fn voucher_for_another_lane_pays_nothing() {
    let (world, provider, renter) = funded_lane(10).await;
    let other_provider = world.actor(0).await;
    renter
        .escrow
        .fund(other_provider.address(), Usdc::from_micros(USDC))
        .await
        .unwrap();
    // Signed for the lane to the other provider, submitted by this one.
    let foreign = renter
        .escrow
        .sign_voucher(other_provider.address(), Usdc::from_micros(700));
    let batch = provider.escrow.settle_batch(&[foreign]).await.unwrap();
    assert_eq!(skipped_reasons(&batch), [SkipReason::InvalidVoucher]);
    // The same signature relabelled with this provider's lane id recovers another key.
    let relabelled = Voucher {
        lane: renter.escrow.lane_id(renter.address(), provider.address()),
        ..foreign
    };
    let batch = provider.escrow.settle_batch(&[relabelled]).await.unwrap();
    assert_eq!(skipped_reasons(&batch), [SkipReason::InvalidVoucher]);
    assert_eq!(provider_balance(&world, &provider).await, 0);
}

#[tokio::test]
async fn tampered_amount_pays_nothing() {
    let (world, provider, renter) = funded_lane(10).await;
    let mut voucher = renter
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(1_000));
    voucher.cumulative = Usdc::from_micros(9_000_000);
    let batch = provider.escrow.settle_batch(&[voucher]).await.unwrap();
    assert_eq!(skipped_reasons(&batch), [SkipReason::InvalidVoucher]);
    assert_eq!(provider_balance(&world, &provider).await, 0);
}

#[tokio::test]
async fn high_s_twin_and_zero_signatures_pay_nothing() {
    let (world, provider, renter) = funded_lane(10).await;
    let voucher = renter
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(1_000));
    // (r, n − s, v ^ 1) recovers the same key: refused because s is in the upper half.
    let signature = alloy::primitives::Signature::from_raw_array(&voucher.signature.0).unwrap();
    let order = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let twin =
        alloy::primitives::Signature::new(signature.r(), order - signature.s(), !signature.v());
    let high_s = Voucher {
        signature: EvmSignature(twin.as_bytes()),
        ..voucher
    };
    assert_eq!(
        twin.recover_address_from_prehash(&B256::from(
            renter
                .escrow
                .domain()
                .signing_hash(voucher.lane, voucher.cumulative)
        ))
        .unwrap()
        .into_array(),
        *renter.address().as_bytes(),
        "the twin really is a valid signature by the renter"
    );
    let mut zero = [0u8; 65];
    zero[64] = 27;
    let zero_signature = Voucher {
        signature: EvmSignature(zero),
        ..voucher
    };
    let batch = provider
        .escrow
        .settle_batch(&[high_s, zero_signature])
        .await
        .unwrap();
    assert_eq!(
        skipped_reasons(&batch),
        [SkipReason::InvalidVoucher, SkipReason::InvalidVoucher]
    );
    assert_eq!(provider_balance(&world, &provider).await, 0);
    // The original low-s signature is fine.
    let batch = provider.escrow.settle_batch(&[voucher]).await.unwrap();
    assert_eq!(batch.paid().micros(), 1_000);
}

#[tokio::test]
async fn signature_for_another_chain_or_contract_pays_nothing() {
    let (world, provider, renter) = funded_lane(10).await;
    let lane = renter.escrow.lane_id(renter.address(), provider.address());
    let here = renter.escrow.domain();
    let other_chain = VoucherDomain::new(1, here.escrow());
    let other_contract = VoucherDomain::new(here.chain_id(), EvmAddress::from_bytes([0xee; 20]));
    let amount = Usdc::from_micros(2_000);
    let vouchers = [
        other_chain.sign(&renter.wallet, lane, amount),
        other_contract.sign(&renter.wallet, lane, amount),
    ];
    let batch = provider.escrow.settle_batch(&vouchers).await.unwrap();
    assert_eq!(
        skipped_reasons(&batch),
        [SkipReason::InvalidVoucher, SkipReason::InvalidVoucher]
    );
    assert_eq!(provider_balance(&world, &provider).await, 0);
}

#[tokio::test]
async fn settlement_by_a_third_party_pays_nothing() {
    let (world, provider, renter) = funded_lane(10).await;
    let thief = world.actor(0).await;
    let voucher = renter
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(5_000));
    let batch = thief.escrow.settle_batch(&[voucher]).await.unwrap();
    assert_eq!(skipped_reasons(&batch), [SkipReason::InvalidVoucher]);
    assert_eq!(provider_balance(&world, &thief).await, 0);
    let lane = world.escrow.lane(voucher.lane).await.unwrap();
    assert_eq!(lane.settled, Usdc::ZERO);
    // The lane's provider redeems the same voucher.
    let batch = provider.escrow.settle_batch(&[voucher]).await.unwrap();
    assert_eq!(batch.paid().micros(), 5_000);
    // Only the treasury and the reserve may withdraw their balances.
    let error = thief.escrow.withdraw_fees().await.unwrap_err();
    assert!(reverted_with(&error, "NotPermitted"), "{error}");
    let error = thief.escrow.withdraw_reserve().await.unwrap_err();
    assert!(reverted_with(&error, "NotPermitted"), "{error}");
}

#[tokio::test]
async fn renter_cannot_withdraw_before_the_thaw_window_ends() {
    let (world, provider, renter) = funded_lane(10).await;
    let error = renter
        .escrow
        .finish_close(provider.address())
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "CloseNotRequested"), "{error}");
    renter
        .escrow
        .request_close(provider.address())
        .await
        .unwrap();
    let error = renter
        .escrow
        .finish_close(provider.address())
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "ThawNotOver"), "{error}");
    world
        .anvil
        .advance_time(chain_support::THAW - std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let error = renter
        .escrow
        .finish_close(provider.address())
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "ThawNotOver"), "{error}");
    let error = renter
        .escrow
        .request_close(provider.address())
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "CloseAlreadyRequested"), "{error}");
    world
        .anvil
        .advance_time(std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let (refund, _) = renter
        .escrow
        .finish_close(provider.address())
        .await
        .unwrap();
    assert_eq!(refund.micros(), 10 * USDC);
}

#[tokio::test]
async fn batch_with_one_bad_item_settles_the_good_ones() {
    let world = World::start().await;
    let provider = world.actor(0).await;
    let mut renters = Vec::new();
    for _ in 0..3 {
        let renter = world.actor(10 * USDC).await;
        renter
            .escrow
            .fund(provider.address(), Usdc::from_micros(USDC))
            .await
            .unwrap();
        renters.push(renter);
    }
    let good_a = renters[0]
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(1_000));
    let mut bad = renters[1]
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(2_000));
    bad.cumulative = Usdc::from_micros(2_001);
    // More than the deposit: paid up to the deposit, not reverted.
    let over = renters[2]
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(5 * USDC));
    let batch = provider
        .escrow
        .settle_batch(&[good_a, bad, over])
        .await
        .unwrap();
    assert_eq!(skipped_reasons(&batch), [SkipReason::InvalidVoucher]);
    assert_eq!(batch.settled.len(), 2);
    assert_eq!(batch.paid().micros(), 1_000 + USDC);
    // The exhausted lane now skips further vouchers with the right reason.
    let more = renters[2]
        .escrow
        .sign_voucher(provider.address(), Usdc::from_micros(6 * USDC));
    let batch = provider.escrow.settle_batch(&[more]).await.unwrap();
    assert_eq!(skipped_reasons(&batch), [SkipReason::Exhausted]);
}

#[tokio::test]
async fn invalid_lanes_and_deployments_are_refused() {
    let world = World::start().await;
    let renter = world.actor(10 * USDC).await;
    let zero = EvmAddress::ZERO;
    let error = renter
        .escrow
        .fund(zero, Usdc::from_micros(1))
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "ZeroAddress"), "{error}");
    let error = renter
        .escrow
        .fund(renter.address(), Usdc::from_micros(1))
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "SelfLane"), "{error}");
    let provider = world.actor(0).await;
    let error = renter
        .escrow
        .fund(provider.address(), Usdc::ZERO)
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "ZeroAmount"), "{error}");
    let params = EscrowParams {
        token: world.usdc.address(),
        treasury: zero,
        reserve: world.reserve.address(),
        thaw_period: chain_support::THAW,
    };
    let error = EscrowClient::deploy(world.anvil.config(), &world.deployer, params)
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "ZeroAddress"), "{error}");
    let params = EscrowParams {
        treasury: world.treasury.address(),
        thaw_period: std::time::Duration::ZERO,
        ..params
    };
    let error = EscrowClient::deploy(world.anvil.config(), &world.deployer, params)
        .await
        .unwrap_err();
    assert!(reverted_with(&error, "InvalidThawPeriod"), "{error}");
}

#[tokio::test]
async fn reentrancy_through_a_malicious_token_is_refused() {
    let world = World::start().await;
    let signer = PrivateKeySigner::random();
    let attacker = Wallet::from_secret_bytes(&signer.to_bytes().0).unwrap();
    world
        .anvil
        .set_balance(attacker.address(), eth(100))
        .await
        .unwrap();
    let rpc = ProviderBuilder::new()
        .wallet(signer)
        .connect_http(world.anvil.url().clone());
    let evil = ReentrantToken::deploy(&rpc).await.unwrap();
    let evil_address = EvmAddress::from_bytes(evil.address().into_array());

    // An escrow of the malicious token. The token contract itself is the provider, so its
    // reentrant call has the provider's identity.
    let escrow = EscrowClient::deploy(
        world.anvil.config(),
        &world.deployer,
        EscrowParams {
            token: evil_address,
            treasury: world.treasury.address(),
            reserve: world.reserve.address(),
            thaw_period: chain_support::THAW,
        },
    )
    .await
    .unwrap();
    let renter_wallet = Wallet::generate();
    world
        .anvil
        .set_balance(renter_wallet.address(), eth(100))
        .await
        .unwrap();
    let renter = escrow.with_wallet(&renter_wallet).await.unwrap();
    let mint = evil.mint(to_alloy(renter_wallet.address()), U256::from(10 * USDC));
    mint.send().await.unwrap().get_receipt().await.unwrap();
    renter
        .fund(evil_address, Usdc::from_micros(USDC))
        .await
        .unwrap();

    let voucher = renter.sign_voucher(evil_address, Usdc::from_micros(1_000));
    let settle = OrienEscrow::settleBatchCall {
        vouchers: vec![OrienEscrow::SignedVoucher {
            laneId: B256::from(*voucher.lane.as_bytes()),
            cumulative: u128::from(voucher.cumulative.micros()),
            v: voucher.signature.0[64],
            r: B256::from_slice(&voucher.signature.0[..32]),
            s: B256::from_slice(&voucher.signature.0[32..64]),
        }],
    };
    let escrow_address = to_alloy(escrow.address());
    evil.execute(escrow_address, settle.abi_encode().into())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let earned = escrow.earnings(evil_address).await.unwrap();
    assert_eq!(earned.balance.micros(), 900);

    // Arm: every transfer out of the escrow re-enters withdrawEarnings().
    let withdraw = OrienEscrow::withdrawEarningsCall {}.abi_encode();
    evil.arm(escrow_address, withdraw.clone().into())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let receipt = evil
        .execute(escrow_address, withdraw.into())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "the outer withdrawal itself succeeds");

    assert_eq!(evil.reentryAttempts().call().await.unwrap(), U256::from(1));
    assert_eq!(evil.reentrySuccesses().call().await.unwrap(), U256::ZERO);
    let reason = evil.lastRevert().call().await.unwrap();
    assert_eq!(
        reason.get(..4),
        Some(&OrienEscrow::ReentrancyGuardReentrantCall::SELECTOR[..]),
        "the reentrant call hit the guard"
    );
    // Paid exactly once.
    let held = evil
        .balanceOf(evil.address().to_owned())
        .call()
        .await
        .unwrap();
    assert_eq!(held, U256::from(900));
    let earned = escrow.earnings(evil_address).await.unwrap();
    assert_eq!(earned.balance, Usdc::ZERO);
}

fn to_alloy(address: EvmAddress) -> Address {
    Address::from(*address.as_bytes())
}

#[tokio::test]
async fn reentrant_renter_cannot_take_its_refund_twice() {
    let world = World::start().await;
    let signer = PrivateKeySigner::random();
    let owner = Wallet::from_secret_bytes(&signer.to_bytes().0).unwrap();
    world
        .anvil
        .set_balance(owner.address(), eth(100))
        .await
        .unwrap();
    let rpc = ProviderBuilder::new()
        .wallet(signer)
        .connect_http(world.anvil.url().clone());
    let evil = ReentrantToken::deploy(&rpc).await.unwrap();
    let evil_address = EvmAddress::from_bytes(evil.address().into_array());
    let escrow = EscrowClient::deploy(
        world.anvil.config(),
        &world.deployer,
        EscrowParams {
            token: evil_address,
            treasury: world.treasury.address(),
            reserve: world.reserve.address(),
            thaw_period: chain_support::THAW,
        },
    )
    .await
    .unwrap();
    let escrow_address = to_alloy(escrow.address());
    let provider = Wallet::generate().address();
    // The token contract is the renter: it funds a lane from its own balance, twice, so
    // the escrow holds more than this lane's refund.
    let run = |data: Vec<u8>, to: Address| {
        let call = evil.execute(to, data.into());
        async move { call.send().await.unwrap().get_receipt().await.unwrap() }
    };
    run(
        ReentrantToken::mintCall {
            to: *evil.address(),
            amount: U256::from(10 * USDC),
        }
        .abi_encode(),
        *evil.address(),
    )
    .await;
    run(
        ReentrantToken::approveCall {
            spender: escrow_address,
            value: U256::from(10 * USDC),
        }
        .abi_encode(),
        *evil.address(),
    )
    .await;
    for to in [provider, Wallet::generate().address()] {
        let fund = OrienEscrow::fundCall {
            provider: to_alloy(to),
            amount: u128::from(3 * USDC),
        };
        assert!(run(fund.abi_encode(), escrow_address).await.status());
    }
    let close = OrienEscrow::requestCloseCall {
        provider: to_alloy(provider),
    };
    assert!(run(close.abi_encode(), escrow_address).await.status());
    world.anvil.advance_time(chain_support::THAW).await.unwrap();

    let finish = OrienEscrow::finishCloseCall {
        provider: to_alloy(provider),
    }
    .abi_encode();
    evil.arm(escrow_address, finish.clone().into())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(run(finish, escrow_address).await.status());

    assert_eq!(evil.reentryAttempts().call().await.unwrap(), U256::from(1));
    assert_eq!(evil.reentrySuccesses().call().await.unwrap(), U256::ZERO);
    // Refunded once: 10 − 3 − 3 + 3.
    let held = evil.balanceOf(*evil.address()).call().await.unwrap();
    assert_eq!(held, U256::from(7 * USDC));
    let escrow_holds = evil.balanceOf(escrow_address).call().await.unwrap();
    assert_eq!(escrow_holds, U256::from(3 * USDC));
}
