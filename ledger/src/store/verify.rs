//! `verify`: a full scan that recomputes every balance from the postings and checks
//! every chain, invariant and cross-reference.

use std::collections::HashMap;

use orien_protocol::{ReceiptHash, SessionId, Split, UsageReceipt, Usdc, wire};
use serde::Serialize;

use super::{Store, StoreError, keys};
use crate::accounts::{Account, Balance};
use crate::posting::{Cause, Posting, Side};
use crate::receipts::StoredReceipt;
use crate::session::SessionHead;

/// What a successful [`Store::verify`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Sessions scanned.
    pub sessions: u64,
    /// Receipts scanned.
    pub receipts: u64,
    /// Postings scanned.
    pub postings: u64,
    /// Accounts with a balance.
    pub accounts: u64,
    /// Sum of all debits (equal to the sum of all credits), in micro-USDC.
    pub total_moved_micros: u128,
}

/// The ledger is inconsistent. Any of these is a bug or damage, never a normal state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The scan itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A posting's debits and credits differ.
    #[error("unbalanced posting {0}")]
    Unbalanced(String),
    /// A stored balance differs from the sum of the postings.
    #[error("balance of {account} is {stored:?}, postings sum to {computed:?}")]
    BalanceMismatch {
        /// The account.
        account: String,
        /// As stored.
        stored: Balance,
        /// As recomputed.
        computed: Balance,
    },
    /// A balance is below what its account allows.
    #[error("balance of {account} is {net} µUSDC")]
    Negative {
        /// The account.
        account: String,
        /// The balance.
        net: i128,
    },
    /// A session's receipt chain is broken, or disagrees with its head or postings.
    #[error("session {session}: {detail}")]
    Chain {
        /// The session.
        session: SessionId,
        /// What is wrong.
        detail: String,
    },
    /// A lane's postings disagree with the split of its acknowledged total.
    #[error("lane {lane}: {detail}")]
    Lane {
        /// The lane.
        lane: String,
        /// What is wrong.
        detail: String,
    },
}

/// What one lane's receipt postings add up to.
#[derive(Debug, Default)]
struct LaneTotals {
    amount: u128,
    fee: u128,
    reserve: u128,
    provider: i128,
}

impl Store {
    /// Scans the whole ledger: every posting balances, every stored balance equals the sum
    /// of its postings and is not negative, every session's receipts form an unbroken
    /// chain 1..n matching its head, each receipt has exactly its posting, and the sum
    /// of each session's postings equals `Split::of(final amount)`.
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        let mut report = VerifyReport::default();
        let postings: Vec<(Vec<u8>, Posting)> = self.scan_prefix(keys::POSTINGS, &[])?;
        let mut computed: HashMap<Account, Balance> = HashMap::new();
        let mut receipt_postings: HashMap<(SessionId, u64), &Posting> = HashMap::new();
        let mut gaps: Vec<&Posting> = Vec::new();
        for (key, posting) in &postings {
            if !posting.is_balanced() || key != &keys::posting(&posting.cause) {
                return Err(VerifyError::Unbalanced(format!("{:?}", posting.cause)));
            }
            let (d, _) = posting.totals();
            report.total_moved_micros += d;
            for leg in &posting.legs {
                let b = computed.entry(leg.account).or_default();
                let total = match leg.side {
                    Side::Debit => &mut b.debited,
                    Side::Credit => &mut b.credited,
                };
                *total = total.saturating_add(leg.amount);
            }
            match posting.cause {
                Cause::Receipt { session, seq } => {
                    receipt_postings.insert((session, seq), posting);
                }
                Cause::LaneGap { .. } | Cause::LaneGapAtEnd { .. } => gaps.push(posting),
                _ => {}
            }
        }
        report.postings = postings.len() as u64;
        let stored = self.balances()?;
        report.accounts = stored.len() as u64;
        for (account, balance) in &stored {
            let c = computed.remove(account).unwrap_or_default();
            if c != *balance {
                return Err(VerifyError::BalanceMismatch {
                    account: account.to_string(),
                    stored: *balance,
                    computed: c,
                });
            }
            if balance.net(account) < account.floor_micros() {
                return Err(VerifyError::Negative {
                    account: account.to_string(),
                    net: balance.net(account),
                });
            }
        }
        if let Some((account, c)) = computed.into_iter().find(|(_, b)| *b != Balance::default()) {
            return Err(VerifyError::BalanceMismatch {
                account: account.to_string(),
                stored: Balance::default(),
                computed: c,
            });
        }

