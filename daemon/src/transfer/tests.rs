//! The provider's end of the transfer protocol, driven frame by frame over an
//! in-memory pipe, with a modelled sandbox: no sockets, no sleeps.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt as _;
use orien_protocol::transfer::{
    CHUNK_BYTES, Chunk, DownloadFrame, Refusal, TransferRefusal, TransferReply, TransferRequest,
    UploadFrame, UploadReply,
};
use orien_protocol::{ArtefactKept, ContentHash, NodeId, NodeKey, SessionId, ToolName};
use orien_provider::model::{ModelRun, ModelSandbox};
use orien_provider::{ProviderConfig, Sandbox, SandboxSession, Tool, WorkspacePath};
use tokio::sync::Semaphore;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _};

use super::serve::{Lease, Leases, serve};
use super::staging::Staging;
use crate::network::frame::{read_frame, write_frame};

const TOOLS: &str = r#"
[tools.store]
description = "Holds files."
version = "1"
image = "orien/model:1"
argv = ["true"]
schema = '{"type": "object", "additionalProperties": false}'

[tools.store.limits]
max_exec_ms = 1_000
cpus = 0.5
memory = "64MiB"
pids = 16
tmpfs = "8MiB"
output = "64KiB"
workspace = "4MiB"
upload = "2MiB"
concurrent_execs = 1

[tools.store.pricing]
session_per_minute = "0.060000"
exec_per_minute = "0.600000"
"#;

fn tools() -> Vec<Tool> {
    ProviderConfig::parse(TOOLS, Path::new("transfer-tests.toml"))
        .expect("the tools parse")
        .1
}

/// One open session of `renter`, with its sandbox.
struct OneSession {
    session: SessionId,
    renter: NodeId,
    sandbox: Arc<dyn SandboxSession>,
    turns: Arc<Semaphore>,
}

impl Leases for OneSession {
    fn lease(&self, session: SessionId, peer: NodeId) -> Result<Lease, Refusal> {
        if session != self.session || peer != self.renter {
            return Err(Refusal::new(TransferRefusal::NotAuthorised, "not yours"));
        }
        let turn = self
            .turns
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::new(TransferRefusal::Busy, "busy"))?;
        Ok(Lease {
            sandbox: self.sandbox.clone(),
            _turn: turn,
        })
    }
}

struct Provider {
    leases: Arc<OneSession>,
    staging: Arc<Staging>,
    _dir: tempfile::TempDir,
}

