//! Postings: balanced sets of debits and credits, the only way balances change.
//!
//! Every posting is built by one of two functions, [`Posting::receipt`] and
//! [`Posting::settlement`], from a [`SplitDelta`]; both assert that debits equal
//! credits before the posting can exist, and the store asserts it again when it commits.

use orien_protocol::{SessionId, Split, SplitDelta, SplitError, Timestamp, Usdc};
use serde::{Deserialize, Serialize};

use crate::accounts::{Account, LaneKey};
use crate::record::Record;
use crate::settlement::TxHash;

/// Which side of an account a leg touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Money leaves the account (a lane spends, an accrual is settled).
    Debit,
    /// Money arrives in the account.
    Credit,
}

/// One line of a posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Leg {
    /// The account.
    pub account: Account,
    /// Debit or credit.
    pub side: Side,
    /// How much; never zero (zero legs are left out).
    pub amount: Usdc,
}

/// Why a posting exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cause {
    /// An acknowledged receipt of a session.
    Receipt {
        /// The session.
        session: SessionId,
        /// The receipt's sequence number.
        seq: u64,
    },
    /// A settlement confirmed on chain.
    Settlement {
        /// The transaction that paid.
        tx: TxHash,
    },
    /// The reversal of a confirmed settlement whose transaction was reorganised away.
    SettlementVoided {
        /// The transaction that no longer pays.
        tx: TxHash,
    },
    /// A settlement confirmed again after it was voided: a reorg often re-mines the same
    /// transaction in another block. `round` counts the re-confirmations from 1.
    SettlementAgain {
        /// The transaction that pays again.
        tx: TxHash,
        /// Which re-confirmation.
        round: u32,
    },
    /// The reversal of re-confirmation `round`.
    SettlementAgainVoided {
        /// The transaction that no longer pays.
        tx: TxHash,
        /// Which re-confirmation it reverses.
        round: u32,
    },
    /// What the other side proved acknowledged on a lane beyond this ledger's total,
    /// found when `session` opened: receipts this node never committed (a crash between
    /// the two commits, an ack lost at the end of a session), paid as they would have been.
    LaneGap {
        /// The session at whose opening the gap was found.
        session: SessionId,
    },
    /// What the lane's largest voucher pays beyond this ledger's total when the last
    /// session open on the lane ended: receipts of the lane's sessions whose acks never
    /// arrived (the voucher of a later ack of another session counted them), paid as
    /// they would have been.
    LaneGapAtEnd {
        /// The session whose end left the lane idle.
        session: SessionId,
    },
}

impl Cause {
    /// The cause of confirming (`reverse` false) or voiding `tx` in `round` (0: the
    /// first confirmation).
    pub fn settlement(tx: TxHash, round: u32, reverse: bool) -> Self {
        match (round, reverse) {
            (0, false) => Self::Settlement { tx },
            (0, true) => Self::SettlementVoided { tx },
            (round, false) => Self::SettlementAgain { tx, round },
            (round, true) => Self::SettlementAgainVoided { tx, round },
        }
    }
}

/// A balanced set of legs, stored in the `postings` column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// Why.
    pub cause: Cause,
    /// Wall-clock time of the commit.
    pub at: Timestamp,
    /// The legs; debits equal credits.
    pub legs: Vec<Leg>,
}

impl Record for Posting {
    const KIND: &'static str = "posting";
    const VERSION: u8 = 1;
    // Seven legs at most (a settlement reversal), each ≤ 1 + 1 + 97 + 1 + 10 bytes.
    const MAX_LEN: usize = 1024;
}

impl Posting {
    /// The posting of one acknowledged receipt: the lane pays the provider, the fee and
    /// the reserve their share of the increase from `before` to `after`.
    pub fn receipt(
        session: SessionId,
        seq: u64,
        lane: LaneKey,
        before: Usdc,
        after: Usdc,
        at: Timestamp,
    ) -> Result<Self, SplitError> {
        let delta = Split::delta(before, after)?;
        let mut legs = Vec::with_capacity(4);
        push(&mut legs, Account::Lane(lane), Side::Debit, delta.total());
        push_provider(&mut legs, Account::Earnings(lane), Side::Credit, &delta);
        push(&mut legs, Account::ProtocolFee, Side::Credit, delta.fee());
        push(&mut legs, Account::Reserve, Side::Credit, delta.reserve());
        Ok(Self::balanced(Cause::Receipt { session, seq }, at, legs))
    }

    /// The posting of a lane gap found when `session` opened: the lane pays the provider,
    /// the fee and the reserve their share of the increase from `before` to `after`,
    /// exactly as the receipts this ledger missed would have.
    pub fn lane_gap(
        session: SessionId,
        lane: LaneKey,
        before: Usdc,
        after: Usdc,
        at: Timestamp,
    ) -> Result<Self, SplitError> {
        Self::gap(Cause::LaneGap { session }, session, lane, before, after, at)
    }

    /// A lane gap (`LaneGap` or `LaneGapAtEnd`) from `before` to `after`.
    pub(crate) fn gap(
        cause: Cause,
        session: SessionId,
        lane: LaneKey,
        before: Usdc,
        after: Usdc,
        at: Timestamp,
    ) -> Result<Self, SplitError> {
        let mut posting = Self::receipt(session, 0, lane, before, after, at)?;
        posting.cause = cause;
        Ok(posting)
    }

