//! A session's signed results as one side holds them, for the receipts' commitments.
//!
//! The provider numbers a session's results from 1; a receipt commits to the longest
//! run of them, from the first, that the renter had acknowledged
//! ([`ResultsCommitment`]), and its `artefact_amount` is the price of the artefacts those
//! results kept. Results arrive out of order (calls run side by side), so each side holds
//! the results past the committed run, with their artefacts' price, until the run
//! reaches them.

use std::collections::BTreeMap;

use orien_protocol::{ResultHash, ResultsCommitment, Usdc};

/// A result number given twice, or one already committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("result #{seq} was given before")]
pub struct RepeatedResult {
    /// The number.
    pub seq: u64,
}

/// The results of one session past the committed run.
#[derive(Debug, Clone, Default)]
pub struct ResultChain {
    committed: Run,
    held: BTreeMap<u64, (ResultHash, Usdc)>,
}

/// A run of results from the first: their commitment and their artefacts' price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Run {
    /// The commitment a receipt carries.
    pub commitment: ResultsCommitment,
    /// What keeping the run's artefacts costs, each result's price summed.
    pub artefacts: Usdc,
}

impl Run {
    fn extend(self, (hash, artefacts): &(ResultHash, Usdc)) -> Self {
        Self {
            commitment: self.commitment.extend(hash),
            // Each result's artefacts are bounded by the session's workspace, so the sum
            // saturating would take more than Usdc::MAX of storage.
            artefacts: self.artefacts.saturating_add(*artefacts),
        }
    }
}

impl ResultChain {
    /// No results yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds result `seq` (from 1), whose artefacts cost `artefacts`. A number already
    /// held or committed is refused.
    pub fn hold(
        &mut self,
        seq: u64,
        hash: ResultHash,
        artefacts: Usdc,
    ) -> Result<(), RepeatedResult> {
        if seq == 0 || seq <= self.committed.commitment.count || self.held.contains_key(&seq) {
            return Err(RepeatedResult { seq });
        }
        self.held.insert(seq, (hash, artefacts));
        Ok(())
    }

    /// The run of every result up to `count`, if each is held (or committed).
    pub fn at(&self, count: u64) -> Option<Run> {
        if count < self.committed.commitment.count {
            return None;
        }
        let mut run = self.committed;
        while run.commitment.count < count {
            let next = self.held.get(&(run.commitment.count + 1))?;
            run = run.extend(next);
        }
        Some(run)
    }

    /// The longest run of results held, from the first.
    pub fn longest(&self) -> Run {
        let mut run = self.committed;
        while let Some(next) = self.held.get(&(run.commitment.count + 1)) {
            run = run.extend(next);
        }
        run
    }

    /// A receipt committing to `run` is committed: the results it covers need no
    /// holding. A run behind the committed one changes nothing.
    pub fn commit(&mut self, run: Run) {
        if run.commitment.count < self.committed.commitment.count {
            return;
        }
        self.held.retain(|&seq, _| seq > run.commitment.count);
        self.committed = run;
    }

    /// The run of the last committed receipt.
    pub const fn committed(&self) -> Run {
        self.committed
    }

    /// Results held past the committed run.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hash(n: u8) -> ResultHash {
        ResultHash::from_bytes([n; 32])
    }

    fn price(n: u8) -> Usdc {
        Usdc::from_micros(u64::from(n) * 10)
    }

    #[test]
    fn the_run_grows_as_gaps_fill_and_commits_drop_what_they_cover() {
        let mut chain = ResultChain::new();
        chain.hold(2, hash(2), price(2)).unwrap();
        assert_eq!(chain.longest(), Run::default(), "1 is missing");
        assert_eq!(chain.at(2), None);
        chain.hold(1, hash(1), price(1)).unwrap();
        let two = ResultsCommitment::NONE.extend(&hash(1)).extend(&hash(2));
        assert_eq!(chain.longest().commitment, two);
        assert_eq!(chain.longest().artefacts, Usdc::from_micros(30), "10 + 20");
        assert_eq!(chain.at(2), Some(chain.longest()));
        assert_eq!(
            chain.at(1),
            Some(Run {
                commitment: ResultsCommitment::NONE.extend(&hash(1)),
                artefacts: price(1),
            })
        );
        assert_eq!(
            chain.hold(2, hash(9), price(9)),
            Err(RepeatedResult { seq: 2 })
        );

        chain.hold(4, hash(4), price(4)).unwrap();
        chain.commit(chain.at(1).unwrap());
        assert_eq!(chain.held(), 2, "2 and 4 stay");
        assert_eq!(
            chain.hold(1, hash(1), price(1)),
            Err(RepeatedResult { seq: 1 })
        );
        assert_eq!(chain.at(0), None, "behind the committed run");
        assert_eq!(chain.longest().commitment, two);
        assert_eq!(
            chain.longest().artefacts,
            Usdc::from_micros(30),
            "the committed run's price stays"
        );
        chain.hold(3, hash(3), price(3)).unwrap();
        assert_eq!(chain.longest().commitment.count, 4);
        assert_eq!(
            chain.longest().artefacts,
            Usdc::from_micros(100),
            "10 + 20 + 30 + 40"
        );
        chain.commit(Run::default());
        assert_eq!(
            chain.committed().commitment.count,
            1,
            "a commitment never goes back"
        );
        assert_eq!(
            chain.hold(0, hash(0), price(0)),
            Err(RepeatedResult { seq: 0 })
        );
    }
}