async fn provider() -> Provider {
    let sandbox = ModelSandbox::new(
        NodeKey::generate().node_id(),
        tools(),
        |_: &Tool, _: &serde_json::Value| ModelRun::exits_after(Duration::ZERO, Vec::new()),
    );
    let session = SessionId::random();
    let opened = sandbox
        .open_session(session, &ToolName::new("store").unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    Provider {
        leases: Arc::new(OneSession {
            session,
            renter: NodeKey::generate().node_id(),
            sandbox: Arc::from(opened),
            turns: Arc::new(Semaphore::new(2)),
        }),
        staging: Arc::new(Staging::new(dir.path().join("transfers")).unwrap()),
        _dir: dir,
    }
}

impl Provider {
    /// A stream to the provider, served as from `peer`.
    fn connect(&self, peer: NodeId) -> Compat<tokio::io::DuplexStream> {
        let (ours, theirs) = tokio::io::duplex(4 * CHUNK_BYTES);
        let leases = self.leases.clone();
        let staging = self.staging.clone();
        tokio::spawn(async move {
            serve(theirs.compat(), peer, leases.as_ref(), &staging).await;
        });
        ours.compat()
    }

    fn renter(&self) -> NodeId {
        self.leases.renter
    }

    fn put(&self, path: &str, size: u64, resume: bool) -> TransferRequest {
        TransferRequest::Put {
            session: self.leases.session,
            path: path.into(),
            size,
            resume,
            archive: false,
        }
    }
}

type Pipe = Compat<tokio::io::DuplexStream>;

async fn send<T: orien_protocol::wire::Message>(pipe: &mut Pipe, value: &T) {
    write_frame(pipe, value).await.unwrap();
    pipe.flush().await.unwrap();
}

async fn read<T: orien_protocol::wire::Message>(pipe: &mut Pipe) -> T {
    read_frame::<T, _>(pipe).await.unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn a_corrupt_chunk_is_refused_and_the_upload_resumes_after_the_last_good_one() {
    let provider = provider().await;
    let file = data(CHUNK_BYTES * 2 + 100);
    let size = file.len() as u64;
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &provider.put("out/big.bin", size, false)).await;
    let ready: TransferReply = read(&mut pipe).await;
    assert_eq!(
        ready,
        TransferReply::Ready {
            offset: 0,
            size,
            sha256: None
        }
    );
    send(
        &mut pipe,
        &UploadFrame::Chunk(Chunk::new(0, file[..CHUNK_BYTES].to_vec())),
    )
    .await;
    // Chunks are acknowledged a MiB at a time and at the end, not one by one.
    let mut bad = Chunk::new(
        CHUNK_BYTES as u64,
        file[CHUNK_BYTES..CHUNK_BYTES * 2].to_vec(),
    );
    bad.data[7] ^= 0xff;
    send(&mut pipe, &UploadFrame::Chunk(bad)).await;
    let UploadReply::Failed(refusal) = read::<UploadReply>(&mut pipe).await else {
        panic!("a corrupt chunk is refused");
    };
    assert_eq!(refusal.code, TransferRefusal::Corrupt);

    // A new stream resumes where the verified bytes end.
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &provider.put("out/big.bin", size, true)).await;
    let ready: TransferReply = read(&mut pipe).await;
    assert_eq!(
        ready,
        TransferReply::Ready {
            offset: CHUNK_BYTES as u64,
            size,
            sha256: None
        }
    );
    for start in [CHUNK_BYTES, CHUNK_BYTES * 2] {
        let end = (start + CHUNK_BYTES).min(file.len());
        let chunk = Chunk::new(start as u64, file[start..end].to_vec());
        send(&mut pipe, &UploadFrame::Chunk(chunk)).await;
    }
    assert_eq!(
        read::<UploadReply>(&mut pipe).await,
        UploadReply::Ack { offset: size },
        "the last chunk is acknowledged with the rest"
    );
    let sha256 = ContentHash::of(&file);
    send(
        &mut pipe,
        &UploadFrame::End {
            sha256: Some(sha256),
        },
    )
    .await;
    assert_eq!(
        read::<UploadReply>(&mut pipe).await,
        UploadReply::Stored { sha256 }
    );
    let path = WorkspacePath::new("out/big.bin").unwrap();
    assert_eq!(provider.leases.sandbox.download(&path).await.unwrap(), file);
    assert_eq!(
        provider.staging.held(provider.leases.session, None),
        0,
        "the staged copy is gone once the file is in the workspace"
    );
}

#[tokio::test]
async fn a_whole_that_misses_its_hash_never_reaches_the_workspace() {
    let provider = provider().await;
    let file = data(1000);
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &provider.put("f", 1000, false)).await;
    let _: TransferReply = read(&mut pipe).await;
    send(&mut pipe, &UploadFrame::Chunk(Chunk::new(0, file.clone()))).await;
    let _: UploadReply = read(&mut pipe).await;
    send(
        &mut pipe,
        &UploadFrame::End {
            sha256: Some(ContentHash::of(b"other")),
        },
    )
    .await;
    let UploadReply::Failed(refusal) = read::<UploadReply>(&mut pipe).await else {
        panic!("refused");
    };
    assert_eq!(refusal.code, TransferRefusal::Corrupt);
    let path = WorkspacePath::new("f").unwrap();
    assert!(provider.leases.sandbox.download(&path).await.is_err());
    assert_eq!(provider.staging.held(provider.leases.session, None), 0);
}

