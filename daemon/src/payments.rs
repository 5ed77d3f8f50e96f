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
//! Several sessions may run on one lane at once. A voucher names the lane's whole
//! cumulative total, so the renter signs them one at a time: each session's driver takes
//! the lane's [turn](LaneGuard::turn) from reading the lane's total to the durable commit
//! of the receipt the voucher pays for. A deposit check counts the budgets of the lane's
//! other open sessions as already spent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orien_ledger::chain::VoucherDomain;
use orien_ledger::chain::{
    BatchSettlement, ChainConfig, ChainError, EscrowClient, ReconcileError, Reconciler, Wallet,
};
use orien_ledger::receipts::VoucherSigner;
use orien_ledger::{LaneSettlement, Store, StoreError};
use orien_protocol::{EvmAddress, LaneHead, LaneId, NodeId, PaymentLane, Usdc, Voucher};
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
    /// Provider: withdraw its earnings to its wallet whenever what it can withdraw
    /// reaches this (`None`: only when asked), so using them never means stopping.
    pub withdraw_above: Option<Usdc>,
}

/// Time a provider keeps, after a session's longest possible end, to settle its lane
/// before the renter could take the deposit back: a lane whose thaw window is shorter
/// than a session's maximum duration plus this is refused.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(600);
/// How often the node follows the escrow's events.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// How often the settler checks the unsettled total against the threshold.
const SETTLE_CHECK: Duration = Duration::from_secs(10);

/// Why an escrow payment could not be arranged.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The lane's unspent deposit does not cover the session.
    #[error(
        "the lane to {payout} can still pay {available} but this session needs {needed} (with {held} held for the lane's other open sessions); fund it (`orien-node wallet fund`) or run with --auto-fund <cap> (a cap of at least {needed})"
    )]
    InsufficientDeposit {
        /// The provider's payout address.
        payout: EvmAddress,
        /// Unspent deposit minus what is acknowledged and unsettled.
        available: Usdc,
        /// Acknowledged on the lane so far, the other open sessions' budgets, and the new
        /// budget: what the deposit must hold.
        needed: Usdc,
        /// The budgets of the lane's other open sessions.
        held: Usdc,
    },
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
    /// The lanes with open sessions.
    in_use: Mutex<HashMap<LaneId, LaneUse>>,
    /// Each lane's turn (kept while the node runs: one per lane it ever used).
    turns: Mutex<HashMap<LaneId, Arc<tokio::sync::Mutex<()>>>>,
    reconciler: tokio::sync::Mutex<Reconciler>,
    /// This node: the provider of the lanes it settles.
    node: NodeId,
    /// The escrow's thaw window: how long a lane stays payable after a close request.
    thaw: Duration,
    /// Lanes whose renter asked to close them, as the chain reported (unix seconds at
    /// which the thaw window ends); sessions on them end and they settle at once.
    closing: tokio::sync::watch::Sender<std::collections::HashMap<LaneId, u64>>,
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

/// The open sessions of one lane.
#[derive(Debug)]
struct LaneUse {
    sessions: u32,
    /// Their budgets.
    held: Usdc,
}

/// One open session's place on a lane, with its budget counted against the lane's
/// deposit; released on drop (or by [`release`](Self::release)).
#[derive(Debug)]
pub struct LaneGuard {
    payments: Arc<Payments>,
    lane: LaneId,
    budget: Usdc,
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Budgets of the lane's other sessions, and how many, when this one took its place.
    others: (u32, Usdc),
    released: bool,
}

impl LaneGuard {
    /// The lane's turn: on a renter, hold it from reading the lane's acknowledged total
    /// to the durable commit of the receipt whose voucher counts from that total; on a
    /// provider, while moving the lane's total up to what the renter proved.
    pub fn turn(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.turn.clone()
    }

    /// The lane.
    pub const fn lane(&self) -> LaneId {
        self.lane
    }

