//! Moving files in and out of a session's workspace through the engine's archive API.
//!
//! Uploads are re-packed by the provider: only regular files and directories with
//! valid [`WorkspacePath`]s pass, owned by the sandbox user with fixed modes, so
//! nothing an uploader writes into a tar header (symlinks, hard links, devices, set-uid
//! bits, owners) reaches the engine. Downloads and listings read the engine's tar
//! stream with a byte budget, so a hostile workspace cannot exhaust the provider.

use std::collections::BTreeSet;
use std::io::Read;

use bollard::body_full;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tracing::debug;

use crate::engine::EngineError;
use crate::error::ProviderError;
use crate::session::Session;
use crate::workspace_path::{WORKSPACE_MOUNT, WorkspacePath};

/// Most entries one upload archive may hold.
pub const MAX_ARCHIVE_ENTRIES: usize = 10_000;

/// Bytes of tar framing allowed on top of file contents when reading from the engine.
const TAR_SLACK: u64 = 4 << 20;

/// What a workspace entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (made by a tool; uploads cannot create them).
    Symlink,
    /// Anything else.
    Other,
}

/// One entry of [`crate::SessionSandbox::list`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceEntry {
    /// Path relative to the workspace.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (files only; 0 otherwise).
    pub size: u64,
}

/// A validated upload, ready to be packed.
struct Upload<'a> {
    dirs: BTreeSet<WorkspacePath>,
    files: Vec<(WorkspacePath, &'a [u8])>,
}

impl<'a> Upload<'a> {
    fn new() -> Self {
        Self {
            dirs: BTreeSet::new(),
            files: Vec::new(),
        }
    }

    fn add_parents(&mut self, path: &WorkspacePath) {
        let mut parent = path.parent();
        while let Some(dir) = parent {
            parent = dir.parent();
            self.dirs.insert(dir);
        }
    }

    fn pack(&self) -> Result<Vec<u8>, std::io::Error> {
        let mut builder = tar::Builder::new(Vec::new());
        self.append_dirs(&mut builder)?;
        for (path, bytes) in &self.files {
            let mut header = file_header(bytes.len() as u64);
            builder.append_data(&mut header, path.as_str(), *bytes)?;
        }
        builder.into_inner()
    }

    /// The directories' entries alone, without the end of the archive.
    fn pack_headers(&self) -> Result<Vec<u8>, std::io::Error> {
        let mut builder = tar::Builder::new(Vec::new());
        self.append_dirs(&mut builder)?;
        Ok(builder.get_ref().clone())
    }

    fn append_dirs(&self, builder: &mut tar::Builder<Vec<u8>>) -> Result<(), std::io::Error> {
        for dir in &self.dirs {
            builder.append_data(&mut dir_header(), dir.as_str(), std::io::empty())?;
        }
        Ok(())
    }
}

pub(crate) async fn upload_file(
    session: &Session,
    path: &WorkspacePath,
    bytes: &[u8],
) -> Result<(), ProviderError> {
    let limit = session.tool.upload_bytes();
    if bytes.len() as u64 > limit {
        return Err(ProviderError::TooLarge {
            what: "the upload",
            size: bytes.len() as u64,
            limit,
        });
    }
    let mut upload = Upload::new();
    upload.add_parents(path);
    upload.files.push((path.clone(), bytes));
    put(session, upload.pack()?).await
}

pub(crate) async fn upload_archive(
    session: &Session,
    tar_bytes: &[u8],
) -> Result<(), ProviderError> {
    let limit = session.tool.upload_bytes();
    if tar_bytes.len() as u64 > limit.saturating_add(TAR_SLACK) {
        return Err(ProviderError::TooLarge {
            what: "the upload archive",
            size: tar_bytes.len() as u64,
            limit,
        });
    }
    let (repacked, _) = crate::archive::repack_upload_bytes(tar_bytes, limit)?;
    put(session, repacked).await
}