#[tokio::test]
async fn strangers_oversized_uploads_and_bad_paths_are_refused_before_a_byte() {
    let provider = provider().await;
    let refusal = |reply: TransferReply| match reply {
        TransferReply::Refused(refusal) => refusal.code,
        other => panic!("not refused: {other:?}"),
    };
    // Another peer than the session's renter.
    let mut pipe = provider.connect(NodeKey::generate().node_id());
    send(&mut pipe, &provider.put("f", 10, false)).await;
    assert_eq!(
        refusal(read(&mut pipe).await),
        TransferRefusal::NotAuthorised
    );
    // Over the tool's upload limit (2 MiB).
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &provider.put("f", (2 << 20) + 1, false)).await;
    assert_eq!(refusal(read(&mut pipe).await), TransferRefusal::TooLarge);
    // Out of the workspace.
    for path in ["../escape", "/etc/passwd", "a/../../b"] {
        let mut pipe = provider.connect(provider.renter());
        send(&mut pipe, &provider.put(path, 10, false)).await;
        assert_eq!(
            refusal(read(&mut pipe).await),
            TransferRefusal::BadPath,
            "{path}"
        );
    }
    assert_eq!(provider.staging.held(provider.leases.session, None), 0);
}

#[tokio::test]
async fn a_download_resumes_from_the_same_copy_and_refuses_a_copy_it_no_longer_holds() {
    let provider = provider().await;
    let file = data(CHUNK_BYTES + 10);
    let path = WorkspacePath::new("r.bin").unwrap();
    provider.leases.sandbox.upload(&path, &file).await.unwrap();
    let get = |offset: u64, expect: Option<ContentHash>| TransferRequest::Get {
        session: provider.leases.session,
        path: "r.bin".into(),
        offset,
        expect,
        archive: false,
    };
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &get(0, None)).await;
    let sha256 = ContentHash::of(&file);
    let size = file.len() as u64;
    assert_eq!(
        read::<TransferReply>(&mut pipe).await,
        TransferReply::Ready {
            offset: 0,
            size,
            sha256: Some(sha256)
        }
    );
    let DownloadFrame::Chunk(first) = read::<DownloadFrame>(&mut pipe).await else {
        panic!("a chunk");
    };
    assert!(first.is_intact());
    drop(pipe);

    // The tool changes the file; the resume still gets the copy's bytes.
    provider
        .leases
        .sandbox
        .upload(&path, b"changed")
        .await
        .unwrap();
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &get(first.end(), Some(sha256))).await;
    assert_eq!(
        read::<TransferReply>(&mut pipe).await,
        TransferReply::Ready {
            offset: first.end(),
            size,
            sha256: Some(sha256)
        }
    );
    let DownloadFrame::Chunk(rest) = read::<DownloadFrame>(&mut pipe).await else {
        panic!("a chunk");
    };
    let mut whole = first.data.clone();
    whole.extend_from_slice(&rest.data);
    assert_eq!(whole, file);

    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &get(0, Some(ContentHash::of(b"never sent")))).await;
    let TransferReply::Refused(refusal) = read::<TransferReply>(&mut pipe).await else {
        panic!("refused");
    };
    assert_eq!(refusal.code, TransferRefusal::Changed);
}

