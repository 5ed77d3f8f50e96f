//! The daemon's side of the local HTTP API: [`orien_web_api::NodeApi`] for a [`Node`].

use std::sync::Arc;

use async_trait::async_trait;
use orien_web_api::{ApiError, NodeApi, NodeInfo, OfferFilter, OfferView};

use crate::node::{Node, NodeError};
use crate::offer_book::OfferQuery;

/// Serves the HTTP API from a running node.
#[derive(Clone)]
pub struct NodeService {
    node: Arc<Node>,
}

impl NodeService {
    /// The API of `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Stopped => ApiError::Unavailable("the node is stopping".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[async_trait]
impl NodeApi for NodeService {
    async fn node_info(&self) -> Result<NodeInfo, ApiError> {
        let stats = self.node.stats().await?;
        Ok(NodeInfo {
            id: self.node.id().to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            listen: self
                .node
                .listen_addrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            peers: stats.peers,
            offers_known: stats.offers_known,
        })
    }

    async fn ready(&self) -> bool {
        self.node.stats().await.is_ok()
    }

    async fn metrics(&self) -> String {
        self.node.metrics().render()
    }

    async fn offers(&self, filter: OfferFilter) -> Result<Vec<OfferView>, ApiError> {
        let query = OfferQuery {
            tool: filter.tool,
            max_exec_price: filter.max_price,
            provider: filter.provider,
        };
        let entries = self.node.offers(query).await?;
        Ok(entries
            .iter()
            .map(|e| OfferView::new(e.id, &e.offer))
            .collect())
    }
}
