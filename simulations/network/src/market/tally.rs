//! Every ledger read back: the report's figures, and the invariants checked across
//! the ledgers of both sides of every session.

mod churned;
mod forgeries;
mod misbehaved;
mod partitioned;
mod sybils;

use std::collections::HashMap;

use orien_ledger::accounts::{Account, LaneKey};
use orien_ledger::{SessionHead, SessionStatus};
use orien_protocol::{NodeId, Pricing, SessionId, Usdc};
use orien_sim::Scenario;
use orien_sim::model::churn::Schedule;
use orien_sim::model::session::Outcome;
use orien_sim::report::{
    self, Check, Earnings, Money, Nodes as NodeCounts, Propagation, Report, Sessions, Stack,
};

use super::nodes::Nodes;
use super::renters::{Outcomes, Rented, Trace};

/// One session as one ledger holds it.
struct Held {
    renter: NodeId,
    provider: NodeId,
    lane: LaneKey,
    budget: Usdc,
    pricing: Pricing,
    head: SessionHead,
}

/// The work a session's provider did (its modelled sandbox open from its opening to
/// `end`), priced by the session and capped by its budget, beyond what the provider's
/// own ledger was paid; with the session as its renter's ledger holds it. `None` when
/// either is missing.
fn unpaid_work<'a>(
    nodes: &Nodes,
    books: &'a [Book],
    rented: &Rented,
    end: impl FnOnce(&orien_provider::model::SessionWork) -> std::time::Duration,
) -> Option<(&'a Held, u64)> {
    let held = books[rented.renter].heads.get(&rented.session)?;
    let work = nodes
        .all
        .get(rented.provider)
        .and_then(|n| n.stall.as_ref())
        .and_then(|stall| stall.sandbox.work(&rented.session))?;
    let served = end(&work).saturating_sub(work.opened);
    let worth = held
        .pricing
        .session_amount(orien_protocol::Millis::from_duration(served))
        .min(held.budget);
    let paid = books[rented.provider]
        .heads
        .get(&rented.session)
        .map_or(Usdc::ZERO, |p| p.head.amount);
    Some((held, worth.micros().saturating_sub(paid.micros())))
}

/// One ledger's view of the sessions it took part in, and its accounts.
#[derive(Default)]
struct Book {
    /// Sessions it rented (as renter) or served (as provider), with their heads.
    heads: HashMap<SessionId, Held>,
    /// What it has acknowledged on each lane it pays or is paid on.
    lanes: HashMap<LaneKey, u64>,
    earnings: u64,
    fee: u64,
    reserve: u64,
    spent: u64,
    verify_error: Option<String>,
}

fn read(store: &orien_ledger::Store, me: NodeId) -> anyhow::Result<Book> {
    let mut book = Book::default();
    for (record, head) in store.sessions()? {
        book.heads.insert(
            record.session,
            Held {
                renter: record.renter,
                provider: record.provider,
                lane: record.lane(),
                budget: record.budget,
                pricing: record.pricing,
                head,
            },
        );
    }
    let positive = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
    for (account, balance) in store.balances()? {
        let net = balance.net(&account);
        if let Account::Lane(lane) = account {
            book.lanes.insert(lane, positive(net));
        }
        match account {
            Account::Lane(lane) if lane.renter == me => book.spent += positive(net),
            Account::Earnings(lane) | Account::SettledProvider(lane) if lane.provider == me => {
                book.earnings += positive(net);
            }
            Account::ProtocolFee | Account::SettledFee => book.fee += positive(net),
            Account::Reserve | Account::SettledReserve => book.reserve += positive(net),
            _ => {}
        }
    }
    if let Err(e) = store.verify() {
        book.verify_error = Some(e.to_string());
    }
    Ok(book)
}

