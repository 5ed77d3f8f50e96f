//! [`EscrowClient`]: the typed client of one deployed `OrienEscrow` contract.

use std::sync::Arc;

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::signers::SignerSync;
use alloy::sol_types::{SolCall, SolConstructor, SolEventInterface, SolStruct, eip712_domain};
use orien_protocol::{EvmAddress, LaneId, Usdc, Voucher};
use tracing::{info, instrument};

use super::bindings::OrienEscrow;
use super::convert::{b256_to_lane, lane_to_b256, to_address, to_evm_address, usdc_from_u128};
use super::error::ChainError;
use super::outcome::{
    BatchSettlement, Earnings, EscrowLog, EscrowParams, Funded, LaneSettled, LaneState,
    SettlementTx, VoucherSkipped, skip_reason, usdc_from_u256,
};
use super::token::UsdcClient;
use super::transactor::{ChainConfig, Mined, Transactor, TxStatus};
use super::voucher::VoucherDomain;
use super::wallet::Wallet;
use crate::settlement::TxHash;

/// Most vouchers one `settleBatch` transaction takes (about 3 M gas at ~15 k each).
pub const MAX_SETTLE_BATCH: usize = 200;

/// A client of one `OrienEscrow` contract, acting with one wallet (renter, provider,
/// treasury or reserve — the contract decides what each may do).
#[derive(Debug, Clone)]
pub struct EscrowClient {
    chain: Arc<Transactor>,
    wallet: Wallet,
    escrow: Address,
    token: Address,
    domain: VoucherDomain,
}

impl EscrowClient {
    /// Deploys a new escrow with `wallet` and returns its client.
    #[instrument(skip_all, fields(chain_id = config.chain_id))]
    pub async fn deploy(
        config: ChainConfig,
        wallet: &Wallet,
        params: EscrowParams,
    ) -> Result<Self, ChainError> {
        let thaw = params.thaw_period.as_secs();
        let chain = Arc::new(Transactor::connect(config, wallet).await?);
        let args = OrienEscrow::constructorCall {
            token_: to_address(params.token),
            treasury_: to_address(params.treasury),
            reserve_: to_address(params.reserve),
            thawPeriod_: thaw,
        }
        .abi_encode();
        let code: Bytes = [OrienEscrow::BYTECODE.as_ref(), &args].concat().into();
        let (escrow, mined) = chain.deploy("deploy OrienEscrow", code).await?;
        info!(%escrow, gas_used = mined.gas_used, "deployed OrienEscrow");
        Self::attach(chain, wallet, escrow).await
    }

    /// Connects to the escrow at `escrow`, checking the chain id and that code is there.
    pub async fn connect(
        config: ChainConfig,
        wallet: &Wallet,
        escrow: EvmAddress,
    ) -> Result<Self, ChainError> {
        let chain = Arc::new(Transactor::connect(config, wallet).await?);
        Self::attach(chain, wallet, to_address(escrow)).await
    }

    /// The same escrow, acting with another wallet (sharing the connection settings).
    pub async fn with_wallet(&self, wallet: &Wallet) -> Result<Self, ChainError> {
        let chain = Arc::new(Transactor::connect(self.chain.config().clone(), wallet).await?);
        Self::attach(chain, wallet, self.escrow).await
    }

    async fn attach(
        chain: Arc<Transactor>,
        wallet: &Wallet,
        escrow: Address,
    ) -> Result<Self, ChainError> {
        let code = chain
            .rpc("eth_getCode", || {
                chain.provider().get_code_at(escrow).into_future()
            })
            .await?;
        if code.is_empty() {
            return Err(ChainError::NoContract(to_evm_address(escrow)));
        }
        let token = view(&chain, escrow, "token()", OrienEscrow::tokenCall {}).await?;
        let domain = VoucherDomain::new(chain.config().chain_id, to_evm_address(escrow));
        Ok(Self {
            chain,
            wallet: wallet.clone(),
            escrow,
            token,
            domain,
        })
    }

