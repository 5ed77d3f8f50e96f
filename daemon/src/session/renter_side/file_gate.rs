//! The renter's side of the per-session file limit: a rented session sends the
//! provider no more file requests at once than the provider serves
//! ([`FILE_OPS_PER_SESSION`]); the rest wait their turn here, a bounded number of them,
//! instead of crossing the network to be refused.

use std::sync::atomic::{AtomicUsize, Ordering};

use orien_protocol::SessionId;
use orien_protocol::rpc::FILE_OPS_PER_SESSION;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::session::SessionError;

/// File requests of one rented session that may wait for a turn; more are refused
/// with [`SessionError::Busy`] at once.
pub(crate) const FILE_OPS_WAITING: usize = 16;

/// The turns of one rented session's file requests.
#[derive(Debug)]
pub(crate) struct FileGate {
    turns: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Default for FileGate {
    fn default() -> Self {
        Self {
            turns: Arc::new(Semaphore::new(FILE_OPS_PER_SESSION)),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl FileGate {
    /// Waits for a turn of `session` to send a file request; the turn ends when the
    /// permit is dropped.
    pub(crate) async fn enter(
        &self,
        session: SessionId,
    ) -> Result<OwnedSemaphorePermit, SessionError> {
        if let Ok(turn) = self.turns.clone().try_acquire_owned() {
            return Ok(turn);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= FILE_OPS_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(SessionError::Busy(session));
        }
        // Counted out however the wait ends, a dropped request included.
        let _waiter = Waiter(&self.waiting);
        self.turns
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SessionError::NotOpen {
                session,
                state: "ended".into(),
            })
    }
}

struct Waiter<'a>(&'a AtomicUsize);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_take_turns_and_a_full_queue_refuses_at_once() {
        let gate = std::sync::Arc::new(FileGate::default());
        let session = SessionId::random();
        let first = gate.enter(session).await.unwrap();
        let mut queued = Vec::new();
        for _ in 0..FILE_OPS_WAITING {
            let gate = gate.clone();
            queued.push(tokio::spawn(
                async move { gate.enter(session).await.map(drop) },
            ));
        }
        // Every queued request is waiting before the next one is asked.
        while gate.waiting.load(Ordering::Acquire) < FILE_OPS_WAITING {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            gate.enter(session).await,
            Err(SessionError::Busy(s)) if s == session
        ));
        drop(first);
        for waiting in queued {
            waiting.await.unwrap().unwrap();
        }
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
        assert!(gate.enter(session).await.is_ok(), "a turn is free again");
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let gate = FileGate::default();
        let session = SessionId::random();
        let _first = gate.enter(session).await.unwrap();
        let waiting = gate.enter(session);
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(10), waiting).await;
        assert!(timed_out.is_err());
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }
}
