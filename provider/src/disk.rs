//! Disk-backed workspaces: for tools whose workspace is larger than RAM should hold,
//! each session gets a filesystem of its own, an ext4 image file on the provider's disk
//! mounted through a loop device `nosuid,nodev,noexec` and bind-mounted into the
//! session's containers at `/workspace`.
//!
//! The image's size is the workspace's hard cap: a tool writing past it gets `ENOSPC`
//! from its own filesystem while the host's stays untouched. The image's blocks are
//! allocated when it is made (`fallocate`), so the host's disk cannot run out under a
//! workspace later; a host without room for the whole cap refuses the session at once.
//!
//! Layout under the workspaces directory: `<name>.img` and the mount point `<name>/`,
//! where `<name>` is the session's workspace name (node and session in it). What a
//! crash leaves is found by name and removed by [`DiskWorkspaces::reap`]. Inside the
//! filesystem (root's, mode 0700): `files/`, the tool's workspace (the sandbox user's,
//! the only part bind-mounted into containers), and `uploads/`, the provider's own,
//! where uploads in progress are staged so that a finished one goes in by a rename
//! within the filesystem instead of a copy (and counts against the cap as it lands).
//!
//! Making and mounting need root (`CAP_SYS_ADMIN`), `mkfs.ext4` (e2fsprogs), and
//! `losetup` and `mount` (util-linux) with loop devices; `orien-node doctor` checks
//! them all.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::host_files::SANDBOX_ID;

/// Longest one of the host's programs (`mkfs.ext4`, `mount`, `umount`) may take.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The file whose presence in the container's `/workspace` shows that the engine sees
/// the mounted filesystem, not the empty directory beneath it. Removed once seen.
pub(crate) const MOUNT_MARK: &str = ".orien-mounted";

/// The tool's part of the filesystem: its `/workspace`.
const FILES: &str = "files";
/// The provider's part: uploads in progress.
const UPLOADS: &str = "uploads";

/// A mounted disk-backed workspace, as its session uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiskWorkspace {
    /// The tool's files: bind-mounted at `/workspace`, owned by the sandbox user.
    pub(crate) files: PathBuf,
    /// On the same filesystem, out of the tool's reach: the provider stages uploads
    /// here and renames each into `files` whole.
    pub(crate) uploads: PathBuf,
}

/// Why a disk-backed workspace could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The host's disk cannot hold the workspace's cap.
    #[error(
        "the provider's disk has no room for a {bytes}-byte workspace in {}: {source}",
        root.display()
    )]
    NoRoom {
        /// The workspaces directory.
        root: PathBuf,
        /// The cap asked for.
        bytes: u64,
        /// The error of the allocation.
        source: std::io::Error,
    },
    /// A file or directory of the workspace could not be made or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// What was being made or removed.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// One of the host's programs failed or could not be started.
    #[error("`{command}` failed: {detail}{}", hint(.command))]
    Program {
        /// The command line.
        command: String,
        /// Its exit status and error output, or why it could not run.
        detail: String,
    },
    /// The engine does not see the mounted filesystem (the node runs in a mount
    /// namespace of its own, as under systemd's `ProtectSystem=`): the container would
    /// write to the host's disk, so the session is refused.
    #[error(
        "the engine does not see the workspace mounted at {}: the node runs in a mount namespace of its own; run it in the host's (the shipped unit's `MountFlags=shared`, see configs/orien-node.service)",
        mount.display()
    )]
    NotShared {
        /// The mount point.
        mount: PathBuf,
    },
}

fn hint(command: &str) -> &'static str {
    if command.starts_with("mkfs") {
        " (disk-backed workspaces need e2fsprogs: `apt-get install e2fsprogs`)"
    } else if command.starts_with("mount") || command.starts_with("losetup") {
        " (disk-backed workspaces need root and loop devices: `orien-node doctor` checks both)"
    } else {
        ""
    }
}

/// Where a provider keeps its disk-backed workspaces.
#[derive(Debug, Clone)]
pub(crate) struct DiskWorkspaces {
    root: PathBuf,
}

