//! Signing a browser in without putting the API token in a URL: `orien-node dashboard`
//! asks the node (with the token) for a one-time login code; the browser opens
//! `/login?code=…` once and gets an HttpOnly, `SameSite=Strict` session cookie in
//! exchange. Codes and sessions live in memory only (a restart signs every browser
//! out), are random 256-bit values, and are looked up by their SHA-256, so the lookup
//! never compares a presented secret byte by byte.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

/// Name of the session cookie, followed by `_<port>` when the request names a port:
/// browsers send a host's cookies to every port of it, and two nodes on one machine
/// (a provider and a renter) must not sign each other's browser out.
pub const COOKIE: &str = "orien_dashboard";

/// The session cookie's name for the node a request was sent to.
pub fn cookie_name(headers: &HeaderMap) -> String {
    let port = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|host| host.rsplit_once(':'))
        .map(|(_, port)| port)
        .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    match port {
        Some(port) => format!("{COOKIE}_{port}"),
        None => COOKIE.to_owned(),
    }
}

/// How long login codes and browser sessions last, and how many may exist at once.
#[derive(Debug, Clone, Copy)]
pub struct BrowserLimits {
    /// A login code not used within this is void.
    pub code_lifetime: Duration,
    /// A browser session ends this long after sign-in.
    pub session_lifetime: Duration,
    /// Unused codes kept at most (the oldest is dropped first).
    pub max_codes: usize,
    /// Browser sessions kept at most (the oldest is signed out first).
    pub max_sessions: usize,
}

impl Default for BrowserLimits {
    fn default() -> Self {
        Self {
            code_lifetime: Duration::from_secs(5 * 60),
            session_lifetime: Duration::from_secs(12 * 60 * 60),
            max_codes: 16,
            max_sessions: 32,
        }
    }
}

/// A secret handed out once: a login code or a session cookie's value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        #[allow(clippy::expect_used)] // Without an OS random source no secret can be made.
        getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
        Self(hex::encode(bytes))
    }

    /// The text to put in the link or the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

type Digest32 = [u8; 32];

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

/// The login codes and browser sessions of one node.
#[derive(Debug, Clone)]
pub struct BrowserSessions {
    limits: BrowserLimits,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Unused login codes and when they expire.
    codes: HashMap<Digest32, Instant>,
    /// Signed-in browsers and when their sessions end.
    sessions: HashMap<Digest32, Instant>,
}

impl State {
    fn forget_expired(&mut self, now: Instant) {
        self.codes.retain(|_, ends| *ends > now);
        self.sessions.retain(|_, ends| *ends > now);
    }
}

/// Keeps at most `max` entries in `map`: drops the ones ending first.
fn keep_newest(map: &mut HashMap<Digest32, Instant>, max: usize) {
    while map.len() > max {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, ends)| **ends)
            .map(|(key, _)| *key)
        else {
            return;
        };
        map.remove(&oldest);
    }
}

impl Default for BrowserSessions {
    fn default() -> Self {
        Self::new(BrowserLimits::default())
    }
}

impl BrowserSessions {
    /// No codes and no sessions yet.
    pub fn new(limits: BrowserLimits) -> Self {
        assert!(
            limits.max_codes > 0 && limits.max_sessions > 0,
            "limits must allow one"
        );
        Self {
            limits,
            state: Arc::default(),
        }
    }

