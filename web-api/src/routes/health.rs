//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::AppState;
use crate::api::HealthView;

/// Liveness: the process answers, with its uptime and the sessions it has open.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The node process is alive", body = HealthView)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Json<HealthView> {
    Json(state.node.health().await)
}

/// Readiness: the node can serve requests.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = String),
    (status = 503, description = "Not ready yet", body = String),
))]
pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.node.ready().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])), responses(
    (status = 200, description = "Metrics in Prometheus text format", body = String),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.node.metrics().await,
    )
}
