//! The bulk-data protocol, [`TRANSFER_PROTOCOL`]: files move between a renter and the
//! provider of its session on streams of their own, beside the session protocol, so a
//! gigabyte in flight never delays a receipt or an exec.
//!
//! One stream carries one transfer, as length-prefixed frames (a 4-byte big-endian
//! length, then that many bytes of canonical postcard, [`crate::wire`]):
//!
//! | direction | renter sends | provider answers |
//! |---|---|---|
//! | upload | [`TransferRequest::Put`], then [`UploadFrame::Chunk`]s from the offset the provider names, then [`UploadFrame::End`] | [`TransferReply`], then an [`UploadReply::Ack`] per chunk written, then [`UploadReply::Stored`] |
//! | download | [`TransferRequest::Get`] | [`TransferReply`], then [`DownloadFrame::Chunk`]s to the end |
//!
//! Every chunk carries the SHA-256 of its bytes and its offset, and every transfer the
//! SHA-256 of the whole. A receiver keeps only verified chunks, in order; a transfer cut
//! off (or refused for a corrupt chunk) is resumed on a new stream from the last
//! verified byte: the provider names it in its [`TransferReply::Ready`] to a `Put`, the
//! renter in the offset of its `Get`. The renter keeps at most [`UPLOAD_WINDOW`]
//! unacknowledged chunks, which bounds the memory of both sides per transfer.

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::ids::{ContentHash, SessionId};
use crate::rpc::MAX_PATH_LEN;
use crate::wire::{Message, check_len};

/// Protocol name of file transfers.
pub const TRANSFER_PROTOCOL: &str = "/orien/files/1";

/// Bytes in every chunk but a transfer's last.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks an uploader sends ahead of the provider's acknowledgements (a provider may
/// acknowledge a few chunks at once).
pub const UPLOAD_WINDOW: usize = 16;

/// Longest refusal detail.
const MAX_DETAIL: usize = 1024;

/// Frames around a chunk's bytes.
const FRAME_OVERHEAD: usize = 128;

/// What a renter asks of the provider, first on a transfer stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferRequest {
    /// Write a file of `size` bytes into the session's workspace at `path`.
    Put {
        /// The session; the stream's peer must be its renter.
        session: SessionId,
        /// Workspace-relative path.
        path: String,
        /// Size of the whole file; refused at once when over the session's cap.
        size: u64,
        /// Resume an upload of this path and size cut off earlier (`false`: start
        /// over, whatever the provider holds of it).
        resume: bool,
        /// The bytes are a tar archive to unpack under the directory `path` (empty:
        /// the workspace itself); regular files and directories only.
        archive: bool,
    },
    /// Read a file of the session's workspace from `offset`.
    Get {
        /// The session; the stream's peer must be its renter.
        session: SessionId,
        /// Workspace-relative path.
        path: String,
        /// First byte wanted.
        offset: u64,
        /// Resume the copy with this hash (the provider keeps a copy of each file it
        /// sends for the session): refused as [`TransferRefusal::Changed`] when it no
        /// longer holds it. `None`: a new copy of the file as it is now.
        expect: Option<ContentHash>,
        /// A tar archive of the directory `path` (empty: the workspace itself), with
        /// its regular files and directories, relative to it.
        archive: bool,
    },
}

impl Message for TransferRequest {
    const KIND: &'static str = "TransferRequest";
    const MAX_ENCODED_LEN: usize = MAX_PATH_LEN + FRAME_OVERHEAD;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            Self::Put { path, .. } | Self::Get { path, .. } => {
                check_len("path", path, MAX_PATH_LEN)
            }
        }
    }
}

