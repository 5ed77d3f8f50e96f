//! [`Offer`]: a provider's signed promise to run one tool at one price until expiry.

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::ids::{EvmAddress, ImageDigest, NodeId, OfferId, ToolName};
use crate::pricing::Pricing;
use crate::signed::{Signed, SignedPayload};
use crate::time::{Millis, Timestamp};
use crate::wire::{Message, check_json_object, check_len};

/// Longest version string.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest JSON Schema of a tool's arguments.
pub const MAX_SCHEMA_LEN: usize = 16 * 1024;
/// Longest lifetime of one offer; providers re-announce well before it ends.
pub const MAX_OFFER_LIFETIME: Millis = Millis(24 * 60 * 60 * 1000);
/// Longest a provider may promise to keep a session's artefacts after its close.
pub const MAX_KEEP_ARTEFACTS: Millis = Millis(7 * 24 * 60 * 60 * 1000);

/// The resources one execution of a tool may use, as enforced by the provider's sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// Wall-time limit of one execution; the process is killed when it is reached.
    pub max_exec: Millis,
    /// CPU quota in thousandths of a CPU (1000 = one core).
    pub cpu_millis: u32,
    /// Memory limit in bytes (swap disabled).
    pub memory_bytes: u64,
    /// Maximum number of processes and threads.
    pub pids: u32,
    /// Size of the tmpfs mounted at `/tmp`, in bytes.
    pub tmpfs_bytes: u64,
    /// Cap on each of stdout and stderr, in bytes; output beyond it is dropped and flagged.
    pub output_bytes: u64,
    /// Size quota of the session's `/workspace`, in bytes.
    pub workspace_bytes: u64,
    /// Executions that may run at once in one session.
    pub concurrent_execs: u32,
}

impl ResourceLimits {
    fn validate(&self) -> Result<(), InvalidMessage> {
        let positive = [
            ("limits.max_exec", self.max_exec.get()),
            ("limits.cpu_millis", u64::from(self.cpu_millis)),
            ("limits.memory_bytes", self.memory_bytes),
            ("limits.pids", u64::from(self.pids)),
            ("limits.output_bytes", self.output_bytes),
            ("limits.concurrent_execs", u64::from(self.concurrent_execs)),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(InvalidMessage::new(field, "must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// A provider's signed offer of one tool, gossiped on [`OFFERS_TOPIC`](crate::OFFERS_TOPIC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The provider; must equal the signer.
    pub provider: NodeId,
    /// Name of the tool.
    pub tool: ToolName,
    /// Version of the tool, free text (`"1.36.1"`).
    pub version: String,
    /// What the tool does, for humans and agents.
    pub description: String,
    /// The image the tool runs in.
    pub image_digest: ImageDigest,
    /// JSON Schema (as JSON text) that the arguments of an execution must satisfy.
    pub args_schema: String,
    /// Price per minute of session and of execution, and per GiB of artefacts kept.
    pub pricing: Pricing,
    /// Limits applied to every execution.
    pub limits: ResourceLimits,
    /// Where the provider is paid on chain.
    pub payout: EvmAddress,
    /// When this offer was made; a newer offer for the same tool supersedes older ones.
    pub issued_at: Timestamp,
    /// After this instant the offer is void.
    pub expires_at: Timestamp,
    /// How long after a session's close the provider keeps its artefacts for the renter
    /// to fetch (at most [`MAX_KEEP_ARTEFACTS`]); zero: only while the session is open.
    pub keep_artefacts: Millis,
}

impl Offer {
    /// Whether the offer is void at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

impl Message for Offer {
    const KIND: &'static str = "Offer";
    const MAX_ENCODED_LEN: usize = 24 * 1024;

    fn validate(&self) -> Result<(), InvalidMessage> {
        check_len("version", &self.version, MAX_VERSION_LEN)?;
        check_len("description", &self.description, MAX_DESCRIPTION_LEN)?;
        check_json_object("args_schema", &self.args_schema, MAX_SCHEMA_LEN)?;
        self.limits.validate()?;
        if self.keep_artefacts > MAX_KEEP_ARTEFACTS {
            return Err(InvalidMessage::new(
                "keep_artefacts",
                "artefacts are kept at most 7 days after a session",
            ));
        }
        if self.payout == EvmAddress::ZERO {
            return Err(InvalidMessage::new(
                "payout",
                "the zero address cannot be paid",
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err(InvalidMessage::new("expires_at", "must be after issued_at"));
        }
        if self.expires_at.since(self.issued_at) > MAX_OFFER_LIFETIME {
            return Err(InvalidMessage::new(
                "expires_at",
                "offers live at most 24 hours",
            ));
        }
        Ok(())
    }
}

impl SignedPayload for Offer {
    const DOMAIN: &'static str = "orien/offer/v2";

    fn author(&self) -> Option<&NodeId> {
        Some(&self.provider)
    }
}

impl Signed<Offer> {
    /// The offer's id: SHA-256 of its signing bytes.
    pub fn offer_id(&self) -> OfferId {
        OfferId::from_bytes(self.content_hash())
    }
}
