//! The workspace of a rented session.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use sha2::{Digest, Sha256};

use crate::extract::ApiPath;
use crate::sessions::{FileView, parse_session_id};
use crate::{ApiError, AppState};

/// Largest file accepted by `PUT` (the session protocol carries a file in one message).
pub(crate) const MAX_FILE_BYTES: usize = orien_protocol::rpc::MAX_FILE_CHUNK;

/// Lists the session's workspace.
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "files", security(("bearer" = [])),
    params(("id" = crate::text::IdText, Path, description = "Session id (hex)")),
    responses(
        (status = 200, description = "Files and directories", body = [FileView]),
        (status = 400, description = "Malformed id", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_files(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<FileView>>, ApiError> {
    Ok(Json(state.node.list_files(parse_session_id(&id)?).await?))
}

/// Writes a file (the raw request body) into the session's workspace.
#[utoipa::path(put, path = "/v1/sessions/{id}/files/{path}", tag = "files", security(("bearer" = [])),
    params(
        ("id" = crate::text::IdText, Path, description = "Session id (hex)"),
        ("path" = crate::text::PathText, Path, description = "Workspace-relative path; may contain `/`"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Written", body = FileView),
        (status = 400, description = "Invalid path (absolute, `..`, too long)", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 768 KiB", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn put_file(
    State(state): State<AppState>,
    ApiPath((id, path)): ApiPath<(String, String)>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let session = parse_session_id(&id)?;
    let data = axum::body::to_bytes(body, MAX_FILE_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let digest = Sha256::digest(&data);
    let mut view = state.node.put_file(session, path, data.to_vec()).await?;
    view.sha256 = Some(hex::encode(digest));
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

/// Reads a file from the session's workspace (raw bytes).
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{path}", tag = "files", security(("bearer" = [])),
    params(
        ("id" = crate::text::IdText, Path, description = "Session id (hex)"),
        ("path" = crate::text::PathText, Path, description = "Workspace-relative path; may contain `/`"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("Repr-Digest" = String, description = "Its SHA-256 (RFC 9530): `sha-256=:<base64>:`"))),
        (status = 400, description = "Invalid path", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session or file", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_file(
    State(state): State<AppState>,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let session = parse_session_id(&id)?;
    let data = state.node.get_file(session, path).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static("repr-digest"),
                repr_digest(&data),
            ),
        ],
        Bytes::from(data),
    ))
}

/// The `Repr-Digest` of `bytes` (RFC 9530): `sha-256=:<base64>:`, to check a download.
fn repr_digest(bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
    )
}
