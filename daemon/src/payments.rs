//! Escrow payments: the node's wallet on an `OrienEscrow` contract.
//!
//! A renter pays a session from its lane to the provider's payout address: before
//! opening it checks that the lane's unspent deposit covers what it has acknowledged on
//! the lane plus the new budget (topping the lane up when auto-funding is on), then
//! attaches an EIP-712 voucher for the lane's cumulative total to every ack. A provider
//! checks the same deposit before accepting, verifies every voucher before committing
//! the receipt it pays for, and settles the latest voucher of each lane on chain —
//! periodically and on request.
//!
//! One escrow session runs on a lane at a time: a voucher names the lane's cumulative
//! total, which two sessions acking side by side could not agree on.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orien_ledger::chain::VoucherDomain;
use orien_ledger::chain::{
    BatchSettlement, ChainConfig, ChainError, EscrowClient, ReconcileError, Reconciler, Wallet,
};
use orien_ledger::receipts::VoucherSigner;
use orien_ledger::{LaneSettlement, Store, StoreError};
use orien_protocol::{EvmAddress, LaneId, PaymentLane, Usdc, Voucher};
use tracing::{info, warn};

/// Where the escrow is and how the node uses it.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// JSON-RPC endpoint, chain id, confirmations and retries.
    pub chain: ChainConfig,
    /// The `OrienEscrow` contract.
    pub escrow: EvmAddress,
    /// Renter: top a lane up by what a new session needs instead of refusing to open,
    /// as long as the lane's deposit stays at most this cap (`None`: never auto-fund).
    pub auto_fund_cap: Option<Usdc>,
    /// Provider: settle lanes with unsettled vouchers this often (`None`: not on a
    /// timer).
    pub settle_every: Option<Duration>,
    /// Provider: settle as soon as this much is acknowledged and unsettled (`None`: no
    /// threshold).
    pub settle_above: Option<Usdc>,
}

/// How often the settler checks the unsettled total against the threshold.
const SETTLE_CHECK: Duration = Duration::from_secs(10);

/// Why an escrow payment could not be arranged.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The lane's unspent deposit does not cover the session.
    #[error(
        "the lane to {payout} can still pay {available} but this session needs {needed}; fund it (`orien-node wallet fund`) or run with --auto-fund <cap> (a cap of at least {needed})"
    )]
    InsufficientDeposit {
        /// The provider's payout address.
        payout: EvmAddress,
        /// Unspent deposit minus what is acknowledged and unsettled.
        available: Usdc,
        /// Acknowledged on the lane so far plus the new budget.
        needed: Usdc,
    },
    /// A session on the same lane is open.
    #[error("a session on the lane to {0} is open; close it first (one escrow session per lane)")]
    LaneBusy(EvmAddress),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] StoreError),
    /// Settlement failed.
    #[error(transparent)]
    Settle(#[from] ReconcileError),
}

/// The node's escrow client, its lanes in use and its settlement state.
pub struct Payments {
    escrow: EscrowClient,
    wallet: Wallet,
    store: Arc<Store>,
    auto_fund_cap: Option<Usdc>,
    busy: Mutex<HashSet<LaneId>>,
    reconciler: tokio::sync::Mutex<Reconciler>,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("escrow", &self.escrow.address())
            .field("wallet", &self.escrow.wallet_address())
            .field("auto_fund_cap", &self.auto_fund_cap)
            .finish()
    }
}

/// A lane reserved for one session; released on drop.
#[derive(Debug)]
pub struct LaneGuard {
    payments: Arc<Payments>,
    lane: LaneId,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.payments.busy().remove(&self.lane);
    }
}

/// What a renter needs to pay a session from its lane.
#[derive(Debug)]
pub struct RenterLane {
    /// The payment terms sent in `OpenSession`.
    pub payment: PaymentLane,
    /// The lane.
    pub lane: LaneId,
    /// What the lane had acknowledged before this session (vouchers add to it).
    pub base: Usdc,
    /// Holds the lane for the session.
    pub guard: LaneGuard,
}

