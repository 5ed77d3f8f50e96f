//! The provider's staging area: each upload is written to its own file on the
//! provider's disk as its chunks are verified, and goes into the workspace only whole
//! and matching its hash; each download is sent from a copy taken of the file, so a
//! resumed download gets the same bytes even if a tool changed the file since.
//!
//! `<root>/<session>/put-<key>` holds an upload in progress (the key hashes the path
//! and size, so a resume finds it), `<root>/<session>/get-<key>` the copy of a file
//! being downloaded. A session's directory is removed when the session ends, and the
//! whole area when the node starts (transfers do not outlive a crash). What a session
//! stages counts against its workspace cap.
//!
//! A session whose sandbox offers a place for uploads on the workspace's own
//! filesystem (a disk-backed workspace's, [`SandboxSession::upload_staging`]) stages
//! its uploads there instead, `put-<key>` alike: a finished one goes in by a rename,
//! not a copy, and the workspace goes with its staged files when the session ends.
//!
//! [`SandboxSession::upload_staging`]: orien_provider::SandboxSession::upload_staging

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use orien_protocol::{ContentHash, SessionId};
use sha2::{Digest, Sha256};
use tracing::warn;

/// A copy of a workspace file, taken for downloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Where the copy is.
    pub(crate) file: PathBuf,
    /// Its size.
    pub(crate) size: u64,
    /// Its SHA-256.
    pub(crate) sha256: ContentHash,
}

/// The provider's staging area.
#[derive(Debug)]
pub(crate) struct Staging {
    root: PathBuf,
    /// What calls left at their output paths, kept for their renters.
    pub(crate) artefacts: super::artefacts::Artefacts,
    /// The copies of each session, oldest first.
    snapshots: Mutex<HashMap<SessionId, Vec<(String, Snapshot)>>>,
    /// Copies taken, to name each apart from the one it replaces.
    copies: AtomicU64,
    /// Uploads being written now (one writer per staged file).
    writing: Mutex<HashSet<PathBuf>>,
    /// Sessions whose uploads are staged outside the area, in their workspace's own
    /// filesystem.
    uploads_in: Mutex<HashMap<SessionId, PathBuf>>,
}

/// The one writer of a staged upload, until dropped.
#[derive(Debug)]
pub(crate) struct Writing<'a> {
    staging: &'a Staging,
    file: PathBuf,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.staging.writing().remove(&self.file);
    }
}

