//! The request-response envelope of [`SESSION_PROTOCOL`](crate::SESSION_PROTOCOL).
//!
//! Either peer may send a [`SessionRequest`]; the other answers with exactly one
//! [`SessionResponse`]. New variants are only ever appended, so postcard's variant
//! indices stay stable.
//!
//! | request | from → to | answer |
//! |---|---|---|
//! | `ListOffers` | anyone → provider | `Offers` |
//! | `Open` | renter → provider | `Accepted` or `Rejected` |
//! | `Exec` | renter → provider | `ExecStarted` (the output follows as `Events`) |
//! | `Events` | provider → renter | `Done` (the provider sends the next batch only then: ordered, back-pressured) |
//! | `Receipt` | provider → renter | `Ack` (countersigned, durably stored first) or `Disputed` |
//! | `Close` | either → the other | `Done`, once the closing receipt is acknowledged |
//! | `PutFile`, `ListFiles`, `GetFile` | renter → provider | `Done`, `Files`, `File` |
//! | `ListBook` | anyone → anyone | `Offers` (a page of the answerer's offer book) |
//! | `ListProfiles` | anyone → anyone | `Profiles` (a page of its profile book) |
//!
//! Any request may instead be answered with `Error`.

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::exec::{Exec, ExecEvent};
use crate::ids::{ExecId, NodeId, OfferId, SessionId, ToolName};
use crate::offer::Offer;
use crate::profile::ProviderProfile;
use crate::receipt::{ReceiptAck, UsageReceipt};
use crate::result::ExecResult;
use crate::session::{CloseSession, OpenSession, SessionAccepted, SessionRejected};
use crate::signed::Signed;
use crate::wire::{Message, check_len};

/// Most events in one [`SessionRequest::Events`] batch.
pub const MAX_EVENTS_PER_BATCH: usize = 8;
/// Largest file moved in one `PutFile` or `File` message.
pub const MAX_FILE_CHUNK: usize = 768 * 1024;
/// Longest workspace path.
pub const MAX_PATH_LEN: usize = 1024;
/// File requests (`PutFile`, `ListFiles`, `GetFile`) of one session that a provider
/// serves at once; it answers more with [`RpcErrorCode::RateLimited`], and a renter
/// sends no more than this.
pub const FILE_OPS_PER_SESSION: usize = 1;
/// Most entries in one `Files` answer.
pub const MAX_FILES_LISTED: usize = 4096;

/// Most offers in one [`SessionResponse::Offers`].
pub const MAX_OFFERS_PER_RESPONSE: usize = 64;
/// Most profiles in one [`SessionResponse::Profiles`].
pub const MAX_PROFILES_PER_RESPONSE: usize = 64;

/// A request on the session protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionRequest {
    /// Ask a provider for its current signed offers, for one tool or all.
    ///
    /// A node that joined after the last gossip round finds providers of a tool through
    /// their Kademlia provider records, then asks them directly.
    ListOffers {
        /// Only offers of this tool.
        tool: Option<ToolName>,
    },
    /// Open a session on one of the provider's offers.
    Open(OpenSession),
    /// Run the session's tool once.
    Exec(Exec),
    /// The next events of a running execution, in order.
    Events(ExecEvents),
    /// A usage receipt for the renter to check and countersign.
    Receipt(Signed<UsageReceipt>),
    /// Close the session.
    Close(CloseSession),
    /// Write a file into the session's workspace.
    PutFile {
        /// The session.
        session: SessionId,
        /// Workspace-relative path.
        path: String,
        /// The whole file.
        data: Vec<u8>,
    },
    /// List the session's workspace.
    ListFiles {
        /// The session.
        session: SessionId,
    },
    /// Read a file from the session's workspace.
    GetFile {
        /// The session.
        session: SessionId,
        /// Workspace-relative path.
        path: String,
    },
    /// A page of the live offers in the answerer's book, any provider's, each signed by
    /// its provider: those whose id is above `after`, in ascending id order, at most
    /// [`MAX_OFFERS_PER_RESPONSE`]. A node that joins the offer topic pages through a
    /// peer's book this way, instead of every provider re-announcing to the whole network
    /// for it.
    ListBook {
        /// Offers above this id (`None`: from the first).
        after: Option<OfferId>,
    },
    /// A page of the live profiles in the answerer's book: those whose provider id is
    /// above `after`, in ascending order, at most [`MAX_PROFILES_PER_RESPONSE`].
    ListProfiles {
        /// Profiles of providers above this id (`None`: from the first).
        after: Option<NodeId>,
    },
}

/// A batch of an execution's events; `seq` counts batches from 0 so the renter detects
/// a gap or a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEvents {
    /// The session.
    pub session: SessionId,
    /// The execution.
    pub exec: ExecId,
    /// Batch number within the execution, from 0.
    pub seq: u64,
    /// The events, in order; an `Exit` is always last.
    pub events: Vec<ExecEvent>,
    /// The provider's signed result of the call, exactly when the batch ends in its
    /// `Exit` (whose exit the result repeats).
    pub result: Option<Signed<ExecResult>>,
}