/// The report of a network-mode run.
pub(super) async fn report(
    scenario: &Scenario,
    seed: u64,
    minutes: u32,
    nodes: &Nodes,
    mut out: Outcomes,
    schedule: Option<&Schedule>,
    forged: Option<&super::forger::Forged>,
) -> anyhow::Result<Report> {
    let mut books = Vec::with_capacity(nodes.len());
    for index in 0..nodes.len() {
        let node = nodes.node(index);
        let (store, me) = (node.store(), node.id);
        books.push(tokio::task::spawn_blocking(move || read(&store, me)).await??);
    }
    let mut peers = Vec::with_capacity(nodes.len());
    let (mut trimmed, mut opened, mut peer_lookups) = (0, 0, 0);
    for index in 0..nodes.len() {
        let retired = nodes.node(index).life().retired;
        trimmed += retired.trimmed;
        opened += retired.connections_opened;
        peer_lookups += retired.peer_lookups;
        // A provider churned away at the end has no peers to count.
        let Some(node) = nodes.node(index).node() else {
            continue;
        };
        peers.push(u32::try_from(node.stats().await?.peers).unwrap_or(u32::MAX));
        trimmed += node.metrics().peers_trimmed.get();
        peer_lookups += node.metrics().peer_lookups.get();
        opened += connections_opened(&node.metrics().render());
    }
    // Providers online at each bucket's start, as churn played them.
    if let Some(schedule) = schedule {
        for bucket in &mut out.buckets {
            bucket.providers_online = schedule.online_at(u64::from(bucket.minute) * 60_000_000);
        }
    }
    let (providers, rest) = books.split_at(nodes.providers);
    let (renters, sybil_books) = rest.split_at(nodes.renters);
    let sum = |books: &[Book], f: fn(&Book) -> u64| books.iter().map(f).sum::<u64>();
    let renters_paid = sum(renters, |b| b.spent);
    let providers_earned = sum(providers, |b| b.earnings);
    // The fee and reserve as the providers' ledgers hold them (each renter's ledger
    // holds its own copy of the same split).
    let (fee, reserve) = (sum(providers, |b| b.fee), sum(providers, |b| b.reserve));
    let deposited: u64 = out.rented.iter().map(|r| r.budget.micros()).sum();
    let partitions = partitioned::Partitioned::of(scenario, nodes);
    let churned = churned::Churned::of(nodes, partitions.interval(), partitions.round_trip());
    // A session a partition cut, or its provider's stop broke off, may leave its lane
    // one receipt apart.
    let broken_off = |r: &Rented| partitions.cut(r) || churned.stopped(r).is_some();
    let gaps = partitions.lane_gaps(nodes, &books, &out.rented, &broken_off);
    let unpaid: Vec<_> = partitions
        .unpaid(nodes, &books, &out.rented)
        .into_iter()
        .chain(churned.unpaid(nodes, &books, &out.rented))
        .chain(misbehaved::unpaid(
            scenario,
            nodes,
            &books,
            &out.rented,
            partitions.interval(),
            partitions.round_trip(),
        ))
        .collect();
    let mut checks = Vec::new();
    checks.push(Check {
        name: "money is conserved: renters paid = providers + fee + reserve".into(),
        held: renters_paid == providers_earned + fee + reserve + gaps.ahead
            && gaps.behind == 0
            && gaps.beyond_bound == 0,
        detail: if gaps.ahead + gaps.behind == 0 {
            format!(
                "{} = {} + {} + {} (renters' ledgers against providers')",
                report::usdc_string(renters_paid),
                report::usdc_string(providers_earned),
                report::usdc_string(fee),
                report::usdc_string(reserve)
            )
        } else {
            format!(
                "{} = {} + {} + {} + {} acknowledged by renters on {} lanes and not yet on \
                 their providers' ledgers (acks a partition or a provider's stop cut off; a \
                 lane resyncs at its next open; {} lanes beyond one receipt for each session \
                 broken off); {} on lanes whose provider's ledger is ahead",
                report::usdc_string(renters_paid),
                report::usdc_string(providers_earned),
                report::usdc_string(fee),
                report::usdc_string(reserve),
                report::usdc_string(gaps.ahead),
                gaps.lanes,
                gaps.beyond_bound,
                report::usdc_string(gaps.behind)
            )
        },
    });
    // Both sides of every session: same head, closed, within budget.
    let (mut mismatched, mut open, mut over_budget, mut overdrawn) = (0, 0, 0, 0);
    let mut paid_by: HashMap<NodeId, (u64, u64)> = HashMap::new();
    for rented in &out.rented {
        let renter = &books[rented.renter];
        let Some(held) = renter.heads.get(&rented.session) else {
            mismatched += 1;
            continue;
        };
        let head = &held.head;
        let entry = paid_by.entry(held.renter).or_default();
        entry.0 += head.amount.micros();
        entry.1 += held.budget.micros();
        if head.amount > held.budget {
            over_budget += 1;
        }
        if !matches!(head.status, SessionStatus::Closed(_)) {
            open += 1;
        }
        let provider_head = nodes
            .node(rented.provider.min(nodes.len() - 1))
            .id
            .eq(&held.provider)
            .then(|| books[rented.provider].heads.get(&rented.session))
            .flatten();
        let agrees =
            provider_head.is_some_and(|p| p.head.seq == head.seq && p.head.amount == head.amount);
        // A session a partition cut or its provider's stop broke off did not run its
        // course: an ack the break swallowed leaves its provider's ledger behind: a lane
        // gap, bounded in the conservation check above.
        if !agrees && rented.outcome.succeeded() && !broken_off(rented) {
            mismatched += 1;
        }
    }
    for (paid, deposit) in paid_by.values() {
        if paid > deposit {
            overdrawn += 1;
        }
    }
    checks.push(Check {
        name: "no renter paid more than it deposited".into(),
        held: overdrawn == 0,
        detail: format!(
            "{overdrawn} overdrawn; {} left in escrow",
            report::usdc_string(deposited.saturating_sub(renters_paid))
        ),
    });
    checks.push(Check {
        name: "no session paid beyond its budget".into(),
        held: over_budget == 0,
        detail: format!("{over_budget} over"),
    });
    checks.push(Check {
        name: "every honest session that ran its course settled all it used".into(),
        held: mismatched == 0 && open == 0,
        detail: format!(
            "{mismatched} whose renter's and provider's ledgers differ; {open} left open"
        ),
    });
    if !unpaid.is_empty() {
        let worst = unpaid.iter().map(|u| u.worst_share).fold(0.0, f64::max);
        let kinds: Vec<String> = unpaid
            .iter()
            .map(|u| format!("{} sessions: {}", u.loss.cause, u.loss.sessions))
            .collect();
        checks.push(Check {
            name: "every loss within its bound".into(),
            held: worst <= 1.0,
            detail: format!("worst share of a bound {worst:.3} ({})", kinds.join("; ")),
        });
    }
    checks.extend(partitions.checks(nodes, &out.traces));
    let churn = churned.counts(nodes, &books, &out.rented);
    checks.extend(churn.as_ref().map(|(_, check)| check.clone()));
    let unbalanced: Vec<String> = books
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.verify_error.as_ref().map(|e| format!("node {i}: {e}")))
        .collect();
    let (mut hostile, sybil_check) = sybils::tally(nodes, sybil_books, &out).await?;
    checks.extend(sybil_check);
    let (forged_offers, forged_check) = forgeries::tally(nodes, forged).await?;
    hostile.forged_offers = forged_offers;
    checks.extend(forged_check);
    checks.push(Check {
        name: "every ledger verifies (postings balanced, chains intact)".into(),
        held: unbalanced.is_empty(),
        detail: if unbalanced.is_empty() {
            format!("{} ledgers", books.len())
        } else {
            unbalanced.join("; ")
        },
    });
    let earnings = Earnings::of(
        &providers
            .iter()
            .enumerate()
            .map(|(i, book)| {
                let cheapest = nodes
                    .node(i)
                    .stall
                    .as_ref()
                    .and_then(|s| s.prices.iter().map(|p| p.1).min())
                    .unwrap_or(Usdc::ZERO);
                (cheapest, book.earnings)
            })
            .collect::<Vec<_>>(),
    );
    let mut open_delays = out.open_delays_us.clone();
    open_delays.sort_unstable();
    let receipts: u64 = renters
        .iter()
        .flat_map(|b| b.heads.values())
        .map(|h| h.head.seq)
        .sum();
    let succeeded = Outcome::ALL
        .iter()
        .filter(|o| o.succeeded())
        .map(|o| out.outcomes.get(o.as_str()).copied().unwrap_or(0))
        .sum();
    Ok(Report {
        scenario: scenario.name.clone(),
        mode: "network".into(),
        seed,
        nodes: NodeCounts {
            providers: scenario.nodes.providers,
            renters: scenario.nodes.renters,
            sybils: scenario.hostile.sybil_nodes,
        },
        simulated_minutes: minutes,
        events: receipts,
        propagation: propagation(nodes, &out.traces),
        sessions: Sessions {
            requested: out.requested,
            opened: out.rented.len() as u64,
            succeeded,
            outcomes: Outcome::ALL
                .iter()
                .map(|o| {
                    let n = out.outcomes.get(o.as_str()).copied().unwrap_or(0);
                    (o.as_str().to_owned(), n)
                })
                .collect(),
            unanswered_opens: out.unanswered,
            full_refusals: out.full,
            open_p50_ms: report::quantile(&open_delays, 0.5) as f64 / 1_000.0,
            open_p99_ms: report::quantile(&open_delays, 0.99) as f64 / 1_000.0,
            over_time: out.buckets,
        },
        earnings,
        money: Money {
            deposited: report::usdc_string(deposited),
            renters_paid: report::usdc_string(renters_paid),
            providers_earned: report::usdc_string(providers_earned),
            fee: report::usdc_string(fee),
            reserve: report::usdc_string(reserve),
            escrow_left: report::usdc_string(deposited.saturating_sub(renters_paid)),
        },
        losses: unpaid.into_iter().map(|u| u.loss).collect(),
        hostile,
        checks,
        stack: Some(Stack {
            peers_mean: report::round6(
                peers.iter().sum::<u32>() as f64 / peers.len().max(1) as f64,
            ),
            peers_max: peers.iter().copied().max().unwrap_or(0),
            peers_min: peers.iter().copied().min().unwrap_or(0),
            trimmed,
            connections_opened: opened,
            peer_lookups,
            receipts,
            failed_calls: out.failed_calls,
            connections_cut: nodes.cuts.connections_cut(),
            dials_cut: nodes.cuts.dials_cut(),
            coverage_after_heal: partitions.coverage_after_heal(nodes, &out.traces),
            churn: churn.map(|(counts, _)| counts),
            hostile: super::hostile::Hostile::plays(scenario).then(|| nodes.hostile.counts()),
        }),
    })
}

