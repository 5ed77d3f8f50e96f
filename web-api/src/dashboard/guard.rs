//! What keeps other web pages out of the node's API:
//!
//! - **DNS rebinding**: a page from `evil.example` whose name the attacker points at
//!   127.0.0.1 reaches the node with `Host: evil.example`. Every request's host must
//!   be an IP address, `localhost`, or a name the operator allowed.
//! - **Cross-site requests**: a browser signed in by cookie sends `Origin` with every
//!   state-changing request; it must be the node's own origin.
//! - **What the page may load**: a strict Content-Security-Policy, no framing, no
//!   referrer, no MIME sniffing, on every response.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::problem::ApiError;

/// The policy of the dashboard's pages (and of every API response: none needs more).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Host names the node answers to besides IP addresses and `localhost`.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    names: Arc<[String]>,
}

impl HostPolicy {
    /// IP addresses, `localhost` (and `*.localhost`), and these names.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            names: names
                .into_iter()
                .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request to `authority` (a `Host` header: name or address, and port)
    /// is for this node.
    pub fn allows(&self, authority: &str) -> bool {
        let Some(host) = host_of(authority) else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host.parse::<IpAddr>().is_ok()
            || host == "localhost"
            || host.ends_with(".localhost")
            || self.names.contains(&host)
    }
}

/// The host of an authority: `name:port` → `name`, `[::1]:port` → `::1`.
fn host_of(authority: &str) -> Option<&str> {
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return (after.is_empty() || after.starts_with(':')).then_some(host);
    }
    match authority.split_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => Some(host),
        Some(_) => None,
        None => Some(authority),
    }
}

/// The authority a request was sent to (`Host`, or the URI's for HTTP/2).
fn authority(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
}

/// Middleware: refuses requests to a host name the node does not answer to.
pub(crate) async fn check_host(
    State(policy): State<HostPolicy>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match authority(&request) {
        Some(host) if policy.allows(host) => Ok(next.run(request).await),
        Some(host) => Err(ApiError::Forbidden(format!(
            "this node does not answer to the host `{host}`; reach it by IP address or \
             `localhost`, or add the name to `api_hosts` in its config"
        ))),
        // Browsers always name the host; a request without one (HTTP/1.0, a test
        // harness) cannot come from a rebound page.
        None => Ok(next.run(request).await),
    }
}

/// Whether a request changes state (and so needs a same-origin `Origin` from a browser).
pub(crate) fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request's `Origin` is the origin it was sent to.
pub(crate) fn same_origin(request: &Request) -> bool {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some(host) = authority(request) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host))
}

/// Middleware: the headers every response carries.
pub(crate) async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_localhost_and_allowed_names_pass() {
        let policy = HostPolicy::new(["Node.Example".to_string()]);
        for host in [
            "127.0.0.1:7400",
            "127.5.6.7",
            "10.0.0.2:80",
            "[::1]:7400",
            "[::1]",
            "localhost:7400",
            "LOCALHOST",
            "dash.localhost:1",
            "node.example:7400",
            "node.example.",
        ] {
            assert!(policy.allows(host), "{host}");
        }
    }

    #[test]
    fn other_names_and_malformed_hosts_are_refused() {
        let policy = HostPolicy::new(["node.example".to_string()]);
        for host in [
            "evil.example:7400",
            "localhost.evil.example",
            "node.example.evil",
            "127.0.0.1.evil.example",
            "",
            "[::1",
            "[::1]x",
            "user@127.0.0.1",
            "127.0.0.1:x",
            "a b",
        ] {
            assert!(!policy.allows(host), "{host}");
        }
    }

    fn request(method: Method, host: &str, origin: Option<&str>) -> Request {
        let mut builder = Request::builder()
            .method(method)
            .uri("/v1/x")
            .header(header::HOST, host);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(axum::body::Body::empty()).expect("a request")
    }

    #[test]
    fn only_the_nodes_own_origin_is_same_origin() {
        let host = "127.0.0.1:7400";
        assert!(same_origin(&request(
            Method::POST,
            host,
            Some("http://127.0.0.1:7400")
        )));
        for origin in [
            None,
            Some("null"),
            Some("http://127.0.0.1:7401"),
            Some("http://localhost:7400"),
            Some("http://evil.example"),
            Some("127.0.0.1:7400"),
        ] {
            assert!(
                !same_origin(&request(Method::POST, host, origin)),
                "{origin:?}"
            );
        }
        assert!(changes_state(&Method::POST) && changes_state(&Method::PUT));
        assert!(changes_state(&Method::DELETE) && !changes_state(&Method::GET));
    }
}