        // Chains, heads and per-session split.
        let mut lanes: std::collections::BTreeMap<crate::accounts::LaneKey, LaneTotals> =
            std::collections::BTreeMap::new();
        let heads: Vec<(Vec<u8>, SessionHead)> =
            self.scan_prefix_filtered(keys::SESSIONS, |k| k.len() == 17 && k[16] == 1)?;
        let mut seen_receipts = 0u64;
        for (key, head) in heads {
            report.sessions += 1;
            let session = SessionId::from_bytes(key[..16].try_into().unwrap_or([0; 16]));
            let chain_err = |detail: String| VerifyError::Chain { session, detail };
            let receipts: Vec<(Vec<u8>, StoredReceipt)> =
                self.scan_prefix(keys::RECEIPTS, session.as_bytes())?;
            let (mut prev, mut amount, mut expected) = (ReceiptHash::GENESIS, Usdc::ZERO, 1u64);
            let (mut fee, mut reserve, mut provider) = (0u128, 0u128, 0i128);
            for (key, stored) in &receipts {
                let r = wire::decode::<UsageReceipt>(stored.acked.receipt.payload_bytes())
                    .map_err(|e| chain_err(format!("receipt does not decode: {e}")))?;
                if keys::parse_receipt(key) != Some((session, r.seq)) || r.seq != expected {
                    return Err(chain_err(format!(
                        "receipt #{} where #{expected} was expected",
                        r.seq
                    )));
                }
                if r.prev != prev || r.amount < amount {
                    return Err(chain_err(format!(
                        "receipt #{} does not chain on its predecessor",
                        r.seq
                    )));
                }
                let posting = receipt_postings
                    .remove(&(session, r.seq))
                    .ok_or_else(|| chain_err(format!("receipt #{} has no posting", r.seq)))?;
                let delta = Split::delta(amount, r.amount).map_err(|e| chain_err(e.to_string()))?;
                if posting.lane_debit() != i128::from(delta.total().micros()) {
                    return Err(chain_err(format!(
                        "posting of receipt #{} does not match its amount",
                        r.seq
                    )));
                }
                for leg in &posting.legs {
                    let m = u128::from(leg.amount.micros());
                    match (leg.account, leg.side) {
                        (Account::ProtocolFee, Side::Credit) => fee += m,
                        (Account::Reserve, Side::Credit) => reserve += m,
                        (Account::Earnings(_), Side::Credit) => provider += m as i128,
                        (Account::Earnings(_), Side::Debit) => provider -= m as i128,
                        _ => {}
                    }
                }
                prev = stored.acked.receipt.receipt_hash();
                amount = r.amount;
                expected += 1;
            }
            seen_receipts += receipts.len() as u64;
            if head.seq != expected - 1 || head.hash != prev || head.amount != amount {
                return Err(chain_err(format!(
                    "head says #{} but the chain ends at #{}",
                    head.seq,
                    expected - 1
                )));
            }
            let record = self
                .session(&session)?
                .ok_or_else(|| chain_err("a session head without the session's terms".into()))?;
            let totals = lanes.entry(record.lane()).or_default();
            totals.amount += u128::from(amount.micros());
            totals.fee += fee;
            totals.reserve += reserve;
            totals.provider += provider;
        }
        // A lane gap stands for receipts this ledger missed: it counts in its lane's total.
        for posting in gaps {
            let Some(lane) = posting.legs.iter().find_map(|l| match l.account {
                Account::Lane(lane) => Some(lane),
                _ => None,
            }) else {
                return Err(VerifyError::Unbalanced(format!("{:?}", posting.cause)));
            };
            let totals = lanes.entry(lane).or_default();
            totals.amount += u128::try_from(posting.lane_debit()).unwrap_or(0);
            for leg in &posting.legs {
                let m = u128::from(leg.amount.micros());
                match (leg.account, leg.side) {
                    (Account::ProtocolFee, Side::Credit) => totals.fee += m,
                    (Account::Reserve, Side::Credit) => totals.reserve += m,
                    (Account::Earnings(_), Side::Credit) => totals.provider += m as i128,
                    (Account::Earnings(_), Side::Debit) => totals.provider -= m as i128,
                    _ => {}
                }
            }
        }
        // Receipts are split on their lane's cumulative total (as the escrow splits
        // vouchers), so each lane's postings sum to the split of the lane's total.
        for (lane, totals) in &lanes {
            let total = u64::try_from(totals.amount).map_err(|_| VerifyError::Lane {
                lane: lane.to_string(),
                detail: "acknowledged total overflows".into(),
            })?;
            let split = Split::of(Usdc::from_micros(total));
            if totals.fee != u128::from(split.fee().micros())
                || totals.reserve != u128::from(split.reserve().micros())
                || totals.provider != i128::from(split.provider().micros())
            {
                return Err(VerifyError::Lane {
                    lane: lane.to_string(),
                    detail: format!(
                        "postings do not sum to the split of the lane's total {}",
                        Usdc::from_micros(total)
                    ),
                });
            }
        }
        report.receipts = seen_receipts;
        if let Some(((session, seq), _)) = receipt_postings.into_iter().next() {
            return Err(VerifyError::Chain {
                session,
                detail: format!("posting for receipt #{seq} without the receipt"),
            });
        }
        Ok(report)
    }

    pub(super) fn scan_prefix_filtered<T: crate::record::Record>(
        &self,
        cf: &'static str,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(cf), rocksdb::IteratorMode::Start)
        {
            let (key, value) = item.map_err(|e| StoreError::rocks("scan", &self.path, e))?;
            if !keep(&key) {
                continue;
            }
            let value = crate::record::decode(&value).map_err(|source| StoreError::Corrupt {
                cf,
                key: hex::encode(&key),
                source,
            })?;
            out.push((key.into_vec(), value));
        }
        Ok(out)
    }
}
