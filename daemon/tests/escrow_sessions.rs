//! Sessions paid from an `OrienEscrow` lane on a real anvil (`orien-devnet`), between
//! `orien-node` processes driven through their APIs: the renter cannot open beyond its
//! lane's deposit, every ack carries a voucher the provider verifies, and a provider
//! that shuts down settles what it is owed on its way out; money comes out: a provider
//! withdraws its earnings, a renter takes its unspent deposit back after the thaw.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::{Devnet, NodeProcess, init_data_dir, wallet_of};

const LONG: Duration = Duration::from_secs(90);

fn micros(value: &serde_json::Value) -> u64 {
    value
        .as_str()
        .unwrap()
        .parse::<orien_protocol::Usdc>()
        .unwrap()
        .micros()
}

/// A devnet, a bootstrap node, a provider selling the example tools over escrow (500 ms
/// receipts, no settlement timer) with an empty wallet, a renter with 10 USDC, and the
/// provider's `sha256` offer as the renter found it.
struct EscrowMarket {
    renter: NodeProcess,
    provider: NodeProcess,
    _bootstrap: NodeProcess,
    /// Last: the nodes stop before the chain.
    devnet: Devnet,
    provider_wallet: String,
    offer: String,
    payout: String,
    /// A data directory whose wallet the escrow pays its fee and reserve to (its node
    /// is started by the test that wants it).
    treasury_dir: Option<tempfile::TempDir>,
}

impl EscrowMarket {
    async fn start() -> Self {
        // Data directories first: the devnet funds their wallets.
        let (renter_dir, provider_dir) = (init_data_dir(), init_data_dir());
        let (renter_wallet, provider_wallet) =
            (wallet_of(renter_dir.path()), wallet_of(provider_dir.path()));
        let treasury_dir = init_data_dir();
        let treasury = wallet_of(treasury_dir.path());
        let devnet = Devnet::start_with(
            &[
                format!("{renter_wallet}=10"),
                format!("{provider_wallet}=0"),
            ],
            &["--treasury", &treasury, "--reserve", &treasury],
        );
        let chain = devnet.args();
        let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
        let bootstrap = NodeProcess::start(&[]);
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/provider.example.toml")
            .display()
            .to_string();
        let mut provider_args = vec![
            "--provider-config",
            &config,
            "--receipt-interval-ms",
            "500",
            "--settle-every-secs",
            "0",
        ];
        provider_args.extend(&chain);
        let provider = NodeProcess::start_in(provider_dir, &[&bootstrap], &provider_args);
        let renter = NodeProcess::start_in(renter_dir, &[&bootstrap], &chain);
        let path = format!("/v1/offers?tool=sha256&provider={}", provider.id);
        let offers = renter
            .wait_for(&path, LONG, |o| o.as_array().is_some_and(|a| !a.is_empty()))
            .await;
        let (offer, payout) = (
            offers[0]["id"].as_str().unwrap().to_owned(),
            offers[0]["payout"].as_str().unwrap().to_owned(),
        );
        Self {
            renter,
            provider,
            _bootstrap: bootstrap,
            devnet,
            provider_wallet,
            offer,
            payout,
            treasury_dir: Some(treasury_dir),
        }
    }
}

