//! The book's admission, eviction and query rules.
use super::*;
use orien_protocol::{EvmAddress, ImageDigest, NodeKey, Pricing, ResourceLimits};

fn offer(key: &NodeKey, tool: &str, issued: u64, life: u64, price: u64) -> Offer {
    Offer {
        provider: key.node_id(),
        tool: ToolName::new(tool).unwrap(),
        version: "1".into(),
        description: "test tool".into(),
        image_digest: ImageDigest::from_bytes([1; 32]),
        args_schema: "{}".into(),
        pricing: Pricing {
            session_per_minute: Usdc::from_micros(10),
            exec_per_minute: Usdc::from_micros(price),
            artefact_per_gib: Usdc::ZERO,
        },
        limits: ResourceLimits {
            max_exec: Millis(1_000),
            cpu_millis: 1_000,
            memory_bytes: 1 << 20,
            pids: 8,
            tmpfs_bytes: 1 << 20,
            output_bytes: 1 << 16,
            workspace_bytes: 1 << 20,
            concurrent_execs: 1,
        },
        payout: EvmAddress::from_bytes([9; 20]),
        issued_at: Timestamp(issued),
        expires_at: Timestamp(issued + life),
        keep_artefacts: Millis::ZERO,
    }
}

fn signed(key: &NodeKey, o: &Offer) -> Signed<Offer> {
    key.sign(o).unwrap()
}

const NOW: Timestamp = Timestamp(1_000_000);

#[test]
fn a_valid_offer_is_added_once() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let key = NodeKey::generate();
    let s = signed(&key, &offer(&key, "wc", 999_000, 60_000, 5));
    let id = s.offer_id();
    assert_eq!(book.admit(s.clone(), NOW).unwrap(), Admission::Added(id));
    assert_eq!(book.admit(s, NOW).unwrap(), Admission::Duplicate(id));
    assert_eq!(book.len(), 1);
}

#[test]
fn forged_garbage_expired_and_future_offers_are_rejected() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let key = NodeKey::generate();
    let forger = NodeKey::generate();
    let forged = forger.sign(&offer(&key, "wc", 999_000, 60_000, 5)).unwrap();
    let err = book.admit(forged, NOW).unwrap_err();
    assert!(matches!(err, OfferRejection::Signature(_)) && err.is_misbehaviour());
    let err = book.admit_bytes(b"\x00garbage", NOW, None).unwrap_err();
    assert!(matches!(err, OfferRejection::Decode(_)) && err.is_misbehaviour());
    let err = book
        .admit(signed(&key, &offer(&key, "wc", 800_000, 50_000, 5)), NOW)
        .unwrap_err();
    assert!(matches!(err, OfferRejection::Expired { .. }) && !err.is_misbehaviour());
    let err = book
        .admit(signed(&key, &offer(&key, "wc", 2_000_000, 50_000, 5)), NOW)
        .unwrap_err();
    assert!(matches!(err, OfferRejection::FromTheFuture { .. }));
    assert!(book.is_empty());
}

#[test]
fn a_newer_offer_replaces_the_older_and_an_older_one_is_stale() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let key = NodeKey::generate();
    let old = signed(&key, &offer(&key, "wc", 990_000, 60_000, 5));
    let new = signed(&key, &offer(&key, "wc", 995_000, 60_000, 4));
    book.admit(old.clone(), NOW).unwrap();
    assert_eq!(
        book.admit(new.clone(), NOW).unwrap(),
        Admission::Replaced {
            new: new.offer_id(),
            old: old.offer_id()
        }
    );
    assert!(matches!(book.admit(old, NOW), Err(OfferRejection::Stale)));
    assert_eq!(book.len(), 1);
}

#[test]
fn a_newer_expired_offer_withdraws_the_held_one() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let key = NodeKey::generate();
    let held = signed(&key, &offer(&key, "wc", 990_000, 60_000, 5));
    book.admit(held.clone(), NOW).unwrap();
    let withdrawal = signed(&key, &offer(&key, "wc", 995_000, 1, 5));
    assert_eq!(
        book.admit(withdrawal.clone(), NOW).unwrap(),
        Admission::Withdrawn {
            withdrawal: withdrawal.offer_id(),
            removed: Some(held.offer_id())
        }
    );
    assert!(book.is_empty());
    // An old expired offer withdraws nothing.
    book.admit(signed(&key, &offer(&key, "wc", 996_000, 60_000, 5)), NOW)
        .unwrap();
    assert!(matches!(
        book.admit(withdrawal, NOW),
        Err(OfferRejection::Expired { .. })
    ));
    assert_eq!(book.len(), 1);
}

