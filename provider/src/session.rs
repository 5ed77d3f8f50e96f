//! [`SessionSandbox`]: one session's warm container and workspace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use std::time::Duration;

use bollard::query_parameters::{KillContainerOptionsBuilder, WaitContainerOptionsBuilder};
use futures_util::StreamExt;
use orien_protocol::{Clock, ExecId, ExecOutcome, SessionId, ToolName};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tracing::{Instrument, Span, debug, info, warn};

use crate::cgroup::Cgroup;
use crate::container::{SessionNames, WorkspaceMount};
use crate::engine::EngineError;
use crate::error::ProviderError;
use crate::exec::{self, ExecStream};
use crate::host_files;
use crate::provider::{ProviderInner, create_tool_container, remove_session_objects};
use crate::tool::Tool;
use crate::workspace::{self, WorkspaceEntry};
use crate::workspace_path::WorkspacePath;

/// Events buffered per call before the call waits for its reader; bounds memory.
const EVENT_BUFFER: usize = 32;

/// One open session: its workspace at `/workspace` and a warm, hardened container per
/// tool it runs, each mounting that workspace. The container of the tool the session
/// opened on is made with it (or taken warm); another whitelisted tool's is made on the
/// session's first call of it. Each call is an exec in its tool's container.
///
/// Close it with [`SessionSandbox::close`]. Dropping it without closing marks the
/// session dead, so the reaper removes what is left.
#[derive(Debug)]
pub struct SessionSandbox {
    /// The container of the tool the session opened on; workspace files go through it.
    pub(crate) inner: Arc<Session>,
    /// The containers of the other tools it ran.
    others: Arc<OtherTools>,
}

/// The containers of a session's other tools, by tool, made on first use.
#[derive(Debug, Default)]
struct OtherTools {
    containers: Mutex<std::collections::HashMap<ToolName, Arc<Session>>>,
}

impl OtherTools {
    /// The container of `tool` in the session whose first container is `first`, made
    /// and started now if the session has none yet. `Err` is the exit of a call that
    /// cannot run.
    async fn container(
        &self,
        first: &Arc<Session>,
        tool: &ToolName,
    ) -> Result<Arc<Session>, ExecOutcome> {
        let Some(known) = first.provider.tools.get(tool).cloned() else {
            return Err(ExecOutcome::InvalidArguments {
                detail: format!("`{tool}` is not a tool this provider sells"),
            });
        };
        let closed = || ExecOutcome::SandboxError {
            detail: "the session is closed".to_owned(),
        };
        first.ensure_open().map_err(|_| closed())?;
        let mut containers = self.containers.lock().await;
        if let Some(session) = containers.get(tool) {
            return Ok(session.clone());
        }
        let names = SessionNames::for_tool(&first.provider.node, &first.id, tool);
        let span = tracing::info_span!(parent: &first.span, "tool", tool = %tool);
        let made = async {
            create_tool_container(&first.provider, first.id, &known, &names, &first.workspace)
                .await?;
            Session::attach(
                first.provider.clone(),
                first.id,
                known,
                names,
                first.workspace.clone(),
                span.clone(),
            )
            .await
        }
        .instrument(span.clone())
        .await;
        let session = match made {
            Ok(session) => session,
            Err(e) => {
                warn!(parent: &span, error = %e, "cannot make the tool's container");
                return Err(ExecOutcome::SandboxError {
                    detail: format!("the container of `{tool}` could not be made: {e}"),
                });
            }
        };
        if first.closed.load(Ordering::SeqCst) {
            // Closed while the container was made: it goes with the session's objects.
            session.closed.store(true, Ordering::SeqCst);
            remove_session_objects(&first.provider, first.id).await;
            return Err(closed());
        }
        info!(parent: &span, container = %session.names.container, "tool container started");
        containers.insert(tool.clone(), session.clone());
        Ok(session)
    }
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) provider: Arc<ProviderInner>,
    pub(crate) id: SessionId,
    pub(crate) tool: Arc<Tool>,
    pub(crate) names: SessionNames,
    /// Where the session's `/workspace` is (every tool's container mounts it).
    pub(crate) workspace: WorkspaceMount,
    pub(crate) span: Span,
    /// Calls that may still start (`concurrent_execs`).
    pub(crate) permits: Semaphore,
    /// Calls running now.
    pub(crate) running: AtomicUsize,
    /// Bumped by every restart of the container; a call that sees it change was killed.
    pub(crate) generation: AtomicU64,
    /// The container's cgroup and its process count when idle; refreshed at restart.
    pub(crate) state: Mutex<ContainerState>,
    pub(crate) closed: AtomicBool,
}

