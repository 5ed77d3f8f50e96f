//! [`ModelSandbox`]: a model of tool calls behind the [`Sandbox`] trait, for tests and
//! simulations where the container is beside the point.
//!
//! It checks arguments with the real [`Tool`] (schema and argv template), enforces the
//! tool's limits the way the Docker sandbox does (wall-time limit, concurrent calls,
//! upload size, workspace quota, output caps) and keeps the workspace in memory. What a
//! call does — how long it runs, what it prints, how it exits — comes from a
//! [`CallModel`]; a model can also misbehave (run past the limit, report a false wall
//! time) to play a dishonest provider. Calls sleep on the tokio clock, so a runtime
//! with paused time runs them in virtual time.
//!
//! ```
//! use std::time::Duration;
//! use orien_protocol::NodeKey;
//! use orien_provider::model::{ModelRun, ModelSandbox};
//! # fn tools() -> Vec<orien_provider::Tool> { Vec::new() }
//!
//! let sandbox = ModelSandbox::new(NodeKey::generate().node_id(), tools(), |_tool: &_, _args: &_| {
//!     ModelRun::exits_after(Duration::from_millis(20), b"ok\n".to_vec())
//! });
//! assert!(sandbox.live_sessions().is_empty());
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use orien_protocol::{
    Clock, EvmAddress, ExecEvent, ExecId, ExecOutcome, ImageDigest, Millis, NodeId, Offer,
    OutputStream, SessionId, Timestamp, ToolName,
};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::error::ProviderError;
use crate::exec::{Call, ExecStream};
use crate::sandbox::{Sandbox, SandboxSession};
use crate::tool::Tool;
use crate::workspace::{EntryKind, WorkspaceEntry};
use crate::workspace_path::WorkspacePath;

/// What one modelled call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRun {
    /// How long the call runs (cut at the tool's `max_exec` unless `ignore_limit`).
    pub duration: Duration,
    /// What it writes to stdout (capped at the tool's output cap).
    pub stdout: Vec<u8>,
    /// What it writes to stderr.
    pub stderr: Vec<u8>,
    /// Its exit code, when it exits on its own.
    pub exit_code: i32,
    /// A wall time to report instead of the measured one (a provider that lies).
    pub reported_wall: Option<Millis>,
    /// Run past the tool's wall-time limit instead of being killed at it (a provider
    /// that delays the exit).
    pub ignore_limit: bool,
}

impl ModelRun {
    /// A call that prints `stdout` and exits with 0 after `duration`.
    pub fn exits_after(duration: Duration, stdout: Vec<u8>) -> Self {
        Self {
            duration,
            stdout,
            stderr: Vec::new(),
            exit_code: 0,
            reported_wall: None,
            ignore_limit: false,
        }
    }
}

/// Decides what a call does from its tool and arguments.
pub trait CallModel: Send + Sync + 'static {
    /// The behaviour of one call of `tool` with (schema-valid) `args`.
    fn run(&self, tool: &Tool, args: &serde_json::Value) -> ModelRun;
}

impl<F> CallModel for F
where
    F: Fn(&Tool, &serde_json::Value) -> ModelRun + Send + Sync + 'static,
{
    fn run(&self, tool: &Tool, args: &serde_json::Value) -> ModelRun {
        self(tool, args)
    }
}

/// Sessions of whitelisted tools whose calls follow a [`CallModel`]. Cloning shares it.
#[derive(Clone)]
pub struct ModelSandbox {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    node: NodeId,
    tools: BTreeMap<ToolName, Arc<Tool>>,
    model: Arc<dyn CallModel>,
    live: Mutex<HashSet<SessionId>>,
    clock: Arc<dyn Clock>,
    work: Mutex<BTreeMap<SessionId, SessionWork>>,
    /// How long making another tool ready in a session takes (ms), as a container would.
    prepare_ms: std::sync::atomic::AtomicU64,
}

