//! What a node needs from a sandbox, as traits: [`Sandbox`] opens sessions of whitelisted
//! tools, [`SandboxSession`] runs calls and moves workspace files.
//!
//! [`crate::Provider`] (hardened Docker containers) is the implementation nodes run.
//! [`crate::model::ModelSandbox`] is a model of tool run times with an in-memory
//! workspace, for tests and simulations where the container is beside the point.

use std::sync::Arc;

use async_trait::async_trait;
use orien_protocol::{
    Clock, ContentHash, EvmAddress, ExecId, Millis, Offer, SessionId, Timestamp, ToolName,
};

use crate::error::ProviderError;
use crate::exec::ExecStream;
use crate::workspace::WorkspaceEntry;
use crate::workspace_path::WorkspacePath;

/// What a sandbox runs now: its sessions' sandboxes, and the warm ones waiting for a
/// session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxLoad {
    /// Sessions whose sandbox is running (a container each, and one per other tool a
    /// session called).
    pub sessions: Vec<orien_protocol::SessionId>,
    /// Sandboxes started ahead of sessions, ready now, by tool.
    pub warm: Vec<(ToolName, usize)>,
}

/// Opens sandboxed sessions of whitelisted tools.
#[async_trait]
pub trait Sandbox: Send + Sync + std::fmt::Debug + 'static {
    /// The whitelisted tools' names.
    fn tool_names(&self) -> Vec<ToolName>;

    /// What runs now.
    fn load(&self) -> SandboxLoad;

    /// The (unsigned) offer of `tool`, paid to `payout`, valid for `ttl` from
    /// `issued_at`; `None` when the tool is not sold here or its image is missing.
    fn offer(
        &self,
        tool: &ToolName,
        payout: EvmAddress,
        issued_at: Timestamp,
        ttl: Millis,
    ) -> Option<Offer>;

    /// Opens a session of `tool`: its workspace and whatever runs its calls. Everything
    /// is removed again if a step fails.
    async fn open_session(
        &self,
        session: SessionId,
        tool: &ToolName,
    ) -> Result<Box<dyn SandboxSession>, ProviderError>;

    /// Opens a session of `tool` under an id the sandbox chooses, which becomes the
    /// session's (a warm sandbox made ahead of the session already carries its own).
    async fn open(
        &self,
        tool: &ToolName,
    ) -> Result<(SessionId, Box<dyn SandboxSession>), ProviderError> {
        let session = SessionId::random();
        Ok((session, self.open_session(session, tool).await?))
    }
}

