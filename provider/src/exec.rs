//! One call: an exec in the session container, streamed, capped, timed and metered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::{Stream, StreamExt};
use orien_protocol::exec::MAX_CHUNK_LEN;
use orien_protocol::{
    Clock, ExecEvent, ExecExit, ExecId, ExecOutcome, Millis, OutputChunk, OutputStream,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cgroup::Counters;
use crate::container::SANDBOX_USER;
use crate::session::Session;
use crate::workspace_path::WORKSPACE_MOUNT;

/// Exit code of a process killed by SIGKILL (128 + 9), as the engine reports it.
const SIGKILL_EXIT: i64 = 137;

/// The events of one call: output chunks, then exactly one [`ExecEvent::Exit`].
#[derive(Debug)]
pub struct ExecStream {
    rx: mpsc::Receiver<ExecEvent>,
}

/// A finished call, gathered by [`ExecStream::collect_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Standard output, as delivered (at most the tool's output cap).
    pub stdout: Vec<u8>,
    /// Standard error, as delivered.
    pub stderr: Vec<u8>,
    /// How the call ended and what it used.
    pub exit: ExecExit,
}

impl ExecStream {
    pub(crate) fn new(rx: mpsc::Receiver<ExecEvent>) -> Self {
        Self { rx }
    }

    /// The next event; `None` after the exit.
    pub async fn recv(&mut self) -> Option<ExecEvent> {
        self.rx.recv().await
    }

    /// Waits for the end of the call and gathers its output. The output is bounded by
    /// the tool's output cap, so this cannot grow without limit.
    pub async fn collect_output(mut self) -> ExecResult {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(event) = self.rx.recv().await {
            match event {
                ExecEvent::Output(chunk) => match chunk.stream {
                    OutputStream::Stdout => stdout.extend_from_slice(&chunk.data),
                    OutputStream::Stderr => stderr.extend_from_slice(&chunk.data),
                },
                ExecEvent::Exit(exit) => {
                    return ExecResult {
                        stdout,
                        stderr,
                        exit,
                    };
                }
            }
        }
        // The task always sends an exit; reaching here means the runtime shut down.
        ExecResult {
            stdout,
            stderr,
            exit: ExecExit {
                exec: ExecId::from_bytes([0; ExecId::LEN]),
                outcome: ExecOutcome::SandboxError {
                    detail: "the call's task ended without an exit (runtime shut down)".to_owned(),
                },
                exit_code: None,
                wall: Millis::ZERO,
                cpu: Millis::ZERO,
                peak_memory_bytes: 0,
                stdout_bytes: 0,
                stderr_bytes: 0,
                stdout_truncated: false,
                stderr_truncated: false,
            },
        }
    }
}

impl Stream for ExecStream {
    type Item = ExecEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ExecEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// Output accounting of one stream: everything is counted, only the first `cap`
/// bytes are forwarded.
#[derive(Debug)]
pub(crate) struct StreamCap {
    cap: u64,
    seen: u64,
}

impl StreamCap {
    pub(crate) const fn new(cap: u64) -> Self {
        Self { cap, seen: 0 }
    }

    /// The part of `data` to forward, at which offset.
    fn admit<'a>(&mut self, data: &'a [u8]) -> Option<(u64, &'a [u8])> {
        let offset = self.seen;
        self.seen = self.seen.saturating_add(data.len() as u64);
        let room = self.cap.saturating_sub(offset);
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        (take > 0).then(|| (offset, &data[..take]))
    }
    fn truncated(&self) -> bool {
        self.seen > self.cap
    }
}

pub(crate) struct Call {
    exec: ExecId,
    tx: mpsc::Sender<ExecEvent>,
    /// Whether the reader is still listening; a dropped reader does not stop the call.
    listening: bool,
    stdout: StreamCap,
    stderr: StreamCap,
}

impl Call {
    /// A call whose events go to `tx`, each stream capped at `cap` bytes.
    pub(crate) const fn new(exec: ExecId, tx: mpsc::Sender<ExecEvent>, cap: u64) -> Self {
        Self {
            exec,
            tx,
            listening: true,
            stdout: StreamCap::new(cap),
            stderr: StreamCap::new(cap),
        }
    }

    pub(crate) async fn send(&mut self, event: ExecEvent) {
        if self.listening && self.tx.send(event).await.is_err() {
            debug!("the reader went away; the call runs to its end unobserved");
            self.listening = false;
        }
    }

    pub(crate) async fn output(&mut self, stream: OutputStream, data: &[u8]) {
        let cap = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let Some((offset, admitted)) = cap.admit(data) else {
            return;
        };
        let admitted = admitted.to_vec();
        for (i, piece) in admitted.chunks(MAX_CHUNK_LEN).enumerate() {
            let chunk = OutputChunk {
                exec: self.exec,
                stream,
                offset: offset + (i * MAX_CHUNK_LEN) as u64,
                data: piece.to_vec(),
            };
            self.send(ExecEvent::Output(chunk)).await;
        }
    }

