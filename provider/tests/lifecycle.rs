//! Session lifecycle on the real engine: close removes everything, the reaper removes
//! what a killed provider left, an engine that is down or an image that is missing is
//! reported with the command that fixes it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use common::{Harness, sh, stdout};
use orien_protocol::{
    ExecEvent, ExecId, ExecOutcome, ManualClock, NodeId, NodeKey, SessionId, Timestamp, ToolName,
};
use orien_provider::{
    EngineConfig, EngineError, LABEL_NODE, LABEL_SESSION, Provider, ProviderError,
};

const CHILD_ENV: &str = "ORIEN_PROVIDER_TEST_CHILD_NODE";

async fn containers_of(docker: &Docker, label: &str) -> Vec<String> {
    let filters = std::collections::HashMap::from([("label", vec![label])]);
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

async fn volume_exists(docker: &Docker, name: &str) -> bool {
    docker.inspect_volume(name).await.is_ok()
}

#[tokio::test]
async fn close_removes_container_and_workspace() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let docker = Docker::connect_with_socket_defaults().unwrap();
    let (container, volume) = (s.container_name().to_owned(), s.volume_name().to_owned());
    assert!(docker.inspect_container(&container, None).await.is_ok());
    assert!(volume_exists(&docker, &volume).await);
    assert_eq!(h.provider.live_sessions(), [s.id()]);
    s.close().await.unwrap();
    assert!(
        docker.inspect_container(&container, None).await.is_err(),
        "container left"
    );
    assert!(!volume_exists(&docker, &volume).await, "workspace left");
    assert!(h.provider.live_sessions().is_empty());
}

#[tokio::test]
async fn sessions_are_refused_for_unknown_tools_and_duplicate_ids() {
    let h = Harness::start().await;
    let err = h
        .provider
        .open_session(SessionId::random(), &ToolName::new("rm").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::UnknownTool(_)), "{err}");
    let s = h.open("echo").await;
    let err = h
        .provider
        .open_session(s.id(), &ToolName::new("echo").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::SessionExists(_)), "{err}");
    s.close().await.unwrap();
}

#[tokio::test]
async fn wall_time_comes_from_the_injected_clock_and_events_are_ordered() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let clock = Arc::new(ManualClock::new(Timestamp(0)));
    let mut stream = s.exec(
        ExecId::random(),
        serde_json::json!({"script": "echo one; echo two >&2"}),
        clock.clone(),
    );
    let mut events = Vec::new();
    while let Some(e) = stream.recv().await {
        events.push(e);
    }
    let (last, chunks) = events.split_last().unwrap();
    let ExecEvent::Exit(exit) = last else {
        panic!("last event is not the exit: {last:?}")
    };
    assert!(chunks.iter().all(|e| matches!(e, ExecEvent::Output(_))));
    assert_eq!(exit.outcome, ExecOutcome::Exited);
    // The manual clock never moved: the wall time is exactly zero.
    assert_eq!(exit.wall.get(), 0);
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (4, 4));
    s.close().await.unwrap();
}

