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
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let libp2p = libp2p::metrics::Metrics::new(registry.sub_registry_with_prefix("libp2p"));
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
        Self {
            registry: Arc::new(registry),
            libp2p: Arc::new(libp2p),
            peers,
            offers_in_book,
            offers_received,
            offers_published,
        }
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
