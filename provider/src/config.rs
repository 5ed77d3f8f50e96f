//! The provider configuration file (TOML): engine settings and the tool whitelist.
//!
//! ```toml
//! [engine]
//! socket = "/var/run/docker.sock"
//!
//! [tools.sha256]
//! description = "SHA-256 of a workspace file"
//! version = "1.36.1"
//! image = "orien/busybox:1"
//! argv = ["sha256sum", "--", "{file}"]
//! schema = '''{"type": "object", "additionalProperties": false, "required": ["file"],
//!              "properties": {"file": {"type": "string", "format": "workspace-path"}}}'''
//!
//! [tools.sha256.limits]
//! max_exec_ms = 10_000
//! cpus = 0.5
//! memory = "64MiB"
//! pids = 32
//! tmpfs = "16MiB"
//! output = "1MiB"
//! workspace = "64MiB"
//! concurrent_execs = 2
//!
//! [tools.sha256.pricing]
//! session_per_minute = "0.001"
//! exec_per_minute = "0.010"
//! ```
//!
//! Every table refuses unknown keys. Loading names the file, the tool and the key of
//! the first problem (see [`ConfigError`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use orien_protocol::{ImageDigest, Millis, Pricing, ResourceLimits, ToolName, Usdc};
use serde::Deserialize;

use crate::tool::{Tool, ToolError};

/// Upper bounds a config value may not exceed: generous, but they stop typos such as
/// a memory limit in bytes meant as megabytes from reaching the engine.
pub mod bounds {
    /// Longest per-call wall-time limit: one hour.
    pub const MAX_EXEC_MS: u64 = 3_600_000;
    /// Most CPUs one tool may use.
    pub const MAX_CPUS: f64 = 64.0;
    /// Smallest memory limit the engine accepts (6 MiB), and the largest we accept.
    pub const MEMORY: (u64, u64) = (6 << 20, 64 << 30);
    /// Most processes and threads.
    pub const MAX_PIDS: u32 = 4096;
    /// Largest `/tmp` tmpfs and largest `/workspace`.
    pub const MAX_TMPFS: u64 = 16 << 30;
    /// Smallest and largest disk-backed `/workspace` (an ext4 filesystem needs a few
    /// MiB of its own).
    pub const MIN_DISK_WORKSPACE: u64 = 8 << 20;
    /// Largest disk-backed `/workspace`.
    pub const MAX_DISK_WORKSPACE: u64 = 4 << 40;
    /// Largest output cap per stream.
    pub const MAX_OUTPUT: u64 = 1 << 30;
    /// Most concurrent executions per session.
    pub const MAX_CONCURRENT: u32 = 64;
}

/// A size in bytes, written in TOML as an integer or as a string with a binary unit
/// (`"64MiB"`, `"512 KiB"`, `"1GiB"`, `"100B"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size such as \"64MiB\""))?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{s}`: use B, KiB, MiB or GiB"
                ));
            }
        };
        n.checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The whole provider configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// How to reach the Docker engine.
    #[serde(default)]
    pub engine: EngineConfig,
    /// What the provider says of itself in the profile it publishes.
    #[serde(default)]
    pub profile: ProfileConfig,
    /// The tool whitelist, by tool name. Nothing outside it runs.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolConfig>,
}

/// What a provider says of itself in its signed profile (the node adds its tools,
/// prices, payout address and counters).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// The name people see, at most 64 bytes (absent: "orien provider" and the end of
    /// the node id).
    pub name: Option<String>,
    /// What the provider offers, at most 1024 bytes.
    #[serde(default)]
    pub description: String,
}

/// How to reach the Docker engine and how to treat it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Path of the engine's unix socket.
    #[serde(default = "EngineConfig::default_socket")]
    pub socket: PathBuf,
    /// Seconds before an engine request is abandoned.
    #[serde(default = "EngineConfig::default_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts to reach the engine at start (with exponential backoff) before giving up.
    #[serde(default = "EngineConfig::default_connect_attempts")]
    pub connect_attempts: u32,
    /// Seconds between two passes of the reaper.
    #[serde(default = "EngineConfig::default_reap_interval_secs")]
    pub reap_interval_secs: u64,
    /// Hardened sandboxes kept created and started per tool, ready for the next
    /// sessions (0 turns the pool off; at most [`MAX_WARM_POOL`]). Each serves one
    /// session and is removed with it; the pool refills behind it.
    #[serde(default = "EngineConfig::default_warm_pool")]
    pub warm_pool: usize,
    /// Directory of the disk-backed workspaces (tools with `workspace_on = "disk"`):
    /// one image file and mount point per session. The node's default is
    /// `<data dir>/workspaces`.
    #[serde(default)]
    pub workspaces: Option<PathBuf>,
}

