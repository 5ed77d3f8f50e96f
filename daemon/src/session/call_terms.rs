//! The terms of one call: which of the provider's tools runs it and how it is metered.
//! A session opens on one offer; each call names the session's tool or another offer of
//! the same provider, whose execution price, call cap and output cap it takes.

use orien_ledger::meter::{CallRate, MeterConfig};
use orien_protocol::{Offer, ToolName};

/// How one call runs and is metered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTerms {
    /// The tool.
    pub tool: ToolName,
    /// Its price per minute of execution and the most it is metered.
    pub rate: CallRate,
    /// The most output (both streams) it may send.
    pub output_cap: u64,
}

impl CallTerms {
    /// The terms of a call of `offer`'s tool.
    pub fn of_offer(offer: &Offer) -> Self {
        Self {
            tool: offer.tool.clone(),
            rate: CallRate {
                exec_per_minute: offer.pricing.exec_per_minute,
                cap: MeterConfig::call_cap_for(offer.limits.max_exec),
            },
            output_cap: offer.limits.output_bytes.saturating_mul(2),
        }
    }
}