impl ModelInner {
    fn work(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, SessionWork>> {
        self.work.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The work one modelled session really did, on the sandbox's clock (monotonic): the
/// ground truth a provider's meter and a renter's payment are judged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWork {
    /// Its tool.
    pub tool: ToolName,
    /// When the session's sandbox opened.
    pub opened: Duration,
    /// When it closed, if it has.
    pub closed: Option<Duration>,
    /// Its calls that ran (arguments valid), in start order.
    pub calls: Vec<CallWork>,
}

/// One call that ran in a modelled session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallWork {
    /// The call.
    pub exec: ExecId,
    /// When it started running (after waiting for a slot).
    pub started: Duration,
    /// When it ended (exit, limit or kill), if it has.
    pub ended: Option<Duration>,
}

impl std::fmt::Debug for ModelSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSandbox")
            .field("tools", &self.inner.tools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ModelSandbox {
    /// A sandbox for `node` selling `tools`, whose calls do what `model` says; its work
    /// log reads the system clock.
    pub fn new(node: NodeId, tools: Vec<Tool>, model: impl CallModel) -> Self {
        Self::with_clock(
            node,
            tools,
            model,
            Arc::new(orien_protocol::SystemClock::new()),
        )
    }

    /// [`new`](Self::new) with the clock of the work log.
    pub fn with_clock(
        node: NodeId,
        tools: Vec<Tool>,
        model: impl CallModel,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(ModelInner {
                node,
                tools: tools
                    .into_iter()
                    .map(|t| (t.name().clone(), Arc::new(t)))
                    .collect(),
                model: Arc::new(model),
                live: Mutex::new(HashSet::new()),
                clock,
                work: Mutex::new(BTreeMap::new()),
                prepare_ms: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Making another tool ready in a session (its container, in the real sandbox) takes
    /// `delay` from now on.
    pub fn set_prepare_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.inner.prepare_ms.store(ms, Ordering::SeqCst);
    }

    /// The work a session did, if it was opened here.
    pub fn work(&self, session: &SessionId) -> Option<SessionWork> {
        self.inner.work().get(session).cloned()
    }

    /// A whitelisted tool.
    pub fn tool(&self, name: &ToolName) -> Option<&Tool> {
        self.inner.tools.get(name).map(|t| t.as_ref())
    }

    /// The modelled image digest of a tool: SHA-256 of `orien-model/<name>`.
    pub fn image_digest(name: &ToolName) -> ImageDigest {
        let digest: [u8; 32] = Sha256::digest(format!("orien-model/{name}")).into();
        ImageDigest::from_bytes(digest)
    }

    /// The (unsigned) offer for a tool, valid for `ttl` from `issued_at`.
    pub fn offer(
        &self,
        name: &ToolName,
        payout: EvmAddress,
        issued_at: Timestamp,
        ttl: Millis,
    ) -> Option<Offer> {
        let tool = self.inner.tools.get(name)?;
        Some(tool.offer(
            self.inner.node,
            Self::image_digest(name),
            payout,
            issued_at,
            ttl,
        ))
    }

    /// Sessions open right now.
    pub fn live_sessions(&self) -> Vec<SessionId> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

#[async_trait]
impl Sandbox for ModelSandbox {
    fn tool_names(&self) -> Vec<ToolName> {
        self.inner.tools.keys().cloned().collect()
    }

    fn load(&self) -> crate::sandbox::SandboxLoad {
        let mut sessions = self.live_sessions();
        sessions.sort();
        // The model keeps no warm sandboxes.
        crate::sandbox::SandboxLoad {
            sessions,
            warm: Vec::new(),
        }
    }

    fn offer(
        &self,
        tool: &ToolName,
        payout: EvmAddress,
        issued_at: Timestamp,
        ttl: Millis,
    ) -> Option<Offer> {
        ModelSandbox::offer(self, tool, payout, issued_at, ttl)
    }

    async fn open_session(
        &self,
        session: SessionId,
        tool: &ToolName,
    ) -> Result<Box<dyn SandboxSession>, ProviderError> {
        let tool = self
            .inner
            .tools
            .get(tool)
            .cloned()
            .ok_or_else(|| ProviderError::UnknownTool(tool.clone()))?;
        if !self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session)
        {
            return Err(ProviderError::SessionExists(session));
        }
        let (closed_tx, closed_rx) = watch::channel(false);
        self.inner.work().insert(
            session,
            SessionWork {
                tool: tool.name().clone(),
                opened: self.inner.clock.monotonic(),
                closed: None,
                calls: Vec::new(),
            },
        );
        Ok(Box::new(ModelSession {
            sandbox: self.inner.clone(),
            id: session,
            permits: Arc::new(Semaphore::new(tool.limits().concurrent_execs as usize)),
            tool,
            files: Mutex::new(BTreeMap::new()),
            closed: AtomicBool::new(false),
            closed_tx,
            closed_rx,
            ready: Mutex::new(HashSet::new()),
        }))
    }
}

struct ModelSession {
    sandbox: Arc<ModelInner>,
    id: SessionId,
    tool: Arc<Tool>,
    permits: Arc<Semaphore>,
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    closed: AtomicBool,
    closed_tx: watch::Sender<bool>,
    closed_rx: watch::Receiver<bool>,
    /// Other tools made ready in this session (their first call otherwise waits the
    /// sandbox's prepare delay, as a container being made).
    ready: Mutex<HashSet<ToolName>>,
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("id", &self.id)
            .field("tool", self.tool.name())
            .finish_non_exhaustive()
    }
}

impl ModelSession {
    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ensure_open(&self) -> Result<(), ProviderError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ProviderError::SessionClosed(self.id));
        }
        Ok(())
    }

