//! Files of a disk-backed workspace, written and read by the provider from its own
//! side of the mount, without the engine's archive API in between.
//!
//! The workspace is the tool's: anything in it may be a symlink, a FIFO or a directory
//! swapped in under the provider's feet. So nothing here resolves a path by name from
//! the host's root: every step is `openat2` relative to the workspace's root directory
//! with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV` (a link, a `..` or another filesystem on the way fails the call),
//! a file is read only once `fstat` of the open descriptor says it is a regular one,
//! and a file enters the workspace under a temporary name and is renamed over its place
//! in one step, owned by the sandbox user.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag};
use orien_protocol::ContentHash;
use sha2::{Digest, Sha256};

use crate::error::ProviderError;
use crate::workspace_path::WorkspacePath;

/// The sandbox user and group, who own what the provider writes.
pub(crate) const SANDBOX_ID: u32 = 65534;

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

fn open_in(dir: impl AsFd, name: &str, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    openat2(
        dir,
        name,
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
            .mode(mode)
            .resolve(beneath()),
    )
}

fn open_root(root: &Path) -> Result<OwnedFd, ProviderError> {
    nix::fcntl::open(
        root,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| ProviderError::HostDisk(e.into()))
}

/// Why a step inside the workspace failed, as the engine's path would say it.
fn refused(path: &WorkspacePath, e: Errno) -> ProviderError {
    match e {
        Errno::ENOENT => ProviderError::NotFound(path.to_string()),
        // A symlink, a `..` escape or a mount point on the way; a directory or a
        // FIFO where a file should be.
        Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR | Errno::EISDIR | Errno::ENXIO => {
            ProviderError::NotAFile(path.to_string())
        }
        other => ProviderError::HostDisk(other.into()),
    }
}

fn full(quota: u64, e: std::io::Error) -> ProviderError {
    if e.raw_os_error() == Some(Errno::ENOSPC as i32)
        || e.raw_os_error() == Some(Errno::EDQUOT as i32)
    {
        ProviderError::WorkspaceFull {
            quota,
            detail: e.to_string(),
        }
    } else {
        ProviderError::HostDisk(e)
    }
}

/// The directory of `path` in the workspace at `root`, made as needed (mode 0755, owned
/// by the sandbox user), and the file's name in it.
fn parent_of<'p>(
    root: &Path,
    path: &'p WorkspacePath,
    quota: u64,
) -> Result<(OwnedFd, &'p str), ProviderError> {
    let mut dir = open_root(root)?;
    let components: Vec<&str> = path.as_str().split('/').collect();
    let (name, parents) = components
        .split_last()
        .ok_or_else(|| ProviderError::NotAFile(path.to_string()))?;
    for parent in parents {
        match nix::sys::stat::mkdirat(&dir, *parent, Mode::from_bits_truncate(0o755)) {
            Ok(()) => {
                let made = open_in(
                    &dir,
                    parent,
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY,
                    Mode::empty(),
                )
                .map_err(|e| refused(path, e))?;
                std::os::unix::fs::fchown(&made, Some(SANDBOX_ID), Some(SANDBOX_ID))
                    .map_err(ProviderError::HostDisk)?;
                dir = made;
            }
            Err(Errno::EEXIST) => {
                dir = open_in(
                    &dir,
                    parent,
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY,
                    Mode::empty(),
                )
                .map_err(|e| refused(path, e))?;
            }
            Err(e @ (Errno::ENOSPC | Errno::EDQUOT)) => return Err(full(quota, e.into())),
            Err(e) => return Err(refused(path, e)),
        }
    }
    Ok((dir, name))
}

