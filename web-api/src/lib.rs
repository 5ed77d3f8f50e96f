//! # orien-web-api
//!
//! The local HTTP API of an ORIEN node, as an axum [`Router`]: versioned under `/v1`,
//! bearer-token authenticated (constant-time), errors as `application/problem+json`,
//! request bodies and rates limited, and an OpenAPI document generated from the handlers
//! at `/v1/openapi.json`. The node is reached through the [`NodeApi`] trait.
//!
//! ```no_run
//! # async fn demo(node: std::sync::Arc<dyn orien_web_api::NodeApi>) -> std::io::Result<()> {
//! use orien_web_api::{ApiConfig, BearerToken, router};
//!
//! let token = BearerToken::create_or_load(std::path::Path::new("/var/lib/orien")).expect("token");
//! let app = router(node, ApiConfig::new(token));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7400").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

pub mod api;
pub mod auth;
pub mod chain;
pub mod dashboard;
pub mod extract;
pub mod idempotency;
pub mod mcp;
pub mod problem;
pub mod providers;
pub mod rate_limit;
mod routes;
pub mod sessions;
pub mod text;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::{Json, Router, middleware};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use api::{
    ByteStream, FileDownload, FileUpload, HealthStatus, HealthView, MAX_FILE_IN_MEMORY, NodeApi,
    NodeInfo, OfferFilter, OfferView, PricingView,
};
pub use auth::{BearerToken, Principal, TokenError};
pub use dashboard::browser::{BrowserLimits, BrowserSessions};
pub use dashboard::guard::HostPolicy;
pub use idempotency::IdempotencyConfig;
pub use problem::{ApiError, FieldError, ProblemBody, UPLOAD_OFFSET};
pub use rate_limit::RateLimit;
pub use routes::dashboard::LoginLinkView;

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The token clients must present.
    pub token: BearerToken,
    /// Largest JSON request body, in bytes.
    pub body_limit: usize,
    /// Request rate limit.
    pub rate_limit: RateLimit,
    /// `Idempotency-Key` handling of `POST`s.
    pub idempotency: IdempotencyConfig,
    /// The MCP endpoint at `/mcp` (`None`: not served).
    pub mcp: Option<mcp::McpConfig>,
    /// Ends long-lived MCP streams when the server shuts down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Host names the node answers to besides IP addresses and `localhost`.
    pub hosts: HostPolicy,
    /// The dashboard's sign-in codes and browser sessions.
    pub browsers: BrowserSessions,
}

impl ApiConfig {
    /// Defaults (64 KiB bodies, 200 requests/s) with this token.
    pub fn new(token: BearerToken) -> Self {
        Self {
            token,
            body_limit: 64 * 1024,
            rate_limit: RateLimit::default(),
            idempotency: IdempotencyConfig::default(),
            mcp: Some(mcp::McpConfig::default()),
            shutdown: tokio_util::sync::CancellationToken::new(),
            hosts: HostPolicy::default(),
            browsers: BrowserSessions::default(),
        }
    }
}

/// State every handler sees.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: Arc<dyn NodeApi>,
    pub(crate) browsers: BrowserSessions,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ORIEN node API", version = "1", description = "The local API of an ORIEN node: offers, sessions, executions, receipts, ledger and settlement."),
    paths(routes::files::put_file, routes::files::get_file, routes::files::get_artefact),
    components(schemas(
        ProblemBody, FieldError, sessions::LogEvent, sessions::CloseReason,
        sessions::SuspendReason, text::IdText, text::OfferIdText, text::AddressText, text::ToolText,
        text::PeerIdText, text::AmountText, text::PositiveAmountText, text::PathText,
        text::IdempotencyKeyText, sessions::EarningsPeriod, providers::ProviderSort,
        api::OfferSort
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and their OpenAPI document, before auth and limits are applied.
fn documented_routes() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (public, public_doc) = OpenApiRouter::new()
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .split_for_parts();
    let (protected, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health::metrics))
        .routes(routes!(routes::node::get_node))
        .routes(routes!(routes::offers::list_offers))
        .routes(routes!(routes::tools::list_tools))
        .routes(routes!(routes::providers::list_providers))
        .routes(routes!(routes::providers::get_provider))
        .routes(routes!(
            routes::sessions::open_session,
            routes::sessions::list_sessions
        ))
        .routes(routes!(routes::sessions::get_session))
        .routes(routes!(routes::sessions::close_session))
        .routes(routes!(routes::executions::start_execution))
        .routes(routes!(routes::executions::list_executions))
        .routes(routes!(routes::executions::get_execution))
        .routes(routes!(routes::executions::execution_logs))
        .routes(routes!(
            routes::files::list_files,
            routes::files::put_workspace
        ))
        .routes(routes!(routes::ledger::list_receipts))
        .routes(routes!(routes::ledger::balances))
        .routes(routes!(routes::ledger::earnings))
        .routes(routes!(routes::chain::get_wallet))
        .routes(routes!(routes::chain::fund_lane))
        .routes(routes!(routes::chain::withdraw))
        .routes(routes!(routes::chain::reclaim))
        .routes(routes!(routes::chain::finish_reclaim))
        .routes(routes!(routes::chain::list_lanes))
        .routes(routes!(routes::dashboard::create_login_link))
        .routes(routes!(
            routes::chain::list_settlements,
            routes::chain::settle
        ))
        .split_for_parts();
    // A workspace path may hold `/`, which needs axum's wildcard segment; the OpenAPI
    // document names it `{path}` (see `ApiDoc`).
    let protected = protected
        .route(
            "/v1/sessions/{id}/files/{*path}",
            put(routes::files::put_file).get(routes::files::get_file),
        )
        .route(
            "/v1/executions/{id}/artefacts/{*path}",
            get(routes::files::get_artefact),
        );
    doc.merge(public_doc);
    (public, protected, doc)
}

/// The OpenAPI document of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().2
}

/// The API's router, ready to serve.
pub fn router(node: Arc<dyn NodeApi>, config: ApiConfig) -> Router {
    let (public, protected, doc) = documented_routes();
    let doc = Arc::new(doc);
    // `/mcp` takes the API token or an MCP client's own token.
    let agents = match config.mcp {
        Some(mcp) => {
            let auth = auth::McpAuth {
                token: config.token.clone(),
                clients: mcp.clients.clone(),
            };
            Router::new()
                .nest_service(
                    "/mcp",
                    mcp::http_service(node.clone(), mcp, config.shutdown.clone()),
                )
                .route_layer(middleware::from_fn_with_state(
                    auth,
                    auth::require_mcp_bearer,
                ))
        }
        None => Router::new(),
    };
    let protected = protected
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .route_layer(middleware::from_fn_with_state(
            idempotency::Idempotency::new(config.idempotency),
            idempotency::idempotent,
        ))
        .route_layer(middleware::from_fn_with_state(
            auth::Credentials {
                token: config.token.clone(),
                browsers: config.browsers.clone(),
            },
            auth::require_credentials,
        ));
    public
        .merge(protected)
        .merge(agents)
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn_with_state(
            rate_limit::Limiter::new(config.rate_limit),
            rate_limit::limit_rate,
        ))
        .layer(middleware::from_fn(dashboard::guard::secure_headers))
        .layer(middleware::from_fn_with_state(
            config.hosts,
            dashboard::guard::check_host,
        ))
        .with_state(AppState {
            node,
            browsers: config.browsers,
        })
}

#[cfg(test)]
mod tests;