    /// The limits these sessions keep.
    pub fn limits(&self) -> BrowserLimits {
        self.limits
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still valid.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh one-time login code, valid for [`BrowserLimits::code_lifetime`].
    pub fn issue_code(&self, now: Instant) -> Secret {
        let code = Secret::generate();
        let mut state = self.state();
        state.forget_expired(now);
        state
            .codes
            .insert(digest(code.expose()), now + self.limits.code_lifetime);
        keep_newest(&mut state.codes, self.limits.max_codes);
        code
    }

    /// Spends a login code: the new session's cookie value, or `None` when the code
    /// is unknown, used or expired.
    pub fn redeem(&self, code: &str, now: Instant) -> Option<Secret> {
        let mut state = self.state();
        state.forget_expired(now);
        state.codes.remove(&digest(code))?;
        let session = Secret::generate();
        state
            .sessions
            .insert(digest(session.expose()), now + self.limits.session_lifetime);
        keep_newest(&mut state.sessions, self.limits.max_sessions);
        Some(session)
    }

    /// Whether `cookie` is a live session.
    pub fn is_signed_in(&self, cookie: &str, now: Instant) -> bool {
        self.state()
            .sessions
            .get(&digest(cookie))
            .is_some_and(|ends| *ends > now)
    }

    /// Ends the session of `cookie` (nothing when it is none).
    pub fn sign_out(&self, cookie: &str) {
        self.state().sessions.remove(&digest(cookie));
    }

    /// The `Set-Cookie` value that hands `session` to the browser of `request`.
    pub fn set_cookie(&self, request: &HeaderMap, session: &Secret) -> HeaderValue {
        cookie_header(
            &cookie_name(request),
            session.expose(),
            self.limits.session_lifetime.as_secs(),
        )
    }

    /// The `Set-Cookie` value that removes the session cookie of `request`'s node.
    pub fn clear_cookie(request: &HeaderMap) -> HeaderValue {
        cookie_header(&cookie_name(request), "", 0)
    }
}

fn cookie_header(name: &str, value: &str, max_age: u64) -> HeaderValue {
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    #[allow(clippy::expect_used)] // Hex digits and fixed ASCII only.
    HeaderValue::from_str(&text).expect("a cookie of hex digits is a valid header value")
}

/// The value of the session cookie (of the node the request was sent to) among a
/// request's `Cookie` headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    let name = cookie_name(headers);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> BrowserSessions {
        BrowserSessions::new(BrowserLimits {
            code_lifetime: Duration::from_secs(60),
            session_lifetime: Duration::from_secs(600),
            max_codes: 2,
            max_sessions: 2,
        })
    }

    #[test]
    fn a_code_signs_in_once() {
        let browsers = sessions();
        let now = Instant::now();
        let code = browsers.issue_code(now);
        let session = browsers.redeem(code.expose(), now).expect("fresh code");
        assert!(browsers.is_signed_in(session.expose(), now));
        assert_eq!(
            browsers.redeem(code.expose(), now),
            None,
            "a code works once"
        );
        assert!(
            !browsers.is_signed_in(code.expose(), now),
            "a code is not a session"
        );
        browsers.sign_out(session.expose());
        assert!(!browsers.is_signed_in(session.expose(), now));
    }

    #[test]
    fn codes_and_sessions_expire() {
        let browsers = sessions();
        let now = Instant::now();
        let late = browsers.issue_code(now);
        assert_eq!(
            browsers.redeem(late.expose(), now + Duration::from_secs(61)),
            None
        );
        let code = browsers.issue_code(now);
        let session = browsers.redeem(code.expose(), now).expect("fresh code");
        assert!(browsers.is_signed_in(session.expose(), now + Duration::from_secs(599)));
        assert!(!browsers.is_signed_in(session.expose(), now + Duration::from_secs(600)));
    }

    #[test]
    fn the_oldest_codes_and_sessions_give_way() {
        let browsers = sessions();
        let now = Instant::now();
        let codes: Vec<_> = (0..3u64)
            .map(|i| browsers.issue_code(now + Duration::from_secs(i)))
            .collect();
        let later = now + Duration::from_secs(3);
        assert_eq!(browsers.redeem(codes[0].expose(), later), None, "dropped");
        let first = browsers.redeem(codes[1].expose(), later).expect("kept");
        let code = browsers.issue_code(later + Duration::from_secs(1));
        let second = browsers
            .redeem(codes[2].expose(), later + Duration::from_secs(1))
            .expect("kept");
        let third = browsers
            .redeem(code.expose(), later + Duration::from_secs(2))
            .expect("kept");
        let check = later + Duration::from_secs(3);
        assert!(!browsers.is_signed_in(first.expose(), check), "signed out");
        assert!(browsers.is_signed_in(second.expose(), check));
        assert!(browsers.is_signed_in(third.expose(), check));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let browsers = sessions();
        let code = browsers.issue_code(Instant::now());
        let session = browsers
            .redeem(code.expose(), Instant::now())
            .expect("fresh");
        let mut request = HeaderMap::new();
        request.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7400"));
        let header = browsers.set_cookie(&request, &session);
        let text = header.to_str().expect("ascii");
        assert!(text.starts_with(&format!("{COOKIE}_7400={}", session.expose())));
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"] {
            assert!(text.contains(attribute), "{text}");
        }
        assert!(!format!("{session:?}").contains(session.expose()));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(session_cookie(&headers), None);
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x=y;  orien_dashboard=abc ; orien_dashboard_7401=def; z=1"),
        );
        assert_eq!(
            session_cookie(&headers),
            Some("abc"),
            "no port: the plain name"
        );
        headers.insert(header::HOST, HeaderValue::from_static("localhost:7401"));
        assert_eq!(
            session_cookie(&headers),
            Some("def"),
            "each port its own cookie"
        );
        headers.insert(header::HOST, HeaderValue::from_static("[::1]:7402"));
        assert_eq!(session_cookie(&headers), None);
        headers.insert(header::HOST, HeaderValue::from_static("[::1]"));
        assert_eq!(session_cookie(&headers), Some("abc"));
    }
}
