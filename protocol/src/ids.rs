//! Identifiers: sessions, executions, offers, receipts, tools, nodes and chain addresses.
//!
//! Every identifier is its own type, so a session id can never be passed where an
//! execution id is expected. Byte identifiers print and parse as lowercase hex and
//! serialize as hex strings in human-readable formats (JSON) and as raw bytes in
//! postcard.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::bytes::{self, parse_hex};
use crate::checked_keys;
use crate::error::InvalidMessage;

/// The multihash prefix of a SHA-256 digest: code `0x12` (sha2-256), length 32.
const SHA2_256_MULTIHASH: [u8; 2] = [0x12, 0x20];

/// Error returned when an identifier cannot be parsed from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct ParseIdError {
    /// Which identifier was being parsed.
    pub kind: &'static str,
    /// What was wrong with it.
    pub reason: String,
}

impl ParseIdError {
    pub(crate) fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// Fills `N` bytes from the operating system's random source.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not recoverable for an identifier generator; every
    // supported platform (Linux getrandom(2)) provides it.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

/// Declares a fixed-size byte identifier with hex `Display`/`FromStr` and serde.
macro_rules! byte_id {
    ($(#[$meta:meta])* $name:ident, $len:expr, $kind:literal, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length of the identifier in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex::<$len>($kind, s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                bytes::serialize(&self.0, $prefix, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                bytes::deserialize::<D, $len>($kind, $prefix, deserializer).map(Self)
            }
        }
    };
}

byte_id!(
    /// A metered session between one renter and one provider, chosen at random by the
    /// provider when it accepts `OpenSession`.
    SessionId, 16, "session id", ""
);
byte_id!(
    /// One execution of a tool inside a session, chosen at random by the renter.
    ExecId, 16, "execution id", ""
);
byte_id!(
    /// Identity of a signed offer: SHA-256 of its signing bytes (domain tag and payload).
    ///
    /// The payload names the provider, so the id commits to who offers what, at which
    /// price, until when.
    OfferId, 32, "offer id", ""
);
byte_id!(
    /// SHA-256 of a signed receipt's signing bytes; receipts chain through it.
    ReceiptHash, 32, "receipt hash", ""
);
byte_id!(
    /// SHA-256 of a signed execution result's signing bytes; a session's results chain
    /// through it into its receipts.
    ResultHash, 32, "result hash", ""
);
byte_id!(
    /// SHA-256 of some bytes: an output stream, a call's arguments.
    ContentHash, 32, "SHA-256", ""
);
byte_id!(
    /// A payment lane in the escrow contract (one per renter and provider).
    LaneId, 32, "lane id", "0x"
);
byte_id!(
    /// An EVM account address (20 bytes), e.g. a provider's payout address.
    EvmAddress, 20, "EVM address", "0x"
);

impl ContentHash {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl SessionId {
    /// A fresh random session id.
    pub fn random() -> Self {
        Self(random_bytes())
    }
}

impl ExecId {
    /// A fresh random execution id.
    pub fn random() -> Self {
        Self(random_bytes())
    }
}

impl ReceiptHash {
    /// The `prev` value of the first receipt of a session.
    pub const GENESIS: Self = Self([0u8; 32]);
}

impl EvmAddress {
    /// The zero address, never a valid payout address.
    pub const ZERO: Self = Self([0u8; 20]);
}

/// The digest of a container image (`sha256:<64 hex digits>`): the image id the
/// provider's engine reports, so a renter knows exactly what runs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageDigest([u8; 32]);

impl ImageDigest {
    /// Wraps the raw SHA-256 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw SHA-256 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageDigest({self})")
    }
}

impl FromStr for ImageDigest {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            ParseIdError::new("image digest", "expected `sha256:<64 hex digits>`")
        })?;
        parse_hex::<32>("image digest", hex).map(Self)
    }
}

impl Serialize for ImageDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bytes::serialize(&self.0, "sha256:", serializer)
    }
}

impl<'de> Deserialize<'de> for ImageDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(D::Error::custom)
        } else {
            bytes::deserialize::<D, 32>("image digest", "", deserializer).map(Self)
        }
    }
}

/// The name of a whitelisted tool: `[a-z0-9][a-z0-9._-]{0,63}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ToolName(String);

impl ToolName {
    /// Longest accepted name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a tool name.
    pub fn new(name: impl Into<String>) -> Result<Self, ParseIdError> {
        let name = name.into();
        let bytes = name.as_bytes();
        let Some(first) = bytes.first() else {
            return Err(ParseIdError::new("tool name", "empty"));
        };
        if bytes.len() > Self::MAX_LEN {
            return Err(ParseIdError::new(
                "tool name",
                format!("{} bytes, at most {} allowed", bytes.len(), Self::MAX_LEN),
            ));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(ParseIdError::new(
                "tool name",
                format!("`{name}` must start with a lowercase letter or a digit"),
            ));
        }
        if let Some(bad) = name.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(ParseIdError::new(
                "tool name",
                format!("`{name}` contains {bad:?}; allowed are a-z, 0-9, '.', '_' and '-'"),
            ));
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Kademlia key under which providers of this tool are recorded: the SHA-256
    /// multihash (`0x12 0x20 ‖ sha256("orien/tool/" + name)`), the form in which a
    /// standard libp2p DHT client (or a CID's multihash) names a provider record.
    pub fn kademlia_key(&self) -> [u8; 34] {
        let mut key = [0u8; 34];
        key[..2].copy_from_slice(&SHA2_256_MULTIHASH);
        key[2..].copy_from_slice(&self.digest());
        key
    }

    /// `sha256("orien/tool/" + name)`: the digest inside [`kademlia_key`](Self::kademlia_key).
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"orien/tool/");
        hasher.update(self.0.as_bytes());
        hasher.finalize().into()
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ToolName({})", self.0)
    }
}