    /// The escrow's address.
    pub fn address(&self) -> EvmAddress {
        to_evm_address(self.escrow)
    }

    /// The address this client acts as.
    pub fn wallet_address(&self) -> EvmAddress {
        self.wallet.address()
    }

    /// The EIP-712 domain of this escrow's vouchers.
    pub fn domain(&self) -> VoucherDomain {
        self.domain
    }

    /// The escrowed token, with this client's wallet.
    pub fn token(&self) -> UsdcClient {
        UsdcClient::new(self.chain.clone(), self.token)
    }

    /// The lane `renter → provider` of this escrow.
    pub fn lane_id(&self, renter: EvmAddress, provider: EvmAddress) -> LaneId {
        self.domain.lane_id(renter, provider)
    }

    /// Signs, as the renter, a voucher for `cumulative` on the lane to `provider`.
    pub fn sign_voucher(&self, provider: EvmAddress, cumulative: Usdc) -> Voucher {
        let lane = self.lane_id(self.wallet.address(), provider);
        self.domain.sign(&self.wallet, lane, cumulative)
    }

    fn contract(&self) -> OrienEscrow::OrienEscrowInstance<&alloy::providers::DynProvider> {
        OrienEscrow::new(self.escrow, self.chain.provider())
    }

    /// Opens or tops up the lane to `provider` with `amount`, approving the escrow first if
    /// the token allowance is short.
    #[instrument(skip(self), fields(renter = %self.wallet.address()))]
    pub async fn fund(&self, provider: EvmAddress, amount: Usdc) -> Result<Funded, ChainError> {
        let token = self.token();
        let allowance = token
            .allowance(self.wallet.address(), self.address())
            .await?;
        if allowance < amount {
            token.approve(self.address(), amount).await?;
        }
        let tx = self
            .contract()
            .fund(to_address(provider), u128::from(amount.micros()))
            .into_transaction_request();
        let receipt = self.chain.send("fund", tx).await?;
        self.funded(provider, &receipt)
    }

    /// Opens or tops up the lane with an EIP-2612 permit instead of an approval
    /// transaction. `deadline` is the permit's expiry (unix seconds).
    #[instrument(skip(self), fields(renter = %self.wallet.address()))]
    pub async fn fund_with_permit(
        &self,
        provider: EvmAddress,
        amount: Usdc,
        deadline: u64,
    ) -> Result<Funded, ChainError> {
        let (v, r, s) = self.sign_permit(amount, deadline).await?;
        let tx = self
            .contract()
            .fundWithPermit(
                to_address(provider),
                u128::from(amount.micros()),
                U256::from(deadline),
                v,
                r,
                s,
            )
            .into_transaction_request();
        let receipt = self.chain.send("fundWithPermit", tx).await?;
        self.funded(provider, &receipt)
    }

    async fn sign_permit(
        &self,
        amount: Usdc,
        deadline: u64,
    ) -> Result<(u8, alloy::primitives::B256, alloy::primitives::B256), ChainError> {
        alloy::sol! {
            struct Permit {
                address owner;
                address spender;
                uint256 value;
                uint256 nonce;
                uint256 deadline;
            }
        }
        let token = self.token();
        let (name, version) = token.eip712_name_version().await?;
        let nonce = token.permit_nonce(self.wallet.address()).await?;
        let domain = eip712_domain! {
            name: name,
            version: version,
            chain_id: self.domain.chain_id(),
            verifying_contract: self.token,
        };
        let permit = Permit {
            owner: to_address(self.wallet.address()),
            spender: self.escrow,
            value: U256::from(amount.micros()),
            nonce,
            deadline: U256::from(deadline),
        };
        let signature = self
            .wallet
            .signer()
            .sign_hash_sync(&permit.eip712_signing_hash(&domain))
            .map_err(|e| ChainError::Unexpected(format!("cannot sign the permit: {e}")))?;
        let bytes = signature.as_bytes();
        Ok((
            bytes[64],
            alloy::primitives::B256::from_slice(&bytes[..32]),
            alloy::primitives::B256::from_slice(&bytes[32..64]),
        ))
    }