#[test]
fn expired_offers_disappear() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let key = NodeKey::generate();
    book.admit(signed(&key, &offer(&key, "a", 999_000, 10_000, 5)), NOW)
        .unwrap();
    book.admit(signed(&key, &offer(&key, "b", 999_000, 60_000, 5)), NOW)
        .unwrap();
    assert_eq!(book.expire(Timestamp(1_009_000)).len(), 1);
    assert_eq!(book.len(), 1);
    assert_eq!(
        book.query(&OfferQuery::default(), Timestamp(1_009_000))
            .len(),
        1
    );
}

#[test]
fn capacity_and_per_provider_limits_hold() {
    let limits = OfferBookLimits {
        capacity: 3,
        per_provider: 2,
        ..OfferBookLimits::default()
    };
    let mut book = OfferBook::new(limits);
    let a = NodeKey::generate();
    let b = NodeKey::generate();
    book.admit(signed(&a, &offer(&a, "t1", 999_000, 10_000, 1)), NOW)
        .unwrap();
    book.admit(signed(&a, &offer(&a, "t2", 999_000, 20_000, 1)), NOW)
        .unwrap();
    assert!(matches!(
        book.admit(signed(&a, &offer(&a, "t3", 999_000, 20_000, 1)), NOW),
        Err(OfferRejection::ProviderFull(2))
    ));
    book.admit(signed(&b, &offer(&b, "t1", 999_000, 30_000, 1)), NOW)
        .unwrap();
    // Full: a longer-lived newcomer evicts the soonest-expiring offer…
    book.admit(signed(&b, &offer(&b, "t2", 999_000, 40_000, 1)), NOW)
        .unwrap();
    assert_eq!(book.len(), 3);
    assert!(
        book.query(
            &OfferQuery {
                tool: Some(ToolName::new("t1").unwrap()),
                provider: Some(a.node_id()),
                ..Default::default()
            },
            NOW
        )
        .is_empty()
    );
    // …a shorter-lived one is refused.
    let c = NodeKey::generate();
    assert!(matches!(
        book.admit(signed(&c, &offer(&c, "t1", 999_000, 5_000, 1)), NOW),
        Err(OfferRejection::BookFull)
    ));
}

#[test]
fn a_flood_of_fresh_keys_through_one_connection_displaces_only_itself() {
    // The share alone would let the flood fill the book: eviction must be fair.
    let limits = OfferBookLimits {
        capacity: 50,
        per_source: 60,
        ..OfferBookLimits::default()
    };
    let mut book = OfferBook::new(limits);
    let (flooder, honest_peer) = (libp2p::PeerId::random(), libp2p::PeerId::random());
    // Honest providers, each heard through its own connection, with short offers.
    let honest: Vec<NodeKey> = (0..20).map(|_| NodeKey::generate()).collect();
    for key in &honest {
        let o = offer(key, "sha256", 999_000, 10_000, 5);
        book.admit_from(signed(key, &o), NOW, Some(honest_peer))
            .unwrap();
    }
    // One connection brings a thousand fresh keys with long-lived offers.
    let mut refused = 0;
    for _ in 0..1_000 {
        let key = NodeKey::generate();
        let o = offer(&key, "sha256", 999_000, 3_600_000, 1);
        if book
            .admit_from(signed(&key, &o), NOW, Some(flooder))
            .is_err()
        {
            refused += 1;
        }
    }
    assert!(
        refused >= 940,
        "the flood fills one share at most: {refused}"
    );
    for key in &honest {
        let found = book.query(
            &OfferQuery {
                provider: Some(key.node_id()),
                ..Default::default()
            },
            NOW,
        );
        assert_eq!(found.len(), 1, "an honest offer was evicted by the flood");
    }
    assert_eq!(book.len(), 50);
}