/// Unpacks the tar staged at `staged` into the workspace under `under` (the workspace
/// itself when `None`): re-packed on the provider's disk first (checked entry by entry,
/// the provider's own headers), then streamed to the engine.
pub(crate) async fn upload_archive_staged(
    session: &Session,
    under: Option<&WorkspacePath>,
    staged: &std::path::Path,
) -> Result<(), ProviderError> {
    let repacked = staged.with_extension("repacked");
    let (src, dest, under) = (staged.to_owned(), repacked.clone(), under.cloned());
    let limit = session.tool.limits().workspace_bytes;
    let packed = tokio::task::spawn_blocking(move || {
        crate::archive::repack_upload(&src, &dest, under.as_ref(), limit)
    })
    .await
    .map_err(|e| ProviderError::Archive(std::io::Error::other(e.to_string())));
    let sent = match packed {
        Ok(Ok(packed)) => match tokio::fs::File::open(&repacked).await {
            Ok(file) => {
                let body = tokio_util::io::ReaderStream::with_capacity(file, STREAM_PIECE);
                put_body(session, TarBody::Streamed(Box::pin(body)), packed.contents).await
            }
            Err(e) => Err(ProviderError::HostDisk(e)),
        },
        Ok(Err(e)) | Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&repacked).await;
    sent
}

/// Copies the directory `dir` of the workspace (the workspace itself when `None`) into
/// a tar at `dest` on the provider's disk, relative to it: regular files and
/// directories only, streamed from the engine. Returns the tar's size and SHA-256.
pub(crate) async fn download_archive_to(
    session: &Session,
    dir: Option<&WorkspacePath>,
    dest: &std::path::Path,
) -> Result<(u64, orien_protocol::ContentHash), ProviderError> {
    let inside = dir.map_or_else(|| WORKSPACE_MOUNT.to_owned(), WorkspacePath::in_container);
    let name = dir.map_or_else(String::new, ToString::to_string);
    let reader = engine_tar(session, &inside, &name).await?;
    let limit = session.tool.limits().workspace_bytes;
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let dest = dest.to_owned();
    let (packed, sha256) =
        tokio::task::spawn_blocking(move || crate::archive::repack_download(bridge, &dest, limit))
            .await
            .map_err(|e| ProviderError::Archive(std::io::Error::other(e.to_string())))??;
    debug!(
        bytes = packed.bytes,
        contents = packed.contents,
        skipped = packed.skipped,
        "directory copied out of the workspace"
    );
    Ok((packed.bytes, sha256))
}

/// The engine's tar of `inside` (absolute in the container) as a reader; `name` (the
/// workspace-relative path) names it in a not-found error.
async fn engine_tar(
    session: &Session,
    inside: &str,
    name: &str,
) -> Result<impl tokio::io::AsyncRead + Unpin + Send + 'static, ProviderError> {
    engine_tar_of(&session.provider, &session.names.container, inside, name).await
}

/// Checks that `container` sees the disk-backed workspace mounted on the host at
/// `mount` (the mark that [`crate::disk`] left in it), then removes the mark. A node in
/// a mount namespace of its own mounts where the engine cannot see, and the container
/// would write to the directory beneath, on the host's disk: refused.
pub(crate) async fn check_disk_mount(
    inner: &crate::provider::ProviderInner,
    container: &str,
    mount: &std::path::Path,
) -> Result<(), ProviderError> {
    let mark = format!("{WORKSPACE_MOUNT}/{}", crate::disk::MOUNT_MARK);
    match engine_tar_of(inner, container, &mark, crate::disk::MOUNT_MARK).await {
        Ok(_) => {}
        Err(ProviderError::NotFound(_)) => {
            return Err(crate::disk::DiskError::NotShared {
                mount: mount.to_owned(),
            }
            .into());
        }
        Err(e) => return Err(e),
    }
    tokio::fs::remove_file(mount.join(crate::disk::MOUNT_MARK))
        .await
        .map_err(ProviderError::HostDisk)
}

async fn engine_tar_of(
    inner: &crate::provider::ProviderInner,
    container: &str,
    inside: &str,
    name: &str,
) -> Result<impl tokio::io::AsyncRead + Unpin + Send + 'static, ProviderError> {
    let engine = &inner.engine;
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(inside)
        .build();
    let mut stream = engine
        .docker()
        .download_from_container(container, Some(options))
        .peekable();
    // A missing path is the stream's first error; later ones are the engine failing.
    if let Some(Err(e)) = std::pin::Pin::new(&mut stream).peek().await {
        return Err(if EngineError::is_not_found(e) {
            ProviderError::NotFound(name.to_owned())
        } else {
            engine
                .error(
                    "download from container",
                    bollard::errors::Error::IOError {
                        err: std::io::Error::other(e.to_string()),
                    },
                )
                .into()
        });
    }
    Ok(tokio_util::io::StreamReader::new(
        stream.map(|piece| piece.map_err(std::io::Error::other)),
    ))
}