impl Payments {
    /// Connects to the escrow with the node's wallet; settlement starts from the current
    /// block (earlier settlements of this node were recorded when they were made).
    pub async fn connect(
        settings: &ChainSettings,
        wallet: &Wallet,
        store: Arc<Store>,
    ) -> Result<Arc<Self>, ChainError> {
        let escrow = EscrowClient::connect(settings.chain.clone(), wallet, settings.escrow).await?;
        let from = escrow.block_number().await?;
        info!(escrow = %escrow.address(), wallet = %escrow.wallet_address(), chain_id = settings.chain.chain_id, "escrow payments ready");
        Ok(Arc::new(Self {
            reconciler: tokio::sync::Mutex::new(Reconciler::new(escrow.clone(), from)),
            escrow,
            wallet: wallet.clone(),
            store,
            auto_fund_cap: settings.auto_fund_cap,
            busy: Mutex::new(HashSet::new()),
        }))
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<LaneId>> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The escrow client (this node's wallet).
    pub fn escrow(&self) -> &EscrowClient {
        &self.escrow
    }

    /// This node's wallet address.
    pub fn wallet(&self) -> EvmAddress {
        self.escrow.wallet_address()
    }

    fn reserve(
        self: &Arc<Self>,
        lane: LaneId,
        payout: EvmAddress,
    ) -> Result<LaneGuard, PaymentError> {
        if !self.busy().insert(lane) {
            return Err(PaymentError::LaneBusy(payout));
        }
        Ok(LaneGuard {
            payments: self.clone(),
            lane,
        })
    }

    fn acked_on(&self, lane: LaneId) -> Result<Usdc, StoreError> {
        Ok(self
            .store
            .lane_settlement(&lane)?
            .map_or(Usdc::ZERO, |s: LaneSettlement| s.acked))
    }

    /// Renter: the lane to `payout` for a session of `budget`, funded enough (topped up
    /// when auto-funding is on).
    pub async fn renter_lane(
        self: &Arc<Self>,
        payout: EvmAddress,
        budget: Usdc,
    ) -> Result<RenterLane, PaymentError> {
        let lane = self.escrow.lane_id(self.wallet(), payout);
        let guard = self.reserve(lane, payout)?;
        let base = self.acked_on(lane)?;
        let needed = base.checked_add(budget).unwrap_or(Usdc::MAX);
        let state = self.escrow.lane(lane).await?;
        if state.deposit < needed {
            let available = Usdc::from_micros(state.deposit.micros().saturating_sub(base.micros()));
            if self.auto_fund_cap.is_none_or(|cap| needed > cap) {
                return Err(PaymentError::InsufficientDeposit {
                    payout,
                    available,
                    needed,
                });
            }
            let top_up = Usdc::from_micros(needed.micros() - state.deposit.micros());
            info!(%payout, %top_up, "auto-funding the lane");
            self.escrow.fund(payout, top_up).await?;
        }
        Ok(RenterLane {
            payment: PaymentLane::Escrow {
                chain_id: self.escrow.domain().chain_id(),
                contract: self.escrow.address(),
                lane,
                renter_wallet: self.wallet(),
            },
            lane,
            base,
            guard,
        })
    }

    /// The renter's voucher signer.
    pub fn signer(&self) -> Box<dyn VoucherSigner> {
        Box::new(EscrowSigner {
            domain: self.escrow.domain(),
            wallet: self.wallet.clone(),
        })
    }

    /// Provider: checks a renter's escrow terms for a session of `budget` paid to
    /// `payout`, and holds the lane. `Err` carries the rejection to send.
    pub async fn provider_lane(
        self: &Arc<Self>,
        payment: &PaymentLane,
        payout: EvmAddress,
        budget: Usdc,
    ) -> Result<LaneGuard, orien_protocol::RejectReason> {
        use orien_protocol::RejectReason;
        let PaymentLane::Escrow {
            chain_id,
            contract,
            lane,
            renter_wallet,
        } = payment
        else {
            return Err(RejectReason::PaymentNotSupported);
        };
        if *chain_id != self.escrow.domain().chain_id() || *contract != self.escrow.address() {
            return Err(RejectReason::PaymentNotSupported);
        }
        if *lane != self.escrow.lane_id(*renter_wallet, payout) {
            return Err(RejectReason::InvalidRequest {
                detail:
                    "the lane is not the one from the renter's wallet to the offer's payout address"
                        .into(),
            });
        }
        let guard = self
            .reserve(*lane, payout)
            .map_err(|_| RejectReason::InvalidRequest {
                detail: "a session on this lane is open; close it first".into(),
            })?;
        let acked = self.acked_on(*lane).map_err(|e| {
            warn!(error = %e, "cannot read the lane from the ledger");
            RejectReason::SandboxUnavailable {
                detail: "the provider's ledger is unavailable".into(),
            }
        })?;
        let state = self.escrow.lane(*lane).await.map_err(|e| {
            warn!(error = %e, "cannot read the lane on chain");
            RejectReason::SandboxUnavailable {
                detail: "the provider cannot reach the chain".into(),
            }
        })?;
        let available = Usdc::from_micros(state.deposit.micros().saturating_sub(acked.micros()));
        if available < budget {
            return Err(RejectReason::InsufficientDeposit { available });
        }
        Ok(guard)
    }

    /// Provider: checks that `voucher` pays the lane `renter_wallet → payout` at least
    /// `acknowledged`, signed by the renter, before the receipt it pays for is committed.
    pub fn verify_voucher(
        &self,
        voucher: &Voucher,
        renter_wallet: EvmAddress,
        payout: EvmAddress,
        acknowledged: Usdc,
    ) -> Result<(), orien_ledger::chain::VoucherError> {
        let previous = self
            .store
            .lane_settlement(&voucher.lane)
            .ok()
            .flatten()
            .and_then(|s| s.latest_voucher)
            .map_or(Usdc::ZERO, |v| v.cumulative);
        self.escrow
            .domain()
            .verify_next(voucher, renter_wallet, payout, previous, acknowledged)
    }

    /// Provider: settles every lane whose latest voucher is not paid in full.
    pub async fn settle(&self) -> Result<Vec<BatchSettlement>, PaymentError> {
        let mut reconciler = self.reconciler.lock().await;
        let batches = reconciler.settle_pending(&self.store).await?;
        for batch in &batches {
            info!(tx = ?batch.mined.tx, lanes = batch.settled.len(), fee = %batch.fee, reserve = %batch.reserve, "settled on chain");
        }
        Ok(batches)
    }

    /// What is acknowledged on this node's lanes and not yet paid by the chain.
    pub fn unsettled(&self) -> Result<Usdc, StoreError> {
        Ok(self
            .store
            .unsettled_vouchers()?
            .iter()
            .map(|u| {
                u.voucher
                    .cumulative
                    .micros()
                    .saturating_sub(u.settled.micros())
            })
            .fold(Usdc::ZERO, |sum, m| {
                sum.checked_add(Usdc::from_micros(m)).unwrap_or(Usdc::MAX)
            }))
    }

    /// Provider: settles every `every`, and whenever the unsettled total reaches
    /// `above`, until the node stops. Failures are logged and retried at the next check.
    pub fn spawn_settler(
        self: &Arc<Self>,
        every: Option<Duration>,
        above: Option<Usdc>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if every.is_none() && above.is_none() {
            return None;
        }
        let payments = Arc::downgrade(self);
        let check = every.map_or(SETTLE_CHECK, |e| e.min(SETTLE_CHECK));
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(check);
            tick.tick().await;
            let mut last = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let Some(payments) = payments.upgrade() else {
                    return;
                };
                let due = every.is_some_and(|e| last.elapsed() >= e);
                let over = match (above, payments.unsettled()) {
                    (Some(above), Ok(unsettled)) => !unsettled.is_zero() && unsettled >= above,
                    _ => false,
                };
                if !due && !over {
                    continue;
                }
                last = tokio::time::Instant::now();
                if let Err(e) = payments.settle().await {
                    warn!(error = %e, "settlement failed; retrying at the next check");
                }
            }
        }))
    }
}

/// Signs vouchers with the node's wallet.
struct EscrowSigner {
    domain: VoucherDomain,
    wallet: Wallet,
}

impl VoucherSigner for EscrowSigner {
    fn sign_voucher(&self, lane: LaneId, cumulative: Usdc) -> Result<Voucher, String> {
        Ok(self.domain.sign(&self.wallet, lane, cumulative))
    }
}
