//! The provider's end of file transfers: it takes verified chunks of uploads into its
//! staging area and sends chunks of its copies of downloaded files.

use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use orien_protocol::transfer::{
    CHUNK_BYTES, Chunk, DownloadFrame, Refusal, TransferRefusal, TransferReply, TransferRequest,
    UploadFrame, UploadReply,
};
use orien_protocol::{ContentHash, NodeId, SessionId};
use orien_provider::{ProviderError, SandboxSession, WorkspacePath};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, info, info_span, warn};

use super::staging::{Snapshot, Staging, Writing, free_bytes};
use crate::network::frame::{read_frame, write_frame};

/// Streams a provider serves at once, all sessions together; more are reset.
const MAX_STREAMS: usize = 64;
/// How long a stream may stay silent before the provider drops it.
const IDLE: Duration = Duration::from_secs(60);

/// What the provider lends one transfer of an open session.
pub(crate) struct Lease {
    /// The session's sandbox.
    pub(crate) sandbox: Arc<dyn SandboxSession>,
    /// Its turn among the session's transfers.
    pub(crate) _turn: OwnedSemaphorePermit,
}

/// The provider's open sessions, as transfers see them.
pub(crate) trait Leases: Send + Sync + 'static {
    /// A turn for `peer` to move files of `session`: refused unless `peer` is the
    /// renter of that open session and it has a transfer turn free.
    fn lease(&self, session: SessionId, peer: NodeId) -> Result<Lease, Refusal>;
}

/// Serves the transfer streams peers open until `incoming` ends (the node stops).
pub(crate) async fn accept(
    mut incoming: libp2p_stream::IncomingStreams,
    leases: Arc<dyn Leases>,
    staging: Arc<Staging>,
) {
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(turn) = streams.clone().try_acquire_owned() else {
            debug!(%peer, "too many transfer streams; dropping one");
            continue;
        };
        let Ok(peer) = NodeId::from_peer_id(&peer) else {
            continue;
        };
        let leases = leases.clone();
        let staging = staging.clone();
        tokio::spawn(async move {
            serve(stream, peer, leases.as_ref(), &staging).await;
            drop(turn);
        });
    }
}

/// Serves one stream: one upload or one download.
pub(crate) async fn serve<S>(mut stream: S, peer: NodeId, leases: &dyn Leases, staging: &Staging)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let request =
        match tokio::time::timeout(IDLE, read_frame::<TransferRequest, _>(&mut stream)).await {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "unreadable transfer request");
                let refusal = Refusal::new(TransferRefusal::Protocol, e.to_string());
                let _ = write_frame(&mut stream, &TransferReply::Refused(refusal)).await;
                let _ = stream.close().await;
                return;
            }
            Err(_) => return,
        };
    let session = match &request {
        TransferRequest::Put { session, .. } | TransferRequest::Get { session, .. } => *session,
    };
    let span = info_span!("transfer", %session, %peer);
    async {
        let ended = match request {
            TransferRequest::Put {
                path,
                size,
                resume,
                archive,
                ..
            } => {
                let put = Put {
                    session,
                    size,
                    resume,
                };
                put.serve(&mut stream, peer, &path, archive, leases, staging)
                    .await
            }
            TransferRequest::Get {
                path,
                offset,
                expect,
                archive,
                ..
            } => {
                let get = Get {
                    session,
                    offset,
                    expect,
                };
                get.serve(&mut stream, peer, &path, archive, leases, staging)
                    .await
            }
        };
        if let Err(e) = ended {
            debug!(error = %e, "transfer stream ended");
        }
        let _ = stream.close().await;
    }
    .instrument(span)
    .await;
}

/// Bytes an upload writes between acknowledgements (each waits for the disk).
const ACK_EVERY: u64 = 1 << 20;
// The uploader must be able to send past an acknowledgement's worth.
const _: () =
    assert!(2 * ACK_EVERY <= (orien_protocol::transfer::UPLOAD_WINDOW * CHUNK_BYTES) as u64);

/// Bytes of tar framing an archive upload may carry beyond the workspace cap.
const ARCHIVE_SLACK: u64 = 4 << 20;

/// What a transfer moves.
enum Target {
    /// A regular file.
    File(WorkspacePath),
    /// A tar of a directory (`None`: the workspace itself).
    Dir(Option<WorkspacePath>),
}

