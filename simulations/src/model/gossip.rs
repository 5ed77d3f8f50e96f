//! Offer propagation over a gossipsub mesh.
//!
//! Every node keeps between `mesh_degree` (D) and 12 (D_high) mesh links to random
//! peers, as gossipsub's heartbeats leave the mesh. A published offer is forwarded on every mesh link at once; a hop costs the
//! link's one-way latency (mean ± uniform jitter, drawn per hop), the offer's
//! transmission at the sender's uplink and a signature check. A lost message is
//! recovered by gossip: at the sender's next heartbeat it advertises the offer (IHAVE)
//! and the receiver asks for it (IWANT), three more one-way trips. A recovery can be
//! lost too; after three heartbeats (gossipsub's message cache) the link gives up. Links
//! across an active partition carry nothing, and offline nodes neither receive nor
//! forward. The trace is a shortest-time search (Dijkstra) over those delays, so each
//! node's arrival time and hop count are those of the first copy to reach it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::rng::Rng;
use crate::scenario::Network;

/// An offer's size on the wire, bytes (a signed offer with its envelope).
pub const OFFER_BYTES: f64 = 1_200.0;
/// A signature check and offer-book insert, µs.
pub const VALIDATE_US: u64 = 60;
/// The most mesh peers a node keeps (gossipsub's `mesh_n_high`).
pub const MESH_HIGH: usize = 12;
/// Heartbeats a lost message can still be recovered in (gossipsub's `history_gossip`).
pub const GOSSIP_HEARTBEATS: u32 = 3;

/// The mesh: who forwards to whom.
pub struct Mesh {
    links: Vec<Vec<u32>>,
}

impl Mesh {
    /// A random mesh of `nodes` as gossipsub's heartbeats leave it: every node grafts
    /// random peers until it has `degree` (D), and a peer that already has
    /// [`MESH_HIGH`] (D_high) refuses, so each node ends with D to D_high peers.
    pub fn random(nodes: usize, degree: u32, rng: &mut Rng) -> Self {
        let mut links: Vec<Vec<u32>> = vec![Vec::new(); nodes];
        let degree = (degree as usize).min(nodes.saturating_sub(1));
        let high = MESH_HIGH.max(degree);
        for node in 0..nodes {
            let mut tries = 0;
            while links[node].len() < degree && tries < degree * 16 {
                tries += 1;
                let peer = rng.below(nodes);
                if peer == node || links[peer].len() >= high || links[node].contains(&(peer as u32))
                {
                    continue;
                }
                links[node].push(peer as u32);
                links[peer].push(node as u32);
            }
        }
        Self { links }
    }

    /// Nodes in the mesh.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether the mesh has no nodes.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// Where one traced offer got to.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Arrival time at each reached node other than the publisher, µs after publishing.
    pub arrivals_us: Vec<u64>,
    /// Hops to each reached node, in the same order.
    pub hops: Vec<u32>,
    /// Nodes that were online and could have been reached (the publisher excluded).
    pub reachable: usize,
}

/// What the trace needs to know about the network at the moment of publishing.
pub struct Conditions<'a> {
    /// Whether a node is online.
    pub online: &'a dyn Fn(usize) -> bool,
    /// Whether two nodes are on opposite sides of an active partition.
    pub cut: &'a dyn Fn(usize, usize) -> bool,
}

