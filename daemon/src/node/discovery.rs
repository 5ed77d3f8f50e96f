//! Finding offers of a tool: the book first, else the providers' Kademlia records and a
//! `ListOffers` to each.

use std::collections::HashSet;

use libp2p::PeerId;
use libp2p::kad::{self, GetProvidersOk, QueryId, RecordKey};
use libp2p::request_response::OutboundRequestId;
use orien_protocol::{NodeId, SessionRequest, ToolName};
use tokio::sync::oneshot;
use tracing::debug;

use crate::offer_book::{BookEntry, OfferQuery};

use super::EventLoop;

/// A `find_offers` in progress: the DHT query, then one `ListOffers` per provider found.
pub(super) struct Find {
    /// The tool (and provider, if one was named): what each provider found is asked
    /// for, and what the waiters are answered with once every one has replied.
    query: OfferQuery,
    waiters: Vec<oneshot::Sender<Vec<BookEntry>>>,
    query_done: bool,
    outstanding: HashSet<OutboundRequestId>,
    asked: HashSet<PeerId>,
}

impl EventLoop {
    pub(super) fn find_offers(
        &mut self,
        tool: ToolName,
        provider: Option<NodeId>,
        reply: oneshot::Sender<Vec<BookEntry>>,
    ) {
        let query = OfferQuery {
            tool: Some(tool.clone()),
            provider,
            ..OfferQuery::default()
        };
        let known = self.book_entries(&query);
        if !known.is_empty() {
            let _ = reply.send(known);
            return;
        }
        let query_id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(RecordKey::new(&tool.kademlia_key()));
        debug!(%tool, "looking up providers in the DHT");
        self.finds.insert(
            query_id,
            Find {
                query,
                waiters: vec![reply],
                query_done: false,
                outstanding: HashSet::new(),
                asked: HashSet::new(),
            },
        );
    }

    /// The live offers in the book matching `query`, cheapest first.
    pub(super) fn book_entries(&self, query: &OfferQuery) -> Vec<BookEntry> {
        let now = self.clock.wall();
        self.book.query(query, now).into_iter().cloned().collect()
    }

    pub(super) fn finish_find_if_done(&mut self, query_id: QueryId) {
        let done = self
            .finds
            .get(&query_id)
            .is_some_and(|f| f.query_done && f.outstanding.is_empty());
        if !done {
            return;
        }
        if let Some(find) = self.finds.remove(&query_id) {
            let found = self.book_entries(&find.query);
            for waiter in find.waiters {
                let _ = waiter.send(found.clone());
            }
        }
    }

    pub(super) fn on_providers(
        &mut self,
        query_id: QueryId,
        result: Result<GetProvidersOk, kad::GetProvidersError>,
        last: bool,
    ) {
        let local = *self.swarm.local_peer_id();
        let Some(find) = self.finds.get_mut(&query_id) else {
            return;
        };
        if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result {
            for peer in providers {
                if peer == local || !find.asked.insert(peer) {
                    continue;
                }
                let request = SessionRequest::ListOffers {
                    tool: find.query.tool.clone(),
                };
                Self::route_via_relays(&mut self.swarm, &self.relays, peer);
                let request_id = self
                    .swarm
                    .behaviour_mut()
                    .session
                    .send_request(&peer, request);
                find.outstanding.insert(request_id);
                self.find_requests.insert(request_id, query_id);
            }
        }
        if last {
            find.query_done = true;
        }
        self.finish_find_if_done(query_id);
    }

    pub(super) fn request_done(&mut self, request_id: OutboundRequestId) {
        if let Some(query_id) = self.find_requests.remove(&request_id) {
            if let Some(find) = self.finds.get_mut(&query_id) {
                find.outstanding.remove(&request_id);
            }
            self.finish_find_if_done(query_id);
        }
    }
}