/// Most warm sandboxes kept per tool.
pub const MAX_WARM_POOL: usize = 8;

impl EngineConfig {
    /// The directory of disk-backed workspaces: `workspaces` when set, else
    /// `<data_dir>/workspaces`.
    pub fn workspaces_in(&self, data_dir: &Path) -> PathBuf {
        self.workspaces
            .clone()
            .unwrap_or_else(|| data_dir.join("workspaces"))
    }

    fn default_socket() -> PathBuf {
        PathBuf::from("/var/run/docker.sock")
    }
    fn default_timeout_secs() -> u64 {
        120
    }
    fn default_connect_attempts() -> u32 {
        5
    }
    fn default_reap_interval_secs() -> u64 {
        60
    }
    fn default_warm_pool() -> usize {
        1
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            socket: Self::default_socket(),
            timeout_secs: Self::default_timeout_secs(),
            connect_attempts: Self::default_connect_attempts(),
            reap_interval_secs: Self::default_reap_interval_secs(),
            warm_pool: Self::default_warm_pool(),
            workspaces: None,
        }
    }
}

/// One whitelisted tool, as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// What the tool does, for humans and agents.
    pub description: String,
    /// Version of the tool, free text.
    pub version: String,
    /// Image reference (`name:tag`, or `name@sha256:…` to pin it).
    pub image: String,
    /// Expected image id (`sha256:…`); the provider refuses to start when the local
    /// image differs. Recommended for images that are built locally.
    #[serde(default)]
    pub image_digest: Option<ImageDigest>,
    /// The argv template. An element that is exactly `{name}` is replaced by the
    /// argument `name` (and dropped when an optional argument is absent); every other
    /// element is passed as written.
    pub argv: Vec<String>,
    /// JSON Schema of the arguments, as a TOML table or as inline JSON text.
    pub schema: SchemaSource,
    /// The command that keeps a session container alive between calls.
    #[serde(default = "ToolConfig::default_idle_command")]
    pub idle_command: Vec<String>,
    /// Resource limits of every call.
    pub limits: LimitsConfig,
    /// Price per minute.
    pub pricing: PricingConfig,
}

impl ToolConfig {
    fn default_idle_command() -> Vec<String> {
        vec!["sleep".to_owned(), "2147483647".to_owned()]
    }
}

/// A JSON Schema given as a TOML table or as JSON text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SchemaSource {
    /// JSON text.
    Json(String),
    /// A TOML table with the same structure.
    Table(toml::Table),
}

impl SchemaSource {
    /// The schema as a JSON value.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        match self {
            SchemaSource::Json(text) => {
                serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
            }
            SchemaSource::Table(table) => {
                serde_json::to_value(table).map_err(|e| format!("not representable as JSON: {e}"))
            }
        }
    }
}

/// Limits of a tool, as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall-time limit of one call in milliseconds; the process is killed at it.
    pub max_exec_ms: u64,
    /// CPUs (fractions allowed: `0.5`).
    pub cpus: f64,
    /// Memory limit (swap disabled).
    pub memory: ByteSize,
    /// Processes and threads.
    pub pids: u32,
    /// Size of the tmpfs at `/tmp`.
    pub tmpfs: ByteSize,
    /// Cap of each of stdout and stderr per call.
    pub output: ByteSize,
    /// Size quota of `/workspace`.
    pub workspace: ByteSize,
    /// Where `/workspace` lives: `"memory"` (a tmpfs, the default) or `"disk"` (a
    /// filesystem of its own per session on the provider's disk, for workspaces larger
    /// than RAM should hold; needs root, loop devices and `mkfs.ext4`).
    #[serde(default)]
    pub workspace_on: WorkspaceOn,
    /// Largest single file accepted by an upload (defaults to the workspace quota).
    #[serde(default)]
    pub upload: Option<ByteSize>,
    /// Calls that may run at once in one session.
    pub concurrent_execs: u32,
    /// Open files per process (`RLIMIT_NOFILE`).
    #[serde(default = "LimitsConfig::default_open_files")]
    pub open_files: u32,
}

