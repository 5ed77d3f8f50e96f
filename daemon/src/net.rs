//! The session protocol as the session manager sees it: requests from peers with their
//! answers, and [`Net`], through which it sends its own.

use libp2p::PeerId;
use orien_protocol::{NodeId, OfferId, SessionRequest, SessionResponse, ToolName};
use tokio::sync::{mpsc, oneshot};

use crate::offer_book::BookEntry;
use crate::peer_guard::Abuse;

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
    commands: mpsc::Sender<NetCommand>,
}

/// What [`Net`] asks of the node's task.
pub(crate) enum NetCommand {
    /// Send `request` to `peer`; its answer (or why none came) goes to `reply`.
    Request {
        /// The peer.
        peer: PeerId,
        /// The request (boxed: it is far larger than the other variant).
        request: Box<SessionRequest>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<SessionResponse, NetError>>,
    },
    /// Look up an offer in the book.
    Offer(OfferId, oneshot::Sender<Option<BookEntry>>),
    /// Find `tool`'s offers of `provider`: the book, else the DHT and the provider.
    Find(ToolName, NodeId, oneshot::Sender<Vec<BookEntry>>),
}

impl std::fmt::Debug for NetCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request { peer, .. } => write!(f, "Request(to {peer})"),
            Self::Offer(id, _) => write!(f, "Offer({id})"),
            Self::Find(tool, provider, _) => write!(f, "Find({tool} of {provider})"),
        }
    }
}

impl Net {
    /// A handle whose requests the node's task receives on the other end of `commands`.
    pub(crate) fn new(commands: mpsc::Sender<NetCommand>) -> Self {
        Self { commands }
    }

    /// Sends `request` to `peer` and waits for its answer (or the request timeout).
    pub async fn request(
        &self,
        peer: NodeId,
        request: SessionRequest,
    ) -> Result<SessionResponse, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(NetCommand::Request {
                peer: peer.to_peer_id(),
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// `provider`'s offers of `tool`: from the book, else asked of the DHT and the
    /// provider itself.
    pub async fn find(&self, tool: ToolName, provider: NodeId) -> Result<Vec<BookEntry>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(NetCommand::Find(tool, provider, reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// A verified offer from the book, if known.
    pub async fn offer(&self, id: OfferId) -> Result<Option<BookEntry>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(NetCommand::Offer(id, reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }
}