    /// The exit of the call; a detail in the outcome (which may quote the arguments or
    /// an engine message) is fitted to the protocol's limit so the exit always arrives.
    pub(crate) fn exit(
        &self,
        outcome: ExecOutcome,
        exit_code: Option<i32>,
        wall: Millis,
    ) -> ExecExit {
        let outcome = match outcome {
            ExecOutcome::InvalidArguments { detail } => ExecOutcome::invalid_arguments(detail),
            ExecOutcome::SandboxError { detail } => ExecOutcome::sandbox_error(detail),
            other => other,
        };
        ExecExit {
            exec: self.exec,
            outcome,
            exit_code,
            wall,
            cpu: Millis::ZERO,
            peak_memory_bytes: 0,
            stdout_bytes: self.stdout.seen,
            stderr_bytes: self.stderr.seen,
            stdout_truncated: self.stdout.truncated(),
            stderr_truncated: self.stderr.truncated(),
        }
    }
}

/// Runs one call to its end and sends its events; never panics, always sends one exit.
pub(crate) async fn run(
    session: Arc<Session>,
    exec: ExecId,
    args: serde_json::Value,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<ExecEvent>,
) {
    let mut call = Call::new(exec, tx, session.tool.limits().output_bytes);
    let exit = run_call(&session, &mut call, args, clock.as_ref()).await;
    info!(
        outcome = ?exit.outcome,
        exit_code = ?exit.exit_code,
        wall_ms = exit.wall.get(),
        cpu_ms = exit.cpu.get(),
        peak_memory_bytes = exit.peak_memory_bytes,
        stdout_bytes = exit.stdout_bytes,
        stderr_bytes = exit.stderr_bytes,
        "call finished"
    );
    call.send(ExecEvent::Exit(exit)).await;
}

/// Ends a call that never started with one exit of `outcome` (its tool unknown, its
/// container not made).
pub(crate) async fn refuse(exec: ExecId, outcome: ExecOutcome, tx: mpsc::Sender<ExecEvent>) {
    let mut call = Call::new(exec, tx, 0);
    let exit = call.exit(outcome, None, Millis::ZERO);
    info!(outcome = ?exit.outcome, "call refused");
    call.send(ExecEvent::Exit(exit)).await;
}

async fn run_call(
    session: &Session,
    call: &mut Call,
    args: serde_json::Value,
    clock: &dyn Clock,
) -> ExecExit {
    let sandbox_error = |call: &Call, detail: String| {
        call.exit(ExecOutcome::SandboxError { detail }, None, Millis::ZERO)
    };
    let argv = match session.tool.render_argv(&args) {
        Ok(argv) => argv,
        Err(e) => {
            return call.exit(
                ExecOutcome::InvalidArguments { detail: e.0 },
                None,
                Millis::ZERO,
            );
        }
    };
    if let Err(e) = session.ensure_open() {
        return sandbox_error(call, e.to_string());
    }
    let Ok(_permit) = session.permits.acquire().await else {
        return sandbox_error(call, "the session is closing".to_owned());
    };
    let concurrent = session.running.fetch_add(1, Ordering::SeqCst) + 1;
    let exit = metered_call(session, call, argv, clock, concurrent == 1).await;
    session.running.fetch_sub(1, Ordering::SeqCst);
    exit
}

