//! The chart of accounts and account balances.
//!
//! ```text
//!                     acked receipt: Split::delta(before, after)
//!   Lane(renter→provider) ──┬──▶ Earnings(lane)      90 %  (provider, unsettled)
//!        debit-normal       ├──▶ ProtocolFee          7 %
//!                           └──▶ Reserve              3 %
//!
//!                     settlement confirmed on chain: Split::delta(settled, paid_up_to)
//!   Earnings(lane)   ──▶ SettledProvider(lane)
//!   ProtocolFee      ──▶ SettledFee
//!   Reserve          ──▶ SettledReserve
//! ```
//!
//! A lane account is *debit-normal*: its balance is what the renter has spent on that
//! lane. Every other account is *credit-normal*: its balance is what it holds. Balances
//! are tracked as two monotone totals, debited and credited, so no stored number is ever
//! negative; the signed [`Balance::net`] is what a reader wants.
//!
//! One balance may legitimately read −1 µUSDC: [`Account::Earnings`], when the chain has
//! settled a cumulative total just below a multiple of 100 and the lane has since grown by
//! exactly 1 µUSDC onto it (the provider's share of `split(100)` is 90, of `split(99)` 91;
//! see `orien_protocol::split`). The chain paid that micro-USDC already; the next
//! settlement nets it out. Every other balance is never negative, and that is asserted.

use std::fmt;

use orien_protocol::{LaneId, NodeId, Usdc};
use serde::{Deserialize, Serialize};

use crate::record::{Record, RecordError};

/// One renter→provider payment lane, as seen by the ledger.
///
/// Sessions paid through an escrow lane carry its on-chain [`LaneId`]; sessions settled
/// only in the embedded ledgers (`PaymentLane::Ledger`) have none. The two never mix,
/// so a voucher's cumulative amount always equals the escrow lane's acked total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LaneKey {
    /// The paying node.
    pub renter: NodeId,
    /// The paid node.
    pub provider: NodeId,
    /// The escrow lane, for on-chain payment.
    pub escrow: Option<LaneId>,
}

impl fmt::Display for LaneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.escrow {
            Some(lane) => write!(f, "{}→{} (escrow {lane})", self.renter, self.provider),
            None => write!(f, "{}→{} (ledger)", self.renter, self.provider),
        }
    }
}

/// A ledger account. Variants are only ever appended (the postcard encoding is the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Account {
    /// What the renter has spent on a lane (debit-normal).
    Lane(LaneKey),
    /// The provider's share of a lane, not yet settled on chain.
    Earnings(LaneKey),
    /// Protocol fee accrued, not yet settled.
    ProtocolFee,
    /// Reserve accrued, not yet settled.
    Reserve,
    /// The provider's share of a lane paid out on chain.
    SettledProvider(LaneKey),
    /// Protocol fee paid out on chain.
    SettledFee,
    /// Reserve paid out on chain.
    SettledReserve,
}

impl Account {
    /// Whether the account's balance grows with debits (only lanes).
    pub const fn is_debit_normal(&self) -> bool {
        matches!(self, Self::Lane(_))
    }

    /// The lowest balance this account may legitimately show; see the module docs.
    pub const fn floor_micros(&self) -> i128 {
        match self {
            Self::Earnings(_) => -1,
            _ => 0,
        }
    }

    /// A short stable name for exports (`lane`, `earnings`, `protocol_fee`, …).
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Lane(_) => "lane",
            Self::Earnings(_) => "earnings",
            Self::ProtocolFee => "protocol_fee",
            Self::Reserve => "reserve",
            Self::SettledProvider(_) => "settled_provider",
            Self::SettledFee => "settled_fee",
            Self::SettledReserve => "settled_reserve",
        }
    }

    /// The lane the account belongs to, if any.
    pub const fn lane(&self) -> Option<&LaneKey> {
        match self {
            Self::Lane(l) | Self::Earnings(l) | Self::SettledProvider(l) => Some(l),
            _ => None,
        }
    }

    /// The account's key in the `balances` column family.
    pub fn key(&self) -> Vec<u8> {
        // Postcard of fixed-size ids and enums cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Reads an account key.
    pub fn from_key(key: &[u8]) -> Result<Self, RecordError> {
        let kind = "account key";
        let (account, rest) =
            postcard::take_from_bytes::<Self>(key).map_err(|e| RecordError::Malformed {
                kind,
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(RecordError::TrailingBytes {
                kind,
                extra: rest.len(),
            });
        }
        if account.key() != key {
            return Err(RecordError::NonCanonical { kind });
        }
        Ok(account)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lane() {
            Some(lane) => write!(f, "{} {lane}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// The running totals of one account. Both only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Sum of all debits.
    pub debited: Usdc,
    /// Sum of all credits.
    pub credited: Usdc,
}

impl Balance {
    /// The balance on the account's normal side, in micro-USDC (see [`Account`]).
    pub fn net(&self, account: &Account) -> i128 {
        let (d, c) = (
            i128::from(self.debited.micros()),
            i128::from(self.credited.micros()),
        );
        if account.is_debit_normal() {
            d - c
        } else {
            c - d
        }
    }

    /// The balance as an amount, or `None` while it is below zero.
    pub fn amount(&self, account: &Account) -> Option<Usdc> {
        u64::try_from(self.net(account)).ok().map(Usdc::from_micros)
    }
}

impl Record for Balance {
    const KIND: &'static str = "balance";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1 + 10 + 10;
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_protocol::NodeKey;

    fn lane() -> LaneKey {
        LaneKey {
            renter: NodeKey::from_secret_bytes([1; 32]).node_id(),
            provider: NodeKey::from_secret_bytes([2; 32]).node_id(),
            escrow: Some(LaneId::from_bytes([9; 32])),
        }
    }

    #[test]
    fn account_keys_round_trip_and_are_canonical() {
        for account in [
            Account::Lane(lane()),
            Account::Earnings(lane()),
            Account::ProtocolFee,
            Account::Reserve,
            Account::SettledProvider(lane()),
            Account::SettledFee,
            Account::SettledReserve,
        ] {
            assert_eq!(Account::from_key(&account.key()).unwrap(), account);
        }
        let mut key = Account::Reserve.key();
        key.push(0);
        assert!(Account::from_key(&key).is_err());
    }

    #[test]
    fn net_balance_follows_the_normal_side() {
        let b = Balance {
            debited: Usdc::from_micros(10),
            credited: Usdc::from_micros(3),
        };
        assert_eq!(b.net(&Account::Lane(lane())), 7);
        assert_eq!(b.net(&Account::ProtocolFee), -7);
        assert_eq!(b.amount(&Account::ProtocolFee), None);
    }
}