    /// The posting of a confirmed settlement of `lane` from `settled` up to `paid_up_to`:
    /// the chain paid exactly `Split::delta(settled, paid_up_to)`, which moves from the
    /// accrual accounts to the settled ones. With `reverse`, the opposite (a reorg).
    pub fn settlement(
        tx: TxHash,
        round: u32,
        lane: LaneKey,
        settled: Usdc,
        paid_up_to: Usdc,
        reverse: bool,
        at: Timestamp,
    ) -> Result<Self, SplitError> {
        let delta = Split::delta(settled, paid_up_to)?;
        let cause = Cause::settlement(tx, round, reverse);
        let (from, to) = if reverse {
            (Side::Credit, Side::Debit)
        } else {
            (Side::Debit, Side::Credit)
        };
        let mut legs = Vec::with_capacity(6);
        push_provider(&mut legs, Account::Earnings(lane), from, &delta);
        push_provider(&mut legs, Account::SettledProvider(lane), to, &delta);
        push(&mut legs, Account::ProtocolFee, from, delta.fee());
        push(&mut legs, Account::SettledFee, to, delta.fee());
        push(&mut legs, Account::Reserve, from, delta.reserve());
        push(&mut legs, Account::SettledReserve, to, delta.reserve());
        Ok(Self::balanced(cause, at, legs))
    }

    fn balanced(cause: Cause, at: Timestamp, legs: Vec<Leg>) -> Self {
        let posting = Self { cause, at, legs };
        posting.assert_balanced();
        posting
    }

    /// Sum of debits and sum of credits.
    pub fn totals(&self) -> (u128, u128) {
        self.legs.iter().fold((0, 0), |(d, c), leg| match leg.side {
            Side::Debit => (d + u128::from(leg.amount.micros()), c),
            Side::Credit => (d, c + u128::from(leg.amount.micros())),
        })
    }

    /// Whether debits equal credits and no leg is zero.
    pub fn is_balanced(&self) -> bool {
        let (d, c) = self.totals();
        d == c && self.legs.iter().all(|l| !l.amount.is_zero())
    }

    /// Panics unless the posting balances: money is never created or destroyed.
    pub fn assert_balanced(&self) {
        assert!(
            self.is_balanced(),
            "posting does not balance (debits, credits = {:?}): {self:?}",
            self.totals()
        );
    }

    /// The amount that left the renter's lane (receipt postings), signed by direction.
    pub fn lane_debit(&self) -> i128 {
        self.legs
            .iter()
            .filter(|l| matches!(l.account, Account::Lane(_)))
            .map(|l| match l.side {
                Side::Debit => i128::from(l.amount.micros()),
                Side::Credit => -i128::from(l.amount.micros()),
            })
            .sum()
    }
}

fn push(legs: &mut Vec<Leg>, account: Account, side: Side, amount: Usdc) {
    if !amount.is_zero() {
        legs.push(Leg {
            account,
            side,
            amount,
        });
    }
}

/// The provider's part of a delta may be −1 µUSDC: posted on the opposite side.
fn push_provider(legs: &mut Vec<Leg>, account: Account, side: Side, delta: &SplitDelta) {
    let p = delta.provider_micros();
    let opposite = match side {
        Side::Debit => Side::Credit,
        Side::Credit => Side::Debit,
    };
    let (side, micros) = if p >= 0 { (side, p) } else { (opposite, -p) };
    // |p| ≤ total ≤ u64::MAX.
    let micros = u64::try_from(micros).unwrap_or(u64::MAX);
    push(legs, account, side, Usdc::from_micros(micros));
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_protocol::NodeKey;
    use proptest::prelude::*;

    fn lane() -> LaneKey {
        LaneKey {
            renter: NodeKey::from_secret_bytes([1; 32]).node_id(),
            provider: NodeKey::from_secret_bytes([2; 32]).node_id(),
            escrow: None,
        }
    }

    fn u(m: u64) -> Usdc {
        Usdc::from_micros(m)
    }

    #[test]
    fn a_receipt_posts_ninety_seven_three() {
        let p = Posting::receipt(
            SessionId::random(),
            1,
            lane(),
            u(0),
            u(1_000_000),
            Timestamp(0),
        )
        .unwrap();
        assert_eq!(p.totals(), (1_000_000, 1_000_000));
        assert_eq!(p.legs.len(), 4);
        assert_eq!(p.legs[1].amount, u(900_000));
    }

    #[test]
    fn provider_step_down_is_posted_as_a_debit() {
        let p =
            Posting::receipt(SessionId::random(), 2, lane(), u(99), u(100), Timestamp(0)).unwrap();
        assert!(p.is_balanced());
        let earnings = p
            .legs
            .iter()
            .find(|l| matches!(l.account, Account::Earnings(_)))
            .unwrap();
        assert_eq!((earnings.side, earnings.amount), (Side::Debit, u(1)));
        assert_eq!(p.lane_debit(), 1);
    }

    #[test]
    fn a_decreasing_total_cannot_be_posted() {
        assert!(
            Posting::receipt(SessionId::random(), 2, lane(), u(5), u(4), Timestamp(0)).is_err()
        );
    }

    proptest! {
        #[test]
        fn every_posting_balances(a in any::<u64>(), b in any::<u64>(), reverse in any::<bool>()) {
            let (lo, hi) = (a.min(b), a.max(b));
            let r = Posting::receipt(SessionId::random(), 1, lane(), u(lo), u(hi), Timestamp(0)).unwrap();
            prop_assert!(r.is_balanced());
            prop_assert_eq!(r.lane_debit(), i128::from(hi - lo));
            let s = Posting::settlement(TxHash([7; 32]), 0, lane(), u(lo), u(hi), reverse, Timestamp(0)).unwrap();
            prop_assert!(s.is_balanced());
        }
    }
}
