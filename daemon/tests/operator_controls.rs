//! The operator's controls of peers, between in-process nodes (real libp2p over
//! loopback, real RocksDB, the modelled sandbox): a provider serves no renter it denies,
//! only the renters of its allow list when it has one, and refuses a renter that opens
//! too often; a renter opens nothing with a provider it denies.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/harness.rs"]
mod harness;

use harness::{Pair, fast};
use orien_daemon::SessionError;
use orien_daemon::session::{OperatorControls, PeerAccess};
use orien_protocol::*;

const BUDGET: Usdc = Usdc::from_micros(100_000);

fn with(operator: OperatorControls) -> orien_daemon::SessionConfig {
    orien_daemon::SessionConfig { operator, ..fast() }
}

fn renters(access: PeerAccess) -> OperatorControls {
    OperatorControls {
        renters: access,
        ..OperatorControls::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_serves_no_renter_it_denies_and_only_those_it_allows() {
    let renter = NodeKey::generate();
    let deny = PeerAccess {
        allow: None,
        deny: [renter.node_id()].into(),
    };
    let pair = Pair::start_with(with(renters(deny)), fast(), renter.clone()).await;
    assert!(
        matches!(
            pair.open(BUDGET).await,
            Err(SessionError::Rejected(RejectReason::NotServed))
        ),
        "a denied renter is refused"
    );
    assert!(
        pair.provider
            .node()
            .sessions()
            .unwrap()
            .provided_sessions()
            .is_empty()
    );

    let others_only = PeerAccess {
        allow: Some([NodeKey::generate().node_id()].into()),
        deny: Default::default(),
    };
    let pair = Pair::start_with(with(renters(others_only)), fast(), renter.clone()).await;
    assert!(
        matches!(
            pair.open(BUDGET).await,
            Err(SessionError::Rejected(RejectReason::NotServed))
        ),
        "a renter missing from the allow list is refused"
    );

    let listed = PeerAccess {
        allow: Some([renter.node_id()].into()),
        deny: Default::default(),
    };
    let pair = Pair::start_with(with(renters(listed)), fast(), renter).await;
    let session = pair.open(BUDGET).await.expect("a listed renter is served");
    pair.renter
        .on(move |node| async move { node.sessions().unwrap().close(session).await })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_that_opens_too_often_is_refused_until_the_minute_passes() {
    let operator = OperatorControls {
        opens_per_minute: 2,
        ..OperatorControls::default()
    };
    let pair = Pair::start_with(with(operator), fast(), NodeKey::generate()).await;
    for _ in 0..2 {
        let session = pair.open(BUDGET).await.unwrap();
        pair.renter
            .on(move |node| async move { node.sessions().unwrap().close(session).await })
            .await
            .unwrap();
    }
    match pair.open(BUDGET).await {
        Err(SessionError::Rejected(RejectReason::OpeningTooOften { per_minute })) => {
            assert_eq!(per_minute, 2);
        }
        other => panic!("expected OpeningTooOften, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_rents_nothing_from_a_provider_it_denies() {
    let dir = tempfile::tempdir().unwrap();
    // The provider's key is known only once it runs: deny it on a second renter.
    let pair = Pair::start(fast()).await;
    let provider = pair.provider.key.node_id();
    let operator = OperatorControls {
        providers: PeerAccess {
            allow: None,
            deny: [provider].into(),
        },
        ..OperatorControls::default()
    };
    let renter = harness::TestNode::renter(dir.path(), with(operator), &pair.provider).await;
    let refused = renter
        .on(move |node| async move {
            let found = node
                .find_offers(harness::work_tool(), Some(provider))
                .await
                .unwrap();
            node.sessions()
                .unwrap()
                .open(found[0].id, BUDGET, Millis(60_000))
                .await
        })
        .await;
    assert!(
        matches!(refused, Err(SessionError::ProviderNotAllowed(p)) if p == provider),
        "{refused:?}"
    );
    assert!(
        pair.provider
            .node()
            .sessions()
            .unwrap()
            .provided_sessions()
            .is_empty(),
        "nothing reached the provider"
    );
}