/// Why the provider refused or ended a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransferRefusal {
    /// The stream's peer is not the renter of an open session of that id.
    NotAuthorised,
    /// The path is not a valid workspace path or names no regular file, or an
    /// archive holds what a workspace may not (a link, a device, `..`, an absolute
    /// path, a path both a file and a directory).
    BadPath,
    /// No such file.
    NotFound,
    /// Over the session's upload or workspace cap; nothing was written.
    TooLarge,
    /// A chunk's bytes or the whole did not match its hash; resume from the offset.
    Corrupt,
    /// The provider's disk (or the workspace) is full; the session is unharmed.
    DiskFull,
    /// The provider no longer holds the copy being resumed.
    Changed,
    /// The session moves as many files at once as it may; retry shortly.
    Busy,
    /// The frames broke the protocol.
    Protocol,
    /// The provider failed otherwise.
    Internal,
    /// A download from past the end of the file.
    OutOfRange,
}

impl TransferRefusal {
    /// Whether resuming the same transfer may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Corrupt | Self::Busy)
    }
}

/// The provider's first answer on a transfer stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferReply {
    /// Go ahead.
    Ready {
        /// Upload: the first byte the provider wants (what it holds of the file
        /// already, on a resume). Download: the first byte it sends.
        offset: u64,
        /// Size of the whole file.
        size: u64,
        /// Download: the SHA-256 of the whole file. Upload: `None`.
        sha256: Option<ContentHash>,
    },
    /// Refused; nothing follows.
    Refused(Refusal),
}

/// A refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind.
    pub code: TransferRefusal,
    /// For a person.
    pub detail: String,
}

impl Refusal {
    /// A refusal of kind `code`.
    pub fn new(code: TransferRefusal, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if detail.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        Self { code, detail }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.detail)
    }
}

impl Message for TransferReply {
    const KIND: &'static str = "TransferReply";
    const MAX_ENCODED_LEN: usize = MAX_DETAIL + FRAME_OVERHEAD;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            Self::Ready { offset, size, .. } if offset > size => Err(InvalidMessage::new(
                "offset",
                format!("{offset} is past the end ({size})"),
            )),
            Self::Ready { .. } => Ok(()),
            Self::Refused(refusal) => check_len("detail", &refusal.detail, MAX_DETAIL),
        }
    }
}

/// A verified piece of a file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Where its first byte belongs in the file.
    pub offset: u64,
    /// Its bytes: [`CHUNK_BYTES`] but for a file's last chunk, never empty.
    #[serde(with = "serde_bytes_vec")]
    pub data: Vec<u8>,
    /// The SHA-256 of `data`.
    pub sha256: ContentHash,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Chunk {
    /// The chunk of `data` at `offset`, with its hash.
    pub fn new(offset: u64, data: Vec<u8>) -> Self {
        let sha256 = ContentHash::of(&data);
        Self {
            offset,
            data,
            sha256,
        }
    }

    /// Whether `data` matches the hash it came with.
    pub fn is_intact(&self) -> bool {
        ContentHash::of(&self.data) == self.sha256
    }

    /// The offset just past it.
    pub fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.data.is_empty() || self.data.len() > CHUNK_BYTES {
            return Err(InvalidMessage::new(
                "data",
                format!("1 to {CHUNK_BYTES} bytes per chunk"),
            ));
        }
        if self.offset.checked_add(self.data.len() as u64).is_none() {
            return Err(InvalidMessage::new("offset", "past the largest file"));
        }
        Ok(())
    }
}

/// What an uploader sends after the provider's [`TransferReply::Ready`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadFrame {
    /// The next bytes, starting exactly where the provider's held bytes end.
    Chunk(Chunk),
    /// Every byte was sent.
    End {
        /// SHA-256 of the whole file, which the provider checks before the file goes
        /// into the workspace. `None` from a sender that resumed an upload begun by an
        /// earlier one and never saw its first bytes: the provider's
        /// [`UploadReply::Stored`] names the hash either way.
        sha256: Option<ContentHash>,
    },
}

impl Message for UploadFrame {
    const KIND: &'static str = "UploadFrame";
    const MAX_ENCODED_LEN: usize = CHUNK_BYTES + FRAME_OVERHEAD;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            Self::Chunk(chunk) => chunk.validate(),
            Self::End { .. } => Ok(()),
        }
    }
}

