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
use tokio::task::JoinHandle;

use crate::session::SessionSandbox;

/// The warm sandboxes of one provider.
#[derive(Debug)]
pub(crate) struct WarmPool {
    /// Sandboxes kept per tool.
    per_tool: usize,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    ready: HashMap<ToolName, Vec<SessionSandbox>>,
    /// The fill running for a tool, at most one each.
    filling: HashMap<ToolName, JoinHandle<()>>,
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
        Ok(())
    }

    /// Starts `fill` for `tool` unless one runs already, the pool is closed or off.
    pub(crate) fn fill_with(&self, tool: &ToolName, fill: impl FnOnce() -> JoinHandle<()>) {
        if self.per_tool == 0 {
            return;
        }
        let mut state = self.state();
        if state.closed || state.filling.get(tool).is_some_and(|f| !f.is_finished()) {
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
