//! What a renter remembers of the sessions it rented in this run: their terms and the
//! output of their executions, bounded, oldest ended sessions forgotten first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use orien_protocol::{ExecEvent, ExecExit, ExecId, SessionId};
use tokio::sync::Notify;

use super::{ExecView, RentedSession, SessionError};

/// How many rented sessions the node remembers (terms and execution output) after they
/// end; the ledger keeps their receipts for good.
const HISTORY_SESSIONS: usize = 1024;

/// Rented sessions of this run with their execution logs, oldest evicted first.
#[derive(Default)]
pub(super) struct History {
    pub(super) sessions: HashMap<SessionId, (RentedSession, Arc<ExecLogs>)>,
    pub(super) order: std::collections::VecDeque<SessionId>,
    pub(super) execs: HashMap<ExecId, SessionId>,
}

impl History {
    pub(super) fn insert(&mut self, rented: RentedSession, logs: Arc<ExecLogs>, held: &AtomicU64) {
        if self.order.len() >= HISTORY_SESSIONS
            && let Some(old) = self.order.pop_front()
        {
            self.forget(old, held);
        }
        self.order.push_back(rented.session);
        self.sessions.insert(rented.session, (rented, logs));
    }

    pub(super) fn forget(&mut self, session: SessionId, held: &AtomicU64) {
        if let Some((_, logs)) = self.sessions.remove(&session) {
            held.fetch_sub(logs.bytes.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        self.execs.retain(|_, s| *s != session);
    }

    /// Forgets the output of the oldest session not in `live`; `false` if none is left.
    pub(super) fn evict_ended(
        &mut self,
        live: &std::collections::HashSet<SessionId>,
        held: &AtomicU64,
    ) -> bool {
        let Some(position) = self.order.iter().position(|s| !live.contains(s)) else {
            return false;
        };
        if let Some(old) = self.order.remove(position) {
            self.forget(old, held);
        }
        true
    }
}

/// Output of executions as the renter keeps them, shared with API readers.
#[derive(Debug, Default)]
pub(super) struct ExecLogs {
    pub(super) logs: Mutex<HashMap<ExecId, ExecLog>>,
    pub(super) changed: Notify,
    /// Output bytes held in `logs`, counted in [`Inner::held`] too.
    pub(super) bytes: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
pub(super) struct ExecLog {
    pub(super) events: Vec<ExecEvent>,
    pub(super) exit: Option<ExecExit>,
    /// When the call started, on the session's clock (for the metrics).
    pub(super) started: std::time::Duration,
}

impl ExecLog {
    pub(super) fn new(started: std::time::Duration) -> Self {
        Self {
            events: Vec::new(),
            exit: None,
            started,
        }
    }
}

impl ExecLogs {
    pub(super) fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<ExecId, ExecLog>> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn view(&self, exec: ExecId) -> Result<ExecView, SessionError> {
        self.view_from(exec, 0)
    }

    pub(super) fn view_from(&self, exec: ExecId, from: usize) -> Result<ExecView, SessionError> {
        let logs = self.logs();
        let log = logs.get(&exec).ok_or(SessionError::UnknownExec(exec))?;
        Ok(ExecView {
            events: log.events.get(from..).unwrap_or_default().to_vec(),
            exit: log.exit.clone(),
        })
    }
}