impl Target {
    fn parse(path: &str, archive: bool) -> Result<Self, Refusal> {
        let bad = |e: orien_provider::InvalidPath| refused(TransferRefusal::BadPath, e.to_string());
        if archive {
            if path.trim_matches(['.', '/']).is_empty() && !path.starts_with('/') {
                return Ok(Self::Dir(None));
            }
            return WorkspacePath::new(path)
                .map(|p| Self::Dir(Some(p)))
                .map_err(bad);
        }
        WorkspacePath::new(path).map(Self::File).map_err(bad)
    }

    /// Its name in the staging area, apart for a file and a directory of one path.
    fn key(&self) -> String {
        match self {
            Self::File(path) => format!("file:{path}"),
            Self::Dir(Some(path)) => format!("dir:{path}"),
            Self::Dir(None) => "dir:".to_owned(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "`{path}`"),
            Self::Dir(Some(path)) => write!(f, "the directory `{path}`"),
            Self::Dir(None) => f.write_str("the workspace"),
        }
    }
}

/// What a transfer of `path` names, and its session's lease for `peer`.
fn authorise(
    path: &str,
    archive: bool,
    session: SessionId,
    peer: NodeId,
    leases: &dyn Leases,
) -> Result<(Target, Lease), Refusal> {
    let target = Target::parse(path, archive)?;
    Ok((target, leases.lease(session, peer)?))
}

/// A refusal as the reason to end a transfer, after it was said to the peer.
fn refused(code: TransferRefusal, detail: impl Into<String>) -> Refusal {
    Refusal::new(code, detail)
}

/// What a sandbox error tells the renter.
fn refusal_of(error: &ProviderError) -> Refusal {
    let code = match error {
        ProviderError::NotFound(_) => TransferRefusal::NotFound,
        ProviderError::NotAFile(_)
        | ProviderError::Path(_)
        | ProviderError::UnsafeEntry { .. }
        | ProviderError::Archive(_) => TransferRefusal::BadPath,
        ProviderError::TooLarge { .. } => TransferRefusal::TooLarge,
        ProviderError::WorkspaceFull { .. } => TransferRefusal::DiskFull,
        ProviderError::HostDisk(e) if is_disk_full(e) => TransferRefusal::DiskFull,
        ProviderError::SessionClosed(_) => TransferRefusal::NotAuthorised,
        _ => TransferRefusal::Internal,
    };
    refused(code, error.to_string())
}

pub(super) fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

fn disk_refusal(e: &std::io::Error) -> Refusal {
    if is_disk_full(e) {
        refused(
            TransferRefusal::DiskFull,
            format!("the provider's disk is full: {e}"),
        )
    } else {
        refused(
            TransferRefusal::Internal,
            format!("the provider's disk: {e}"),
        )
    }
}

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("silent for {IDLE:?}")]
    Idle,
}

async fn read_within<T, S>(stream: &mut S) -> Result<T, Ended>
where
    T: orien_protocol::wire::Message,
    S: AsyncRead + Unpin + Send,
{
    match tokio::time::timeout(IDLE, read_frame::<T, _>(stream)).await {
        Ok(read) => Ok(read?),
        Err(_) => Err(Ended::Idle),
    }
}

/// Says `refusal` as the first answer and ends.
async fn refuse_first<S>(stream: &mut S, refusal: Refusal) -> Result<(), Ended>
where
    S: AsyncWrite + Unpin + Send,
{
    write_frame(stream, &TransferReply::Refused(refusal.clone())).await?;
    Err(Ended::Refused(refusal))
}

/// Says `refusal` during an upload and ends.
async fn fail_upload<S>(stream: &mut S, refusal: Refusal) -> Result<(), Ended>
where
    S: AsyncWrite + Unpin + Send,
{
    write_frame(stream, &UploadReply::Failed(refusal.clone())).await?;
    Err(Ended::Refused(refusal))
}

/// An upload's staged file, open at the end of what it holds.
struct Staged<'s> {
    file: tokio::fs::File,
    path: std::path::PathBuf,
    /// Bytes it holds (verified and written).
    held: u64,
    /// The hash of those bytes.
    hasher: Sha256,
    /// This stream is its one writer.
    _writing: Writing<'s>,
}

/// An upload's terms as the renter asked.
struct Put {
    session: SessionId,
    size: u64,
    resume: bool,
}