#[test]
fn queries_filter_by_tool_price_and_provider_cheapest_first() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let a = NodeKey::generate();
    let b = NodeKey::generate();
    book.admit(signed(&a, &offer(&a, "wc", 999_000, 60_000, 50)), NOW)
        .unwrap();
    book.admit(signed(&b, &offer(&b, "wc", 999_000, 60_000, 20)), NOW)
        .unwrap();
    book.admit(signed(&b, &offer(&b, "grep", 999_000, 60_000, 10)), NOW)
        .unwrap();
    let wc = Some(ToolName::new("wc").unwrap());
    let all_wc = book.query(
        &OfferQuery {
            tool: wc.clone(),
            ..Default::default()
        },
        NOW,
    );
    assert_eq!(
        all_wc.iter().map(|e| e.offer.provider).collect::<Vec<_>>(),
        vec![b.node_id(), a.node_id()]
    );
    let cheap = book.query(
        &OfferQuery {
            tool: wc,
            max_exec_price: Some(Usdc::from_micros(30)),
            provider: None,
        },
        NOW,
    );
    assert_eq!(cheap.len(), 1);
    let by_b = book.query(
        &OfferQuery {
            provider: Some(b.node_id()),
            ..Default::default()
        },
        NOW,
    );
    assert_eq!(by_b.len(), 2);
}

#[test]
fn a_reannounced_offer_still_opens_under_the_id_it_replaced() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let key = NodeKey::generate();
    let first = signed(&key, &offer(&key, "wc", 999_000, 60_000, 5));
    let again = signed(&key, &offer(&key, "wc", 999_500, 60_000, 5));
    let (first_id, again_id) = (first.offer_id(), again.offer_id());
    book.admit(first, NOW).unwrap();
    assert_eq!(
        book.admit(again, NOW).unwrap(),
        Admission::Replaced {
            new: again_id,
            old: first_id
        }
    );
    // Listed once, under the new id; the old id opens the new offer.
    assert_eq!(book.len(), 1);
    assert!(book.get(&first_id).is_none());
    assert_eq!(book.resolve(&first_id).map(|e| e.id), Some(again_id));
    // Until the replaced offer expires.
    book.expire(Timestamp(999_000 + 60_000));
    assert!(book.resolve(&first_id).is_none());
    assert_eq!(book.resolve(&again_id).map(|e| e.id), Some(again_id));
}

#[test]
fn new_terms_or_a_withdrawal_forget_the_replaced_ids() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let key = NodeKey::generate();
    let first = signed(&key, &offer(&key, "wc", 999_000, 60_000, 5));
    let same = signed(&key, &offer(&key, "wc", 999_100, 60_000, 5));
    let dearer = signed(&key, &offer(&key, "wc", 999_200, 60_000, 6));
    let (first_id, same_id) = (first.offer_id(), same.offer_id());
    book.admit(first, NOW).unwrap();
    book.admit(same, NOW).unwrap();
    assert!(book.resolve(&first_id).is_some());
    // A price change: who chose the old price is not moved to the new one.
    book.admit(dearer, NOW).unwrap();
    assert!(book.resolve(&first_id).is_none());
    assert!(book.resolve(&same_id).is_none());

    let cheap = signed(&key, &offer(&key, "wc", 999_300, 60_000, 6));
    let dearer_id = book.query(&OfferQuery::default(), NOW)[0].id;
    book.admit(cheap, NOW).unwrap();
    assert!(book.resolve(&dearer_id).is_some(), "same terms: forwarded");
    // A withdrawal (an offer that has just expired, newer than the held one).
    let withdrawal = signed(&key, &offer(&key, "wc", 999_400, 1, 6));
    assert!(matches!(
        book.admit(withdrawal, NOW).unwrap(),
        Admission::Withdrawn { .. }
    ));
    assert!(book.resolve(&dearer_id).is_none());
    assert!(book.is_empty());
}

#[test]
fn a_book_pages_its_live_offers_in_id_order_for_a_peer_that_syncs() {
    let mut book = OfferBook::new(OfferBookLimits::default());
    let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
    let mut live = Vec::new();
    for key in &keys {
        for tool in ["wc", "grep"] {
            let s = signed(key, &offer(key, tool, 999_000, 60_000, 5));
            live.push(s.offer_id());
            book.admit(s, NOW).unwrap();
        }
    }
    // Held, but expired by the time a peer asks.
    let brief = signed(&keys[0], &offer(&keys[0], "sed", 999_000, 1_500, 5));
    book.admit(brief, NOW).unwrap();
    live.sort_unstable();
    let later = Timestamp(NOW.0 + 1_000);
    let (mut paged, mut after) = (Vec::new(), None);
    loop {
        let page = book.page(after, later, 4);
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some(last.offer_id());
        paged.extend(page.iter().map(Signed::offer_id));
    }
    assert_eq!(
        paged, live,
        "every live offer once, in id order, no expired one"
    );
}
