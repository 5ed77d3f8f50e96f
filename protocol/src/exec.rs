//! Running a tool: [`Exec`] carries JSON arguments; [`ExecEvent`]s stream the output
//! back and close with the exit.

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::ids::{ExecId, OfferId, SessionId};
use crate::time::Millis;
use crate::wire::{Message, check_json_object, check_len};

/// Largest JSON argument object.
pub const MAX_ARGS_LEN: usize = 64 * 1024;
/// Largest output chunk in one event.
pub const MAX_CHUNK_LEN: usize = 64 * 1024;
/// Most output paths one call may name.
pub const MAX_OUTPUTS: usize = 16;

/// Run the session's tool once with these arguments.
///
/// The provider validates `args_json` against the tool's schema and fills the tool's
/// argv template with it. No string ever reaches a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// The session to run in.
    pub session: SessionId,
    /// The renter's id for this execution.
    pub exec: ExecId,
    /// Arguments: a JSON object, as text.
    pub args_json: String,
    /// Another tool of the provider to run, by its offer (whose execution price and
    /// limits the call takes); `None`: the tool the session opened on.
    pub offer: Option<OfferId>,
    /// Workspace paths the call's outputs will be at: when it ends, the provider keeps
    /// a copy of each and names its SHA-256 in the signed result (see
    /// [`crate::result::Artefact`]), for the renter to fetch by that hash.
    pub outputs: Vec<String>,
}

impl Message for Exec {
    const KIND: &'static str = "Exec";
    const MAX_ENCODED_LEN: usize = MAX_ARGS_LEN + 96 + MAX_OUTPUTS * (crate::rpc::MAX_PATH_LEN + 4);

    fn validate(&self) -> Result<(), InvalidMessage> {
        check_json_object("args_json", &self.args_json, MAX_ARGS_LEN)?;
        check_outputs(&self.outputs)
    }
}

/// Checks a call's output paths: at most [`MAX_OUTPUTS`], each a non-empty path of at
/// most [`crate::rpc::MAX_PATH_LEN`] bytes, none twice. (The provider checks each as a
/// workspace path too.)
pub fn check_outputs(outputs: &[String]) -> Result<(), InvalidMessage> {
    if outputs.len() > MAX_OUTPUTS {
        return Err(InvalidMessage::new(
            "outputs",
            format!("{} paths, at most {MAX_OUTPUTS}", outputs.len()),
        ));
    }
    for (i, path) in outputs.iter().enumerate() {
        check_len("outputs", path, crate::rpc::MAX_PATH_LEN)?;
        if path.is_empty() || path.contains('\0') {
            return Err(InvalidMessage::new(
                "outputs",
                "an empty path or a NUL byte",
            ));
        }
        if outputs[..i].contains(path) {
            return Err(InvalidMessage::new(
                "outputs",
                format!("`{path}` named twice"),
            ));
        }
    }
    Ok(())
}

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of an execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// The execution.
    pub exec: ExecId,
    /// Which stream.
    pub stream: OutputStream,
    /// Byte offset of `data` within its stream, so a receiver detects gaps and repeats.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecOutcome {
    /// The process exited on its own; see the exit code.
    Exited,
    /// The wall-time limit was reached and the process was killed.
    TimedOut,
    /// The memory limit was reached and the kernel killed the process.
    OutOfMemory,
    /// The arguments did not satisfy the tool's schema; nothing ran.
    InvalidArguments {
        /// Which rule failed.
        detail: String,
    },
    /// The sandbox failed; nothing is charged for the execution.
    SandboxError {
        /// What failed.
        detail: String,
    },
}

impl ExecOutcome {
    /// Refused arguments, the detail fitted to the message limit (it may quote them).
    pub fn invalid_arguments(detail: impl Into<String>) -> Self {
        Self::InvalidArguments {
            detail: crate::session::fit_detail(detail),
        }
    }

    /// A sandbox failure, the detail fitted to the message limit.
    pub fn sandbox_error(detail: impl Into<String>) -> Self {
        Self::SandboxError {
            detail: crate::session::fit_detail(detail),
        }
    }
}

/// The end of an execution, with what it used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecExit {
    /// The execution.
    pub exec: ExecId,
    /// How it ended.
    pub outcome: ExecOutcome,
    /// Exit code of the process, if it exited (killed processes have none).
    pub exit_code: Option<i32>,
    /// Wall time on the provider's monotonic clock.
    pub wall: Millis,
    /// CPU time from the container's cgroup.
    pub cpu: Millis,
    /// Peak memory from the container's cgroup, in bytes.
    pub peak_memory_bytes: u64,
    /// Bytes written to stdout (including any beyond the cap).
    pub stdout_bytes: u64,
    /// Bytes written to stderr (including any beyond the cap).
    pub stderr_bytes: u64,
    /// Whether stdout was cut at the output cap.
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the output cap.
    pub stderr_truncated: bool,
}

impl ExecExit {
    /// Checks the exit's own limits (the length of a failure's detail).
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        match &self.outcome {
            ExecOutcome::InvalidArguments { detail } | ExecOutcome::SandboxError { detail } => {
                check_len("outcome.detail", detail, crate::session::MAX_DETAIL_LEN)
            }
            _ => Ok(()),
        }
    }
}

/// One event of a running execution, in order: chunks, then exactly one exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecEvent {
    /// Output.
    Output(OutputChunk),
    /// The end.
    Exit(ExecExit),
}

impl Message for ExecEvent {
    const KIND: &'static str = "ExecEvent";
    const MAX_ENCODED_LEN: usize = MAX_CHUNK_LEN + 64;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            ExecEvent::Output(chunk) if chunk.data.len() > MAX_CHUNK_LEN => {
                Err(InvalidMessage::new(
                    "data",
                    format!(
                        "chunk of {} bytes, at most {MAX_CHUNK_LEN}",
                        chunk.data.len()
                    ),
                ))
            }
            ExecEvent::Output(_) => Ok(()),
            ExecEvent::Exit(exit) => exit.validate(),
        }
    }
}