    /// Marks the session closed, once: kills its calls and ends its work log.
    fn shut(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.closed_tx.send(true);
        let now = self.sandbox.clock.monotonic();
        if let Some(work) = self.sandbox.work().get_mut(&self.id) {
            work.closed = Some(now);
        }
        self.sandbox
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl ModelSession {
    /// Whether `tool` is used for the first time in this session (and now marked).
    fn first_use(&self, tool: &ToolName) -> bool {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tool.clone())
    }

    fn prepare_delay(&self) -> Duration {
        Duration::from_millis(self.sandbox.prepare_ms.load(Ordering::SeqCst))
    }

    /// A call of `tool` (the session's, or another tool the sandbox sells: the model
    /// runs it over the same workspace; calls of every tool share the session's
    /// concurrency slots), whose run first waits `making` (another tool's container).
    fn call_after(
        &self,
        exec: ExecId,
        tool: &Arc<Tool>,
        args: serde_json::Value,
        clock: Arc<dyn Clock>,
        making: Duration,
    ) -> ExecStream {
        let (tx, rx) = mpsc::channel(32);
        let call = Call::new(exec, tx, tool.limits().output_bytes);
        let run = if self.closed.load(Ordering::SeqCst) {
            Err("the session is closed".to_owned())
        } else {
            match tool.render_argv(&args) {
                Ok(_) => {
                    let mut run = self.sandbox.model.run(tool, &args);
                    run.duration += making;
                    Ok(run)
                }
                Err(e) => Err(e.0),
            }
        };
        let slot = Slot {
            permits: self.permits.clone(),
            closed: self.closed_rx.clone(),
            sandbox: self.sandbox.clone(),
            session: self.id,
            exec,
        };
        let limit = tool.limits().max_exec.to_duration();
        tokio::spawn(run_call(call, run, limit, slot, clock));
        ExecStream::new(rx)
    }
}

#[async_trait]
impl SandboxSession for ModelSession {
    fn exec(&self, exec: ExecId, args: serde_json::Value, clock: Arc<dyn Clock>) -> ExecStream {
        self.call_after(exec, &self.tool.clone(), args, clock, Duration::ZERO)
    }

    async fn prepare_tool(&self, tool: &ToolName) -> Result<(), String> {
        if !self.sandbox.tools.contains_key(tool) {
            return Err(format!("`{tool}` is not a tool this provider sells"));
        }
        if tool != self.tool.name() && self.first_use(tool) {
            tokio::time::sleep(self.prepare_delay()).await;
        }
        Ok(())
    }

    fn exec_tool(
        &self,
        exec: ExecId,
        tool: &ToolName,
        args: serde_json::Value,
        clock: Arc<dyn Clock>,
    ) -> ExecStream {
        match self.sandbox.tools.get(tool).cloned() {
            Some(tool) => {
                // Not made ready first: the call waits for it, inside its run.
                let making = self.first_use(tool.name()).then(|| self.prepare_delay());
                self.call_after(exec, &tool, args, clock, making.unwrap_or_default())
            }
            None => {
                let (tx, rx) = mpsc::channel(1);
                let detail = format!("`{tool}` is not a tool this provider sells");
                tokio::spawn(crate::exec::refuse(
                    exec,
                    orien_protocol::ExecOutcome::InvalidArguments { detail },
                    tx,
                ));
                ExecStream::new(rx)
            }
        }
    }

