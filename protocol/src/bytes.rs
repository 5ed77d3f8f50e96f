//! Serde for fixed-size byte strings: hex text in human-readable formats (JSON), a
//! tuple of bytes in postcard (one byte each, no length prefix).

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
