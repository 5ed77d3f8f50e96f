//! The 90 / 7 / 3 split of every amount between provider, protocol fee and reserve.
//!
//! For a cumulative total `t`:
//!
//! ```text
//! fee      = floor(t × 7 / 100)
//! reserve  = floor(t × 3 / 100)
//! provider = t − fee − reserve
//! ```
//!
//! Receipts carry cumulative amounts, and each one posts the difference of two splits,
//! [`Split::delta`]. Because each part is a function of the cumulative total, the sum of
//! the deltas over any sequence is exactly the split of the last total: rounding never
//! accumulates, and the escrow contract computes the same numbers.
//!
//! One consequence is worth knowing: `fee` and `reserve` never decrease as `t` grows,
//! but `provider` can step *down* by one micro-USDC, exactly when `t` grows by a single
//! micro-USDC onto a multiple of 100 (both floors tick at once: `split(99)` gives the
//! provider 91, `split(100)` gives it 90). [`SplitDelta::provider_micros`] is therefore signed.
//! The cumulative provider share is never negative and never falls more than one
//! micro-USDC below any earlier value.

use serde::Serialize;

use crate::money::Usdc;

/// Percent of every amount that goes to the protocol treasury.
pub const FEE_PERCENT: u64 = 7;
/// Percent of every amount that goes to the reserve.
pub const RESERVE_PERCENT: u64 = 3;

/// How a total divides between provider, protocol fee and reserve.
///
/// Only [`Split::of`] constructs one, so `provider + fee + reserve == total` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Split {
    total: Usdc,
    provider: Usdc,
    fee: Usdc,
    reserve: Usdc,
}

impl Split {
    /// The split of `total`.
    pub fn of(total: Usdc) -> Self {
        let t = u128::from(total.micros());
        // t × 7 < 2^67: computed in u128, and each result is ≤ t so it fits back in u64.
        let fee = part(t, FEE_PERCENT);
        let reserve = part(t, RESERVE_PERCENT);
        let provider = total.micros() - fee - reserve;
        let split = Self {
            total,
            provider: Usdc::from_micros(provider),
            fee: Usdc::from_micros(fee),
            reserve: Usdc::from_micros(reserve),
        };
        split.assert_conserves();
        split
    }

    /// The difference `Split::of(after) − Split::of(before)` for cumulative totals.
    ///
    /// Errors if `after < before`: cumulative amounts never decrease.
    pub fn delta(before: Usdc, after: Usdc) -> Result<SplitDelta, SplitError> {
        if after < before {
            return Err(SplitError::Decreasing { before, after });
        }
        let (b, a) = (Self::of(before), Self::of(after));
        let delta = SplitDelta {
            total: Usdc::from_micros(after.micros() - before.micros()),
            provider: i128::from(a.provider.micros()) - i128::from(b.provider.micros()),
            fee: Usdc::from_micros(a.fee.micros() - b.fee.micros()),
            reserve: Usdc::from_micros(a.reserve.micros() - b.reserve.micros()),
        };
        delta.assert_conserves();
        Ok(delta)
    }

    /// The amount being split.
    pub const fn total(&self) -> Usdc {
        self.total
    }

    /// The provider's 90 % (the remainder after fee and reserve).
    pub const fn provider(&self) -> Usdc {
        self.provider
    }

    /// The protocol fee, 7 % rounded down.
    pub const fn fee(&self) -> Usdc {
        self.fee
    }

    /// The reserve, 3 % rounded down.
    pub const fn reserve(&self) -> Usdc {
        self.reserve
    }

    fn assert_conserves(&self) {
        assert_eq!(
            u128::from(self.provider.micros())
                + u128::from(self.fee.micros())
                + u128::from(self.reserve.micros()),
            u128::from(self.total.micros()),
            "split does not conserve money: {self:?}"
        );
    }
}

fn part(total: u128, percent: u64) -> u64 {
    let value = total * u128::from(percent) / 100;
    // value ≤ total ≤ u64::MAX because percent < 100.
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The change of a [`Split`] between two cumulative totals; see the module docs for why
/// the provider part is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SplitDelta {
    total: Usdc,
    provider: i128,
    fee: Usdc,
    reserve: Usdc,
}

impl SplitDelta {
    /// `after − before`.
    pub const fn total(&self) -> Usdc {
        self.total
    }

