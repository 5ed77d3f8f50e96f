//! Sending transactions from one wallet: gas estimation, nonces, signing, retries and
//! confirmations, with typed errors.
//!
//! One transaction per wallet is in flight at a time (a lock), and its nonce is the node's
//! `pending` transaction count, so the nonce never drifts from the chain after a failure.
//! A transaction is signed once; retries resend the same bytes, so a retry after an
//! ambiguous network error cannot pay twice (the node answers "already known" or "nonce too
//! low", and the client then waits for the original hash).

use std::future::Future;
use std::time::Duration;

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, Bytes, TxHash};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolInterface;
use alloy::transports::{RpcError, TransportErrorKind, TransportResult};
use tokio::sync::Mutex;
use tracing::{Instrument, debug, info_span, warn};

use super::bindings::{MockUSDC, OrienEscrow};
use super::error::ChainError;
use super::wallet::Wallet;

/// Where and how the client talks to the chain.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// JSON-RPC endpoint (HTTP).
    pub rpc_url: alloy::transports::http::reqwest::Url,
    /// The chain the client expects; a node on another chain is refused.
    pub chain_id: u64,
    /// Blocks on top of a transaction's block before it counts as done (≥ 1).
    pub confirmations: u64,
    /// How long to wait for those confirmations.
    pub receipt_timeout: Duration,
    /// Attempts for each RPC call that fails for a transient reason (≥ 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles for each further one.
    pub retry_backoff: Duration,
    /// Extra gas on top of the node's estimate, in percent.
    pub gas_margin_percent: u64,
    /// How often to poll for a transaction's receipt.
    pub poll_interval: Duration,
}