async fn metered_call(
    session: &Session,
    call: &mut Call,
    argv: Vec<String>,
    clock: &dyn Clock,
    alone: bool,
) -> ExecExit {
    let engine = &session.provider.engine;
    let docker = engine.docker();
    let limits = *session.tool.limits();
    debug!(?argv, "starting call");
    let options = CreateExecOptions {
        cmd: Some(argv),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(false),
        tty: Some(false),
        user: Some(SANDBOX_USER.to_owned()),
        working_dir: Some(WORKSPACE_MOUNT.to_owned()),
        privileged: Some(false),
        ..Default::default()
    };
    let mut created = docker
        .create_exec(&session.names.container, options.clone())
        .await;
    if let Err(bollard::errors::Error::DockerResponseServerError {
        status_code: 409, ..
    }) = &created
    {
        // The container stopped (its idle process died, e.g. to the OOM killer): start
        // it again once. Its tmpfs workspace did not survive; the restart logs that.
        if let Err(e) = session.restart("the container had stopped", None).await {
            warn!(error = %e, "could not start the stopped container");
        }
        created = docker.create_exec(&session.names.container, options).await;
    }
    let exec_id = match created {
        Ok(created) => created.id,
        Err(e) => {
            return call.exit(
                ExecOutcome::SandboxError {
                    detail: engine.error("create exec", e).to_string(),
                },
                None,
                Millis::ZERO,
            );
        }
    };
    let state = session.state.lock().await.clone();
    let generation = session.generation.load(Ordering::SeqCst);
    // Peak memory is per call only while the call runs alone (the cgroup is shared).
    let peak_is_per_call = alone && state.cgroup.as_ref().is_some_and(|c| c.reset_peak_memory());
    let before = state
        .cgroup
        .as_ref()
        .map(|c| c.counters())
        .unwrap_or_default();

    let started_at = clock.monotonic();
    let deadline = Instant::now() + limits.max_exec.to_duration();
    // Bounded by the call's deadline: under a flood the engine's upgrade answer has
    // been seen to stall (docker 20.10); the call must end all the same.
    let started = tokio::time::timeout_at(
        deadline,
        docker.start_exec(
            &exec_id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(64 * 1024),
            }),
        ),
    )
    .await;
    let mut output = match started {
        Err(_) => {
            warn!("the engine did not attach the call before its deadline");
            restart_bounded(session, "call timed out before attaching", &exec_id).await;
            let wall = Millis::from_duration(clock.monotonic().saturating_sub(started_at));
            return call.exit(ExecOutcome::TimedOut, None, wall);
        }
        Ok(Ok(StartExecResults::Attached { output, .. })) => output,
        Ok(Ok(StartExecResults::Detached)) => {
            return call.exit(
                ExecOutcome::SandboxError {
                    detail: "the engine detached the call".to_owned(),
                },
                None,
                Millis::ZERO,
            );
        }
        Ok(Err(e)) => {
            return call.exit(
                ExecOutcome::SandboxError {
                    detail: engine.error("start exec", e).to_string(),
                },
                None,
                Millis::ZERO,
            );
        }
    };

    debug!("call started");
    let mut timed_out = false;
    let mut stream_error = None;
    loop {
        match tokio::time::timeout_at(deadline, output.next()).await {
            Err(_) => {
                timed_out = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(LogOutput::StdOut { message }))) => {
                call.output(OutputStream::Stdout, &message).await;
            }
            Ok(Some(Ok(LogOutput::StdErr { message }))) => {
                call.output(OutputStream::Stderr, &message).await;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                stream_error = Some(engine.error("read exec output", e).to_string());
                break;
            }
        }
    }
    debug!(timed_out, ?stream_error, "call output ended");

    let mut exit_code = None;
    let mut exec_pid = None;
    if timed_out {
        // Every process of the call goes (SIGKILL under the cgroup freezer, see
        // `Session::kill_calls`); the workspace and /tmp stay. The output is
        // drained meanwhile: an engine whose copy of a flooding call's output is cut
        // off mid-stream can fail to notice the container's death (docker 20.10).
        let drain = tokio::spawn(async move {
            let drained = tokio::time::timeout(RESTART_LIMIT, async {
                while output.next().await.is_some() {}
            });
            let _ = drained.await;
        });
        restart_bounded(session, "call timed out", &exec_id).await;
        let _ = drain.await;
    } else {
        drop(output);
        (exit_code, exec_pid) = finished_exit_code(session, &exec_id, deadline).await;
        if exit_code.is_none() && stream_error.is_none() {
            timed_out = true;
            restart_bounded(session, "call outlived its output", &exec_id).await;
        }
    }
    let wall = Millis::from_duration(clock.monotonic().saturating_sub(started_at));
    let after = state
        .cgroup
        .as_ref()
        .map(|c| c.counters())
        .unwrap_or_default();
    let (cpu, peak) = usage(session, &state, before, after, peak_is_per_call).await;

    let restarted_by_other = !timed_out && session.generation.load(Ordering::SeqCst) != generation;
    let oom = matches!((before.oom_kills, after.oom_kills), (Some(b), Some(a)) if a > b)
        && exit_code == Some(SIGKILL_EXIT);
    let outcome = if timed_out {
        ExecOutcome::TimedOut
    } else if restarted_by_other {
        ExecOutcome::SandboxError {
            detail: "the sandbox was restarted while this call ran (another call timed out)"
                .to_owned(),
        }
    } else if oom {
        ExecOutcome::OutOfMemory
    } else if let Some(detail) = stream_error {
        ExecOutcome::SandboxError { detail }
    } else if exec_pid.is_none() && matches!(exit_code, Some(126 | 127)) {
        // The engine could not start the program (its message went out as output).
        ExecOutcome::SandboxError {
            detail: format!(
                "the engine could not start the tool's program (exit {})",
                exit_code.unwrap_or_default()
            ),
        }
    } else {
        ExecOutcome::Exited
    };
    let code = match outcome {
        ExecOutcome::Exited => exit_code.and_then(|c| i32::try_from(c).ok()),
        _ => None,
    };
    let mut exit = call.exit(outcome, code, wall);
    exit.cpu = cpu;
    exit.peak_memory_bytes = peak;

    if alone && !timed_out {
        sweep_strays(session, exec_pid).await;
    }
    exit
}

