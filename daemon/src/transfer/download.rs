//! The renter's end of a download.

use futures::AsyncWriteExt as _;
use orien_protocol::ContentHash;
use orien_protocol::transfer::{DownloadFrame, TransferReply, TransferRequest};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span};

use super::{ATTEMPTS, ByteStream, IDLE, OPEN_TIMEOUT, Remote, TransferError, Transfers, backoff};
use crate::network::frame::{read_frame, write_frame};

/// Verified chunks a download holds ahead of its reader.
const AHEAD: usize = 2;

/// A download under way.
pub struct Download {
    /// Size of the whole file.
    pub size: u64,
    /// The first byte `body` yields.
    pub offset: u64,
    /// The SHA-256 of the whole file (of the copy the provider sends).
    pub sha256: ContentHash,
    /// The bytes from `offset` to the end, each chunk verified; from offset 0 the
    /// stream ends with an error instead of its last bytes unless the whole matched
    /// `sha256`.
    pub body: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("offset", &self.offset)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Where a download's stream stands.
struct Fetch {
    transfers: Transfers,
    remote: Remote,
}

impl Fetch {
    /// Opens a stream for the bytes from `offset` of the copy with `expect` (a new copy
    /// when `None`); answers the size and hash the provider sends.
    async fn open(
        &self,
        offset: u64,
        expect: Option<ContentHash>,
    ) -> Result<(libp2p::Stream, u64, ContentHash), Result<TransferError, String>> {
        let mut stream = self
            .transfers
            .open(self.remote.provider)
            .await
            .map_err(Err)?;
        let get = TransferRequest::Get {
            session: self.remote.session,
            path: self.remote.path.clone(),
            offset,
            expect,
            archive: self.remote.archive,
        };
        let exchange = async {
            write_frame(&mut stream, &get).await?;
            stream.flush().await?;
            read_frame::<TransferReply, _>(&mut stream).await
        };
        // Taking the provider's copy of a large file takes a while: the first answer
        // waits for it.
        let reply = match tokio::time::timeout(OPEN_TIMEOUT * 4, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(Err(e.to_string())),
            Err(_) => return Err(Err("no answer in time".into())),
        };
        match reply {
            TransferReply::Ready {
                offset: from,
                size,
                sha256: Some(sha256),
            } if from == offset => Ok((stream, size, sha256)),
            TransferReply::Ready { .. } => Err(Ok(TransferError::Protocol(
                "a download ready from another offset, or without a hash".into(),
            ))),
            TransferReply::Refused(refusal) if refusal.code.is_retryable() => {
                Err(Err(refusal.to_string()))
            }
            TransferReply::Refused(refusal) => Err(Ok(TransferError::Refused(refusal))),
        }
    }
}

impl Transfers {
    /// Starts downloading `path` of `session`'s workspace at `provider` from `offset`:
    /// of the copy with hash `expect` the provider holds from an earlier download, or
    /// of a new copy when `None`. Returns once the provider has answered; the body
    /// then streams, resumed on a new stream from the last verified byte when one
    /// breaks.
    pub async fn download(
        &self,
        remote: &Remote,
        offset: u64,
        expect: Option<ContentHash>,
    ) -> Result<Download, TransferError> {
        let fetch = Fetch {
            transfers: self.clone(),
            remote: remote.clone(),
        };
        let mut last = String::new();
        let mut opened = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            match fetch.open(offset, expect).await {
                Ok(ready) => {
                    opened = Some((ready, attempt));
                    break;
                }
                Err(Ok(fatal)) => return Err(fatal),
                Err(Err(why)) => last = why,
            }
        }
        let Some(((stream, size, sha256), used)) = opened else {
            return Err(TransferError::Unreachable {
                attempts: ATTEMPTS,
                last,
            });
        };
        let (tx, rx) = mpsc::channel(AHEAD);
        let span = info_span!("download", session = %remote.session, path = remote.path);
        let pump = Pump {
            fetch,
            size,
            sha256,
            at: offset,
            hasher: (offset == 0).then(Sha256::new),
            attempts: used + 1,
        };
        tokio::spawn(pump.run(stream, tx).instrument(span));
        let mut rx = rx;
        let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Download {
            size,
            offset,
            sha256,
            body: Box::pin(body),
        })
    }
}

/// Moves a download's verified chunks to its reader.
struct Pump {
    fetch: Fetch,
    size: u64,
    sha256: ContentHash,
    /// The next byte wanted.
    at: u64,
    hasher: Option<Sha256>,
    /// Streams opened so far.
    attempts: u32,
}

impl Pump {
    async fn run(
        mut self,
        mut stream: libp2p::Stream,
        tx: mpsc::Sender<std::io::Result<bytes::Bytes>>,
    ) {
        while self.at < self.size {
            let broke =
                match tokio::time::timeout(IDLE, read_frame::<DownloadFrame, _>(&mut stream)).await
                {
                    Ok(Ok(DownloadFrame::Chunk(chunk)))
                        if chunk.offset == self.at && chunk.end() <= self.size =>
                    {
                        if chunk.is_intact() {
                            self.at = chunk.end();
                            if let Some(hasher) = &mut self.hasher {
                                hasher.update(&chunk.data);
                            }
                            if tx.send(Ok(bytes::Bytes::from(chunk.data))).await.is_err() {
                                debug!("the reader left; download dropped");
                                return;
                            }
                            continue;
                        }
                        format!("the chunk at {} does not match its hash", chunk.offset)
                    }
                    Ok(Ok(DownloadFrame::Chunk(chunk))) => format!(
                        "a chunk at {}..{} when {} was due",
                        chunk.offset,
                        chunk.end(),
                        self.at
                    ),
                    Ok(Ok(DownloadFrame::Failed(refusal))) if !refusal.code.is_retryable() => {
                        let _ = tx
                            .send(Err(std::io::Error::other(TransferError::Refused(refusal))))
                            .await;
                        return;
                    }
                    Ok(Ok(DownloadFrame::Failed(refusal))) => refusal.to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("the provider was silent for {IDLE:?}"),
                };
            match self.resume(&broke).await {
                Ok(next) => stream = next,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            }
        }
        if let Some(hasher) = self.hasher.take() {
            let got = ContentHash::from_bytes(hasher.finalize().into());
            if got != self.sha256 {
                let detail = format!(
                    "the file's SHA-256 is {got}, not the {} the provider announced",
                    self.sha256
                );
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        detail,
                    )))
                    .await;
            }
        }
    }

    /// A new stream from the last verified byte, after the last one broke for `why`.
    async fn resume(&mut self, why: &str) -> Result<libp2p::Stream, TransferError> {
        let mut last = why.to_owned();
        while self.attempts < ATTEMPTS {
            debug!(at = self.at, why = %last, "resuming the download");
            tokio::time::sleep(backoff(self.attempts)).await;
            self.attempts += 1;
            match self.fetch.open(self.at, Some(self.sha256)).await {
                Ok((stream, size, sha256)) if size == self.size && sha256 == self.sha256 => {
                    return Ok(stream);
                }
                Ok(_) => {
                    return Err(TransferError::Protocol(
                        "the resumed copy differs from the first".into(),
                    ));
                }
                Err(Ok(fatal)) => return Err(fatal),
                Err(Err(why)) => last = why,
            }
        }
        Err(TransferError::Unreachable {
            attempts: self.attempts,
            last,
        })
    }
}
