//! The agents' door: a Model Context Protocol server on the node's API port.
//!
//! An MCP host (Claude Code, Claude Desktop, Cursor, any MCP client) adds the node at
//! `http://127.0.0.1:7400/mcp` with the API token as a bearer token, and its model sees
//! one tool per tool name on the market (its arguments, plus `provider`, `max_price`,
//! `session` and `files`) and the management tools `orien_open_session`,
//! `orien_close_session`, `orien_upload`, `orien_download`, `orien_balance` and
//! `orien_providers`. A call picks the provider with the best reputation with this node
//! (its own evidence), then the cheapest, whose price fits the [`BudgetPolicy`], opens a session for it (or runs in one the agent opened), runs,
//! and answers with the output, the exit, the cost and the provider's signed result;
//! a call the policy does not allow is refused before anything is spent.
//!
//! Built on the official SDK (`rmcp`): the current specification (2026-07-28,
//! stateless, `server/discover`, notifications through `subscriptions/listen`) and
//! clients of earlier versions (2025-11-25, with `initialize` and a session). The
//! transport checks `Host` against the node's own names (DNS rebinding) and refuses any
//! request that carries an `Origin` with 403: the endpoint is for local agents, not for
//! web pages.

mod budget;
mod calls;
mod catalogue;
pub mod clients;
mod management;
pub mod policy;
mod resources;
mod server;

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use policy::{BudgetPolicy, PolicyRefusal};
pub use server::OrienMcp;

use crate::NodeApi;

/// Largest MCP request body (a call's inline files are part of it).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Settings of the MCP endpoint.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// What agents may spend.
    pub policy: BudgetPolicy,
    /// `Host` values (names or `host:port`) requests may carry besides the loopback
    /// names `localhost`, `127.0.0.1` and `::1`: the node's own public name when its
    /// API is bound beyond loopback.
    pub extra_hosts: Vec<String>,
    /// How often the tool list is compared with the offer book (a change is notified
    /// to listening clients).
    pub refresh: Duration,
    /// Clients with their own tokens and limits (`mcp_clients.toml`; `None`: only the
    /// API token opens `/mcp`).
    pub clients: Option<Arc<clients::Clients>>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            policy: BudgetPolicy::default(),
            extra_hosts: Vec::new(),
            refresh: Duration::from_secs(1),
            clients: None,
        }
    }
}

/// The Streamable HTTP service of the MCP endpoint, to mount at `/mcp` behind the
/// API's bearer authentication. It stops serving when `shutdown` is cancelled.
pub fn http_service(
    node: Arc<dyn NodeApi>,
    config: McpConfig,
    shutdown: CancellationToken,
) -> StreamableHttpService<OrienMcp, LocalSessionManager> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(config.extra_hosts.iter().cloned());
    let transport = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .enforce_origin_validation()
        .with_max_request_body_bytes(MAX_BODY)
        .with_cancellation_token(shutdown);
    let server = OrienMcp::new(node, config);
    StreamableHttpService::new(move || Ok(server.clone()), Arc::default(), transport)
}
