//! Durable execution records: what a node asked for or ran, when, how it ended, what it
//! cost and what it printed (hashed whole, kept up to a quota).
//!
//! A record moves forward only: `pending` (asked) → `running` (the provider started it)
//! → `completed` or `failed`; a pending one may also fail (refused, or lost with its
//! session). [`ExecRecord::advance`] enforces that, and the store refuses a write that
//! would move a stored record backwards or change what it is a record of.

use orien_protocol::{ExecId, ExecResult, Millis, SessionId, Signed, Timestamp, ToolName, Usdc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::Record;

/// Most output bytes of one stream a record keeps (the configured quota is at most this).
pub const MAX_KEPT_OUTPUT: usize = 1 << 20;
/// Most bytes of argument JSON a record keeps (the protocol's limit on a call's arguments).
pub const MAX_ARGS: usize = orien_protocol::exec::MAX_ARGS_LEN;

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExecState {
    /// Asked for; the provider has not confirmed it started.
    Pending,
    /// Started.
    Running,
    /// The process exited (with any exit code).
    Completed,
    /// It did not run to its exit.
    Failed(ExecFailure),
}

impl ExecState {
    /// Whether nothing can follow.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed(_))
    }

    const fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Running => 1,
            Self::Completed | Self::Failed(_) => 2,
        }
    }
}

/// Why an execution failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExecFailure {
    /// Killed at the wall-time limit.
    TimedOut,
    /// Killed at the memory limit.
    OutOfMemory,
    /// The arguments did not satisfy the tool's schema.
    InvalidArguments,
    /// The sandbox failed.
    SandboxError,
    /// The session ended (or the provider refused the call) before it reported an exit.
    Lost,
    /// The provider's signed result does not match what the renter asked for or
    /// received; the record keeps it as evidence, and the session is disputed.
    Disputed,
}

/// One output stream of an execution: its SHA-256 and length over every byte, and the
/// first bytes, up to the quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutput {
    /// SHA-256 of the whole stream.
    pub sha256: [u8; 32],
    /// Length of the whole stream.
    pub len: u64,
    /// Its first bytes, at most the quota.
    pub kept: Vec<u8>,
}

impl StoredOutput {
    /// The record of `bytes`, keeping at most `quota` of them (capped at
    /// [`MAX_KEPT_OUTPUT`]).
    pub fn of(bytes: &[u8], quota: usize) -> Self {
        let mut recorder = OutputRecorder::new(quota);
        recorder.push(bytes);
        recorder.finish()
    }

    /// Whether bytes were left out.
    pub fn truncated(&self) -> bool {
        (self.kept.len() as u64) < self.len
    }
}

/// A stream's [`StoredOutput`] built as its chunks arrive: every byte hashed and
/// counted, the first ones kept up to the quota, nothing else held.
#[derive(Debug, Clone)]
pub struct OutputRecorder {
    hasher: Sha256,
    len: u64,
    kept: Vec<u8>,
    quota: usize,
}

impl OutputRecorder {
    /// A recorder keeping at most `quota` bytes (capped at [`MAX_KEPT_OUTPUT`]).
    pub fn new(quota: usize) -> Self {
        Self {
            hasher: Sha256::new(),
            len: 0,
            kept: Vec::new(),
            quota: quota.min(MAX_KEPT_OUTPUT),
        }
    }

    /// The next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len = self.len.saturating_add(bytes.len() as u64);
        let room = self.quota.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The stream's record.
    pub fn finish(self) -> StoredOutput {
        StoredOutput {
            sha256: self.hasher.finalize().into(),
            len: self.len,
            kept: self.kept,
        }
    }
}

/// How an execution ended, as its exit reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEnd {
    /// `Completed`, or `Failed` with the reason.
    pub state: ExecState,
    /// Exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// Wall time.
    pub wall: Millis,
    /// CPU time.
    pub cpu: Millis,
    /// Peak memory, bytes.
    pub peak_memory_bytes: u64,
    /// What the call cost at the session's execution price.
    pub cost: Usdc,
    /// Standard output.
    pub stdout: StoredOutput,
    /// Standard error.
    pub stderr: StoredOutput,
    /// Why, in the provider's words (refused arguments, a sandbox error).
    pub detail: Option<String>,
    /// The provider's signed result of the call, as received (on the renter) or as sent
    /// (on the provider).
    pub result: Option<Signed<ExecResult>>,
}

