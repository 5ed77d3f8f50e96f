//! The session protocol as the session manager sees it: requests from peers with their
//! answers, and [`Net`], through which it sends its own.

use orien_protocol::{NodeId, OfferId, SessionRequest, SessionResponse};
use tokio::sync::{mpsc, oneshot};

use crate::offer_book::BookEntry;
use crate::peer_guard::Abuse;

use super::Command;

/// A session-protocol request from a peer, for the session manager to answer.
#[derive(Debug)]
pub struct Inbound {
    /// The authenticated peer that sent it.
    pub peer: NodeId,
    /// The request.
    pub request: SessionRequest,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Answer>,
}

/// The session manager's answer to a peer's request, and whether the request was
/// something only a hostile peer sends.
#[derive(Debug)]
pub struct Answer {
    /// What goes back to the peer.
    pub response: SessionResponse,
    /// Counted against the peer by the peer guard.
    pub abuse: Option<Abuse>,
}

impl From<SessionResponse> for Answer {
    fn from(response: SessionResponse) -> Self {
        Self {
            response,
            abuse: None,
        }
    }
}

/// A request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The peer was unreachable, did not answer in time, or broke the protocol.
    #[error("request to {peer} failed: {reason}")]
    Failed {
        /// The peer.
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// This node is stopping.
    #[error("the node has stopped")]
    Stopped,
}

/// Sends session-protocol requests through the node's swarm. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Net {
    pub(super) commands: mpsc::Sender<Command>,
}

impl Net {
    /// Sends `request` to `peer` and waits for its answer (or the request timeout).
    pub async fn request(
        &self,
        peer: NodeId,
        request: SessionRequest,
    ) -> Result<SessionResponse, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer: peer.to_peer_id(),
                request,
                reply,
                faulted: false,
            })
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// A verified offer from the book, if known.
    pub async fn offer(&self, id: OfferId) -> Result<Option<BookEntry>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Offer(id, reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }
}
