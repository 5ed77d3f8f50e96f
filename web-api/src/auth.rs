//! Bearer-token authentication. The token lives in a 0600 file in the node's data
//! directory and is compared in constant time.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::dashboard::browser::{BrowserSessions, session_cookie};
use crate::dashboard::guard::{changes_state, same_origin};
use crate::problem::ApiError;

/// File name of the API token inside the data directory.
pub const TOKEN_FILE: &str = "api.token";

/// The secret that authorises API requests. `Debug` never prints it.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

/// Errors creating or reading the token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The token file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is readable by others.
    #[error("{path}: mode {mode:o} lets other users read the API token; run `chmod 600 {path}`")]
    TooOpen {
        /// The token file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// The file holds no usable token.
    #[error(
        "{path}: the token must be at least 32 characters; remove the file and run `orien-node init` again"
    )]
    Weak {
        /// The token file.
        path: String,
    },
}

impl BearerToken {
    /// A token from text (at least 32 characters).
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (token.len() >= 32).then(|| Self(Arc::from(token)))
    }

    /// A fresh random token (256 bits, hex).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        #[allow(clippy::expect_used)] // Without an OS random source no secret can be made.
        getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
        Self(Arc::from(hex::encode(bytes)))
    }

    /// The token text, to hand to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// Writes a new token to `dir/api.token` (mode 0600), or keeps an existing one.
    pub fn create_or_load(dir: &Path) -> Result<Self, TokenError> {
        let path = dir.join(TOKEN_FILE);
        if path.exists() {
            return Self::load(&path);
        }
        let token = Self::generate();
        let io = |source| TokenError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.write_all(token.expose().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(token)
    }

    /// Reads a token file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let io = |source| TokenError::Io {
            path: shown.clone(),
            source,
        };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::TooOpen { path: shown, mode });
        }
        let text = fs::read_to_string(path).map_err(io)?;
        Self::new(&text).ok_or(TokenError::Weak { path: shown })
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 9110 §11.1), spaces after it are skipped.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// The token of a request's `Authorization: Bearer` header.
fn presented(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials)
}

/// Who made an API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A client with the API token (`Authorization: Bearer`).
    Token,
    /// A browser signed in to the dashboard (session cookie).
    Browser,
}

/// What the API accepts as proof: the token, or a dashboard session cookie.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) token: BearerToken,
    pub(crate) browsers: BrowserSessions,
}

/// Middleware: lets through requests with the API token, and requests of a signed-in
/// browser (state-changing ones only from the node's own origin); marks each with its
/// [`Principal`]. A wrong token is refused even when a cookie is present.
pub(crate) async fn require_credentials(
    State(credentials): State<Credentials>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = match presented(&request) {
        Some(presented) if credentials.token.matches(presented) => Principal::Token,
        Some(_) => return Err(ApiError::Unauthorized),
        None => match session_cookie(request.headers()) {
            Some(cookie) if credentials.browsers.is_signed_in(cookie, Instant::now()) => {
                if changes_state(request.method()) && !same_origin(&request) {
                    return Err(ApiError::Forbidden(
                        "a browser may change the node's state only from the dashboard's own \
                         pages (the request's Origin is not this node)"
                            .into(),
                    ));
                }
                Principal::Browser
            }
            _ => return Err(ApiError::Unauthorized),
        },
    };
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// Who may open `/mcp`: the API token, or an MCP client's own token.
#[derive(Clone)]
pub(crate) struct McpAuth {
    pub(crate) token: BearerToken,
    pub(crate) clients: Option<Arc<crate::mcp::clients::Clients>>,
}

/// Middleware of `/mcp`: the API token is the owner, a client's token that client
/// (marked on the request for the MCP server); anything else is refused.
pub(crate) async fn require_mcp_bearer(
    State(auth): State<McpAuth>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    use crate::mcp::clients::Caller;
    let caller = match presented(&request) {
        Some(presented) if auth.token.matches(presented) => Caller::Owner,
        Some(presented) => auth
            .clients
            .as_ref()
            .and_then(|clients| clients.caller(presented))
            .ok_or(ApiError::Unauthorized)?,
        None => return Err(ApiError::Unauthorized),
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc"] {
            assert_eq!(bearer_credentials(value), Some("abc"), "{value}");
        }
        for value in ["Basic abc", "Bearerabc", "Bearer", ""] {
            assert_eq!(bearer_credentials(value), None, "{value}");
        }
    }

    #[test]
    fn tokens_are_compared_exactly() {
        let token = BearerToken::generate();
        assert!(token.matches(token.expose()));
        assert!(!token.matches(&token.expose()[1..]));
        assert!(!token.matches(""));
        assert!(BearerToken::new("short").is_none());
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn token_file_is_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = BearerToken::create_or_load(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            BearerToken::create_or_load(dir.path()).unwrap().expose(),
            first.expose()
        );
        fs::set_permissions(
            dir.path().join(TOKEN_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            BearerToken::load(&dir.path().join(TOKEN_FILE)),
            Err(TokenError::TooOpen { .. })
        ));
    }
}
