//! The durable records of a session's executions, as its driver keeps them: each write
//! is synced before the driver goes on, so what the API answered about a call survives
//! a crash. Both sides keep them: the renter a record of what it asked for and
//! received, the provider an audit record of every call it ran.

use crate::reputation::Reputation;
use std::collections::HashMap;
use std::sync::Arc;

use orien_ledger::{
    ExecEnd, ExecFailure, ExecRecord, ExecState, OutputRecorder, Store, StoreError, StoredOutput,
};
use orien_protocol::{
    ExecExit, ExecId, ExecOutcome, ExecResult, NodeId, OutputChunk, OutputStream, Signed,
    Timestamp, Usdc,
};
use tracing::warn;

use super::blocking;

/// The record of both output streams of a call, built as its chunks pass.
#[derive(Debug, Clone)]
pub(super) struct CallOutput {
    stdout: OutputRecorder,
    stderr: OutputRecorder,
}

impl CallOutput {
    /// Keeps at most `quota` bytes of each stream.
    pub(super) fn new(quota: usize) -> Self {
        Self {
            stdout: OutputRecorder::new(quota),
            stderr: OutputRecorder::new(quota),
        }
    }

    pub(super) fn push(&mut self, chunk: &OutputChunk) {
        match chunk.stream {
            OutputStream::Stdout => self.stdout.push(&chunk.data),
            OutputStream::Stderr => self.stderr.push(&chunk.data),
        }
    }

    /// Standard output's record and standard error's.
    pub(super) fn finish(self) -> (StoredOutput, StoredOutput) {
        (self.stdout.finish(), self.stderr.finish())
    }
}

/// How a call ended, for its record: the exit's outcome as a state, its measures, its
/// cost, its output and the provider's signed result.
pub(super) fn end_of(
    exit: &ExecExit,
    cost: Usdc,
    output: (StoredOutput, StoredOutput),
    result: Option<Signed<ExecResult>>,
) -> ExecEnd {
    let (state, detail) = match &exit.outcome {
        ExecOutcome::Exited => (ExecState::Completed, None),
        ExecOutcome::TimedOut => (ExecState::Failed(ExecFailure::TimedOut), None),
        ExecOutcome::OutOfMemory => (ExecState::Failed(ExecFailure::OutOfMemory), None),
        ExecOutcome::InvalidArguments { detail } => (
            ExecState::Failed(ExecFailure::InvalidArguments),
            Some(detail.clone()),
        ),
        ExecOutcome::SandboxError { detail } => (
            ExecState::Failed(ExecFailure::SandboxError),
            Some(detail.clone()),
        ),
    };
    ExecEnd {
        state,
        exit_code: exit.exit_code,
        wall: exit.wall,
        cpu: exit.cpu,
        peak_memory_bytes: exit.peak_memory_bytes,
        cost,
        stdout: output.0,
        stderr: output.1,
        detail,
        result,
    }
}

/// A call whose record is not final yet.
struct Live {
    record: ExecRecord,
    /// Its output so far, on the side that records it here (the renter's).
    output: CallOutput,
    /// Whether any output arrived yet.
    heard: bool,
}

/// The records of one session's calls that have not ended.
pub(super) struct ExecRecords {
    store: Arc<Store>,
    quota: usize,
    live: HashMap<ExecId, Live>,
    /// A renter's: the provider's reputation learns how each call ended.
    observer: Option<(Arc<Reputation>, NodeId)>,
}

impl ExecRecords {
    /// Records written to `store`, keeping at most `quota` bytes of each stream.
    pub(super) fn new(store: Arc<Store>, quota: usize) -> Self {
        Self {
            store,
            quota,
            live: HashMap::new(),
            observer: None,
        }
    }

    /// The same, telling `reputation` how each of `provider`'s calls ended.
    pub(super) fn observed_by(mut self, reputation: Arc<Reputation>, provider: NodeId) -> Self {
        self.observer = Some((reputation, provider));
        self
    }

    fn observe(&self, record: &ExecRecord) {
        if let Some((reputation, provider)) = &self.observer {
            reputation.record_call(*provider, record);
        }
    }

    /// Writes the first record of a call (pending on the renter, running on the
    /// provider); the call must not go ahead if this fails.
    pub(super) async fn begin(&mut self, record: ExecRecord) -> Result<(), StoreError> {
        self.write(record.clone()).await?;
        self.live.insert(
            record.exec,
            Live {
                record,
                output: CallOutput::new(self.quota),
                heard: false,
            },
        );
        Ok(())
    }

    /// The provider confirmed a pending call started.
    pub(super) async fn started(&mut self, exec: ExecId, now: Timestamp) {
        let Some(live) = self.live.get_mut(&exec) else {
            return; // It ended already.
        };
        if live.record.state != ExecState::Pending {
            return;
        }
        let Ok(started) = live.record.clone().started(now) else {
            return;
        };
        live.record = started.clone();
        self.write_or_warn(started).await;
    }

    /// Output of a live call, recorded as it passes at `now`; the first tells the
    /// provider's reputation how long the call took to answer.
    pub(super) fn output(&mut self, exec: ExecId, chunk: &OutputChunk, now: Timestamp) {
        if let Some(live) = self.live.get_mut(&exec) {
            live.output.push(chunk);
            if !live.heard {
                live.heard = true;
                if let Some((reputation, provider)) = &self.observer {
                    reputation.record_first_output(*provider, now.since(live.record.requested_at));
                }
            }
        }
    }