impl Put {
    async fn serve<S>(
        &self,
        stream: &mut S,
        peer: NodeId,
        path: &str,
        archive: bool,
        leases: &dyn Leases,
        staging: &Staging,
    ) -> Result<(), Ended>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (target, lease) = match authorise(path, archive, self.session, peer, leases) {
            Ok(leased) => leased,
            Err(refusal) => return refuse_first(stream, refusal).await,
        };
        let Staged {
            mut file,
            path: file_path,
            mut held,
            mut hasher,
            _writing,
        } = match self.stage(&target, lease.sandbox.as_ref(), staging).await {
            Ok(staged) => staged,
            Err(refusal) => return refuse_first(stream, refusal).await,
        };
        let started = std::time::Instant::now();
        let ready = TransferReply::Ready {
            offset: held,
            size: self.size,
            sha256: None,
        };
        write_frame(stream, &ready).await?;
        stream.flush().await?;
        // Bytes handed to the file; `held` is what is flushed and acknowledged.
        let mut written = held;
        loop {
            match read_within::<UploadFrame, _>(stream).await? {
                UploadFrame::Chunk(chunk) => {
                    if chunk.offset != written || chunk.end() > self.size {
                        let detail = format!(
                            "a chunk at {}..{} of a {}-byte file holding {held}",
                            chunk.offset,
                            chunk.end(),
                            self.size
                        );
                        return fail_upload(stream, refused(TransferRefusal::Protocol, detail))
                            .await;
                    }
                    if !chunk.is_intact() {
                        // What was verified before it stands: the resume starts there.
                        let _ = file.flush().await;
                        let detail = format!(
                            "the chunk at {held} does not match its hash; resume from {held}"
                        );
                        return fail_upload(stream, refused(TransferRefusal::Corrupt, detail))
                            .await;
                    }
                    if let Err(e) = file.write_all(&chunk.data).await {
                        // Nothing past `held` counts: the next attempt starts there.
                        let _ = file.set_len(held).await;
                        return fail_upload(stream, disk_refusal(&e)).await;
                    }
                    hasher.update(&chunk.data);
                    written = chunk.end();
                    if written - held < ACK_EVERY && written < self.size {
                        continue;
                    }
                    // tokio's file writes in the background: the flush waits for the
                    // writes and reports their failure, so an ack means written.
                    if let Err(e) = file.flush().await {
                        let _ = file.set_len(held).await;
                        return fail_upload(stream, disk_refusal(&e)).await;
                    }
                    held = written;
                    write_frame(stream, &UploadReply::Ack { offset: held }).await?;
                    stream.flush().await?;
                }
                UploadFrame::End { sha256 } => {
                    if held != self.size {
                        let detail = format!("ended at {held} of {} bytes", self.size);
                        return fail_upload(stream, refused(TransferRefusal::Protocol, detail))
                            .await;
                    }
                    // Not synced: the staged file never outlives this node (the area is
                    // emptied at start), and its writes' failures (a full disk) came
                    // back from the writes themselves, before each ack. A sync here only
                    // waited for the disk (1 GiB into a disk workspace: 133 → ~190 MB/s
                    // without it).
                    drop(file);
                    let digest = ContentHash::from_bytes(hasher.finalize().into());
                    if sha256.is_some_and(|expected| expected != digest) {
                        let _ = tokio::fs::remove_file(&file_path).await;
                        let detail = format!(
                            "the file's SHA-256 is {digest}, not the one sent; send it again from the start"
                        );
                        return fail_upload(stream, refused(TransferRefusal::Corrupt, detail))
                            .await;
                    }
                    let staged = started.elapsed();
                    let stored = match &target {
                        Target::File(path) => lease.sandbox.upload_staged(path, &file_path).await,
                        Target::Dir(dir) => {
                            lease
                                .sandbox
                                .upload_archive_staged(dir.as_ref(), &file_path)
                                .await
                        }
                    };
                    let _ = tokio::fs::remove_file(&file_path).await;
                    if let Err(e) = stored {
                        return fail_upload(stream, refusal_of(&e)).await;
                    }
                    info!(
                        %target,
                        bytes = self.size,
                        sha256 = %digest,
                        staged_ms = staged.as_millis(),
                        into_workspace_ms = (started.elapsed() - staged).as_millis(),
                        "upload stored"
                    );
                    write_frame(stream, &UploadReply::Stored { sha256: digest }).await?;
                    stream.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    /// Checks the upload against the session's caps and the disk, and opens its
    /// staged file at the end of what it holds already (on a resume), with the hash
    /// of those bytes.
    async fn stage<'s>(
        &self,
        target: &Target,
        sandbox: &dyn SandboxSession,
        staging: &'s Staging,
    ) -> Result<Staged<'s>, Refusal> {
        let limit = match target {
            Target::File(_) => sandbox.upload_limit().min(sandbox.workspace_quota()),
            Target::Dir(_) => sandbox.workspace_quota().saturating_add(ARCHIVE_SLACK),
        };
        if self.size > limit {
            return Err(refused(
                TransferRefusal::TooLarge,
                format!(
                    "{} bytes is over this session's upload limit of {limit} bytes",
                    self.size
                ),
            ));
        }
        // A disk-backed workspace stages its uploads on its own filesystem.
        let in_workspace = match sandbox.upload_staging() {
            Some(dir) => {
                staging.stage_uploads_in(self.session, dir);
                true
            }
            None => false,
        };
        let file_path = staging
            .upload_file(self.session, &target.key(), self.size)
            .map_err(|e| disk_refusal(&e))?;
        let Some(writing) = staging.write(&file_path) else {
            return Err(refused(
                TransferRefusal::Busy,
                "another stream still writes this upload; resume shortly",
            ));
        };
        let quota = sandbox.workspace_quota();
        if !staging.make_room(self.session, self.size, quota, &file_path) {
            let others = staging.uploading(self.session, Some(&file_path));
            return Err(refused(
                TransferRefusal::TooLarge,
                format!(
                    "{} bytes with the {others} bytes of the session's other uploads under way is over its workspace cap of {quota} bytes",
                    self.size
                ),
            ));
        }
        // What a stream cut off left, down to a whole chunk: a write the provider
        // never acknowledged may have landed in part.
        let held = match tokio::fs::metadata(&file_path).await {
            Ok(meta) if self.resume && meta.len() == self.size => meta.len(),
            Ok(meta) if self.resume && meta.len() < self.size => {
                meta.len() - meta.len() % CHUNK_BYTES as u64
            }
            _ => 0,
        };
        if let Some(free) = file_path.parent().and_then(free_bytes)
            && free < self.size - held
        {
            let needs = self.size - held;
            let detail = if in_workspace {
                format!(
                    "the session's workspace has {free} bytes free, not the {needs} this upload needs; remove files from it first"
                )
            } else {
                format!(
                    "the provider's disk has {free} bytes free, not the {needs} this upload needs"
                )
            };
            return Err(refused(TransferRefusal::DiskFull, detail));
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&file_path)
            .await
            .map_err(|e| disk_refusal(&e))?;
        file.set_len(held).await.map_err(|e| disk_refusal(&e))?;
        let hasher = hash_prefix(&mut file, held)
            .await
            .map_err(|e| disk_refusal(&e))?;
        file.seek(SeekFrom::Start(held))
            .await
            .map_err(|e| disk_refusal(&e))?;
        if held > 0 {
            debug!(%target, held, size = self.size, "resuming an upload");
        }
        Ok(Staged {
            file,
            path: file_path,
            held,
            hasher,
            _writing: writing,
        })
    }
}

/// The hash state after the first `len` bytes of `file`.
async fn hash_prefix(file: &mut tokio::fs::File, len: u64) -> std::io::Result<Sha256> {
    let mut hasher = Sha256::new();
    file.seek(SeekFrom::Start(0)).await?;
    let mut left = len;
    let mut buf = vec![0u8; CHUNK_BYTES];
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK_BYTES as u64)).unwrap_or(CHUNK_BYTES);
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher)
}

