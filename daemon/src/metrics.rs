//! Prometheus metrics of the node, named `orien_<area>_<what>_<unit>`, beside libp2p's
//! own (`libp2p_*`, registered without a prefix of ours so it is not doubled). Rendered
//! in the OpenMetrics text format for `GET /metrics`.
//!
//! They answer an operator's questions per concern: how many peers and offers there
//! are (`orien_network_*`, `orien_offers_*`); how sessions open, how long it takes and
//! why they end (`orien_sessions_*`); how calls go — running now, time to first output,
//! duration, outcome (`orien_executions_*`); how fast receipts come back acknowledged and
//! durable (`orien_receipts_*`) and how long a ledger commit takes (`orien_ledger_*`);
//! which abuse the peer guard saw and whom it banned (`orien_peers_*`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label of [`Metrics::offers_received`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OfferOutcome {
    /// `accepted`, `ignored` or `rejected`.
    pub outcome: &'static str,
}

/// Which side of a session this node is on.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Side {
    /// It sells the time.
    Provider,
    /// It rents it.
    Renter,
}

impl Side {
    /// Its label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Renter => "renter",
        }
    }
}

/// Label of the session metrics: which side this node is on.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Role {
    /// `provider` or `renter`.
    pub role: &'static str,
}

impl From<Side> for Role {
    fn from(side: Side) -> Self {
        Self {
            role: side.as_str(),
        }
    }
}

/// Label of [`Metrics::peer_abuse`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AbuseKind {
    /// `foreign_session`, `impersonation`, `undecodable_frame`, `broken_output`.
    pub kind: &'static str,
}

/// A histogram family by role.
type Timings = Family<Role, Histogram, fn() -> Histogram>;

/// Seconds from a millisecond to about half a minute, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Receipts in one synced ledger write, 1 to 1,024 (the largest group), doubling.
fn group_sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

/// Seconds from 10 ms to about three hours, doubling (calls run for minutes).
fn long_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// Label of [`Metrics::sessions_closed`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Closed {
    /// `provider` or `renter`.
    pub role: &'static str,
    /// The close reason (`renter_requested`, `ack_timeout`, `disconnected`, …).
    pub reason: &'static str,
}

/// Label of [`Metrics::executions`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecOutcomeLabel {
    /// `exited`, `timed_out`, `out_of_memory`, `invalid_arguments`, `sandbox_error`.
    pub outcome: &'static str,
}

