//! Prometheus metrics of the node, named `orien_<area>_<what>_<unit>`, beside libp2p's
//! own (`libp2p_*`). Rendered in the OpenMetrics text format for `GET /metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of [`Metrics::offers_received`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OfferOutcome {
    /// `accepted`, `ignored` or `rejected`.
    pub outcome: &'static str,
}

/// Label of the session metrics: which side this node is on.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Role {
    /// `provider` or `renter`.
    pub role: &'static str,
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
        Self {
            registry: Arc::new(registry),
            libp2p: Arc::new(libp2p),
            peers,
            offers_in_book,
            offers_received,
            offers_published,
            peers_banned,
            sessions_open,
            sessions_opened,
            sessions_closed,
            executions,
            receipts_committed,
        }
    }

    /// Counts a session opened on `role`'s side.
    pub(crate) fn session_opened(&self, role: &'static str) {
        self.sessions_opened.get_or_create(&Role { role }).inc();
        self.sessions_open.get_or_create(&Role { role }).inc();
    }

    /// Counts a session ended on `role`'s side.
    pub(crate) fn session_closed(&self, role: &'static str, reason: orien_protocol::CloseReason) {
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

    /// Counts an execution's outcome.
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

    /// Counts a committed receipt.
    pub(crate) fn receipt_committed(&self, role: &'static str) {
        self.receipts_committed.get_or_create(&Role { role }).inc();
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
}
