//! `orien-devnet`: a local EVM chain for demos and tests. Starts anvil (from the pinned
//! npm package), deploys MockUSDC and `OrienEscrow`, gives the listed wallets gas and
//! USDC, writes the settings nodes need to an env file, and runs until interrupted —
//! then anvil stops with it. Never point it at a real chain: it only speaks to the
//! anvil it started.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use orien_ledger::chain::Wallet;
use orien_ledger::chain::devnet::{Anvil, Deployment};
use orien_protocol::{EvmAddress, Usdc};

/// A throwaway local chain with the ORIEN contracts.
#[derive(Debug, Parser)]
#[command(name = "orien-devnet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start anvil, deploy the contracts, fund wallets, and run until interrupted.
    Up {
        /// Write `ORIEN_CHAIN_RPC`, `ORIEN_CHAIN_ID`, `ORIEN_ESCROW`, `ORIEN_TOKEN`,
        /// `ORIEN_TREASURY` and `ORIEN_RESERVE` here (shell syntax).
        #[arg(long)]
        env_file: PathBuf,
        /// `ADDRESS=USDC`: give the wallet 100 ether for gas and this much MockUSDC;
        /// repeat for several.
        #[arg(long = "fund", value_parser = parse_fund)]
        fund: Vec<(EvmAddress, Usdc)>,
        /// How long a renter waits to reclaim an unused lane deposit.
        #[arg(long, default_value_t = 86_400)]
        thaw_secs: u64,
        /// Pay the 7 % fee to this address (e.g. a node's wallet, to withdraw it with
        /// `orien-node wallet withdraw --fees`); default: a fresh one.
        #[arg(long)]
        treasury: Option<EvmAddress>,
        /// Pay the 3 % reserve to this address; default: a fresh one.
        #[arg(long)]
        reserve: Option<EvmAddress>,
        /// The anvil binary. Without it: `$ORIEN_ANVIL`, `anvil` on `PATH`, then the
        /// pinned npm package in `node_modules` of this directory or one above it.
        #[arg(long, value_name = "PATH")]
        anvil: Option<PathBuf>,
    },
}

fn parse_fund(text: &str) -> Result<(EvmAddress, Usdc), String> {
    let (address, amount) = text
        .split_once('=')
        .ok_or("expected ADDRESS=USDC, e.g. 0xabc…=10")?;
    let address = address.parse().map_err(|e| format!("{address}: {e}"))?;
    let amount = amount.parse().map_err(|e| format!("{amount}: {e}"))?;
    Ok((address, amount))
}

#[allow(clippy::print_stdout)]
fn emit(line: &str) {
    println!("{line}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORIEN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up {
            env_file,
            fund,
            thaw_secs,
            treasury,
            reserve,
            anvil,
        } => up(env_file, fund, thaw_secs, (treasury, reserve), anvil).await,
    }
}

async fn up(
    env_file: PathBuf,
    fund: Vec<(EvmAddress, Usdc)>,
    thaw_secs: u64,
    (treasury, reserve): (Option<EvmAddress>, Option<EvmAddress>),
    anvil: Option<PathBuf>,
) -> anyhow::Result<()> {
    let binary = Anvil::find(anvil.as_deref())?;
    let anvil = Anvil::spawn_from(&binary)
        .with_context(|| format!("starting anvil ({})", binary.display()))?;
    let thaw = Duration::from_secs(thaw_secs);
    let (treasury, reserve, usdc, escrow) = match (treasury, reserve) {
        (None, None) => {
            let Deployment {
                treasury,
                reserve,
                usdc,
                escrow,
                ..
            } = anvil
                .deploy(thaw)
                .await
                .context("deploying MockUSDC and OrienEscrow")?;
            (treasury.address(), reserve.address(), usdc, escrow)
        }
        (treasury, reserve) => {
            let treasury = treasury.unwrap_or_else(|| Wallet::generate().address());
            let reserve = reserve.unwrap_or_else(|| Wallet::generate().address());
            let (_, usdc, escrow) = anvil
                .deploy_paying(thaw, treasury, reserve)
                .await
                .context("deploying MockUSDC and OrienEscrow")?;
            (treasury, reserve, usdc, escrow)
        }
    };
    for (address, amount) in &fund {
        anvil.give_ether(*address, 100).await?;
        if !amount.is_zero() {
            usdc.mint(*address, *amount).await?;
        }
        emit(&format!("funded {address}: 100 ETH, {amount}"));
    }
    let config = anvil.config();
    let settings = format!(
        "ORIEN_CHAIN_RPC={}\nORIEN_CHAIN_ID={}\nORIEN_ESCROW={}\nORIEN_TOKEN={}\nORIEN_TREASURY={}\nORIEN_RESERVE={}\n",
        config.rpc_url,
        config.chain_id,
        escrow.address(),
        usdc.address(),
        treasury,
        reserve
    );
    let partial = env_file.with_extension("partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    file.write_all(settings.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, &env_file)
        .with_context(|| format!("writing {}", env_file.display()))?;
    emit(&format!(
        "devnet ready: {} (chain {}), escrow {}, settings in {}",
        config.rpc_url,
        config.chain_id,
        escrow.address(),
        env_file.display()
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(anvil);
    Ok(())
}