/// Bytes read from a staged file per piece of an upload's body.
const STREAM_PIECE: usize = 256 * 1024;

/// Streams the file at `staged` on the provider's disk into the workspace at `path`:
/// its tar is made on the fly (the provider's own headers, as for every upload), so
/// memory stays at a piece or two whatever the size.
pub(crate) async fn upload_staged(
    session: &Session,
    path: &WorkspacePath,
    staged: &std::path::Path,
) -> Result<(), ProviderError> {
    let file = tokio::fs::File::open(staged)
        .await
        .map_err(ProviderError::HostDisk)?;
    let size = file
        .metadata()
        .await
        .map_err(ProviderError::HostDisk)?
        .len();
    let limit = session.tool.upload_bytes();
    if size > limit {
        return Err(ProviderError::TooLarge {
            what: "the upload",
            size,
            limit,
        });
    }
    let mut upload = Upload::new();
    upload.add_parents(path);
    // The headers: parents, then the file's own with its size; its bytes follow.
    let mut head = upload.pack_headers()?;
    let mut header = file_header(size);
    let mut builder = tar::Builder::new(Vec::new());
    // `append_data` writes a long name's extension record and the header (whose size
    // is the file's); an empty reader adds no bytes and no padding. The builder is not
    // finished: the end of the archive follows the file's bytes.
    builder.append_data(&mut header, path.as_str(), std::io::empty())?;
    head.extend_from_slice(builder.get_ref());
    let padding = (512 - size % 512) % 512;
    let mut tail = vec![0u8; usize::try_from(padding).unwrap_or(0)];
    tail.extend_from_slice(&[0u8; 1024]);
    use tokio::io::AsyncReadExt as _;
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::with_capacity(
            file.take(size),
            STREAM_PIECE,
        ))
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ));
    put_body(session, TarBody::Streamed(Box::pin(body)), size).await
}

/// The provider's header of a directory: owned by the sandbox user, mode 0755.
pub(crate) fn dir_header() -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_uid(65534);
    header.set_gid(65534);
    header.set_size(0);
    header.set_mtime(0);
    header
}

/// The provider's header of a regular file of `size` bytes: owned by the sandbox
/// user, mode 0644.
pub(crate) fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(65534);
    header.set_gid(65534);
    header.set_size(size);
    header.set_mtime(0);
    header
}

/// Copies one regular file of the workspace into `dest` on the provider's disk,
/// streamed from the engine's tar: nothing is held but a piece at a time. Returns its
/// size and SHA-256.
pub(crate) async fn download_to(
    session: &Session,
    path: &WorkspacePath,
    dest: &std::path::Path,
) -> Result<(u64, orien_protocol::ContentHash), ProviderError> {
    let reader = engine_tar(session, &path.in_container(), path.as_str()).await?;
    let limit = session.tool.limits().workspace_bytes;
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let dest = dest.to_owned();
    let path = path.clone();
    tokio::task::spawn_blocking(move || extract_one(bridge, &path, &dest, limit))
        .await
        .map_err(|e| ProviderError::Archive(std::io::Error::other(e.to_string())))?
}

/// Reads the first entry of the tar on `reader`, which must be a regular file of at
/// most `limit` bytes, into `dest`; hashes it on the way.
fn extract_one(
    reader: impl Read,
    path: &WorkspacePath,
    dest: &std::path::Path,
    limit: u64,
) -> Result<(u64, orien_protocol::ContentHash), ProviderError> {
    use sha2::Digest as _;
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries()?;
    let Some(entry) = entries.next() else {
        return Err(ProviderError::NotFound(path.to_string()));
    };
    let mut entry = entry?;
    match entry.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {}
        _ => return Err(ProviderError::NotAFile(path.to_string())),
    }
    let size = entry.size();
    if size > limit {
        return Err(ProviderError::TooLarge {
            what: "the file",
            size,
            limit,
        });
    }
    let mut out = std::fs::File::create(dest).map_err(ProviderError::HostDisk)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; STREAM_PIECE];
    let mut copied: u64 = 0;
    loop {
        let n = entry.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n]).map_err(ProviderError::HostDisk)?;
        copied += n as u64;
    }
    if copied != size {
        return Err(ProviderError::Archive(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the engine sent {copied} of {size} bytes"),
        )));
    }
    out.sync_data().map_err(ProviderError::HostDisk)?;
    Ok((
        size,
        orien_protocol::ContentHash::from_bytes(hasher.finalize().into()),
    ))
}

