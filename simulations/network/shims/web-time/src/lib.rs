//! `web_time` with tokio's `Instant`.
//!
//! gossipsub and kad read `web_time::Instant::now()` for backoffs, scores, caches and
//! record expiry. In orien-sim's network mode this crate stands in for web-time (never
//! in the node's build): `Instant` is `tokio::time::Instant`, which follows a paused
//! runtime's clock (and the real one outside a runtime). Wall-clock time (`SystemTime`)
//! stays the system's.

pub use std::time::{Duration, SystemTime, SystemTimeError, UNIX_EPOCH};
pub use tokio::time::Instant;
