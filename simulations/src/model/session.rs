//! One session's money: what it costs, how it ends, what each side records.
//!
//! The model bills session time at the offer's price with the node's own money rules
//! ([`Pricing::session_amount`], the 90 / 7 / 3 [`Split`](orien_protocol::Split)) and
//! settles at the receipt boundaries the protocol would: a graceful end pays all served
//! time, a crash or a cut pays up to the last acknowledged receipt, and a dispute up to
//! the last honest one. Execution time and artefacts are not billed separately here (a
//! call's cost is in the session price).

use orien_protocol::{Millis, Pricing, Usdc};
use serde::Serialize;

/// How much above its own measure the renter's countersigner accepts a claim: the
/// ledger's default tolerance, `max(2 s, 2 % of the measure)`.
pub fn tolerance_ms(measured_ms: u64) -> u64 {
    (measured_ms / 100 * 2).max(2_000)
}

/// What a session costs after `ms` of session time at `price` per minute.
pub fn cost(price: Usdc, ms: u64) -> Usdc {
    Pricing {
        session_per_minute: price,
        ..Pricing::default()
    }
    .session_amount(Millis(ms))
}

/// The session time at which `budget` is spent at `price` per minute.
pub fn time_to_spend(price: Usdc, budget: Usdc) -> u64 {
    if price.is_zero() {
        return u64::MAX;
    }
    // cost(t) = floor(t × price / 60 000) ≥ budget  ⟺  t ≥ budget × 60 000 / price.
    let ms = (u128::from(budget.micros()) * 60_000).div_ceil(u128::from(price.micros()));
    let ms = u64::try_from(ms).unwrap_or(u64::MAX);
    debug_assert!(cost(price, ms) >= budget);
    ms
}

/// Why a session ended, or why a renter's request never became one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran as long as the renter wanted.
    Completed,
    /// Its budget was spent.
    BudgetSpent,
    /// The provider went away for the day and closed it early.
    ProviderLeft,
    /// The provider crashed.
    ProviderCrashed,
    /// A partition cut the renter from the provider.
    Partitioned,
    /// The renter stopped acknowledging receipts; the provider stopped serving.
    RenterStoppedAcking,
    /// The renter refused a receipt that claimed more than it measured.
    Dispute,
    /// The renter knew no offer for the tool.
    NoOfferKnown,
    /// Every provider the renter tried was away, full, cut off or a Sybil.
    NoProviderAnswered,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Self; 9] = [
        Self::Completed,
        Self::BudgetSpent,
        Self::ProviderLeft,
        Self::ProviderCrashed,
        Self::Partitioned,
        Self::RenterStoppedAcking,
        Self::Dispute,
        Self::NoOfferKnown,
        Self::NoProviderAnswered,
    ];

    /// Whether the renter got what it asked for.
    pub const fn succeeded(self) -> bool {
        matches!(self, Self::Completed | Self::BudgetSpent)
    }

    /// Its name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::BudgetSpent => "budget_spent",
            Self::ProviderLeft => "provider_left",
            Self::ProviderCrashed => "provider_crashed",
            Self::Partitioned => "partitioned",
            Self::RenterStoppedAcking => "renter_stopped_acking",
            Self::Dispute => "dispute",
            Self::NoOfferKnown => "no_offer_known",
            Self::NoProviderAnswered => "no_provider_answered",
        }
    }
}

/// What a loss was due to; each kind has one loser and one bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LossCause {
    /// The provider crashed: its work since the last receipt is unpaid.
    Crashes,
    /// A partition cut the session: the provider served until its ack timeout.
    Partitions,
    /// The renter stopped acknowledging: likewise.
    SilentRenters,
    /// The provider claimed as much as the renter's tolerance lets pass.
    WithinTolerance,
    /// The provider held calls' exits back until refused.
    ExitsHeldBack,
    /// The provider claimed far more than it metered: refused at once.
    GreedyClaims,
}