    fn funded(
        &self,
        provider: EvmAddress,
        receipt: &TransactionReceipt,
    ) -> Result<Funded, ChainError> {
        let lane = self.lane_id(self.wallet.address(), provider);
        let deposit = self
            .events_of(receipt)
            .into_iter()
            .find_map(|event| match event {
                OrienEscrow::OrienEscrowEvents::LaneFunded(e) if e.laneId == lane_to_b256(lane) => {
                    Some(e.deposit)
                }
                _ => None,
            })
            .ok_or_else(|| ChainError::Unexpected("fund receipt without LaneFunded".into()))?;
        Ok(Funded {
            lane,
            deposit: usdc_from_u128(deposit)?,
            mined: Transactor::mined(receipt)?,
        })
    }

    /// Redeems `vouchers` (at most [`MAX_SETTLE_BATCH`]) as the lanes' provider. Vouchers
    /// the contract skips are reported in [`BatchSettlement::skipped`], not as errors.
    pub async fn settle_batch(&self, vouchers: &[Voucher]) -> Result<BatchSettlement, ChainError> {
        self.settle_batch_recorded(vouchers, |_| Ok(())).await
    }

    /// [`settle_batch`](Self::settle_batch), calling `before_send` with the transaction's
    /// hash once it is signed and before it is sent, so the caller can record the
    /// settlement first: a crash at any later point leaves a record to reconcile.
    #[instrument(skip_all, fields(provider = %self.wallet.address(), vouchers = vouchers.len()))]
    pub async fn settle_batch_recorded(
        &self,
        vouchers: &[Voucher],
        before_send: impl FnOnce(TxHash) -> Result<(), ChainError>,
    ) -> Result<BatchSettlement, ChainError> {
        if vouchers.len() > MAX_SETTLE_BATCH {
            return Err(ChainError::BatchTooLarge {
                len: vouchers.len(),
                max: MAX_SETTLE_BATCH,
            });
        }
        let items = vouchers.iter().map(to_signed_voucher).collect::<Vec<_>>();
        let tx = self
            .contract()
            .settleBatch(items)
            .into_transaction_request();
        let receipt = self
            .chain
            .send_recorded("settleBatch", tx, |hash| before_send(TxHash(hash.0)))
            .await?;
        self.batch_of(&receipt)
    }

    /// Where a settlement sent earlier stands on chain.
    pub async fn settlement_status(&self, tx: TxHash) -> Result<SettlementTx, ChainError> {
        match self
            .chain
            .status_of(alloy::primitives::TxHash::from(tx.0))
            .await?
        {
            TxStatus::Mined(receipt) if receipt.status() => {
                Ok(SettlementTx::Mined(Box::new(self.batch_of(&receipt)?)))
            }
            TxStatus::Mined(_) => Ok(SettlementTx::Reverted),
            TxStatus::Pending => Ok(SettlementTx::Pending),
            TxStatus::Unknown => Ok(SettlementTx::Unknown),
        }
    }