impl EscrowMarket {
    /// Opens an escrow session on the offer (budget 0.5 USDC) and runs one call to its
    /// end; the session stays open. Its id.
    async fn open_and_call(&self) -> String {
        let session = self
            .renter
            .post_json(
                "/v1/sessions",
                json!({"offer": &self.offer, "budget": "0.5", "payment": "escrow"}),
            )
            .await;
        let id = session["id"].as_str().unwrap().to_owned();
        self.renter
            .run_to_end(&id, json!({"file": "nothing-here"}), LONG)
            .await;
        id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escrow_sessions_are_bounded_by_the_deposit_and_settled_at_shutdown() {
    let market = EscrowMarket::start().await;
    let (renter, mut provider) = (&market.renter, market.provider);
    let (offer, payout) = (&market.offer, &market.payout);
    assert_eq!(
        payout, &market.provider_wallet,
        "earnings go to the provider's wallet"
    );

    // No deposit on the lane: refused before anything is asked of the provider.
    let open = |budget: &str| json!({"offer": offer, "budget": budget, "payment": "escrow"});
    let refused = renter
        .send(Method::POST, "/v1/sessions", Some(open("0.5")), &[])
        .await;
    assert_eq!(refused.status(), 409);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("wallet fund"),
        "{problem}"
    );

    let funded = renter
        .post_json("/v1/wallet/fund", json!({"to": payout, "amount": "1"}))
        .await;
    assert_eq!(funded["deposit"], "1.000000");
    let too_big = renter
        .send(Method::POST, "/v1/sessions", Some(open("5")), &[])
        .await;
    assert_eq!(
        too_big.status(),
        409,
        "a budget beyond the deposit is refused"
    );

    // The budget covers the worst case of one sha256 call (30 s at 0.6 USDC a minute).
    let session = renter.post_json("/v1/sessions", open("0.5")).await;
    let id = session["id"].as_str().unwrap().to_owned();
    renter
        .run_to_end(&id, json!({"file": "nothing-here"}), LONG)
        .await;
    renter
        .wait_for(&format!("/v1/sessions/{id}"), LONG, |s| {
            s["usage"]["receipts"].as_u64() >= Some(2)
        })
        .await;
    let closed = renter
        .post_json(&format!("/v1/sessions/{id}/close"), json!({}))
        .await;
    let owed = micros(&closed["amount"]);
    assert!(owed > 0);

    // Every ack carried a voucher for the lane's total: the provider's ledger holds it.
    let lanes = provider
        .wait_for("/v1/lanes", LONG, |l| {
            l[0]["voucher"]
                .as_str()
                .is_some_and(|v| micros(&json!(v)) == owed)
        })
        .await;
    assert_eq!(lanes[0]["settled"], "0.000000");

    // The provider stops: it settles on its way out.
    assert!(provider.terminate(), "a clean exit");
    let wallet = renter
        .wait_for("/v1/wallet", LONG, |w| micros(&w["fees_held"]) > 0)
        .await;
    assert_eq!(micros(&wallet["fees_held"]), owed * 7 / 100);
    assert_eq!(micros(&wallet["reserve_held"]), owed * 3 / 100);
    assert_eq!(
        micros(&wallet["usdc"]),
        10_000_000 - 1_000_000,
        "the deposit left the wallet, no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_withdraws_its_earnings_and_a_renter_reclaims_its_unspent_deposit() {
    let mut market = EscrowMarket::start().await;
    let treasury_dir = market.treasury_dir.take().unwrap();
    let (renter, provider, devnet) = (&market.renter, &market.provider, &market.devnet);
    let (offer, payout, provider_wallet) = (&market.offer, &market.payout, &market.provider_wallet);
    renter
        .post_json("/v1/wallet/fund", json!({"to": payout, "amount": "1"}))
        .await;
    let session = renter
        .post_json(
            "/v1/sessions",
            json!({"offer": offer, "budget": "0.5", "payment": "escrow"}),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_owned();
    // The provider's node tells what its sandbox runs: this session's container.
    let info = provider.get_json("/v1/node").await;
    assert!(
        info["sandbox"]["sessions"]
            .as_array()
            .unwrap()
            .contains(&json!(id)),
        "{info}"
    );
    assert!(renter.get_json("/v1/node").await["sandbox"].is_null());
    renter
        .run_to_end(&id, json!({"file": "nothing-here"}), LONG)
        .await;

    // While the session is open the deposit cannot be asked back.
    let busy = renter
        .send(
            Method::POST,
            "/v1/wallet/reclaim",
            Some(json!({"to": payout})),
            &[],
        )
        .await;
    assert_eq!(busy.status(), 409);
    let problem: serde_json::Value = busy.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("close them first"),
        "{problem}"
    );
    let closed = renter
        .post_json(&format!("/v1/sessions/{id}/close"), json!({}))
        .await;
    let owed = micros(&closed["amount"]);
    assert!(owed > 0);

    // Nothing to withdraw before the provider settles; the fees are the treasury's.
    let early = provider
        .send(Method::POST, "/v1/wallet/withdraw", Some(json!({})), &[])
        .await;
    assert_eq!(early.status(), 409);
    let problem: serde_json::Value = early.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("settle"),
        "{problem}"
    );
    provider
        .wait_for("/v1/lanes", LONG, |l| {
            l[0]["acked"]
                .as_str()
                .is_some_and(|a| micros(&json!(a)) == owed)
        })
        .await;
    let settled = provider.post_json("/v1/settlements", json!({})).await;
    assert_eq!(settled.as_array().unwrap().len(), 1, "{settled}");
    // The history: the transaction, what it paid and its 90 / 7 / 3 parts.
    let history = provider.get_json("/v1/settlements").await;
    let record = &history[0];
    assert_eq!(record["tx"], settled[0]["tx"], "{history}");
    assert_eq!(record["block"], settled[0]["block"], "{record}");
    assert_eq!(record["state"], "confirmed", "{record}");
    assert_eq!(micros(&record["paid"]), owed, "{record}");
    assert_eq!(micros(&record["paid_up_to"]), owed, "{record}");
    let parts = orien_protocol::Split::of(orien_protocol::Usdc::from_micros(owed));
    assert_eq!(
        micros(&record["provider_part"]),
        parts.provider().micros(),
        "{record}"
    );
    assert_eq!(
        micros(&record["fee_part"]),
        parts.fee().micros(),
        "{record}"
    );
    assert_eq!(
        micros(&record["reserve_part"]),
        parts.reserve().micros(),
        "{record}"
    );
    assert!(record["decided_at"].as_u64().is_some(), "{record}");
    // It paid for the one session, all of it.
    assert_eq!(record["sessions"].as_array().unwrap().len(), 1, "{record}");
    assert_eq!(record["sessions"][0]["session"], id.as_str(), "{record}");
    assert_eq!(micros(&record["sessions"][0]["amount"]), owed, "{record}");
    let table = support::run_ok(provider.data_dir(), &["wallet", "settlements"]);
    let tx = record["tx"].as_str().unwrap();
    assert!(
        table.contains(&tx[..12]) && table.contains("confirmed"),
        "{table}"
    );
    let fees = provider
        .send(
            Method::POST,
            "/v1/wallet/withdraw",
            Some(json!({"what": "fees"})),
            &[],
        )
        .await;
    assert_eq!(fees.status(), 409);
    let problem: serde_json::Value = fees.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("treasury"),
        "{problem}"
    );
    // The treasury's and the reserve's node (one wallet holds both roles here) take
    // the 7 % and the 3 % out.
    let chain = devnet.args();
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    let treasury = NodeProcess::start_in(treasury_dir, &[], &chain);
    let fee = treasury
        .post_json("/v1/wallet/withdraw", json!({"what": "fees"}))
        .await;
    assert_eq!(micros(&fee["amount"]), parts.fee().micros(), "{fee}");
    let out = support::run_ok(
        treasury.data_dir(),
        &["--json", "wallet", "withdraw", "--reserve"],
    );
    let reserve: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        micros(&reserve["amount"]),
        parts.reserve().micros(),
        "{reserve}"
    );
    let wallet = treasury.get_json("/v1/wallet").await;
    assert_eq!(
        micros(&wallet["usdc"]),
        parts.fee().micros() + parts.reserve().micros(),
        "{wallet}"
    );
    assert_eq!(micros(&wallet["fees_held"]), 0, "{wallet}");
    assert_eq!(micros(&wallet["reserve_held"]), 0, "{wallet}");

    // The provider's 90 % goes to its wallet, through the CLI.
    let provider_share = orien_protocol::Split::of(orien_protocol::Usdc::from_micros(owed))
        .provider()
        .micros();
    let out = support::run_ok(provider.data_dir(), &["--json", "wallet", "withdraw"]);
    let withdrawn: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(micros(&withdrawn["amount"]), provider_share, "{withdrawn}");
    assert_eq!(withdrawn["to"], provider_wallet.as_str(), "{withdrawn}");
    let wallet = provider.get_json("/v1/wallet").await;
    assert_eq!(micros(&wallet["usdc"]), provider_share, "{wallet}");
    assert_eq!(micros(&wallet["earnings"]), 0, "{wallet}");

    // The renter's lane: settled in full, the rest refundable.
    let lanes = renter.get_json("/v1/lanes").await;
    let lane = &lanes[0];
    assert_eq!(lane["role"], "renter", "{lane}");
    assert_eq!(
        lane["payout"],
        payout.as_str(),
        "what a reclaim names: {lane}"
    );
    assert_eq!(micros(&lane["deposit"]), 1_000_000, "{lane}");
    assert_eq!(micros(&lane["settled"]), owed, "{lane}");
    assert_eq!(micros(&lane["owed"]), 0, "{lane}");
    assert_eq!(micros(&lane["refundable"]), 1_000_000 - owed, "{lane}");
    assert_eq!(lane["close"], "open", "{lane}");
    let table = support::run_ok(renter.data_dir(), &["wallet", "lanes"]);
    assert!(
        table.contains("renter") && table.contains("open"),
        "{table}"
    );

    // Reclaim: finishing before asking is refused, asking starts the thaw, finishing
    // before it ends is refused with when it ends, after it the rest comes back.
    let reclaim = |finish: bool| {
        let path = if finish {
            "/v1/wallet/reclaim/finish"
        } else {
            "/v1/wallet/reclaim"
        };
        renter.send(Method::POST, path, Some(json!({"to": payout})), &[])
    };
    let unasked = reclaim(true).await;
    assert_eq!(unasked.status(), 409);
    let asked = renter
        .post_json("/v1/wallet/reclaim", json!({"to": payout}))
        .await;
    assert!(asked["thaw_ends_at"].as_u64().unwrap() > 0, "{asked}");
    let lanes = renter.get_json("/v1/lanes").await;
    assert_eq!(lanes[0]["close"], "thawing", "{lanes}");
    let early = reclaim(true).await;
    assert_eq!(early.status(), 409);
    let problem: serde_json::Value = early.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("thaw window"),
        "{problem}"
    );
    let again = reclaim(false).await;
    assert_eq!(again.status(), 409, "a close is asked once");
    // Settling the closing lane is the provider's job: the renter's node, which holds
    // the vouchers it signed, submits none (the escrow would skip them and the renter
    // would pay the gas). Its history holds the provider's settlements of its lane only
    // (as its reconciler saw them so far).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let txs = |history: serde_json::Value| -> Vec<String> {
        let mut txs: Vec<String> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["tx"].as_str().unwrap().to_owned())
            .collect();
        txs.sort();
        txs
    };
    let by_provider = txs(provider.get_json("/v1/settlements").await);
    let seen_by_renter = txs(renter.get_json("/v1/settlements").await);
    assert!(!by_provider.is_empty());
    assert!(
        seen_by_renter.iter().all(|tx| by_provider.contains(tx)),
        "the renter submitted a settlement: {seen_by_renter:?}, the provider's {by_provider:?}"
    );
    devnet.advance(86_400 + 1).await;
    let refunded = renter
        .post_json("/v1/wallet/reclaim/finish", json!({"to": payout}))
        .await;
    assert_eq!(micros(&refunded["refund"]), 1_000_000 - owed, "{refunded}");
    let wallet = renter.get_json("/v1/wallet").await;
    assert_eq!(
        micros(&wallet["usdc"]),
        10_000_000 - owed,
        "all but what was spent is back: {wallet}"
    );

    // The lane is the renter's to use again: funded anew, it carries a whole session
    // (the provider must not still treat it as closing).
    renter
        .post_json("/v1/wallet/fund", json!({"to": payout, "amount": "1"}))
        .await;
    // Let the provider's reconciler see the close, the refund and the new funds.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let id = market.open_and_call().await;
    let view = renter.get_json(&format!("/v1/sessions/{id}")).await;
    assert_eq!(
        view["state"], "active",
        "the session outlives its call: {view}"
    );
    let closed = renter
        .post_json(&format!("/v1/sessions/{id}/close"), json!({}))
        .await;
    assert_eq!(closed["close_reason"], "renter_requested", "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_asking_to_close_an_unsettled_lane_leaves_the_settling_to_its_provider() {
    let market = EscrowMarket::start().await;
    let (renter, provider, payout) = (&market.renter, &market.provider, &market.payout);
    renter
        .post_json("/v1/wallet/fund", json!({"to": payout, "amount": "1"}))
        .await;
    let id = market.open_and_call().await;
    let closed = renter
        .post_json(&format!("/v1/sessions/{id}/close"), json!({}))
        .await;
    let owed = micros(&closed["amount"]);

    // Asked to close while the provider has settled nothing: the provider settles the
    // lane at once, and the renter's node, which holds the same vouchers, submits none.
    renter
        .post_json("/v1/wallet/reclaim", json!({"to": payout}))
        .await;
    let lanes = provider
        .wait_for("/v1/lanes", LONG, |l| micros(&l[0]["settled"]) == owed)
        .await;
    assert_eq!(lanes[0]["close"], "thawing", "{lanes}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let history = renter.get_json("/v1/settlements").await;
    let provider_history = provider.get_json("/v1/settlements").await;
    for record in history.as_array().unwrap() {
        assert!(
            provider_history
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["tx"] == record["tx"]),
            "the renter submitted {record}"
        );
    }
}
