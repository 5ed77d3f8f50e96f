//! The API's views of executions and their logs.

use orien_protocol::{ExecEvent, ExecId, OutputStream};
use orien_web_api::sessions::{ExecFailure, ExecState, ExecutionView, LogEntry, LogKind, LogPage};

use crate::session::ExecSnapshot;

/// The API's view of an execution.
pub(super) fn execution_view(exec: ExecId, snapshot: &ExecSnapshot) -> ExecutionView {
    let text = |stream| String::from_utf8_lossy(&snapshot.view.output(stream)).into_owned();
    let view = ExecutionView {
        id: exec.to_string(),
        session: snapshot.session.to_string(),
        state: if snapshot.session_ended {
            ExecState::Failed
        } else {
            ExecState::Running
        },
        failure: snapshot.session_ended.then_some(ExecFailure::Lost),
        exit_code: None,
        detail: snapshot
            .session_ended
            .then(|| "the session ended before the execution reported its exit".into()),
        wall_ms: None,
        cpu_ms: None,
        peak_memory_bytes: None,
        stdout: text(OutputStream::Stdout),
        stderr: text(OutputStream::Stderr),
        stdout_truncated: false,
        stderr_truncated: false,
    };
    match &snapshot.view.exit {
        Some(exit) => view.with_exit(exit),
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
    after: Option<u64>,
) -> LogPage {
    let first = after.map_or(0, |a| a.saturating_add(1)) as usize;
    let mut entries: Vec<LogEntry> = Vec::new();
    let events = &snapshot.view.events;
    let exit_data = || exit_data(exec, whole.unwrap_or(snapshot));
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

pub(super) fn exit_data(exec: ExecId, snapshot: &ExecSnapshot) -> String {
    serde_json::to_string(&execution_view(exec, snapshot)).unwrap_or_else(|_| "{}".into())
}
