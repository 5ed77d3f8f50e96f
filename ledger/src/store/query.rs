//! Read-side queries and exports.

use std::collections::BTreeMap;
use std::io::Write;

use orien_protocol::{Millis, NodeId, SessionId, Split, Usdc};
use serde::Serialize;

use super::{Store, StoreError, keys};
use crate::accounts::{Account, Balance};
use crate::posting::{Cause, Posting, Side};
use crate::receipts::StoredReceipt;
use crate::session::{SessionHead, SessionRecord, SessionStatus};

/// Totals of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionTotals {
    /// The session.
    pub session: SessionId,
    /// Acked receipts.
    pub receipts: u64,
    /// Cumulative session time.
    pub session_time: Millis,
    /// Cumulative execution time.
    pub exec_time: Millis,
    /// Cumulative CPU time.
    pub cpu_time: Millis,
    /// Cumulative amount.
    pub amount: Usdc,
    /// Its split: provider, fee, reserve.
    pub split: Split,
    /// Status.
    pub status: SessionStatus,
}

/// What a provider earned on one UTC day (its 90 % share of receipts acked that day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayEarnings {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Earned that day, in micro-USDC. Signed: a day whose only receipt stepped onto a
    /// multiple of 100 µUSDC earns −1 (see `orien_protocol::split`).
    pub earned_micros: i128,
}

/// One line of the CSV / JSON export: one leg of one posting.
#[derive(Debug, Clone, Serialize)]
struct ExportRow<'a> {
    at: u64,
    cause: String,
    account: String,
    side: &'static str,
    amount: Usdc,
    #[serde(skip)]
    _p: std::marker::PhantomData<&'a ()>,
}

impl Store {
    /// Totals of one session.
    pub fn session_totals(&self, session: &SessionId) -> Result<SessionTotals, StoreError> {
        let head = self
            .head(session)?
            .ok_or(StoreError::UnknownSession(*session))?;
        Ok(SessionTotals {
            session: *session,
            receipts: head.seq,
            session_time: head.session_time,
            exec_time: head.exec_time,
            cpu_time: head.cpu_time,
            amount: head.amount,
            split: Split::of(head.amount),
            status: head.status,
        })
    }

    /// Every recorded session with its head, most recently opened first.
    pub fn sessions(&self) -> Result<Vec<(SessionRecord, SessionHead)>, StoreError> {
        let records: Vec<(Vec<u8>, SessionRecord)> =
            self.scan_prefix_filtered(keys::SESSIONS, |k| k.len() == 17 && k[16] == 0)?;
        let mut out = Vec::with_capacity(records.len());
        for (_, record) in records {
            // Terms and head are written in one batch, so a head is never missing.
            let head = self.head(&record.session)?.ok_or(StoreError::Corrupt {
                cf: keys::SESSIONS,
                key: hex::encode(keys::session_head(&record.session)),
                source: crate::record::RecordError::Malformed {
                    kind: "session head",
                    reason: "terms without a head".into(),
                },
            })?;
            out.push((record, head));
        }
        out.sort_by(|a, b| {
            b.0.opened_at
                .cmp(&a.0.opened_at)
                .then(a.0.session.cmp(&b.0.session))
        });
        Ok(out)
    }

    /// One acked receipt of a session, by its sequence number.
    pub fn receipt(
        &self,
        session: &SessionId,
        seq: u64,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        self.get(keys::RECEIPTS, &keys::receipt(session, seq))
    }

    /// Every acked receipt of a session, in order.
    pub fn receipts(&self, session: &SessionId) -> Result<Vec<StoredReceipt>, StoreError> {
        Ok(self
            .scan_prefix(keys::RECEIPTS, session.as_bytes())?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Every account and its balance.
    pub fn balances(&self) -> Result<Vec<(Account, Balance)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(keys::BALANCES), rocksdb::IteratorMode::Start)
        {
            let (key, value) = item.map_err(|e| StoreError::rocks("scan", &self.path, e))?;
            let corrupt = |source| StoreError::Corrupt {
                cf: keys::BALANCES,
                key: hex::encode(&key),
                source,
            };
            let account = Account::from_key(&key).map_err(corrupt)?;
            let balance = crate::record::decode(&value).map_err(corrupt)?;
            out.push((account, balance));
        }
        Ok(out)
    }