    fn batch_of(&self, receipt: &TransactionReceipt) -> Result<BatchSettlement, ChainError> {
        let mut batch = BatchSettlement {
            mined: Transactor::mined(receipt)?,
            settled: Vec::new(),
            skipped: Vec::new(),
            provider_credit: 0,
            fee: Usdc::ZERO,
            reserve: Usdc::ZERO,
        };
        for event in self.events_of(receipt) {
            match event {
                OrienEscrow::OrienEscrowEvents::VoucherSettled(e) => {
                    batch.settled.push(LaneSettled {
                        lane: b256_to_lane(e.laneId),
                        settled: usdc_from_u128(e.settled)?,
                        paid: usdc_from_u128(e.paid)?,
                    })
                }
                OrienEscrow::OrienEscrowEvents::VoucherSkipped(e) => {
                    batch.skipped.push(VoucherSkipped {
                        lane: b256_to_lane(e.laneId),
                        cumulative: usdc_from_u128(e.cumulative)?,
                        reason: skip_reason(e.reason)?,
                    })
                }
                OrienEscrow::OrienEscrowEvents::BatchSettled(e) => {
                    batch.provider_credit = i128::try_from(e.providerCredit)
                        .map_err(|_| ChainError::AmountOutOfRange(e.providerCredit.to_string()))?;
                    batch.fee = usdc_from_u256(e.fee)?;
                    batch.reserve = usdc_from_u256(e.reserve)?;
                }
                _ => {}
            }
        }
        // The events must conserve money exactly as `Split::delta` does.
        assert_eq!(
            i128::from(batch.paid().micros()),
            batch.provider_credit
                + i128::from(batch.fee.micros())
                + i128::from(batch.reserve.micros()),
            "settleBatch events do not conserve money: {batch:?}"
        );
        info!(
            tx = %batch.mined.tx,
            settled = batch.settled.len(),
            skipped = batch.skipped.len(),
            paid = %batch.paid(),
            "settled a batch"
        );
        Ok(batch)
    }

    /// Withdraws the caller's withdrawable earnings as a provider.
    pub async fn withdraw_earnings(&self) -> Result<(Usdc, Mined), ChainError> {
        let tx = self
            .contract()
            .withdrawEarnings()
            .into_transaction_request();
        let receipt = self.chain.send("withdrawEarnings", tx).await?;
        let amount = self.events_of(&receipt).into_iter().find_map(|e| match e {
            OrienEscrow::OrienEscrowEvents::EarningsWithdrawn(e) => Some(e.amount),
            _ => None,
        });
        self.amount_and_mined(amount, &receipt, "EarningsWithdrawn")
    }

    /// Withdraws the protocol fees (the client's wallet must be the treasury).
    pub async fn withdraw_fees(&self) -> Result<(Usdc, Mined), ChainError> {
        let tx = self.contract().withdrawFees().into_transaction_request();
        let receipt = self.chain.send("withdrawFees", tx).await?;
        let amount = self.events_of(&receipt).into_iter().find_map(|e| match e {
            OrienEscrow::OrienEscrowEvents::FeesWithdrawn(e) => Some(e.amount),
            _ => None,
        });
        self.amount_and_mined(amount, &receipt, "FeesWithdrawn")
    }

    /// Withdraws the reserve (the client's wallet must be the reserve).
    pub async fn withdraw_reserve(&self) -> Result<(Usdc, Mined), ChainError> {
        let tx = self.contract().withdrawReserve().into_transaction_request();
        let receipt = self.chain.send("withdrawReserve", tx).await?;
        let amount = self.events_of(&receipt).into_iter().find_map(|e| match e {
            OrienEscrow::OrienEscrowEvents::ReserveWithdrawn(e) => Some(e.amount),
            _ => None,
        });
        self.amount_and_mined(amount, &receipt, "ReserveWithdrawn")
    }

    /// As the renter, starts the thaw window of the lane to `provider`; returns when it ends
    /// (unix seconds).
    pub async fn request_close(&self, provider: EvmAddress) -> Result<(u64, Mined), ChainError> {
        let tx = self
            .contract()
            .requestClose(to_address(provider))
            .into_transaction_request();
        let receipt = self.chain.send("requestClose", tx).await?;
        let ends = self
            .events_of(&receipt)
            .into_iter()
            .find_map(|e| match e {
                OrienEscrow::OrienEscrowEvents::LaneCloseRequested(e) => Some(e.thawEndsAt),
                _ => None,
            })
            .ok_or_else(|| ChainError::Unexpected("no LaneCloseRequested event".into()))?;
        Ok((ends, Transactor::mined(&receipt)?))
    }