impl DiskWorkspaces {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The mount point of workspace `name`.
    pub(crate) fn mount_point(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn image(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.img"))
    }

    /// Makes workspace `name` of `bytes` and mounts it; its `files` are empty but for
    /// [`MOUNT_MARK`], owned by the sandbox user with mode 0700. What a failed step
    /// made is removed again.
    pub(crate) async fn create(&self, name: &str, bytes: u64) -> Result<DiskWorkspace, DiskError> {
        let made = self.make(name, bytes).await;
        if made.is_err() {
            self.remove(name).await;
        }
        made
    }

    async fn make(&self, name: &str, bytes: u64) -> Result<DiskWorkspace, DiskError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DiskError::Io { path, source }
        };
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(io(&self.root))?;
        let image = self.image(name);
        let (root, path) = (self.root.clone(), image.clone());
        tokio::task::spawn_blocking(move || allocate(&root, &path, bytes))
            .await
            .map_err(|e| DiskError::Io {
                path: image.clone(),
                source: std::io::Error::other(e),
            })??;
        let mut mkfs = tokio::process::Command::new("mkfs.ext4");
        // No reserved blocks (the whole cap is the tool's), no journal (a crash means
        // the workspace is reaped, not repaired), no discard (it would punch the
        // allocated blocks out again), the root directory root's.
        mkfs.args(["-q", "-F", "-m", "0", "-O", "^has_journal", "-E"])
            .arg("root_owner=0:0,nodiscard,lazy_itable_init=1")
            .arg(&image);
        run(mkfs).await?;
        let mount = self.mount_point(name);
        // `files` beneath the mount too: an engine that does not see the mount binds
        // this empty directory, and the session's check finds no mark in it
        // (`DiskError::NotShared`), instead of failing on a missing bind source.
        let beneath = mount.join(FILES);
        match tokio::fs::create_dir_all(&beneath).await {
            Ok(()) => {}
            Err(e) => return Err(io(&beneath)(e)),
        }
        let device = attach(&image).await?;
        let mut command = tokio::process::Command::new("mount");
        command
            .args(["-t", "ext4", "-o", "nosuid,nodev,noexec,noatime"])
            .arg(&device)
            .arg(&mount);
        let mounted = run(command).await;
        // Detached now: a loop device in use is only marked to go with its last user,
        // the mount, so unmounting (or the reap of a crash's mount) frees it.
        let mut detach = tokio::process::Command::new("losetup");
        detach.arg("-d").arg(&device);
        if let Err(e) = run(detach).await {
            warn!(error = %e, "cannot mark the workspace's loop device to go with its mount");
        }
        mounted?;
        let lost = mount.join("lost+found");
        match tokio::fs::remove_dir(&lost).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io(&lost)(e)),
        }
        use std::os::unix::fs::PermissionsExt as _;
        let private = || std::fs::Permissions::from_mode(0o700);
        tokio::fs::set_permissions(&mount, private())
            .await
            .map_err(io(&mount))?;
        let workspace = DiskWorkspace {
            files: mount.join(FILES),
            uploads: mount.join(UPLOADS),
        };
        for dir in [&workspace.files, &workspace.uploads] {
            tokio::fs::create_dir(dir).await.map_err(io(dir))?;
            tokio::fs::set_permissions(dir, private())
                .await
                .map_err(io(dir))?;
        }
        // One quick system call on a directory just made: not worth a blocking task.
        std::os::unix::fs::chown(&workspace.files, Some(SANDBOX_ID), Some(SANDBOX_ID))
            .map_err(io(&workspace.files))?;
        let mark = workspace.files.join(MOUNT_MARK);
        tokio::fs::write(&mark, b"").await.map_err(io(&mark))?;
        info!(workspace = %mount.display(), bytes, "disk-backed workspace mounted");
        Ok(workspace)
    }

    /// Unmounts workspace `name` and removes its image and mount point; what is not
    /// there is skipped. Best effort: a failure is logged, and the reaper tries again.
    pub(crate) async fn remove(&self, name: &str) {
        let mount = self.mount_point(name);
        if is_mounted(&mount) {
            let mut umount = tokio::process::Command::new("umount");
            umount.arg(&mount);
            if let Err(e) = run(umount).await {
                // Still busy (a process of the host holds a file): detach it now; the
                // kernel lets the filesystem go with its last user.
                warn!(error = %e, "unmount failed; detaching the workspace lazily");
                let mut lazy = tokio::process::Command::new("umount");
                lazy.arg("-l").arg(&mount);
                if let Err(e) = run(lazy).await {
                    warn!(error = %e, workspace = %mount.display(), "cannot unmount the workspace; the reaper will retry");
                    return;
                }
            }
        }
        for result in [
            tokio::fs::remove_dir(mount.join(FILES)).await,
            tokio::fs::remove_dir(&mount).await,
            tokio::fs::remove_file(self.image(name)).await,
        ] {
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => warn!(error = %e, name, "cannot remove the workspace's files"),
            }
        }
        debug!(name, "disk-backed workspace removed");
    }

    /// Names of the workspaces under the directory that start with `prefix` (images and
    /// mount points alike).
    pub(crate) async fn names(&self, prefix: &str) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        let Ok(mut dir) = tokio::fs::read_dir(&self.root).await else {
            return Vec::new();
        };
        while let Ok(Some(entry)) = dir.next_entry().await {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let name = file.strip_suffix(".img").unwrap_or(file);
            if name.starts_with(prefix) {
                names.insert(name.to_owned());
            }
        }
        names.into_iter().collect()
    }
}

