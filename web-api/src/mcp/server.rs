//! The MCP server handler: tools/list from the catalogue, tools/call to the market or
//! the management tools, tool-list changes pushed to clients that listen.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities,
    ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use tokio::sync::watch;
use tracing::Instrument;

use crate::NodeApi;
use crate::api::OfferFilter;
use crate::mcp::McpConfig;
use crate::mcp::budget::Budget;
use crate::mcp::calls::{CallFailure, MarketCall, Progress};
use crate::mcp::catalogue::Catalogue;
use crate::mcp::clients::{Caller, Clients};
use crate::mcp::policy::BudgetPolicy;
use crate::mcp::{management, resources};

/// What every connection's handler shares.
struct Shared {
    node: Arc<dyn NodeApi>,
    policy: BudgetPolicy,
    refresh: Duration,
    /// The latest catalogue (`None` until first read from the book).
    catalogue: watch::Sender<Option<Arc<Catalogue>>>,
    /// The task that keeps the catalogue current, started on first use.
    refresher: OnceLock<()>,
    /// Clients with their own tokens and limits.
    clients: Option<Arc<Clients>>,
}

/// The MCP server of a node. Cheap to clone: every connection gets one.
#[derive(Clone)]
pub struct OrienMcp {
    shared: Arc<Shared>,
}

impl OrienMcp {
    /// A server for `node` with `config`.
    pub fn new(node: Arc<dyn NodeApi>, config: McpConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                node,
                policy: config.policy,
                refresh: config.refresh,
                catalogue: watch::Sender::new(None),
                refresher: OnceLock::new(),
                clients: config.clients,
            }),
        }
    }

    /// The node behind it.
    pub(crate) fn node(&self) -> &dyn NodeApi {
        self.shared.node.as_ref()
    }

    /// The budget policy.
    pub(crate) fn policy(&self) -> &BudgetPolicy {
        &self.shared.policy
    }

    /// What the request of `context` may spend and see.
    fn budget(&self, context: &RequestContext<RoleServer>) -> Budget<'_> {
        Budget::new(
            self.policy(),
            caller(context),
            self.shared.clients.as_deref(),
        )
    }

    /// The current catalogue, read from the book the first time.
    pub(crate) async fn catalogue(&self) -> Result<Arc<Catalogue>, McpError> {
        self.start_refresher();
        if let Some(catalogue) = self.shared.catalogue.borrow().clone() {
            return Ok(catalogue);
        }
        let catalogue =
            Arc::new(load(&self.shared).await.map_err(|e| {
                McpError::internal_error(format!("reading the offer book: {e}"), None)
            })?);
        self.shared.catalogue.send_replace(Some(catalogue.clone()));
        Ok(catalogue)
    }

    /// A receiver that sees every change of the tool list.
    fn changes(&self) -> watch::Receiver<Option<Arc<Catalogue>>> {
        self.start_refresher();
        self.shared.catalogue.subscribe()
    }

    fn start_refresher(&self) {
        self.shared.refresher.get_or_init(|| {
            tokio::spawn(refresh(Arc::downgrade(&self.shared)));
        });
    }
}

/// Who sent the request: the API's authentication marks a client's token; the owner
/// otherwise.
fn caller(context: &RequestContext<RoleServer>) -> Caller {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .unwrap_or(Caller::Owner)
}

async fn load(shared: &Shared) -> Result<Catalogue, crate::ApiError> {
    let offers = shared.node.offers(OfferFilter::default()).await?;
    Ok(Catalogue::new(offers, &shared.policy))
}

/// Keeps the catalogue current until the server is gone; a change of the tools (not a
/// re-announced offer) wakes the listeners.
async fn refresh(shared: Weak<Shared>) {
    loop {
        let Some(every) = shared.upgrade().map(|s| s.refresh) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match load(&shared).await {
            Ok(fresh) => {
                shared.catalogue.send_if_modified(|current| {
                    let changed = current.as_ref().is_none_or(|c| c.tools() != fresh.tools());
                    // Offers behind an unchanged tool list (a re-announce, another
                    // provider at a higher price) still replace the catalogue.
                    *current = Some(Arc::new(fresh));
                    changed
                });
            }
            Err(e) => tracing::debug!(error = %e, "MCP: reading the offer book failed"),
        }
    }
}

impl ServerHandler for OrienMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("orien-node", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "Tools of the ORIEN compute market, run in sandboxes of providers and paid in USDC \
             by this node. Each call costs money: at most {} USDC a call, {} a session, {} a day \
             (this node's policy; `orien_balance` shows what is left). A call without `session` \
             runs in a session of its own; open one with `orien_open_session` to keep files \
             across calls, and close it when done.",
            self.policy().per_call.decimal(),
            self.policy().per_session.decimal(),
            self.policy().per_day.decimal(),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let catalogue = self.catalogue().await?;
        let mut tools: Vec<Tool> = catalogue.tools().to_vec();
        tools.extend(management::tools());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let budget = self.budget(&context);
        if let Some(result) = management::call(self, &budget, &request.name, &args).await? {
            return Ok(result.into());
        }
        let catalogue = self.catalogue().await?;
        let Some(offers) = catalogue.offers(&request.name) else {
            return Err(McpError::invalid_params(
                format!(
                    "no tool `{}` on the market now (tools/list shows what is)",
                    request.name
                ),
                None,
            ));
        };
        let progress = context
            .meta
            .get_progress_token()
            .map(|token| Progress::new(context.peer.clone(), token));
        let call = MarketCall {
            node: self.node(),
            budget: &budget,
            tool: &request.name,
            offers,
        };
        let outcome = call
            .run(args, progress, context.ct.clone())
            .instrument(tracing::info_span!("mcp_call", tool = %request.name))
            .await;
        Ok(match outcome {
            Ok(result) => {
                let failed = result["state"] != "completed" || result["exit_code"] != 0;
                if failed {
                    CallToolResult::structured_error(result)
                } else {
                    CallToolResult::structured(result)
                }
            }
            Err(CallFailure::Cancelled) => {
                return Err(McpError::internal_error("the call was cancelled", None));
            }
            Err(failure) => {
                CallToolResult::error(vec![rmcp::model::ContentBlock::text(failure.to_string())])
            }
        }
        .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(resources::list()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let budget = self.budget(&context);
        let contents = resources::read(self.node(), &budget, &request.uri).await?;
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.changes();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // A client of a version with sessions (before 2026-07-28) hears of changes on
        // its session's stream, for as long as the session lasts.
        let mut changes = self.changes();
        changes.mark_unchanged();
        let peer = context.peer;
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }
}
