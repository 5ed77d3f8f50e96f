//! Errors as RFC 9457 `application/problem+json`, with stable type URIs.
//!
//! Every failure of the API, including axum's own rejections (bad JSON, bad query,
//! body too large, unknown route), leaves as an [`ApiError`] rendered as a [`ProblemBody`]; clients switch on `type`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as a JSON pointer or query parameter name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemBody {
    /// Stable identifier of the kind of problem (`urn:orien:problem:<kind>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the kind.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened in this instance, and what to do about it.
    pub detail: String,
    /// Invalid fields, when the request was at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Authenticated, but this request is not allowed (another site's page, a host
    /// name the node does not answer to).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is malformed or invalid.
    #[error("{detail}")]
    BadRequest {
        /// What is wrong.
        detail: String,
        /// Which fields.
        errors: Vec<FieldError>,
    },
    /// The request conflicts with the resource's state (or reuses an idempotency key
    /// with a different body).
    #[error("{0}")]
    Conflict(String),
    /// The route exists but not with this method.
    #[error("this route does not accept the method")]
    MethodNotAllowed,
    /// The body is larger than the route accepts.
    #[error("request body too large")]
    PayloadTooLarge,
    /// What the request would store is over a limit (the detail says which).
    #[error("{0}")]
    TooLarge(String),
    /// A file upload without a length: the size is checked against the session's
    /// cap before any byte is sent.
    #[error(
        "send the file's size in Content-Length (or Content-Range: bytes <first>-<last>/<size>)"
    )]
    LengthRequired,
    /// A `Range` outside the file.
    #[error("the range is outside the file")]
    RangeNotSatisfiable {
        /// The file's size, when known (sent as `Content-Range: bytes */<size>`).
        size: Option<u64>,
    },
    /// A resumed upload starts elsewhere than the provider's held bytes end: resend
    /// from `held` (also in the `Upload-Offset` header).
    #[error("{detail}")]
    UploadOffset {
        /// Bytes the provider holds of the upload.
        held: u64,
        /// What to do.
        detail: String,
    },
    /// The body's media type is not one the route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The provider's disk or the workspace is full.
    #[error("{0}")]
    InsufficientStorage(String),
    /// Too many requests; retry later.
    #[error("too many requests")]
    RateLimited,
    /// A peer this request depends on (the provider) could not be reached or failed.
    #[error("{0}")]
    BadGateway(String),
    /// The node cannot serve this now (starting, stopping, a dependency is down).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the detail is logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A bad request about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        Self::BadRequest {
            detail: format!("invalid `{field}`: {message}"),
            errors: vec![FieldError { field, message }],
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::LengthRequired => (
                StatusCode::LENGTH_REQUIRED,
                "length-required",
                "Length required",
            ),
            Self::RangeNotSatisfiable { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
            ),
            Self::UploadOffset { .. } => (StatusCode::CONFLICT, "upload-offset", "Upload offset"),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::InsufficientStorage(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient-storage",
                "Insufficient storage",
            ),
            Self::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway"),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The body this error is sent as.
    pub fn body(&self) -> ProblemBody {
        let (status, slug, title) = self.parts();
        let detail = match self {
            Self::Unauthorized => {
                "send `Authorization: Bearer <token>` (the token is in the node's data directory, api.token), or sign in to the dashboard with the link `orien-node dashboard` prints".into()
            }
            // Internal details go to the log, not to the client.
            Self::Internal(_) => "the node failed unexpectedly; see its log".into(),
            other => other.to_string(),
        };
        let errors = match self {
            Self::BadRequest { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        ProblemBody {
            kind: format!("urn:orien:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

/// The header naming the bytes the provider holds of a resumed upload.
pub const UPLOAD_OFFSET: header::HeaderName = header::HeaderName::from_static("upload-offset");

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answered with 500");
        }
        let body = self.body();
        let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RangeNotSatisfiable { size: Some(size) } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            Self::UploadOffset { held, .. } => {
                headers.insert(UPLOAD_OFFSET, HeaderValue::from(*held));
            }
            _ => {}
        }
        // Answered before the request's body was read: the connection carries its unread
        // rest, so it closes after this answer, and says so, or a client reusing it for
        // its next request (the resumed upload) finds it closed mid-request.
        if matches!(
            self,
            Self::UploadOffset { .. } | Self::PayloadTooLarge | Self::TooLarge(_)
        ) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Self::PayloadTooLarge
            }
            JsonRejection::JsonDataError(e) => Self::field("body", e.body_text()),
            other => Self::BadRequest {
                detail: other.body_text(),
                errors: Vec::new(),
            },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::field("query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::field("path", rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_sent_before_the_body_was_read_closes_the_connection() {
        let conflict = ApiError::UploadOffset {
            held: 262_144,
            detail: "resend from byte 262144".into(),
        }
        .into_response();
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        assert_eq!(conflict.headers()[UPLOAD_OFFSET], "262144");
        assert_eq!(conflict.headers()[header::CONNECTION], "close");
        let large = ApiError::PayloadTooLarge.into_response();
        assert_eq!(large.headers()[header::CONNECTION], "close");
        let missing = ApiError::NotFound("no such file".into()).into_response();
        assert!(missing.headers().get(header::CONNECTION).is_none());
    }
}
