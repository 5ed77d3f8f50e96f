//! [`Provider`]: the tool registry bound to a Docker engine, and the door to sessions.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use orien_protocol::{
    EvmAddress, ImageDigest, Millis, NodeId, Offer, SessionId, Timestamp, ToolName,
};
use tracing::{Instrument, info, info_span, warn};

use crate::config::{EngineConfig, WorkspaceOn};
use crate::container::{self, LABEL_NODE, LABEL_SESSION, SessionNames, WorkspaceMount};
use crate::disk::DiskWorkspaces;
use crate::engine::{Engine, EngineError, EngineInfo};
use crate::error::{MissingImage, ProviderError};
use crate::pool::WarmPool;
use crate::reaper::{ReapReport, Reaper};
use crate::session::SessionSandbox;
use crate::tool::Tool;

/// Longest a session waits for the warm sandbox a fill is making, before it makes its
/// own.
const WAIT_FOR_FILL: Duration = Duration::from_secs(10);

/// The provider side of ORIEN on one machine: the whitelisted tools, the engine that
/// runs them, and the sessions open right now.
///
/// Cloning is cheap and shares everything.
#[derive(Debug, Clone)]
pub struct Provider {
    pub(crate) inner: Arc<ProviderInner>,
    /// Warm sandboxes (held here, not in `inner`, which every sandbox points to).
    pool: Arc<WarmPool>,
}

#[derive(Debug)]
pub(crate) struct ProviderInner {
    pub(crate) engine: Engine,
    pub(crate) node: NodeId,
    pub(crate) tools: BTreeMap<ToolName, Arc<Tool>>,
    pub(crate) images: BTreeMap<ToolName, ImageDigest>,
    pub(crate) live: Mutex<HashSet<SessionId>>,
    pub(crate) cgroup_root: PathBuf,
    pub(crate) reap_interval: Duration,
    /// Where disk-backed workspaces are made, when `[engine] workspaces` is set.
    pub(crate) disks: Option<DiskWorkspaces>,
}

impl ProviderInner {
    pub(crate) fn live(&self) -> std::sync::MutexGuard<'_, HashSet<SessionId>> {
        // The set holds plain ids; a panic elsewhere cannot leave it inconsistent.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Provider {
    /// Connects to the engine (retrying with backoff), checks that every tool's image
    /// is present — reporting all missing ones with the command that provides each —
    /// and removes what earlier runs of this node left behind.
    pub async fn start(
        engine: &EngineConfig,
        tools: Vec<Tool>,
        node: NodeId,
    ) -> Result<Self, ProviderError> {
        let span = info_span!("provider", node = %node);
        async move {
            let engine_config = engine;
            let engine = Engine::connect(engine_config).await?;
            let mut missing = Vec::new();
            let mut images = BTreeMap::new();
            for tool in &tools {
                match crate::images::present(&engine, tool.image()).await? {
                    Some(digest) => {
                        if let Some(pinned) = tool.pinned_digest()
                            && pinned != digest
                        {
                            return Err(ProviderError::ImageMismatch {
                                tool: tool.name().clone(),
                                image: tool.image().to_owned(),
                                expected: pinned.to_string(),
                                found: digest.to_string(),
                            });
                        }
                        images.insert(tool.name().clone(), digest);
                    }
                    None => missing.push(MissingImage::new(tool.name().clone(), tool.image())),
                }
            }
            if !missing.is_empty() {
                return Err(ProviderError::MissingImages(missing));
            }
            if engine_config.workspaces.is_none()
                && let Some(tool) = tools.iter().find(|t| t.workspace_on() == WorkspaceOn::Disk)
            {
                return Err(ProviderError::NoWorkspacesDir(tool.name().clone()));
            }
            let provider = Provider {
                inner: Arc::new(ProviderInner {
                    engine,
                    node,
                    tools: tools
                        .into_iter()
                        .map(|t| (t.name().clone(), Arc::new(t)))
                        .collect(),
                    images,
                    live: Mutex::new(HashSet::new()),
                    cgroup_root: PathBuf::from("/sys/fs/cgroup"),
                    reap_interval: Duration::from_secs(engine_config.reap_interval_secs.max(1)),
                    disks: engine_config.workspaces.clone().map(DiskWorkspaces::new),
                }),
                pool: Arc::new(WarmPool::new(engine_config.warm_pool)),
            };
            let report = provider.reap().await?;
            info!(
                tools = provider.inner.tools.len(),
                reaped = report.containers,
                warm_pool = engine_config.warm_pool,
                "provider ready"
            );
            let names: Vec<ToolName> = provider.inner.tools.keys().cloned().collect();
            for tool in &names {
                provider.refill(tool);
            }
            Ok(provider)
        }
        .instrument(span)
        .await
    }

