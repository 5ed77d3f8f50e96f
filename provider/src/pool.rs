//! Warm sandboxes: a few hardened session sandboxes per tool, created, started and
//! probed ahead of the sessions that take them, so opening a session does not wait for
//! the engine.
//!
//! A warm sandbox is made exactly like a session's (the same container and workspace
//! requests, `container.rs`), under a fresh id that its names and labels carry and that
//! becomes the id of the session taking it ([`crate::Provider::open`]); it is live from
//! the first step, so the reaper leaves it alone. A session takes one whole: it serves
//! that session only and is removed with it, and the pool refills behind it, one fill
//! at a time per tool.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use orien_protocol::{SessionId, ToolName};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::session::SessionSandbox;

/// The warm sandboxes of one provider.
#[derive(Debug)]
pub(crate) struct WarmPool {
    /// Sandboxes kept per tool.
    per_tool: usize,
    state: Mutex<PoolState>,
    /// Woken when a sandbox is kept or a fill ends.
    changed: Notify,
}

#[derive(Debug, Default)]
struct PoolState {
    ready: HashMap<ToolName, Vec<SessionSandbox>>,
    /// The fills started, by tool, to wait for at shutdown.
    filling: HashMap<ToolName, JoinHandle<()>>,
    /// Tools whose fill runs (at most one each); a fill leaves it as its last step.
    active: HashSet<ToolName>,
    /// Ids of the sandboxes being made for the pool.
    making: HashSet<SessionId>,
    /// Shut down: nothing is filled or handed out any more.
    closed: bool,
}

impl WarmPool {
    pub(crate) fn new(per_tool: usize) -> Self {
        Self {
            per_tool,
            state: Mutex::new(PoolState::default()),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        // Plain collections: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A warm sandbox of `tool`, if one is ready.
    pub(crate) fn take(&self, tool: &ToolName) -> Option<SessionSandbox> {
        let mut state = self.state();
        if state.closed {
            return None;
        }
        state.ready.get_mut(tool).and_then(Vec::pop)
    }

    /// How many more sandboxes `tool` needs, or `None` when the pool is closed or off.
    pub(crate) fn wanted(&self, tool: &ToolName) -> Option<usize> {
        let state = self.state();
        let ready = state.ready.get(tool).map_or(0, Vec::len);
        (!state.closed && self.per_tool > ready).then(|| self.per_tool - ready)
    }

    /// A warm sandbox of `tool`: one ready, or the one a fill under way is making
    /// (sooner than a new one, and without a second creation competing with it), waiting
    /// at most `patience`. `None` when there is none and no fill runs.
    pub(crate) async fn take_or_wait(
        &self,
        tool: &ToolName,
        patience: std::time::Duration,
    ) -> Option<SessionSandbox> {
        let give_up = tokio::time::Instant::now() + patience;
        loop {
            // Registered before the checks, so a keep between them is not missed.
            let changed = self.changed.notified();
            if let Some(sandbox) = self.take(tool) {
                return Some(sandbox);
            }
            if !self.filling(tool) {
                return None;
            }
            if tokio::time::timeout_at(give_up, changed).await.is_err() {
                return None;
            }
        }
    }

    fn filling(&self, tool: &ToolName) -> bool {
        let state = self.state();
        !state.closed && state.active.contains(tool)
    }

    /// `tool`'s fill ended (its sandboxes are kept, or it failed): waiters look again.
    pub(crate) fn fill_ended(&self, tool: &ToolName) {
        self.state().active.remove(tool);
        self.changed.notify_waiters();
    }

    /// A fresh id for a sandbox about to be made for the pool.
    pub(crate) fn making(&self) -> SessionId {
        let id = SessionId::random();
        self.state().making.insert(id);
        id
    }

    /// The sandbox `id` could not be made.
    pub(crate) fn failed(&self, id: SessionId) {
        self.state().making.remove(&id);
    }

    /// Keeps a sandbox just made; hands it back when the pool closed meanwhile (the
    /// caller removes it).
    pub(crate) fn keep(&self, sandbox: SessionSandbox) -> Result<(), SessionSandbox> {
        let mut state = self.state();
        state.making.remove(&sandbox.id());
        if state.closed {
            return Err(sandbox);
        }
        let tool = sandbox.tool().name().clone();
        state.ready.entry(tool).or_default().push(sandbox);
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Starts `fill` for `tool` unless one runs already, the pool is closed or off.
    pub(crate) fn fill_with(&self, tool: &ToolName, fill: impl FnOnce() -> JoinHandle<()>) {
        if self.per_tool == 0 {
            return;
        }
        let mut state = self.state();
        if state.closed || !state.active.insert(tool.clone()) {
            return;
        }
        state.filling.insert(tool.clone(), fill());
    }

    /// Closes the pool: the fills running, to wait for, and the sandboxes ready, to
    /// remove.
    pub(crate) fn close(&self) -> (Vec<JoinHandle<()>>, Vec<SessionSandbox>) {
        let mut state = self.state();
        state.closed = true;
        let fills = state.filling.drain().map(|(_, f)| f).collect();
        let ready = state.ready.drain().flat_map(|(_, s)| s).collect();
        drop(state);
        self.changed.notify_waiters();
        (fills, ready)
    }

    /// Whether `id` is a sandbox of the pool (ready, or being made), not a session's.
    pub(crate) fn holds(&self, id: &SessionId) -> bool {
        let state = self.state();
        state.making.contains(id)
            || state
                .ready
                .values()
                .any(|ready| ready.iter().any(|s| &s.id() == id))
    }

    /// Sandboxes ready, by tool.
    pub(crate) fn ready(&self) -> HashMap<ToolName, usize> {
        self.state()
            .ready
            .iter()
            .map(|(tool, ready)| (tool.clone(), ready.len()))
            .collect()
    }
}
