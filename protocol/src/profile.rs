//! [`ProviderProfile`]: who a provider is, what it sells and the counters a renter can
//! check against its own receipts, signed and gossiped on
//! [`PROFILES_TOPIC`](crate::PROFILES_TOPIC).

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::ids::{EvmAddress, NodeId, ToolName};
use crate::money::Usdc;
use crate::pricing::Pricing;
use crate::signed::SignedPayload;
use crate::time::{Millis, Timestamp};
use crate::wire::{Message, check_len};

/// Longest display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 64;
/// Longest profile description.
pub const MAX_PROFILE_DESCRIPTION_LEN: usize = 1024;
/// Longest software version string.
pub const MAX_SOFTWARE_LEN: usize = 64;
/// Most tools one profile lists.
pub const MAX_PROFILE_TOOLS: usize = 64;
/// Longest lifetime of one profile; providers re-announce well before it ends.
pub const MAX_PROFILE_LIFETIME: Millis = Millis(24 * 60 * 60 * 1000);

/// One tool a provider sells, at its offer's prices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolPrice {
    /// The tool.
    pub tool: ToolName,
    /// Its prices.
    pub pricing: Pricing,
}

/// A provider's signed profile: one per provider, the newest superseding older ones.
///
/// The counters are the provider's own claims; a renter holds them against its own
/// receipts (it knows how many of its sessions with the provider completed, and when the
/// provider answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderProfile {
    /// The provider; must equal the signer.
    pub provider: NodeId,
    /// The name people see (at most [`MAX_DISPLAY_NAME_LEN`] bytes, not empty).
    pub display_name: String,
    /// What the provider offers, for humans and agents.
    pub description: String,
    /// Where the provider is paid on chain (the payout of its offers).
    pub payout: EvmAddress,
    /// Every tool it sells with its prices, sorted by name, each once.
    pub tools: Vec<ToolPrice>,
    /// The provider's software and version (`"orien-node 0.1.0"`).
    pub software: String,
    /// Sessions it provided that ended normally (closed by the renter, budget or duration
    /// reached), over its whole ledger.
    pub sessions_completed: u64,
    /// When its node last started: `issued_at − online_since` is its uptime.
    pub online_since: Timestamp,
    /// When this profile was signed; a newer profile supersedes older ones.
    pub issued_at: Timestamp,
    /// After this instant the profile is void.
    pub expires_at: Timestamp,
}

impl ProviderProfile {
    /// Whether the profile is void at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// How long the provider had been up when it signed.
    pub fn uptime(&self) -> Millis {
        self.issued_at.since(self.online_since)
    }

    /// The lowest session-time, execution and artefact prices among its tools (`None`
    /// without tools).
    pub fn cheapest(&self) -> Option<Pricing> {
        let lowest =
            |price: fn(&Pricing) -> Usdc| self.tools.iter().map(|t| price(&t.pricing)).min();
        Some(Pricing {
            session_per_minute: lowest(|p| p.session_per_minute)?,
            exec_per_minute: lowest(|p| p.exec_per_minute)?,
            artefact_per_gib: lowest(|p| p.artefact_per_gib)?,
        })
    }

    /// Whether it sells `tool`, and at which prices.
    pub fn price_of(&self, tool: &ToolName) -> Option<Pricing> {
        self.tools
            .binary_search_by(|t| t.tool.cmp(tool))
            .ok()
            .map(|i| self.tools[i].pricing)
    }

    /// The highest per-minute price of a tool (for filtering by price).
    pub fn most_expensive(&self) -> Usdc {
        self.tools
            .iter()
            .map(|t| t.pricing.session_per_minute.max(t.pricing.exec_per_minute))
            .max()
            .unwrap_or(Usdc::ZERO)
    }
}

