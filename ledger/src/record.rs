//! The on-disk encoding of every stored record: one version byte, then canonical postcard.
//!
//! A record read from disk is untrusted input (a torn write, a disk error, a newer
//! binary's format): [`decode`] checks the size limit before parsing, refuses unknown
//! versions, trailing bytes and non-canonical encodings, and reports each case as a
//! typed [`RecordError`] naming the record kind.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value stored in one of the ledger's column families.
pub trait Record: Serialize + DeserializeOwned {
    /// Human-readable kind, used in errors (`"receipt"`).
    const KIND: &'static str;
    /// Format version written as the first byte. Bumped when the layout changes.
    const VERSION: u8;
    /// Largest accepted encoding, version byte included.
    const MAX_LEN: usize;
}

/// A stored record could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record is empty: not even a version byte.
    #[error("{kind} record is empty")]
    Empty {
        /// Record kind.
        kind: &'static str,
    },
    /// The record is larger than its kind allows; nothing was parsed.
    #[error("{kind} record of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Record kind.
        kind: &'static str,
        /// Length found.
        len: usize,
        /// The kind's limit.
        max: usize,
    },
    /// Written by a different format version (probably a newer orien-node).
    #[error("{kind} record has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// Record kind.
        kind: &'static str,
        /// Version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The bytes after the version are not a postcard encoding of the record.
    #[error("{kind} record is malformed: {reason}")]
    Malformed {
        /// Record kind.
        kind: &'static str,
        /// Postcard's description.
        reason: String,
    },
    /// A valid record was followed by extra bytes.
    #[error("{kind} record has {extra} trailing bytes")]
    TrailingBytes {
        /// Record kind.
        kind: &'static str,
        /// How many.
        extra: usize,
    },
    /// The record decodes but is not the canonical encoding of its value.
    #[error("{kind} record is not canonically encoded")]
    NonCanonical {
        /// Record kind.
        kind: &'static str,
    },
    /// The record decodes but breaks a rule of its kind.
    #[error("{kind} record is invalid: {reason}")]
    Invalid {
        /// Record kind.
        kind: &'static str,
        /// The broken rule.
        reason: String,
    },
}

/// Initial buffer of an encoding: larger than a receipt record with its ack.
const ENCODE_CAPACITY: usize = 512;

/// Encodes `value` as `VERSION ‖ postcard(value)`.
pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, RecordError> {
    // Sized for typical records up front: one allocation instead of a growing buffer.
    let mut out = Vec::with_capacity(T::MAX_LEN.min(ENCODE_CAPACITY));
    out.push(T::VERSION);
    let out = postcard::to_extend(value, out).map_err(|e| RecordError::Malformed {
        kind: T::KIND,
        reason: e.to_string(),
    })?;
    if out.len() > T::MAX_LEN {
        return Err(RecordError::TooLarge {
            kind: T::KIND,
            len: out.len(),
            max: T::MAX_LEN,
        });
    }
    Ok(out)
}

/// Decodes one whole record from untrusted bytes.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, RecordError> {
    let kind = T::KIND;
    if bytes.len() > T::MAX_LEN {
        return Err(RecordError::TooLarge {
            kind,
            len: bytes.len(),
            max: T::MAX_LEN,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(RecordError::Empty { kind })?;
    if version != T::VERSION {
        return Err(RecordError::UnsupportedVersion {
            kind,
            found: version,
            supported: T::VERSION,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| RecordError::Malformed {
            kind,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(RecordError::TrailingBytes {
            kind,
            extra: rest.len(),
        });
    }
    // Postcard accepts over-long varints; one value has exactly one stored form.
    let canonical = postcard::to_stdvec(&value).map_err(|e| RecordError::Malformed {
        kind,
        reason: e.to_string(),
    })?;
    if canonical != body {
        return Err(RecordError::NonCanonical { kind });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u64,
        b: String,
    }

    impl Record for Sample {
        const KIND: &'static str = "sample";
        const VERSION: u8 = 3;
        const MAX_LEN: usize = 32;
    }

    #[test]
    fn round_trips_with_a_leading_version_byte() {
        let value = Sample {
            a: 300,
            b: "hi".into(),
        };
        let bytes = encode(&value).unwrap();
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), value);
    }

    #[test]
    fn refuses_other_versions_trailing_bytes_and_overlong_varints() {
        let mut bytes = encode(&Sample {
            a: 0,
            b: String::new(),
        })
        .unwrap();
        bytes[0] = 4;
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(RecordError::UnsupportedVersion {
                found: 4,
                supported: 3,
                ..
            })
        ));
        assert_eq!(
            decode::<Sample>(&[]),
            Err(RecordError::Empty { kind: "sample" })
        );
        assert!(matches!(
            decode::<Sample>(&[3, 0, 0, 9]),
            Err(RecordError::TrailingBytes { extra: 1, .. })
        ));
        // 0 encoded as the over-long varint 0x80 0x00.
        assert_eq!(
            decode::<Sample>(&[3, 0x80, 0x00, 0]),
            Err(RecordError::NonCanonical { kind: "sample" })
        );
        assert!(matches!(
            decode::<Sample>(&[3; 40]),
            Err(RecordError::TooLarge { len: 40, .. })
        ));
    }
}
