//! Sessions this node rents (or provides).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::extract::{ApiJson, ApiPath};
use crate::sessions::{OpenSessionBody, OpenSessionRequest, SessionView, parse_session_id};
use crate::{ApiError, AppState};

/// Opens a session on an offer (or a tool's cheapest offer), paid from this node.
///
/// Honours `Idempotency-Key`: a retry with the same key and body gets the first answer.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    request_body = OpenSessionBody,
    params(("Idempotency-Key" = Option<crate::text::IdempotencyKeyText>, Header, description = "Replays the first answer to a retried request")),
    responses(
        (status = 201, description = "The provider accepted the session", body = SessionView),
        (status = 400, description = "Invalid request", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such offer in the offer book", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Refused by the provider, an offer of this node itself, or idempotency key reused", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The provider could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn open_session(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<OpenSessionBody>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let request = OpenSessionRequest::try_from(body)?;
    let view = state.node.open_session(request).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every session in this node's ledger, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])), responses(
    (status = 200, description = "Sessions", body = [SessionView]),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    Ok(Json(state.node.sessions().await?))
}

/// One session: state, usage and amount so far.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = crate::text::IdText, Path, description = "Session id (hex)")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 400, description = "Malformed id", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(state.node.session(parse_session_id(&id)?).await?))
}

/// Closes a rented session; answers with its final state once the closing receipt is
/// committed.
#[utoipa::path(post, path = "/v1/sessions/{id}/close", tag = "sessions", security(("bearer" = [])),
    params(("id" = crate::text::IdText, Path, description = "Session id (hex)")),
    responses(
        (status = 200, description = "Closed", body = SessionView),
        (status = 400, description = "Malformed id", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not a session this node rents, or already closed", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn close_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(
        state.node.close_session(parse_session_id(&id)?).await?,
    ))
}