    /// As the renter, after the thaw window, takes back the lane's unspent deposit.
    pub async fn finish_close(&self, provider: EvmAddress) -> Result<(Usdc, Mined), ChainError> {
        let tx = self
            .contract()
            .finishClose(to_address(provider))
            .into_transaction_request();
        let receipt = self.chain.send("finishClose", tx).await?;
        let amount = self.events_of(&receipt).into_iter().find_map(|e| match e {
            OrienEscrow::OrienEscrowEvents::LaneClosed(e) => Some(e.refund),
            _ => None,
        });
        self.amount_and_mined(amount, &receipt, "LaneClosed")
    }

    /// The lane as stored on chain.
    pub async fn lane(&self, lane: LaneId) -> Result<LaneState, ChainError> {
        let call = OrienEscrow::laneCall {
            laneId: lane_to_b256(lane),
        };
        let state = view(&self.chain, self.escrow, "lane()", call).await?;
        Ok(LaneState {
            deposit: usdc_from_u128(state.deposit)?,
            settled: usdc_from_u128(state.settled)?,
            close_requested_at: (state.closeRequested != 0).then_some(state.closeRequested),
        })
    }

    /// Seconds between a renter's close request and its refund (fixed at deploy).
    pub async fn thaw_period(&self) -> Result<std::time::Duration, ChainError> {
        let call = OrienEscrow::thawPeriodCall {};
        let secs = view(&self.chain, self.escrow, "thawPeriod()", call).await?;
        Ok(std::time::Duration::from_secs(secs))
    }

    /// The block the escrow was deployed in: the first with its code (a binary search
    /// over `eth_getCode` at past blocks), where reconciliation starts.
    pub async fn deployment_block(&self) -> Result<u64, ChainError> {
        let has_code = |block: u64| async move {
            let code = self
                .chain
                .rpc("eth_getCode", || {
                    self.chain
                        .provider()
                        .get_code_at(self.escrow)
                        .number(block)
                        .into_future()
                })
                .await?;
            Ok::<bool, ChainError>(!code.is_empty())
        };
        let (mut low, mut high) = (0, self.block_number().await?);
        while low < high {
            let mid = low + (high - low) / 2;
            if has_code(mid).await? {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        Ok(low)
    }

    /// A provider's earnings.
    pub async fn earnings(&self, provider: EvmAddress) -> Result<Earnings, ChainError> {
        let call = OrienEscrow::earningsOfCall {
            provider: to_address(provider),
        };
        let e = view(&self.chain, self.escrow, "earningsOf()", call).await?;
        Ok(Earnings {
            balance: usdc_from_u128(e.balance)?,
            withdrawable: usdc_from_u128(e.withdrawable)?,
        })
    }

    /// Fee and reserve balances not yet withdrawn.
    pub async fn protocol_balances(&self) -> Result<(Usdc, Usdc), ChainError> {
        let call = OrienEscrow::protocolBalancesCall {};
        let b = view(&self.chain, self.escrow, "protocolBalances()", call).await?;
        Ok((usdc_from_u128(b.fees)?, usdc_from_u128(b.reserves)?))
    }

    /// The contract's split of `total`: `(provider, fee, reserve)`.
    pub async fn split_of(&self, total: Usdc) -> Result<(Usdc, Usdc, Usdc), ChainError> {
        let call = OrienEscrow::splitOfCall {
            total: u128::from(total.micros()),
        };
        let s = view(&self.chain, self.escrow, "splitOf()", call).await?;
        Ok((
            usdc_from_u128(s.provider)?,
            usdc_from_u128(s.fee)?,
            usdc_from_u128(s.res)?,
        ))
    }

    /// The contract's EIP-712 domain separator (equal to [`VoucherDomain::separator`]).
    pub async fn domain_separator(&self) -> Result<[u8; 32], ChainError> {
        let call = OrienEscrow::domainSeparatorCall {};
        let s = view(&self.chain, self.escrow, "domainSeparator()", call).await?;
        Ok(s.0)
    }

    /// The contract's voucher type hash.
    pub async fn voucher_type_hash(&self) -> Result<[u8; 32], ChainError> {
        let call = OrienEscrow::VOUCHER_TYPEHASHCall {};
        let s = view(&self.chain, self.escrow, "VOUCHER_TYPEHASH()", call).await?;
        Ok(s.0)
    }

    /// The escrow's events in blocks `from..=to`, for reconciliation.
    pub async fn events(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(EscrowLog, OrienEscrow::OrienEscrowEvents)>, ChainError> {
        let filter = Filter::new()
            .address(self.escrow)
            .from_block(from)
            .to_block(to);
        let logs = self
            .chain
            .rpc("eth_getLogs", || self.chain.provider().get_logs(&filter))
            .await?;
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            let Ok(decoded) = OrienEscrow::OrienEscrowEvents::decode_log(&log.inner) else {
                continue;
            };
            let at = EscrowLog {
                block: log.block_number.unwrap_or_default(),
                block_hash: log.block_hash.map(|h| h.0).unwrap_or_default(),
                tx: log.transaction_hash.map(|h| h.0).unwrap_or_default(),
                removed: log.removed,
            };
            out.push((at, decoded.data));
        }
        Ok(out)
    }

    /// The current block number.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.chain
            .rpc("eth_blockNumber", || {
                self.chain.provider().get_block_number()
            })
            .await
    }

    /// The hash of block `number`, or `None` if the chain is shorter.
    pub async fn block_hash(&self, number: u64) -> Result<Option<[u8; 32]>, ChainError> {
        let block = self
            .chain
            .rpc("eth_getBlockByNumber", || {
                self.chain
                    .provider()
                    .get_block_by_number(number.into())
                    .into_future()
            })
            .await?;
        Ok(block.map(|b| b.header.hash.0))
    }

    /// Confirmations this client waits for.
    pub fn confirmations(&self) -> u64 {
        self.chain.config().confirmations
    }

    fn events_of(&self, receipt: &TransactionReceipt) -> Vec<OrienEscrow::OrienEscrowEvents> {
        receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == self.escrow)
            .filter_map(|log| OrienEscrow::OrienEscrowEvents::decode_log(&log.inner).ok())
            .map(|log| log.data)
            .collect()
    }