/// Moves the file at `staged`, on the workspace's own filesystem but out of the tool's
/// reach (a disk workspace's `uploads`), to `path` in the workspace at `root`: parent
/// directories made as needed, the file handed to the sandbox user (mode 0644) and
/// renamed over its place in one step, no byte copied. A directory at `path` is
/// [`ProviderError::NotAFile`]; a link there is replaced, never followed.
pub(crate) fn move_into(
    root: &Path,
    path: &WorkspacePath,
    staged: &Path,
    quota: u64,
) -> Result<(), ProviderError> {
    let (dir, name) = parent_of(root, path, quota)?;
    let (Some(from), Some(file_name)) = (staged.parent(), staged.file_name()) else {
        return Err(ProviderError::HostDisk(std::io::Error::other(format!(
            "{} names no file",
            staged.display()
        ))));
    };
    let from = open_root(from)?;
    let file = nix::fcntl::openat(
        &from,
        file_name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ProviderError::HostDisk(e.into()))?;
    std::os::unix::fs::fchown(&file, Some(SANDBOX_ID), Some(SANDBOX_ID))
        .map_err(ProviderError::HostDisk)?;
    nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(0o644))
        .map_err(|e| ProviderError::HostDisk(e.into()))?;
    nix::fcntl::renameat(&from, file_name, &dir, name).map_err(|e| match e {
        Errno::EXDEV => ProviderError::HostDisk(std::io::Error::other(format!(
            "{} is not on the workspace's filesystem",
            staged.display()
        ))),
        e => refused(path, e),
    })
}