#[derive(Debug, Clone)]
pub(crate) struct ContainerState {
    pub(crate) cgroup: Option<Cgroup>,
    /// Host pids of the container's init and idle command.
    pub(crate) idle: Option<Vec<i32>>,
}

impl Session {
    /// Ends every process of the session's calls — everything in the container but its
    /// init and idle command — and keeps `/tmp` and the workspace. The container's
    /// cgroup is frozen while the processes are listed and sent SIGKILL, so none can
    /// fork away. Where the cgroup files are not writable (no root, a remote engine),
    /// the container is restarted instead, which also empties the tmpfs workspace.
    pub(crate) async fn kill_calls(
        &self,
        why: &str,
        exec: Option<&str>,
    ) -> Result<(), EngineError> {
        {
            let state = self.state.lock().await;
            self.generation.fetch_add(1, Ordering::SeqCst);
            if let (Some(cgroup), Some(idle)) = (&state.cgroup, &state.idle)
                && kill_all_but(cgroup, idle).await
            {
                warn!(reason = why, "killed the processes of the session's calls");
                return Ok(());
            }
        }
        self.restart(why, exec).await
    }

    /// Restarts the container: every process in it is killed (SIGKILL), `/tmp` is
    /// emptied, the workspace volume stays. `exec` is the call that caused it: the
    /// container is started again only once the engine has finished that call, as
    /// an exec started while the engine still tears the old one down can fail.
    pub(crate) async fn restart(&self, why: &str, exec: Option<&str>) -> Result<(), EngineError> {
        let mut state = self.state.lock().await;
        self.generation.fetch_add(1, Ordering::SeqCst);
        let engine = &self.provider.engine;
        let docker = engine.docker();
        let container = self.names.container.as_str();
        debug!(reason = why, "killing the container");
        match docker
            .kill_container(
                container,
                Some(
                    KillContainerOptionsBuilder::default()
                        .signal("SIGKILL")
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => {}
            // 409: not running any more; nothing to kill.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(engine.error("kill container", e)),
        }
        // The first item arrives when the container has stopped (its exit status, which
        // bollard reports as an error for SIGKILL's 137: either way it has stopped).
        let stopped = docker
            .wait_container(
                container,
                Some(
                    WaitContainerOptionsBuilder::default()
                        .condition("not-running")
                        .build(),
                ),
            )
            .next()
            .await;
        debug!(?stopped, "container stopped");
        if let Some(exec) = exec {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut pause = Duration::from_millis(2);
            while tokio::time::Instant::now() < give_up {
                match docker.inspect_exec(exec).await {
                    Ok(i) if i.running == Some(true) => {}
                    _ => break,
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
        docker
            .start_container(container, None)
            .await
            .map_err(|e| engine.error("start container", e))?;
        *state = self.probe().await?;
        warn!(
            reason = why,
            "session container restarted; its tmpfs workspace and /tmp were emptied"
        );
        Ok(())
    }

    /// Finds the container's cgroup and idle process count.
    pub(crate) async fn probe(&self) -> Result<ContainerState, EngineError> {
        let engine = &self.provider.engine;
        let inspect = engine
            .docker()
            .inspect_container(&self.names.container, None)
            .await
            .map_err(|e| engine.error("inspect container", e))?;
        let pid = inspect
            .state
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0);
        let cgroup = pid.and_then(|pid| Cgroup::of_process(pid, &self.provider.cgroup_root));
        if cgroup.is_none() {
            warn!(
                "container cgroup not readable on this host; CPU and memory come from the engine's stats"
            );
        }
        // The idle set is the container's init and the idle command it starts; the
        // command may not have been forked yet right after the start, so wait for both.
        let mut idle = None;
        if let Some(cgroup) = &cgroup {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
            let mut pause = Duration::from_millis(1);
            loop {
                match cgroup.processes() {
                    Some(procs) if procs.len() >= 2 => {
                        idle = Some(procs);
                        break;
                    }
                    Some(_) if tokio::time::Instant::now() < give_up => {}
                    _ => {
                        warn!(
                            "the idle processes of the container were not found; timeouts restart it"
                        );
                        break;
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
        Ok(ContainerState { cgroup, idle })
    }

    pub(crate) fn ensure_open(&self) -> Result<(), ProviderError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ProviderError::SessionClosed(self.id));
        }
        Ok(())
    }
}

/// SIGKILLs every process in `cgroup` but `keep`, under the freezer; true when only
/// `keep` is left.
async fn kill_all_but(cgroup: &Cgroup, keep: &[i32]) -> bool {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for _ in 0..5 {
        if !cgroup.set_frozen(true) {
            return false;
        }
        let victims: Vec<i32> = cgroup
            .processes()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !keep.contains(p))
            .collect();
        for pid in &victims {
            // ESRCH (already gone) is fine; anything else shows up in the re-check.
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        // Killed tasks die as they thaw; they cannot run user code before.
        if !cgroup.set_frozen(false) {
            return false;
        }
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut pause = Duration::from_millis(1);
        loop {
            match cgroup.processes() {
                Some(now) if now.iter().all(|p| keep.contains(p)) => return true,
                Some(_) => {}
                None => return false,
            }
            if tokio::time::Instant::now() > give_up {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
    false
}

impl Session {
    /// Attaches to a started container of the session: finds its cgroup and idle
    /// processes.
    pub(crate) async fn attach(
        provider: Arc<ProviderInner>,
        id: SessionId,
        tool: Arc<Tool>,
        names: SessionNames,
        workspace: WorkspaceMount,
        span: Span,
    ) -> Result<Arc<Self>, ProviderError> {
        let permits = Semaphore::new(tool.limits().concurrent_execs as usize);
        let session = Arc::new(Session {
            provider,
            id,
            tool,
            names,
            workspace,
            span,
            permits,
            running: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            state: Mutex::new(ContainerState {
                cgroup: None,
                idle: None,
            }),
            closed: AtomicBool::new(false),
        });
        let state = session
            .probe()
            .instrument(session.span.clone())
            .await
            .map_err(ProviderError::from)?;
        *session.state.lock().await = state;
        Ok(session)
    }
}

impl SessionSandbox {
    pub(crate) async fn attach(
        provider: Arc<ProviderInner>,
        id: SessionId,
        tool: Arc<Tool>,
        workspace: WorkspaceMount,
        span: Span,
    ) -> Result<Self, ProviderError> {
        let names = SessionNames::new(&provider.node, &id);
        match Session::attach(provider.clone(), id, tool, names, workspace, span.clone()).await {
            Ok(inner) => Ok(Self {
                inner,
                others: Arc::default(),
            }),
            Err(e) => {
                remove_session_objects(&provider, id).instrument(span).await;
                provider.live().remove(&id);
                Err(e)
            }
        }
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.inner.id
    }

    /// The tool this session runs.
    pub fn tool(&self) -> &Tool {
        &self.inner.tool
    }

    /// The session container's name (`docker inspect <name>`).
    pub fn container_name(&self) -> &str {
        &self.inner.names.container
    }

    /// The session's workspace volume name.
    pub fn volume_name(&self) -> &str {
        &self.inner.names.volume
    }

    /// Starts a call of the session's tool with JSON `args`. Returns at once; the stream
    /// yields the call's output chunks, then exactly one `ExecEvent::Exit`. Every
    /// failure — invalid arguments, timeout, OOM, an engine failure — is reported in
    /// that exit, never as an error or a panic. Wall time is read from `clock`; the
    /// timeout is enforced on the runtime's real clock. Calls beyond
    /// `concurrent_execs` wait for a slot.
    pub fn exec(&self, exec: ExecId, args: serde_json::Value, clock: Arc<dyn Clock>) -> ExecStream {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let session = self.inner.clone();
        let span = tracing::info_span!(parent: &self.inner.span, "exec", session = %self.inner.id, exec = %exec);
        tokio::spawn(exec::run(session, exec, args, clock, tx).instrument(span));
        ExecStream::new(rx)
    }

    /// Starts a call of `tool`, any tool this provider sells, over the session's
    /// workspace: in the tool's own container, made on the session's first call of it
    /// (with every hardening setting of the first). Otherwise as [`exec`](Self::exec);
    /// a tool not sold here ends the call as invalid arguments, a container that cannot
    /// be made as a sandbox error.
    pub fn exec_tool(
        &self,
        exec: ExecId,
        tool: &ToolName,
        args: serde_json::Value,
        clock: Arc<dyn Clock>,
    ) -> ExecStream {
        if tool == self.inner.tool.name() {
            return self.exec(exec, args, clock);
        }
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let (first, others, tool) = (self.inner.clone(), self.others.clone(), tool.clone());
        let span = tracing::info_span!(parent: &self.inner.span, "exec", session = %self.inner.id, exec = %exec, tool = %tool);
        tokio::spawn(
            async move {
                match others.container(&first, &tool).await {
                    Ok(session) => exec::run(session, exec, args, clock, tx).await,
                    Err(outcome) => exec::refuse(exec, outcome, tx).await,
                }
            }
            .instrument(span),
        );
        ExecStream::new(rx)
    }

    /// Makes and starts `tool`'s container in this session now, if it has none yet (a
    /// call of it then starts at once). `Err` says why it cannot be made.
    pub async fn prepare_tool(&self, tool: &ToolName) -> Result<(), String> {
        if tool == self.inner.tool.name() {
            return Ok(());
        }
        match self.others.container(&self.inner, tool).await {
            Ok(_) => Ok(()),
            Err(
                ExecOutcome::InvalidArguments { detail } | ExecOutcome::SandboxError { detail },
            ) => Err(detail),
            Err(other) => Err(format!("{other:?}")),
        }
    }

    /// The names of the containers of the other tools the session ran.
    pub async fn tool_containers(&self) -> Vec<String> {
        self.others
            .containers
            .lock()
            .await
            .values()
            .map(|s| s.names.container.clone())
            .collect()
    }

    /// Writes one file into the workspace (parent directories are created), replacing
    /// any file of that name. Refused over the tool's upload limit or when the
    /// workspace quota is full.
    pub async fn upload(&self, path: &WorkspacePath, bytes: &[u8]) -> Result<(), ProviderError> {
        self.inner.ensure_open()?;
        workspace::upload_file(&self.inner, path, bytes)
            .instrument(self.inner.span.clone())
            .await
    }

    /// Unpacks a tar archive into the workspace. Every entry must be a regular file or a
    /// directory with a valid [`WorkspacePath`]; symlinks, hard links, devices and
    /// fifos refuse the whole archive. Ownership and modes are reset.
    pub async fn upload_archive(&self, tar: &[u8]) -> Result<(), ProviderError> {
        self.inner.ensure_open()?;
        workspace::upload_archive(&self.inner, tar)
            .instrument(self.inner.span.clone())
            .await
    }

    /// Lists the workspace, depth first.
    pub async fn list(&self) -> Result<Vec<WorkspaceEntry>, ProviderError> {
        self.inner.ensure_open()?;
        workspace::list(&self.inner)
            .instrument(self.inner.span.clone())
            .await
    }

    /// Reads one regular file from the workspace.
    pub async fn download(&self, path: &WorkspacePath) -> Result<Vec<u8>, ProviderError> {
        self.inner.ensure_open()?;
        workspace::download(&self.inner, path)
            .instrument(self.inner.span.clone())
            .await
    }

    /// Removes the container and its workspace. Calls still running are killed.
    pub async fn close(self) -> Result<(), ProviderError> {
        self.close_inner().await;
        Ok(())
    }

    async fn close_inner(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for other in self.others.containers.lock().await.values() {
            other.closed.store(true, Ordering::SeqCst);
        }
        let span = self.inner.span.clone();
        async {
            remove_session_objects(&self.inner.provider, self.inner.id).await;
            self.inner.provider.live().remove(&self.inner.id);
            info!("session closed");
        }
        .instrument(span)
        .await;
    }
}

#[async_trait::async_trait]
impl crate::sandbox::SandboxSession for SessionSandbox {
    fn exec(&self, exec: ExecId, args: serde_json::Value, clock: Arc<dyn Clock>) -> ExecStream {
        SessionSandbox::exec(self, exec, args, clock)
    }

    fn exec_tool(
        &self,
        exec: ExecId,
        tool: &ToolName,
        args: serde_json::Value,
        clock: Arc<dyn Clock>,
    ) -> ExecStream {
        SessionSandbox::exec_tool(self, exec, tool, args, clock)
    }

    async fn prepare_tool(&self, tool: &ToolName) -> Result<(), String> {
        SessionSandbox::prepare_tool(self, tool).await
    }

    async fn upload(&self, path: &WorkspacePath, bytes: &[u8]) -> Result<(), ProviderError> {
        SessionSandbox::upload(self, path, bytes).await
    }

    async fn list(&self) -> Result<Vec<WorkspaceEntry>, ProviderError> {
        SessionSandbox::list(self).await
    }

    async fn download(&self, path: &WorkspacePath) -> Result<Vec<u8>, ProviderError> {
        SessionSandbox::download(self, path).await
    }

    fn upload_limit(&self) -> u64 {
        self.inner.tool.upload_bytes()
    }

    fn workspace_quota(&self) -> u64 {
        self.inner.tool.limits().workspace_bytes
    }

    fn upload_staging(&self) -> Option<std::path::PathBuf> {
        match &self.inner.workspace {
            WorkspaceMount::Disk(disk) => Some(disk.uploads.clone()),
            WorkspaceMount::Volume(_) => None,
        }
    }

    async fn upload_staged(
        &self,
        path: &WorkspacePath,
        staged: &std::path::Path,
    ) -> Result<(), ProviderError> {
        self.inner.ensure_open()?;
        if let WorkspaceMount::Disk(disk) = &self.inner.workspace {
            // On the provider's side of the mount: no engine copy in between.
            let limit = self.inner.tool.upload_bytes();
            let size = tokio::fs::metadata(staged)
                .await
                .map_err(ProviderError::HostDisk)?
                .len();
            if size > limit {
                return Err(ProviderError::TooLarge {
                    what: "the upload",
                    size,
                    limit,
                });
            }
            let quota = self.inner.tool.limits().workspace_bytes;
            let (root, path, staged) = (disk.files.clone(), path.clone(), staged.to_owned());
            if staged.parent() == Some(disk.uploads.as_path()) {
                // Staged on the workspace's own filesystem: renamed in, no copy.
                return blocking(move || host_files::move_into(&root, &path, &staged, quota)).await;
            }
            return blocking(move || host_files::write_file(&root, &path, &staged, quota)).await;
        }
        workspace::upload_staged(&self.inner, path, staged)
            .instrument(self.inner.span.clone())
            .await
    }

    async fn upload_archive_staged(
        &self,
        under: Option<&WorkspacePath>,
        staged: &std::path::Path,
    ) -> Result<(), ProviderError> {
        self.inner.ensure_open()?;
        workspace::upload_archive_staged(&self.inner, under, staged)
            .instrument(self.inner.span.clone())
            .await
    }

    async fn download_archive_to(
        &self,
        dir: Option<&WorkspacePath>,
        dest: &std::path::Path,
    ) -> Result<(u64, orien_protocol::ContentHash), ProviderError> {
        self.inner.ensure_open()?;
        workspace::download_archive_to(&self.inner, dir, dest)
            .instrument(self.inner.span.clone())
            .await
    }

    async fn download_to(
        &self,
        path: &WorkspacePath,
        dest: &std::path::Path,
    ) -> Result<(u64, orien_protocol::ContentHash), ProviderError> {
        self.inner.ensure_open()?;
        if let WorkspaceMount::Disk(disk) = &self.inner.workspace {
            let limit = self.inner.tool.limits().workspace_bytes;
            let (root, path, dest) = (disk.files.clone(), path.clone(), dest.to_owned());
            return blocking(move || host_files::read_file(&root, &path, &dest, limit)).await;
        }
        workspace::download_to(&self.inner, path, dest)
            .instrument(self.inner.span.clone())
            .await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.close_inner().await;
        Ok(())
    }
}

/// Runs blocking file work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ProviderError::HostDisk(std::io::Error::other(e.to_string())))?
}

impl Drop for SessionSandbox {
    fn drop(&mut self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Not closed: the session is dead now. Remove it in the background when a
        // runtime is at hand; otherwise the reaper will.
        self.inner.provider.live().remove(&self.inner.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let provider = self.inner.provider.clone();
            let id = self.inner.id;
            handle.spawn(async move { remove_session_objects(&provider, id).await });
        }
    }
}
