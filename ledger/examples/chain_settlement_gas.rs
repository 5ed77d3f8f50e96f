//! Gas benchmark of on-chain settlement, run by `scripts/bench settlement`.
//!
//! On a fresh anvil it measures, in one run: the gas of a plain USDC `transfer` (the
//! baseline: paying a provider directly), opening a lane (`fund`, `fundWithPermit`), and
//! `settleBatch` with N = 1, 10 and 100 lanes, both the first settlement of fresh lanes and
//! a later one (steady state). Gas is deterministic, so one measurement per figure is exact.
//!
//! ```text
//! cargo run -p orien-ledger --example chain_settlement_gas -- bench/results/settlement.json
//! ```
#![allow(clippy::print_stdout)] // A command-line benchmark reports on stdout.

use std::error::Error;
use std::path::PathBuf;

use alloy::primitives::U256;
use orien_ledger::chain::devnet::Anvil;
use orien_ledger::chain::{EscrowClient, EscrowParams, UsdcClient, Wallet};
use orien_protocol::{Usdc, Voucher};
use serde_json::json;

const USDC: u64 = 1_000_000;

/// A new wallet with 100 ether for gas.
async fn funded_wallet(anvil: &Anvil) -> Result<Wallet, Box<dyn Error>> {
    let wallet = Wallet::generate();
    let ether = U256::from(10u64).pow(U256::from(20));
    anvil.set_balance(wallet.address(), ether).await?;
    Ok(wallet)
}

struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    baseline: Option<f64>,
    goal: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: chain_settlement_gas <results.json>")?,
    );
    let anvil = Anvil::spawn()?;
    let deployer = funded_wallet(&anvil).await?;
    let usdc = UsdcClient::deploy_mock(anvil.config(), &deployer).await?;
    let escrow = EscrowClient::deploy(
        anvil.config(),
        &deployer,
        EscrowParams {
            token: usdc.address(),
            treasury: Wallet::generate().address(),
            reserve: Wallet::generate().address(),
            thaw_period: std::time::Duration::from_secs(24 * 3600),
        },
    )
    .await?;

    // Baseline: a plain transfer to an address that already holds USDC (the cheaper case),
    // and to a fresh one.
    usdc.mint(deployer.address(), Usdc::from_micros(1_000 * USDC))
        .await?;
    let holder = Wallet::generate().address();
    usdc.transfer(holder, Usdc::from_micros(1)).await?;
    let transfer = usdc
        .transfer(holder, Usdc::from_micros(USDC))
        .await?
        .gas_used as f64;
    let transfer_fresh = usdc
        .transfer(Wallet::generate().address(), Usdc::from_micros(USDC))
        .await?
        .gas_used as f64;

    let mut rows = vec![
        Row {
            name: "USDC transfer (baseline)".into(),
            value: transfer,
            unit: "gas",
            baseline: None,
            goal: None,
        },
        Row {
            name: "USDC transfer to a new holder".into(),
            value: transfer_fresh,
            unit: "gas",
            baseline: Some(transfer),
            goal: None,
        },
    ];

    // Lane open: approval first (its own transaction), then fund; and with a permit.
    let renter = funded_wallet(&anvil).await?;
    usdc.mint(renter.address(), Usdc::from_micros(100 * USDC))
        .await?;
    let renter_escrow = escrow.with_wallet(&renter).await?;
    renter_escrow
        .token()
        .approve(escrow.address(), Usdc::from_micros(10 * USDC))
        .await?;
    let open = renter_escrow
        .fund(Wallet::generate().address(), Usdc::from_micros(10 * USDC))
        .await?;
    let permit = renter_escrow
        .fund_with_permit(
            Wallet::generate().address(),
            Usdc::from_micros(10 * USDC),
            u64::MAX / 2,
        )
        .await?;
    rows.push(Row {
        name: "lane open (fund, after approve)".into(),
        value: open.mined.gas_used as f64,
        unit: "gas",
        baseline: Some(transfer),
        goal: Some("<= 120000 gas".into()),
    });
    rows.push(Row {
        name: "lane open with permit (fundWithPermit)".into(),
        value: permit.mined.gas_used as f64,
        unit: "gas",
        baseline: Some(transfer),
        goal: None,
    });

    for n in [1usize, 10, 100] {
        let provider = funded_wallet(&anvil).await?;
        let provider_escrow = escrow.with_wallet(&provider).await?;
        let mut renters = Vec::with_capacity(n);
        for _ in 0..n {
            let renter = funded_wallet(&anvil).await?;
            usdc.mint(renter.address(), Usdc::from_micros(10 * USDC))
                .await?;
            let client = escrow.with_wallet(&renter).await?;
            client
                .fund(provider.address(), Usdc::from_micros(5 * USDC))
                .await?;
            renters.push(client);
        }
        let vouchers = |amount: u64| -> Vec<Voucher> {
            renters
                .iter()
                .map(|r| r.sign_voucher(provider.address(), Usdc::from_micros(amount)))
                .collect()
        };
        let first = provider_escrow.settle_batch(&vouchers(123_457)).await?;
        assert_eq!(first.settled.len(), n, "every voucher must settle");
        let steady = provider_escrow.settle_batch(&vouchers(2_345_679)).await?;
        assert_eq!(steady.settled.len(), n, "every voucher must settle");
        let goal = match n {
            100 => Some("<= 16000 gas".to_string()),
            10 => Some("<= 22000 gas".to_string()),
            _ => None,
        };
        rows.push(Row {
            name: format!("settleBatch per voucher, N = {n}"),
            value: steady.mined.gas_used as f64 / n as f64,
            unit: "gas",
            baseline: Some(transfer),
            goal: goal.clone(),
        });
        rows.push(Row {
            name: format!("settleBatch per voucher, N = {n}, first settlement"),
            value: first.mined.gas_used as f64 / n as f64,
            unit: "gas",
            baseline: Some(transfer),
            goal,
        });
    }

    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "value": r.value.round(),
                "unit": r.unit,
                "baseline": r.baseline,
                "ratio": r.baseline.map(|b| ((r.value / b) * 1000.0).round() / 1000.0),
                "goal": r.goal,
            })
        })
        .collect();
    std::fs::write(&out, serde_json::to_string_pretty(&json)? + "\n")?;
    for r in &rows {
        println!(
            "{:<50} {:>10.0} {}  (goal: {})",
            r.name,
            r.value,
            r.unit,
            r.goal.as_deref().unwrap_or("—")
        );
    }
    Ok(())
}
