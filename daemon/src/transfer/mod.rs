//! File transfers between a renter and the provider of its session, on
//! [`TRANSFER_PROTOCOL`] streams beside the session protocol
//! ([`orien_protocol::transfer`] has the frames).
//!
//! | module | side | job |
//! |---|---|---|
//! | `upload` | renter | sends a file from any byte stream in verified chunks, at most [`UPLOAD_WINDOW`] ahead of the provider's acks, resuming on a new stream when one breaks |
//! | `download` | renter | yields a file's verified chunks as a byte stream, resuming on a new stream when one breaks |
//! | `serve` | provider | authorises each stream against its open sessions, stages uploads and sends downloads |
//! | `staging` | provider | uploads in progress and copies of downloads on the provider's disk |
//! | `artefacts` | provider | copies of the files at a call's output paths, named in its signed result, fetched by hash during the session and for a while after |
//!
//! Memory per transfer is a few chunks on each side, whatever the file's size.

pub(crate) mod artefacts;
mod download;
pub(crate) mod serve;
pub(crate) mod staging;
#[cfg(test)]
mod tests;
mod upload;

use std::time::Duration;

use libp2p::StreamProtocol;
use orien_protocol::transfer::{Refusal, TRANSFER_PROTOCOL, UPLOAD_WINDOW};
use orien_protocol::{ContentHash, NodeId, SessionId};

pub use download::Download;

/// Bytes of a file in transit, in order, or the error that cut them short.
pub type ByteStream = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// Streams opened for one transfer before it gives up: the first and the resumes.
const ATTEMPTS: u32 = 8;
/// Longest wait for a stream to open and the provider's first answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence of the provider in the middle of a transfer.
const IDLE: Duration = Duration::from_secs(60);

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The provider refused it (the reason says whether retrying can help).
    #[error("the provider refused the transfer: {0}")]
    Refused(Refusal),
    /// The provider could not be reached, or kept breaking off, `attempts` times.
    #[error("the transfer broke off {attempts} times; last: {last}")]
    Unreachable {
        /// Streams tried.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// An upload's source ended early, failed or sent more than it announced.
    #[error("the upload's source: {0}")]
    Source(String),
    /// The provider holds a different part of the upload than the one resumed.
    #[error("the provider holds {held} bytes of this upload, not {asked}; resume from {held}")]
    Offset {
        /// What the caller resumed from.
        asked: u64,
        /// What the provider holds.
        held: u64,
    },
    /// The provider broke the protocol.
    #[error("the provider broke the transfer protocol: {0}")]
    Protocol(String),
}

/// What an upload stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Bytes of the whole file.
    pub size: u64,
    /// The SHA-256 of the whole file, as the provider computed it.
    pub sha256: ContentHash,
    /// Streams it took beyond the first: resumes after a break or a corrupt chunk.
    pub resumes: u32,
}

/// What a transfer names at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The provider.
    pub provider: NodeId,
    /// The session whose workspace it is.
    pub session: SessionId,
    /// The workspace-relative path.
    pub path: String,
    /// The bytes are a tar of the directory at `path` (empty: the workspace).
    pub archive: bool,
}

/// Opens transfer streams to providers. Cheap to clone.
#[derive(Clone)]
pub struct Transfers {
    control: libp2p_stream::Control,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transfers")
    }
}

impl Transfers {
    pub(crate) fn new(control: libp2p_stream::Control) -> Self {
        Self { control }
    }

    /// A new stream to `peer`, dialling it when not connected.
    async fn open(&self, peer: NodeId) -> Result<libp2p::Stream, String> {
        let mut control = self.control.clone();
        let protocol = StreamProtocol::new(TRANSFER_PROTOCOL);
        match tokio::time::timeout(
            OPEN_TIMEOUT,
            control.open_stream(peer.to_peer_id(), protocol),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                Err("the peer serves no file transfers (it sells nothing)".into())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no stream within {OPEN_TIMEOUT:?}")),
        }
    }
}

/// The wait before resume `attempt` (1 for the first resume).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(5))
}

/// Chunks kept by an uploader until the provider acknowledges them.
const _: () = assert!(UPLOAD_WINDOW >= 2);
