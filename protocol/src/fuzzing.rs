//! Entry points for fuzzers: every decoder that reads untrusted bytes.
//!
//! Each function decodes arbitrary input and, when decoding succeeds, checks that the
//! value re-encodes to exactly the input (postcard is canonical) and that signed
//! envelopes never panic on verification. `protocol/fuzz` (cargo-fuzz) and the
//! stable-toolchain smoke test drive the same functions.

use crate::signed::{Signed, SignedPayload};
use crate::wire::{self, Message};
use crate::{
    Attestation, CloseSession, Exec, ExecEvent, ExecResult, Offer, OpenSession, ProviderProfile,
    ReceiptAck, SessionAccepted, SessionRejected, SessionRequest, SessionResponse, ToolName,
    UsageReceipt, Usdc,
};

fn plain<T: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = wire::decode::<T>(data) {
        let again = wire::encode(&value)
            .unwrap_or_else(|e| panic!("decoded {} does not re-encode: {e}", T::KIND));
        assert_eq!(again, data, "{} decoding is not canonical", T::KIND);
    }
}

fn signed<T: SignedPayload + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(envelope) = Signed::<T>::from_bytes(data) {
        let again = envelope
            .to_bytes()
            .unwrap_or_else(|e| panic!("decoded signed {} does not re-encode: {e}", T::KIND));
        assert_eq!(again, data, "signed {} decoding is not canonical", T::KIND);
        // Random bytes essentially never carry a valid signature; this must not panic.
        let _ = envelope.verify();
    }
}

/// A decoder entry point: it panics only on a bug.
pub type Decoder = fn(&[u8]);

/// Every decoder of untrusted input, by name.
pub const DECODERS: &[(&str, Decoder)] = &[
    ("signed_offer", signed::<Offer>),
    ("signed_receipt", signed::<UsageReceipt>),
    ("signed_receipt_ack", signed::<ReceiptAck>),
    ("signed_exec_result", signed::<ExecResult>),
    ("signed_provider_profile", signed::<ProviderProfile>),
    ("signed_attestation", signed::<Attestation>),
    ("open_session", plain::<OpenSession>),
    ("session_accepted", plain::<SessionAccepted>),
    ("session_rejected", plain::<SessionRejected>),
    ("exec", plain::<Exec>),
    ("exec_event", plain::<ExecEvent>),
    ("close_session", plain::<CloseSession>),
    ("session_request", plain::<SessionRequest>),
    ("session_response", plain::<SessionResponse>),
    ("usdc_text", usdc_text),
    ("tool_name_text", tool_name_text),
];

fn usdc_text(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(amount) = text.parse::<Usdc>()
    {
        assert_eq!(amount.to_string().parse::<Usdc>(), Ok(amount));
    }
}

fn tool_name_text(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(name) = ToolName::new(text)
    {
        assert_eq!(name.as_str(), text);
    }
}

/// Runs the decoder called `name` on `data`; `false` if there is no such decoder.
pub fn run(name: &str, data: &[u8]) -> bool {
    match DECODERS.iter().find(|(n, _)| *n == name) {
        Some((_, decoder)) => {
            decoder(data);
            true
        }
        None => false,
    }
}