/// A durable record of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRecord {
    /// The execution.
    pub exec: ExecId,
    /// Its session.
    pub session: SessionId,
    /// The tool it ran.
    pub tool: ToolName,
    /// Its arguments, as JSON text.
    pub args_json: String,
    /// When it was asked for.
    pub requested_at: Timestamp,
    /// When the provider confirmed it started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Where it stands.
    pub state: ExecState,
    /// How it ended, once it did (a call lost with its session has no end report).
    pub end: Option<ExecEnd>,
}

/// A transition [`ExecRecord::advance`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("execution {exec} cannot go from {from:?} to {to:?}")]
pub struct BackwardsTransition {
    /// The execution.
    pub exec: ExecId,
    /// Its stored state.
    pub from: ExecState,
    /// The state asked for.
    pub to: ExecState,
}

impl ExecRecord {
    /// A call asked for at `now`.
    pub fn requested(
        exec: ExecId,
        session: SessionId,
        tool: ToolName,
        args_json: String,
        now: Timestamp,
    ) -> Self {
        Self {
            exec,
            session,
            tool,
            args_json,
            requested_at: now,
            started_at: None,
            ended_at: None,
            state: ExecState::Pending,
            end: None,
        }
    }

    /// A call started at `now` as soon as it was asked for (the provider's record).
    pub fn running(
        exec: ExecId,
        session: SessionId,
        tool: ToolName,
        args_json: String,
        now: Timestamp,
    ) -> Self {
        Self {
            started_at: Some(now),
            state: ExecState::Running,
            ..Self::requested(exec, session, tool, args_json, now)
        }
    }

    /// The provider confirmed the start at `now`.
    pub fn started(mut self, now: Timestamp) -> Result<Self, BackwardsTransition> {
        self.advance(ExecState::Running)?;
        self.started_at = Some(now);
        Ok(self)
    }

    /// The call ended at `now` as `end` says.
    pub fn ended(mut self, end: ExecEnd, now: Timestamp) -> Result<Self, BackwardsTransition> {
        self.advance(end.state)?;
        self.ended_at = Some(now);
        self.end = Some(end);
        Ok(self)
    }

    /// The call will never report an exit (its session ended, or the provider refused
    /// to start it).
    pub fn lost(mut self, now: Timestamp) -> Result<Self, BackwardsTransition> {
        self.advance(ExecState::Failed(ExecFailure::Lost))?;
        self.ended_at = Some(now);
        Ok(self)
    }

    /// Moves to `to` if that is forward.
    pub fn advance(&mut self, to: ExecState) -> Result<(), BackwardsTransition> {
        if self.state.is_final() || to.rank() <= self.state.rank() {
            return Err(BackwardsTransition {
                exec: self.exec,
                from: self.state,
                to,
            });
        }
        self.state = to;
        Ok(())
    }

    /// Whether `self` may replace `stored`: the same execution, session, tool,
    /// arguments and request time, and a state at least as far along (the same record
    /// written again is allowed; a final record never changes).
    pub fn may_replace(&self, stored: &Self) -> bool {
        let same_call = self.exec == stored.exec
            && self.session == stored.session
            && self.tool == stored.tool
            && self.args_json == stored.args_json
            && self.requested_at == stored.requested_at;
        let forward = if stored.state.is_final() {
            self == stored
        } else {
            self.state.rank() >= stored.state.rank()
        };
        same_call && forward
    }

    /// Checks the record's own limits before it is written.
    pub fn check(&self) -> Result<(), String> {
        if self.args_json.len() > MAX_ARGS {
            return Err(format!("arguments of {} bytes", self.args_json.len()));
        }
        if let Some(end) = &self.end {
            for (name, out) in [("stdout", &end.stdout), ("stderr", &end.stderr)] {
                if out.kept.len() > MAX_KEPT_OUTPUT || out.kept.len() as u64 > out.len {
                    return Err(format!("{name} keeps {} bytes", out.kept.len()));
                }
            }
            if end.state != self.state {
                return Err("the end report's state is not the record's".into());
            }
        }
        Ok(())
    }
}

impl Record for ExecRecord {
    const KIND: &'static str = "execution";
    // 2: the provider's signed result.
    const VERSION: u8 = 2;
    const MAX_LEN: usize = MAX_ARGS
        + 2 * MAX_KEPT_OUTPUT
        + 8 * 1024
        + <ExecResult as orien_protocol::Message>::MAX_ENCODED_LEN;
}

