//! The renter's end of an upload.

use std::collections::VecDeque;

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use orien_protocol::ContentHash;
use orien_protocol::transfer::{
    CHUNK_BYTES, Chunk, TransferReply, TransferRequest, UPLOAD_WINDOW, UploadFrame, UploadReply,
};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, info};

use super::{
    ATTEMPTS, ByteStream, IDLE, OPEN_TIMEOUT, Remote, Stored, TransferError, Transfers, backoff,
};
use crate::network::frame::{read_frame, write_frame};

/// What one stream of an upload came to.
enum Attempt {
    /// The provider stored the file.
    Stored(ContentHash),
    /// The stream broke or the provider asked for a resume: try another.
    Retry(String),
    /// Over.
    Fatal(TransferError),
}

impl From<std::io::Error> for Attempt {
    fn from(e: std::io::Error) -> Self {
        Self::Retry(e.to_string())
    }
}

/// The bytes of an upload: those sent and not yet acknowledged, and the source of the
/// rest.
struct Outgoing {
    body: ByteStream,
    /// Read from the body, not yet cut into a chunk (a body's piece is sliced, not
    /// copied, until its bytes go into a chunk).
    pending: bytes::Bytes,
    /// Sent, not yet acknowledged, in order.
    unacked: VecDeque<Chunk>,
    /// Offset of the next chunk to cut.
    next: u64,
    /// Size of the whole file.
    size: u64,
    /// The hash of every byte from the file's first (`None` when the body starts
    /// part way, on a resume begun by an earlier sender).
    hasher: Option<Sha256>,
    body_done: bool,
}

impl Outgoing {
    /// The next chunk of the body, `None` at the end of the file. Each byte is copied
    /// once, from the body's piece into the chunk.
    async fn next_chunk(&mut self) -> Result<Option<Chunk>, TransferError> {
        let mut data = Vec::new();
        loop {
            if !self.pending.is_empty() {
                if data.capacity() == 0 {
                    data.reserve_exact(CHUNK_BYTES);
                }
                let take = self.pending.len().min(CHUNK_BYTES - data.len());
                data.extend_from_slice(&self.pending.split_to(take));
            }
            if data.len() == CHUNK_BYTES || self.body_done {
                break;
            }
            match self.body.next().await {
                Some(Ok(bytes)) => {
                    let read = self.next + (data.len() + bytes.len()) as u64;
                    if read > self.size {
                        return Err(TransferError::Source(format!(
                            "it sent more than the {} bytes announced",
                            self.size
                        )));
                    }
                    self.pending = bytes;
                }
                Some(Err(e)) => return Err(TransferError::Source(e.to_string())),
                None => self.body_done = true,
            }
        }
        if data.is_empty() {
            if self.next == self.size {
                return Ok(None);
            }
            return Err(TransferError::Source(format!(
                "it ended after {} of {} bytes",
                self.next, self.size
            )));
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&data);
        }
        let chunk = Chunk::new(self.next, data);
        self.next = chunk.end();
        Ok(Some(chunk))
    }

    /// Forgets the chunks the provider holds: everything before `acked`.
    fn acknowledged(&mut self, acked: u64) {
        while self.unacked.front().is_some_and(|c| c.end() <= acked) {
            self.unacked.pop_front();
        }
    }

    /// The first byte this sender can still send.
    fn first_held(&self) -> u64 {
        self.unacked.front().map_or(self.next, |c| c.offset)
    }
}

