//! The periodic reaper: containers and workspaces of sessions that are not live go.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span, warn};

use crate::provider::Provider;

/// What one pass of the reaper removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Containers removed.
    pub containers: usize,
    /// Workspace volumes removed.
    pub volumes: usize,
    /// Disk-backed workspaces unmounted and removed.
    pub disks: usize,
}

/// A running periodic reaper; dropping it stops it.
#[derive(Debug)]
pub struct Reaper {
    task: JoinHandle<()>,
}

impl Reaper {
    pub(crate) fn spawn(provider: Provider, every: Duration) -> Self {
        let span = info_span!("reaper", node = %provider.node());
        let task = tokio::spawn(
            async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await; // the first tick is immediate; `start` has just reaped
                loop {
                    ticks.tick().await;
                    match provider.reap().await {
                        Ok(report) => debug!(?report, "reaper pass"),
                        Err(e) => {
                            warn!(error = %e, "reaper pass failed; retrying at the next tick")
                        }
                    }
                }
            }
            .instrument(span),
        );
        Self { task }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
