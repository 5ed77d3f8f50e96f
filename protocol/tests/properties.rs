//! Properties that pin the protocol: round trips, tamper evidence, domain separation.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::*;
use orien_protocol::wire::{self, Message};
use orien_protocol::*;
use proptest::prelude::*;

fn round_trips<T: Message + PartialEq + std::fmt::Debug>(value: &T) -> Result<(), TestCaseError> {
    let bytes = wire::encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        &wire::decode::<T>(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?,
        value
    );
    let json = serde_json::to_string(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        &serde_json::from_str::<T>(&json)
            .map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?,
        value
    );
    Ok(())
}

fn signed_round_trips<T: SignedPayload + PartialEq + std::fmt::Debug>(
    key: &NodeKey,
    value: &T,
) -> Result<(), TestCaseError> {
    let signed = key
        .sign(value)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let bytes = signed
        .to_bytes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = Signed::<T>::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, &signed);
    prop_assert_eq!(
        &back
            .verify_from(&key.node_id())
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        value
    );
    // The envelope's payload is a byte string: a JSON array of numbers, read back whole.
    let json = serde_json::to_string(&signed).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        json.contains("\"payload\":["),
        "payload as an array: {}",
        json
    );
    let back: Signed<T> =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
    prop_assert_eq!(&back, &signed);
    Ok(())
}

