//! Column families and key layouts. Integers in keys are big-endian so that keys sort
//! in numeric order.

use orien_protocol::{ExecId, LaneId, SessionId, Timestamp};

use crate::posting::Cause;
use crate::settlement::TxHash;

/// Session terms (`session ‖ 0`) and heads (`session ‖ 1`).
pub(crate) const SESSIONS: &str = "sessions";
/// Acked receipts: `session ‖ seq`.
pub(crate) const RECEIPTS: &str = "receipts";
/// Postings: see [`posting`].
pub(crate) const POSTINGS: &str = "postings";
/// Balances: the account's postcard encoding.
pub(crate) const BALANCES: &str = "balances";
/// Settlement: `0 ‖ lane` for the lane, `1 ‖ lane ‖ tx` for each transaction, `2 ‖ lane`
/// for a voucher the escrow skipped.
pub(crate) const SETTLEMENT: &str = "settlement";
/// Evidence: `session ‖ seq ‖ receipt hash`.
pub(crate) const EVIDENCE: &str = "evidence";
/// Meta: `schema_version`.
pub(crate) const META: &str = "meta";
/// Execution records: `0 ‖ exec` holds the record, `1 ‖ requested_at ‖ exec` (empty)
/// orders them by time.
pub(crate) const EXECUTIONS: &str = "executions";

/// Every column family, in creation order.
pub(crate) const ALL: [&str; 8] = [
    SESSIONS, RECEIPTS, POSTINGS, BALANCES, SETTLEMENT, EVIDENCE, META, EXECUTIONS,
];

pub(crate) fn execution(exec: &ExecId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[1..].copy_from_slice(exec.as_bytes());
    k
}

pub(crate) fn execution_by_time(requested_at: Timestamp, exec: &ExecId) -> [u8; 25] {
    let mut k = [1u8; 25];
    k[1..9].copy_from_slice(&requested_at.0.to_be_bytes());
    k[9..].copy_from_slice(exec.as_bytes());
    k
}

/// The execution of a time-index key.
pub(crate) fn parse_execution_by_time(key: &[u8]) -> Option<ExecId> {
    let exec: [u8; 16] = key.get(9..25)?.try_into().ok()?;
    (key.len() == 25 && key[0] == 1).then(|| ExecId::from_bytes(exec))
}

/// The key marking an execution whose record is not final yet (`3 ‖ exec`): above the
/// time index, so listing never visits it.
pub(crate) fn unfinished_execution(exec: &ExecId) -> [u8; 17] {
    let mut k = [3u8; 17];
    k[1..].copy_from_slice(exec.as_bytes());
    k
}

/// The execution of an unfinished-marker key.
pub(crate) fn parse_unfinished_execution(key: &[u8]) -> Option<ExecId> {
    let exec: [u8; 16] = key.get(1..17)?.try_into().ok()?;
    (key.len() == 17 && key[0] == 3).then(|| ExecId::from_bytes(exec))
}

/// The meta key holding the schema version (u32, big-endian).
pub(crate) const SCHEMA_VERSION: &[u8] = b"schema_version";

pub(crate) fn session_terms(session: &SessionId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..16].copy_from_slice(session.as_bytes());
    k
}

pub(crate) fn session_head(session: &SessionId) -> [u8; 17] {
    let mut k = session_terms(session);
    k[16] = 1;
    k
}

pub(crate) fn receipt(session: &SessionId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(session.as_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a receipt key into session and seq.
pub(crate) fn parse_receipt(key: &[u8]) -> Option<(SessionId, u64)> {
    let session: [u8; 16] = key.get(..16)?.try_into().ok()?;
    let seq: [u8; 8] = key.get(16..)?.try_into().ok()?;
    Some((SessionId::from_bytes(session), u64::from_be_bytes(seq)))
}

pub(crate) fn posting(cause: &Cause) -> Vec<u8> {
    match cause {
        Cause::Receipt { session, seq } => {
            let mut k = vec![0u8];
            k.extend_from_slice(&receipt(session, *seq));
            k
        }
        Cause::Settlement { tx } => [&[1u8][..], &tx.0].concat(),
        Cause::SettlementVoided { tx } => [&[2u8][..], &tx.0].concat(),
        Cause::SettlementAgain { tx, round } => [&[3u8][..], &tx.0, &round.to_be_bytes()].concat(),
        Cause::SettlementAgainVoided { tx, round } => {
            [&[4u8][..], &tx.0, &round.to_be_bytes()].concat()
        }
        Cause::LaneGap { session } => [&[5u8][..], session.as_bytes()].concat(),
        Cause::LaneGapAtEnd { session } => [&[6u8][..], session.as_bytes()].concat(),
    }
}

pub(crate) fn lane(lane: &LaneId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[1..].copy_from_slice(lane.as_bytes());
    k
}

pub(crate) fn settlement(lane: &LaneId, tx: &TxHash) -> [u8; 65] {
    let mut k = [0u8; 65];
    k[0] = 1;
    k[1..33].copy_from_slice(lane.as_bytes());
    k[33..].copy_from_slice(&tx.0);
    k
}

/// A lane's skipped voucher: `2 ‖ lane` in the settlement family.
pub(crate) fn skipped(id: &LaneId) -> [u8; 33] {
    let mut k = lane(id);
    k[0] = 2;
    k
}

/// A lane's voucher above its acknowledged total: `3 ‖ lane` in the settlement family.
pub(crate) fn ahead(id: &LaneId) -> [u8; 33] {
    let mut k = lane(id);
    k[0] = 3;
    k
}

/// The block a settlement was mined in: `4 ‖ lane ‖ tx` in the settlement family.
pub(crate) fn settlement_block(lane: &LaneId, tx: &TxHash) -> [u8; 65] {
    let mut k = settlement(lane, tx);
    k[0] = 4;
    k
}

/// Where a lane this node funded pays: `5 ‖ lane` in the settlement family.
pub(crate) fn lane_payout(id: &LaneId) -> [u8; 33] {
    let mut k = lane(id);
    k[0] = 5;
    k
}

/// The meta key holding the next block reconciliation scans (u64, big-endian).
pub(crate) const RECONCILE_CURSOR: &[u8] = b"reconcile_cursor";

pub(crate) fn evidence(session: &SessionId, seq: u64, hash: &[u8; 32]) -> [u8; 56] {
    let mut k = [0u8; 56];
    k[..24].copy_from_slice(&receipt(session, seq));
    k[24..].copy_from_slice(hash);
    k
}
