//! What Sybil nodes (`hostile.sybil_nodes`) did, as model mode reports it: the offers
//! they published and how many of them the renters' books held at the end, the opens
//! renters tried on them; and the check that no Sybil served a session or was paid.

use std::collections::HashSet;

use orien_daemon::OfferQuery;
use orien_sim::report::{Check, Hostile};

use super::super::nodes::Nodes;
use super::super::renters::Outcomes;
use super::Book;

/// The report's `hostile` section and, when the market has Sybils, their check.
/// `books` are the Sybils' ledgers.
pub(super) async fn tally(
    nodes: &Nodes,
    books: &[Book],
    out: &Outcomes,
) -> anyhow::Result<(Hostile, Option<Check>)> {
    let first = nodes.providers + nodes.renters;
    let sybils = first..first + nodes.sybils;
    if sybils.is_empty() {
        return Ok((Hostile::default(), None));
    }
    let ids: HashSet<_> = sybils.clone().map(|i| nodes.node(i).id).collect();
    let sent: u64 = sybils
        .clone()
        .filter_map(|i| nodes.node(i).stall.as_ref())
        .map(|stall| stall.prices.len() as u64)
        .sum();
    let mut kept = HashSet::new();
    for index in nodes.providers..first {
        let Some(renter) = nodes.node(index).node() else {
            continue;
        };
        for entry in renter.offers(OfferQuery::default()).await? {
            if ids.contains(&entry.offer.provider) {
                kept.insert(entry.id);
            }
        }
    }
    let served = out
        .rented
        .iter()
        .filter(|r| sybils.contains(&r.provider))
        .count();
    let paid: u64 = books.iter().map(|b| b.earnings + b.spent).sum();
    let held = nodes.hostile.opens_held();
    let check = Check {
        name: "no Sybil served a session or was paid".into(),
        held: served == 0 && paid == 0,
        detail: format!(
            "{} Sybils, {sent} offers published, {} in the renters' books at the end; \
             renters tried {} opens on them, {held} held unanswered; {served} sessions, \
             {paid} micro-USDC",
            nodes.sybils,
            kept.len(),
            out.sybil_opens
        ),
    };
    let hostile = Hostile {
        forged_offers: 0,
        sybil_offers_sent: sent,
        sybil_offers_kept: kept.len() as u64,
        opens_wasted_on_sybils: out.sybil_opens,
    };
    Ok((hostile, Some(check)))
}
