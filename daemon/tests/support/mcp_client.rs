//! An MCP client as agents run one: rmcp's own, over Streamable HTTP, speaking the
//! current protocol (2026-07-28, `server/discover`).
#![allow(dead_code, unreachable_pub)]

use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};

/// A client of the MCP endpoint at `url`, presenting `token`.
pub async fn connect(url: String, token: String) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url).auth_header(token),
            ),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("an MCP client connects")
}