/// A download's terms as the renter asked.
struct Get {
    session: SessionId,
    offset: u64,
    expect: Option<ContentHash>,
}

impl Get {
    async fn serve<S>(
        &self,
        stream: &mut S,
        peer: NodeId,
        path: &str,
        archive: bool,
        leases: &dyn Leases,
        staging: &Staging,
    ) -> Result<(), Ended>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        // An artefact of one of the session's calls: its renter fetches it by hash,
        // also once the session has closed.
        if let Some(sha256) = self.expect
            && !archive
            && let Some(artefact) = staging.artefacts.find(self.session, peer, path, sha256)
        {
            let what = format!("artefact `{path}`");
            return self
                .send(
                    stream,
                    &artefact,
                    &what,
                    std::time::Instant::now(),
                    Duration::ZERO,
                )
                .await;
        }
        let (target, lease) = match authorise(path, archive, self.session, peer, leases) {
            Ok(leased) => leased,
            Err(refusal) => {
                let refusal = match self.expect {
                    // A copy asked for by hash, of a session that is not open: most
                    // likely an artefact the provider kept for a while and let go.
                    Some(sha256) if refusal.code == TransferRefusal::NotAuthorised => refused(
                        TransferRefusal::NotAuthorised,
                        format!(
                            "the provider no longer keeps `{path}` with SHA-256 {sha256} for you, and session {} is not open here ({})",
                            self.session, refusal.detail
                        ),
                    ),
                    _ => refusal,
                };
                return refuse_first(stream, refusal).await;
            }
        };
        let key = target.key();
        let started = std::time::Instant::now();
        let snapshot = match self.expect {
            Some(sha256) => match staging.snapshot(self.session, &key, sha256) {
                Some(snapshot) => snapshot,
                None => {
                    let detail = format!(
                        "the provider no longer holds the copy of {target} with SHA-256 {sha256}; download it again"
                    );
                    return refuse_first(stream, refused(TransferRefusal::Changed, detail)).await;
                }
            },
            None => {
                match take_snapshot(self.session, &target, lease.sandbox.as_ref(), staging).await {
                    Ok(snapshot) => snapshot,
                    Err(refusal) => return refuse_first(stream, refusal).await,
                }
            }
        };
        let copied = started.elapsed();
        self.send(stream, &snapshot, &target, started, copied).await
    }

    /// Sends `snapshot` (a copy of `what`) from the asked offset.
    async fn send<S>(
        &self,
        stream: &mut S,
        snapshot: &Snapshot,
        what: &(dyn std::fmt::Display + Sync),
        started: std::time::Instant,
        copied: Duration,
    ) -> Result<(), Ended>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let offset = self.offset;
        if offset > snapshot.size {
            let detail = format!(
                "offset {offset} is past the end of the {}-byte file",
                snapshot.size
            );
            return refuse_first(stream, refused(TransferRefusal::OutOfRange, detail)).await;
        }
        write_frame(
            stream,
            &TransferReply::Ready {
                offset,
                size: snapshot.size,
                sha256: Some(snapshot.sha256),
            },
        )
        .await?;
        let mut file = match open_at(&snapshot.file, offset).await {
            Ok(file) => file,
            Err(e) => {
                write_frame(stream, &DownloadFrame::Failed(disk_refusal(&e))).await?;
                return Err(e.into());
            }
        };
        let mut at = offset;
        while at < snapshot.size {
            let want = usize::try_from((snapshot.size - at).min(CHUNK_BYTES as u64))
                .unwrap_or(CHUNK_BYTES);
            let mut data = vec![0u8; want];
            if let Err(e) = file.read_exact(&mut data).await {
                write_frame(stream, &DownloadFrame::Failed(disk_refusal(&e))).await?;
                return Err(e.into());
            }
            let chunk = Chunk::new(at, data);
            at = chunk.end();
            write_frame(stream, &DownloadFrame::Chunk(chunk)).await?;
        }
        stream.flush().await?;
        info!(
            target = %what,
            from = offset,
            size = snapshot.size,
            copy_ms = copied.as_millis(),
            send_ms = (started.elapsed() - copied).as_millis(),
            "download sent"
        );
        Ok(())
    }
}

async fn open_at(file: &Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    let mut file = tokio::fs::File::open(file).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    Ok(file)
}

/// Copies `target` out of the workspace into the staging area, hashing it.
async fn take_snapshot(
    session: SessionId,
    target: &Target,
    sandbox: &dyn SandboxSession,
    staging: &Staging,
) -> Result<Snapshot, Refusal> {
    let key = target.key();
    let file = staging
        .snapshot_file(session, &key)
        .map_err(|e| disk_refusal(&e))?;
    let copied = match target {
        Target::File(path) => sandbox.download_to(path, &file).await,
        Target::Dir(dir) => sandbox.download_archive_to(dir.as_ref(), &file).await,
    };
    match copied {
        Ok((size, sha256)) => {
            let snapshot = Snapshot { file, size, sha256 };
            staging.keep_snapshot(session, &key, snapshot.clone(), sandbox.workspace_quota());
            Ok(snapshot)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&file).await;
            if !matches!(e, ProviderError::NotFound(_)) {
                warn!(%target, error = %e, "cannot copy out of the workspace");
            }
            Err(refusal_of(&e))
        }
    }
}
