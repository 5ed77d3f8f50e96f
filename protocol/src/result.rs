//! Signed execution results: what a provider says one call computed, and the
//! commitment of a session's results in its receipts.
//!
//! At each call's exit the provider signs an [`ExecResult`]: the tool, the SHA-256 of the
//! arguments it was given, the exit with its measures, and the SHA-256 of each output
//! stream as sent. The renter checks the bytes it received against those hashes and
//! refuses a mismatch as a dispute, keeping the signed result as evidence. A call that
//! named output paths gets, for each, what the provider kept of it when the call ended
//! ([`Artefact`]): the SHA-256 of its copy, by which the renter fetches it.
//!
//! The provider numbers a session's results from 1 in the order it signs them. Every
//! receipt carries a [`ResultsCommitment`]: the longest run of results, from the first,
//! that the renter had acknowledged when the receipt was issued, chained into one hash.
//! The renter's countersignature of the receipt thus says it received those results.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::InvalidMessage;
use crate::exec::ExecExit;
use crate::ids::{ContentHash, ResultHash, SessionId, ToolName};
use crate::signed::{Signed, SignedPayload};
use crate::wire::Message;

/// What a provider says one call computed, signed by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecResult {
    /// The session.
    pub session: SessionId,
    /// The provider's number for this result within the session, from 1, in the order
    /// it signed them.
    pub seq: u64,
    /// The tool that ran.
    pub tool: ToolName,
    /// SHA-256 of the call's arguments (the JSON text as the renter sent it).
    pub args: ContentHash,
    /// How the call ended, with what it used.
    pub exit: ExecExit,
    /// SHA-256 of the standard output sent (the bytes within the output cap).
    pub stdout: ContentHash,
    /// SHA-256 of the standard error sent.
    pub stderr: ContentHash,
    /// What became of each output path the call named, in the order named.
    pub artefacts: Vec<Artefact>,
}

/// One output of a call: a workspace path the renter named, and what the provider kept
/// of it when the call ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Artefact {
    /// The workspace path, as the renter named it.
    pub path: String,
    /// What the provider found there.
    pub kept: ArtefactKept,
}

/// What the provider kept of an output path at the end of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtefactKept {
    /// A copy of the regular file there: fetch it by this hash (while the session is
    /// open, and for as long after its close as the provider keeps artefacts).
    File {
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256.
        sha256: ContentHash,
    },
    /// Nothing was there.
    Missing,
    /// Something other than a regular file was there (a directory, a link, …).
    NotAFile,
    /// The provider had no room to keep it (the workspace's cap, or its own disk).
    NoRoom,
    /// The provider could not copy it (its engine or disk failed).
    Failed,
}

impl Message for ExecResult {
    const KIND: &'static str = "ExecResult";
    const MAX_ENCODED_LEN: usize = crate::session::MAX_DETAIL_LEN
        + 512
        + crate::exec::MAX_OUTPUTS * (crate::rpc::MAX_PATH_LEN + 48);

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.seq == 0 {
            return Err(InvalidMessage::new("seq", "results are numbered from 1"));
        }
        let paths: Vec<String> = self.artefacts.iter().map(|a| a.path.clone()).collect();
        crate::exec::check_outputs(&paths)?;
        self.exit.validate()
    }
}

impl SignedPayload for ExecResult {
    const DOMAIN: &'static str = "orien/exec-result/v2";
}

impl Signed<ExecResult> {
    /// The hash a receipt's [`ResultsCommitment`] chains.
    pub fn result_hash(&self) -> ResultHash {
        ResultHash::from_bytes(self.content_hash())
    }
}

impl ExecResult {
    /// The bytes of artefacts this result says the provider kept: what keeping them is
    /// priced on ([`Pricing::artefact_amount`](crate::Pricing::artefact_amount)).
    pub fn kept_bytes(&self) -> u64 {
        self.artefacts
            .iter()
            .map(|a| match a.kept {
                ArtefactKept::File { size, .. } => size,
                _ => 0,
            })
            .fold(0, u64::saturating_add)
    }
}

/// The results a receipt commits to: the session's first `count` results, in the
/// provider's numbering, chained into `digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResultsCommitment {
    /// How many results, from the first.
    pub count: u64,
    /// `d(0)` is all zeros; `d(n) = SHA-256("orien/results/v1" ‖ d(n-1) ‖ hash of result n)`.
    pub digest: ResultHash,
}

impl ResultsCommitment {
    /// No result yet.
    pub const NONE: Self = Self {
        count: 0,
        digest: ResultHash::from_bytes([0; 32]),
    };

    /// The commitment one result further.
    pub fn extend(&self, next: &ResultHash) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"orien/results/v1");
        hasher.update(self.digest.as_bytes());
        hasher.update(next.as_bytes());
        Self {
            count: self.count + 1,
            digest: ResultHash::from_bytes(hasher.finalize().into()),
        }
    }
}

impl Default for ResultsCommitment {
    fn default() -> Self {
        Self::NONE
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_depends_on_every_result_and_its_order() {
        let (a, b) = (
            ResultHash::from_bytes([1; 32]),
            ResultHash::from_bytes([2; 32]),
        );
        let ab = ResultsCommitment::NONE.extend(&a).extend(&b);
        let ba = ResultsCommitment::NONE.extend(&b).extend(&a);
        assert_eq!(ab.count, 2);
        assert_ne!(ab, ba);
        assert_ne!(ab.digest, ResultsCommitment::NONE.extend(&a).digest);
    }
}