/// The node's metric handles; clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// libp2p's own metrics (connections, gossipsub, kad, identify, ping, relay, dcutr).
    pub(crate) libp2p: Arc<libp2p::metrics::Metrics>,
    /// `orien_network_peers`: peers with an open connection.
    pub peers: Gauge,
    /// `orien_network_peers_trimmed_total`: peers disconnected to keep within the
    /// connection budget.
    pub peers_trimmed: Counter,
    /// `orien_network_listings_refused_total`: book and offer listings refused to peers
    /// that asked for too many pages.
    pub listings_refused: Counter,
    /// `orien_network_peer_lookups_total`: peers looked up in the DHT because a request
    /// could not dial them.
    pub peer_lookups: Counter,
    /// `orien_offers_book_size`: offers in the book.
    pub offers_in_book: Gauge,
    /// `orien_offers_received_total{outcome}`: offers received over gossip or lookups.
    pub offers_received: Family<OfferOutcome, Counter>,
    /// `orien_offers_published_total`: offers this node signed and published.
    pub offers_published: Counter,
    /// `orien_peers_banned_total`: peers cut off for abusing the session protocol.
    pub peers_banned: Counter,
    /// `orien_sessions_open{role}`: sessions open now.
    pub sessions_open: Family<Role, Gauge>,
    /// `orien_sessions_opened_total{role}`: sessions opened.
    pub sessions_opened: Family<Role, Counter>,
    /// `orien_sessions_closed_total{role,reason}`: sessions ended, by reason.
    pub sessions_closed: Family<Closed, Counter>,
    /// `orien_executions_total{outcome}`: executions this node ran (provider).
    pub executions: Family<ExecOutcomeLabel, Counter>,
    /// `orien_receipts_committed_total{role}`: dual-signed receipts committed.
    pub receipts_committed: Family<Role, Counter>,
    /// `orien_peers_abuse_total{kind}`: session-protocol abuse the guard counted.
    pub peer_abuse: Family<AbuseKind, Counter>,
    /// `orien_sessions_opening_seconds{role}`: from asking (renter) or being asked
    /// (provider) to the session's acceptance.
    pub session_open_time: Timings,
    /// `orien_executions_running{role}`: calls running now.
    pub executions_running: Family<Role, Gauge>,
    /// `orien_executions_first_output_seconds`: from a call's start to its first
    /// output reaching the renter.
    pub first_output: Histogram,
    /// `orien_executions_duration_seconds{role}`: from a call's start to its exit.
    pub execution_duration: Timings,
    /// `orien_receipts_ack_seconds`: provider, from sending a receipt to its ack.
    pub receipt_ack: Histogram,
    /// `orien_receipts_durable_seconds`: provider, from sending a receipt to its
    /// acknowledged form being durable in the ledger.
    pub receipt_durable: Histogram,
    /// `orien_ledger_commit_seconds{role}`: one receipt's verified, synced commit.
    pub ledger_commit: Timings,
    /// `orien_ledger_commit_group_receipts{role}`: per committed receipt, how many
    /// receipts the synced write that committed it held (group commit at work).
    pub ledger_commit_group: Timings,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        // libp2p names its own families `libp2p_…`: a prefix here would double it.
        let libp2p = libp2p::metrics::Metrics::new(&mut registry);
        let orien = registry.sub_registry_with_prefix("orien");
        let peers = Gauge::default();
        orien.register(
            "network_peers",
            "Peers with an open connection",
            peers.clone(),
        );
        let peers_trimmed = Counter::default();
        orien.register(
            "network_peers_trimmed",
            "Peers disconnected to keep within the connection budget",
            peers_trimmed.clone(),
        );
        let listings_refused = Counter::default();
        orien.register(
            "network_listings_refused",
            "Book and offer listings refused to peers that asked for too many pages",
            listings_refused.clone(),
        );
        let peer_lookups = Counter::default();
        orien.register(
            "network_peer_lookups",
            "Peers looked up in the DHT because a request could not dial them",
            peer_lookups.clone(),
        );
        let offers_in_book = Gauge::default();
        orien.register(
            "offers_book_size",
            "Offers in the offer book",
            offers_in_book.clone(),
        );
        let offers_received = Family::<OfferOutcome, Counter>::default();
        orien.register(
            "offers_received",
            "Offers received, by outcome",
            offers_received.clone(),
        );
        let offers_published = Counter::default();
        orien.register(
            "offers_published",
            "Offers signed and published by this node",
            offers_published.clone(),
        );
        let peers_banned = Counter::default();
        orien.register(
            "peers_banned",
            "Peers cut off for abusing the session protocol",
            peers_banned.clone(),
        );
        let sessions_open = Family::<Role, Gauge>::default();
        orien.register(
            "sessions_open",
            "Sessions open now, by role",
            sessions_open.clone(),
        );
        let sessions_opened = Family::<Role, Counter>::default();
        orien.register(
            "sessions_opened",
            "Sessions opened, by role",
            sessions_opened.clone(),
        );
        let sessions_closed = Family::<Closed, Counter>::default();
        orien.register(
            "sessions_closed",
            "Sessions ended, by role and reason",
            sessions_closed.clone(),
        );
        let executions = Family::<ExecOutcomeLabel, Counter>::default();
        orien.register(
            "executions",
            "Executions run for renters, by outcome",
            executions.clone(),
        );
        let receipts_committed = Family::<Role, Counter>::default();
        orien.register(
            "receipts_committed",
            "Dual-signed receipts committed to the ledger, by role",
            receipts_committed.clone(),
        );
        let peer_abuse = Family::<AbuseKind, Counter>::default();
        orien.register(
            "peers_abuse",
            "Session-protocol abuse counted against peers, by kind",
            peer_abuse.clone(),
        );
        let session_open_time = Timings::new_with_constructor(seconds);
        orien.register_with_unit(
            "sessions_opening",
            "Time to open a session, by role",
            Unit::Seconds,
            session_open_time.clone(),
        );
        let executions_running = Family::<Role, Gauge>::default();
        orien.register(
            "executions_running",
            "Calls running now, by role",
            executions_running.clone(),
        );
        let first_output = seconds();
        orien.register_with_unit(
            "executions_first_output",
            "Time from a call's start to its first output at the renter",
            Unit::Seconds,
            first_output.clone(),
        );
        let execution_duration = Timings::new_with_constructor(long_seconds);
        orien.register_with_unit(
            "executions_duration",
            "Time from a call's start to its exit, by role",
            Unit::Seconds,
            execution_duration.clone(),
        );
        let receipt_ack = seconds();
        orien.register_with_unit(
            "receipts_ack",
            "Time from sending a receipt to its ack (provider)",
            Unit::Seconds,
            receipt_ack.clone(),
        );
        let receipt_durable = seconds();
        orien.register_with_unit(
            "receipts_durable",
            "Time from sending a receipt to its acknowledged form being durable (provider)",
            Unit::Seconds,
            receipt_durable.clone(),
        );
        let ledger_commit = Timings::new_with_constructor(seconds);
        orien.register_with_unit(
            "ledger_commit",
            "Time to verify and durably commit one acknowledged receipt, by role",
            Unit::Seconds,
            ledger_commit.clone(),
        );
        let ledger_commit_group = Timings::new_with_constructor(group_sizes);
        orien.register_with_unit(
            "ledger_commit_group",
            "Per committed receipt, the receipts its synced ledger write held, by role",
            Unit::Other("receipts".into()),
            ledger_commit_group.clone(),
        );
        Self {
            registry: Arc::new(registry),
            libp2p: Arc::new(libp2p),
            peers,
            offers_in_book,
            offers_received,
            offers_published,
            peers_banned,
            peers_trimmed,
            listings_refused,
            peer_lookups,
            sessions_open,
            sessions_opened,
            sessions_closed,
            executions,
            receipts_committed,
            peer_abuse,
            session_open_time,
            executions_running,
            first_output,
            execution_duration,
            receipt_ack,
            receipt_durable,
            ledger_commit,
            ledger_commit_group,
        }
    }

    /// Counts a session opened on `side`, `took` after it was asked for.
    pub(crate) fn session_opened(&self, side: Side, took: Duration) {
        let role = Role::from(side);
        self.sessions_opened.get_or_create(&role).inc();
        self.sessions_open.get_or_create(&role).inc();
        self.session_open_time
            .get_or_create(&role)
            .observe(took.as_secs_f64());
    }

    /// Counts a session ended on `side`.
    pub(crate) fn session_closed(&self, side: Side, reason: orien_protocol::CloseReason) {
        let role = side.as_str();
        use orien_protocol::CloseReason as R;
        let reason = match reason {
            R::RenterRequested => "renter_requested",
            R::BudgetExhausted => "budget_exhausted",
            R::MaxDuration => "max_duration",
            R::AckTimeout => "ack_timeout",
            R::Disconnected => "disconnected",
            R::ProviderShutdown => "provider_shutdown",
            R::Dispute => "dispute",
            R::LaneClosing => "lane_closing",
            R::Restarted => "restarted",
        };
        self.sessions_closed
            .get_or_create(&Closed { role, reason })
            .inc();
        self.sessions_open.get_or_create(&Role { role }).dec();
    }

    /// Counts a call started on `side`.
    pub(crate) fn execution_started(&self, side: Side) {
        self.executions_running.get_or_create(&side.into()).inc();
    }

    /// Counts a call on `side` that ended (or was abandoned) after `ran`.
    pub(crate) fn execution_ended(&self, side: Side, ran: Duration) {
        let role = Role::from(side);
        self.executions_running.get_or_create(&role).dec();
        self.execution_duration
            .get_or_create(&role)
            .observe(ran.as_secs_f64());
    }

    /// Counts an execution's outcome (provider).
    pub(crate) fn execution(&self, outcome: &orien_protocol::ExecOutcome) {
        use orien_protocol::ExecOutcome as O;
        let outcome = match outcome {
            O::Exited => "exited",
            O::TimedOut => "timed_out",
            O::OutOfMemory => "out_of_memory",
            O::InvalidArguments { .. } => "invalid_arguments",
            O::SandboxError { .. } => "sandbox_error",
        };
        self.executions
            .get_or_create(&ExecOutcomeLabel { outcome })
            .inc();
    }

    /// Counts a receipt committed on `side`, whose commit took `took` and went out in a
    /// synced write of `group` receipts (0: a retry already committed).
    pub(crate) fn receipt_committed(&self, side: Side, took: Duration, group: u32) {
        let role = Role::from(side);
        self.receipts_committed.get_or_create(&role).inc();
        self.ledger_commit
            .get_or_create(&role)
            .observe(took.as_secs_f64());
        if group > 0 {
            self.ledger_commit_group
                .get_or_create(&role)
                .observe(f64::from(group));
        }
    }

    /// Counts one abuse the peer guard saw.
    pub(crate) fn abuse(&self, abuse: crate::peer_guard::Abuse) {
        self.peer_abuse
            .get_or_create(&AbuseKind {
                kind: abuse.as_str(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text = "# metrics could not be encoded\n# EOF\n".into();
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_orien_metrics_with_their_names() {
        let metrics = Metrics::new();
        metrics.peers.set(3);
        metrics
            .offers_received
            .get_or_create(&OfferOutcome {
                outcome: "rejected",
            })
            .inc();
        let text = metrics.render();
        assert!(text.contains("orien_network_peers 3"), "{text}");
        assert!(
            text.contains("orien_offers_received_total{outcome=\"rejected\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn timings_render_as_histograms_in_seconds() {
        let metrics = Metrics::new();
        metrics.session_opened(Side::Renter, Duration::from_millis(40));
        metrics.execution_started(Side::Provider);
        metrics.execution_ended(Side::Provider, Duration::from_secs(3));
        metrics.receipt_committed(Side::Provider, Duration::from_micros(300), 5);
        metrics.abuse(crate::peer_guard::Abuse::BrokenOutput);
        let text = metrics.render();
        for line in [
            "# TYPE orien_sessions_opening_seconds histogram",
            "orien_sessions_opening_seconds_count{role=\"renter\"} 1",
            "orien_sessions_open{role=\"renter\"} 1",
            "orien_executions_running{role=\"provider\"} 0",
            "orien_executions_duration_seconds_sum{role=\"provider\"} 3.0",
            "orien_ledger_commit_seconds_count{role=\"provider\"} 1",
            "orien_ledger_commit_group_receipts_sum{role=\"provider\"} 5.0",
            "orien_ledger_commit_group_receipts_bucket{le=\"4.0\",role=\"provider\"} 0",
            "orien_ledger_commit_group_receipts_bucket{le=\"8.0\",role=\"provider\"} 1",
            "orien_receipts_committed_total{role=\"provider\"} 1",
            "orien_peers_abuse_total{kind=\"broken_output\"} 1",
            "# TYPE orien_receipts_durable_seconds histogram",
            "# TYPE orien_executions_first_output_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
