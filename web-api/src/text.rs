//! The text forms of the API's inputs, each a schema with the pattern the server
//! enforces, so a request that matches the OpenAPI document is never refused for its
//! shape. Handlers parse them into the protocol's types ([`parse`]).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::problem::ApiError;

/// A session or execution id: 16 bytes in hex, optionally `0x`-prefixed.
pub const ID_PATTERN: &str = "^(0x)?[0-9a-fA-F]{32}$";
/// An offer id: 32 bytes in hex, optionally `0x`-prefixed.
pub const OFFER_ID_PATTERN: &str = "^(0x)?[0-9a-fA-F]{64}$";
/// An EVM address: 20 bytes in hex, optionally `0x`-prefixed.
pub const ADDRESS_PATTERN: &str = "^(0x)?[0-9a-fA-F]{40}$";
/// A tool name: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or
/// a digit, at most 64 bytes.
pub const TOOL_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";
/// A node id: the text form of a libp2p peer id of an ed25519 key.
pub const PEER_ID_PATTERN: &str = "^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$";
/// A USDC amount: at most 13 whole digits and 6 decimals.
pub const AMOUNT_PATTERN: &str = r"^[0-9]{1,13}(\.[0-9]{1,6})?$";
/// A USDC amount above zero: at most 13 significant whole digits and 6 decimals.
pub const POSITIVE_AMOUNT_PATTERN: &str = concat!(
    r"^(0*[1-9][0-9]{0,12}(\.[0-9]{1,6})?",
    r"|0+\.([1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}",
    r"|0000[1-9][0-9]?|00000[1-9]))$"
);
/// A workspace path: 1 to 32 components of printable ASCII (no `/`, not `.` or `..`,
/// at most 255 bytes each) joined by `/`, at most 1,024 bytes in all. The node also
/// accepts paths it can normalise (`a//b`, `./a`) and non-ASCII names.
pub const WORKSPACE_PATH_PATTERN: &str = concat!(
    r"^([\x20-\x2d\x30-\x7e][\x20-\x2e\x30-\x7e]{0,254}",
    r"|\.[\x20-\x2d\x30-\x7e][\x20-\x2e\x30-\x7e]{0,253}|\.\.[\x20-\x2e\x30-\x7e]{1,253})",
    r"(/([\x20-\x2d\x30-\x7e][\x20-\x2e\x30-\x7e]{0,254}",
    r"|\.[\x20-\x2d\x30-\x7e][\x20-\x2e\x30-\x7e]{0,253}|\.\.[\x20-\x2e\x30-\x7e]{1,253})){0,31}$"
);
/// An `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";
/// Longest workspace path, in bytes.
pub const WORKSPACE_PATH_MAX: usize = 1024;

macro_rules! text {
    ($(#[$doc:meta])* $name:ident, $schema:literal, $pattern:expr, $max:expr, $example:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(text.to_owned())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some($pattern))
                    .max_length($max)
                    .examples([$example])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($schema)
            }
        }
    };
}

text!(
    /// A session or execution id in hex.
    IdText, "Id", ID_PATTERN, None, "9c2c0990cfa3b88fc9700f1c37143dcf"
);
text!(
    /// An offer id in hex.
    OfferIdText, "OfferId", OFFER_ID_PATTERN, None,
    "4ef7c59c2c0990cfa3b88fc9700f1c37143dcf7c1d40ff577ceb17905423422d"
);
text!(
    /// An EVM address in hex.
    AddressText, "Address", ADDRESS_PATTERN, None,
    "0x4242424242424242424242424242424242424242"
);
text!(
    /// A tool name.
    ToolText, "ToolName", TOOL_PATTERN, None, "sha256"
);
text!(
    /// A node id (libp2p peer id). A well-formed id that is not an ed25519 key names no
    /// node: it finds nothing rather than being refused.
    PeerIdText, "PeerId", PEER_ID_PATTERN, None,
    "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"
);
text!(
    /// A USDC amount in decimal (`"0.05"`, `"12"`).
    AmountText, "Amount", AMOUNT_PATTERN, None, "0.05"
);
text!(
    /// A USDC amount above zero in decimal.
    PositiveAmountText, "PositiveAmount", POSITIVE_AMOUNT_PATTERN, None, "0.50"
);
text!(
    /// A workspace-relative path; may contain `/`.
    PathText, "WorkspacePath", WORKSPACE_PATH_PATTERN, Some(WORKSPACE_PATH_MAX), "data/in.txt"
);