/// The provider's answers during an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadReply {
    /// Every byte before `offset` is verified and written.
    Ack {
        /// End of the verified bytes.
        offset: u64,
    },
    /// The whole file matched its hash and is in the workspace.
    Stored {
        /// Its SHA-256.
        sha256: ContentHash,
    },
    /// The upload failed; a retryable one is resumed from the provider's offset.
    Failed(Refusal),
}

impl Message for UploadReply {
    const KIND: &'static str = "UploadReply";
    const MAX_ENCODED_LEN: usize = MAX_DETAIL + FRAME_OVERHEAD;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            Self::Failed(refusal) => check_len("detail", &refusal.detail, MAX_DETAIL),
            _ => Ok(()),
        }
    }
}

/// What the provider sends during a download after its [`TransferReply::Ready`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownloadFrame {
    /// The next bytes, in order.
    Chunk(Chunk),
    /// The download failed part way.
    Failed(Refusal),
}

impl Message for DownloadFrame {
    const KIND: &'static str = "DownloadFrame";
    const MAX_ENCODED_LEN: usize = CHUNK_BYTES + FRAME_OVERHEAD;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            Self::Chunk(chunk) => chunk.validate(),
            Self::Failed(refusal) => check_len("detail", &refusal.detail, MAX_DETAIL),
        }
    }
}

/// Chunk bytes as one postcard byte string (a length, then the bytes), not a sequence
/// of single-byte elements: the same encoding, decoded without a call per byte.
mod serde_bytes_vec {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(data)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode};

    #[test]
    fn a_full_chunk_fits_its_frame() {
        let frame = UploadFrame::Chunk(Chunk::new(u64::MAX / 2, vec![7; CHUNK_BYTES]));
        let bytes = encode(&frame).unwrap();
        assert!(bytes.len() <= UploadFrame::MAX_ENCODED_LEN);
        let back: UploadFrame = decode(&bytes).unwrap();
        assert_eq!(back, frame);
        let UploadFrame::Chunk(chunk) = back else {
            panic!("not a chunk")
        };
        assert!(chunk.is_intact());
    }

    #[test]
    fn chunk_bytes_encode_as_postcard_byte_strings() {
        // Same bytes as `Vec<u8>` with derived serde: the encoding is postcard's own.
        #[derive(Serialize)]
        struct Plain {
            offset: u64,
            data: Vec<u8>,
            sha256: ContentHash,
        }
        let chunk = Chunk::new(3, vec![1, 2, 3]);
        let plain = Plain {
            offset: 3,
            data: vec![1, 2, 3],
            sha256: chunk.sha256,
        };
        assert_eq!(
            postcard::to_stdvec(&chunk).unwrap(),
            postcard::to_stdvec(&plain).unwrap()
        );
    }

    #[test]
    fn empty_oversized_and_overflowing_chunks_are_refused() {
        for chunk in [
            Chunk::new(0, Vec::new()),
            Chunk::new(0, vec![0; CHUNK_BYTES + 1]),
            Chunk::new(u64::MAX - 1, vec![0; 2]),
        ] {
            assert!(encode(&DownloadFrame::Chunk(chunk)).is_err());
        }
    }

    #[test]
    fn a_tampered_chunk_is_not_intact() {
        let mut chunk = Chunk::new(0, b"hello".to_vec());
        chunk.data[0] ^= 1;
        assert!(!chunk.is_intact());
    }

    #[test]
    fn ready_past_the_end_and_long_paths_are_refused() {
        let ready = TransferReply::Ready {
            offset: 11,
            size: 10,
            sha256: None,
        };
        assert!(encode(&ready).is_err());
        let put = TransferRequest::Put {
            session: SessionId::random(),
            path: "a".repeat(MAX_PATH_LEN + 1),
            size: 1,
            resume: false,
            archive: false,
        };
        assert!(encode(&put).is_err());
    }

    #[test]
    fn long_details_are_cut_on_a_character_boundary() {
        let refusal = Refusal::new(TransferRefusal::Internal, "é".repeat(MAX_DETAIL));
        assert!(refusal.detail.len() <= MAX_DETAIL);
        assert!(encode(&UploadReply::Failed(refusal)).is_ok());
    }
}