/// One entry of a workspace listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Workspace-relative path.
    pub path: String,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl Message for SessionRequest {
    const KIND: &'static str = "SessionRequest";
    const MAX_ENCODED_LEN: usize = 1 << 20;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            SessionRequest::ListOffers { .. }
            | SessionRequest::ListFiles { .. }
            | SessionRequest::ListBook { .. }
            | SessionRequest::ListProfiles { .. } => Ok(()),
            SessionRequest::Open(open) => open.validate(),
            SessionRequest::Exec(exec) => exec.validate(),
            SessionRequest::Events(batch) => {
                if batch.events.len() > MAX_EVENTS_PER_BATCH {
                    return Err(InvalidMessage::new(
                        "events",
                        format!("at most {MAX_EVENTS_PER_BATCH} per batch"),
                    ));
                }
                if batch
                    .events
                    .iter()
                    .rev()
                    .skip(1)
                    .any(|e| matches!(e, ExecEvent::Exit(_)))
                {
                    return Err(InvalidMessage::new(
                        "events",
                        "an exit must be the last event",
                    ));
                }
                let ends = matches!(batch.events.last(), Some(ExecEvent::Exit(_)));
                match &batch.result {
                    Some(result) if ends => result.validate()?,
                    None if !ends => {}
                    _ => {
                        return Err(InvalidMessage::new(
                            "result",
                            "a signed result comes with the exit, and only with it",
                        ));
                    }
                }
                batch.events.iter().try_for_each(Message::validate)
            }
            // The envelope's size is checked on decode; the signature by the recipient.
            SessionRequest::Receipt(receipt) => receipt.validate(),
            SessionRequest::Close(close) => close.validate(),
            SessionRequest::PutFile { path, data, .. } => {
                check_len("path", path, MAX_PATH_LEN)?;
                if data.len() > MAX_FILE_CHUNK {
                    return Err(InvalidMessage::new(
                        "data",
                        format!("at most {MAX_FILE_CHUNK} bytes per file"),
                    ));
                }
                Ok(())
            }
            SessionRequest::GetFile { path, .. } => check_len("path", path, MAX_PATH_LEN),
        }
    }
}

/// Why a request could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcErrorCode {
    /// The request is well formed but not valid in the current state.
    BadRequest,
    /// The peer is sending too much; back off.
    RateLimited,
    /// The node failed internally.
    Internal,
    /// The session has ended (or the node forgot it in a restart): stop sending about it.
    SessionEnded,
    /// What the request names does not exist (a file of the workspace).
    NotFound,
}

/// The answer to a [`SessionRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionResponse {
    /// The provider's current offers.
    Offers(Vec<Signed<Offer>>),
    /// The request failed.
    Error {
        /// What kind of failure.
        code: RpcErrorCode,
        /// Human-readable detail.
        detail: String,
    },
    /// The session is open.
    Accepted(SessionAccepted),
    /// The session was refused.
    Rejected(SessionRejected),
    /// The execution runs; its events follow as [`SessionRequest::Events`].
    ExecStarted {
        /// The execution.
        exec: ExecId,
    },
    /// Done (events delivered, file written, session closed).
    Done,
    /// The renter's countersignature of a receipt.
    Ack(Signed<ReceiptAck>),
    /// The renter refuses a receipt; it keeps it as evidence and suspends the session.
    Disputed {
        /// Why.
        detail: String,
    },
    /// A workspace listing.
    Files(Vec<FileInfo>),
    /// A file's content.
    File {
        /// The bytes.
        data: Vec<u8>,
    },
    /// Signed provider profiles (the answer to [`SessionRequest::ListProfiles`]).
    Profiles(Vec<Signed<ProviderProfile>>),
}

impl Message for SessionResponse {
    const KIND: &'static str = "SessionResponse";
    const MAX_ENCODED_LEN: usize = 2 << 20;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            SessionResponse::Offers(offers) if offers.len() > MAX_OFFERS_PER_RESPONSE => {
                Err(InvalidMessage::new(
                    "offers",
                    format!("{} offers, at most {MAX_OFFERS_PER_RESPONSE}", offers.len()),
                ))
            }
            SessionResponse::Offers(_) => Ok(()),
            SessionResponse::Error { detail, .. } | SessionResponse::Disputed { detail } => {
                check_len("detail", detail, crate::session::MAX_DETAIL_LEN)
            }
            SessionResponse::Accepted(accepted) => accepted.validate(),
            SessionResponse::Rejected(rejected) => rejected.validate(),
            SessionResponse::ExecStarted { .. } | SessionResponse::Done => Ok(()),
            SessionResponse::Ack(ack) => ack.validate(),
            SessionResponse::Files(files) => {
                if files.len() > MAX_FILES_LISTED {
                    return Err(InvalidMessage::new(
                        "files",
                        format!("at most {MAX_FILES_LISTED} entries"),
                    ));
                }
                files
                    .iter()
                    .try_for_each(|f| check_len("files.path", &f.path, MAX_PATH_LEN))
            }
            SessionResponse::File { data } if data.len() > MAX_FILE_CHUNK => Err(
                InvalidMessage::new("data", format!("at most {MAX_FILE_CHUNK} bytes per file")),
            ),
            SessionResponse::File { .. } => Ok(()),
            SessionResponse::Profiles(profiles) if profiles.len() > MAX_PROFILES_PER_RESPONSE => {
                Err(InvalidMessage::new(
                    "profiles",
                    format!(
                        "{} profiles, at most {MAX_PROFILES_PER_RESPONSE}",
                        profiles.len()
                    ),
                ))
            }
            SessionResponse::Profiles(_) => Ok(()),
        }
    }
}
