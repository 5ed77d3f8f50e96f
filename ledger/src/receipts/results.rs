//! A session's signed results as one side holds them, for the receipts' commitments.
//!
//! The provider numbers a session's results from 1; a receipt commits to the longest
//! run of them, from the first, that the renter had acknowledged
//! ([`ResultsCommitment`]). Results arrive out of order (calls run side by side), so each
//! side holds the results past the committed run until the run reaches them.

use std::collections::BTreeMap;

use orien_protocol::{ResultHash, ResultsCommitment};

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
    committed: ResultsCommitment,
    held: BTreeMap<u64, ResultHash>,
}

impl ResultChain {
    /// No results yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds result `seq` (from 1). A number already held or committed is refused.
    pub fn hold(&mut self, seq: u64, hash: ResultHash) -> Result<(), RepeatedResult> {
        if seq == 0 || seq <= self.committed.count || self.held.contains_key(&seq) {
            return Err(RepeatedResult { seq });
        }
        self.held.insert(seq, hash);
        Ok(())
    }

    /// The commitment to every result up to `count`, if each is held (or committed).
    pub fn at(&self, count: u64) -> Option<ResultsCommitment> {
        if count < self.committed.count {
            return None;
        }
        let mut commitment = self.committed;
        while commitment.count < count {
            let next = self.held.get(&(commitment.count + 1))?;
            commitment = commitment.extend(next);
        }
        Some(commitment)
    }

    /// The commitment to the longest run of results held, from the first.
    pub fn longest(&self) -> ResultsCommitment {
        let mut commitment = self.committed;
        while let Some(next) = self.held.get(&(commitment.count + 1)) {
            commitment = commitment.extend(next);
        }
        commitment
    }

    /// A receipt with `commitment` is committed: the results it covers need no holding.
    /// A commitment behind the committed one changes nothing.
    pub fn commit(&mut self, commitment: ResultsCommitment) {
        if commitment.count < self.committed.count {
            return;
        }
        self.held.retain(|&seq, _| seq > commitment.count);
        self.committed = commitment;
    }

    /// The commitment of the last committed receipt.
    pub const fn committed(&self) -> ResultsCommitment {
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

    #[test]
    fn the_run_grows_as_gaps_fill_and_commits_drop_what_they_cover() {
        let mut chain = ResultChain::new();
        chain.hold(2, hash(2)).unwrap();
        assert_eq!(chain.longest(), ResultsCommitment::NONE, "1 is missing");
        assert_eq!(chain.at(2), None);
        chain.hold(1, hash(1)).unwrap();
        let two = ResultsCommitment::NONE.extend(&hash(1)).extend(&hash(2));
        assert_eq!(chain.longest(), two);
        assert_eq!(chain.at(2), Some(two));
        assert_eq!(chain.at(1), Some(ResultsCommitment::NONE.extend(&hash(1))));
        assert_eq!(chain.hold(2, hash(9)), Err(RepeatedResult { seq: 2 }));

        chain.hold(4, hash(4)).unwrap();
        chain.commit(chain.at(1).unwrap());
        assert_eq!(chain.held(), 2, "2 and 4 stay");
        assert_eq!(chain.hold(1, hash(1)), Err(RepeatedResult { seq: 1 }));
        assert_eq!(chain.at(0), None, "behind the committed run");
        assert_eq!(chain.longest(), two);
        chain.hold(3, hash(3)).unwrap();
        assert_eq!(chain.longest().count, 4);
        chain.commit(ResultsCommitment::NONE);
        assert_eq!(chain.committed().count, 1, "a commitment never goes back");
        assert_eq!(chain.hold(0, hash(0)), Err(RepeatedResult { seq: 0 }));
    }
}
