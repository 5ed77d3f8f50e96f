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

use std::collections::HashMap;
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
    /// The copies of each session, oldest first.
    snapshots: Mutex<HashMap<SessionId, Vec<(String, Snapshot)>>>,
    /// Copies taken, to name each apart from the one it replaces.
    copies: AtomicU64,
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
            root,
            snapshots: Mutex::default(),
            copies: AtomicU64::new(0),
        })
    }

    /// Where it is.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn session_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(session.to_string())
    }

    /// The staged file of an upload of `size` bytes to `key` (its directory made).
    pub(crate) fn upload_file(
        &self,
        session: SessionId,
        key: &str,
        size: u64,
    ) -> std::io::Result<PathBuf> {
        let dir = self.session_dir(session);
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

    /// Bytes the session holds staged, besides `except`.
    pub(crate) fn held(&self, session: SessionId, except: Option<&Path>) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.session_dir(session)) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| Some(e.path().as_path()) != except)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
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

    /// Removes everything the session staged.
    pub(crate) fn forget(&self, session: SessionId) {
        self.snapshots().remove(&session);
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
        // The same path and size find the same file; another size does not.
        assert_eq!(staging.upload_file(session, path("a/b"), 10).unwrap(), file);
        assert_ne!(staging.upload_file(session, path("a/b"), 11).unwrap(), file);
        staging.forget(session);
        assert!(!file.exists());
        assert_eq!(staging.held(session, None), 0);
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
