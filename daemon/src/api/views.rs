//! The API's views of executions and their logs.

use orien_ledger::{ExecRecord, StoredOutput};
use orien_protocol::{ExecEvent, ExecId, OutputStream};
use orien_web_api::sessions::{
    ExecFailure, ExecState, ExecutionView, LogEntry, LogKind, LogPage, usdc_string,
};

use crate::session::ExecSnapshot;

/// What the API says of a call lost with its session.
const LOST: &str = "the session ended before the execution reported its exit";

/// The API's state of a record's.
fn state_of(state: orien_ledger::ExecState) -> (ExecState, Option<ExecFailure>) {
    use orien_ledger::{ExecFailure as Why, ExecState as Is};
    match state {
        Is::Pending => (ExecState::Pending, None),
        Is::Running => (ExecState::Running, None),
        Is::Completed => (ExecState::Completed, None),
        Is::Failed(why) => (
            ExecState::Failed,
            Some(match why {
                Why::TimedOut => ExecFailure::TimedOut,
                Why::OutOfMemory => ExecFailure::OutOfMemory,
                Why::InvalidArguments => ExecFailure::InvalidArguments,
                Why::SandboxError => ExecFailure::SandboxError,
                Why::Lost => ExecFailure::Lost,
                Why::Disputed => ExecFailure::Disputed,
            }),
        ),
    }
}

/// Whether the API state `state` (and reason `failure`) is one a filter takes.
pub(super) fn record_filter(
    state: Option<ExecState>,
    failure: Option<ExecFailure>,
) -> Option<orien_ledger::StateFilter> {
    use orien_ledger::{ExecFailure as Why, ExecState as Is, StateFilter};
    if let Some(failure) = failure {
        let why = match failure {
            ExecFailure::TimedOut => Why::TimedOut,
            ExecFailure::OutOfMemory => Why::OutOfMemory,
            ExecFailure::InvalidArguments => Why::InvalidArguments,
            ExecFailure::SandboxError => Why::SandboxError,
            ExecFailure::Lost => Why::Lost,
            ExecFailure::Disputed => Why::Disputed,
        };
        return Some(StateFilter::Exactly(Is::Failed(why)));
    }
    state.map(|state| match state {
        ExecState::Pending => StateFilter::Exactly(Is::Pending),
        ExecState::Running => StateFilter::Exactly(Is::Running),
        ExecState::Completed => StateFilter::Exactly(Is::Completed),
        ExecState::Failed => StateFilter::AnyFailure,
    })
}

/// Fills the record's times, cost, output digests and signed result into `view`; a
/// final record's state is the call's (a disputed result fails a call that exited).
fn with_record(mut view: ExecutionView, record: &ExecRecord) -> ExecutionView {
    view.tool = record.tool.to_string();
    if record.state == orien_ledger::ExecState::Failed(orien_ledger::ExecFailure::Disputed) {
        (view.state, view.failure) = state_of(record.state);
        view.detail = record.end.as_ref().and_then(|e| e.detail.clone());
    }
    view.requested_at = Some(record.requested_at.0);
    view.started_at = record.started_at.map(|t| t.0);
    view.ended_at = record.ended_at.map(|t| t.0);
    if let Some(end) = &record.end {
        view.cost = Some(usdc_string(end.cost));
        view.stdout_sha256 = Some(hex::encode(end.stdout.sha256));
        view.stderr_sha256 = Some(hex::encode(end.stderr.sha256));
        view.stdout_bytes = Some(end.stdout.len);
        view.stderr_bytes = Some(end.stderr.len);
        view.signed_result = end
            .result
            .as_ref()
            .and_then(|r| r.to_bytes().ok())
            .map(hex::encode);
        view.artefacts = end
            .result
            .as_ref()
            .and_then(|r| r.verify().ok())
            .map(|result| result.artefacts.iter().map(artefact_view).collect())
            .unwrap_or_default();
    }
    view
}

fn artefact_view(artefact: &orien_protocol::Artefact) -> orien_web_api::sessions::ArtefactView {
    use orien_protocol::ArtefactKept;
    use orien_web_api::sessions::{ArtefactState, ArtefactView};
    let (state, size, sha256) = match artefact.kept {
        ArtefactKept::File { size, sha256 } => {
            (ArtefactState::Kept, Some(size), Some(sha256.to_string()))
        }
        ArtefactKept::Missing => (ArtefactState::Missing, None, None),
        ArtefactKept::NotAFile => (ArtefactState::NotAFile, None, None),
        ArtefactKept::NoRoom => (ArtefactState::NoRoom, None, None),
        ArtefactKept::Failed => (ArtefactState::Failed, None, None),
    };
    ArtefactView {
        path: artefact.path.clone(),
        state,
        size,
        sha256,
    }
}