/// One open session: its workspace and the calls of the tools it runs.
#[async_trait]
pub trait SandboxSession: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a call with JSON `args`. Returns at once; the stream yields the call's
    /// output chunks, then exactly one `ExecEvent::Exit`. Every failure is reported in
    /// that exit, never as an error or a panic.
    fn exec(&self, exec: ExecId, args: serde_json::Value, clock: Arc<dyn Clock>) -> ExecStream;

    /// Starts a call of `tool` (any tool the sandbox sells) over the session's workspace;
    /// like [`exec`](Self::exec) otherwise. A tool not sold here ends the call as
    /// invalid arguments.
    fn exec_tool(
        &self,
        exec: ExecId,
        tool: &ToolName,
        args: serde_json::Value,
        clock: Arc<dyn Clock>,
    ) -> ExecStream;

    /// Makes ready what runs `tool`'s calls in this session (another tool's container),
    /// so a call's metered time does not include it. `Err` says why it cannot be.
    async fn prepare_tool(&self, tool: &ToolName) -> Result<(), String> {
        let _ = tool;
        Ok(())
    }

    /// Writes one file into the workspace, replacing any file of that name.
    async fn upload(&self, path: &WorkspacePath, bytes: &[u8]) -> Result<(), ProviderError>;

    /// Lists the workspace, depth first.
    async fn list(&self) -> Result<Vec<WorkspaceEntry>, ProviderError>;

    /// Reads one regular file from the workspace.
    async fn download(&self, path: &WorkspacePath) -> Result<Vec<u8>, ProviderError>;

    /// Largest file one upload may carry.
    fn upload_limit(&self) -> u64;

    /// Size cap of the workspace.
    fn workspace_quota(&self) -> u64;

    /// Where uploads in progress are best staged: a directory on the workspace's own
    /// filesystem, out of the tool's reach, from which [`upload_staged`] moves a
    /// finished file in by renaming it (a disk-backed workspace's); `None`: on the
    /// node's disk, from which it is copied.
    ///
    /// [`upload_staged`]: SandboxSession::upload_staged
    fn upload_staging(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Writes the file at `staged` on the provider's disk into the workspace at `path`,
    /// replacing any file of that name; an implementation streams it (the default,
    /// for in-memory workspaces, reads it whole), or renames it in when it was staged
    /// in [`upload_staging`](SandboxSession::upload_staging).
    async fn upload_staged(
        &self,
        path: &WorkspacePath,
        staged: &std::path::Path,
    ) -> Result<(), ProviderError> {
        let bytes = tokio::fs::read(staged)
            .await
            .map_err(ProviderError::HostDisk)?;
        self.upload(path, &bytes).await
    }

    /// Unpacks the tar at `staged` on the provider's disk into the workspace under
    /// `under` (the workspace itself when `None`): regular files and directories only,
    /// re-packed with the provider's own headers; a link, device, `..` or absolute path
    /// refuses the whole archive. The default, for in-memory workspaces, uploads its
    /// files one by one.
    async fn upload_archive_staged(
        &self,
        under: Option<&WorkspacePath>,
        staged: &std::path::Path,
    ) -> Result<(), ProviderError> {
        let repacked = staged.with_extension("repacked");
        let limit = self.workspace_quota();
        crate::archive::repack_upload(staged, &repacked, under, limit)?;
        let bytes = std::fs::read(&repacked).map_err(ProviderError::HostDisk);
        let _ = std::fs::remove_file(&repacked);
        let bytes = bytes?;
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut files = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type() == tar::EntryType::Regular {
                let path = WorkspacePath::new(&String::from_utf8_lossy(&entry.path_bytes()))?;
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data)?;
                files.push((path, data));
            }
        }
        for (path, data) in files {
            self.upload(&path, &data).await?;
        }
        Ok(())
    }

    /// Copies the directory `dir` of the workspace (the workspace itself when `None`)
    /// into a tar at `dest` on the provider's disk, relative to it, with regular files
    /// and directories only; returns the tar's size and SHA-256. The default, for
    /// in-memory workspaces, packs its files.
    async fn download_archive_to(
        &self,
        dir: Option<&WorkspacePath>,
        dest: &std::path::Path,
    ) -> Result<(u64, ContentHash), ProviderError> {
        let prefix = dir.map(|d| format!("{d}/"));
        let mut builder = tar::Builder::new(Vec::new());
        let mut found = dir.is_none();
        for entry in self.list().await? {
            let rest = match &prefix {
                Some(prefix) => match entry.path.strip_prefix(prefix.as_str()) {
                    Some(rest) => rest.to_owned(),
                    None => continue,
                },
                None => entry.path.clone(),
            };
            found = true;
            if entry.kind == crate::workspace::EntryKind::File {
                let data = self.download(&WorkspacePath::new(&entry.path)?).await?;
                let mut header = crate::workspace::file_header(data.len() as u64);
                builder.append_data(&mut header, &rest, data.as_slice())?;
            }
        }
        if !found {
            return Err(ProviderError::NotFound(
                dir.map(ToString::to_string).unwrap_or_default(),
            ));
        }
        let bytes = builder.into_inner()?;
        std::fs::write(dest, &bytes).map_err(ProviderError::HostDisk)?;
        Ok((bytes.len() as u64, ContentHash::of(&bytes)))
    }

    /// Copies one regular file of the workspace into `dest` on the provider's disk
    /// (created or replaced); returns its size and SHA-256. An implementation streams
    /// it (the default, for in-memory workspaces, holds it whole).
    async fn download_to(
        &self,
        path: &WorkspacePath,
        dest: &std::path::Path,
    ) -> Result<(u64, ContentHash), ProviderError> {
        let bytes = self.download(path).await?;
        tokio::fs::write(dest, &bytes)
            .await
            .map_err(ProviderError::HostDisk)?;
        Ok((bytes.len() as u64, ContentHash::of(&bytes)))
    }

    /// Removes the session's workspace and kills its running calls. Idempotent.
    async fn close(&self) -> Result<(), ProviderError>;
}
