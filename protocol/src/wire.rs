//! Canonical encoding: postcard 1.x, with a hard size limit and validation per type.
//!
//! Postcard's wire format is frozen and specified for 1.x, so the bytes signed today
//! verify tomorrow. Decoding never allocates more than the input allows: the length is
//! checked before parsing, trailing bytes and non-canonical encodings are refused, and
//! every type checks its own rules ([`Message::validate`]) before a caller sees it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DecodeError, EncodeError, InvalidMessage};

/// A message that crosses the network or is stored on disk.
pub trait Message: Serialize + DeserializeOwned {
    /// Human-readable type name used in errors (`"UsageReceipt"`).
    const KIND: &'static str;
    /// Largest encoding accepted when decoding, in bytes.
    const MAX_ENCODED_LEN: usize;

    /// Checks protocol rules that the type system cannot express (lengths, ranges).
    fn validate(&self) -> Result<(), InvalidMessage> {
        Ok(())
    }
}

/// Encodes `value` canonically after checking it would be accepted by a peer.
pub fn encode<T: Message>(value: &T) -> Result<Vec<u8>, EncodeError> {
    value.validate().map_err(|source| EncodeError::Invalid {
        kind: T::KIND,
        source,
    })?;
    let bytes = postcard::to_stdvec(value).map_err(|e| EncodeError::Serialize {
        kind: T::KIND,
        reason: e.to_string(),
    })?;
    if bytes.len() > T::MAX_ENCODED_LEN {
        return Err(EncodeError::TooLarge {
            kind: T::KIND,
            len: bytes.len(),
            max: T::MAX_ENCODED_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes one whole message from untrusted bytes.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > T::MAX_ENCODED_LEN {
        return Err(DecodeError::TooLarge {
            kind: T::KIND,
            len: bytes.len(),
            max: T::MAX_ENCODED_LEN,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| DecodeError::Malformed {
            kind: T::KIND,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            kind: T::KIND,
            extra: rest.len(),
        });
    }
    // Postcard accepts over-long varints (`80 00` for 0). Refusing every encoding but the
    // canonical one keeps hashes of the same content identical across nodes.
    let canonical = postcard::to_stdvec(&value).map_err(|e| DecodeError::Malformed {
        kind: T::KIND,
        reason: e.to_string(),
    })?;
    if canonical != bytes {
        return Err(DecodeError::NonCanonical { kind: T::KIND });
    }
    value.validate().map_err(|source| DecodeError::Invalid {
        kind: T::KIND,
        source,
    })?;
    Ok(value)
}

/// Checks that a text field is at most `max` bytes.
pub(crate) fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), InvalidMessage> {
    if text.len() > max {
        return Err(InvalidMessage::new(
            field,
            format!("{} bytes, at most {max} allowed", text.len()),
        ));
    }
    Ok(())
}

/// Checks that a text field holds a JSON object of at most `max` bytes.
pub(crate) fn check_json_object(
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<(), InvalidMessage> {
    check_len(field, text, max)?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(InvalidMessage::new(field, "must be a JSON object")),
        Err(e) => Err(InvalidMessage::new(field, format!("not JSON: {e}"))),
    }
}