    /// The output recorded here of a live call that exited (nothing for a call not
    /// live).
    pub(super) fn take_output(&mut self, exec: ExecId) -> (StoredOutput, StoredOutput) {
        self.live.get_mut(&exec).map_or_else(
            || CallOutput::new(0).finish(),
            |live| std::mem::replace(&mut live.output, CallOutput::new(0)).finish(),
        )
    }

    /// A live call ended as `end` says.
    pub(super) async fn end(&mut self, exec: ExecId, end: ExecEnd, now: Timestamp) {
        if let Some(live) = self.live.remove(&exec) {
            self.write_end(live.record, end, now).await;
        }
    }

    async fn write_end(&mut self, record: ExecRecord, end: ExecEnd, now: Timestamp) {
        // An exit proves the call started, whether or not its start was heard first.
        let record = match record.state {
            ExecState::Pending => record.clone().started(now).unwrap_or(record),
            _ => record,
        };
        match record.ended(end, now) {
            Ok(ended) => {
                self.observe(&ended);
                self.write_or_warn(ended).await;
            }
            Err(e) => warn!(error = %e, "an execution's end does not follow its record"),
        }
    }

    /// A live call that will never report an exit.
    pub(super) async fn lost(&mut self, exec: ExecId, now: Timestamp) {
        if let Some(live) = self.live.remove(&exec)
            && let Ok(lost) = live.record.lost(now)
        {
            self.observe(&lost);
            self.write_or_warn(lost).await;
        }
    }

    /// Every live call ends with the session.
    pub(super) async fn lose_all(&mut self, now: Timestamp) {
        let execs: Vec<ExecId> = self.live.keys().copied().collect();
        for exec in execs {
            self.lost(exec, now).await;
        }
    }

    async fn write(&self, record: ExecRecord) -> Result<(), StoreError> {
        let store = self.store.clone();
        blocking(move || store.record_execution(&record)).await
    }

    async fn write_or_warn(&self, record: ExecRecord) {
        let exec = record.exec;
        if let Err(e) = self.write(record).await {
            warn!(%exec, error = %e, "cannot record the execution");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use orien_protocol::{Millis, SessionId, ToolName};

    use super::*;

    fn exit(exec: ExecId, outcome: ExecOutcome) -> ExecExit {
        ExecExit {
            exec,
            outcome,
            exit_code: Some(3),
            wall: Millis(40),
            cpu: Millis(10),
            peak_memory_bytes: 1 << 20,
            stdout_bytes: 6,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    fn chunk(stream: OutputStream, offset: u64, data: &[u8]) -> OutputChunk {
        OutputChunk {
            exec: ExecId::random(),
            stream,
            offset,
            data: data.to_vec(),
        }
    }

    #[tokio::test]
    async fn a_call_is_recorded_from_its_request_to_its_exit_and_the_rest_are_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path().join("ledger")).unwrap());
        let mut records = ExecRecords::new(store.clone(), 4);
        let session = SessionId::random();
        let tool = ToolName::new("wc").unwrap();
        let request =
            |exec| ExecRecord::requested(exec, session, tool.clone(), "{}".into(), Timestamp(10));
        let (done, never, refused) = (ExecId::random(), ExecId::random(), ExecId::random());
        for exec in [done, never, refused] {
            records.begin(request(exec)).await.unwrap();
        }
        assert_eq!(
            store.execution(&done).unwrap().unwrap().state,
            ExecState::Pending
        );
        records.started(done, Timestamp(11)).await;
        records.output(done, &chunk(OutputStream::Stdout, 0, b"hel"), Timestamp(12));
        records.output(
            done,
            &chunk(OutputStream::Stdout, 3, b"lo\n"),
            Timestamp(12),
        );
        records.output(done, &chunk(OutputStream::Stderr, 0, b"!"), Timestamp(12));
        let cost = Usdc::from_micros(9);
        let output = records.take_output(done);
        let end = end_of(&exit(done, ExecOutcome::Exited), cost, output, None);
        records.end(done, end, Timestamp(12)).await;
        // The exit of a call whose start was not heard yet still records a start.
        let refusal = exit(
            refused,
            ExecOutcome::invalid_arguments("n must be a number"),
        );
        let output = records.take_output(refused);
        let end = end_of(&refusal, Usdc::ZERO, output, None);
        records.end(refused, end, Timestamp(13)).await;
        records.started(refused, Timestamp(14)).await; // late: changes nothing
        records.lose_all(Timestamp(20)).await;

        let done = store.execution(&done).unwrap().unwrap();
        assert_eq!(done.state, ExecState::Completed);
        assert_eq!(
            (done.started_at, done.ended_at),
            (Some(Timestamp(11)), Some(Timestamp(12)))
        );
        let end = done.end.unwrap();
        assert_eq!(
            (end.exit_code, end.cost, end.wall),
            (Some(3), cost, Millis(40))
        );
        assert_eq!(end.stdout, StoredOutput::of(b"hello\n", 4));
        assert_eq!(end.stderr, StoredOutput::of(b"!", 4));

        let refused = store.execution(&refused).unwrap().unwrap();
        assert_eq!(
            refused.state,
            ExecState::Failed(ExecFailure::InvalidArguments)
        );
        assert_eq!(refused.started_at, Some(Timestamp(13)));
        assert_eq!(
            refused.end.unwrap().detail.as_deref(),
            Some("n must be a number")
        );

        let never = store.execution(&never).unwrap().unwrap();
        assert_eq!(never.state, ExecState::Failed(ExecFailure::Lost));
        assert_eq!(
            (never.started_at, never.ended_at),
            (None, Some(Timestamp(20)))
        );
    }
}