    /// This provider's node id (the `orien.node` label of its containers).
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// What the engine reported at start, including its security options.
    pub fn engine(&self) -> &EngineInfo {
        self.inner.engine.info()
    }

    /// The whitelisted tools, by name.
    pub fn tools(&self) -> impl Iterator<Item = &Tool> {
        self.inner.tools.values().map(|t| t.as_ref())
    }

    /// One whitelisted tool.
    pub fn tool(&self, name: &ToolName) -> Option<&Tool> {
        self.inner.tools.get(name).map(|t| t.as_ref())
    }

    /// The local image id of a tool's image, as checked at start.
    pub fn image_digest(&self, name: &ToolName) -> Option<ImageDigest> {
        self.inner.images.get(name).copied()
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
        let digest = *self.inner.images.get(name)?;
        Some(tool.offer(self.inner.node, digest, payout, issued_at, ttl))
    }

    /// Sessions open right now (not the warm sandboxes waiting for one).
    pub fn live_sessions(&self) -> Vec<SessionId> {
        let live: Vec<SessionId> = self.inner.live().iter().copied().collect();
        live.into_iter().filter(|id| !self.pool.holds(id)).collect()
    }

    /// Opens the session `session`: creates its workspace volume and hardened
    /// container and starts it. The session is live (safe from the reaper) from the first
    /// step, and everything is removed again if a later step fails.
    pub async fn open_session(
        &self,
        session: SessionId,
        tool: &ToolName,
    ) -> Result<SessionSandbox, ProviderError> {
        let tool = self.known(tool)?;
        make_sandbox(&self.inner, session, tool).await
    }

    /// Opens a session of `tool` under an id of the provider's choosing (its
    /// [`SessionSandbox::id`]): a warm sandbox's, made ahead of the session, when one is
    /// ready, else a fresh one as [`open_session`](Self::open_session) makes. The tool's
    /// pool refills behind it.
    pub async fn open(&self, tool: &ToolName) -> Result<SessionSandbox, ProviderError> {
        let tool = self.known(tool)?;
        let warm = self.pool.take_or_wait(tool.name(), WAIT_FOR_FILL).await;
        self.refill(tool.name());
        match warm {
            Some(sandbox) => {
                info!(session = %sandbox.id(), tool = %tool.name(), "session takes a warm sandbox");
                Ok(sandbox)
            }
            None => make_sandbox(&self.inner, SessionId::random(), tool).await,
        }
    }

    fn known(&self, tool: &ToolName) -> Result<Arc<Tool>, ProviderError> {
        self.inner
            .tools
            .get(tool)
            .cloned()
            .ok_or_else(|| ProviderError::UnknownTool(tool.clone()))
    }

    /// Starts filling `tool`'s warm pool in the background, unless it is full, off or
    /// filling already.
    fn refill(&self, tool: &ToolName) {
        let (inner, pool) = (self.inner.clone(), self.pool.clone());
        let Some(tool) = inner.tools.get(tool).cloned() else {
            return;
        };
        let name = tool.name().clone();
        self.pool.fill_with(&name, move || {
            tokio::spawn(async move {
                while pool.wanted(tool.name()).is_some_and(|n| n > 0) {
                    let id = pool.making();
                    match make_sandbox(&inner, id, tool.clone()).await {
                        Ok(sandbox) => {
                            if let Err(sandbox) = pool.keep(sandbox) {
                                let _ = sandbox.close().await; // Closed meanwhile.
                            }
                        }
                        Err(e) => {
                            pool.failed(id);
                            // The next session opens cold, and refills again.
                            warn!(tool = %tool.name(), error = %e, "cannot warm a sandbox");
                            break;
                        }
                    }
                }
                pool.fill_ended(tool.name());
            })
        });
    }

    /// Warm sandboxes ready now, by tool.
    pub fn warm_sandboxes(&self) -> std::collections::HashMap<ToolName, usize> {
        self.pool.ready()
    }