impl LimitsConfig {
    fn default_open_files() -> u32 {
        256
    }
}

/// Where a tool's `/workspace` lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceOn {
    /// A tmpfs of the quota's size: in RAM, gone with the container's workspace volume.
    #[default]
    Memory,
    /// An ext4 image of the quota's size on the provider's disk, loop-mounted
    /// `nosuid,nodev,noexec` for the session (`[engine] workspaces` says where).
    Disk,
}

/// Prices of a tool, as written in the file (decimal USDC strings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Price of one minute of open session.
    pub session_per_minute: Usdc,
    /// Price of one minute of execution.
    pub exec_per_minute: Usdc,
    /// Price of keeping one GiB of a call's artefacts for the session and as long after
    /// it as the node keeps them (`--keep-artefacts-secs`); free when absent.
    #[serde(default)]
    pub artefact_per_gib: Usdc,
}

/// Why a configuration could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the format.
    #[error("{file}: {key}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// Dotted path of the offending key (`tools.sha256.limits.cpus`).
        key: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A tool's values are well-formed but not acceptable.
    #[error("{file}: tool `{tool}`: {key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The tool.
        tool: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ProviderConfig {
    /// Reads and checks a configuration file; see [`ProviderConfig::parse`].
    pub fn load(path: &Path) -> Result<(Self, Vec<Tool>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text (`file` is only used in messages) and checks every
    /// tool: limits in range, schema compiles, template placeholders declared.
    pub fn parse(text: &str, file: &Path) -> Result<(Self, Vec<Tool>), ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            key: "(document)".to_owned(),
            message: e.to_string().trim().to_owned(),
        })?;
        let config: ProviderConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Syntax {
                file: file.to_owned(),
                key: e.path().to_string(),
                message: e.inner().to_string().trim().to_owned(),
            })?;
        if config.engine.warm_pool > MAX_WARM_POOL {
            return Err(ConfigError::Syntax {
                file: file.to_owned(),
                key: "engine.warm_pool".to_owned(),
                message: format!(
                    "{} warm sandboxes per tool; at most {MAX_WARM_POOL} (0 turns the pool off)",
                    config.engine.warm_pool
                ),
            });
        }
        let profile_error = |key: &str, message: String| ConfigError::Syntax {
            file: file.to_owned(),
            key: format!("profile.{key}"),
            message,
        };
        if let Some(name) = &config.profile.name {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return Err(profile_error(
                    "name",
                    "must not be empty or hold control characters".into(),
                ));
            }
            if name.len() > orien_protocol::profile::MAX_DISPLAY_NAME_LEN {
                return Err(profile_error(
                    "name",
                    format!(
                        "{} bytes; at most {}",
                        name.len(),
                        orien_protocol::profile::MAX_DISPLAY_NAME_LEN
                    ),
                ));
            }
        }
        if config.profile.description.len() > orien_protocol::profile::MAX_PROFILE_DESCRIPTION_LEN {
            return Err(profile_error(
                "description",
                format!(
                    "{} bytes; at most {}",
                    config.profile.description.len(),
                    orien_protocol::profile::MAX_PROFILE_DESCRIPTION_LEN
                ),
            ));
        }
        let mut tools = Vec::with_capacity(config.tools.len());
        for (name, tool) in &config.tools {
            let invalid = |key: &str, message: String| ConfigError::Invalid {
                file: file.to_owned(),
                tool: name.clone(),
                key: key.to_owned(),
                message,
            };
            let tool_name =
                ToolName::new(name.clone()).map_err(|e| invalid("name", e.to_string()))?;
            let limits = tool
                .limits
                .to_protocol()
                .map_err(|(key, msg)| invalid(&format!("limits.{key}"), msg))?;
            let compiled = Tool::new(tool_name, tool, limits).map_err(|e| match e {
                ToolError::Schema(msg) => invalid("schema", msg),
                ToolError::Template(msg) => invalid("argv", msg),
                ToolError::IdleCommand(msg) => invalid("idle_command", msg),
                ToolError::Field { key, message } => invalid(key, message),
            })?;
            tools.push(compiled);
        }
        Ok((config, tools))
    }
}

