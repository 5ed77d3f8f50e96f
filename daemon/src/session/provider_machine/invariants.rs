//! The provider machine's invariants, checked after every input in debug builds and
//! tests.

use super::{ProviderMachine, Sending};

impl<R> ProviderMachine<R> {
    /// Panics when a rule of the protocol is broken. Run after every input in debug
    /// builds and tests.
    pub fn check_invariants(&self) {
        let committed = self.committed.as_ref();
        assert_eq!(
            committed.map_or(0, |r| r.seq),
            self.issuer.chain().len() as u64,
            "the committed chain and the last committed receipt disagree"
        );
        // (A receipt whose commit failed is dropped, so only the waiting ones are
        // consecutive.)
        let mut last = committed.map(|r| (None, r.amount, r.session_time, r.exec_time));
        for (receipt, _) in &self.unsent {
            if let Some((seq, amount, session, exec)) = last {
                if let Some(seq) = seq {
                    assert_eq!(receipt.seq, seq + 1, "receipts out of order");
                }
                assert!(
                    receipt.amount >= amount
                        && receipt.session_time >= session
                        && receipt.exec_time >= exec,
                    "cumulative amounts decreased"
                );
            }
            last = Some((
                Some(receipt.seq),
                receipt.amount,
                receipt.session_time,
                receipt.exec_time,
            ));
        }
        assert!(
            self.issued_amount <= self.meter.config().budget,
            "a receipt above the budget: {} > {}",
            self.issued_amount,
            self.meter.config().budget
        );
        assert!(
            self.calls.len() <= self.terms.max_calls as usize,
            "more calls running than the offer allows"
        );
        match self.sending {
            Sending::Idle => assert!(self.committing.is_none()),
            Sending::InFlight => assert!(!self.unsent.is_empty() && self.committing.is_none()),
            Sending::Committing => assert!(
                self.committing.is_some() && !self.unsent.is_empty(),
                "committing without an ack"
            ),
        }
        assert!(
            self.calls
                .keys()
                .all(|exec| self.started.contains_key(exec)),
            "a call runs that was never started"
        );
        for (seq, ..) in self.undelivered.values() {
            assert!(*seq >= 1, "results are numbered from 1");
        }
        assert_eq!(
            self.meter.current().artefact_amount,
            self.issuer.artefacts_delivered(),
            "the meter charges for other artefacts than the results the next receipt commits to keep"
        );
        if let Some(last) = self.unsent.back().map(|(r, _)| r).or(committed) {
            assert!(
                last.results.count <= self.issuer.results_signed(),
                "a receipt commits to results never signed"
            );
        }
        if self.ended {
            assert!(self.meter.is_closed(), "an ended session still meters");
        }
        assert!(
            !self.waiting || (!self.unsent.is_empty() && self.closing.is_none()),
            "a reading waits with nothing ahead of it, or past the closing receipt"
        );
    }
}