    fn amount_and_mined(
        &self,
        amount: Option<u128>,
        receipt: &TransactionReceipt,
        event: &str,
    ) -> Result<(Usdc, Mined), ChainError> {
        let amount =
            amount.ok_or_else(|| ChainError::Unexpected(format!("receipt without {event}")))?;
        Ok((usdc_from_u128(amount)?, Transactor::mined(receipt)?))
    }
}

/// Runs a view function of the contract at `to` with `eth_call`.
pub(crate) async fn view<C: SolCall>(
    chain: &Transactor,
    to: Address,
    name: &'static str,
    call: C,
) -> Result<C::Return, ChainError> {
    let tx = TransactionRequest::default()
        .to(to)
        .input(call.abi_encode().into());
    let output = chain
        .rpc(name, || chain.provider().call(tx.clone()).into_future())
        .await?;
    C::abi_decode_returns(&output)
        .map_err(|e| ChainError::Unexpected(format!("cannot decode the result of {name}: {e}")))
}

/// A voucher in the contract's calldata layout.
pub(crate) fn to_signed_voucher(voucher: &Voucher) -> OrienEscrow::SignedVoucher {
    let bytes = &voucher.signature.0;
    OrienEscrow::SignedVoucher {
        laneId: lane_to_b256(voucher.lane),
        cumulative: u128::from(voucher.cumulative.micros()),
        v: bytes[64],
        r: alloy::primitives::B256::from_slice(&bytes[..32]),
        s: alloy::primitives::B256::from_slice(&bytes[32..64]),
    }
}