text!(
    /// An `Idempotency-Key` header.
    IdempotencyKeyText, "IdempotencyKey", IDEMPOTENCY_KEY_PATTERN, None, "open-7f3a"
);

/// Parses the text of `field` into `T`; a refusal names the field.
pub fn parse<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| ApiError::field(field, e.to_string()))
}

/// What a well-formed node id names: a node, or (not an ed25519 key) none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRef {
    /// This node.
    Node(orien_protocol::NodeId),
    /// No node can have this id.
    Nobody,
}

/// Parses a node id: refused when it does not match [`PEER_ID_PATTERN`], [`PeerRef::Nobody`]
/// when it matches but is no ed25519 key.
pub fn parse_peer(field: &str, text: &PeerIdText) -> Result<PeerRef, ApiError> {
    if let Ok(node) = text.as_str().parse() {
        return Ok(PeerRef::Node(node));
    }
    if matches_peer_pattern(text.as_str()) {
        Ok(PeerRef::Nobody)
    } else {
        Err(ApiError::field(
            field,
            "not a node id (a libp2p peer id, 12D3KooW… in base58)",
        ))
    }
}

fn matches_peer_pattern(text: &str) -> bool {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    text.strip_prefix("12D3KooW")
        .is_some_and(|rest| rest.len() == 44 && rest.chars().all(|c| BASE58.contains(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_protocol::{NodeKey, Usdc};

    fn pattern(p: &str) -> regex::Regex {
        regex::Regex::new(p).unwrap()
    }

    #[test]
    fn amounts_matching_the_patterns_parse() {
        let (any, positive) = (pattern(AMOUNT_PATTERN), pattern(POSITIVE_AMOUNT_PATTERN));
        for text in [
            "0",
            "0.0",
            "1",
            "0.000001",
            "9999999999999.999999",
            "00012.5",
        ] {
            assert!(any.is_match(text), "{text}");
            assert!(text.parse::<Usdc>().is_ok(), "{text}");
        }
        for text in [
            "1",
            "0.000001",
            "0000.000100",
            "9999999999999.999999",
            "0001",
        ] {
            assert!(positive.is_match(text), "{text}");
            assert!(!text.parse::<Usdc>().unwrap().is_zero(), "{text}");
        }
        for text in [
            "0",
            "0.0",
            "0.000000",
            "0.0000001",
            "1.",
            ".5",
            "-1",
            "1e3",
            "",
        ] {
            assert!(!positive.is_match(text), "{text}");
        }
    }

    #[test]
    fn a_real_node_id_matches_and_a_malformed_one_names_nobody() {
        let id = NodeKey::generate().node_id().to_string();
        assert!(pattern(PEER_ID_PATTERN).is_match(&id));
        assert!(matches!(
            parse_peer("provider", &PeerIdText(id)),
            Ok(PeerRef::Node(_))
        ));
        let nobody = PeerIdText(format!("12D3KooW{}", "1".repeat(44)));
        assert!(pattern(PEER_ID_PATTERN).is_match(nobody.as_str()));
        assert_eq!(parse_peer("provider", &nobody).unwrap(), PeerRef::Nobody);
        assert!(parse_peer("provider", &PeerIdText("nope".into())).is_err());
    }

    #[test]
    fn workspace_paths_matching_the_pattern_are_accepted() {
        let re = pattern(WORKSPACE_PATH_PATTERN);
        for ok in [
            "a",
            "data/in.txt",
            ".hidden",
            "..x",
            "a b/c-d_e.f~",
            "x/".repeat(31).as_str(),
        ] {
            let ok = ok.trim_end_matches('/');
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "..", ".", "a//b", "a/", "ä"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
