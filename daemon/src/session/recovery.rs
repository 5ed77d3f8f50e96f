//! Closing out, at start, the sessions a crash left open.
//!
//! A node that was killed mid-session finds those sessions open in its ledger. Nothing
//! can resume them (the sandbox, the meters and the countersigner died with the
//! process), so each is closed as `Restarted`: its acknowledged receipts stand, and what
//! the provider did after the last ack is the loss bound's. The peer is told, so its
//! side ends at once (and frees the lane) instead of waiting for a timeout.

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::{SessionHead, SessionRecord, SessionStatus, Store};
use orien_protocol::{CloseReason, CloseSession, NodeId, SessionId, SessionRequest, Timestamp};
use tracing::{debug, info, warn};

use super::{Inner, blocking};
use crate::net::Net;

/// How long the peer of a closed-out session is told, and how often.
const NOTICE_FOR: Duration = Duration::from_secs(120);
const NOTICE_EVERY: Duration = Duration::from_secs(2);

/// The sessions the ledger lists as open or suspended: taken when the node starts,
/// before any new session can open.
pub(super) fn left_open(store: &Store) -> Vec<(SessionRecord, SessionHead)> {
    match store.sessions() {
        Ok(listed) => listed
            .into_iter()
            .filter(|(_, head)| !matches!(head.status, SessionStatus::Closed(_)))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot list the sessions left open by a crash");
            Vec::new()
        }
    }
}

/// Marks the calls a crash left pending or running as lost: nothing can report their
/// exit any more. Done when the node starts, before any new call is recorded.
pub(super) fn lose_unfinished_calls(store: &Store, now: Timestamp) {
    match store.lose_unfinished_executions(now) {
        Ok(0) => {}
        Ok(lost) => info!(
            lost,
            "marked the calls the last run left unfinished as lost"
        ),
        Err(e) => warn!(error = %e, "cannot mark the calls the last run left unfinished"),
    }
}

/// Closes out `sessions` (from [`left_open`]) and tells each peer.
pub(super) async fn close_out(inner: Arc<Inner>, sessions: Vec<(SessionRecord, SessionHead)>) {
    let me = inner.key.node_id();
    for (record, head) in sessions {
        let session = record.session;
        let store = inner.store.clone();
        let closed = blocking(move || {
            store.set_status(&session, SessionStatus::Closed(CloseReason::Restarted))
        })
        .await;
        if let Err(e) = closed {
            warn!(%session, error = %e, "cannot close out a session left open by a crash");
            continue;
        }
        let peer = if record.provider == me {
            record.renter
        } else {
            record.provider
        };
        info!(%session, %peer, acked = %head.amount, receipts = head.seq, "closed out a session left open by the last run");
        tokio::spawn(tell(inner.net.clone(), peer, session));
    }
}

/// Tells `peer` that `session` ended with this node's restart, until it answers.
async fn tell(net: Net, peer: NodeId, session: SessionId) {
    let deadline = tokio::time::Instant::now() + NOTICE_FOR;
    while tokio::time::Instant::now() < deadline {
        let close = SessionRequest::Close(CloseSession {
            session,
            reason: CloseReason::Restarted,
        });
        match net.request(peer, close).await {
            Ok(answer) => return debug!(%session, ?answer, "the peer heard of the restart"),
            Err(e) => debug!(%session, error = %e, "the peer is not reachable yet"),
        }
        tokio::time::sleep(NOTICE_EVERY).await;
    }
}
