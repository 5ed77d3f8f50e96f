//! Which sessions a settlement paid for. A lane's voucher is cumulative: each
//! acknowledged receipt moves the lane's total from `before` to `after` (its voucher),
//! so every session owns slices of the lane's line of micro-USDC, and a settlement that
//! moves the chain's settled total from `previous` to `paid_up_to` paid each session the
//! length of its slices inside that range.

use std::collections::BTreeMap;

use orien_ledger::Store;
use orien_protocol::{LaneId, PaymentLane, SessionId, Usdc};

/// The part of a lane's cumulative total one receipt added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slice {
    pub(super) session: SessionId,
    pub(super) before: Usdc,
    pub(super) after: Usdc,
}

/// Every receipt slice of `lane` in this node's ledger.
pub(super) fn lane_slices(
    store: &Store,
    lane: &LaneId,
) -> Result<Vec<Slice>, orien_ledger::StoreError> {
    let mut slices = Vec::new();
    for (record, _) in store.sessions()? {
        if !matches!(record.payment, PaymentLane::Escrow { lane: l, .. } if l == *lane) {
            continue;
        }
        let mut session_total = Usdc::ZERO;
        for stored in store.receipts(&record.session)? {
            // Both halves were checked before the ledger committed them.
            let (Ok(receipt), Ok(ack)) = (stored.acked.receipt.verify(), stored.acked.ack.verify())
            else {
                continue;
            };
            let added = receipt
                .amount
                .micros()
                .saturating_sub(session_total.micros());
            session_total = receipt.amount;
            let Some(voucher) = ack.voucher else { continue };
            let after = voucher.cumulative.micros();
            slices.push(Slice {
                session: record.session,
                before: Usdc::from_micros(after.saturating_sub(added)),
                after: voucher.cumulative,
            });
        }
    }
    Ok(slices)
}

/// What a settlement from `previous` to `paid_up_to` paid each session, in the order
/// the sessions' slices start; sessions it paid nothing are left out.
pub(super) fn paid_per_session(
    slices: &[Slice],
    previous: Usdc,
    paid_up_to: Usdc,
) -> Vec<(SessionId, Usdc)> {
    let mut first_seen: BTreeMap<u64, SessionId> = BTreeMap::new();
    let mut paid: BTreeMap<SessionId, u64> = BTreeMap::new();
    for slice in slices {
        let start = slice.before.micros().max(previous.micros());
        let end = slice.after.micros().min(paid_up_to.micros());
        if end <= start {
            continue;
        }
        let amount = paid.entry(slice.session).or_insert(0);
        if *amount == 0 {
            first_seen.insert(start, slice.session);
        }
        *amount += end - start;
    }
    first_seen
        .into_values()
        .map(|session| (session, Usdc::from_micros(paid[&session])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(session: u8, before: u64, after: u64) -> Slice {
        Slice {
            session: SessionId::from_bytes([session; 16]),
            before: Usdc::from_micros(before),
            after: Usdc::from_micros(after),
        }
    }

    fn paid(slices: &[Slice], previous: u64, up_to: u64) -> Vec<(u8, u64)> {
        paid_per_session(
            slices,
            Usdc::from_micros(previous),
            Usdc::from_micros(up_to),
        )
        .into_iter()
        .map(|(s, a)| (s.as_bytes()[0], a.micros()))
        .collect()
    }

    #[test]
    fn interleaved_sessions_are_paid_their_own_slices() {
        // Two sessions' receipts interleave on one lane: 1 [0,10) 2 [10,25) 1 [25,30).
        let slices = [slice(1, 0, 10), slice(2, 10, 25), slice(1, 25, 30)];
        assert_eq!(paid(&slices, 0, 30), [(1, 15), (2, 15)]);
        // A settlement of part of the line pays the parts inside it.
        assert_eq!(paid(&slices, 5, 12), [(1, 5), (2, 2)]);
        assert_eq!(paid(&slices, 25, 30), [(1, 5)]);
        assert_eq!(paid(&slices, 30, 30), []);
    }

    #[test]
    fn the_parts_add_up_to_what_was_paid() {
        let slices: Vec<_> = (0..50u64)
            .map(|i| slice((i % 3) as u8 + 1, i * 7, i * 7 + 7))
            .collect();
        for (previous, up_to) in [(0, 350), (3, 200), (13, 14), (349, 350)] {
            let total: u64 = paid(&slices, previous, up_to).iter().map(|p| p.1).sum();
            assert_eq!(total, up_to - previous, "{previous}..{up_to}");
        }
    }
}