    /// The node's payments (to read the lane's total).
    pub fn payments(&self) -> Arc<Payments> {
        self.payments.clone()
    }

    /// Whether no other session was open on the lane when this one took its place.
    pub const fn was_idle(&self) -> bool {
        self.others.0 == 0
    }

    /// The budgets of the lane's other open sessions when this one took its place.
    pub const fn held_by_others(&self) -> Usdc {
        self.others.1
    }

    /// Leaves the lane; whether no session is open on it any more.
    pub fn release(mut self) -> bool {
        self.leave()
    }

    fn leave(&mut self) -> bool {
        if std::mem::replace(&mut self.released, true) {
            return false;
        }
        let mut in_use = self.payments.in_use();
        let Some(use_) = in_use.get_mut(&self.lane) else {
            return true;
        };
        use_.sessions = use_.sessions.saturating_sub(1);
        use_.held = use_.held.saturating_sub(self.budget);
        if use_.sessions == 0 {
            in_use.remove(&self.lane);
            return true;
        }
        false
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.leave();
    }
}

/// What a renter needs to pay a session from its lane.
#[derive(Debug)]
pub struct RenterLane {
    /// The payment terms sent in `OpenSession`.
    pub payment: PaymentLane,
    /// The lane.
    pub lane: LaneId,
    /// What this node has acknowledged on the lane before this session, with its latest
    /// voucher: sent at open, vouchers count from it (or from the provider's higher total).
    pub head: LaneHead,
    /// The provider's payout address.
    pub payout: EvmAddress,
    /// Holds the lane for the session.
    pub guard: LaneGuard,
}

impl Payments {
    /// Connects to the escrow with the node's wallet. Reconciliation resumes where the
    /// ledger says it stopped, or at the escrow's deployment block the first time. `node`
    /// is this node: it settles only the lanes on which it is the provider (its ledger
    /// also holds the vouchers it signed as renter, which the escrow would refuse from it).
    pub async fn connect(
        settings: &ChainSettings,
        wallet: &Wallet,
        store: Arc<Store>,
        node: NodeId,
    ) -> Result<Arc<Self>, PaymentError> {
        let escrow = EscrowClient::connect(settings.chain.clone(), wallet, settings.escrow).await?;
        let reconciler = Reconciler::resume(escrow.clone(), &store).await?;
        let thaw = escrow.thaw_period().await?;
        info!(escrow = %escrow.address(), wallet = %escrow.wallet_address(), chain_id = settings.chain.chain_id, thaw_secs = thaw.as_secs(), "escrow payments ready");
        Ok(Arc::new(Self {
            node,
            reconciler: tokio::sync::Mutex::new(reconciler),
            escrow,
            wallet: wallet.clone(),
            store,
            auto_fund_cap: settings.auto_fund_cap,
            in_use: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            thaw,
            closing: tokio::sync::watch::Sender::new(std::collections::HashMap::new()),
        }))
    }

    /// The escrow's thaw window.
    pub fn thaw(&self) -> Duration {
        self.thaw
    }

    /// The longest session a lane of this escrow can pay safely: the thaw window minus
    /// the settle margin.
    pub fn longest_session(&self) -> Duration {
        self.thaw.saturating_sub(SETTLE_MARGIN)
    }

    /// Lanes whose renter asked to close them (watch it to end their sessions).
    pub fn closing_lanes(
        &self,
    ) -> tokio::sync::watch::Receiver<std::collections::HashMap<LaneId, u64>> {
        self.closing.subscribe()
    }

