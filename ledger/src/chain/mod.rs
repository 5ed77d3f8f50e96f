//! Settlement on an EVM chain: the alloy client of the `OrienEscrow` contract.
//!
//! A renter funds one **lane** per provider ([`EscrowClient::fund`], or
//! [`EscrowClient::fund_with_permit`]) and signs an EIP-712 voucher for the lane's
//! cumulative amount with every receipt it acknowledges ([`VoucherDomain::sign`]). The
//! provider checks each voucher before serving more ([`VoucherDomain::verify_next`]) and
//! redeems the latest voucher of many lanes in one transaction
//! ([`EscrowClient::settle_batch`]); the contract pays 90 % to the provider, 7 % to the
//! treasury and 3 % to the reserve, exactly as [`orien_protocol::Split::delta`] computes.
//!
//! The Solidity sources and their compiled artifacts live in `ledger/contracts/`;
//! [`bindings`] are generated from the committed artifacts. [`Wallet`] is the node's
//! secp256k1 key, and [`devnet::Anvil`] a local chain for tests and benchmarks.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use orien_ledger::chain::{ChainConfig, EscrowClient, Wallet};
//! use orien_protocol::{EvmAddress, Usdc};
//!
//! let wallet = Wallet::load_or_create("/var/lib/orien/wallet.key".as_ref())?;
//! let config = ChainConfig::new("http://127.0.0.1:8545".parse()?, 31337);
//! let escrow: EvmAddress = "0x5fbdb2315678afecb367f032d93f642f64180aa3".parse()?;
//! let provider: EvmAddress = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8".parse()?;
//! let client = EscrowClient::connect(config, &wallet, escrow).await?;
//! client.fund(provider, Usdc::from_micros(5_000_000)).await?;
//! let voucher = client.sign_voucher(provider, Usdc::from_micros(1_250));
//! # let _ = voucher;
//! # Ok(()) }
//! ```

pub mod bindings;
mod convert;
pub mod devnet;
mod error;
mod escrow;
mod outcome;
mod reconcile;
mod token;
mod transactor;
mod voucher;
mod wallet;

/// The URL type of [`ChainConfig::rpc_url`].
pub use alloy::transports::http::reqwest::Url;
pub use error::{ChainError, VoucherError, WalletError};
pub use escrow::{EscrowClient, MAX_SETTLE_BATCH};
pub use outcome::{
    BatchSettlement, Earnings, EscrowLog, EscrowParams, Funded, LaneSettled, LaneState,
    SettlementTx, SkipReason, VoucherSkipped,
};
pub use reconcile::{ReconcileError, Reconciled, Reconciler};
pub use token::UsdcClient;
pub use transactor::{ChainConfig, Mined};
pub use voucher::{DOMAIN_NAME, DOMAIN_VERSION, VOUCHER_TYPE, VoucherDomain, voucher_type_hash};
pub use wallet::Wallet;
