//! What the forger (`hostile.forged_offers_per_minute`, `market/forger.rs`) achieved:
//! how many forged offers it published, how many times the nodes' gossip validation
//! rejected one, and the check that none entered a book or went past the nodes the
//! forger sent it to.

use orien_daemon::OfferQuery;
use orien_daemon::metrics::OfferOutcome;
use orien_sim::report::Check;

use super::super::forger::{FORGER_PEERS, Forged};
use super::super::nodes::Nodes;

/// Forged offers published, and the check when there were any.
pub(super) async fn tally(
    nodes: &Nodes,
    forged: Option<&Forged>,
) -> anyhow::Result<(u64, Option<Check>)> {
    let Some(forged) = forged else {
        return Ok((0, None));
    };
    let ids = forged
        .ids
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let sent = ids.len() as u64;
    let (mut rejected, mut in_books) = (0u64, 0usize);
    for index in 0..nodes.len() {
        let Some(node) = nodes.node(index).node() else {
            continue;
        };
        rejected += node
            .metrics()
            .offers_received
            .get_or_create(&OfferOutcome {
                outcome: "rejected",
            })
            .get();
        in_books += node
            .offers(OfferQuery::default())
            .await?
            .iter()
            .filter(|entry| ids.contains(&entry.id))
            .count();
    }
    let peers = *forged
        .peers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Gossip reaches a node's direct peers only if they forward it: a rejected offer
    // is not, so each forgery can be rejected at most once by each node it was sent to.
    let bound = sent * FORGER_PEERS as u64;
    let check = Check {
        name: "no forged offer entered a book or went past the nodes it was sent to".into(),
        held: in_books == 0 && rejected <= bound,
        detail: format!(
            "{sent} forged offers published to {peers} peers; rejected {rejected} times \
             by the nodes' validation (at most {bound} without forwarding; fewer once \
             gossip scoring ignores the forger); {in_books} in any book"
        ),
    };
    Ok((sent, Some(check)))
}
