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

/// What the ledger says when the node starts, before any new session can open.
pub(super) struct Survey {
    /// The sessions listed as open or suspended.
    pub(super) left_open: Vec<(SessionRecord, SessionHead)>,
    /// Sessions this node provided that ended normally.
    pub(super) completed_provided: u64,
}

/// Reads the session list once, for [`Survey`].
pub(super) fn survey(store: &Store, me: &NodeId) -> Survey {
    match store.sessions() {
        Ok(listed) => {
            let completed_provided = listed
                .iter()
                .filter(|(record, head)| {
                    record.provider == *me
                        && matches!(head.status, SessionStatus::Closed(reason) if ended_normally(reason))
                })
                .count() as u64;
            let left_open = listed
                .into_iter()
                .filter(|(_, head)| !matches!(head.status, SessionStatus::Closed(_)))
                .collect();
            Survey {
                left_open,
                completed_provided,
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot list the sessions left open by a crash");
            Survey {
                left_open: Vec::new(),
                completed_provided: 0,
            }
        }
    }
}

/// Whether a session that ended for `reason` completed (closed by the renter, its budget
/// spent, its duration reached, its lane closing) rather than failed.
pub(crate) fn ended_normally(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::RenterRequested
            | CloseReason::BudgetExhausted
            | CloseReason::MaxDuration
            | CloseReason::LaneClosing
    )
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

/// Closes out `sessions` (from [`survey`]) and tells each peer.
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