impl Staging {
    /// The area at `root`, emptied of whatever an earlier run left.
    pub(crate) fn new(root: PathBuf) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            artefacts: super::artefacts::Artefacts::new(root.join("artefacts")),
            root,
            snapshots: Mutex::default(),
            copies: AtomicU64::new(0),
            writing: Mutex::default(),
            uploads_in: Mutex::default(),
        })
    }

    /// Where it is.
    #[cfg(test)]
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn session_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(session.to_string())
    }

    /// Stages the session's uploads in `dir` (on its workspace's filesystem) from now
    /// on, instead of in the area.
    pub(crate) fn stage_uploads_in(&self, session: SessionId, dir: PathBuf) {
        self.uploads_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session, dir);
    }

    /// Where the session's uploads are staged.
    fn uploads_dir(&self, session: SessionId) -> PathBuf {
        self.uploads_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&session)
            .cloned()
            .unwrap_or_else(|| self.session_dir(session))
    }

    /// The staged file of an upload of `size` bytes to `key` (its directory made).
    pub(crate) fn upload_file(
        &self,
        session: SessionId,
        key: &str,
        size: u64,
    ) -> std::io::Result<PathBuf> {
        let dir = self.uploads_dir(session);
        std::fs::create_dir_all(&dir)?;
        let mut hash = Sha256::new();
        hash.update(key.as_bytes());
        hash.update(size.to_be_bytes());
        Ok(dir.join(format!("put-{}", hex::encode(&hash.finalize()[..16]))))
    }

    /// Where a new copy of `key` is written before it replaces the old one.
    pub(crate) fn snapshot_file(&self, session: SessionId, key: &str) -> std::io::Result<PathBuf> {
        let dir = self.session_dir(session);
        std::fs::create_dir_all(&dir)?;
        let key = Sha256::digest(key.as_bytes());
        let copy = self.copies.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!("get-{}-{copy}", hex::encode(&key[..16]))))
    }

    /// Bytes the session holds staged (uploads and download copies), besides
    /// `except`.
    #[cfg(test)]
    pub(crate) fn held(&self, session: SessionId, except: Option<&Path>) -> u64 {
        let (area, uploads) = (self.session_dir(session), self.uploads_dir(session));
        let elsewhere = if uploads == area {
            0
        } else {
            staged(&uploads, except, |_| true)
        };
        staged(&area, except, |_| true) + elsewhere
    }

    /// Bytes of the session's uploads in progress, besides `except`: what counts
    /// against its workspace cap (its download copies are capped on their own, by
    /// [`keep_snapshot`](Self::keep_snapshot)).
    pub(crate) fn uploading(&self, session: SessionId, except: Option<&Path>) -> u64 {
        staged(&self.uploads_dir(session), except, |name| {
            name.starts_with("put-")
        })
    }

    /// Becomes the one writer of the staged upload `file`; `None` while another stream
    /// writes it (a resume that arrived before the broken stream let go).
    pub(crate) fn write(&self, file: &Path) -> Option<Writing<'_>> {
        self.writing().insert(file.to_owned()).then(|| Writing {
            staging: self,
            file: file.to_owned(),
        })
    }

    /// Makes room for `need` more bytes of uploads of `session` within `quota`,
    /// removing the uploads left by cut-off transfers that nobody writes now, oldest
    /// first; whether it fits.
    pub(crate) fn make_room(&self, session: SessionId, need: u64, quota: u64, keep: &Path) -> bool {
        let fits =
            |staging: &Self| staging.uploading(session, Some(keep)).saturating_add(need) <= quota;
        if fits(self) {
            return true;
        }
        let Ok(entries) = std::fs::read_dir(self.uploads_dir(session)) else {
            return false;
        };
        let writing = self.writing().clone();
        let mut idle: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("put-"))
            .map(|e| e.path())
            .filter(|p| p != keep && !writing.contains(p))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        idle.sort();
        for (_, file) in idle {
            if fits(self) {
                break;
            }
            let _ = std::fs::remove_file(&file);
        }
        fits(self)
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The copy of `key` the session holds, if its hash is `sha256`.
    pub(crate) fn snapshot(
        &self,
        session: SessionId,
        key: &str,
        sha256: ContentHash,
    ) -> Option<Snapshot> {
        self.snapshots()
            .get(&session)?
            .iter()
            .rev()
            .find(|(k, s)| k == key && s.sha256 == sha256)
            .map(|(_, s)| s.clone())
    }

    /// Keeps a new copy of `key`; the session's oldest copies are removed while all
    /// together exceed `quota`, and an older copy of the same key with them.
    pub(crate) fn keep_snapshot(
        &self,
        session: SessionId,
        key: &str,
        snapshot: Snapshot,
        quota: u64,
    ) {
        let mut all = self.snapshots();
        let kept = all.entry(session).or_default();
        let mut removed: Vec<PathBuf> = Vec::new();
        kept.retain(|(k, s)| {
            let same = k == key;
            if same {
                removed.push(s.file.clone());
            }
            !same
        });
        kept.push((key.to_owned(), snapshot));
        while kept.len() > 1 && kept.iter().map(|(_, s)| s.size).sum::<u64>() > quota {
            removed.push(kept.remove(0).1.file);
        }
        drop(all);
        for file in removed {
            if let Err(e) = std::fs::remove_file(&file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(file = %file.display(), error = %e, "cannot remove a download copy");
            }
        }
    }

    /// Removes everything the session staged (what it staged in its workspace goes
    /// with the workspace).
    pub(crate) fn forget(&self, session: SessionId) {
        self.snapshots().remove(&session);
        self.uploads_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session);
        let dir = self.session_dir(session);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot remove a session's staged files")
            }
        }
    }

    fn snapshots(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Vec<(String, Snapshot)>>> {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Bytes of the files in `dir` whose names `keep` takes, besides `except`.
fn staged(dir: &Path, except: Option<&Path>, keep: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| Some(e.path().as_path()) != except)
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The staging area of the node whose ledger is at `ledger`: `transfers` beside it.
pub(crate) fn beside(ledger: &Path) -> PathBuf {
    ledger.with_file_name("transfers")
}

/// Free bytes on the filesystem holding `dir`, for unprivileged users.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    // Both are `u64` on 64-bit Linux, narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Some(blocks.saturating_mul(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> &str {
        p
    }

    #[test]
    fn a_new_area_is_empty_and_sessions_are_forgotten_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("transfers");
        let session = SessionId::random();
        std::fs::create_dir_all(root.join("leftover")).unwrap();
        let staging = Staging::new(root.clone()).unwrap();
        assert!(!root.join("leftover").exists());
        let file = staging.upload_file(session, path("a/b"), 10).unwrap();
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(staging.held(session, None), 5);
        assert_eq!(staging.held(session, Some(&file)), 0);
        let copy = staging.snapshot_file(session, "c").unwrap();
        std::fs::write(&copy, b"123").unwrap();
        assert_eq!(staging.held(session, None), 8);
        assert_eq!(
            staging.uploading(session, None),
            5,
            "download copies do not count against uploads"
        );
        // The same path and size find the same file; another size does not.
        assert_eq!(staging.upload_file(session, path("a/b"), 10).unwrap(), file);
        assert_ne!(staging.upload_file(session, path("a/b"), 11).unwrap(), file);
        staging.forget(session);
        assert!(!file.exists());
        assert_eq!(staging.held(session, None), 0);
    }

    #[test]
    fn one_writer_per_upload_and_abandoned_uploads_make_room_for_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path().join("t")).unwrap();
        let session = SessionId::random();
        let old = staging.upload_file(session, "old", 6).unwrap();
        std::fs::write(&old, b"abcdef").unwrap();
        let busy = staging.upload_file(session, "busy", 3).unwrap();
        std::fs::write(&busy, b"xyz").unwrap();
        let writer = staging.write(&busy).unwrap();
        assert!(staging.write(&busy).is_none(), "one writer at a time");
        let new = staging.upload_file(session, "new", 5).unwrap();
        // 5 new bytes with 9 held do not fit 10: the idle upload goes, the busy one stays.
        assert!(staging.make_room(session, 5, 10, &new));
        assert!(!old.exists() && busy.exists());
        // 8 more cannot fit beside the 3 being written.
        assert!(!staging.make_room(session, 8, 10, &new));
        assert!(busy.exists());
        drop(writer);
        assert!(
            staging.write(&busy).is_some(),
            "free once the writer is gone"
        );
    }

    #[test]
    fn uploads_staged_in_a_workspace_count_there_and_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path().join("t")).unwrap();
        let workspace = dir.path().join("workspace-uploads");
        std::fs::create_dir(&workspace).unwrap();
        let session = SessionId::random();
        staging.stage_uploads_in(session, workspace.clone());
        let file = staging.upload_file(session, "a", 4).unwrap();
        assert_eq!(file.parent(), Some(workspace.as_path()));
        std::fs::write(&file, b"abcd").unwrap();
        let copy = staging.snapshot_file(session, "b").unwrap();
        assert!(
            copy.starts_with(staging.root()),
            "download copies stay in the area"
        );
        std::fs::write(&copy, b"xy").unwrap();
        assert_eq!(staging.uploading(session, None), 4);
        assert_eq!(staging.held(session, None), 6);
        let other = staging.upload_file(session, "c", 8).unwrap();
        assert!(
            staging.make_room(session, 8, 10, &other),
            "the idle upload goes"
        );
        assert!(!file.exists());
        std::fs::write(&file, b"abcd").unwrap();
        staging.forget(session);
        assert!(!copy.exists());
        assert!(
            file.exists(),
            "left to the workspace, which goes with the session"
        );
        assert_eq!(
            staging.upload_file(session, "a", 4).unwrap().parent(),
            Some(staging.session_dir(session).as_path()),
            "forgotten"
        );
    }

    #[test]
    fn copies_over_the_quota_are_dropped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::new(dir.path().join("t")).unwrap();
        let session = SessionId::random();
        let keep = |name: &str, size: u64| {
            let file = staging.snapshot_file(session, path(name)).unwrap();
            std::fs::write(&file, vec![0u8; size as usize]).unwrap();
            let snapshot = Snapshot {
                file: file.clone(),
                size,
                sha256: ContentHash::of(name.as_bytes()),
            };
            staging.keep_snapshot(session, path(name), snapshot, 10);
            file
        };
        let a = keep("a", 4);
        let b = keep("b", 4);
        assert!(a.exists() && b.exists());
        let c = keep("c", 4);
        assert!(!a.exists(), "the oldest copy goes past the quota");
        assert!(b.exists() && c.exists());
        let b2 = keep("b", 1);
        assert!(!b.exists(), "a new copy of a path replaces the old");
        assert!(b2.exists());
        let sha = ContentHash::of(b"b");
        assert_eq!(staging.snapshot(session, path("b"), sha).unwrap().size, 1);
        assert!(
            staging
                .snapshot(session, path("a"), ContentHash::of(b"a"))
                .is_none()
        );
    }
}