#[tokio::test]
async fn an_artefact_goes_to_its_renter_only_and_only_while_it_is_kept() {
    let provider = provider().await;
    let session = provider.leases.session;
    let path = WorkspacePath::new("out/a.bin").unwrap();
    let file = data(CHUNK_BYTES + 3);
    provider.leases.sandbox.upload(&path, &file).await.unwrap();
    // (A directory's `NotAFile` is the Docker sandbox's to say: `tests/artefacts.rs`.)
    let outputs = [path.clone(), WorkspacePath::new("out/none").unwrap()];
    let kept = provider
        .staging
        .artefacts
        .keep(
            session,
            provider.renter(),
            provider.leases.sandbox.as_ref(),
            &outputs,
        )
        .await;
    let sha256 = ContentHash::of(&file);
    let kinds: Vec<ArtefactKept> = kept.iter().map(|a| a.kept).collect();
    assert_eq!(
        kinds,
        [
            ArtefactKept::File {
                size: file.len() as u64,
                sha256
            },
            ArtefactKept::Missing,
        ]
    );
    let get = TransferRequest::Get {
        session,
        path: "out/a.bin".into(),
        offset: 0,
        expect: Some(sha256),
        archive: false,
    };
    // The tool changes the file; the artefact stays the call's.
    provider
        .leases
        .sandbox
        .upload(&path, b"later")
        .await
        .unwrap();
    let fetch = |peer: NodeId| {
        let mut pipe = provider.connect(peer);
        let get = get.clone();
        async move {
            send(&mut pipe, &get).await;
            read::<TransferReply>(&mut pipe).await
        }
    };
    let ready = TransferReply::Ready {
        offset: 0,
        size: file.len() as u64,
        sha256: Some(sha256),
    };
    assert_eq!(fetch(provider.renter()).await, ready);
    // Nobody else, though they name the session and the hash.
    let TransferReply::Refused(refusal) = fetch(NodeKey::generate().node_id()).await else {
        panic!("a stranger is refused");
    };
    assert_eq!(refusal.code, TransferRefusal::NotAuthorised);
    // After the close, while kept; then gone, and its copy with it.
    provider
        .staging
        .artefacts
        .closed(session, Duration::from_secs(3600));
    assert_eq!(fetch(provider.renter()).await, ready);
    provider.staging.artefacts.closed(session, Duration::ZERO);
    assert!(!matches!(
        fetch(provider.renter()).await,
        TransferReply::Ready { .. }
    ));
    let left = provider
        .staging
        .root()
        .join("artefacts")
        .join(session.to_string());
    assert!(!left.exists(), "{left:?} was removed");
}

/// A tmpfs of `bytes` mounted at a new directory (root only: `None` elsewhere), removed
/// when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_upload_and_the_session_moves_files_again_once_there_is_room() {
    let Some(disk) = SmallDisk::mount(2 << 20) else {
        eprintln!("skipped: mounting a small tmpfs needs root (scripts/test runs as root)");
        return;
    };
    let mut provider = provider().await;
    provider.staging = Arc::new(Staging::new(disk.dir.path().join("transfers")).unwrap());
    // Too large for the room left on the disk: refused before a byte.
    let filler = disk.dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3 << 19]).unwrap();
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &provider.put("big", 1 << 20, false)).await;
    let TransferReply::Refused(refusal) = read::<TransferReply>(&mut pipe).await else {
        panic!("refused");
    };
    assert_eq!(refusal.code, TransferRefusal::DiskFull, "{refusal}");
    std::fs::remove_file(&filler).unwrap();

    // It fits when it starts; something else fills the disk meanwhile.
    let file = data(CHUNK_BYTES * 6);
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &provider.put("mid", file.len() as u64, false)).await;
    let _: TransferReply = read(&mut pipe).await;
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
    for start in (0..file.len()).step_by(CHUNK_BYTES) {
        let chunk = Chunk::new(start as u64, file[start..start + CHUNK_BYTES].to_vec());
        // The provider stops reading once it fails.
        if write_frame(&mut pipe, &UploadFrame::Chunk(chunk))
            .await
            .is_err()
        {
            break;
        }
        let _ = pipe.flush().await;
    }
    let mut failed = None;
    while let Ok(reply) = read_frame::<UploadReply, _>(&mut pipe).await {
        if let UploadReply::Failed(refusal) = reply {
            failed = Some(refusal);
            break;
        }
    }
    let refusal = failed.expect("the upload fails on the full disk");
    assert_eq!(refusal.code, TransferRefusal::DiskFull, "{refusal}");

    // With room again, the same session takes a file.
    std::fs::remove_file(&filler).unwrap();
    provider.staging.forget(provider.leases.session);
    let small = data(1000);
    let mut pipe = provider.connect(provider.renter());
    send(&mut pipe, &provider.put("after", 1000, false)).await;
    let _: TransferReply = read(&mut pipe).await;
    send(&mut pipe, &UploadFrame::Chunk(Chunk::new(0, small.clone()))).await;
    let _: UploadReply = read(&mut pipe).await;
    let sha256 = ContentHash::of(&small);
    send(
        &mut pipe,
        &UploadFrame::End {
            sha256: Some(sha256),
        },
    )
    .await;
    assert_eq!(
        read::<UploadReply>(&mut pipe).await,
        UploadReply::Stored { sha256 }
    );
}
