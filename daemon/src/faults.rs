//! Fault injection on the session protocol.
//!
//! A [`LinkFaults`] sees every session-protocol message a node sends or receives and
//! decides whether it goes through, is lost, or is late. Nodes people run have none
//! (`NodeConfig::faults` is `None`); tests use one to make honest nodes lose an ack or a
//! receipt at a chosen moment, and simulations use one to model lossy, slow links —
//! always below the session logic, which cannot tell an injected loss from a real one.
//!
//! What each fault means where it is applied:
//!
//! | point | `Drop` | `Delay(d)` | `Ignore` |
//! |---|---|---|---|
//! | [`Point::OutboundRequest`] | never sent; the caller gets a failure | sent `d` later | never sent; the caller hears nothing |
//! | [`Point::InboundRequest`] | never served; the peer's request fails | served `d` later | never served nor refused; the peer's request times out |
//! | [`Point::OutboundResponse`] | served, but the answer is lost | answered `d` later | served; no answer goes, the peer's request times out |
//! | [`Point::InboundResponse`] | the peer served it, the answer is lost | delivered `d` later | the answer is lost; the caller hears nothing |
//!
//! "Hears nothing": the caller's own timeout ends its wait. The channel an ignored
//! message would have been answered on is held for [`IGNORED_FOR`], past any timeout.

use std::time::Duration;

use orien_protocol::{NodeId, SessionRequest, SessionResponse};

/// Where a message is, as seen by the node that applies the faults.
#[derive(Debug, Clone, Copy)]
pub enum Point<'a> {
    /// A request this node is about to send to `peer`.
    OutboundRequest {
        /// The peer it goes to.
        peer: NodeId,
        /// The request.
        request: &'a SessionRequest,
    },
    /// A request `peer` sent to this node, before it is served.
    InboundRequest {
        /// The peer it came from.
        peer: NodeId,
        /// The request.
        request: &'a SessionRequest,
    },
    /// This node's answer to `peer`'s request, after it was served.
    OutboundResponse {
        /// The peer it goes to.
        peer: NodeId,
        /// The answer.
        response: &'a SessionResponse,
    },
    /// `peer`'s answer to this node's request, as it arrives.
    InboundResponse {
        /// The peer it came from.
        peer: NodeId,
        /// The answer.
        response: &'a SessionResponse,
    },
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// It goes through.
    #[default]
    Deliver,
    /// It is lost.
    Drop,
    /// It goes through this much later.
    Delay(Duration),
    /// It is neither delivered nor refused: whoever waits on it waits until its own
    /// timeout, as with a peer that holds a request and never answers.
    Ignore,
}

/// How long the channel of an ignored message is held unanswered.
pub const IGNORED_FOR: Duration = Duration::from_secs(600);

/// Holds `channel` (where an ignored message would have been answered) unanswered for
/// [`IGNORED_FOR`].
pub(crate) fn hold<T: Send + 'static>(channel: T) {
    tokio::spawn(async move {
        tokio::time::sleep(IGNORED_FOR).await;
        drop(channel);
    });
}

/// Decides the fate of each session-protocol message of one node.
pub trait LinkFaults: Send + Sync + 'static {
    /// The fault for the message at `point`.
    fn decide(&self, point: Point<'_>) -> Fault;
}

impl<F> LinkFaults for F
where
    F: Fn(Point<'_>) -> Fault + Send + Sync + 'static,
{
    fn decide(&self, point: Point<'_>) -> Fault {
        self(point)
    }
}
