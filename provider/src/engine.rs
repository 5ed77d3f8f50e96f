//! The connection to the Docker engine: reaching it (with retries), reporting what it
//! enforces, and turning its failures into errors that say what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use tracing::{info, warn};

use crate::config::EngineConfig;

/// How to start an engine that does not answer; part of every [`EngineError::Unreachable`].
pub const START_HINT: &str = "start it with `sudo systemctl start docker` (or run `sudo dockerd &`), \
     or point `[engine] socket` in the provider config at the right socket";

/// A failure talking to the Docker engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Nothing answers on the socket.
    #[error("the Docker engine does not answer on {socket}: {detail}; {START_HINT}")]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// The last failure.
        detail: String,
    },
    /// The engine answered with an error.
    #[error("Docker engine refused `{operation}`: {detail}")]
    Refused {
        /// What was asked.
        operation: &'static str,
        /// The engine's message.
        detail: String,
    },
}

impl EngineError {
    /// Classifies a bollard error: an answer from the engine is [`EngineError::Refused`],
    /// anything else (no socket, connection reset, timeout) is [`EngineError::Unreachable`].
    pub(crate) fn from_bollard(
        operation: &'static str,
        socket: &Path,
        e: bollard::errors::Error,
    ) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Refused {
                operation,
                detail: format!("{status_code}: {message}"),
            },
            other => EngineError::Unreachable {
                socket: socket.to_owned(),
                detail: format!("{operation}: {other}"),
            },
        }
    }

    /// Whether the engine answered "no such object" (HTTP 404).
    pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    }
}

/// What the engine reported about itself at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// Engine version (`20.10.24`).
    pub server_version: String,
    /// API version negotiated with it.
    pub api_version: String,
    /// `1` or `2`.
    pub cgroup_version: String,
    /// Security options the engine applies (`name=seccomp,profile=builtin`, `name=apparmor`, …).
    pub security_options: Vec<String>,
}

impl EngineInfo {
    /// Security findings worth a warning: a missing seccomp or AppArmor/SELinux layer
    /// leaves the sandbox to namespaces, capabilities and cgroups alone.
    pub fn security_findings(&self) -> Vec<String> {
        let has = |name: &str| {
            self.security_options
                .iter()
                .any(|o| o.contains(&format!("name={name}")))
        };
        let mut findings = Vec::new();
        if !has("seccomp") {
            findings.push(
                "the engine applies no seccomp profile: containers can call every syscall the kernel offers"
                    .to_owned(),
            );
        }
        if !has("apparmor") && !has("selinux") {
            findings.push("the engine applies neither AppArmor nor SELinux confinement".to_owned());
        }
        if !has("userns") {
            findings.push(
                "user namespaces are off: the sandbox user 65534 is the host's uid 65534"
                    .to_owned(),
            );
        }
        findings
    }
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    socket: PathBuf,
    info: EngineInfo,
}

impl Engine {
    /// Connects to the engine, retrying `connect_attempts` times with exponential
    /// backoff (250 ms doubling, at most 5 s apart), then asks it who it is.
    pub async fn connect(config: &EngineConfig) -> Result<Self, EngineError> {
        let attempts = config.connect_attempts.max(1);
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match Self::connect_once(config).await {
                Ok(engine) => return Ok(engine),
                Err(e @ EngineError::Unreachable { .. }) if attempt < attempts => {
                    warn!(attempt, of = attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "docker engine unreachable");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect_once(config: &EngineConfig) -> Result<Self, EngineError> {
        let socket = config.socket.clone();
        let unreachable = |detail: String| EngineError::Unreachable {
            socket: socket.clone(),
            detail,
        };
        let path = socket
            .to_str()
            .ok_or_else(|| unreachable("the socket path is not UTF-8".to_owned()))?;
        let docker =
            Docker::connect_with_unix(path, config.timeout_secs, bollard::API_DEFAULT_VERSION)
                .map_err(|e| unreachable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| EngineError::from_bollard("ping", &socket, e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| EngineError::from_bollard("version", &socket, e))?;
        let system = docker
            .info()
            .await
            .map_err(|e| EngineError::from_bollard("info", &socket, e))?;
        let version = docker.client_version();
        let info = EngineInfo {
            server_version: system.server_version.unwrap_or_default(),
            api_version: format!("{}.{}", version.major_version, version.minor_version),
            cgroup_version: system
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            security_options: system.security_options.unwrap_or_default(),
        };
        info!(
            server = %info.server_version,
            api = %info.api_version,
            cgroup = %info.cgroup_version,
            security = ?info.security_options,
            "connected to the docker engine"
        );
        for finding in info.security_findings() {
            warn!(finding = %finding, "sandbox security finding (nothing is disabled by orien; fix it in the engine)");
        }
        Ok(Self {
            docker,
            socket,
            info,
        })
    }

    /// The bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The socket this engine answers on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the engine reported at start.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Maps a bollard error from `operation`.
    pub(crate) fn error(&self, operation: &'static str, e: bollard::errors::Error) -> EngineError {
        EngineError::from_bollard(operation, &self.socket, e)
    }
}