/// Arrival delays and hop counts of the traced offers, from the books' records.
fn propagation(nodes: &Nodes, traces: &[Trace]) -> Propagation {
    let heard = nodes.ears.heard();
    let mut delays = Vec::new();
    let mut hops = Vec::new();
    let mut coverage = Vec::new();
    let stops = nodes.churn.stops();
    // Whether `node` was down (churned away) at `at`: it was not there to hear.
    let down = |node: usize, at| {
        stops
            .iter()
            .any(|s| s.provider == node && s.at <= at && s.back.is_none_or(|b| b > at))
    };
    for trace in traces {
        // Each online node's first arrival of the offer, and the node it came from.
        let mut first: HashMap<usize, (u64, Option<usize>)> = HashMap::new();
        for h in heard
            .iter()
            .filter(|h| h.offer == trace.offer && !down(h.node, trace.published))
        {
            let us = h.at.saturating_duration_since(trace.published).as_micros() as u64;
            let source = h.source.and_then(|peer| nodes.by_peer.get(&peer).copied());
            let entry = first.entry(h.node).or_insert((us, source));
            if us < entry.0 {
                *entry = (us, source);
            }
        }
        first.remove(&trace.publisher);
        delays.extend(first.values().map(|f| f.0));
        let online = (0..nodes.len())
            .filter(|&n| n != trace.publisher && !down(n, trace.published))
            .count();
        coverage.push(report::round6(first.len() as f64 / online.max(1) as f64));
        // Hops: one more than the node each book took the offer from.
        for &node in first.keys() {
            let (mut at, mut count) = (node, 0u32);
            while at != trace.publisher && (count as usize) < nodes.len() {
                match first.get(&at).and_then(|f| f.1) {
                    Some(source) => {
                        at = source;
                        count += 1;
                    }
                    None => break,
                }
            }
            if at == trace.publisher {
                hops.push(count);
            }
        }
    }
    delays.sort_unstable();
    hops.sort_unstable();
    Propagation::of(&delays, &hops, &coverage)
}

/// Connections a node established, from libp2p's counter (one series per protocol
/// stack and role) in its Prometheus text.
pub(super) fn connections_opened(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("libp2p_swarm_connections_established_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}
