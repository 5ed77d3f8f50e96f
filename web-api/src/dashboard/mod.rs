//! The dashboard: the node's pages for a person, served at `/` on the API port. Its
//! files (`web-api/dashboard/`) are embedded in the binary at build time, so running a
//! node needs no Node.js and no files beside the binary. The pages call the same `/v1`
//! API as every client, signed in by a cookie (see [`browser`]); [`guard`] keeps other
//! sites out.

pub mod browser;
pub mod guard;

use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::AppState;
use crate::problem::ApiError;

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    /// Its path below `dashboard/assets/` (or `index.html`).
    pub(crate) path: &'static str,
    /// Its bytes.
    pub(crate) bytes: &'static [u8],
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// A quoted hash of its bytes.
    pub(crate) etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The embedded asset at `path` (below `/assets/`).
pub(crate) fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The dashboard's routes: the page, its assets, sign-in and sign-out. None needs
/// the API token: the page itself holds no data, and its calls to `/v1` carry the
/// cookie.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*path}", get(serve_asset))
        .route("/login", get(login))
        .route("/logout", post(logout))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers, "no-cache")
}

async fn serve_asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match asset(&path) {
        // Revalidated on every load (cheap: a 304 with the ETag); the URLs carry no
        // version, so a longer cache would serve an old page after an upgrade.
        Some(asset) => serve(asset, &headers, "no-cache"),
        None => ApiError::NotFound(format!("asset `{path}`")).into_response(),
    }
}

fn serve(asset: &'static Asset, request: &HeaderMap, cache: &'static str) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag));
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::ETAG, HeaderValue::from_static(asset.etag)),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, asset.bytes).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    code: Option<String>,
}

/// `GET /login?code=…`: spends a one-time code for a session cookie, then shows the
/// dashboard (a 303, so reloading does not reuse the code).
async fn login(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    if let Some(session) = query
        .code
        .as_deref()
        .and_then(|code| state.browsers.redeem(code, now))
    {
        tracing::info!("a browser signed in to the dashboard");
        return (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, HeaderValue::from_static("/")),
                (
                    header::SET_COOKIE,
                    state.browsers.set_cookie(&headers, &session),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response();
    }
    if browser::session_cookie(&headers).is_some_and(|c| state.browsers.is_signed_in(c, now)) {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        LOGIN_REFUSED,
    )
        .into_response()
}

const LOGIN_REFUSED: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Sign in · ORIEN node</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
<body><main class=\"signin\"><h1>This sign-in link does not work</h1>\
<p>A link works once, within five minutes of being made. For a new one, run \
<code>orien-node dashboard</code> on the node's machine and open the link it prints.</p>\
</main></body></html>\n";

/// `POST /logout`: ends this browser's session. Same-origin only.
async fn logout(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    if !guard::same_origin(&request) {
        return Err(ApiError::Forbidden(
            "signing out is only accepted from the dashboard's own pages".into(),
        ));
    }
    if let Some(cookie) = browser::session_cookie(request.headers()) {
        state.browsers.sign_out(cookie);
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            browser::BrowserSessions::clear_cookie(request.headers()),
        )],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_embedded() {
        let page = std::str::from_utf8(INDEX.bytes).expect("utf-8");
        assert!(page.contains("<html"), "index.html is a page");
        assert!(!ASSETS.is_empty());
        // Every file the page names is embedded.
        for reference in page.split("\"/assets/").skip(1) {
            let path = reference.split('"').next().unwrap_or_default();
            assert!(
                asset(path).is_some(),
                "index.html names /assets/{path}, not embedded"
            );
        }
        // And every file in the tree is, byte for byte.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/assets");
        for asset in ASSETS {
            let on_disk = std::fs::read(root.join(asset.path)).expect("embedded files exist");
            assert_eq!(on_disk, asset.bytes, "{} differs from the tree", asset.path);
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(INDEX.bytes)
            .expect("utf-8")
            .to_ascii_lowercase();
        assert!(
            !page.contains("style=\""),
            "inline style attributes break the CSP"
        );
        let handlers = regex::Regex::new(r#"\son[a-z]+\s*="#).expect("a regex");
        assert!(
            !handlers.is_match(&page),
            "inline event handlers break the CSP"
        );
        assert!(
            !page.contains("javascript:"),
            "javascript: URLs break the CSP"
        );
        for script in page.split("<script").skip(1) {
            assert!(
                script
                    .split('>')
                    .next()
                    .unwrap_or_default()
                    .contains("src="),
                "inline <script>"
            );
        }
    }
}
