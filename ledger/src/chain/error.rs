//! Typed errors of the chain client.

use std::path::PathBuf;
use std::time::Duration;

use orien_protocol::{EvmAddress, LaneId, Usdc};

/// Everything that can go wrong talking to the escrow contract.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC endpoint could not be reached or answered with an error, after retries.
    #[error("RPC call `{call}` failed after {attempts} attempt(s): {source}")]
    Rpc {
        /// What was being done.
        call: &'static str,
        /// How many times it was tried.
        attempts: u32,
        /// The last transport or node error.
        #[source]
        source: alloy::transports::TransportError,
    },
    /// The contract refused the call; `reason` is the decoded custom error when known.
    #[error("`{call}` reverted: {reason}")]
    Reverted {
        /// What was being done.
        call: &'static str,
        /// The contract's custom error (e.g. `ThawNotOver(…)`) or the raw revert data.
        reason: String,
        /// The transaction, if it was mined (a revert found at gas estimation has none).
        tx: Option<alloy::primitives::TxHash>,
    },
    /// The transaction was sent but no receipt with enough confirmations arrived in time.
    #[error("transaction {tx} (`{call}`) not confirmed within {timeout:?}; it may still be mined")]
    NotConfirmed {
        /// What was being done.
        call: &'static str,
        /// The transaction.
        tx: alloy::primitives::TxHash,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The node is on another chain than the client was configured for.
    #[error("the RPC endpoint is on chain {actual}, the client is configured for chain {expected}")]
    WrongChain {
        /// Configured chain id.
        expected: u64,
        /// The node's chain id.
        actual: u64,
    },
    /// No contract code at the configured escrow address.
    #[error("no contract code at {0}: check the escrow address and the RPC endpoint's chain")]
    NoContract(EvmAddress),
    /// A receipt or log could not be understood.
    #[error("unexpected chain data: {0}")]
    Unexpected(String),
    /// An amount does not fit the contract's 128-bit fields or the client's 64-bit money.
    #[error("amount {0} out of range for the escrow contract")]
    AmountOutOfRange(String),
    /// More vouchers than one `settleBatch` transaction takes.
    #[error("{len} vouchers in one batch, at most {max}: split it into several batches")]
    BatchTooLarge {
        /// Vouchers offered.
        len: usize,
        /// The limit, [`MAX_SETTLE_BATCH`](super::MAX_SETTLE_BATCH).
        max: usize,
    },
    /// A voucher failed off-chain verification.
    #[error(transparent)]
    Voucher(#[from] VoucherError),
}

/// Why a voucher is not acceptable. The provider checks every voucher before it serves more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// The 65 signature bytes are not a valid secp256k1 signature (bad `v`, `r` or `s`).
    #[error("malformed voucher signature: {0}")]
    MalformedSignature(String),
    /// `s` is in the upper half of the curve order: a malleated copy of a valid signature.
    #[error("voucher signature has a high s value (malleable); the escrow refuses it")]
    HighS,
    /// The signature recovers to another key than the lane's renter.
    #[error("voucher signed by {signer}, expected the renter {expected}")]
    WrongSigner {
        /// Who signed.
        signer: EvmAddress,
        /// The lane's renter.
        expected: EvmAddress,
    },
    /// The voucher names another lane than the one it was offered for.
    #[error("voucher is for lane {actual}, expected lane {expected}")]
    WrongLane {
        /// The lane it should be for.
        expected: LaneId,
        /// The lane it names.
        actual: LaneId,
    },
    /// The cumulative amount went down: an old voucher replayed.
    #[error("voucher amount {offered} is below the previous voucher's {previous}")]
    Decreasing {
        /// The previously accepted cumulative amount.
        previous: Usdc,
        /// This voucher's amount.
        offered: Usdc,
    },
    /// The voucher does not cover what the renter acknowledged.
    #[error("voucher amount {offered} does not cover the acknowledged {expected}")]
    Insufficient {
        /// What the receipt acknowledged.
        expected: Usdc,
        /// What the voucher pays.
        offered: Usdc,
    },
}

/// Errors of the wallet key file.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The key file could not be read or written.
    #[error("wallet key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The key file exists but does not hold a valid secp256k1 key.
    #[error("wallet key file {path} does not hold a 32-byte hex secp256k1 key: {reason}")]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Bytes that are not a valid secp256k1 secret key (zero or not below the curve order).
    #[error("invalid secp256k1 secret key: {0}")]
    InvalidSecret(String),
    /// The key file is readable by other users; refuse to use a possibly leaked key.
    #[error(
        "wallet key file {path} has mode {mode:o}; run `chmod 600 {path}` (it must not be readable by others)"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}