/// How long ending a timed-out call may take before the call ends anyway.
const RESTART_LIMIT: Duration = Duration::from_secs(60);

/// Ends the processes of a timed-out call (see `Session::kill_calls`); failures are logged (the next
/// call then reports the broken sandbox), never allowed to hold the call's end.
async fn restart_bounded(session: &Session, why: &str, exec_id: &str) {
    match tokio::time::timeout(RESTART_LIMIT, session.kill_calls(why, Some(exec_id))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "could not end the processes of a timed-out call"),
        Err(_) => warn!(
            limit_s = RESTART_LIMIT.as_secs(),
            "ending a timed-out call took too long"
        ),
    }
}

/// Waits (briefly) for the engine to record the exit of `exec_id`: the output stream
/// can close a moment before the process is reaped.
async fn finished_exit_code(
    session: &Session,
    exec_id: &str,
    deadline: Instant,
) -> (Option<i64>, Option<i32>) {
    let docker = session.provider.engine.docker();
    let mut pause = Duration::from_millis(1);
    loop {
        match docker.inspect_exec(exec_id).await {
            Ok(inspect) if inspect.running != Some(true) => {
                let pid = inspect
                    .pid
                    .and_then(|p| i32::try_from(p).ok())
                    .filter(|p| *p > 0);
                return (inspect.exit_code, pid);
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "inspect exec failed");
                return (None, None);
            }
        }
        if Instant::now() + pause > deadline {
            return (None, None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// CPU time and peak memory of the call: from the cgroup files, else from the engine.
async fn usage(
    session: &Session,
    state: &crate::session::ContainerState,
    before: Counters,
    after: Counters,
    peak_is_per_call: bool,
) -> (Millis, u64) {
    let cpu_ns = match (before.cpu_ns, after.cpu_ns) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let peak = state.cgroup.as_ref().and_then(|c| c.peak_memory());
    if let (Some(cpu_ns), Some(peak)) = (cpu_ns, peak) {
        if !peak_is_per_call {
            debug!("peak memory covers the container, not this call alone");
        }
        return (Millis(cpu_ns / 1_000_000), peak);
    }
    // Fallback: the engine's one-shot stats. CPU is the container's total (the idle
    // process uses next to none), peak memory its lifetime peak (cgroup v1) or the
    // current usage (v2, where the engine reports no peak).
    let stats = session
        .provider
        .engine
        .docker()
        .stats(
            &session.names.container,
            Some(
                StatsOptionsBuilder::default()
                    .stream(false)
                    .one_shot(true)
                    .build(),
            ),
        )
        .next()
        .await;
    match stats {
        Some(Ok(stats)) => {
            let cpu = stats
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage)
                .unwrap_or(0);
            let memory = stats.memory_stats.unwrap_or_default();
            let peak = memory.max_usage.or(memory.usage).unwrap_or(0);
            (Millis(cpu / 1_000_000), peak)
        }
        _ => (Millis::ZERO, 0),
    }
}

/// A call may leave processes behind (a daemonised child). They would run unbilled and
/// could watch the next call, so they are killed when the container holds more
/// processes than when idle.
async fn sweep_strays(session: &Session, exec_pid: Option<i32>) {
    let state = session.state.lock().await.clone();
    let (Some(cgroup), Some(idle)) = (state.cgroup.as_ref(), state.idle.as_ref()) else {
        return;
    };
    if session.running.load(Ordering::SeqCst) > 1 {
        return;
    }
    if let Some(now) = cgroup.processes()
        // The call's own process may linger in the cgroup while it is being reaped.
        && now.iter().any(|p| !idle.contains(p) && Some(*p) != exec_pid)
    {
        warn!(
            processes = now.len(),
            idle = idle.len(),
            "the call left processes behind"
        );
        if let Err(e) = session
            .kill_calls("processes left behind by a call", None)
            .await
        {
            warn!(error = %e, "could not end the processes left behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_beyond_the_cap_is_counted_but_not_forwarded() {
        let mut cap = StreamCap { cap: 10, seen: 0 };
        assert_eq!(cap.admit(b"hello"), Some((0, &b"hello"[..])));
        assert_eq!(cap.admit(b"world!!"), Some((5, &b"world"[..])));
        assert_eq!(cap.admit(b"more"), None);
        assert_eq!(cap.seen, 16);
        assert!(cap.truncated());
        let mut exact = StreamCap { cap: 3, seen: 0 };
        exact.admit(b"abc");
        assert!(!exact.truncated());
    }
}