    fn in_use(&self) -> std::sync::MutexGuard<'_, HashMap<LaneId, LaneUse>> {
        self.in_use.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The escrow client (this node's wallet).
    pub fn escrow(&self) -> &EscrowClient {
        &self.escrow
    }

    /// This node's wallet address.
    pub fn wallet(&self) -> EvmAddress {
        self.escrow.wallet_address()
    }

    /// The turn of `lane` (see [`LaneGuard::turn`]).
    pub fn turn(&self, lane: LaneId) -> Arc<tokio::sync::Mutex<()>> {
        self.turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(lane)
            .or_default()
            .clone()
    }

    /// How many sessions are open on `lane`.
    pub fn sessions_on(&self, lane: &LaneId) -> u32 {
        self.in_use().get(lane).map_or(0, |u| u.sessions)
    }

    /// Takes a place on `lane` for a session of `budget`.
    fn reserve(self: &Arc<Self>, lane: LaneId, budget: Usdc) -> LaneGuard {
        let turn = self.turn(lane);
        let mut in_use = self.in_use();
        let use_ = in_use.entry(lane).or_insert_with(|| LaneUse {
            sessions: 0,
            held: Usdc::ZERO,
        });
        let others = (use_.sessions, use_.held);
        use_.sessions += 1;
        use_.held = use_.held.checked_add(budget).unwrap_or(Usdc::MAX);
        LaneGuard {
            payments: self.clone(),
            lane,
            budget,
            turn,
            others,
            released: false,
        }
    }

    /// Provider: what the lane's deposit already owes, as far as this ledger knows: its
    /// acknowledged total, or a voucher above it whose receipts are still on their way.
    fn owed_on(&self, lane: LaneId) -> Result<Usdc, StoreError> {
        let acked = self.lane_head(lane)?.acked;
        let ahead = self.store.ahead_voucher(&lane)?.map(|v| v.cumulative);
        Ok(ahead.map_or(acked, |a| a.max(acked)))
    }

    /// What this node's ledger has acknowledged on an escrow lane, with the latest
    /// voucher for it.
    pub fn lane_head(&self, lane: LaneId) -> Result<LaneHead, StoreError> {
        Ok(self
            .store
            .lane_settlement(&lane)?
            .map_or(LaneHead::default(), |s: LaneSettlement| LaneHead {
                acked: s.acked,
                voucher: s.latest_voucher.filter(|v| v.cumulative == s.acked),
            }))
    }

    /// Renter: whether `voucher` is this node's own voucher for `amount` on the lane to
    /// `payout` (a provider proving it holds more than this ledger does).
    pub fn is_own_voucher(&self, voucher: &Voucher, payout: EvmAddress, amount: Usdc) -> bool {
        voucher.cumulative == amount
            && self
                .escrow
                .domain()
                .verify(voucher, self.wallet(), payout)
                .is_ok()
    }

    /// Renter: adds `amount` from this node's wallet to its lane to `payout`, and keeps
    /// the payout beside the lane (a reclaim names it; the chain keeps only a hash).
    pub async fn fund(
        &self,
        payout: EvmAddress,
        amount: Usdc,
    ) -> Result<orien_ledger::chain::Funded, PaymentError> {
        let funded = self.escrow.fund(payout, amount).await?;
        self.remember_payout(funded.lane, payout)?;
        Ok(funded)
    }

    fn remember_payout(&self, lane: LaneId, payout: EvmAddress) -> Result<(), StoreError> {
        if self.store.lane_payout(&lane)? != Some(payout) {
            self.store.lane_payout_funded(lane, payout)?;
        }
        Ok(())
    }

    /// Renter: the lane to `payout` for a session of `budget`, funded enough (topped up
    /// when auto-funding is on).
    pub async fn renter_lane(
        self: &Arc<Self>,
        payout: EvmAddress,
        budget: Usdc,
    ) -> Result<RenterLane, PaymentError> {
        let lane = self.escrow.lane_id(self.wallet(), payout);
        self.remember_payout(lane, payout)?;
        let guard = self.reserve(lane, budget);
        let head = self.lane_head(lane)?;
        let held = guard.held_by_others();
        let needed = head
            .acked
            .checked_add(held)
            .and_then(|n| n.checked_add(budget))
            .unwrap_or(Usdc::MAX);
        let state = self.escrow.lane(lane).await?;
        if state.deposit < needed {
            let available =
                Usdc::from_micros(state.deposit.micros().saturating_sub(head.acked.micros()));
            if self.auto_fund_cap.is_none_or(|cap| needed > cap) {
                return Err(PaymentError::InsufficientDeposit {
                    payout,
                    available,
                    needed,
                    held,
                });
            }
            let top_up = Usdc::from_micros(needed.micros() - state.deposit.micros());
            info!(%payout, %top_up, "auto-funding the lane");
            self.fund(payout, top_up).await?;
        }
        Ok(RenterLane {
            payment: PaymentLane::Escrow {
                chain_id: self.escrow.domain().chain_id(),
                contract: self.escrow.address(),
                lane,
                renter_wallet: self.wallet(),
            },
            lane,
            head,
            payout,
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

    /// Provider: checks a renter's escrow terms for a session of `budget` and at most
    /// `max_duration` paid to `payout`, and takes a place on the lane: the deposit must
    /// hold what the lane owes, the budgets of its other open sessions and this budget.
    /// `Err` carries the rejection to send. A lane with a close request, or an escrow whose thaw window would end
    /// before the session's longest end plus [`SETTLE_MARGIN`], is refused: the renter
    /// could take the deposit back before the provider settles.
    pub async fn provider_lane(
        self: &Arc<Self>,
        payment: &PaymentLane,
        payout: EvmAddress,
        budget: Usdc,
        max_duration: orien_protocol::Millis,
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
        let longest = orien_protocol::Millis::from_duration(self.longest_session());
        if max_duration > longest {
            return Err(RejectReason::DurationTooLong { max: longest });
        }
        let guard = self.reserve(*lane, budget);
        let owed = self.owed_on(*lane).map_err(|e| {
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
        if state.close_requested_at.is_some() {
            return Err(RejectReason::LaneClosing);
        }
        // A close that ended (refunded, or cancelled by funding again) no longer ends
        // the lane's sessions.
        self.forget_close(lane);
        let committed = owed
            .checked_add(guard.held_by_others())
            .unwrap_or(Usdc::MAX);
        let available =
            Usdc::from_micros(state.deposit.micros().saturating_sub(committed.micros()));
        if available < budget {
            return Err(RejectReason::InsufficientDeposit { available });
        }
        Ok(guard)
    }

    /// Provider: checks that `voucher` is the renter's, for the lane `renter_wallet →
    /// payout`, before the receipt it comes with is committed. (The ledger then checks
    /// that the lane's vouchers cover its acknowledged total: vouchers of sessions sharing
    /// the lane arrive in any order.)
    pub fn check_voucher(
        &self,
        voucher: &Voucher,
        renter_wallet: EvmAddress,
        payout: EvmAddress,
    ) -> Result<(), orien_ledger::chain::VoucherError> {
        self.escrow.domain().verify(voucher, renter_wallet, payout)
    }

    /// Provider: checks that `voucher` pays the lane `renter_wallet → payout` at least
    /// `acknowledged` and no less than its latest voucher, signed by the renter (the
    /// lane's total a renter proves when a session opens).
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
        let batches = reconciler.settle_provided(&self.store, &self.node).await?;
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
            .filter(|u| u.key.provider == self.node)
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

    /// Follows the escrow's events every `every` until the node stops: confirmed and
    /// reorganised settlements go into the ledger, settlements the chain never mined are
    /// voided (their vouchers submitted again), and a lane whose renter asks to close it
    /// is settled at once (on a provider) and reported to [`closing_lanes`](Self::closing_lanes).
    pub fn spawn_reconciler(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let payments = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(payments) = payments.upgrade() else {
                    return;
                };
                if let Err(e) = payments.reconcile().await {
                    warn!(error = %e, "reconciliation failed; retrying at the next check");
                }
            }
        })
    }

    /// One round of [`spawn_reconciler`](Self::spawn_reconciler).
    pub async fn reconcile(&self) -> Result<orien_ledger::chain::Reconciled, PaymentError> {
        let mut reconciler = self.reconciler.lock().await;
        let report = reconciler.poll(&self.store).await?;
        for (lane, thaw_ends_at) in &report.close_requested {
            // The event can be older than the lane: a close since finished or cancelled
            // must not end the sessions the lane carries now.
            let still_closing = match self.escrow.lane(*lane).await {
                Ok(state) => state.close_requested_at.is_some(),
                Err(e) => {
                    warn!(%lane, error = %e, "cannot read the closing lane; treating it as closing");
                    true
                }
            };
            if still_closing {
                self.closing.send_modify(|closing| {
                    closing.insert(*lane, *thaw_ends_at);
                });
            }
            let provider = self
                .store
                .lane_settlement(lane)?
                .is_some_and(|s| s.key.provider == self.node && s.latest_voucher.is_some());
            if provider {
                info!(%lane, "the renter asked to close the lane; settling it now");
                reconciler.settle_lane(&self.store, *lane).await?;
            }
        }
        drop(reconciler);
        let listed: Vec<LaneId> = self.closing.borrow().keys().copied().collect();
        for lane in listed {
            if let Ok(state) = self.escrow.lane(lane).await
                && state.close_requested_at.is_none()
            {
                self.forget_close(&lane);
            }
        }
        Ok(report)
    }

    /// Takes `lane` off the closing lanes: its close ended on chain.
    fn forget_close(&self, lane: &LaneId) {
        if self
            .closing
            .send_if_modified(|closing| closing.remove(lane).is_some())
        {
            info!(%lane, "the lane's close ended; it carries sessions again");
        }
    }

    /// Provider: settles one lane now (its renter asked to close it, or a session on it
    /// ended while it closes).
    pub async fn settle_lane(&self, lane: LaneId) -> Result<Vec<BatchSettlement>, PaymentError> {
        // Only the lane's provider settles it (the renter holds the same vouchers).
        if self
            .store
            .lane_settlement(&lane)?
            .is_none_or(|s| s.key.provider != self.node)
        {
            return Ok(Vec::new());
        }
        let mut reconciler = self.reconciler.lock().await;
        Ok(reconciler.settle_lane(&self.store, lane).await?)
    }

    /// Whether the renter of `lane` asked to close it.
    pub fn is_closing(&self, lane: &LaneId) -> bool {
        self.closing.borrow().contains_key(lane)
    }

    /// Provider: settles every `every`, and whenever the unsettled total reaches
    /// `above`; withdraws its earnings whenever what it can withdraw reaches
    /// `withdraw_above`; until the node stops. Failures are logged and retried at the
    /// next check.
    pub fn spawn_settler(
        self: &Arc<Self>,
        every: Option<Duration>,
        above: Option<Usdc>,
        withdraw_above: Option<Usdc>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if every.is_none() && above.is_none() && withdraw_above.is_none() {
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
                if due || over {
                    last = tokio::time::Instant::now();
                    if let Err(e) = payments.settle().await {
                        warn!(error = %e, "settlement failed; retrying at the next check");
                    }
                }
                if let Some(threshold) = withdraw_above {
                    payments.sweep(threshold).await;
                }
            }
        }))
    }
}

impl Payments {
    /// Withdraws the provider's earnings when what it can withdraw reaches `threshold`.
    async fn sweep(&self, threshold: Usdc) {
        let earnings = match self.escrow.earnings(self.wallet()).await {
            Ok(earnings) => earnings,
            Err(e) => {
                return warn!(error = %e, "cannot read the earnings; retrying at the next check");
            }
        };
        if earnings.withdrawable.is_zero() || earnings.withdrawable < threshold {
            return;
        }
        match self.escrow.withdraw_earnings().await {
            Ok((amount, mined)) => {
                info!(%amount, tx = %mined.tx, "earnings withdrawn to the wallet (auto-withdraw)");
            }
            Err(e) => warn!(error = %e, "auto-withdraw failed; retrying at the next check"),
        }
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
