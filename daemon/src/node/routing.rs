//! Session-protocol traffic: requests out and their answers back, peers' requests in
//! and the session manager's answers out, with the fault policy at each point.

use libp2p::PeerId;
use libp2p::request_response::{self};
use orien_protocol::rpc::{MAX_OFFERS_PER_RESPONSE, MAX_PROFILES_PER_RESPONSE};
use orien_protocol::{NodeId, RpcErrorCode, SessionRequest, SessionResponse};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::faults::{Fault, Point};
use crate::peer_guard::Abuse;

use super::{Command, EventLoop};
use crate::net::{Answer, Inbound, NetError};

impl EventLoop {
    /// Sends a session request to a peer, unless the fault policy loses or delays it.
    pub(super) fn send_request(
        &mut self,
        peer: PeerId,
        request: SessionRequest,
        reply: oneshot::Sender<Result<SessionResponse, NetError>>,
        faulted: bool,
    ) {
        let fault = match &self.faults {
            Some(faults) if !faulted => match NodeId::from_peer_id(&peer) {
                Ok(node) => faults.decide(Point::OutboundRequest {
                    peer: node,
                    request: &request,
                }),
                Err(_) => Fault::Deliver,
            },
            _ => Fault::Deliver,
        };
        match fault {
            Fault::Deliver => {}
            Fault::Drop => {
                debug!(%peer, "fault injection: request lost");
                let _ = reply.send(Err(NetError::Failed {
                    peer: peer.to_string(),
                    reason: "the request was lost (fault injection)".into(),
                }));
                return;
            }
            Fault::Ignore => {
                debug!(%peer, "fault injection: request never sent");
                crate::faults::hold(reply);
                return;
            }
            Fault::Delay(by) => {
                let commands = self.commands.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    let command = Command::Request {
                        peer,
                        request,
                        reply,
                        faulted: true,
                    };
                    let _ = commands.send(command).await;
                });
                return;
            }
        }
        // A request that breaks a limit would fail in the codec, out of sight:
        // fail it here, where the caller sees why.
        if let Err(e) = orien_protocol::wire::Message::validate(&request) {
            warn!(%peer, error = %e, "a request breaks a protocol limit; not sent");
            let _ = reply.send(Err(NetError::Failed {
                peer: peer.to_string(),
                reason: format!("the request breaks a protocol limit: {e}"),
            }));
            return;
        }
        self.session_message(peer);
        Self::route_via_relays(&mut self.swarm, &self.relays, peer);
        // Kept in case the dial fails for want of an address (`peer_lookup`).
        let retry = (!self.swarm.is_connected(&peer)).then(|| request.clone());
        let id = self
            .swarm
            .behaviour_mut()
            .session
            .send_request(&peer, request);
        if let Some(request) = retry {
            self.peer_lookups.sent(id, request);
        }
        self.outbound.insert(id, reply);
    }

    /// Sends the answer to a peer's request, unless the fault policy loses or delays it,
    /// and counts the abuse it reports.
    pub(super) fn respond(
        &mut self,
        id: u64,
        response: SessionResponse,
        abuse: Option<Abuse>,
        faulted: bool,
    ) {
        let fault = match (&self.faults, self.responders.get(&id)) {
            (Some(faults), Some((peer, _))) if !faulted => match NodeId::from_peer_id(peer) {
                Ok(node) => faults.decide(Point::OutboundResponse {
                    peer: node,
                    response: &response,
                }),
                Err(_) => Fault::Deliver,
            },
            _ => Fault::Deliver,
        };
        match fault {
            Fault::Deliver => {}
            Fault::Drop => {
                debug!("fault injection: response lost");
                self.responders.remove(&id);
                return;
            }
            Fault::Ignore => {
                debug!("fault injection: no answer goes");
                if let Some((_, channel)) = self.responders.remove(&id) {
                    crate::faults::hold(channel);
                }
                return;
            }
            Fault::Delay(by) => {
                let commands = self.commands.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    let command = Command::Respond {
                        id,
                        response,
                        abuse,
                        faulted: true,
                    };
                    let _ = commands.send(command).await;
                });
                return;
            }
        }
        if let Some((peer, channel)) = self.responders.remove(&id) {
            let response = within_limits(response);
            if self
                .swarm
                .behaviour_mut()
                .session
                .send_response(channel, response)
                .is_err()
            {
                debug!("requester went away before the response");
            }
            if let Some(abuse) = abuse {
                self.penalise(peer, abuse);
            }
        }
    }

    pub(super) fn on_session(
        &mut self,
        event: request_response::Event<SessionRequest, SessionResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => {
                self.session_message(peer);
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        self.peer_lookups.settled(&request_id);
                        if let Some(waiter) = self.outbound.remove(&request_id) {
                            self.deliver_response(peer, response, waiter);
                            return;
                        }
                        if self.book_sync.awaits(&request_id) {
                            self.on_book_page(peer, &request_id, response);
                            return;
                        }
                        if let SessionResponse::Offers(offers) = response {
                            self.admit_listed_offers(peer, offers);
                        }
                        self.request_done(request_id);
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "session request failed");
                if let Some(waiter) = self.outbound.remove(&request_id) {
                    if matches!(error, request_response::OutboundFailure::DialFailure) {
                        self.on_dial_failed(&request_id, peer, waiter, error.to_string());
                    } else {
                        self.peer_lookups.settled(&request_id);
                        let _ = waiter.send(Err(NetError::Failed {
                            peer: peer.to_string(),
                            reason: error.to_string(),
                        }));
                    }
                    return;
                }
                self.book_sync.answered(&request_id);
                self.request_done(request_id);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound session request failed");
                // Only a frame that does not decode is abuse; a connection that drops
                // mid-request (as a crash or a flaky link does) is not.
                if let request_response::InboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.penalise(peer, Abuse::UndecodableFrame);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Hands a peer's answer to the request's waiter, unless the fault policy loses or
    /// delays it.
    pub(super) fn deliver_response(
        &self,
        peer: PeerId,
        response: SessionResponse,
        waiter: oneshot::Sender<Result<SessionResponse, NetError>>,
    ) {
        let fault = match (&self.faults, NodeId::from_peer_id(&peer)) {
            (Some(faults), Ok(node)) => faults.decide(Point::InboundResponse {
                peer: node,
                response: &response,
            }),
            _ => Fault::Deliver,
        };
        match fault {
            Fault::Deliver => {
                let _ = waiter.send(Ok(response));
            }
            Fault::Drop => {
                debug!(%peer, "fault injection: answer lost");
                let _ = waiter.send(Err(NetError::Failed {
                    peer: peer.to_string(),
                    reason: "the answer was lost (fault injection)".into(),
                }));
            }
            Fault::Ignore => {
                debug!(%peer, "fault injection: answer ignored");
                crate::faults::hold(waiter);
            }
            Fault::Delay(by) => {
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    let _ = waiter.send(Ok(response));
                });
            }
        }
    }

    pub(super) fn on_request(
        &mut self,
        peer: PeerId,
        request: SessionRequest,
        channel: request_response::ResponseChannel<SessionResponse>,
    ) {
        if self.guard.is_banned(&peer, self.clock.monotonic()) {
            drop(channel);
            return;
        }
        let fault = match (&self.faults, NodeId::from_peer_id(&peer)) {
            (Some(faults), Ok(node)) => faults.decide(Point::InboundRequest {
                peer: node,
                request: &request,
            }),
            _ => Fault::Deliver,
        };
        match fault {
            Fault::Deliver => self.serve(peer, request, channel),
            Fault::Drop => {
                debug!(%peer, "fault injection: request not served");
                drop(channel);
            }
            Fault::Ignore => {
                debug!(%peer, "fault injection: request held, never answered");
                crate::faults::hold(channel);
            }
            Fault::Delay(by) => {
                let commands = self.commands.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    let command = Command::Serve {
                        peer,
                        request,
                        channel,
                    };
                    let _ = commands.send(command).await;
                });
            }
        }
    }

    /// Answers offer listings itself (within the peer's listing budget); hands session
    /// requests to the session manager,
    /// keeping the response channel until its answer comes back as `Command::Respond`.
    pub(super) fn serve(
        &mut self,
        peer: PeerId,
        request: SessionRequest,
        channel: request_response::ResponseChannel<SessionResponse>,
    ) {
        if self.guard.is_banned(&peer, self.clock.monotonic()) {
            drop(channel);
            return;
        }
        let listing = matches!(
            request,
            SessionRequest::ListOffers { .. }
                | SessionRequest::ListBook { .. }
                | SessionRequest::ListProfiles { .. }
        );
        let refused = listing && !self.listings.take(peer, self.clock.monotonic());
        let response = match (request, &self.sessions) {
            _ if refused => {
                self.metrics.listings_refused.inc();
                debug!(%peer, "listing refused: the peer asked for too many pages");
                SessionResponse::Error {
                    code: RpcErrorCode::RateLimited,
                    detail: "too many listings; ask again later".into(),
                }
            }
            (SessionRequest::ListOffers { tool }, _) => self.list_offers(tool),
            (SessionRequest::ListBook { after }, _) => SessionResponse::Offers(self.book.page(
                after,
                self.clock.wall(),
                MAX_OFFERS_PER_RESPONSE,
            )),
            (SessionRequest::ListProfiles { after }, _) => SessionResponse::Profiles(
                self.profiles
                    .page(after, self.clock.wall(), MAX_PROFILES_PER_RESPONSE),
            ),
            (request, Some(sessions)) => match NodeId::from_peer_id(&peer) {
                Ok(node) => {
                    // Straight to the session it concerns (a full session inbox answers
                    // "rate limited" there); its answer comes back to this loop.
                    let id = self.next_responder;
                    self.next_responder += 1;
                    let (reply, answer) = oneshot::channel();
                    sessions.dispatch(Inbound {
                        peer: node,
                        request,
                        reply,
                    });
                    self.responders.insert(id, (peer, channel));
                    self.answers.push(Box::pin(async move {
                        let answer = answer.await.unwrap_or_else(|_| {
                            Answer::from(SessionResponse::Error {
                                code: RpcErrorCode::Internal,
                                detail: "the session manager dropped the request".into(),
                            })
                        });
                        (id, answer)
                    }));
                    return;
                }
                Err(e) => SessionResponse::Error {
                    code: RpcErrorCode::BadRequest,
                    detail: e.to_string(),
                },
            },
            (_, None) => SessionResponse::Error {
                code: RpcErrorCode::BadRequest,
                detail: "this node does not serve sessions".into(),
            },
        };
        if self
            .swarm
            .behaviour_mut()
            .session
            .send_response(channel, response)
            .is_err()
        {
            debug!(%peer, "requester went away before the response");
        }
    }
}

/// An answer as it may go on the wire: one that breaks a protocol limit (a bug; every
/// detail is fitted) is replaced by an error saying so, so the requester hears of it.
fn within_limits(response: SessionResponse) -> SessionResponse {
    match orien_protocol::wire::Message::validate(&response) {
        Ok(()) => response,
        Err(e) => {
            warn!(error = %e, "an answer breaks a protocol limit; answering with an error");
            SessionResponse::Error {
                code: RpcErrorCode::Internal,
                detail: orien_protocol::fit_detail(format!(
                    "the answer broke a protocol limit: {e}"
                )),
            }
        }
    }
}
