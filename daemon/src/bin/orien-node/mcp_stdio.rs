//! `orien-node mcp`: an MCP server on standard input and output for hosts that spawn
//! their servers. It holds no keys and no ledger: every request goes to the running
//! node's `/mcp` endpoint (the node's budget policy applies), and the node's
//! notifications (tool-list changes, progress) come back.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use orien_daemon::client::{API_ADDR_FILE, DEFAULT_API_URL};
use orien_web_api::mcp::clients;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientConfig, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ServerConfig,
    ServerNotification, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService, SubscriptionContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData as McpError, Peer, RoleClient,
    RoleServer, ServerHandler, ServiceExt,
};
use tokio::sync::broadcast;

use crate::args::McpClientCommand;

/// Serves MCP on stdio, forwarding to the node of `data_dir` (or `url`), until the
/// host closes standard input.
pub(crate) async fn serve(
    data_dir: &Path,
    url: Option<&str>,
    client: Option<&str>,
) -> anyhow::Result<()> {
    let token = match client {
        None => {
            let token_path = data_dir.join(orien_web_api::auth::TOKEN_FILE);
            std::fs::read_to_string(&token_path)
                .with_context(|| {
                    format!(
                        "reading the API token {} (run `orien-node init` first)",
                        token_path.display()
                    )
                })?
                .trim()
                .to_owned()
        }
        Some(name) => clients::load(data_dir)?
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.token)
            .with_context(|| {
                format!("no MCP client `{name}`; add it with `orien-node mcp client add {name}`")
            })?,
    };
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => std::fs::read_to_string(data_dir.join(API_ADDR_FILE))
            .map(|addr| format!("http://{}", addr.trim()))
            .unwrap_or_else(|_| DEFAULT_API_URL.to_owned()),
    };
    let endpoint = format!("{base}/mcp");
    let downstream: Arc<OnceLock<Peer<RoleServer>>> = Arc::default();
    let upstream = Upstream {
        downstream: downstream.clone(),
    }
    .serve_with_lifecycle(
        StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(endpoint.clone()).auth_header(token),
        ),
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .with_context(|| {
        format!("no ORIEN node answers MCP at {endpoint}; start it with `orien-node run`")
    })?;
    let upstream = Arc::new(upstream);
    let (changes, _) = broadcast::channel(16);
    let mut subscription = upstream
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .context("subscribing to the node's tool-list changes")?;
    let forwarded = changes.clone();
    let listening = tokio::spawn(async move {
        while let Ok(Some(notification)) = subscription.next().await {
            if matches!(
                notification,
                ServerNotification::ToolListChangedNotification(_)
            ) {
                let _ = forwarded.send(());
            }
        }
    });
    let server = Bridge {
        upstream: upstream.clone(),
        changes,
    }
    .serve(rmcp::transport::stdio())
    .await
    .context("serving MCP on standard input and output")?;
    let _ = downstream.set(server.peer().clone());
    server.waiting().await?;
    listening.abort();
    Ok(())
}

/// `orien-node mcp client …`: adds, lists and removes clients (no running node needed:
/// the node reads the file again when it changes).
pub(crate) fn clients(
    data_dir: &Path,
    command: McpClientCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        McpClientCommand::Add {
            name,
            max_call,
            max_session,
            max_day,
        } => {
            let added = clients::add(
                data_dir,
                &name,
                orien_web_api::mcp::BudgetPolicy {
                    per_call: max_call,
                    per_session: max_session,
                    per_day: max_day,
                },
            )?;
            if json {
                crate::commands::emit_json(&added)?;
            } else {
                crate::commands::emit(&format!(
                    "client {name}: at most {} USDC a call, {} a session, {} a day (within the node's own limits)",
                    added.per_call.decimal(),
                    added.per_session.decimal(),
                    added.per_day.decimal()
                ));
                crate::commands::emit(&format!("token: {}", added.token));
                crate::commands::emit(&format!(
                    "over HTTP: url http://<api>/mcp with header \"Authorization: Bearer {}\"",
                    added.token
                ));
                crate::commands::emit(&format!(
                    "over stdio: {{\"command\": \"orien-node\", \"args\": [\"--data-dir\", \"{}\", \"mcp\", \"--client\", \"{name}\"]}}",
                    data_dir.display()
                ));
            }
        }
        McpClientCommand::List => {
            let listed = clients::load(data_dir)?;
            if json {
                crate::commands::emit_json(&listed)?;
            } else if listed.is_empty() {
                crate::commands::emit(
                    "no MCP clients (the API token opens /mcp with the node's limits)",
                );
            } else {
                for c in &listed {
                    crate::commands::emit(&format!(
                        "{:<20} {} USDC a call, {} a session, {} a day",
                        c.name,
                        c.per_call.decimal(),
                        c.per_session.decimal(),
                        c.per_day.decimal()
                    ));
                }
            }
        }
        McpClientCommand::Remove { name } => {
            clients::remove(data_dir, &name)?;
            crate::commands::emit(&format!(
                "removed client {name}: its token no longer opens /mcp"
            ));
        }
    }
    Ok(())
}

/// The client side towards the node: progress of forwarded calls goes back down.
struct Upstream {
    downstream: Arc<OnceLock<Peer<RoleServer>>>,
}

impl ClientHandler for Upstream {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(peer) = self.downstream.get() {
            let _ = peer.notify_progress(params).await;
        }
    }
}

/// The server side towards the host.
#[derive(Clone)]
struct Bridge {
    upstream: Arc<RunningService<RoleClient, Upstream>>,
    changes: broadcast::Sender<()>,
}

fn upstream_error(e: rmcp::ServiceError) -> McpError {
    McpError::internal_error(format!("the ORIEN node: {e}"), None)
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        // What the node said of itself; the version is negotiated with the host.
        let Some(node) = self.upstream.peer_info() else {
            return ServerConfig::default();
        };
        let mut info = ServerConfig::new(node.capabilities.clone()).with_server_info(
            node.server_info
                .clone()
                .unwrap_or_else(|| Implementation::new("orien-node", env!("CARGO_PKG_VERSION"))),
        );
        info.instructions.clone_from(&node.instructions);
        info
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.upstream
            .list_tools(request)
            .await
            .map_err(upstream_error)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let mut request = request;
        // The host's progress token rides along, so the node's progress reaches it.
        if request.meta.is_none() && !context.meta.is_empty() {
            request.meta = Some(context.meta.clone());
        }
        // Dropping the upstream call (the host cancelled) cancels it at the node.
        tokio::select! {
            () = context.ct.cancelled() => Err(McpError::internal_error("cancelled", None)),
            answer = self.upstream.call_tool_once(request) => answer.map_err(upstream_error),
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.changes.subscribe();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = changes.recv() => match change {
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if context.sink().notify_tool_list_changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut changes = self.changes.subscribe();
        let peer = context.peer;
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if peer.notify_tool_list_changed().await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}