impl Message for ProviderProfile {
    const KIND: &'static str = "ProviderProfile";
    const MAX_ENCODED_LEN: usize = 8 * 1024;

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.display_name.trim().is_empty() {
            return Err(InvalidMessage::new("display_name", "must not be empty"));
        }
        check_len("display_name", &self.display_name, MAX_DISPLAY_NAME_LEN)?;
        if self.display_name.chars().any(char::is_control) {
            return Err(InvalidMessage::new(
                "display_name",
                "must not hold control characters",
            ));
        }
        check_len(
            "description",
            &self.description,
            MAX_PROFILE_DESCRIPTION_LEN,
        )?;
        check_len("software", &self.software, MAX_SOFTWARE_LEN)?;
        if self.tools.len() > MAX_PROFILE_TOOLS {
            return Err(InvalidMessage::new(
                "tools",
                format!("{} tools, at most {MAX_PROFILE_TOOLS}", self.tools.len()),
            ));
        }
        if self.tools.windows(2).any(|w| w[0].tool >= w[1].tool) {
            return Err(InvalidMessage::new(
                "tools",
                "must be sorted by name, each once",
            ));
        }
        if self.payout == EvmAddress::ZERO {
            return Err(InvalidMessage::new(
                "payout",
                "the zero address cannot be paid",
            ));
        }
        if self.online_since > self.issued_at {
            return Err(InvalidMessage::new(
                "online_since",
                "must not be after issued_at",
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err(InvalidMessage::new("expires_at", "must be after issued_at"));
        }
        if self.expires_at.since(self.issued_at) > MAX_PROFILE_LIFETIME {
            return Err(InvalidMessage::new(
                "expires_at",
                "profiles live at most 24 hours",
            ));
        }
        Ok(())
    }
}

impl SignedPayload for ProviderProfile {
    const DOMAIN: &'static str = "orien/profile/v2";

    fn author(&self) -> Option<&NodeId> {
        Some(&self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::NodeKey;
    use crate::wire;

    fn profile(key: &NodeKey) -> ProviderProfile {
        let price = |s, e| Pricing {
            session_per_minute: Usdc::from_micros(s),
            exec_per_minute: Usdc::from_micros(e),
            artefact_per_gib: Usdc::ZERO,
        };
        ProviderProfile {
            provider: key.node_id(),
            display_name: "a provider".into(),
            description: String::new(),
            payout: EvmAddress::from_bytes([0x22; 20]),
            tools: vec![
                ToolPrice {
                    tool: ToolName::new("grep").unwrap(),
                    pricing: price(500, 40_000),
                },
                ToolPrice {
                    tool: ToolName::new("wc").unwrap(),
                    pricing: price(900, 20_000),
                },
            ],
            software: "orien-node test".into(),
            sessions_completed: 3,
            online_since: Timestamp(1_000),
            issued_at: Timestamp(61_000),
            expires_at: Timestamp(3_661_000),
        }
    }

    fn refused(p: &ProviderProfile) -> &'static str {
        p.validate().unwrap_err().field
    }

    #[test]
    fn a_valid_profile_round_trips_signed_and_reports_its_summary() {
        let key = NodeKey::generate();
        let p = profile(&key);
        let signed = key.sign(&p).unwrap();
        let bytes = signed.to_bytes().unwrap();
        let back = wire::decode::<crate::Signed<ProviderProfile>>(&bytes)
            .unwrap()
            .verify()
            .unwrap();
        assert_eq!(back, p);
        assert_eq!(p.uptime(), Millis(60_000));
        let cheapest = p.cheapest().unwrap();
        assert_eq!(
            (
                cheapest.session_per_minute.micros(),
                cheapest.exec_per_minute.micros()
            ),
            (500, 20_000)
        );
        assert_eq!(p.most_expensive().micros(), 40_000);
        assert!(p.price_of(&ToolName::new("wc").unwrap()).is_some());
        assert!(p.price_of(&ToolName::new("sed").unwrap()).is_none());
    }

    #[test]
    fn a_profile_breaking_a_rule_is_refused_by_field() {
        let key = NodeKey::generate();
        let mut p = profile(&key);
        p.display_name = "  ".into();
        assert_eq!(refused(&p), "display_name");
        p.display_name = "bell\u{7}".into();
        assert_eq!(refused(&p), "display_name");
        p.display_name = "x".repeat(MAX_DISPLAY_NAME_LEN + 1);
        assert_eq!(refused(&p), "display_name");
        let mut p = profile(&key);
        p.tools.reverse();
        assert_eq!(refused(&p), "tools", "unsorted");
        let mut p = profile(&key);
        p.tools.push(p.tools[1].clone());
        assert_eq!(refused(&p), "tools", "repeated");
        let mut p = profile(&key);
        p.payout = EvmAddress::ZERO;
        assert_eq!(refused(&p), "payout");
        let mut p = profile(&key);
        p.online_since = Timestamp(61_001);
        assert_eq!(refused(&p), "online_since");
        let mut p = profile(&key);
        p.expires_at = p
            .issued_at
            .saturating_add(Millis(MAX_PROFILE_LIFETIME.get() + 1));
        assert_eq!(refused(&p), "expires_at");
    }

    #[test]
    fn a_profile_signed_by_another_key_is_refused() {
        let (key, other) = (NodeKey::generate(), NodeKey::generate());
        let p = profile(&key);
        assert!(other.sign(&p).unwrap().verify().is_err());
    }
}
