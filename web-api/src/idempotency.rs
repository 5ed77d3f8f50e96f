//! `Idempotency-Key` on `POST`: a retried request gets the first answer instead of
//! opening a second session or running a second execution.
//!
//! The first request with a key runs and its answer (unless a 5xx, which may be retried)
//! is kept for [`IdempotencyConfig::ttl`]. A retry with the same key, method, path and
//! body gets that answer again, marked `Idempotent-Replayed: true`. The same key on
//! another request is a `409` problem, as is a retry while the first is still running.
//! Answers are kept in memory: a restarted node forgets them, and its sessions too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The header marking a replayed answer.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// How many answers are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// Most keys remembered; the oldest are forgotten first.
    pub capacity: usize,
    /// How long an answer is replayed.
    pub ttl: Duration,
    /// Largest request body fingerprinted (larger bodies are refused with `413`).
    pub body_limit: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            ttl: Duration::from_secs(24 * 3600),
            body_limit: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Running {
        fingerprint: [u8; 32],
        since: Instant,
    },
    Done {
        fingerprint: [u8; 32],
        at: Instant,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
}

impl Entry {
    fn started(&self) -> Instant {
        match self {
            Self::Running { since, .. } => *since,
            Self::Done { at, .. } => *at,
        }
    }
}

/// The remembered answers.
#[derive(Debug, Clone)]
pub(crate) struct Idempotency {
    config: IdempotencyConfig,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl Idempotency {
    pub(crate) fn new(config: IdempotencyConfig) -> Self {
        assert!(
            config.capacity > 0,
            "an idempotency cache holds at least one key"
        );
        Self {
            config,
            entries: Arc::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `key` for a request (`None`), or says what to answer instead.
    fn claim(&self, key: &str, fingerprint: [u8; 32]) -> Option<Response> {
        let now = Instant::now();
        let mut entries = self.entries();
        let ttl = self.config.ttl;
        entries.retain(|_, e| now.duration_since(e.started()) < ttl);
        match entries.get(key) {
            Some(Entry::Running { fingerprint: f, .. }) if *f == fingerprint => {
                Some(ApiError::Conflict(
                    "a request with this Idempotency-Key is still running; retry when it has answered"
                        .into(),
                )
                .into_response())
            }
            Some(Entry::Done {
                fingerprint: f,
                status,
                headers,
                body,
                ..
            }) if *f == fingerprint => {
                let mut response = (*status, body.clone()).into_response();
                *response.headers_mut() = headers.clone();
                response
                    .headers_mut()
                    .insert(REPLAYED, HeaderValue::from_static("true"));
                Some(response)
            }
            Some(_) => Some(ApiError::Conflict(
                "this Idempotency-Key was used for another request; use a new key for a new request"
                    .into(),
            )
            .into_response()),
            None => {
                if entries.len() >= self.config.capacity
                    && let Some(oldest) = entries
                        .iter()
                        .min_by_key(|(_, e)| e.started())
                        .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
                entries.insert(
                    key.to_owned(),
                    Entry::Running {
                        fingerprint,
                        since: now,
                    },
                );
                None
            }
        }
    }

    fn finish(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        answer: Option<(StatusCode, HeaderMap, Bytes)>,
    ) {
        let mut entries = self.entries();
        match answer {
            Some((status, headers, body)) => {
                entries.insert(
                    key.to_owned(),
                    Entry::Done {
                        fingerprint,
                        at: Instant::now(),
                        status,
                        headers,
                        body,
                    },
                );
            }
            None => {
                entries.remove(key);
            }
        }
    }
}

/// Releases a claimed key if the handler is dropped before it answers (client gone).
struct Claim<'a> {
    cache: &'a Idempotency,
    key: &'a str,
    fingerprint: [u8; 32],
    answered: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.cache.finish(self.key, self.fingerprint, None);
        }
    }
}

/// Middleware: applies the rules above to every `POST` carrying the header.
pub(crate) async fn idempotent(
    State(cache): State<Idempotency>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(&IDEMPOTENCY_KEY) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.to_owned()
        }
        _ => {
            return ApiError::field(
                "Idempotency-Key",
                format!("must be 1..={MAX_KEY_LEN} visible ASCII characters"),
            )
            .into_response();
        }
    };
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, cache.config.body_limit).await {
        Ok(body) => body,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(parts.uri.path().as_bytes());
    hasher.update([0]);
    hasher.update(parts.uri.query().unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(&body);
    let fingerprint: [u8; 32] = hasher.finalize().into();
    if let Some(answer) = cache.claim(&key, fingerprint) {
        return answer;
    }
    let mut claim = Claim {
        cache: &cache,
        key: &key,
        fingerprint,
        answered: false,
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    // Answers of these routes are small JSON documents.
    let body = match to_bytes(body, 1 << 20).await {
        Ok(body) => body,
        Err(e) => {
            claim.answered = true;
            cache.finish(&key, fingerprint, None);
            return ApiError::Internal(format!("reading the answer to replay: {e}"))
                .into_response();
        }
    };
    claim.answered = true;
    let kept = (!parts.status.is_server_error()).then(|| {
        let mut headers = parts.headers.clone();
        headers.remove(header::DATE);
        (parts.status, headers, body.clone())
    });
    cache.finish(&key, fingerprint, kept);
    Response::from_parts(parts, Body::from(body))
}