/// A query of stored execution records; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecQuery {
    /// Only this session's.
    pub session: Option<SessionId>,
    /// Only this tool's.
    pub tool: Option<ToolName>,
    /// Only records in these states.
    pub state: Option<StateFilter>,
    /// Only records older than this one (the previous page's `next`).
    pub after: Option<ExecId>,
    /// Most records (at least 1).
    pub limit: usize,
}

impl ExecQuery {
    pub(crate) fn matches(&self, record: &ExecRecord) -> bool {
        self.session.is_none_or(|s| s == record.session)
            && self.tool.as_ref().is_none_or(|t| t == &record.tool)
            && self.state.is_none_or(|s| s.matches(record.state))
    }
}

/// The states an [`ExecQuery`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Exactly this state (a `Failed` one of exactly this reason).
    Exactly(ExecState),
    /// Failed, for any reason.
    AnyFailure,
}

impl StateFilter {
    /// Whether `state` passes.
    pub fn matches(self, state: ExecState) -> bool {
        match self {
            Self::Exactly(wanted) => wanted == state,
            Self::AnyFailure => matches!(state, ExecState::Failed(_)),
        }
    }
}

/// One page of execution records, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPage {
    /// The records.
    pub records: Vec<ExecRecord>,
    /// Where the next page starts (`ExecQuery::after`), when there may be more.
    pub next: Option<ExecId>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> ExecRecord {
        ExecRecord::requested(
            ExecId::random(),
            SessionId::random(),
            ToolName::new("wc").unwrap(),
            "{}".into(),
            Timestamp(1),
        )
    }

    fn end(state: ExecState) -> ExecEnd {
        ExecEnd {
            state,
            exit_code: Some(0),
            wall: Millis(5),
            cpu: Millis(3),
            peak_memory_bytes: 1,
            cost: Usdc::from_micros(7),
            stdout: StoredOutput::of(b"hello", 3),
            stderr: StoredOutput::of(b"", 3),
            detail: None,
            result: None,
        }
    }

    #[test]
    fn records_move_forward_only() {
        let pending = record();
        let running = pending.clone().started(Timestamp(2)).unwrap();
        assert!(running.clone().started(Timestamp(3)).is_err());
        let done = running
            .clone()
            .ended(end(ExecState::Completed), Timestamp(4))
            .unwrap();
        assert!(
            done.clone().lost(Timestamp(5)).is_err(),
            "a final record stays"
        );
        assert!(
            done.clone()
                .ended(end(ExecState::Completed), Timestamp(5))
                .is_err()
        );
        // A pending call may fail without ever running.
        let lost = pending.clone().lost(Timestamp(3)).unwrap();
        assert_eq!(lost.state, ExecState::Failed(ExecFailure::Lost));
        assert!(running.may_replace(&pending));
        assert!(done.may_replace(&running));
        assert!(!pending.may_replace(&running), "no going back");
        assert!(!lost.may_replace(&done), "a final record never changes");
        let mut other = done.clone();
        other.args_json = "{\"a\":1}".into();
        assert!(
            !other.may_replace(&running),
            "another call under the same id"
        );
    }

    #[test]
    fn output_is_hashed_whole_and_kept_to_the_quota() {
        let out = StoredOutput::of(b"hello", 3);
        assert_eq!(out.kept, b"hel");
        assert_eq!(out.len, 5);
        assert!(out.truncated());
        assert_eq!(out.sha256, <[u8; 32]>::from(Sha256::digest(b"hello")));
        assert!(!StoredOutput::of(b"hi", 3).truncated());
    }

    #[test]
    fn a_stream_recorded_in_chunks_is_the_stream_recorded_whole() {
        let whole: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for quota in [0, 1, 100, 9_999, 10_000, 20_000] {
            let mut recorder = OutputRecorder::new(quota);
            for chunk in whole.chunks(333) {
                recorder.push(chunk);
            }
            assert_eq!(
                recorder.finish(),
                StoredOutput::of(&whole, quota),
                "quota {quota}"
            );
        }
        let capped = StoredOutput::of(&vec![7; MAX_KEPT_OUTPUT + 1], usize::MAX);
        assert_eq!(capped.kept.len(), MAX_KEPT_OUTPUT);
    }
}
