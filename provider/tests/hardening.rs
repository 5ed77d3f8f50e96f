//! `docker inspect` of a live session container shows every hardening setting, and the
//! process inside sees them too, whether the container was made for the session, taken
//! warm from the pool, or made for another tool the session runs over its workspace.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, sh, stdout};
use orien_protocol::{ExecId, ExecOutcome, SystemClock, ToolName};
use orien_provider::{LABEL_NODE, LABEL_SESSION, LABEL_TOOL, SessionSandbox, WorkspacePath};
use serde_json::json;

#[tokio::test]
async fn live_container_carries_every_hardening_setting() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    assert_hardened(&h, &s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn warm_sandboxes_carry_every_hardening_setting_and_serve_one_session_each() {
    let h = Harness::start_warm(1).await;
    let tool = orien_protocol::ToolName::new("sh").unwrap();
    let warmed = |h: &Harness| h.provider.warm_sandboxes().get(&tool).copied() == Some(1);
    assert!(
        eventually(|| warmed(&h)).await,
        "the pool warms a sandbox of each tool"
    );
    let docker = bollard::Docker::connect_with_socket_defaults().unwrap();

    // A session takes the warm sandbox (whose id becomes the session's), and the pool
    // refills behind it with another container.
    let s = h.provider.open(&tool).await.unwrap();
    assert_eq!(
        h.provider.warm_sandboxes().get(&tool).copied(),
        Some(0),
        "the warm sandbox was taken"
    );
    assert_eq!(h.provider.live_sessions(), vec![s.id()]);
    assert_hardened(&h, &s).await;
    assert!(eventually(|| warmed(&h)).await, "the pool refills");
    let first = s.container_name().to_owned();
    s.close().await.unwrap();
    assert!(
        docker.inspect_container(&first, None).await.is_err(),
        "a warm sandbox is removed with its session, never handed to another"
    );
    let next = h.open("sh").await;
    assert_ne!(next.container_name(), first);
    assert_hardened(&h, &next).await;
    next.close().await.unwrap();

    // Shutting the pool down removes the warm sandboxes; nothing of the node is left.
    h.provider.shutdown().await;
    assert!(h.provider.warm_sandboxes().values().all(|n| *n == 0));
    let node = format!("{LABEL_NODE}={}", h.node);
    let filters = std::collections::HashMap::from([("label", vec![node.as_str()])]);
    let left = docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Polls `check` for up to a minute (the engine may be slow on a busy machine).
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::time::Instant::now() < give_up {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    check()
}

/// `docker inspect` of `s`'s container and workspace, and what a process inside sees.
async fn assert_hardened(h: &Harness, s: &SessionSandbox) {
    assert_container_hardened(h, s, s.container_name(), s.tool()).await;

    // And from inside: who the process is, what it may do, what it sees.
    let r = sh(
        s,
        "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; \
         ulimit -n; cat /proc/net/dev | tail -n +3 | cut -d: -f1; ls /dev",
    )
    .await;
    let out = stdout(&r);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(&lines[..2], ["65534", "65534"], "{out}");
    assert!(lines.contains(&"CapEff:\t0000000000000000"), "{out}");
    assert!(lines.contains(&"CapBnd:\t0000000000000000"), "{out}");
    assert!(lines.contains(&"NoNewPrivs:\t1"), "{out}");
    assert!(lines.contains(&"256"), "{out}");
    assert!(lines.contains(&"lo"), "{out}");
    assert!(
        !out.contains("eth0"),
        "no network interface but loopback: {out}"
    );
    for dev in ["sda", "vda", "nvme0", "mem", "kmsg"] {
        assert!(!lines.contains(&dev), "device {dev} visible: {out}");
    }
}

/// `docker inspect` of one of `s`'s containers, running `tool`, and of the workspace it
/// mounts (the session's, sized by the tool the session opened on).
async fn assert_container_hardened(
    h: &Harness,
    s: &SessionSandbox,
    container: &str,
    tool: &orien_provider::Tool,
) {
    let docker = bollard::Docker::connect_with_socket_defaults().unwrap();
    let c = docker.inspect_container(container, None).await.unwrap();
    assert_eq!(c.state.as_ref().unwrap().running, Some(true));
    let config = c.config.unwrap();
    let host = c.host_config.unwrap();
    let limits = *tool.limits();

    assert_eq!(config.user.as_deref(), Some("65534:65534"), "non-root user");
    assert_eq!(config.network_disabled, Some(true));
    assert_eq!(host.network_mode.as_deref(), Some("none"), "no network");
    assert_eq!(host.readonly_rootfs, Some(true), "read-only root");
    let tmpfs = host.tmpfs.unwrap();
    let tmp = &tmpfs["/tmp"];
    assert!(
        tmp.contains(&format!("size={}", limits.tmpfs_bytes)),
        "{tmp}"
    );
    assert!(
        tmp.contains("noexec") && tmp.contains("nosuid") && tmp.contains("nodev"),
        "{tmp}"
    );
    assert_eq!(host.memory, Some(limits.memory_bytes as i64));
    assert_eq!(
        host.memory_swap,
        Some(limits.memory_bytes as i64),
        "no swap"
    );
    assert_eq!(
        host.nano_cpus,
        Some(i64::from(limits.cpu_millis) * 1_000_000)
    );
    assert_eq!(host.pids_limit, Some(i64::from(limits.pids)));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    let security = host.security_opt.unwrap();
    assert!(
        security.iter().any(|o| o.starts_with("no-new-privileges")),
        "{security:?}"
    );
    assert!(
        !security.iter().any(|o| o.contains("unconfined")),
        "seccomp/apparmor are never turned off: {security:?}"
    );
    assert_eq!(host.privileged, Some(false));
    assert!(host.devices.unwrap_or_default().is_empty(), "no devices");
    assert_eq!(host.ipc_mode.as_deref(), Some("private"));
    let ulimits = host.ulimits.unwrap();
    let nofile = ulimits
        .iter()
        .find(|u| u.name.as_deref() == Some("nofile"))
        .unwrap();
    assert_eq!((nofile.soft, nofile.hard), (Some(256), Some(256)));
    let labels = config.labels.unwrap();
    assert_eq!(labels[LABEL_NODE], h.node.to_string());
    assert_eq!(labels[LABEL_SESSION], s.id().to_string());
    assert_eq!(labels[LABEL_TOOL], tool.name().as_str());
    let mounts = c.mounts.unwrap();
    let ws = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/workspace"))
        .unwrap();
    assert_eq!(ws.name.as_deref(), Some(s.volume_name()));
    assert_eq!(ws.rw, Some(true));
    let volume = docker.inspect_volume(s.volume_name()).await.unwrap();
    let opts = volume.options;
    assert_eq!(
        opts["type"], "tmpfs",
        "workspace lives in a size-capped tmpfs"
    );
    assert!(
        opts["o"].contains(&format!("size={}", s.tool().limits().workspace_bytes)),
        "{opts:?}"
    );
    assert_eq!(volume.labels[LABEL_SESSION], s.id().to_string());
}

#[tokio::test]
async fn engine_security_options_are_reported() {
    let h = Harness::start().await;
    let info = h.provider.engine();
    assert!(!info.server_version.is_empty());
    // This host's engine has no seccomp/AppArmor; elsewhere they are listed. Either
    // way the provider reports what is missing rather than hiding it.
    let findings = info.security_findings();
    let has_seccomp = info
        .security_options
        .iter()
        .any(|o| o.contains("name=seccomp"));
    assert_eq!(
        has_seccomp,
        !findings.iter().any(|f| f.contains("seccomp")),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_session_runs_other_tools_over_its_workspace_each_in_a_hardened_container() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let file = WorkspacePath::new("data/words.txt").unwrap();
    s.upload(&file, b"alpha\nbeta\ngamma beta\n").await.unwrap();
    let run = |tool: &str, args: serde_json::Value| {
        let stream = s.exec_tool(
            ExecId::random(),
            &ToolName::new(tool).unwrap(),
            args,
            Arc::new(SystemClock::new()),
        );
        async move {
            tokio::time::timeout(Duration::from_secs(120), stream.collect_output())
                .await
                .expect("a call ends")
        }
    };
    // Three tools of the provider over the one workspace, the session's own included.
    let wc = run("wc", json!({"mode": "-l", "file": "data/words.txt"})).await;
    assert_eq!(wc.exit.outcome, ExecOutcome::Exited, "{:?}", wc.exit);
    assert_eq!(stdout(&wc).split_whitespace().next(), Some("3"));
    let grep = run("grep", json!({"pattern": "beta", "file": "data/words.txt"})).await;
    assert_eq!(stdout(&grep), "beta\ngamma beta\n");
    let own = run("sh", json!({"script": "cat data/words.txt | wc -c"})).await;
    assert_eq!(stdout(&own).trim(), "22");
    // A second call of a tool reuses its container.
    let again = run("wc", json!({"file": "data/words.txt"})).await;
    assert_eq!(again.exit.exit_code, Some(0));
    let containers = s.tool_containers().await;
    assert_eq!(containers.len(), 2, "{containers:?}");
    let tools = h.provider.tools().collect::<Vec<_>>();
    for name in &containers {
        let tool = tools
            .iter()
            .find(|t| name.ends_with(&format!("-{}", t.name())))
            .unwrap();
        assert_container_hardened(&h, &s, name, tool).await;
    }
    // What a tool writes, the others read: the workspace is the session's, not the tool's.
    let written = run("sh", json!({"script": "echo from-sh > data/out.txt"})).await;
    assert_eq!(written.exit.exit_code, Some(0));
    let read = run("grep", json!({"pattern": "from", "file": "data/out.txt"})).await;
    assert_eq!(stdout(&read), "from-sh\n");
    // A tool this provider does not sell never runs.
    let unknown = run("curl", json!({})).await;
    assert!(
        matches!(unknown.exit.outcome, ExecOutcome::InvalidArguments { .. }),
        "{:?}",
        unknown.exit
    );

    // Closing removes every container of the session and its workspace.
    let docker = bollard::Docker::connect_with_socket_defaults().unwrap();
    let volume = s.volume_name().to_owned();
    let first = s.container_name().to_owned();
    s.close().await.unwrap();
    for name in containers.iter().chain([&first]) {
        assert!(
            docker.inspect_container(name, None).await.is_err(),
            "{name} left"
        );
    }
    assert!(
        docker.inspect_volume(&volume).await.is_err(),
        "workspace left"
    );
}