impl ChainConfig {
    /// Defaults: 1 confirmation, 120 s receipt timeout, 4 attempts from 250 ms, 20 % gas
    /// margin, receipts polled every second.
    pub fn new(rpc_url: alloy::transports::http::reqwest::Url, chain_id: u64) -> Self {
        Self {
            rpc_url,
            chain_id,
            confirmations: 1,
            receipt_timeout: Duration::from_secs(120),
            max_attempts: 4,
            retry_backoff: Duration::from_millis(250),
            gas_margin_percent: 20,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// A mined, successful transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// Its hash.
    pub tx: TxHash,
    /// The block it is in.
    pub block: u64,
    /// That block's hash (a reorganisation changes it).
    pub block_hash: [u8; 32],
    /// Gas it used.
    pub gas_used: u64,
}

impl Mined {
    fn of(receipt: &TransactionReceipt) -> Result<Self, ChainError> {
        Ok(Self {
            tx: receipt.transaction_hash,
            block: receipt
                .block_number
                .ok_or_else(|| ChainError::Unexpected("receipt without a block number".into()))?,
            block_hash: receipt.block_hash.map(|h| h.0).unwrap_or_default(),
            gas_used: receipt.gas_used,
        })
    }
}

/// Where a transaction sent earlier stands.
#[derive(Debug)]
pub(crate) enum TxStatus {
    /// In a block, with its receipt.
    Mined(Box<TransactionReceipt>),
    /// Known to the node, not mined yet.
    Pending,
    /// Not known: dropped from the pool, replaced, or never sent.
    Unknown,
}

/// Signs and sends transactions of one wallet. Shared by the escrow and token clients.
#[derive(Debug)]
pub(crate) struct Transactor {
    provider: DynProvider,
    wallet: EthereumWallet,
    from: Address,
    config: ChainConfig,
    in_flight: Mutex<()>,
}

impl Transactor {
    /// Connects and checks that the node is on the configured chain.
    pub(crate) async fn connect(config: ChainConfig, wallet: &Wallet) -> Result<Self, ChainError> {
        assert!(
            config.confirmations >= 1,
            "confirmations must be at least 1"
        );
        assert!(config.max_attempts >= 1, "max_attempts must be at least 1");
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(config.rpc_url.clone())
            .erased();
        let transactor = Self {
            provider,
            wallet: EthereumWallet::from(wallet.signer().clone()),
            from: wallet.signer().address(),
            config,
            in_flight: Mutex::new(()),
        };
        let actual = transactor
            .rpc("eth_chainId", || transactor.provider.get_chain_id())
            .await?;
        if actual != transactor.config.chain_id {
            return Err(ChainError::WrongChain {
                expected: transactor.config.chain_id,
                actual,
            });
        }
        Ok(transactor)
    }

    pub(crate) fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub(crate) fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// Runs one RPC call, retrying transient failures with exponential backoff.
    pub(crate) async fn rpc<T, F, Fut>(
        &self,
        call: &'static str,
        mut op: F,
    ) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = TransportResult<T>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(error) if attempt < self.config.max_attempts && is_transient(&error) => {
                    let wait = self.config.retry_backoff * 2u32.saturating_pow(attempt - 1);
                    warn!(call, attempt, ?wait, %error, "transient RPC failure, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(error) => return Err(classify(call, attempt, error)),
            }
        }
    }

    /// Estimates, signs, sends and waits for `tx`; a revert is a [`ChainError::Reverted`].
    pub(crate) async fn send(
        &self,
        call: &'static str,
        tx: TransactionRequest,
    ) -> Result<TransactionReceipt, ChainError> {
        self.send_recorded(call, tx, |_| Ok(())).await
    }

    /// [`send`](Self::send), calling `before_send` with the transaction's hash once it is
    /// signed and before any byte of it leaves: a caller that records the hash there
    /// finds the transaction again after a crash at any later point.
    pub(crate) async fn send_recorded(
        &self,
        call: &'static str,
        tx: TransactionRequest,
        before_send: impl FnOnce(TxHash) -> Result<(), ChainError>,
    ) -> Result<TransactionReceipt, ChainError> {
        let span = info_span!("chain_tx", call, from = %self.from, tx = tracing::field::Empty);
        async {
            let _one_at_a_time = self.in_flight.lock().await;
            let (hash, raw) = self.sign(call, tx).await?;
            tracing::Span::current().record("tx", tracing::field::display(hash));
            before_send(hash)?;
            self.broadcast(call, &raw).await?;
            self.confirmed(call, hash).await
        }
        .instrument(span)
        .await
    }

    /// Estimates gas, picks the nonce and fees, and signs: the hash and the raw bytes.
    async fn sign(
        &self,
        call: &'static str,
        tx: TransactionRequest,
    ) -> Result<(TxHash, Bytes), ChainError> {
        let mut tx = tx.with_from(self.from).with_chain_id(self.config.chain_id);
        // Estimation runs the call: a revert surfaces here with the contract's reason.
        let estimate = self
            .rpc(call, || {
                self.provider.estimate_gas(tx.clone()).into_future()
            })
            .await?;
        let margin = 100 + self.config.gas_margin_percent;
        tx.set_gas_limit(estimate.saturating_mul(margin) / 100);
        let nonce = self
            .rpc("eth_getTransactionCount", || {
                self.provider
                    .get_transaction_count(self.from)
                    .pending()
                    .into_future()
            })
            .await?;
        tx.set_nonce(nonce);
        let fees = self
            .rpc("eth_feeHistory", || self.provider.estimate_eip1559_fees())
            .await?;
        tx.set_max_fee_per_gas(fees.max_fee_per_gas);
        tx.set_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = tx
            .build(&self.wallet)
            .await
            .map_err(|e| ChainError::Unexpected(format!("cannot sign the transaction: {e}")))?;
        debug!(nonce, gas_limit = estimate, "signed");
        Ok((*envelope.tx_hash(), Bytes::from(envelope.encoded_2718())))
    }

    /// Sends signed bytes, resending the same bytes on a transient failure.
    async fn broadcast(&self, call: &'static str, raw: &Bytes) -> Result<(), ChainError> {
        let mut attempt = 1;
        loop {
            match self.provider.send_raw_transaction(raw).await {
                Ok(_) => return Ok(()),
                // A retry of bytes the node already has: the first attempt got through.
                Err(error) if attempt > 1 && is_already_sent(&error) => return Ok(()),
                Err(error) if attempt < self.config.max_attempts && is_transient(&error) => {
                    warn!(attempt, %error, "sending failed, resending the same transaction");
                    tokio::time::sleep(self.config.retry_backoff * attempt).await;
                    attempt += 1;
                }
                Err(error) => return Err(classify(call, attempt, error)),
            }
        }
    }

    /// Waits for the receipt of a sent transaction; a revert is an error.
    async fn confirmed(
        &self,
        call: &'static str,
        hash: TxHash,
    ) -> Result<TransactionReceipt, ChainError> {
        let receipt = self.wait_for_receipt(call, hash).await?;
        if !receipt.status() {
            return Err(ChainError::Reverted {
                call,
                reason: "reverted during execution (status 0)".into(),
                tx: Some(hash),
            });
        }
        debug!(block = ?receipt.block_number, gas_used = receipt.gas_used, "mined");
        Ok(receipt)
    }

    /// Where a transaction sent earlier stands: mined (with its receipt), still known to
    /// the node (pending), or unknown (dropped, or never sent).
    pub(crate) async fn status_of(&self, hash: TxHash) -> Result<TxStatus, ChainError> {
        let receipt = self
            .rpc("eth_getTransactionReceipt", || {
                self.provider.get_transaction_receipt(hash).into_future()
            })
            .await?;
        if let Some(receipt) = receipt {
            return Ok(TxStatus::Mined(Box::new(receipt)));
        }
        let known = self
            .rpc("eth_getTransactionByHash", || {
                self.provider.get_transaction_by_hash(hash).into_future()
            })
            .await?;
        Ok(if known.is_some() {
            TxStatus::Pending
        } else {
            TxStatus::Unknown
        })
    }

    /// Polls for the receipt of `hash` until it has `confirmations` blocks on top (its own
    /// block counts as the first) or `receipt_timeout` passes.
    async fn wait_for_receipt(
        &self,
        call: &'static str,
        hash: TxHash,
    ) -> Result<TransactionReceipt, ChainError> {
        let deadline = tokio::time::Instant::now() + self.config.receipt_timeout;
        loop {
            let receipt = self
                .rpc("eth_getTransactionReceipt", || {
                    self.provider.get_transaction_receipt(hash).into_future()
                })
                .await?;
            if let Some(receipt) = receipt {
                let included = receipt.block_number.ok_or_else(|| {
                    ChainError::Unexpected(format!("receipt of {hash} without a block number"))
                })?;
                let head = self
                    .rpc("eth_blockNumber", || {
                        self.provider.get_block_number().into_future()
                    })
                    .await?;
                if head.saturating_sub(included) + 1 >= self.config.confirmations {
                    return Ok(receipt);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ChainError::NotConfirmed {
                    call,
                    tx: hash,
                    timeout: self.config.receipt_timeout,
                });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Deploys `code` (creation bytecode followed by the ABI-encoded constructor arguments).
    pub(crate) async fn deploy(
        &self,
        call: &'static str,
        code: Bytes,
    ) -> Result<(Address, Mined), ChainError> {
        let tx = TransactionRequest::default().with_deploy_code(code);
        let receipt = self.send(call, tx).await?;
        let address = receipt.contract_address.ok_or_else(|| {
            ChainError::Unexpected("deployment receipt without an address".into())
        })?;
        Ok((address, Mined::of(&receipt)?))
    }

    pub(crate) fn mined(receipt: &TransactionReceipt) -> Result<Mined, ChainError> {
        Mined::of(receipt)
    }
}

fn is_transient(error: &RpcError<TransportErrorKind>) -> bool {
    match error {
        // Connection refused, reset, timed out: the request may not have arrived.
        RpcError::Transport(_) => true,
        RpcError::ErrorResp(payload) => payload.is_retry_err(),
        _ => false,
    }
}

fn is_already_sent(error: &RpcError<TransportErrorKind>) -> bool {
    error.as_error_resp().is_some_and(|payload| {
        let message = payload.message.to_lowercase();
        message.contains("already known") || message.contains("nonce too low")
    })
}

/// Turns an RPC error into a typed one, decoding the contracts' custom errors.
fn classify(call: &'static str, attempts: u32, error: RpcError<TransportErrorKind>) -> ChainError {
    let Some(payload) = error.as_error_resp() else {
        return ChainError::Rpc {
            call,
            attempts,
            source: error,
        };
    };
    if let Some(data) = payload.as_revert_data() {
        return ChainError::Reverted {
            call,
            reason: decode_revert(&data),
            tx: None,
        };
    }
    if payload.message.to_lowercase().contains("revert") {
        return ChainError::Reverted {
            call,
            reason: payload.message.to_string(),
            tx: None,
        };
    }
    ChainError::Rpc {
        call,
        attempts,
        source: error,
    }
}

/// The contracts' custom error behind revert data, or the data in hex.
pub(crate) fn decode_revert(data: &[u8]) -> String {
    if let Ok(error) = OrienEscrow::OrienEscrowErrors::abi_decode(data) {
        return format!("{error:?}");
    }
    if let Ok(error) = MockUSDC::MockUSDCErrors::abi_decode(data) {
        return format!("{error:?}");
    }
    if let Ok(reason) = alloy::sol_types::decode_revert_reason(data).ok_or(()) {
        return reason;
    }
    format!("0x{}", hex::encode(data))
}
