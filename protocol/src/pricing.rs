//! Prices and metered usage, and the one function that turns usage into an amount.

use serde::{Deserialize, Serialize};

use crate::money::Usdc;
use crate::time::Millis;

/// Milliseconds in a minute: prices are per minute, usage is metered in milliseconds.
const MS_PER_MINUTE: u128 = 60_000;

/// How far past its tool's wall-time limit a call may be metered: the engine's latency
/// to start a call and to kill it at the limit. Both sides cap every call at
/// `max_exec + CALL_SLACK`, so a provider that reports a later exit is not paid for it.
pub const CALL_SLACK: Millis = Millis(1_000);

/// What a provider charges for one tool, per minute of each metered quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Price of one minute of open session (wall time while open and not suspended).
    pub session_per_minute: Usdc,
    /// Price of one minute of execution (sum of call durations).
    pub exec_per_minute: Usdc,
    /// Price of keeping one GiB (2³⁰ bytes) of a call's artefacts, the copies of the
    /// files its output paths named, for the rest of the session and for the offer's
    /// [`keep_artefacts`](crate::Offer::keep_artefacts) after its close. Charged once
    /// per result, [`artefact_amount`](Self::artefact_amount) of the bytes it kept.
    /// Absent (in JSON and TOML) means free.
    #[serde(default)]
    pub artefact_per_gib: Usdc,
}

/// Cumulative metered usage of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Session time while open and not suspended.
    pub session: Millis,
    /// Sum of execution durations.
    pub exec: Millis,
}