impl Transfers {
    /// Uploads `body`, the bytes of a `size`-byte file from `offset` on, to `path` in
    /// `session`'s workspace at `provider`. With `offset` 0 the upload starts over;
    /// past 0 it resumes one the provider holds exactly `offset` bytes of
    /// ([`TransferError::Offset`] names what it holds otherwise). A stream that breaks
    /// is resumed on a new one from the provider's last verified byte.
    pub async fn upload(
        &self,
        remote: &Remote,
        size: u64,
        offset: u64,
        body: ByteStream,
    ) -> Result<Stored, TransferError> {
        let (session, path) = (remote.session, remote.path.as_str());
        let mut out = Outgoing {
            body,
            pending: bytes::Bytes::new(),
            unacked: VecDeque::new(),
            next: offset,
            size,
            hasher: (offset == 0).then(Sha256::new),
            body_done: false,
        };
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
                debug!(%session, path, attempt, held = out.first_held(), "resuming the upload");
            }
            let asked = (attempt == 0).then_some(offset);
            match self.upload_once(remote, &mut out, asked).await {
                Attempt::Stored(sha256) => {
                    if let Some(hasher) = out.hasher.take() {
                        let sent = ContentHash::from_bytes(hasher.finalize().into());
                        if sent != sha256 {
                            return Err(TransferError::Protocol(format!(
                                "the provider stored SHA-256 {sha256}, not the {sent} sent"
                            )));
                        }
                    }
                    info!(%session, path, size, %sha256, resumes = attempt, "upload stored");
                    return Ok(Stored {
                        size,
                        sha256,
                        resumes: attempt,
                    });
                }
                Attempt::Retry(why) => last = why,
                Attempt::Fatal(e) => return Err(e),
            }
        }
        Err(TransferError::Unreachable {
            attempts: ATTEMPTS,
            last,
        })
    }

    /// One stream of an upload: `asked` is the offset the caller resumes from on the
    /// first stream (`None` on a resume of this sender's own).
    async fn upload_once(
        &self,
        remote: &Remote,
        out: &mut Outgoing,
        asked: Option<u64>,
    ) -> Attempt {
        let mut stream = match self.open(remote.provider).await {
            Ok(stream) => stream,
            Err(e) => return Attempt::Retry(e),
        };
        let put = TransferRequest::Put {
            session: remote.session,
            path: remote.path.clone(),
            size: out.size,
            resume: asked != Some(0),
            archive: remote.archive,
        };
        let held = match put_ready(&mut stream, &put, out.size).await {
            Ok(held) => held,
            Err(attempt) => return attempt,
        };
        match asked {
            Some(asked) if held != asked => {
                return Attempt::Fatal(TransferError::Offset { asked, held });
            }
            Some(_) => {}
            None => {
                if held < out.first_held() || held > out.next {
                    return Attempt::Fatal(TransferError::Offset {
                        asked: out.first_held(),
                        held,
                    });
                }
                out.acknowledged(held);
                if out.unacked.front().is_some_and(|c| c.offset != held) {
                    return Attempt::Fatal(TransferError::Protocol(format!(
                        "the provider holds {held} bytes, inside a chunk it never acknowledged"
                    )));
                }
            }
        }
        let (mut reader, mut writer) = stream.split();
        let (acks, acked) = watch::channel(held);
        let sending = async {
            let sent: Result<(), Attempt> = async {
                let resent: Vec<Chunk> = out.unacked.iter().cloned().collect();
                for chunk in resent {
                    write_frame(&mut writer, &UploadFrame::Chunk(chunk)).await?;
                }
                let mut acked = acked.clone();
                loop {
                    let held = *acked.borrow_and_update();
                    if held > out.next {
                        return Err(Attempt::Fatal(TransferError::Protocol(format!(
                            "the provider acknowledged {held} bytes of {} sent",
                            out.next
                        ))));
                    }
                    out.acknowledged(held);
                    if out.unacked.len() >= UPLOAD_WINDOW {
                        if acked.changed().await.is_err() {
                            // The receiver has ended the attempt.
                            std::future::pending::<()>().await;
                        }
                        continue;
                    }
                    match out.next_chunk().await {
                        Ok(Some(chunk)) => {
                            out.unacked.push_back(chunk.clone());
                            write_frame(&mut writer, &UploadFrame::Chunk(chunk)).await?;
                            writer.flush().await?;
                        }
                        Ok(None) => break,
                        Err(e) => return Err(Attempt::Fatal(e)),
                    }
                }
                let sha256 = out
                    .hasher
                    .as_ref()
                    .map(|h| ContentHash::from_bytes(h.clone().finalize().into()));
                write_frame(&mut writer, &UploadFrame::End { sha256 }).await?;
                writer.flush().await?;
                Ok(())
            }
            .await;
            match sent {
                // Everything is sent: the attempt ends with the provider's answer.
                Ok(()) => std::future::pending().await,
                Err(ended) => ended,
            }
        };
        let receiving = async {
            let mut last = held;
            loop {
                let reply =
                    match tokio::time::timeout(IDLE, read_frame::<UploadReply, _>(&mut reader))
                        .await
                    {
                        Ok(Ok(reply)) => reply,
                        Ok(Err(e)) => return Attempt::Retry(e.to_string()),
                        Err(_) => {
                            return Attempt::Retry(format!("the provider was silent for {IDLE:?}"));
                        }
                    };
                match reply {
                    UploadReply::Ack { offset } if offset > last => {
                        last = offset;
                        let _ = acks.send(offset);
                    }
                    UploadReply::Ack { offset } => {
                        return Attempt::Fatal(TransferError::Protocol(format!(
                            "an ack of {offset} after one of {last}"
                        )));
                    }
                    UploadReply::Stored { sha256 } => return Attempt::Stored(sha256),
                    UploadReply::Failed(refusal) if refusal.code.is_retryable() => {
                        return Attempt::Retry(refusal.to_string());
                    }
                    UploadReply::Failed(refusal) => {
                        return Attempt::Fatal(TransferError::Refused(refusal));
                    }
                }
            }
        };
        let ended = tokio::select! {
            ended = sending => ended,
            ended = receiving => ended,
        };
        out.acknowledged(*acked.borrow());
        ended
    }
}