    /// Stops keeping warm sandboxes: waits for the fills under way, then removes every
    /// warm sandbox. Sessions keep theirs. Call it before the node stops (what it
    /// misses, the next start's reap removes).
    pub async fn shutdown(&self) {
        let (fills, ready) = self.pool.close();
        for fill in fills {
            let _ = fill.await;
        }
        // A fill that finished after the close handed its sandbox back and removed it.
        for sandbox in ready {
            let _ = sandbox.close().await;
        }
    }
}

impl Provider {
    /// Removes every container and workspace volume labelled with this node whose
    /// session is not live. Run at start and by [`Provider::spawn_reaper`].
    pub async fn reap(&self) -> Result<ReapReport, EngineError> {
        let inner = &self.inner;
        let docker = inner.engine.docker();
        let node_filter = format!("{LABEL_NODE}={}", inner.node);
        let filters = std::collections::HashMap::from([("label", vec![node_filter.as_str()])]);
        let containers = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| inner.engine.error("list containers", e))?;
        let mut report = ReapReport::default();
        for c in containers {
            let session = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SESSION))
                .and_then(|s| s.parse::<SessionId>().ok());
            if session.is_some_and(|s| inner.live().contains(&s)) {
                continue;
            }
            let Some(id) = c.id else { continue };
            match docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await
            {
                Ok(()) => {
                    warn!(container = %id, session = ?session, "reaped a container of no live session");
                    report.containers += 1;
                }
                Err(e) if EngineError::is_not_found(&e) => {}
                Err(e) => return Err(inner.engine.error("remove container", e)),
            }
        }
        let volumes = docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| inner.engine.error("list volumes", e))?;
        for v in volumes.volumes.unwrap_or_default() {
            let session = v
                .labels
                .get(LABEL_SESSION)
                .and_then(|s| s.parse::<SessionId>().ok());
            if session.is_some_and(|s| inner.live().contains(&s)) {
                continue;
            }
            match docker
                .remove_volume(
                    &v.name,
                    Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                )
                .await
            {
                Ok(()) => report.volumes += 1,
                // 404: gone already; 409: still in use by a container being removed.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => {}
                Err(e) => return Err(inner.engine.error("remove volume", e)),
            }
        }
        if let Some(disks) = &inner.disks {
            let prefix = SessionNames::workspace_prefix(&inner.node);
            for name in disks.names(&prefix).await {
                let session = name
                    .strip_prefix(&prefix)
                    .and_then(|s| s.parse::<SessionId>().ok());
                if session.is_some_and(|s| inner.live().contains(&s)) {
                    continue;
                }
                disks.remove(&name).await;
                warn!(workspace = %name, "reaped a disk-backed workspace of no live session");
                report.disks += 1;
            }
        }
        Ok(report)
    }

    /// Starts the periodic reaper (every `[engine] reap_interval_secs`). It stops when
    /// the returned handle is dropped; engine failures are logged and retried at the
    /// next tick, never fatal.
    pub fn spawn_reaper(&self) -> Reaper {
        Reaper::spawn(self.clone(), self.inner.reap_interval)
    }
}

/// Creates, starts and probes a sandbox of `tool` under `id`: live from the first step,
/// removed again if a step fails.
async fn make_sandbox(
    inner: &Arc<ProviderInner>,
    id: SessionId,
    tool: Arc<Tool>,
) -> Result<SessionSandbox, ProviderError> {
    if !inner.live().insert(id) {
        return Err(ProviderError::SessionExists(id));
    }
    let span = info_span!("session", session = %id, tool = %tool.name());
    let result = create_sandbox(inner, id, &tool)
        .instrument(span.clone())
        .await;
    match result {
        Ok(workspace) => SessionSandbox::attach(inner.clone(), id, tool, workspace, span).await,
        Err(e) => {
            inner.live().remove(&id);
            remove_session_objects(inner, id).instrument(span).await;
            Err(e)
        }
    }
}

/// Makes the session's workspace (as its tool says: a tmpfs volume, or a filesystem
/// of its own on disk) and its first container; returns where the workspace is.
async fn create_sandbox(
    inner: &ProviderInner,
    session: SessionId,
    tool: &Tool,
) -> Result<WorkspaceMount, ProviderError> {
    let engine = &inner.engine;
    let docker = engine.docker();
    let names = SessionNames::new(&inner.node, &session);
    let workspace = match tool.workspace_on() {
        WorkspaceOn::Memory => {
            let labels = container::labels(&inner.node, &session, tool);
            docker
                .create_volume(container::workspace_volume(&names.volume, tool, labels))
                .await
                .map_err(|e| engine.error("create volume", e))?;
            WorkspaceMount::Volume(names.volume.clone())
        }
        WorkspaceOn::Disk => {
            let disks = inner
                .disks
                .as_ref()
                .ok_or_else(|| ProviderError::NoWorkspacesDir(tool.name().clone()))?;
            let bytes = tool.limits().workspace_bytes;
            WorkspaceMount::Disk(disks.create(&names.volume, bytes).await?)
        }
    };
    create_tool_container(inner, session, tool, &names, &workspace).await?;
    if let WorkspaceMount::Disk(disk) = &workspace {
        crate::workspace::check_disk_mount(inner, &names.container, &disk.files).await?;
    }
    info!(container = %names.container, "session sandbox started");
    Ok(workspace)
}

