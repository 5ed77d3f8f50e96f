//! # orien-provider
//!
//! The provider side of ORIEN: a whitelist of tools read from TOML, JSON arguments
//! validated against each tool's schema and turned into an argv (never a shell), and
//! a hardened Docker container per session in which every call runs as an exec,
//! streamed, capped, timed out, OOM-checked and metered.
//!
//! ```no_run
//! use std::sync::Arc;
//! use orien_protocol::{ExecId, NodeKey, SystemClock, ToolName};
//! use orien_provider::{Provider, ProviderConfig, WorkspacePath};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (config, tools) = ProviderConfig::load("configs/provider.example.toml".as_ref())?;
//! let provider = Provider::start(&config.engine, tools, NodeKey::generate().node_id()).await?;
//! let _reaper = provider.spawn_reaper();
//!
//! let session = provider.open(&ToolName::new("sha256")?).await?; // warm if one is ready
//! session.upload(&WorkspacePath::new("data.txt")?, b"hello\n").await?;
//! let result = session
//!     .exec(ExecId::random(), serde_json::json!({"file": "data.txt"}), Arc::new(SystemClock::new()))
//!     .collect_output()
//!     .await;
//! println!("{:?}: {}", result.exit.outcome, String::from_utf8_lossy(&result.stdout));
//! session.close().await?;
//! provider.shutdown().await; // removes the warm sandboxes
//! # Ok(()) }
//! ```
//!
//! Design notes, measurements and security findings are in the crate's README.

mod archive;
mod cgroup;
pub mod config;
mod container;
mod disk;
pub mod doctor;
pub mod engine;
pub mod error;
mod exec;
mod host_files;
pub mod images;
pub mod model;
mod pool;
mod provider;
mod reaper;
mod sandbox;
mod session;
pub mod tool;
mod workspace;
pub mod workspace_path;

pub use config::{ByteSize, EngineConfig, ProfileConfig, ProviderConfig, ToolConfig, WorkspaceOn};
pub use container::{LABEL_NODE, LABEL_SESSION, LABEL_TOOL, SANDBOX_USER};
pub use disk::DiskError;
pub use engine::{Engine, EngineError, EngineInfo};
pub use error::{MissingImage, ProviderError};
pub use exec::{ExecResult, ExecStream};
pub use provider::Provider;
pub use reaper::{ReapReport, Reaper};
pub use sandbox::{Sandbox, SandboxLoad, SandboxSession};
pub use session::SessionSandbox;
pub use tool::{InvalidArguments, Tool};
pub use workspace::{EntryKind, MAX_ARCHIVE_ENTRIES, WorkspaceEntry};
pub use workspace_path::{InvalidPath, WORKSPACE_MOUNT, WorkspacePath};