impl FromStr for ToolName {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for ToolName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(text).map_err(D::Error::custom)
    }
}

/// A node's identity: its ed25519 public key, which is also its libp2p identity.
///
/// Displays and parses as the libp2p `PeerId` text form (`12D3KooW…`). Only valid
/// curve points are accepted, whether parsed from text or decoded from bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Wraps the 32 bytes of an ed25519 public key after checking it is a curve point.
    pub fn from_public_key_bytes(bytes: [u8; 32]) -> Result<Self, ParseIdError> {
        if !checked_keys::is_curve_point(&bytes) {
            return Err(ParseIdError::new("node id", "not an ed25519 public key"));
        }
        Ok(Self(bytes))
    }

    /// The ed25519 public key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ed25519 verifying key.
    pub(crate) fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, InvalidMessage> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| InvalidMessage::new("signer", "not an ed25519 public key"))
    }

    /// The libp2p peer id of this node.
    pub fn to_peer_id(&self) -> libp2p_identity::PeerId {
        self.to_libp2p_public_key().to_peer_id()
    }

    /// The libp2p public key of this node.
    pub fn to_libp2p_public_key(&self) -> libp2p_identity::PublicKey {
        // The bytes were checked to be a curve point on construction.
        #[allow(clippy::expect_used)]
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .expect("NodeId holds a valid ed25519 public key");
        libp2p_identity::PublicKey::from(key)
    }

    /// The node id of a libp2p peer, if the peer uses an ed25519 identity (all ORIEN
    /// nodes do).
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Result<Self, ParseIdError> {
        let multihash = peer.as_ref();
        // ed25519 peer ids inline the public key with the identity multihash (code 0).
        if multihash.code() != 0 {
            return Err(ParseIdError::new(
                "node id",
                "peer id does not inline its public key",
            ));
        }
        let key = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
            .map_err(|e| ParseIdError::new("node id", e.to_string()))?;
        let key = key
            .try_into_ed25519()
            .map_err(|_| ParseIdError::new("node id", "peer key is not ed25519"))?;
        Self::from_public_key_bytes(key.to_bytes())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_peer_id())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let peer: libp2p_identity::PeerId =
            s.parse().map_err(|e: libp2p_identity::ParseError| {
                ParseIdError::new("node id", e.to_string())
            })?;
        Self::from_peer_id(&peer)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            bytes::serialize(&self.0, "", serializer)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(D::Error::custom)
        } else {
            let bytes = bytes::deserialize::<D, 32>("node id", "", deserializer)?;
            Self::from_public_key_bytes(bytes).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_the_grammar() {
        for ok in ["sha256sum", "a", "0", "wc.v2", "x_y-z", &"a".repeat(64)] {
            assert!(ToolName::new(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "",
            "-rm",
            ".hidden",
            "Upper",
            "sp ace",
            "semi;colon",
            "ünï",
            &"a".repeat(65),
        ] {
            assert!(ToolName::new(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn tool_name_deserialization_validates() {
        assert!(serde_json::from_str::<ToolName>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<ToolName>("\"../etc\"").is_err());
    }

    #[test]
    fn byte_ids_round_trip_through_text_and_json() {
        let id = SessionId::random();
        assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        assert!("abc".parse::<SessionId>().is_err());
        let addr: EvmAddress = "0x00000000000000000000000000000000000000ff"
            .parse()
            .unwrap();
        assert_eq!(
            addr.to_string(),
            "0x00000000000000000000000000000000000000ff"
        );
    }

    #[test]
    fn node_id_is_the_libp2p_peer_id() {
        let key = libp2p_identity::Keypair::ed25519_from_bytes([7u8; 32]).unwrap();
        let peer = key.public().to_peer_id();
        let node = NodeId::from_peer_id(&peer).unwrap();
        assert_eq!(node.to_peer_id(), peer);
        assert_eq!(node.to_string(), peer.to_string());
        assert_eq!(peer.to_string().parse::<NodeId>().unwrap(), node);
    }

    #[test]
    fn node_id_rejects_bytes_that_are_not_a_point() {
        // y = 2 is not on the curve.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert!(NodeId::from_public_key_bytes(bytes).is_err());
        let encoded = postcard::to_stdvec(&bytes).unwrap();
        assert!(postcard::from_bytes::<NodeId>(&encoded).is_err());
    }

    #[test]
    fn image_digest_parses_only_sha256() {
        let text = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(text.parse::<ImageDigest>().unwrap().to_string(), text);
        assert!("md5:00".parse::<ImageDigest>().is_err());
        assert!("sha256:zz".parse::<ImageDigest>().is_err());
    }

    #[test]
    fn tool_kademlia_key_is_the_sha256_multihash_of_the_prefixed_name() {
        let name = ToolName::new("wc").unwrap();
        let digest: [u8; 32] = Sha256::digest(b"orien/tool/wc").into();
        let key = name.kademlia_key();
        assert_eq!(key[..2], [0x12, 0x20], "multihash code sha2-256, length 32");
        assert_eq!(key[2..], digest);
        assert_eq!(name.digest(), digest);
    }
}
