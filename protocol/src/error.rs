//! Typed errors for decoding, validating and verifying messages.

/// A decoded message broke a rule of the protocol (a length, a range, an ordering).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field `{field}`: {reason}")]
pub struct InvalidMessage {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidMessage {
    /// An invalid-field error.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Bytes could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than the message type allows; nothing was parsed.
    #[error("{kind}: {len} bytes exceed the limit of {max}")]
    TooLarge {
        /// Message type.
        kind: &'static str,
        /// Length of the input.
        len: usize,
        /// The type's limit.
        max: usize,
    },
    /// The bytes are not a valid postcard encoding of the message type.
    #[error("{kind}: malformed encoding: {reason}")]
    Malformed {
        /// Message type.
        kind: &'static str,
        /// Postcard's description of the failure.
        reason: String,
    },
    /// A valid message was followed by extra bytes.
    #[error("{kind}: {extra} trailing bytes after the message")]
    TrailingBytes {
        /// Message type.
        kind: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The bytes decode, but are not the canonical encoding of the value (e.g. an
    /// over-long varint), so the same content could hash two ways.
    #[error("{kind}: not the canonical encoding")]
    NonCanonical {
        /// Message type.
        kind: &'static str,
    },
    /// The encoding was well formed but a field broke a protocol rule.
    #[error("{kind}: {source}")]
    Invalid {
        /// Message type.
        kind: &'static str,
        /// The broken rule.
        source: InvalidMessage,
    },
}

/// A message could not be encoded (it is larger than its type allows, or invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoding would exceed the type's size limit, so peers would reject it.
    #[error("{kind}: encoding is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Message type.
        kind: &'static str,
        /// Length of the encoding.
        len: usize,
        /// The type's limit.
        max: usize,
    },
    /// The message breaks a protocol rule and would be rejected by peers.
    #[error("{kind}: {source}")]
    Invalid {
        /// Message type.
        kind: &'static str,
        /// The broken rule.
        source: InvalidMessage,
    },
    /// Postcard failed to serialize the value.
    #[error("{kind}: {reason}")]
    Serialize {
        /// Message type.
        kind: &'static str,
        /// Postcard's description of the failure.
        reason: String,
    },
}

/// A signed message failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature does not verify (strict ed25519) over the domain tag and payload.
    #[error("{kind}: bad signature from {signer}")]
    BadSignature {
        /// Message type.
        kind: &'static str,
        /// The claimed signer.
        signer: String,
    },
    /// The message is signed, correctly, by someone other than the expected party.
    #[error("{kind}: signed by {actual}, expected {expected}")]
    WrongSigner {
        /// Message type.
        kind: &'static str,
        /// Who was expected to sign.
        expected: String,
        /// Who did.
        actual: String,
    },
    /// The signature is valid but the payload does not decode or validate.
    #[error(transparent)]
    Payload(#[from] DecodeError),
}