impl Pricing {
    /// The amount owed for cumulative `usage`:
    /// `floor((session_ms × session_per_minute + exec_ms × exec_per_minute) / 60 000)`.
    ///
    /// The floor is taken of the exact rational value, computed in 128-bit integers so
    /// no intermediate product can overflow. A result above [`Usdc::MAX`] (18 trillion
    /// USDC) saturates; budgets cap real amounts far below that.
    ///
    /// Monotone: more usage never costs less.
    pub fn amount_for(&self, usage: Usage) -> Usdc {
        // Each product is < 2^128 but their sum might not be, so divide each by the
        // minute first and recombine the remainders: exact floor of the sum.
        let session =
            u128::from(usage.session.get()) * u128::from(self.session_per_minute.micros());
        let exec = u128::from(usage.exec.get()) * u128::from(self.exec_per_minute.micros());
        let whole = session / MS_PER_MINUTE + exec / MS_PER_MINUTE;
        let carry = (session % MS_PER_MINUTE + exec % MS_PER_MINUTE) / MS_PER_MINUTE;
        let micros = whole.saturating_add(carry);
        Usdc::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// What `session` of session time costs alone, `floor(session_ms ×
    /// session_per_minute / 60 000)`: a receipt's amount is this plus its execution
    /// amount, each call priced at its own tool's execution price.
    pub fn session_amount(&self, session: Millis) -> Usdc {
        self.amount_for(Usage {
            session,
            exec: Millis::ZERO,
        })
    }

    /// What keeping `bytes` of one result's artefacts costs: `floor(bytes ×
    /// artefact_per_gib / 2³⁰)`. A receipt's `artefact_amount` is the sum of this over
    /// the results it commits to (each floored on its own, so a result's cost is its
    /// own). Saturates like [`amount_for`](Self::amount_for).
    pub fn artefact_amount(&self, bytes: u64) -> Usdc {
        let micros = (u128::from(bytes) * u128::from(self.artefact_per_gib.micros())) >> 30;
        Usdc::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// What `exec` of execution time costs alone, `floor(exec_ms × exec_per_minute /
    /// 60 000)`: the cost an execution record gives one call. (A session's amount floors
    /// the sum of all usage, so the calls' costs may add up to a little less.)
    pub fn exec_amount(&self, exec: Millis) -> Usdc {
        self.amount_for(Usage {
            session: Millis::ZERO,
            exec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pricing(session: u64, exec: u64) -> Pricing {
        Pricing {
            session_per_minute: Usdc::from_micros(session),
            exec_per_minute: Usdc::from_micros(exec),
            artefact_per_gib: Usdc::ZERO,
        }
    }

    #[test]
    fn artefacts_cost_their_share_of_a_gib_rounded_down() {
        let p = Pricing {
            artefact_per_gib: Usdc::from_micros(50_000),
            ..Pricing::default()
        };
        assert_eq!(p.artefact_amount(1 << 30).micros(), 50_000);
        assert_eq!(p.artefact_amount(3 << 29).micros(), 75_000, "1.5 GiB");
        assert_eq!(
            p.artefact_amount(21_474).micros(),
            0,
            "floored: 0.99999 µUSDC"
        );
        assert_eq!(p.artefact_amount(21_475).micros(), 1);
        assert_eq!(
            Pricing::default().artefact_amount(u64::MAX),
            Usdc::ZERO,
            "free by default"
        );
        let dear = Pricing {
            artefact_per_gib: Usdc::MAX,
            ..Pricing::default()
        };
        assert_eq!(dear.artefact_amount(u64::MAX), Usdc::MAX, "saturates");
    }

    #[test]
    fn a_price_without_an_artefact_term_reads_as_free() {
        let p: Pricing =
            serde_json::from_str(r#"{"session_per_minute":"0.001","exec_per_minute":"0.01"}"#)
                .unwrap();
        assert_eq!(p.artefact_per_gib, Usdc::ZERO);
        assert_eq!(p.exec_per_minute.micros(), 10_000);
    }

    fn usage(session: u64, exec: u64) -> Usage {
        Usage {
            session: Millis(session),
            exec: Millis(exec),
        }
    }

    #[test]
    fn one_minute_costs_the_price() {
        let p = pricing(10_000, 50_000);
        assert_eq!(p.amount_for(usage(60_000, 0)).micros(), 10_000);
        assert_eq!(p.amount_for(usage(0, 60_000)).micros(), 50_000);
        assert_eq!(p.amount_for(usage(60_000, 60_000)).micros(), 60_000);
    }

    #[test]
    fn a_call_costs_its_execution_time_alone() {
        let p = pricing(10_000, 50_000);
        assert_eq!(p.exec_amount(Millis(60_000)).micros(), 50_000);
        assert_eq!(p.exec_amount(Millis(1)).micros(), 0, "floored");
        assert_eq!(p.exec_amount(Millis(1_200)).micros(), 1_000);
    }

    #[test]
    fn rounds_down_the_exact_sum_not_each_term() {
        // 30 s at 1 µUSDC/min = 0.5 µUSDC, twice: floor(0.5 + 0.5) = 1, not 0 + 0.
        let p = pricing(1, 1);
        assert_eq!(p.amount_for(usage(30_000, 30_000)).micros(), 1);
        assert_eq!(p.amount_for(usage(29_999, 30_000)).micros(), 0);
    }

    #[test]
    fn extreme_values_saturate_instead_of_overflowing() {
        let p = pricing(u64::MAX, u64::MAX);
        assert_eq!(p.amount_for(usage(u64::MAX, u64::MAX)), Usdc::MAX);
    }

    proptest! {
        #[test]
        fn equals_the_exact_floor(s in any::<u64>(), e in any::<u64>(), ps in any::<u64>(), pe in any::<u64>()) {
            // Reference computed in a 192-bit representation: (hi, lo) pairs are overkill,
            // so use u128 when it cannot overflow and skip otherwise.
            let a = u128::from(s) * u128::from(ps);
            let b = u128::from(e) * u128::from(pe);
            if let Some(sum) = a.checked_add(b) {
                let expected = u64::try_from(sum / 60_000).unwrap_or(u64::MAX);
                prop_assert_eq!(pricing(ps, pe).amount_for(usage(s, e)).micros(), expected);
            }
        }

        #[test]
        fn amount_is_monotone_in_usage(
            s in any::<u64>(), e in any::<u64>(), ds in any::<u32>(), de in any::<u32>(),
            ps in 0u64..=10_000_000_000, pe in 0u64..=10_000_000_000,
        ) {
            let p = pricing(ps, pe);
            let before = p.amount_for(usage(s, e));
            let after = p.amount_for(usage(s.saturating_add(ds.into()), e.saturating_add(de.into())));
            prop_assert!(after >= before);
        }
    }
}
