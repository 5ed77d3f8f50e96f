//! Sign-in links for the dashboard.

use std::time::Instant;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::{ApiError, AppState};

/// A one-time sign-in link of the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginLinkView {
    /// Path and query to open on the node's API address (`/login?code=…`). It works
    /// once: opening it gives the browser a session cookie.
    pub path: String,
    /// Seconds the link stays valid if unused.
    pub expires_in_secs: u64,
}

/// Makes a one-time link that signs a browser in to the dashboard.
///
/// Only for clients with the API token (`orien-node dashboard` calls it): a browser
/// that is signed in cannot make links for others.
#[utoipa::path(post, path = "/v1/dashboard/login-links", tag = "dashboard", security(("bearer" = [])), responses(
    (status = 200, description = "A fresh one-time link", body = LoginLinkView),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 403, description = "Asked by a browser session, not the API token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn create_login_link(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<LoginLinkView>, ApiError> {
    if principal != Principal::Token {
        return Err(ApiError::Forbidden(
            "sign-in links are made with the API token (`orien-node dashboard`), not from a browser".into(),
        ));
    }
    let code = state.browsers.issue_code(Instant::now());
    Ok(Json(LoginLinkView {
        path: format!("/login?code={}", code.expose()),
        expires_in_secs: state.browsers.limits().code_lifetime.as_secs(),
    }))
}