/// Every single-byte change anywhere in the envelope makes decode or verify fail.
fn every_flip_is_rejected<T: SignedPayload>(
    signed: &Signed<T>,
    mask: u8,
) -> Result<(), TestCaseError> {
    let bytes = signed
        .to_bytes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= mask;
        let accepted = Signed::<T>::from_bytes(&tampered)
            .map(|s| s.verify().is_ok())
            .unwrap_or(false);
        prop_assert!(
            !accepted,
            "flipping byte {} with {:#04x} still verifies",
            i,
            mask
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn offers_round_trip(key in node_key(), mut offer in offer()) {
        offer.provider = key.node_id();
        round_trips(&offer)?;
        signed_round_trips(&key, &offer)?;
    }

    #[test]
    fn receipts_round_trip(key in node_key(), receipt in receipt()) {
        round_trips(&receipt)?;
        signed_round_trips(&key, &receipt)?;
    }

    #[test]
    fn acks_round_trip(key in node_key(), ack in ack()) {
        round_trips(&ack)?;
        signed_round_trips(&key, &ack)?;
    }

    #[test]
    fn session_messages_round_trip(open in open_session(), acc in accepted(), rej in rejected(), close in close_session()) {
        round_trips(&open)?;
        round_trips(&acc)?;
        round_trips(&rej)?;
        round_trips(&close)?;
    }

    #[test]
    fn rpc_messages_round_trip(request in session_request(), response in session_response()) {
        round_trips(&request)?;
        round_trips(&response)?;
    }

    #[test]
    fn exec_messages_round_trip(exec in exec(), event in exec_event()) {
        round_trips(&exec)?;
        round_trips(&event)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn any_changed_byte_of_a_signed_receipt_fails(key in node_key(), receipt in receipt(), mask in 1u8..) {
        every_flip_is_rejected(&key.sign(&receipt).unwrap(), mask)?;
    }

    #[test]
    fn any_changed_byte_of_a_signed_ack_fails(key in node_key(), ack in ack(), mask in 1u8..) {
        every_flip_is_rejected(&key.sign(&ack).unwrap(), mask)?;
    }

    #[test]
    fn any_changed_byte_of_a_signed_offer_fails(key in node_key(), mut offer in offer(), mask in 1u8..) {
        offer.provider = key.node_id();
        every_flip_is_rejected(&key.sign(&offer).unwrap(), mask)?;
    }

    #[test]
    fn a_signature_for_one_type_never_verifies_as_another(key in node_key(), receipt in receipt(), ack in ack(), mut offer in offer()) {
        offer.provider = key.node_id();
        let receipt = key.sign(&receipt).unwrap().to_bytes().unwrap();
        let ack = key.sign(&ack).unwrap().to_bytes().unwrap();
        let offer = key.sign(&offer).unwrap().to_bytes().unwrap();
        let verifies_as = |bytes: &[u8], kind: &str| -> bool {
            match kind {
                "offer" => Signed::<Offer>::from_bytes(bytes).map(|s| s.verify().is_ok()).unwrap_or(false),
                "receipt" => Signed::<UsageReceipt>::from_bytes(bytes).map(|s| s.verify().is_ok()).unwrap_or(false),
                _ => Signed::<ReceiptAck>::from_bytes(bytes).map(|s| s.verify().is_ok()).unwrap_or(false),
            }
        };
        for (bytes, own) in [(&receipt, "receipt"), (&ack, "ack"), (&offer, "offer")] {
            for other in ["receipt", "ack", "offer"] {
                prop_assert_eq!(verifies_as(bytes, other), own == other, "{} as {}", own, other);
            }
        }
    }
}

#[test]
fn an_offer_signed_by_someone_else_than_its_provider_is_rejected() {
    let offer = sample_offer(); // names the provider key
    let forged = renter_key().sign(&offer).unwrap();
    assert!(matches!(
        forged.verify(),
        Err(VerifyError::WrongSigner { .. })
    ));
    assert!(provider_key().sign(&offer).unwrap().verify().is_ok());
}

#[test]
fn verify_from_checks_the_expected_signer() {
    let signed = provider_key().sign(&sample_receipt()).unwrap();
    assert!(signed.verify_from(&provider_key().node_id()).is_ok());
    assert!(matches!(
        signed.verify_from(&renter_key().node_id()),
        Err(VerifyError::WrongSigner { .. })
    ));
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let huge = vec![0u8; UsageReceipt::MAX_ENCODED_LEN + 1];
    assert!(matches!(
        wire::decode::<UsageReceipt>(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
    let huge = vec![0u8; <Signed<Offer> as Message>::MAX_ENCODED_LEN + 1];
    assert!(matches!(
        Signed::<Offer>::from_bytes(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = wire::encode(&sample_close()).unwrap();
    bytes.push(0);
    assert!(matches!(
        wire::decode::<CloseSession>(&bytes),
        Err(DecodeError::TrailingBytes { extra: 1, .. })
    ));
}

#[test]
fn invalid_fields_are_refused_on_both_ends() {
    let mut offer = sample_offer();
    offer.args_schema = "[1, 2]".into();
    assert!(matches!(
        wire::encode(&offer),
        Err(EncodeError::Invalid { .. })
    ));
    // Encode bypassing validation to prove decode checks as well.
    let bytes = postcard::to_stdvec(&offer).unwrap();
    assert!(matches!(
        wire::decode::<Offer>(&bytes),
        Err(DecodeError::Invalid { .. })
    ));

    let mut receipt = sample_receipt();
    receipt.seq = 1; // first receipt must have the genesis prev
    assert!(matches!(
        wire::encode(&receipt),
        Err(EncodeError::Invalid { .. })
    ));

    let mut offer = sample_offer();
    offer.expires_at = Timestamp(offer.issued_at.unix_millis() + 25 * 3_600_000);
    assert!(wire::encode(&offer).is_err(), "offers live at most a day");

    let mut offer = sample_offer();
    offer.keep_artefacts = MAX_KEEP_ARTEFACTS;
    assert!(wire::encode(&offer).is_ok(), "a week is allowed");
    offer.keep_artefacts = Millis(MAX_KEEP_ARTEFACTS.get() + 1);
    assert!(
        matches!(wire::encode(&offer), Err(EncodeError::Invalid { .. })),
        "artefacts are kept at most a week"
    );
}

#[test]
fn a_signed_payload_larger_than_its_type_is_refused_inside_an_envelope() {
    // Build an envelope by hand whose payload exceeds UsageReceipt's limit.
    #[derive(serde::Serialize)]
    struct Raw<'a> {
        signer: [u8; 32],
        sig: [[u8; 32]; 2],
        payload: &'a [u8],
    }
    let payload = vec![1u8; UsageReceipt::MAX_ENCODED_LEN + 1];
    let bytes = postcard::to_stdvec(&Raw {
        signer: *provider_key().node_id().as_bytes(),
        sig: [[0; 32]; 2],
        payload: &payload,
    })
    .unwrap();
    assert!(Signed::<UsageReceipt>::from_bytes(&bytes).is_err());
}

#[test]
fn overlong_varints_are_refused() {
    let mut bytes = wire::encode(&sample_close()).unwrap();
    // The last byte is the close reason's variant index (0); spell it as an over-long varint.
    assert_eq!(bytes.pop(), Some(0));
    bytes.extend_from_slice(&[0x80, 0x00]);
    assert!(matches!(
        wire::decode::<CloseSession>(&bytes),
        Err(DecodeError::NonCanonical { .. })
    ));
}
