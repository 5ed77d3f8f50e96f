//! Serde for byte strings. Fixed-size ones: hex text in human-readable formats (JSON), a
//! tuple of bytes in postcard (one byte each, no length prefix). Variable-length ones:
//! serde's byte strings, which postcard writes exactly as a sequence of `u8` (a varint
//! length, then the bytes) and JSON as an array of numbers, but in one copy instead of
//! one call per byte.

use std::fmt;

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serializer};

use crate::ids::ParseIdError;

/// Parses `N` bytes of hex, with or without a `0x` prefix.
pub(crate) fn parse_hex<const N: usize>(
    kind: &'static str,
    text: &str,
) -> Result<[u8; N], ParseIdError> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.len() != N * 2 {
        return Err(ParseIdError::new(
            kind,
            format!("expected {} hex digits, got {}", N * 2, text.len()),
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| ParseIdError::new(kind, e.to_string()))?;
    Ok(out)
}

/// Serializes `bytes` as `prefix` + hex (human-readable) or as a byte tuple.
pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    prefix: &str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return serializer.collect_str(&format_args!("{prefix}{}", hex::encode(bytes)));
    }
    let mut tuple = serializer.serialize_tuple(N)?;
    for byte in bytes {
        tuple.serialize_element(byte)?;
    }
    tuple.end()
}

/// Reads what [`serialize`] wrote; `prefix` is optional in text.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    kind: &'static str,
    prefix: &str,
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    if deserializer.is_human_readable() {
        let text = String::deserialize(deserializer)?;
        let text = text.strip_prefix(prefix).unwrap_or(&text);
        return parse_hex::<N>(kind, text).map_err(D::Error::custom);
    }
    struct Fixed<const N: usize>(&'static str);
    impl<'de, const N: usize> Visitor<'de> for Fixed<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes of {}", self.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }
    deserializer.deserialize_tuple(N, Fixed::<N>(kind))
}

/// Serializes a variable-length byte string (see the module docs).
#[allow(clippy::ptr_arg, clippy::trivially_copy_pass_by_ref)]
pub(crate) fn serialize_var<S: Serializer>(
    bytes: &&[u8],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Reads what [`serialize_var`] wrote, or a sequence of `u8` (a JSON array of numbers).
pub(crate) fn deserialize_var<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<u8>, D::Error> {
    struct Var;
    impl<'de> Visitor<'de> for Var {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
            Ok(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // The hint comes from the input: never trust it for more than a small start.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_byte_buf(Var)
}
