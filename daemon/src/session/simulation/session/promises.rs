//! What ORIEN promises, checked on both ledgers once a simulated session is over.

use orien_ledger::receipts::Tolerance;
use orien_ledger::{AckedReceipt, SessionStatus};
use orien_protocol::{CloseReason, Millis, Usage, UsageReceipt, Usdc};

use super::{ACK_TIMEOUT, MAX_CALLS, MAX_DURATION, PRICING, Side, Sim, WORKSPACE};

impl Sim<'_> {
    /// The promises, checked on both ledgers once the session is over.
    pub(super) fn check(self) -> Result<(), String> {
        let receipts = |side: Side| -> Result<Vec<AckedReceipt>, String> {
            Ok(self
                .world
                .store(side)
                .receipts(&self.session)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|r| r.acked)
                .collect())
        };
        let (ours, theirs) = (receipts(Side::Provider)?, receipts(Side::Renter)?);
        if !theirs.starts_with(&ours) || theirs.len() > ours.len() + 1 {
            return Err(format!(
                "the chains diverge: the provider holds {} receipts, the renter {} (not a prefix short by at most one)",
                ours.len(),
                theirs.len()
            ));
        }
        let calm = !self.lossy && !self.crashed;
        if calm && ours != theirs {
            return Err(format!(
                "with nothing lost the chains differ: {} vs {}",
                ours.len(),
                theirs.len()
            ));
        }
        let (provider, renter) = (self.accounts[&Side::Provider], self.accounts[&Side::Renter]);
        // A close the renter asked for within one delay of the session's longest duration
        // races the provider's deadline: either reason is right, each side keeps its own.
        let raced = self.close_asked.is_some_and(|asked| {
            asked.saturating_add(self.max_delay) >= MAX_DURATION
                && provider.ended == Some(CloseReason::MaxDuration)
                && renter.ended == Some(CloseReason::RenterRequested)
        });
        if calm && !raced && provider.ended != renter.ended {
            return Err(format!(
                "with nothing lost the close reasons differ: {:?} vs {:?}",
                provider.ended, renter.ended
            ));
        }
        for side in [Side::Provider, Side::Renter] {
            let head = self
                .world
                .store(side)
                .head(&self.session)
                .map_err(|e| e.to_string())?;
            if let Some(head) = head
                && !matches!(head.status, SessionStatus::Closed(_))
            {
                return Err(format!(
                    "the {side:?} ledger lists the ended session as {:?}",
                    head.status
                ));
            }
        }
        let last = |chain: &[AckedReceipt]| -> Result<Option<UsageReceipt>, String> {
            chain
                .last()
                .map(|a| {
                    orien_protocol::wire::decode::<UsageReceipt>(a.receipt.payload_bytes())
                        .map_err(|e| e.to_string())
                })
                .transpose()
        };
        let paid = |chain: &[AckedReceipt]| -> Result<Usdc, String> {
            Ok(last(chain)?.map_or(Usdc::ZERO, |r| r.amount))
        };
        if last(&ours)?.is_some_and(|r| r.artefact_amount > Usdc::ZERO) {
            self.world.report.charged_artefacts += 1;
        }
        // The provider: unpaid work within one ack window of session time and calls, and
        // the artefacts of results the renter took in it (the workspace's worth at most).
        let unpaid = provider.worked.saturating_sub(paid(&ours)?).micros();
        let (sent, acked) = self.last_ack;
        let window = ACK_TIMEOUT
            .saturating_add(acked.since(sent))
            .saturating_add(Millis(1));
        let bound = PRICING
            .amount_for(Usage {
                session: window,
                exec: Millis(window.get() * u64::from(MAX_CALLS)),
            })
            .micros()
            + PRICING.artefact_amount(WORKSPACE).micros()
            + 2;
        // The renter: paid within its tolerance of its own meter, and exactly for the
        // artefacts of the results it took.
        let own = renter.usage.unwrap_or(Usage {
            session: Millis::ZERO,
            exec: Millis::ZERO,
        });
        let tolerance = Tolerance::default();
        let renter_bound = PRICING
            .amount_for(Usage {
                session: own.session.saturating_add(tolerance.allowed(own.session)),
                exec: own.exec.saturating_add(tolerance.allowed(own.exec)),
            })
            .micros()
            + renter.artefacts.micros()
            + 2;
        let renter_paid = paid(&theirs)?.micros();
        let report = &mut self.world.report;
        let ratio = |a: f64, b: u64| a / b.max(1) as f64;
        if report
            .worst_provider
            .is_none_or(|(u, b)| ratio(unpaid as f64, bound) >= ratio(u as f64, b))
        {
            report.worst_provider = Some((unpaid, bound));
        }
        // Overpayment: paid beyond the renter's own meter; its bound, the tolerance.
        let worked = renter.worked.micros();
        let over = i64::try_from(renter_paid).unwrap_or(i64::MAX)
            - i64::try_from(worked).unwrap_or(i64::MAX);
        let allowance = renter_bound.saturating_sub(worked);
        if report
            .worst_renter
            .is_none_or(|(o, b)| ratio(over as f64, allowance) >= ratio(o as f64, b))
        {
            report.worst_renter = Some((over, allowance));
        }
        if unpaid > bound {
            return Err(format!(
                "the provider worked {unpaid} µUSDC unpaid, beyond its bound of {bound}"
            ));
        }
        if renter_paid > renter_bound {
            return Err(format!(
                "the renter paid {renter_paid} µUSDC, beyond its meter and tolerance ({renter_bound})"
            ));
        }
        Ok(())
    }
}