impl LimitsConfig {
    /// The limits as the protocol advertises them, or the key and reason of the first
    /// value out of range.
    pub fn to_protocol(&self) -> Result<ResourceLimits, (&'static str, String)> {
        fn range<T: PartialOrd + fmt::Display>(
            key: &'static str,
            value: T,
            min: T,
            max: T,
        ) -> Result<(), (&'static str, String)> {
            if value < min || value > max {
                return Err((key, format!("{value} is outside {min}..={max}")));
            }
            Ok(())
        }
        range("max_exec_ms", self.max_exec_ms, 1, bounds::MAX_EXEC_MS)?;
        if !self.cpus.is_finite() || self.cpus < 0.01 || self.cpus > bounds::MAX_CPUS {
            return Err((
                "cpus",
                format!("{} is outside 0.01..={}", self.cpus, bounds::MAX_CPUS),
            ));
        }
        range("memory", self.memory.0, bounds::MEMORY.0, bounds::MEMORY.1)?;
        range("pids", self.pids, 2, bounds::MAX_PIDS)?;
        range("tmpfs", self.tmpfs.0, 1 << 20, bounds::MAX_TMPFS)?;
        range("output", self.output.0, 1, bounds::MAX_OUTPUT)?;
        let most = match self.workspace_on {
            WorkspaceOn::Memory => bounds::MAX_TMPFS,
            WorkspaceOn::Disk => bounds::MAX_DISK_WORKSPACE,
        };
        let least = match self.workspace_on {
            WorkspaceOn::Memory => 1 << 20,
            WorkspaceOn::Disk => bounds::MIN_DISK_WORKSPACE,
        };
        range("workspace", self.workspace.0, least, most)?;
        if let Some(upload) = self.upload {
            range("upload", upload.0, 1, self.workspace.0)?;
        }
        range(
            "concurrent_execs",
            self.concurrent_execs,
            1,
            bounds::MAX_CONCURRENT,
        )?;
        range("open_files", self.open_files, 16, 65_536)?;
        // Rounded to the nearest thousandth of a CPU; the range check above keeps it ≥ 10.
        let cpu_millis = (self.cpus * 1000.0).round() as u32;
        Ok(ResourceLimits {
            max_exec: Millis(self.max_exec_ms),
            cpu_millis,
            memory_bytes: self.memory.0,
            pids: self.pids,
            tmpfs_bytes: self.tmpfs.0,
            output_bytes: self.output.0,
            workspace_bytes: self.workspace.0,
            concurrent_execs: self.concurrent_execs,
        })
    }
}

impl PricingConfig {
    /// The prices as the protocol advertises them.
    pub fn to_protocol(&self) -> Pricing {
        Pricing {
            session_per_minute: self.session_per_minute,
            exec_per_minute: self.exec_per_minute,
            artefact_per_gib: self.artefact_per_gib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_binary_units() {
        assert_eq!("64MiB".parse::<ByteSize>(), Ok(ByteSize(64 << 20)));
        assert_eq!("512 KiB".parse::<ByteSize>(), Ok(ByteSize(512 << 10)));
        assert_eq!("7".parse::<ByteSize>(), Ok(ByteSize(7)));
        assert!("64MB".parse::<ByteSize>().is_err());
        assert!("-1".parse::<ByteSize>().is_err());
        assert!("99999999999999GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    }

    #[test]
    fn a_profile_is_read_and_held_to_the_protocols_limits() {
        let file = Path::new("p.toml");
        let (config, _) = ProviderConfig::parse(
            "[profile]\nname = \"Ada\"\ndescription = \"text tools\"\n",
            file,
        )
        .unwrap();
        assert_eq!(config.profile.name.as_deref(), Some("Ada"));
        assert_eq!(config.profile.description, "text tools");
        let (config, _) = ProviderConfig::parse("", file).unwrap();
        assert_eq!(config.profile.name, None);
        for (text, key) in [
            ("[profile]\nname = \"  \"\n", "profile.name"),
            (
                &format!("[profile]\nname = \"{}\"\n", "x".repeat(65)),
                "profile.name",
            ),
            (
                &format!("[profile]\ndescription = \"{}\"\n", "x".repeat(1025)),
                "profile.description",
            ),
            ("[profile]\nnick = \"Ada\"\n", "profile"),
        ] {
            match ProviderConfig::parse(text, file) {
                Err(ConfigError::Syntax { key: found, .. }) => {
                    assert!(found.starts_with(key), "{found} for {text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