    /// Change of the provider's share in micro-USDC: ≥ −1, and −1 only for a one
    /// micro-USDC step onto a multiple of 100.
    pub const fn provider_micros(&self) -> i128 {
        self.provider
    }

    /// Change of the protocol fee (never negative).
    pub const fn fee(&self) -> Usdc {
        self.fee
    }

    /// Change of the reserve (never negative).
    pub const fn reserve(&self) -> Usdc {
        self.reserve
    }

    fn assert_conserves(&self) {
        assert_eq!(
            self.provider + i128::from(self.fee.micros()) + i128::from(self.reserve.micros()),
            i128::from(self.total.micros()),
            "split delta does not conserve money: {self:?}"
        );
        assert!(
            self.provider >= -1,
            "provider share fell by more than 1 µUSDC: {self:?}"
        );
    }
}

/// A split could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A cumulative amount went down.
    #[error("cumulative amount decreased from {before} to {after}")]
    Decreasing {
        /// The earlier cumulative total.
        before: Usdc,
        /// The later, smaller one.
        after: Usdc,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn u(micros: u64) -> Usdc {
        Usdc::from_micros(micros)
    }

    #[test]
    fn splits_round_numbers_exactly() {
        let s = Split::of(u(1_000_000));
        assert_eq!(
            (s.provider(), s.fee(), s.reserve()),
            (u(900_000), u(70_000), u(30_000))
        );
    }

    #[test]
    fn rounding_favours_the_provider() {
        let s = Split::of(u(99));
        assert_eq!(
            (
                s.provider().micros(),
                s.fee().micros(),
                s.reserve().micros()
            ),
            (91, 6, 2)
        );
        let s = Split::of(u(1));
        assert_eq!(
            (
                s.provider().micros(),
                s.fee().micros(),
                s.reserve().micros()
            ),
            (1, 0, 0)
        );
    }

    #[test]
    fn provider_steps_down_by_one_onto_a_multiple_of_100() {
        let d = Split::delta(u(99), u(100)).unwrap();
        assert_eq!(d.provider_micros(), -1);
        assert_eq!((d.fee().micros(), d.reserve().micros()), (1, 1));
    }

    #[test]
    fn delta_refuses_a_decreasing_total() {
        assert_eq!(
            Split::delta(u(10), u(9)),
            Err(SplitError::Decreasing {
                before: u(10),
                after: u(9)
            })
        );
    }

    #[test]
    fn max_total_does_not_overflow() {
        let s = Split::of(Usdc::MAX);
        assert_eq!(
            s.fee().micros(),
            u64::MAX / 100 * 7 + (u64::MAX % 100) * 7 / 100
        );
    }

    proptest! {
        #[test]
        fn parts_add_up_for_every_total(t in any::<u64>()) {
            let s = Split::of(u(t));
            prop_assert_eq!(
                u128::from(s.provider().micros()) + u128::from(s.fee().micros()) + u128::from(s.reserve().micros()),
                u128::from(t)
            );
            prop_assert_eq!(u128::from(s.fee().micros()), u128::from(t) * 7 / 100);
            prop_assert_eq!(u128::from(s.reserve().micros()), u128::from(t) * 3 / 100);
        }

        #[test]
        fn deltas_sum_to_the_split_of_the_last_total(mut steps in proptest::collection::vec(any::<u64>(), 1..50)) {
            steps.sort_unstable();
            let (mut provider, mut fee, mut reserve) = (0i128, 0u128, 0u128);
            let mut before = Usdc::ZERO;
            for &t in &steps {
                let d = Split::delta(before, u(t)).unwrap();
                provider += d.provider_micros();
                fee += u128::from(d.fee().micros());
                reserve += u128::from(d.reserve().micros());
                before = u(t);
            }
            let last = Split::of(before);
            prop_assert_eq!(provider, i128::from(last.provider().micros()));
            prop_assert_eq!(fee, u128::from(last.fee().micros()));
            prop_assert_eq!(reserve, u128::from(last.reserve().micros()));
        }

        #[test]
        fn small_steps_never_make_the_provider_share_negative(start in 0u64..1_000_000, steps in proptest::collection::vec(0u64..5, 1..200)) {
            let mut total = start;
            for step in steps {
                let d = Split::delta(u(total), u(total + step)).unwrap();
                prop_assert!(d.provider_micros() >= -1);
                total += step;
            }
        }
    }
}
