//! # orien-protocol
//!
//! The wire and money layer of ORIEN: identifiers, the [`Usdc`] amount type, pricing and
//! the 90 / 7 / 3 [`Split`], every message two nodes exchange, and [`Signed`] payloads with
//! domain-separated ed25519 signatures. No I/O happens here; the daemon, provider and
//! ledger crates build on these types.
//!
//! ```
//! use orien_protocol::{
//!     Millis, NodeKey, ReceiptHash, ResultsCommitment, SessionId, Timestamp, Usdc, UsageReceipt,
//! };
//!
//! let provider = NodeKey::generate();
//! let receipt = UsageReceipt {
//!     session: SessionId::random(),
//!     seq: 1,
//!     session_time: Millis(60_000),
//!     exec_time: Millis(12_000),
//!     cpu_time: Millis(9_000),
//!     exec_amount: Usdc::from_micros(12_000),
//!     amount: Usdc::from_micros(20_000),
//!     prev: ReceiptHash::GENESIS,
//!     issued_at: Timestamp(1_700_000_000_000),
//!     results: ResultsCommitment::NONE,
//!     artefact_amount: Usdc::ZERO,
//! };
//! let signed = provider.sign(&receipt)?;
//! let bytes = signed.to_bytes()?;                       // onto the wire
//! let received = orien_protocol::Signed::<UsageReceipt>::from_bytes(&bytes)?;
//! assert_eq!(received.verify_from(&provider.node_id())?, receipt);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Encoding rules that keep postcard canonical: struct fields are encoded in order,
//! enums by variant index, so fields and variants are only ever *appended* in a new
//! protocol version, never reordered; internally tagged or untagged serde enums are not
//! used (postcard cannot decode them).

pub mod attestation;
mod bytes;
mod checked_keys;
pub mod clock;
pub mod error;
pub mod exec;
pub mod fuzzing;
pub mod ids;
pub mod money;
pub mod offer;
pub mod pricing;
pub mod profile;
pub mod receipt;
pub mod result;
pub mod rpc;
pub mod session;
pub mod signed;
pub mod split;
pub mod time;
pub mod transfer;
pub mod verified;
pub mod wire;

pub use attestation::{Attestation, Payment, PaymentProof, ProviderRecord};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DecodeError, EncodeError, InvalidMessage, VerifyError};
pub use exec::{Exec, ExecEvent, ExecExit, ExecOutcome, OutputChunk, OutputStream};
pub use ids::{
    ContentHash, EvmAddress, ExecId, ImageDigest, LaneId, NodeId, OfferId, ParseIdError,
    ReceiptHash, ResultHash, SessionId, ToolName,
};
pub use money::{ParseUsdcError, Usdc};
pub use offer::{MAX_KEEP_ARTEFACTS, Offer, ResourceLimits};
pub use pricing::{Pricing, Usage};
pub use profile::{ProviderProfile, ToolPrice};
pub use receipt::{EvmSignature, ReceiptAck, UsageReceipt, Voucher};
pub use result::{Artefact, ArtefactKept, ExecResult, ResultsCommitment};
pub use rpc::{ExecEvents, FileInfo, RpcErrorCode, SessionRequest, SessionResponse};
pub use session::{
    CloseReason, CloseSession, LaneHead, OpenSession, PaymentLane, RejectReason, SessionAccepted,
    SessionRejected, fit_detail,
};
pub use signed::{NodeKey, SignatureBytes, Signed, SignedPayload};
pub use split::{Split, SplitDelta, SplitError};
pub use time::{Millis, Timestamp};
pub use verified::Verified;
pub use wire::Message;

/// Request-response protocol carrying session messages between renter and provider.
/// Version 2 exchanged the lane head at open ([`LaneHead`]); version 3 carries each
/// call's signed [`ExecResult`] with its exit, and receipts commit to the session's
/// results ([`ResultsCommitment`]); version 4's receipts (`orien/receipt/v3`) carry the
/// execution amount, each call priced at its own tool's price, and an [`Exec`] may name
/// another tool of the provider (by its offer); version 5's [`Exec`] may name output
/// paths, and the signed result (`orien/exec-result/v2`) names what the provider kept of
/// each ([`Artefact`]); version 6's offers (`orien/offer/v2`) price the artefacts kept
/// and say how long after close they are kept, and its receipts (`orien/receipt/v4`)
/// carry the artefact amount; version 7 adds `ListBook` and `ListProfiles` (a node
/// joining the offer topic pages through its peers' books) and their `Profiles` answer,
/// appended, so every earlier message keeps its bytes.
pub const SESSION_PROTOCOL: &str = "/orien/session/7";
/// Gossipsub topic on which providers publish signed [`Offer`]s.
pub const OFFERS_TOPIC: &str = "orien/offers/1";
/// Gossipsub topic on which providers publish their signed [`ProviderProfile`].
pub const PROFILES_TOPIC: &str = "orien/profiles/1";
/// Gossipsub topic on which renters publish their signed [`Attestation`]s.
pub const ATTESTATIONS_TOPIC: &str = "orien/attestations/1";
/// Kademlia protocol name of the ORIEN DHT (private, not the public IPFS DHT).
pub const KAD_PROTOCOL: &str = "/orien/kad/1.0.0";
