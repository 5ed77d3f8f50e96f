//! Requests about a session that is not live here: one that ended, one this node forgot
//! in a restart, or one the peer was never part of.
//!
//! An honest peer sends the first two all the time — output of a call killed at close,
//! a receipt resent after its ack was lost, a close notice that crossed the renter's own
//! close — so they are answered plainly (`SessionEnded`), and what can still be answered
//! is: a receipt this node acknowledged gets the stored ack again (both ledgers then hold
//! the same chain), a close is done. Only a request about a session the peer was never
//! part of is abuse.

use std::sync::Arc;

use orien_protocol::{NodeId, RpcErrorCode, SessionId, SessionRequest, SessionResponse};
use tracing::debug;

use super::{Inner, NOT_YOUR_SESSION, Reply, blocking, error};
use crate::peer_guard::Abuse;

/// Answers `request` about `session`, which is not live between this node and `peer`.
pub(super) async fn answer(
    inner: Arc<Inner>,
    peer: NodeId,
    session: SessionId,
    request: SessionRequest,
    reply: Reply,
) {
    let store = inner.store.clone();
    let record = blocking(move || store.session(&session)).await;
    let record = match record {
        Ok(Some(record)) if record.renter == peer || record.provider == peer => record,
        Ok(_) => {
            debug!(%peer, %session, "request for a session the peer is not part of");
            let refusal = error(RpcErrorCode::BadRequest, NOT_YOUR_SESSION);
            let _ = reply.abuse(refusal, Abuse::ForeignSession);
            return;
        }
        Err(e) => {
            let _ = reply.send(error(RpcErrorCode::Internal, &e.to_string()));
            return;
        }
    };
    debug!(%peer, %session, "request for a session that ended");
    let response = match request {
        SessionRequest::Close(_) => SessionResponse::Done,
        // This node's ack of a receipt resent after it lost the answer.
        SessionRequest::Receipt(receipt) if record.provider == peer => {
            // Looked up by what it claims; only a byte-identical copy of the receipt
            // this node checked and stored gets the stored ack.
            let stored = match receipt.claimed() {
                Ok(r) => {
                    let store = inner.store.clone();
                    blocking(move || store.receipt(&r.session, r.seq))
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            match stored {
                Some(stored) if stored.acked.receipt == receipt => {
                    SessionResponse::Ack(stored.acked.ack)
                }
                _ => ended(),
            }
        }
        _ => ended(),
    };
    let _ = reply.send(response);
}

fn ended() -> SessionResponse {
    error(RpcErrorCode::SessionEnded, "the session has ended")
}