    async fn upload(&self, path: &WorkspacePath, bytes: &[u8]) -> Result<(), ProviderError> {
        self.ensure_open()?;
        let limit = self.tool.upload_bytes();
        if bytes.len() as u64 > limit {
            return Err(ProviderError::TooLarge {
                what: "the upload",
                size: bytes.len() as u64,
                limit,
            });
        }
        let quota = self.tool.limits().workspace_bytes;
        let mut files = self.files();
        let others: u64 = files
            .iter()
            .filter(|(p, _)| p.as_str() != path.as_str())
            .map(|(_, d)| d.len() as u64)
            .sum();
        if others.saturating_add(bytes.len() as u64) > quota {
            return Err(ProviderError::WorkspaceFull {
                quota,
                detail: "no space left in the modelled workspace".into(),
            });
        }
        files.insert(path.as_str().to_owned(), bytes.to_vec());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<WorkspaceEntry>, ProviderError> {
        self.ensure_open()?;
        Ok(self
            .files()
            .iter()
            .map(|(path, data)| WorkspaceEntry {
                path: path.clone(),
                kind: EntryKind::File,
                size: data.len() as u64,
            })
            .collect())
    }

    async fn download(&self, path: &WorkspacePath) -> Result<Vec<u8>, ProviderError> {
        self.ensure_open()?;
        self.files()
            .get(path.as_str())
            .cloned()
            .ok_or_else(|| ProviderError::NotFound(path.as_str().to_owned()))
    }

    fn upload_limit(&self) -> u64 {
        self.tool.upload_bytes()
    }

    fn workspace_quota(&self) -> u64 {
        self.tool.limits().workspace_bytes
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.shut();
        Ok(())
    }
}

impl Drop for ModelSession {
    fn drop(&mut self) {
        self.shut();
    }
}

/// What a call needs from its session while it runs.
struct Slot {
    permits: Arc<Semaphore>,
    closed: watch::Receiver<bool>,
    sandbox: Arc<ModelInner>,
    session: SessionId,
    exec: ExecId,
}

impl Slot {
    fn log(&self, update: impl FnOnce(&mut SessionWork)) {
        if let Some(work) = self.sandbox.work().get_mut(&self.session) {
            update(work);
        }
    }
}

async fn run_call(
    mut call: Call,
    run: Result<ModelRun, String>,
    limit: Duration,
    mut slot: Slot,
    clock: Arc<dyn Clock>,
) {
    let run = match run {
        Ok(run) => run,
        Err(detail) => {
            let outcome = ExecOutcome::InvalidArguments { detail };
            let exit = call.exit(outcome, None, Millis::ZERO);
            return call.send(ExecEvent::Exit(exit)).await;
        }
    };
    let Ok(_permit) = slot.permits.clone().acquire_owned().await else {
        return;
    };
    let started = clock.monotonic();
    let logged_start = slot.sandbox.clock.monotonic();
    let exec = slot.exec;
    slot.log(|work| {
        work.calls.push(CallWork {
            exec,
            started: logged_start,
            ended: None,
        });
    });
    let timed_out = !run.ignore_limit && run.duration > limit;
    let sleep = if timed_out { limit } else { run.duration };
    let killed = tokio::select! {
        () = tokio::time::sleep(sleep) => false,
        _ = slot.closed.wait_for(|closed| *closed) => true,
    };
    let wall = Millis::from_duration(clock.monotonic().saturating_sub(started));
    let logged_end = slot.sandbox.clock.monotonic();
    slot.log(|work| {
        if let Some(c) = work.calls.iter_mut().find(|c| c.exec == exec) {
            c.ended = Some(logged_end);
        }
    });
    if killed {
        let outcome = ExecOutcome::SandboxError {
            detail: "the session was closed during the call".into(),
        };
        let exit = call.exit(outcome, None, wall);
        return call.send(ExecEvent::Exit(exit)).await;
    }
    call.output(OutputStream::Stdout, &run.stdout).await;
    call.output(OutputStream::Stderr, &run.stderr).await;
    let (outcome, code) = if timed_out {
        (ExecOutcome::TimedOut, None)
    } else {
        (ExecOutcome::Exited, Some(run.exit_code))
    };
    let exit = call.exit(outcome, code, run.reported_wall.unwrap_or(wall));
    call.send(ExecEvent::Exit(exit)).await;
}
