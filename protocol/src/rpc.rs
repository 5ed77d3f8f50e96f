//! The request-response envelope of [`SESSION_PROTOCOL`](crate::SESSION_PROTOCOL).
//!
//! Either peer may send a [`SessionRequest`]; the other answers with exactly one
//! [`SessionResponse`]. New variants are only ever appended, so postcard's variant
//! indices stay stable.

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::ids::ToolName;
use crate::offer::Offer;
use crate::signed::Signed;
use crate::wire::{Message, check_len};

/// Most offers in one [`SessionResponse::Offers`].
pub const MAX_OFFERS_PER_RESPONSE: usize = 64;

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
}

impl Message for SessionRequest {
    const KIND: &'static str = "SessionRequest";
    const MAX_ENCODED_LEN: usize = 1 << 20;
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
            SessionResponse::Error { detail, .. } => {
                check_len("detail", detail, crate::session::MAX_DETAIL_LEN)
            }
        }
    }
}
