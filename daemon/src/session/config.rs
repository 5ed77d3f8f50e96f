//! What sessions run with: timings, limits, payment policies and the services a node
//! lends them.

use crate::session::operator::OperatorControls;
use std::sync::Arc;

use orien_ledger::Store;
use orien_ledger::receipts::Tolerance;
use orien_protocol::{Millis, NodeId};

use crate::payments::Payments;

/// How a renter pays a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PaymentChoice {
    /// From an escrow lane when the node is connected to a chain, else the ledger.
    #[default]
    Auto,
    /// The embedded ledgers only; nothing on chain.
    Ledger,
    /// An escrow lane (the node must be connected to a chain).
    Escrow,
}

/// Which renters a provider connected to a chain serves on ledger-paid sessions (IOUs
/// in the two ledgers, nothing escrowed). A provider without a chain has only those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LedgerPayments {
    /// None: on a chain, every session is paid from an escrow lane.
    #[default]
    EscrowOnly,
    /// These peers (operators the provider trusts to pay off chain).
    Peers(std::collections::BTreeSet<NodeId>),
    /// Anyone: the operator accepts IOUs from strangers.
    Anyone,
}

impl LedgerPayments {
    pub(super) fn allows(&self, peer: &NodeId) -> bool {
        match self {
            Self::EscrowOnly => false,
            Self::Peers(peers) => peers.contains(peer),
            Self::Anyone => true,
        }
    }
}

/// Timings and limits of sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// How often the provider sends a receipt while a session is open.
    pub receipt_interval: Millis,
    /// How long the provider waits for an ack before it suspends the session.
    pub ack_timeout: Millis,
    /// Longest session the provider accepts.
    pub max_duration: Millis,
    /// Most sessions the provider runs at once.
    pub max_sessions: usize,
    /// Most sessions the provider runs at once for one renter.
    pub max_sessions_per_peer: usize,
    /// Ledger-paid sessions a provider on a chain accepts.
    pub ledger_payments: LedgerPayments,
    /// Most output of rented sessions' executions a renter keeps in memory, in bytes;
    /// past it the oldest ended sessions' output is forgotten, then new output refused.
    pub max_output_held: u64,
    /// Bytes of each output stream an execution record keeps (both sides; the stream
    /// is hashed whole either way), at most
    /// [`MAX_KEPT_OUTPUT`](orien_ledger::executions::MAX_KEPT_OUTPUT).
    pub kept_output: usize,
    /// How far the provider's meter may run ahead of the renter's.
    pub tolerance: Tolerance,
    /// How long a renter waits without hearing from its provider (no receipt, no
    /// output) before it closes the session as disconnected (at least twice the
    /// agreed receipt interval). A shorter outage is
    /// ridden out: the provider retries its receipts until its ack timeout.
    pub disconnect_grace: Millis,
    /// The operator's choice of peers and a renter's rate of opens.
    pub operator: OperatorControls,
    /// How long a provider keeps a session's artefacts (the copies of its calls'
    /// output paths) for its renter after the session closed; zero: only while open.
    pub keep_artefacts: Millis,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            receipt_interval: Millis(5_000),
            ack_timeout: Millis(10_000),
            max_duration: Millis(24 * 3_600_000),
            max_sessions: 16,
            max_sessions_per_peer: 4,
            ledger_payments: LedgerPayments::EscrowOnly,
            max_output_held: 256 << 20,
            kept_output: 64 << 10,
            tolerance: Tolerance::default(),
            disconnect_grace: Millis(30_000),
            operator: OperatorControls::default(),
            keep_artefacts: Millis(10 * 60_000),
        }
    }
}

/// What a node needs to serve or rent sessions.
#[derive(Clone)]
pub struct SessionServices {
    /// The node's ledger.
    pub store: Arc<Store>,
    /// The sandbox, on nodes that sell tools: `orien_provider::Provider` (Docker), or
    /// `orien_provider::model::ModelSandbox` where the container is beside the point.
    pub provider: Option<Arc<dyn orien_provider::Sandbox>>,
    /// Timings and limits.
    pub config: SessionConfig,
    /// Escrow payments, on nodes connected to a chain.
    pub payments: Option<Arc<Payments>>,
    /// Where a provider stages file transfers (emptied at start): beside the ledger.
    pub staging: std::path::PathBuf,
}

impl std::fmt::Debug for SessionServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionServices")
            .field("store", &self.store.path())
            .field("provider", &self.provider.is_some())
            .field("config", &self.config)
            .field("payments", &self.payments)
            .field("staging", &self.staging)
            .finish()
    }
}
