//! The provider's error type.

use orien_protocol::{SessionId, ToolName};

use crate::engine::EngineError;
use crate::workspace_path::InvalidPath;

/// A failure of a provider operation. Failures of a call (`exec`) are not errors: they
/// end the call's event stream with an `ExecExit` whose outcome says what happened.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The engine is unreachable or refused a request.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No tool of that name is whitelisted.
    #[error("tool `{0}` is not in this provider's whitelist")]
    UnknownTool(ToolName),
    /// Images of whitelisted tools are missing; nothing was started.
    #[error("{}", missing_images_message(.0))]
    MissingImages(Vec<MissingImage>),
    /// A tool's image is not the one its config pins.
    #[error(
        "tool `{tool}`: image `{image}` is {found}, but the config pins {expected}; rebuild the image or update `image_digest`"
    )]
    ImageMismatch {
        /// The tool.
        tool: ToolName,
        /// The image reference.
        image: String,
        /// The pinned id.
        expected: String,
        /// The local id.
        found: String,
    },
    /// A session with this id is already open.
    #[error("session {0} is already open")]
    SessionExists(SessionId),
    /// The session was closed.
    #[error("session {0} is closed")]
    SessionClosed(SessionId),
    /// A workspace path was refused.
    #[error(transparent)]
    Path(#[from] InvalidPath),
    /// An upload or download is larger than allowed.
    #[error("{what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size (or the size reached when reading stopped).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The workspace quota is exhausted.
    #[error("the workspace is full (quota {quota} bytes): {detail}")]
    WorkspaceFull {
        /// The quota.
        quota: u64,
        /// The engine's message.
        detail: String,
    },
    /// An uploaded archive holds something other than regular files and directories.
    #[error(
        "upload refused: `{path}` is a {kind}; only regular files and directories are accepted"
    )]
    UnsafeEntry {
        /// The entry's path.
        path: String,
        /// What it is (symlink, hard link, device, fifo…).
        kind: String,
    },
    /// The path does not exist in the workspace.
    #[error("`{0}` does not exist in the workspace")]
    NotFound(String),
    /// The path is not a regular file.
    #[error("`{0}` is not a regular file")]
    NotAFile(String),
    /// A tar archive could not be read or written.
    #[error("archive: {0}")]
    Archive(#[from] std::io::Error),
    /// A file on the provider's own disk (a transfer's staged copy) could not be
    /// written or read; a full disk says so.
    #[error("the provider's disk: {0}")]
    HostDisk(std::io::Error),
    /// A disk-backed workspace could not be made.
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    /// A tool keeps its workspace on disk, but no directory for them is configured.
    #[error(
        "tool `{0}` keeps its workspace on disk (`workspace_on = \"disk\"`), but no directory for workspaces is set: set `[engine] workspaces` in the provider config"
    )]
    NoWorkspacesDir(ToolName),
}

/// A tool whose image is not present in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingImage {
    /// The tool.
    pub tool: ToolName,
    /// The image reference.
    pub image: String,
    /// The command that provides the image.
    pub fix: String,
}

impl MissingImage {
    /// Describes the missing `image` of `tool` with the command that provides it: the
    /// project's build script for `orien/<name>` images, `docker pull` otherwise.
    pub fn new(tool: ToolName, image: &str) -> Self {
        let repo = image.split(['@', ':']).next().unwrap_or(image);
        let fix = match repo.strip_prefix("orien/") {
            Some(name) => format!("configs/images/{name}/build"),
            None => format!("docker pull {image}"),
        };
        Self {
            tool,
            image: image.to_owned(),
            fix,
        }
    }
}

fn missing_images_message(missing: &[MissingImage]) -> String {
    let mut out = String::from("images of whitelisted tools are missing from the Docker engine:");
    for m in missing {
        out.push_str(&format!(
            "\n  tool `{}`: image `{}` — run `{}`",
            m.tool, m.image, m.fix
        ));
    }
    out.push_str("\n  or prepare them all: orien-node tools prepare <provider config>");
    out
}