/// The view of an execution from its durable record alone: what a node shows of a call
/// whose output it no longer holds (after a restart), or of a call it ran as provider.
pub(super) fn record_view(record: &ExecRecord) -> ExecutionView {
    let (state, failure) = state_of(record.state);
    let text = |out: &StoredOutput| String::from_utf8_lossy(&out.kept).into_owned();
    let empty = StoredOutput::default();
    let (stdout, stderr) = record
        .end
        .as_ref()
        .map_or((&empty, &empty), |end| (&end.stdout, &end.stderr));
    let detail = match (&record.end, failure) {
        (Some(end), _) => end.detail.clone(),
        (None, Some(ExecFailure::Lost)) => Some(LOST.into()),
        (None, _) => None,
    };
    let end = record.end.as_ref();
    let mut view = ExecutionView::new(
        record.exec.to_string(),
        record.session.to_string(),
        record.tool.to_string(),
        state,
    );
    view.failure = failure;
    view.exit_code = end.and_then(|e| e.exit_code);
    view.detail = detail;
    view.wall_ms = end.map(|e| e.wall.get());
    view.cpu_ms = end.map(|e| e.cpu.get());
    view.peak_memory_bytes = end.map(|e| e.peak_memory_bytes);
    view.stdout = text(stdout);
    view.stderr = text(stderr);
    view.stdout_truncated = stdout.truncated();
    view.stderr_truncated = stderr.truncated();
    with_record(view, record)
}

/// The API's view of an execution whose output the node holds, with its record's
/// times, cost and digests when it has one.
pub(super) fn execution_view(
    exec: ExecId,
    snapshot: &ExecSnapshot,
    record: Option<&ExecRecord>,
) -> ExecutionView {
    let text = |stream| String::from_utf8_lossy(&snapshot.view.output(stream)).into_owned();
    let pending = record.is_some_and(|r| r.state == orien_ledger::ExecState::Pending);
    let state = if snapshot.session_ended {
        ExecState::Failed
    } else if pending {
        ExecState::Pending
    } else {
        ExecState::Running
    };
    let mut view = ExecutionView::new(
        exec.to_string(),
        snapshot.session.to_string(),
        snapshot.tool.to_string(),
        state,
    );
    view.failure = snapshot.session_ended.then_some(ExecFailure::Lost);
    view.detail = snapshot.session_ended.then(|| LOST.into());
    view.stdout = text(OutputStream::Stdout);
    view.stderr = text(OutputStream::Stderr);
    let view = match &snapshot.view.exit {
        Some(exit) => view.with_exit(exit),
        None => view,
    };
    match record {
        Some(record) => with_record(view, record),
        None => view,
    }
}

/// The log of an execution after `after`, from a snapshot of its events after it; an
/// execution whose session ended without an exit gets a final `exit` entry saying it
/// was lost. `whole` is the execution with all its output, for the exit entry.
pub(super) fn log_page(
    exec: ExecId,
    snapshot: &ExecSnapshot,
    whole: Option<&ExecSnapshot>,
    record: Option<&ExecRecord>,
    after: Option<u64>,
) -> LogPage {
    let first = after.map_or(0, |a| a.saturating_add(1)) as usize;
    let mut entries: Vec<LogEntry> = Vec::new();
    let events = &snapshot.view.events;
    let exit_data = || exit_data(exec, whole.unwrap_or(snapshot), record);
    for (i, event) in events.iter().enumerate() {
        let index = snapshot.first_event + i;
        if index < first {
            continue;
        }
        let (kind, data) = match event {
            ExecEvent::Output(chunk) => (
                match chunk.stream {
                    OutputStream::Stdout => LogKind::Stdout,
                    OutputStream::Stderr => LogKind::Stderr,
                },
                String::from_utf8_lossy(&chunk.data).into_owned(),
            ),
            ExecEvent::Exit(_) => (LogKind::Exit, exit_data()),
        };
        entries.push(LogEntry {
            index: index as u64,
            kind,
            data,
        });
    }
    let exited = snapshot.view.exit.is_some();
    let total = snapshot.first_event + events.len();
    if !exited && snapshot.session_ended && total >= first {
        entries.push(LogEntry {
            index: total as u64,
            kind: LogKind::Exit,
            data: exit_data(),
        });
    }
    LogPage {
        entries,
        finished: exited || snapshot.session_ended,
    }
}

fn exit_data(exec: ExecId, snapshot: &ExecSnapshot, record: Option<&ExecRecord>) -> String {
    let view = execution_view(exec, snapshot, record);
    serde_json::to_string(&view).unwrap_or_else(|_| "{}".into())
}

/// The log of an execution the node knows only from its record (after a restart, or a
/// call it runs as provider): what the record kept of each stream and the exit, once
/// the call ended.
pub(super) fn record_log_page(record: &ExecRecord, after: Option<u64>) -> LogPage {
    let first = after.map_or(0, |a| a.saturating_add(1));
    let view = record_view(record);
    let mut entries = Vec::new();
    if let Some(end) = &record.end {
        for (kind, out) in [
            (LogKind::Stdout, &end.stdout),
            (LogKind::Stderr, &end.stderr),
        ] {
            if !out.kept.is_empty() {
                entries.push((kind, String::from_utf8_lossy(&out.kept).into_owned()));
            }
        }
    }
    let finished = record.state.is_final();
    if finished {
        entries.push((
            LogKind::Exit,
            serde_json::to_string(&view).unwrap_or_else(|_| "{}".into()),
        ));
    }
    LogPage {
        entries: entries
            .into_iter()
            .enumerate()
            .map(|(index, (kind, data))| LogEntry {
                index: index as u64,
                kind,
                data,
            })
            .filter(|e| e.index >= first)
            .collect(),
        finished,
    }
}