async fn put(session: &Session, tar: Vec<u8>) -> Result<(), ProviderError> {
    let len = tar.len() as u64;
    put_body(session, TarBody::Whole(tar), len).await
}

/// A tar for the engine: in memory, or streamed from the provider's disk.
enum TarBody {
    Whole(Vec<u8>),
    Streamed(futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>),
}

/// Sends a tar of `bytes` of contents into the workspace.
async fn put_body(session: &Session, tar: TarBody, bytes: u64) -> Result<(), ProviderError> {
    let body = match tar {
        TarBody::Whole(tar) => body_full(tar.into()),
        TarBody::Streamed(stream) => bollard::body_try_stream(stream),
    };
    let engine = &session.provider.engine;
    debug!(bytes, "uploading into the workspace");
    let options = UploadToContainerOptionsBuilder::default()
        .path(WORKSPACE_MOUNT)
        .no_overwrite_dir_non_dir("true")
        .build();
    engine
        .docker()
        .upload_to_container(&session.names.container, Some(options), body)
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { message, .. }
                if message.contains("no space left on device") =>
            {
                ProviderError::WorkspaceFull {
                    quota: session.tool.limits().workspace_bytes,
                    detail: message,
                }
            }
            e => engine.error("upload to container", e).into(),
        })
}

/// Reads the engine's tar of `path` (absolute in the container), refusing more than
/// `budget` bytes.
async fn get(session: &Session, path: &str, budget: u64) -> Result<Vec<u8>, ProviderError> {
    let engine = &session.provider.engine;
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = engine
        .docker()
        .download_from_container(&session.names.container, Some(options));
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) if EngineError::is_not_found(&e) => {
                let relative = path
                    .strip_prefix(WORKSPACE_MOUNT)
                    .unwrap_or(path)
                    .trim_start_matches('/');
                return Err(ProviderError::NotFound(relative.to_owned()));
            }
            Err(e) => return Err(engine.error("download from container", e).into()),
        };
        if (out.len() + piece.len()) as u64 > budget {
            return Err(ProviderError::TooLarge {
                what: "the download",
                size: (out.len() + piece.len()) as u64,
                limit: budget,
            });
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

pub(crate) async fn list(session: &Session) -> Result<Vec<WorkspaceEntry>, ProviderError> {
    let budget = session
        .tool
        .limits()
        .workspace_bytes
        .saturating_add(TAR_SLACK);
    let tar_bytes = get(session, WORKSPACE_MOUNT, budget).await?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let raw = entry.path_bytes();
        let raw = String::from_utf8_lossy(&raw);
        // The engine names entries `workspace/…`; the first is the workspace itself.
        let Some(rest) = raw.strip_prefix("workspace/") else {
            continue;
        };
        let path = rest.trim_end_matches('/');
        if path.is_empty() {
            continue;
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        let size = if kind == EntryKind::File {
            header.size()?
        } else {
            0
        };
        entries.push(WorkspaceEntry {
            path: path.to_owned(),
            kind,
            size,
        });
    }
    Ok(entries)
}

pub(crate) async fn download(
    session: &Session,
    path: &WorkspacePath,
) -> Result<Vec<u8>, ProviderError> {
    let limit = session.tool.limits().workspace_bytes;
    let tar_bytes = get(
        session,
        &path.in_container(),
        limit.saturating_add(TAR_SLACK),
    )
    .await?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = archive.entries()?;
    let Some(entry) = entries.next() else {
        return Err(ProviderError::NotFound(path.to_string()));
    };
    let mut entry = entry?;
    match entry.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {}
        _ => return Err(ProviderError::NotAFile(path.to_string())),
    }
    let size = entry.header().size()?;
    if size > limit {
        return Err(ProviderError::TooLarge {
            what: "the file",
            size,
            limit,
        });
    }
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_uploads_carry_parents_owner_and_modes() {
        let mut upload = Upload::new();
        let path = WorkspacePath::new("a/b/c.txt").unwrap();
        upload.add_parents(&path);
        upload.files.push((path, b"hi"));
        let tar_bytes = upload.pack().unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let seen: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a".to_owned(), 0o755, 65534),
                ("a/b".to_owned(), 0o755, 65534),
                ("a/b/c.txt".to_owned(), 0o644, 65534)
            ]
        );
    }
}