/// Sends `put` and reads the provider's answer: the bytes it holds already.
async fn put_ready(
    stream: &mut libp2p::Stream,
    put: &TransferRequest,
    size: u64,
) -> Result<u64, Attempt> {
    let exchange = async {
        write_frame(stream, put).await?;
        stream.flush().await?;
        read_frame::<TransferReply, _>(stream).await
    };
    let reply = match tokio::time::timeout(OPEN_TIMEOUT, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(Attempt::Retry(e.to_string())),
        Err(_) => return Err(Attempt::Retry(format!("no answer within {OPEN_TIMEOUT:?}"))),
    };
    match reply {
        TransferReply::Ready {
            offset,
            size: their,
            ..
        } if their == size => Ok(offset),
        TransferReply::Ready { size: their, .. } => Err(Attempt::Fatal(TransferError::Protocol(
            format!("ready for {their} bytes, not {size}"),
        ))),
        TransferReply::Refused(refusal) if refusal.code.is_retryable() => {
            Err(Attempt::Retry(refusal.to_string()))
        }
        TransferReply::Refused(refusal) => Err(Attempt::Fatal(TransferError::Refused(refusal))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(pieces: Vec<Vec<u8>>, size: u64) -> Outgoing {
        let body = futures::stream::iter(
            pieces
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from(p))),
        );
        Outgoing {
            body: Box::pin(body),
            pending: bytes::Bytes::new(),
            unacked: VecDeque::new(),
            next: 0,
            size,
            hasher: Some(Sha256::new()),
            body_done: false,
        }
    }

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn pieces_of_any_size_are_cut_into_whole_chunks_in_order() {
        let data = file(3 * CHUNK_BYTES + 1000);
        // Empty pieces, pieces smaller and larger than a chunk, one across a boundary.
        let cuts = [0, 0, 10, CHUNK_BYTES + 5, 2 * CHUNK_BYTES + 7, data.len()];
        let pieces: Vec<Vec<u8>> = cuts.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect();
        let mut out = outgoing(pieces, data.len() as u64);
        let mut got = Vec::new();
        while let Some(chunk) = out.next_chunk().await.unwrap() {
            assert_eq!(chunk.offset, got.len() as u64);
            assert!(chunk.is_intact());
            let whole = got.len() + chunk.data.len() < data.len();
            assert!(
                !whole || chunk.data.len() == CHUNK_BYTES,
                "only the last is short"
            );
            got.extend_from_slice(&chunk.data);
        }
        assert_eq!(got, data);
        let sent = out.hasher.take().unwrap().finalize();
        assert_eq!(sent.as_slice(), Sha256::digest(&data).as_slice());
    }

    #[tokio::test]
    async fn a_source_longer_or_shorter_than_announced_is_refused() {
        let data = file(CHUNK_BYTES + 10);
        let mut out = outgoing(vec![data.clone()], data.len() as u64 - 1);
        let err = out.next_chunk().await.unwrap_err();
        assert!(err.to_string().contains("more than the"), "{err}");
        let mut out = outgoing(vec![data.clone()], data.len() as u64 + 1);
        assert!(out.next_chunk().await.unwrap().is_some());
        assert!(out.next_chunk().await.unwrap().is_some());
        let err = out.next_chunk().await.unwrap_err();
        assert!(err.to_string().contains("ended after"), "{err}");
    }
}