    /// One account's balance (zero if never touched).
    pub fn balance(&self, account: &Account) -> Result<Balance, StoreError> {
        Ok(self
            .get(keys::BALANCES, &account.key())?
            .unwrap_or_default())
    }

    /// Every posting, in key order (receipts by session and seq, then settlements).
    pub fn postings(&self) -> Result<Vec<Posting>, StoreError> {
        Ok(self
            .scan_prefix(keys::POSTINGS, &[])?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// A provider's earnings per UTC day, oldest first.
    pub fn provider_earnings_by_day(
        &self,
        provider: &NodeId,
    ) -> Result<Vec<DayEarnings>, StoreError> {
        let mut days: BTreeMap<u64, i128> = BTreeMap::new();
        for posting in self.postings()? {
            if !matches!(posting.cause, Cause::Receipt { .. }) {
                continue;
            }
            for leg in &posting.legs {
                if let Account::Earnings(lane) = leg.account
                    && lane.provider == *provider
                {
                    let amount = i128::from(leg.amount.micros());
                    *days
                        .entry(posting.at.unix_millis() / 86_400_000)
                        .or_default() += if leg.side == Side::Credit {
                        amount
                    } else {
                        -amount
                    };
                }
            }
        }
        Ok(days
            .into_iter()
            .map(|(day, earned_micros)| DayEarnings {
                day: orien_protocol::time::civil_date(day),
                earned_micros,
            })
            .collect())
    }

    /// What a renter has spent, over all its lanes.
    pub fn renter_spend(&self, renter: &NodeId) -> Result<Usdc, StoreError> {
        let mut total = 0u128;
        for (account, balance) in self.balances()? {
            if let Account::Lane(lane) = account
                && lane.renter == *renter
            {
                total += u128::try_from(balance.net(&account)).unwrap_or(0);
            }
        }
        Ok(Usdc::from_micros(u64::try_from(total).unwrap_or(u64::MAX)))
    }

    /// Writes every posting leg as CSV: `at_unix_ms,cause,account,side,amount_usdc`.
    pub fn export_csv(&self, mut out: impl Write) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Export(e.to_string());
        writeln!(out, "at_unix_ms,cause,account,side,amount_usdc").map_err(io)?;
        for row in self.export_rows()? {
            writeln!(
                out,
                "{},{},{},{},{}",
                row.at,
                csv_field(&row.cause),
                csv_field(&row.account),
                row.side,
                serde_json::to_value(row.amount)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
            .map_err(io)?;
        }
        Ok(())
    }

    /// Writes every posting as a JSON array (amounts as decimal strings).
    pub fn export_json(&self, out: impl Write) -> Result<(), StoreError> {
        serde_json::to_writer_pretty(out, &self.export_rows()?)
            .map_err(|e| StoreError::Export(e.to_string()))
    }

    fn export_rows(&self) -> Result<Vec<ExportRow<'static>>, StoreError> {
        let mut rows = Vec::new();
        for posting in self.postings()? {
            let cause = match posting.cause {
                Cause::Receipt { session, seq } => format!("receipt {session}#{seq}"),
                Cause::Settlement { tx } => format!("settlement {tx}"),
                Cause::SettlementVoided { tx } => format!("settlement voided {tx}"),
                Cause::SettlementAgain { tx, round } => format!("settlement {tx} (again, {round})"),
                Cause::SettlementAgainVoided { tx, round } => {
                    format!("settlement voided {tx} (again, {round})")
                }
                Cause::LaneGap { session } => format!("lane gap at the opening of {session}"),
                Cause::LaneGapAtEnd { session } => format!("lane gap at the end of {session}"),
            };
            for leg in &posting.legs {
                rows.push(ExportRow {
                    at: posting.at.unix_millis(),
                    cause: cause.clone(),
                    account: leg.account.to_string(),
                    side: match leg.side {
                        Side::Debit => "debit",
                        Side::Credit => "credit",
                    },
                    amount: leg.amount,
                    _p: std::marker::PhantomData,
                });
            }
        }
        Ok(rows)
    }
}

/// Quotes a CSV field (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
