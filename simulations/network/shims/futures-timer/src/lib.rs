//! `futures_timer::Delay` on tokio's clock.
//!
//! libp2p's behaviours and transports sleep on `futures_timer::Delay`, whose own thread
//! follows the real clock. In orien-sim's network mode this crate stands in for it
//! (`[patch.crates-io]` in `simulations/network/Cargo.toml`, never in the node's build):
//! each `Delay` is a `tokio::time::Sleep`, so a runtime with paused time advances every
//! libp2p timer whenever all tasks wait. Only the API libp2p uses is provided:
//! `Delay::new`, `Delay::reset` and `Future`. A `Delay` must be created inside a tokio
//! runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A future that completes after a duration of tokio time.
#[derive(Debug)]
pub struct Delay(Pin<Box<tokio::time::Sleep>>);

impl Delay {
    /// Completes `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        Delay(Box::pin(tokio::time::sleep(dur)))
    }

    /// Completes `dur` from now instead of when it was due.
    pub fn reset(&mut self, dur: Duration) {
        self.0.as_mut().reset(tokio::time::Instant::now() + dur);
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}
