//! The hardened container and workspace volume of one session, as engine requests.
//!
//! Every setting here is asserted by the `hardening` integration test against
//! `docker inspect` of a live container.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType, MountVolumeOptions, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use orien_protocol::{NodeId, SessionId, ToolName};

use crate::tool::Tool;
use crate::workspace_path::WORKSPACE_MOUNT;

/// Label naming the provider node that owns a container or volume.
pub const LABEL_NODE: &str = "orien.node";
/// Label naming the session a container or volume belongs to.
pub const LABEL_SESSION: &str = "orien.session";
/// Label naming the tool a session container runs.
pub const LABEL_TOOL: &str = "orien.tool";
/// The user every tool runs as (`nobody`), never root.
pub const SANDBOX_USER: &str = "65534:65534";

/// Names of a session's engine objects. The node id is part of the name so two
/// providers sharing an engine never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionNames {
    pub(crate) container: String,
    pub(crate) volume: String,
}

impl SessionNames {
    /// The names of a session's first container (of the tool it opened on) and its
    /// workspace.
    pub(crate) fn new(node: &NodeId, session: &SessionId) -> Self {
        Self {
            container: format!("orien-{}-{session}", hex_prefix(node.as_bytes())),
            volume: format!("{}{session}", Self::workspace_prefix(node)),
        }
    }

    /// What the workspace names of `node`'s sessions start with (the session id follows).
    pub(crate) fn workspace_prefix(node: &NodeId) -> String {
        format!("orien-ws-{}-", hex_prefix(node.as_bytes()))
    }

    /// The names of the container running `tool` in a session opened on another tool:
    /// the same workspace.
    pub(crate) fn for_tool(node: &NodeId, session: &SessionId, tool: &ToolName) -> Self {
        let first = Self::new(node, session);
        Self {
            container: format!("{}-{tool}", first.container),
            volume: first.volume,
        }
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn labels(node: &NodeId, session: &SessionId, tool: &Tool) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_NODE.to_owned(), node.to_string()),
        (LABEL_SESSION.to_owned(), session.to_string()),
        (LABEL_TOOL.to_owned(), tool.name().to_string()),
    ])
}

/// The workspace: a tmpfs volume of the tool's quota, owned by the sandbox user. The
/// kernel enforces the size and it lives in memory, so no session can fill the host's
/// disk; `noexec` keeps uploaded files from being run as programs.
pub(crate) fn workspace_volume(
    name: &str,
    tool: &Tool,
    labels: HashMap<String, String>,
) -> VolumeCreateRequest {
    let options = format!(
        "size={},uid=65534,gid=65534,mode=0700,nosuid,nodev,noexec",
        tool.limits().workspace_bytes
    );
    VolumeCreateRequest {
        name: Some(name.to_owned()),
        driver: Some("local".to_owned()),
        driver_opts: Some(HashMap::from([
            ("type".to_owned(), "tmpfs".to_owned()),
            ("device".to_owned(), "tmpfs".to_owned()),
            ("o".to_owned(), options),
        ])),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Where a session's `/workspace` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkspaceMount {
    /// The engine's tmpfs volume of this name ([`workspace_volume`]).
    Volume(String),
    /// A disk-backed workspace mounted on the host at this path (`crate::disk`); its
    /// `nosuid,nodev,noexec` carry over to the bind mount.
    Disk(crate::disk::DiskWorkspace),
}

impl WorkspaceMount {
    fn mount(&self) -> Mount {
        let (source, typ, volume_options, bind_options) = match self {
            WorkspaceMount::Volume(name) => (
                name.clone(),
                MountType::VOLUME,
                Some(MountVolumeOptions {
                    no_copy: Some(true),
                    ..Default::default()
                }),
                None,
            ),
            WorkspaceMount::Disk(disk) => (
                disk.files.to_string_lossy().into_owned(),
                MountType::BIND,
                None,
                Some(MountBindOptions {
                    propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                    non_recursive: Some(true),
                    ..Default::default()
                }),
            ),
        };
        Mount {
            target: Some(WORKSPACE_MOUNT.to_owned()),
            source: Some(source),
            typ: Some(typ),
            read_only: Some(false),
            volume_options,
            bind_options,
            ..Default::default()
        }
    }
}

/// The session container: idle until calls arrive as execs.
pub(crate) fn session_container(
    workspace: &WorkspaceMount,
    tool: &Tool,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let limits = tool.limits();
    let memory = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
    let open_files = i64::from(tool.open_files());
    let host_config = HostConfig {
        network_mode: Some("none".to_owned()),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            format!(
                "rw,noexec,nosuid,nodev,size={},mode=1777",
                limits.tmpfs_bytes
            ),
        )])),
        mounts: Some(vec![workspace.mount()]),
        memory: Some(memory),
        // Equal to `memory`: no swap.
        memory_swap: Some(memory),
        nano_cpus: Some(i64::from(limits.cpu_millis) * 1_000_000),
        pids_limit: Some(i64::from(limits.pids)),
        cap_drop: Some(vec!["ALL".to_owned()]),
        // Only adds a restriction; the engine's default seccomp and AppArmor profiles
        // stay in force wherever the host has them.
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        ipc_mode: Some("private".to_owned()),
        devices: Some(Vec::new()),
        privileged: Some(false),
        ulimits: Some(vec![
            ResourcesUlimits {
                name: Some("nofile".to_owned()),
                soft: Some(open_files),
                hard: Some(open_files),
            },
            ResourcesUlimits {
                name: Some("core".to_owned()),
                soft: Some(0),
                hard: Some(0),
            },
        ]),
        // A minimal init reaps the zombies of killed calls.
        init: Some(true),
        // Output goes to the caller, never to the engine's log files on disk.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".to_owned()),
            config: None,
        }),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        auto_remove: Some(false),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(tool.image().to_owned()),
        cmd: Some(tool.idle_command().to_vec()),
        user: Some(SANDBOX_USER.to_owned()),
        working_dir: Some(WORKSPACE_MOUNT.to_owned()),
        env: Some(Vec::new()),
        labels: Some(labels),
        network_disabled: Some(true),
        stop_signal: Some("SIGKILL".to_owned()),
        stop_timeout: Some(0),
        host_config: Some(host_config),
        ..Default::default()
    }
}
