//! The client's failure modes, each a clear typed error: an unreachable endpoint (after
//! retries), a node on another chain, no contract at the address, a token transfer the
//! renter cannot afford, an oversized batch. And the client's futures are `Send`, so the
//! daemon can run them on spawned tasks.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod chain_support;

use std::time::Duration;

use chain_support::{USDC, World};
use orien_ledger::chain::{
    ChainConfig, ChainError, EscrowClient, MAX_SETTLE_BATCH, UsdcClient, Wallet,
};
use orien_protocol::{EvmAddress, Usdc};

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn unreachable_endpoint_fails_with_an_rpc_error_after_retries() {
    // A port held by a socket that is bound but never listens: connections are refused,
    // and no other process (an anvil another test starts on port 0) can be given it while
    // the socket lives. A port freed before the call could be (CI saw exactly that).
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let mut config = ChainConfig::new(format!("http://127.0.0.1:{port}").parse().unwrap(), 31337);
    config.max_attempts = 3;
    config.retry_backoff = Duration::from_millis(10);
    let error = UsdcClient::deploy_mock(config, &Wallet::generate())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ChainError::Rpc { attempts: 3, .. }),
        "{error:?}"
    );
    drop(held);
}

#[tokio::test]
async fn node_on_another_chain_is_refused() {
    let world = World::start().await;
    let mut config = world.anvil.config();
    config.chain_id = 1;
    let error = EscrowClient::connect(config, &world.deployer, world.escrow.address())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ChainError::WrongChain {
                expected: 1,
                actual: 31337
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn address_without_code_is_refused() {
    let world = World::start().await;
    let nowhere = EvmAddress::from_bytes([0x42; 20]);
    let error = EscrowClient::connect(world.anvil.config(), &world.deployer, nowhere)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ChainError::NoContract(a) if a == nowhere),
        "{error:?}"
    );
}

#[tokio::test]
async fn funding_beyond_the_balance_names_the_token_error() {
    let world = World::start().await;
    let provider = world.actor(0).await;
    let renter = world.actor(USDC).await;
    let error = renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(2 * USDC))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ChainError::Reverted { reason, tx: None, .. } if reason.contains("ERC20InsufficientBalance")),
        "{error:?}"
    );
}

#[tokio::test]
async fn oversized_batch_is_refused_before_sending() {
    let world = World::start().await;
    let renter = world.actor(0).await;
    let voucher = renter
        .escrow
        .sign_voucher(world.deployer.address(), Usdc::from_micros(1));
    let vouchers = vec![voucher; MAX_SETTLE_BATCH + 1];
    let settle = world.escrow.settle_batch(&vouchers);
    assert_send(&settle);
    let error = settle.await.unwrap_err();
    assert!(
        matches!(error, ChainError::BatchTooLarge { len, max } if len == MAX_SETTLE_BATCH + 1 && max == MAX_SETTLE_BATCH),
        "{error:?}"
    );
    let fund = renter
        .escrow
        .fund(world.deployer.address(), Usdc::from_micros(1));
    assert_send(&fund);
    drop(fund);
}