impl LossCause {
    /// Its name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Crashes => "crashes",
            Self::Partitions => "partitions",
            Self::SilentRenters => "silent renters",
            Self::WithinTolerance => "claims within tolerance",
            Self::ExitsHeldBack => "exits held back",
            Self::GreedyClaims => "greedy claims",
        }
    }

    /// Whether the provider loses (otherwise the renter does).
    pub const fn provider_loses(self) -> bool {
        matches!(self, Self::Crashes | Self::Partitions | Self::SilentRenters)
    }

    /// The bound, in words.
    pub const fn bound(self) -> &'static str {
        match self {
            Self::Crashes => "one receipt interval at the session's price",
            Self::Partitions | Self::SilentRenters => {
                "one receipt interval, the ack timeout and a round trip at the session's price"
            }
            Self::WithinTolerance | Self::ExitsHeldBack | Self::GreedyClaims => {
                "the countersigner's tolerance, max(2 s, 2 % of the session), at its price"
            }
        }
    }
}

/// How a provider behaves towards its renters' meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduct {
    /// Claims what it metered.
    Honest,
    /// Claims far more than it metered from some receipt on: refused at once.
    GreedyClaims,
    /// Claims as much above the renter's measure as the tolerance lets pass.
    RidesTolerance,
    /// Holds back calls' exits, adding up until the renter's meter refuses a receipt.
    DelaysExits,
}

/// What one ended session left in each ledger and who lost what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// What the renter acknowledged and pays (its ledger and the provider's agree).
    pub paid: Usdc,
    /// What the renter would have paid for the time it was served, by its own meter.
    pub metered: Usdc,
    /// Work the provider did and was not paid for.
    pub provider_unpaid: Usdc,
    /// What the renter paid beyond its own meter.
    pub renter_overpaid: Usdc,
}

/// The timing rules of the protocol, µs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Between receipts.
    pub interval_us: u64,
    /// A provider stops this long after an unacknowledged receipt.
    pub ack_timeout_us: u64,
    /// One round trip.
    pub round_trip_us: u64,
}

impl Timing {
    /// The last receipt boundary at or before `served_us` of session time.
    pub fn last_receipt(&self, served_us: u64) -> u64 {
        served_us / self.interval_us * self.interval_us
    }

    /// The most a provider can serve unpaid when acknowledgements stop: the receipt
    /// interval, the ack timeout and a round trip.
    pub fn ack_window_us(&self) -> u64 {
        self.interval_us + self.ack_timeout_us + self.round_trip_us
    }
}

/// Settles a session that was served `served_us`, paid up to `paid_until_us` of session
/// time (its last acknowledged receipt, or all of it on a graceful end), with a renter
/// who over-accepts `extra_ms` (claims within tolerance), capped by `budget`.
pub fn settle(
    price: Usdc,
    budget: Usdc,
    served_us: u64,
    paid_until_us: u64,
    extra_ms: u64,
) -> Settlement {
    debug_assert!(paid_until_us <= served_us);
    let served = cost(price, served_us / 1_000).min(budget);
    let honest = cost(price, paid_until_us / 1_000).min(budget);
    let paid = cost(price, paid_until_us / 1_000 + extra_ms).min(budget);
    Settlement {
        paid,
        metered: served,
        provider_unpaid: served.saturating_sub(honest),
        renter_overpaid: paid.saturating_sub(honest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_spent_at_the_first_millisecond_that_reaches_it() {
        let price = Usdc::from_micros(30_000); // 0.03 per minute
        let budget = Usdc::from_micros(10_000);
        let t = time_to_spend(price, budget);
        assert!(cost(price, t) >= budget);
        assert!(cost(price, t - 1) < budget);
    }

    #[test]
    fn settlement_pays_to_the_last_receipt_and_counts_the_rest_as_unpaid() {
        let price = Usdc::from_micros(60_000); // 1 µ per ms
        let budget = Usdc::from_micros(1_000_000);
        let s = settle(price, budget, 12_500_000, 10_000_000, 0);
        assert_eq!(s.paid, Usdc::from_micros(10_000));
        assert_eq!(s.provider_unpaid, Usdc::from_micros(2_500));
        assert_eq!(s.renter_overpaid, Usdc::ZERO);
        let riding = settle(
            price,
            budget,
            100_000_000,
            100_000_000,
            tolerance_ms(100_000),
        );
        assert_eq!(
            riding.renter_overpaid,
            Usdc::from_micros(2_000),
            "2 s at 1 µ/ms"
        );
        let capped = settle(
            price,
            Usdc::from_micros(5_000),
            12_500_000,
            12_500_000,
            2_000,
        );
        assert_eq!(
            capped.paid,
            Usdc::from_micros(5_000),
            "never beyond the budget"
        );
    }
}
