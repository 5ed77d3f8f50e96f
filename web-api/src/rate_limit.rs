//! A token bucket for the whole API: the node is local, so one bucket protects it
//! from a runaway client without per-client bookkeeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::problem::ApiError;

/// Requests allowed: `burst` at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 200.0,
            burst: 400.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Shared token bucket.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    limit: RateLimit,
    bucket: Arc<Mutex<Bucket>>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: limit.burst,
                refilled: Instant::now(),
            })),
        }
    }

    fn try_take(&self, now: Instant) -> bool {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now
            .saturating_duration_since(bucket.refilled)
            .min(Duration::from_secs(3600));
        bucket.tokens =
            (bucket.tokens + elapsed.as_secs_f64() * self.limit.per_second).min(self.limit.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Middleware: 429 when the bucket is empty.
pub(crate) async fn limit_rate(
    State(limiter): State<Limiter>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if limiter.try_take(Instant::now()) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::RateLimited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let limiter = Limiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let start = Instant::now();
        assert!((0..3).all(|_| limiter.try_take(start)));
        assert!(!limiter.try_take(start));
        assert!(limiter.try_take(start + Duration::from_millis(150)));
        assert!(!limiter.try_take(start + Duration::from_millis(150)));
    }
}
