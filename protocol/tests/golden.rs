//! Golden vectors: the exact bytes, signatures and splits of the signed payloads
//! (`orien/offer/v2`, `orien/receipt/v4`, `orien/receipt-ack/v1`,
//! `orien/exec-result/v2`, `orien/profile/v2`, `orien/attestation/v1`) and of the session
//! messages of `/orien/session/7` (version 2
//! added the lane head to `OpenSession` and `SessionAccepted`; version 3 the signed
//! result of each call and the results a receipt commits to; version 4 the execution
//! amount and calls of other tools; version 5 a call's output paths and the artefacts
//! its signed result names; version 6 the artefact price and retention in offers and the
//! artefact amount in receipts; version 7 appended the book listings, which left every
//! pinned message as it was).
//!
//! `tests/vectors/session6.json` is committed. If this test fails, the wire format, a
//! signature or the money rules changed: that breaks every deployed node and every
//! stored receipt. Only when such a change is deliberate (and versioned), regenerate with
//! `ORIEN_BLESS=1 cargo test -p orien-protocol --test golden`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::*;
use orien_protocol::wire::{self, Message};
use orien_protocol::*;
use serde_json::{Value, json};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/session6.json");

fn signed_vector<T: SignedPayload + PartialEq + std::fmt::Debug>(
    name: &str,
    key: &NodeKey,
    value: &T,
) -> Value {
    let signed = key.sign(value).unwrap();
    // Decoding the envelope and verifying yields the sample back.
    let envelope = signed.to_bytes().unwrap();
    assert_eq!(
        &Signed::<T>::from_bytes(&envelope)
            .unwrap()
            .verify_from(&key.node_id())
            .unwrap(),
        value
    );
    json!({
        "name": name,
        "domain": T::DOMAIN,
        "signer": key.node_id().to_string(),
        "payload": hex::encode(signed.payload_bytes()),
        "signature": hex::encode(signed.signature().0),
        "envelope": hex::encode(envelope),
        "content_hash": hex::encode(signed.content_hash()),
    })
}

fn plain_vector<T: Message + PartialEq + std::fmt::Debug>(name: &str, value: &T) -> Value {
    let bytes = wire::encode(value).unwrap();
    assert_eq!(&wire::decode::<T>(&bytes).unwrap(), value);
    json!({ "name": name, "kind": T::KIND, "encoding": hex::encode(bytes) })
}

fn current_vectors() -> Value {
    let provider = provider_key();
    let renter = renter_key();
    let splits: Vec<Value> = [0u64, 1, 99, 100, 101, 1_000_000, 1_234_567, u64::MAX]
        .into_iter()
        .map(|t| {
            let s = Split::of(Usdc::from_micros(t));
            json!({ "total": t, "provider": s.provider().micros(), "fee": s.fee().micros(), "reserve": s.reserve().micros() })
        })
        .collect();
    let pricing = sample_offer().pricing;
    let amounts: Vec<Value> = [
        (0u64, 0u64),
        (60_000, 0),
        (0, 60_000),
        (65_000, 4_250),
        (1, 1),
        (3_600_000, 1_800_000),
    ]
    .into_iter()
    .map(|(s, e)| {
        let amount = pricing.amount_for(Usage {
            session: Millis(s),
            exec: Millis(e),
        });
        json!({ "session_ms": s, "exec_ms": e, "amount": amount.micros() })
    })
    .collect();
    let artefacts: Vec<Value> = [0u64, 1, 21_474, 21_475, 1 << 20, 1 << 30, 5 << 30, u64::MAX]
        .into_iter()
        .map(|bytes| json!({ "bytes": bytes, "amount": pricing.artefact_amount(bytes).micros() }))
        .collect();
    json!({
        "keys": {
            "provider_secret": hex::encode(provider.secret_bytes()),
            "provider": provider.node_id().to_string(),
            "renter_secret": hex::encode(renter.secret_bytes()),
            "renter": renter.node_id().to_string(),
        },
        "signed": [
            signed_vector("offer", &provider, &sample_offer()),
            signed_vector("receipt", &provider, &sample_receipt()),
            signed_vector("receipt_ack", &renter, &sample_ack()),
            signed_vector("exec_result", &provider, &sample_result()),
            signed_vector("provider_profile", &provider, &sample_profile()),
            signed_vector("attestation", &renter, &sample_attestation()),
        ],
        "plain": [
            plain_vector("open_session", &sample_open()),
            plain_vector("session_accepted", &sample_accepted()),
            plain_vector("session_rejected", &sample_rejected()),
            plain_vector("exec", &sample_exec()),
            plain_vector("exec_output", &sample_output()),
            plain_vector("exec_exit", &sample_exit()),
            plain_vector("close_session", &sample_close()),
        ],
        "rpc": [
            plain_vector("list_offers", &sample_list_offers()),
            plain_vector("offers", &sample_offers_response()),
            plain_vector("exec_events", &sample_events()),
            plain_vector("receipt", &sample_receipt_request()),
            plain_vector("ack", &sample_ack_response()),
        ],
        "splits": splits,
        "amounts": { "pricing": { "session_per_minute": pricing.session_per_minute.micros(), "exec_per_minute": pricing.exec_per_minute.micros() }, "cases": amounts },
        "artefact_amounts": { "artefact_per_gib": pricing.artefact_per_gib.micros(), "cases": artefacts },
        "tool_key": { "tool": "sha256sum", "key": hex::encode(ToolName::new("sha256sum").unwrap().kademlia_key()) },
    })
}

#[test]
fn wire_format_matches_the_committed_vectors() {
    let current = current_vectors();
    if std::env::var_os("ORIEN_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&current).unwrap() + "\n";
        std::fs::write(VECTORS, text).unwrap();
        return;
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(VECTORS)
            .expect("tests/vectors/session6.json is missing; it must be committed"),
    )
    .unwrap();
    for section in [
        "keys",
        "signed",
        "plain",
        "rpc",
        "splits",
        "amounts",
        "artefact_amounts",
        "tool_key",
    ] {
        assert_eq!(
            current[section], committed[section],
            "golden vectors differ in `{section}`: the wire format or money rules changed"
        );
    }
    assert_eq!(current, committed);
}

#[test]
fn committed_signed_vectors_verify_and_decode_to_the_samples() {
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let envelope =
        |i: usize| hex::decode(committed["signed"][i]["envelope"].as_str().unwrap()).unwrap();
    assert_eq!(
        Signed::<Offer>::from_bytes(&envelope(0))
            .unwrap()
            .verify()
            .unwrap(),
        sample_offer()
    );
    assert_eq!(
        Signed::<UsageReceipt>::from_bytes(&envelope(1))
            .unwrap()
            .verify()
            .unwrap(),
        sample_receipt()
    );
    assert_eq!(
        Signed::<ReceiptAck>::from_bytes(&envelope(2))
            .unwrap()
            .verify()
            .unwrap(),
        sample_ack()
    );
    assert_eq!(
        Signed::<ExecResult>::from_bytes(&envelope(3))
            .unwrap()
            .verify()
            .unwrap(),
        sample_result()
    );
    assert_eq!(
        Signed::<Attestation>::from_bytes(&envelope(5))
            .unwrap()
            .verify()
            .unwrap(),
        sample_attestation()
    );
}