#[tokio::test]
async fn cpu_time_is_metered_from_the_cgroup() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let r = sh(
        &s,
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo $i",
    )
    .await;
    assert_eq!(stdout(&r), "200000\n");
    assert!(
        r.exit.cpu.get() > 50,
        "cpu {} ms for a busy loop",
        r.exit.cpu
    );
    assert!(
        r.exit.cpu.get() <= r.exit.wall.get() + 50,
        "one process cannot use more CPU than wall at 0.5 CPU"
    );
    assert!(r.exit.peak_memory_bytes > 0);
    s.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_are_capped_per_session() {
    let h = Harness::start().await;
    let s = h.open("sh").await; // concurrent_execs = 2
    let clock: Arc<ManualClock> = Arc::new(ManualClock::new(Timestamp(0)));
    // Each call records the number of calls running beside it in the workspace.
    let script = "echo x >> /workspace/running; n=$(wc -l < /workspace/running); \
                  echo $n >> /workspace/peaks; sleep 1; sed -i '$d' /workspace/running";
    let streams: Vec<_> = (0..4)
        .map(|_| {
            s.exec(
                ExecId::random(),
                serde_json::json!({ "script": script }),
                clock.clone(),
            )
        })
        .collect();
    for stream in streams {
        let r = stream.collect_output().await;
        assert_eq!(r.exit.outcome, ExecOutcome::Exited, "{r:?}");
    }
    let peaks = String::from_utf8(s.download(&"peaks".parse().unwrap()).await.unwrap()).unwrap();
    let max: u32 = peaks
        .lines()
        .map(|l| l.trim().parse::<u32>().unwrap())
        .max()
        .unwrap();
    assert_eq!(peaks.lines().count(), 4);
    assert!(
        max <= 2,
        "more than concurrent_execs calls ran at once: {peaks}"
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn reaper_removes_containers_of_dead_sessions_periodically() {
    let node = NodeKey::generate().node_id();
    let mut text = common::config_text();
    text = text.replace("reap_interval_secs = 60", "reap_interval_secs = 1");
    let (config, tools) = common::parse_config(&text);
    let h = Harness::start_as(node).await; // cleans up the node at the end
    let provider = Provider::start(&config.engine, tools, node).await.unwrap();
    let _reaper = provider.spawn_reaper();
    let s = provider
        .open_session(SessionId::random(), &ToolName::new("echo").unwrap())
        .await
        .unwrap();
    let docker = Docker::connect_with_socket_defaults().unwrap();
    let label = format!("{LABEL_SESSION}={}", s.id());
    assert_eq!(containers_of(&docker, &label).await.len(), 1);
    // A live session survives reaper passes.
    let report = provider.reap().await.unwrap();
    assert_eq!(report.containers, 0);
    // A container and a workspace of a session this provider does not know (as a
    // crashed earlier run leaves them) are removed by the next periodic pass.
    let stray = SessionId::random();
    let labels = std::collections::HashMap::from([
        (LABEL_NODE.to_owned(), node.to_string()),
        (LABEL_SESSION.to_owned(), stray.to_string()),
    ]);
    let volume = format!("orien-test-stray-{stray}");
    docker
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(volume.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let created = docker
        .create_container(
            None,
            bollard::models::ContainerCreateBody {
                image: Some("orien/busybox:1".to_owned()),
                cmd: Some(vec!["sleep".to_owned(), "600".to_owned()]),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    let stray_label = format!("{LABEL_SESSION}={stray}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !containers_of(&docker, &stray_label).await.is_empty()
        || volume_exists(&docker, &volume).await
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the periodic reaper did not remove the stray"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The live session was left alone throughout.
    assert_eq!(containers_of(&docker, &label).await.len(), 1);
    s.close().await.unwrap();
    drop(h);
}

/// Entry point of the child process of the SIGKILL test: opens a session, starts a
/// long call, announces it, and waits to be killed.
#[tokio::test]
async fn child_process_holding_a_session() {
    let Ok(node) = std::env::var(CHILD_ENV) else {
        return; // Only runs as the child of `provider_killed_mid_call_leaves_nothing_after_restart`.
    };
    let node: NodeId = node.parse().unwrap();
    let (config, tools) = common::parse_config(&common::config_text());
    let provider = Provider::start(&config.engine, tools, node).await.unwrap();
    let s = provider
        .open_session(SessionId::random(), &ToolName::new("sh").unwrap())
        .await
        .unwrap();
    let mut stream = s.exec(
        ExecId::random(),
        serde_json::json!({"script": "echo started; sleep 3"}),
        Arc::new(orien_protocol::SystemClock::new()),
    );
    let first = stream.recv().await.unwrap();
    assert!(matches!(first, ExecEvent::Output(_)), "{first:?}");
    println!("READY {} {}", s.id(), s.container_name());
    tokio::time::sleep(Duration::from_secs(120)).await;
    panic!("the child was not killed");
}

#[tokio::test]
async fn provider_killed_mid_call_leaves_nothing_after_restart() {
    let node = NodeKey::generate().node_id();
    let _cleanup = scopeguard_node(node);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_holding_a_session",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, node.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines.next().expect("child ended before READY").unwrap();
        // libtest may print `test <name> ... ` in front of the child's own output.
        if let Some(at) = line.find("READY ") {
            break line[at + "READY ".len()..].to_owned();
        }
    };
    let (session, container) = ready.split_once(' ').unwrap();
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup runs in the child.
    child.wait().unwrap();

    let docker = Docker::connect_with_socket_defaults().unwrap();
    let inspect = docker.inspect_container(container, None).await.unwrap();
    assert_eq!(
        inspect.state.unwrap().running,
        Some(true),
        "the call's container outlived its provider"
    );

    // Restart: the same node starts again and its start-up reap removes the orphan (and
    // the child's warm sandboxes). No pool of its own: nothing of the node may be left.
    let (mut config, tools) = common::parse_config(&common::config_text());
    config.engine.warm_pool = 0;
    let restarted = Provider::start(&config.engine, tools, node).await.unwrap();
    assert!(
        docker.inspect_container(container, None).await.is_err(),
        "container of session {session} left"
    );
    let node_label = format!("{LABEL_NODE}={node}");
    assert!(containers_of(&docker, &node_label).await.is_empty());
    drop(restarted);
}

/// Removes everything of `node` when dropped (for tests that start providers by hand).
fn scopeguard_node(node: NodeId) -> NodeGuard {
    NodeGuard(node)
}

struct NodeGuard(NodeId);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let node = self.0;
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(Provider::start(&common::engine_config(), Vec::new(), node))
                .map(|_| ())
        })
        .join();
    }
}

#[tokio::test]
async fn engine_down_is_a_clear_error_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file that nobody listens on, and a path with no socket at all.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    for socket in [dead, dir.path().join("absent.sock")] {
        let config = EngineConfig {
            socket: socket.clone(),
            connect_attempts: 2,
            ..EngineConfig::default()
        };
        let err = Provider::start(&config, Vec::new(), NodeKey::generate().node_id())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Engine(EngineError::Unreachable { .. })),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains(&socket.display().to_string()), "{message}");
        assert!(
            message.contains("systemctl start docker") && message.contains("dockerd"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn missing_image_is_reported_with_the_fix() {
    let text = common::config_text().replacen(
        "image = \"orien/busybox:1\"",
        "image = \"orien/no-such-image:1\"",
        1,
    );
    let (config, tools) = common::parse_config(&text);
    let err = Provider::start(&config.engine, tools, NodeKey::generate().node_id())
        .await
        .unwrap_err();
    let ProviderError::MissingImages(missing) = &err else {
        panic!("{err}")
    };
    assert_eq!(missing.len(), 1);
    assert!(
        err.to_string()
            .contains("configs/images/no-such-image/build"),
        "{err}"
    );
}

#[tokio::test]
async fn a_program_missing_from_the_image_is_a_sandbox_error_not_an_exit() {
    let h = Harness::start().await;
    let s = h.open("missing").await;
    let r = common::call(&s, serde_json::json!({})).await;
    assert!(
        matches!(r.exit.outcome, ExecOutcome::SandboxError { .. }),
        "{:?}",
        r.exit
    );
    s.close().await.unwrap();
    // A program that itself exits 127 is an ordinary exit.
    let s = h.open("sh").await;
    let r = sh(&s, "exit 127").await;
    assert_eq!(
        (r.exit.outcome, r.exit.exit_code),
        (ExecOutcome::Exited, Some(127))
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_stopped_session_container_is_started_again_by_the_next_call() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let docker = Docker::connect_with_socket_defaults().unwrap();
    docker
        .kill_container(s.container_name(), None)
        .await
        .unwrap();
    let r = sh(&s, "echo back").await;
    assert_eq!(
        (r.exit.outcome.clone(), stdout(&r).as_str()),
        (ExecOutcome::Exited, "back\n")
    );
    s.close().await.unwrap();
}
