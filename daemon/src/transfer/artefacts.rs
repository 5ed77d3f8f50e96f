//! The provider's artefacts: at the end of a call that named output paths, a copy of
//! each regular file there, hashed, kept under `<staging>/artefacts/<session>/` and
//! named in the call's signed result. The session's renter fetches one by its path and
//! SHA-256 on a transfer stream — while the session is open, and for as long after its
//! close as the provider keeps artefacts (`--keep-artefacts-secs`); whatever the tool
//! does to the workspace meanwhile, the bytes are the ones the result names.
//!
//! A session's artefacts together hold at most its workspace's quota. They live on the
//! provider's disk and do not survive its restart (the staging area is emptied at
//! start).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use orien_protocol::{Artefact, ArtefactKept, ContentHash, NodeId, SessionId};
use orien_provider::{ProviderError, SandboxSession, WorkspacePath};
use tracing::{debug, warn};

use super::staging::Snapshot;

/// The artefacts of every session of one provider.
#[derive(Debug)]
pub(crate) struct Artefacts {
    root: PathBuf,
    sessions: Mutex<HashMap<SessionId, Kept>>,
    copies: AtomicU64,
}

/// What one session's calls left.
#[derive(Debug)]
struct Kept {
    renter: NodeId,
    /// Set at the session's close: when its artefacts go.
    until: Option<Instant>,
    files: Vec<(WorkspacePath, Snapshot)>,
}

impl Kept {
    fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, s)| s.size).sum()
    }
}

impl Artefacts {
    /// The artefacts kept under `root` (a directory of the emptied staging area).
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            sessions: Mutex::default(),
            copies: AtomicU64::new(0),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<SessionId, Kept>> {
        // Plain collections: a panic elsewhere cannot leave them inconsistent.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a copy of each of `outputs` of the session's workspace, for `renter`, and
    /// says what became of each, in order. The session's artefacts stay within
    /// `quota` together; one that would pass it is not kept.
    pub(crate) async fn keep(
        &self,
        session: SessionId,
        renter: NodeId,
        sandbox: &dyn SandboxSession,
        outputs: &[WorkspacePath],
    ) -> Vec<Artefact> {
        let quota = sandbox.workspace_quota();
        self.purge(Instant::now());
        self.sessions().entry(session).or_insert_with(|| Kept {
            renter,
            until: None,
            files: Vec::new(),
        });
        let mut kept = Vec::with_capacity(outputs.len());
        for path in outputs {
            let outcome = self.keep_one(session, sandbox, path, quota).await;
            kept.push(Artefact {
                path: path.to_string(),
                kept: outcome,
            });
        }
        kept
    }

    async fn keep_one(
        &self,
        session: SessionId,
        sandbox: &dyn SandboxSession,
        path: &WorkspacePath,
        quota: u64,
    ) -> ArtefactKept {
        let dir = self.root.join(session.to_string());
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            warn!(error = %e, "cannot make the artefacts' directory");
            return ArtefactKept::Failed;
        }
        let copy = self.copies.fetch_add(1, Ordering::Relaxed);
        let file = dir.join(copy.to_string());
        let copied = sandbox.download_to(path, &file).await;
        let outcome = match copied {
            Ok((size, sha256)) => {
                let mut sessions = self.sessions();
                if let Some(entry) = sessions.get_mut(&session)
                    && entry.bytes().saturating_add(size) <= quota
                {
                    entry.files.push((
                        path.clone(),
                        Snapshot {
                            file: file.clone(),
                            size,
                            sha256,
                        },
                    ));
                    return ArtefactKept::File { size, sha256 };
                }
                ArtefactKept::NoRoom
            }
            Err(ProviderError::NotFound(_)) => ArtefactKept::Missing,
            Err(ProviderError::NotAFile(_)) => ArtefactKept::NotAFile,
            Err(ProviderError::TooLarge { .. } | ProviderError::WorkspaceFull { .. }) => {
                ArtefactKept::NoRoom
            }
            Err(ProviderError::HostDisk(e)) if super::serve::is_disk_full(&e) => {
                ArtefactKept::NoRoom
            }
            Err(e) => {
                warn!(%path, error = %e, "cannot keep an artefact");
                ArtefactKept::Failed
            }
        };
        let _ = tokio::fs::remove_file(&file).await;
        outcome
    }

    /// The copy of `path` with hash `sha256` that `peer`, the session's renter, may
    /// fetch now.
    pub(crate) fn find(
        &self,
        session: SessionId,
        peer: NodeId,
        path: &str,
        sha256: ContentHash,
    ) -> Option<Snapshot> {
        self.purge(Instant::now());
        let sessions = self.sessions();
        let kept = sessions.get(&session).filter(|k| k.renter == peer)?;
        kept.files
            .iter()
            .find(|(p, s)| p.as_str() == path && s.sha256 == sha256)
            .map(|(_, s)| s.clone())
    }

    /// The session closed: its artefacts go after `keep_for` (at once when zero).
    pub(crate) fn closed(&self, session: SessionId, keep_for: Duration) {
        let now = Instant::now();
        if let Some(kept) = self.sessions().get_mut(&session) {
            kept.until = Some(now + keep_for);
        }
        self.purge(now);
    }

    /// Removes the artefacts of sessions closed longer ago than they are kept.
    pub(crate) fn purge(&self, now: Instant) {
        let gone: Vec<SessionId> = {
            let mut sessions = self.sessions();
            let gone: Vec<SessionId> = sessions
                .iter()
                .filter(|(_, k)| k.until.is_some_and(|until| now >= until))
                .map(|(id, _)| *id)
                .collect();
            for id in &gone {
                sessions.remove(id);
            }
            gone
        };
        for session in gone {
            let dir = self.root.join(session.to_string());
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => debug!(%session, "artefacts removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(%session, error = %e, "cannot remove a session's artefacts"),
            }
        }
    }
}
