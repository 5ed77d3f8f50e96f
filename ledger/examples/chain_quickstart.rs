//! On-chain settlement in a few lines: start a local anvil, deploy a mock USDC and the
//! escrow, fund a lane, sign vouchers as the renter, verify and settle them as the
//! provider, and withdraw.
//!
//! ```text
//! npm ci    # once, at the repository root: the pinned anvil (scripts/test does it)
//! cargo run -p orien-ledger --example chain_quickstart
//! ```
#![allow(clippy::print_stdout)] // An example prints what it does.

use std::error::Error;
use std::time::Duration;

use alloy::primitives::U256;
use orien_ledger::chain::devnet::Anvil;
use orien_ledger::chain::{EscrowClient, EscrowParams, UsdcClient, Wallet};
use orien_protocol::{Split, Usdc};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let anvil = Anvil::spawn()?; // killed when dropped
    let [deployer, renter, provider, treasury, reserve] =
        std::array::from_fn(|_| Wallet::generate());
    for wallet in [&deployer, &renter, &provider] {
        anvil
            .set_balance(wallet.address(), U256::from(10u64).pow(U256::from(19)))
            .await?;
    }

    // Deploy the test token and the escrow (24 h thaw window).
    let usdc = UsdcClient::deploy_mock(anvil.config(), &deployer).await?;
    usdc.mint(renter.address(), Usdc::from_micros(25_000_000))
        .await?;
    let params = EscrowParams {
        token: usdc.address(),
        treasury: treasury.address(),
        reserve: reserve.address(),
        thaw_period: Duration::from_secs(24 * 3600),
    };
    let escrow = EscrowClient::deploy(anvil.config(), &deployer, params).await?;

    // The renter funds its lane to the provider once…
    let as_renter = escrow.with_wallet(&renter).await?;
    let lane = as_renter
        .fund(provider.address(), Usdc::from_micros(10_000_000))
        .await?;
    println!("lane {} holds {}", lane.lane, lane.deposit);

    // …and signs a voucher for the cumulative amount of every receipt it acknowledges.
    let as_provider = escrow.with_wallet(&provider).await?;
    let mut previous = Usdc::ZERO;
    let mut latest = None;
    for cumulative in [1_250_000, 2_500_099, 2_500_100] {
        let amount = Usdc::from_micros(cumulative);
        let voucher = as_renter.sign_voucher(provider.address(), amount);
        // The provider checks each voucher before it serves more.
        as_provider.domain().verify_next(
            &voucher,
            renter.address(),
            provider.address(),
            previous,
            amount,
        )?;
        previous = amount;
        latest = Some(voucher);
    }

    // Only the latest voucher is settled: it supersedes the others.
    let batch = as_provider
        .settle_batch(&latest.into_iter().collect::<Vec<_>>())
        .await?;
    let split = Split::of(previous);
    println!(
        "settled {} in {} ({} gas): provider {}, fee {}, reserve {}",
        batch.paid(),
        batch.mined.tx,
        batch.mined.gas_used,
        split.provider(),
        batch.fee,
        batch.reserve
    );
    let (withdrawn, _) = as_provider.withdraw_earnings().await?;
    println!("provider withdrew {withdrawn}");
    Ok(())
}