/// Makes and starts the container of `tool` in a session (its first, or another tool's
/// over the session's workspace), mounting the session's workspace volume; removed
/// again if it cannot be started.
pub(crate) async fn create_tool_container(
    inner: &ProviderInner,
    session: SessionId,
    tool: &Tool,
    names: &SessionNames,
    workspace: &WorkspaceMount,
) -> Result<(), ProviderError> {
    let engine = &inner.engine;
    let docker = engine.docker();
    let labels = container::labels(&inner.node, &session, tool);
    let options = CreateContainerOptionsBuilder::default()
        .name(&names.container)
        .build();
    docker
        .create_container(
            Some(options),
            container::session_container(workspace, tool, labels),
        )
        .await
        .map_err(|e| engine.error("create container", e))?;
    if let Err(e) = docker.start_container(&names.container, None).await {
        let _ = docker
            .remove_container(
                &names.container,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
        return Err(engine.error("start container", e).into());
    }
    Ok(())
}

/// Removes a session's containers (of every tool it ran) and its volume, tolerating
/// their absence. Best effort: what fails here is left to the reaper.
pub(crate) async fn remove_session_objects(inner: &ProviderInner, session: SessionId) {
    let docker = inner.engine.docker();
    let names = SessionNames::new(&inner.node, &session);
    let (node, id) = (
        format!("{LABEL_NODE}={}", inner.node),
        format!("{LABEL_SESSION}={session}"),
    );
    let filters = std::collections::HashMap::from([("label", vec![node.as_str(), id.as_str()])]);
    let containers: Vec<String> = match docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
    {
        Ok(listed) => listed.into_iter().filter_map(|c| c.id).collect(),
        Err(e) => {
            warn!(error = %e, "could not list the session's containers; removing the first by name");
            vec![names.container.clone()]
        }
    };
    for container in &containers {
        match docker
            .remove_container(
                container,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if EngineError::is_not_found(&e) => {}
            Err(e) => {
                warn!(error = %e, %container, "could not remove a session container; the reaper will")
            }
        }
    }
    match docker
        .remove_volume(
            &names.volume,
            Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if EngineError::is_not_found(&e) => {}
        Err(e) => warn!(error = %e, "could not remove the session workspace; the reaper will"),
    }
    if let Some(disks) = &inner.disks {
        disks.remove(&names.volume).await;
    }
}

#[async_trait::async_trait]
impl crate::sandbox::Sandbox for Provider {
    fn tool_names(&self) -> Vec<ToolName> {
        self.tools().map(|t| t.name().clone()).collect()
    }

    fn load(&self) -> crate::sandbox::SandboxLoad {
        let mut sessions = self.live_sessions();
        sessions.sort();
        let mut warm: Vec<(ToolName, usize)> = self.pool.ready().into_iter().collect();
        warm.sort();
        crate::sandbox::SandboxLoad { sessions, warm }
    }

    fn offer(
        &self,
        tool: &ToolName,
        payout: EvmAddress,
        issued_at: Timestamp,
        ttl: Millis,
    ) -> Option<Offer> {
        Provider::offer(self, tool, payout, issued_at, ttl)
    }

    async fn open_session(
        &self,
        session: SessionId,
        tool: &ToolName,
    ) -> Result<Box<dyn crate::sandbox::SandboxSession>, ProviderError> {
        let sandbox = Provider::open_session(self, session, tool).await?;
        Ok(Box::new(sandbox))
    }

    async fn open(
        &self,
        tool: &ToolName,
    ) -> Result<(SessionId, Box<dyn crate::sandbox::SandboxSession>), ProviderError> {
        let sandbox = Provider::open(self, tool).await?;
        Ok((sandbox.id(), Box::new(sandbox)))
    }
}