/// Traces one offer published by `from` at a moment with the given conditions.
pub fn trace(
    mesh: &Mesh,
    from: usize,
    network: &Network,
    when: &Conditions<'_>,
    rng: &mut Rng,
) -> Trace {
    let n = mesh.len();
    let mut arrival = vec![u64::MAX; n];
    let mut hops = vec![0u32; n];
    let mut done = vec![false; n];
    let mut queue = BinaryHeap::new();
    arrival[from] = 0;
    queue.push(Reverse((0u64, from as u32)));
    let transmit_us = (OFFER_BYTES * 8.0 / network.uplink_mbps.0) as u64;
    let heartbeat_us = (network.heartbeat_ms.0 * 1_000.0).max(1.0) as u64;
    let one_way = |rng: &mut Rng| -> u64 {
        let latency = network.latency_ms.0 + rng.between(-1.0, 1.0) * network.jitter_ms.0;
        (latency.max(0.1) * 1_000.0) as u64
    };
    while let Some(Reverse((at, node))) = queue.pop() {
        let node = node as usize;
        if done[node] {
            continue;
        }
        done[node] = true;
        for &peer in &mesh.links[node] {
            let peer = peer as usize;
            if done[peer] || !(when.online)(peer) || (when.cut)(node, peer) {
                continue;
            }
            let sent = at + VALIDATE_US + transmit_us;
            let mut delivered = sent + one_way(rng);
            if rng.chance(network.loss.0) {
                // Lost: recovered through IHAVE/IWANT at one of the next heartbeats.
                let mut recovered = None;
                let mut beat = (sent / heartbeat_us + 1) * heartbeat_us;
                for _ in 0..GOSSIP_HEARTBEATS {
                    if !rng.chance(network.loss.0) {
                        recovered = Some(beat + one_way(rng) + one_way(rng) + one_way(rng));
                        break;
                    }
                    beat += heartbeat_us;
                }
                match recovered {
                    Some(time) => delivered = time,
                    None => continue,
                }
            }
            if delivered < arrival[peer] {
                arrival[peer] = delivered;
                hops[peer] = hops[node] + 1;
                queue.push(Reverse((delivered, peer as u32)));
            }
        }
    }
    let reachable = (0..n).filter(|&i| i != from && (when.online)(i)).count();
    let reached: Vec<usize> = (0..n).filter(|&i| i != from && done[i]).collect();
    Trace {
        arrivals_us: reached.iter().map(|&i| arrival[i]).collect(),
        hops: reached.iter().map(|&i| hops[i]).collect(),
        reachable,
    }
}

/// Arrival times (µs) at every node of `samples` offers, each published by a random
/// node of a fresh random mesh of `nodes` with every node online and no partition:
/// the model's side of a calibration against network mode.
pub fn calm_arrivals(
    nodes: usize,
    degree: u32,
    network: &Network,
    samples: usize,
    seed: u64,
) -> Vec<u64> {
    let mut rng = Rng::stream(seed, 2);
    let mesh = Mesh::random(nodes, degree, &mut rng);
    let all = |_: usize| true;
    let none = |_: usize, _: usize| false;
    let when = Conditions {
        online: &all,
        cut: &none,
    };
    let mut arrivals = Vec::new();
    for _ in 0..samples {
        let from = rng.below(nodes);
        arrivals.extend(trace(&mesh, from, network, &when, &mut rng).arrivals_us);
    }
    arrivals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calm() -> Network {
        Network {
            loss: crate::scenario::Loss(0.0),
            ..Network::default()
        }
    }

    #[test]
    fn an_offer_reaches_every_online_node_in_a_few_hops() {
        let mut rng = Rng::new(3);
        let mesh = Mesh::random(2_000, 6, &mut rng);
        let all = |_: usize| true;
        let none = |_: usize, _: usize| false;
        let when = Conditions {
            online: &all,
            cut: &none,
        };
        let trace = trace(&mesh, 0, &calm(), &when, &mut rng);
        assert_eq!(trace.arrivals_us.len(), 1_999);
        assert_eq!(trace.reachable, 1_999);
        let most = *trace.hops.iter().max().expect("reached some");
        assert!(
            (3..=8).contains(&most),
            "{most} hops across 2,000 nodes of degree 6 to 12"
        );
        // Each hop costs at least latency − jitter (20 ms).
        let slowest = *trace.arrivals_us.iter().max().expect("reached some");
        assert!(
            slowest >= u64::from(most) * 20_000,
            "{slowest} µs for {most} hops"
        );
    }

    #[test]
    fn a_partition_keeps_the_offer_on_its_side_and_offline_nodes_do_not_forward() {
        let mut rng = Rng::new(4);
        let mesh = Mesh::random(1_000, 6, &mut rng);
        let all = |_: usize| true;
        let side = |i: usize| i.is_multiple_of(2);
        let cut = move |a: usize, b: usize| side(a) != side(b);
        let when = Conditions {
            online: &all,
            cut: &cut,
        };
        let traced = trace(&mesh, 0, &calm(), &when, &mut rng);
        assert_eq!(traced.reachable, 999);
        let reached = traced.arrivals_us.len();
        assert!(
            (450..=499).contains(&reached),
            "{reached}: most of its side, nothing beyond"
        );
        // The same half offline: an offer spreads only through the online half.
        let online = |i: usize| i.is_multiple_of(2);
        let none = |_: usize, _: usize| false;
        let when = Conditions {
            online: &online,
            cut: &none,
        };
        let traced = trace(&mesh, 0, &calm(), &when, &mut rng);
        assert_eq!(traced.reachable, 499);
        assert!((450..=499).contains(&traced.arrivals_us.len()));
    }
}