/// Copies the file at `staged` into the workspace mounted at `root` as `path`: parent
/// directories made as needed (mode 0755), the file written under a temporary name
/// beside its place and renamed over it (mode 0644), all owned by the sandbox user. A
/// full workspace leaves nothing behind and says [`ProviderError::WorkspaceFull`].
pub(crate) fn write_file(
    root: &Path,
    path: &WorkspacePath,
    staged: &Path,
    quota: u64,
) -> Result<(), ProviderError> {
    let (dir, name) = parent_of(root, path, quota)?;
    let temporary = format!(".orien-upload-{}", orien_protocol::ExecId::random());
    let file = open_in(
        &dir,
        &temporary,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| match e {
        Errno::ENOSPC | Errno::EDQUOT => full(quota, e.into()),
        e => refused(path, e),
    })?;
    let written = (|| {
        let mut file = std::fs::File::from(file);
        std::os::unix::fs::fchown(&file, Some(SANDBOX_ID), Some(SANDBOX_ID))
            .map_err(ProviderError::HostDisk)?;
        let mut source = std::fs::File::open(staged).map_err(ProviderError::HostDisk)?;
        std::io::copy(&mut source, &mut file).map_err(|e| full(quota, e))?;
        file.flush().map_err(|e| full(quota, e))?;
        nix::fcntl::renameat(&dir, temporary.as_str(), &dir, name).map_err(|e| refused(path, e))
    })();
    if written.is_err() {
        let _ = nix::unistd::unlinkat(
            &dir,
            temporary.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    written
}

/// Copies the regular file `path` of the workspace mounted at `root` into `dest` on
/// the provider's disk, at most `limit` bytes of it; returns its size and SHA-256.
pub(crate) fn read_file(
    root: &Path,
    path: &WorkspacePath,
    dest: &Path,
    limit: u64,
) -> Result<(u64, ContentHash), ProviderError> {
    let root = open_root(root)?;
    // O_NONBLOCK: a FIFO the tool left there must not hang the provider; it is refused
    // as not a regular file below.
    let file = open_in(
        &root,
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| refused(path, e))?;
    let stat = nix::sys::stat::fstat(&file).map_err(|e| ProviderError::HostDisk(e.into()))?;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        return Err(ProviderError::NotAFile(path.to_string()));
    }
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| ProviderError::HostDisk(e.into()))?;
    let blocking = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(blocking))
        .map_err(|e| ProviderError::HostDisk(e.into()))?;
    let mut source = std::fs::File::from(file).take(limit.saturating_add(1));
    let mut out = std::fs::File::create(dest).map_err(ProviderError::HostDisk)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(ProviderError::HostDisk(e)),
        };
        size += n as u64;
        if size > limit {
            return Err(ProviderError::TooLarge {
                what: "the file",
                size,
                limit,
            });
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .map_err(ProviderError::HostDisk)?;
    }
    out.flush().map_err(ProviderError::HostDisk)?;
    Ok((size, ContentHash::from_bytes(hasher.finalize().into())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::print_stderr)] // Loud failures; a skip says why.
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn path(p: &str) -> WorkspacePath {
        WorkspacePath::new(p).unwrap()
    }

    /// A workspace root, a staged file holding `bytes`, and a place for copies out.
    fn setup(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        let staged = dir.path().join("staged");
        std::fs::write(&staged, bytes).unwrap();
        let ws = dir.path().join("ws");
        (dir, ws, staged)
    }

    fn root() -> bool {
        // The provider gives what it writes to the sandbox user: that takes root.
        let root = nix::unistd::geteuid().is_root();
        if !root {
            eprintln!("skipped: needs root (chown to the sandbox user)");
        }
        root
    }

    #[test]
    fn a_file_goes_in_owned_by_the_sandbox_user_and_comes_out_with_its_hash() {
        if !root() {
            return;
        }
        let (dir, ws, staged) = setup(b"hello");
        write_file(&ws, &path("a/b/c.txt"), &staged, 1 << 20).unwrap();
        let written = ws.join("a/b/c.txt");
        assert_eq!(std::fs::read(&written).unwrap(), b"hello");
        for p in [ws.join("a"), ws.join("a/b"), written.clone()] {
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (SANDBOX_ID, SANDBOX_ID), "{p:?}");
        }
        assert_eq!(std::fs::metadata(&written).unwrap().mode() & 0o777, 0o644);
        // Replaced whole, and nothing temporary left beside it.
        std::fs::write(&staged, b"again").unwrap();
        write_file(&ws, &path("a/b/c.txt"), &staged, 1 << 20).unwrap();
        assert_eq!(std::fs::read(&written).unwrap(), b"again");
        assert_eq!(std::fs::read_dir(ws.join("a/b")).unwrap().count(), 1);

        let out = dir.path().join("out");
        let (size, hash) = read_file(&ws, &path("a/b/c.txt"), &out, 1 << 20).unwrap();
        assert_eq!((size, hash), (5, ContentHash::of(b"again")));
        assert_eq!(std::fs::read(&out).unwrap(), b"again");
        assert!(matches!(
            read_file(&ws, &path("a/b/c.txt"), &out, 4),
            Err(ProviderError::TooLarge { limit: 4, .. })
        ));
        assert!(matches!(
            read_file(&ws, &path("nope"), &out, 10),
            Err(ProviderError::NotFound(_))
        ));
    }

    #[test]
    fn links_fifos_and_directories_a_tool_left_are_never_followed_or_read() {
        if !root() {
            return;
        }
        let (dir, ws, staged) = setup(b"payload");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host file").unwrap();
        // What a hostile tool can make in its workspace.
        std::os::unix::fs::symlink(&outside, ws.join("dir-link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), ws.join("file-link")).unwrap();
        std::os::unix::fs::symlink("../outside/secret", ws.join("relative-link")).unwrap();
        nix::unistd::mkfifo(&ws.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        std::fs::create_dir(ws.join("a-dir")).unwrap();
        std::fs::write(ws.join("plain"), b"x").unwrap();

        let out = dir.path().join("out");
        for (p, why) in [
            ("dir-link/secret", "a link to a host directory"),
            ("file-link", "a link to a host file"),
            ("relative-link", "a relative link out"),
            ("fifo", "a FIFO (must not hang)"),
            ("a-dir", "a directory"),
            ("plain/x", "a file as a parent"),
        ] {
            let read = read_file(&ws, &path(p), &out, 1 << 20);
            assert!(
                matches!(read, Err(ProviderError::NotAFile(_))),
                "{why}: {read:?}"
            );
        }
        for (p, why) in [
            ("dir-link/secret", "into a linked host directory"),
            ("dir-link/new", "a new file in a linked host directory"),
            ("a-dir", "over a directory"),
            ("plain/x", "under a file"),
        ] {
            let written = write_file(&ws, &path(p), &staged, 1 << 20);
            assert!(written.is_err(), "{why}: {written:?}");
        }
        // A link at the file's own place is replaced, not written through.
        write_file(&ws, &path("file-link"), &staged, 1 << 20).unwrap();
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"host file");
        assert!(!outside.join("new").exists());
        assert_eq!(std::fs::read(ws.join("file-link")).unwrap(), b"payload");
        assert!(
            !std::fs::symlink_metadata(ws.join("file-link"))
                .unwrap()
                .is_symlink()
        );
    }
}