/// A free loop device backed by `image`, with direct I/O where the host's filesystem
/// allows it (the workspace's writes then reach the image once, not through a second
/// page cache: a 1 GiB copy took 1.1 s instead of 2.2 s here).
async fn attach(image: &Path) -> Result<String, DiskError> {
    let setup = |direct: bool| {
        let mut losetup = tokio::process::Command::new("losetup");
        losetup.args(["--find", "--show"]);
        if direct {
            losetup.arg("--direct-io=on");
        }
        losetup.arg(image);
        losetup
    };
    let device = match run(setup(true)).await {
        Ok(out) => out,
        Err(e) => {
            debug!(error = %e, "no direct I/O for the workspace's loop device");
            run(setup(false)).await?
        }
    };
    let device = device.trim().to_owned();
    if !device.starts_with("/dev/") {
        return Err(DiskError::Program {
            command: "losetup --find --show".into(),
            detail: format!("answered `{device}`, not a device"),
        });
    }
    Ok(device)
}

/// Creates `image` (it must not exist) and allocates `bytes` for it.
fn allocate(root: &Path, image: &Path, bytes: u64) -> Result<(), DiskError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(image)
        .map_err(|source| DiskError::Io {
            path: image.to_owned(),
            source,
        })?;
    let len = i64::try_from(bytes).unwrap_or(i64::MAX);
    nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, len).map_err(|e| {
        DiskError::NoRoom {
            root: root.to_owned(),
            bytes,
            source: std::io::Error::from(e),
        }
    })
}

/// Runs `command` to its end within [`PROGRAM_TIMEOUT`]; its standard output, or its
/// error output as the error's detail.
async fn run(mut command: tokio::process::Command) -> Result<String, DiskError> {
    let line = format!("{:?}", command.as_std())
        .replace('"', "")
        .trim()
        .to_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let failed = |detail: String| DiskError::Program {
        command: line.clone(),
        detail,
    };
    let output = match tokio::time::timeout(PROGRAM_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(failed(format!("cannot run it: {e}"))),
        Err(_) => return Err(failed(format!("no end after {PROGRAM_TIMEOUT:?}"))),
    };
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(failed(format!("{}: {}", output.status, stderr.trim())))
}

/// Whether a filesystem is mounted at `path` (in this process's mount namespace).
pub(crate) fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| mount_points(&info).any(|p| p == path))
        .unwrap_or(false)
}

/// The mount points listed in a `/proc/<pid>/mountinfo` text (its fifth field, with the
/// kernel's octal escapes of spaces and the like undone).
fn mount_points(info: &str) -> impl Iterator<Item = PathBuf> + '_ {
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| {
                let value = u16::from(d[0] - b'0') * 64
                    + u16::from(d[1] - b'0') * 8
                    + u16::from(d[2] - b'0');
                u8::try_from(value).ok()
            });
        if let Some(code) = code {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt as _;
    std::ffi::OsString::from_vec(out)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_with_their_escapes_undone() {
        let info = "24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw\n\
                    45 27 7:0 / /var/lib/my\\040data/ws rw,nosuid - ext4 /dev/loop0 rw\n";
        let points: Vec<PathBuf> = mount_points(info).collect();
        assert_eq!(
            points,
            [PathBuf::from("/dev"), PathBuf::from("/var/lib/my data/ws")]
        );
        assert_eq!(unescape("a\\011b\\134"), "a\tb\\");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
