//! Benchmark of orien-provider against raw bollard calls, measured in the same run on
//! the same engine (run by `scripts/bench provider`; needs the engine and
//! `orien/busybox:1`).
//!
//! ```text
//! cargo run --release -p orien-provider --example bench -- bench/results/provider.json
//! ```
//!
//! It measures, interleaved so that drift on a busy machine hits both sides alike:
//! * a trivial call (`true`) through `SessionSandbox::exec` vs a raw bollard exec
//!   (create, start, read to the end, inspect) in the same container;
//! * `Provider::open_session` vs a raw create + start of the same container (its
//!   configuration read back with inspect, without the workspace volume), with no warm
//!   pool (`open_session`) and with one warm sandbox per tool (`open`, the pool refilled
//!   between opens);
//! * the design alternative, one hardened container per call (create, start, wait,
//!   remove), vs the warm-container exec per call that the provider uses.
//!
//! Writes a JSON list of `{name, value, unit, baseline, ratio, goal}` and, beside it,
//! a `.md` file with notes.
#![allow(clippy::print_stdout, clippy::unwrap_used)] // A benchmark tool reports on stdout and fails loudly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder};
use futures_util::StreamExt;
use orien_protocol::{ExecId, ExecOutcome, NodeKey, SessionId, SystemClock, ToolName};
use orien_provider::{Provider, ProviderConfig};
use serde_json::json;

const CONFIG: &str = r#"
[engine]
connect_attempts = 3
warm_pool = 0

[tools.noop]
description = "Does nothing: measures the cost of a call."
version = "bench"
image = "orien/busybox:1"
argv = ["true"]
schema = '''{"type": "object", "additionalProperties": false, "properties": {}}'''
[tools.noop.limits]
max_exec_ms = 10_000
cpus = 1.0
memory = "32MiB"
pids = 16
tmpfs = "1MiB"
output = "4KiB"
workspace = "1MiB"
concurrent_execs = 1
[tools.noop.pricing]
session_per_minute = "0.000100"
exec_per_minute = "0.001000"
"#;

const CALLS: usize = 200;
const OPENS: usize = 20;
const PER_CALL_CONTAINERS: usize = 20;

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (samples.len() as f64 - 1.0)).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn raw_exec(docker: &Docker, container: &str) -> Duration {
    let started = Instant::now();
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions::<String> {
                cmd: Some(vec!["true".to_owned()]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                user: Some("65534:65534".to_owned()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while output.next().await.is_some() {}
    }
    let inspect = docker.inspect_exec(&exec.id).await.unwrap();
    assert_eq!(inspect.exit_code, Some(0));
    started.elapsed()
}

/// The create request of a session container as the provider made it (read back with
/// `inspect`), minus the workspace volume: the raw baseline pays for the same isolation.
async fn session_spec(docker: &Docker, container: &str) -> ContainerCreateBody {
    let inspect = docker.inspect_container(container, None).await.unwrap();
    let config = inspect.config.unwrap();
    let mut host_config = inspect.host_config.unwrap();
    host_config.mounts = None;
    host_config.binds = None;
    ContainerCreateBody {
        image: config.image,
        cmd: config.cmd,
        user: config.user,
        working_dir: None,
        env: config.env,
        network_disabled: config.network_disabled,
        stop_signal: config.stop_signal,
        labels: Some([("orien.bench".to_owned(), "raw".to_owned())].into()),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// A raw create + start of `spec`, timed, then the container removed (not timed).
async fn raw_open(docker: &Docker, spec: &ContainerCreateBody) -> Duration {
    let (took, id) = raw_create_start(docker, spec).await;
    docker
        .remove_container(
            &id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    took
}

async fn raw_create_start(docker: &Docker, spec: &ContainerCreateBody) -> (Duration, String) {
    let started = Instant::now();
    let created = docker.create_container(None, spec.clone()).await.unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    (started.elapsed(), created.id)
}

/// The sandbox settings of a session container (as `orien-provider` sets them, minus
/// the workspace volume), so that baselines pay for the same isolation.
fn hardened_host_config() -> HostConfig {
    HostConfig {
        network_mode: Some("none".to_owned()),
        readonly_rootfs: Some(true),
        tmpfs: Some(
            [(
                "/tmp".to_owned(),
                "rw,noexec,nosuid,nodev,size=1048576".to_owned(),
            )]
            .into(),
        ),
        memory: Some(32 << 20),
        memory_swap: Some(32 << 20),
        nano_cpus: Some(1_000_000_000),
        pids_limit: Some(16),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        init: Some(true),
        ..Default::default()
    }
}

/// One hardened container per call: create, start, wait for its exit, remove.
async fn container_per_call(docker: &Docker) -> Duration {
    let started = Instant::now();
    let host_config = hardened_host_config();
    let created = docker
        .create_container(
            None,
            ContainerCreateBody {
                image: Some("orien/busybox:1".to_owned()),
                cmd: Some(vec!["true".to_owned()]),
                user: Some("65534:65534".to_owned()),
                labels: Some([("orien.bench".to_owned(), "per-call".to_owned())].into()),
                host_config: Some(host_config),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    // Asked after the start: "not-running" answers at once if `true` already exited.
    let exit = docker
        .wait_container(
            &created.id,
            Some(
                WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build(),
            ),
        )
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.status_code, 0);
    docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    started.elapsed()
}

/// Removes the benchmark's containers and volumes when dropped, also on a panic.
struct Cleanup(orien_protocol::NodeId);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let node = self.0;
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let config = orien_provider::EngineConfig::default();
                // A provider of the same node with no live session reaps its leftovers.
                let _ = Provider::start(&config, Vec::new(), node).await;
                let docker = Docker::connect_with_socket_defaults().unwrap();
                let filters = std::collections::HashMap::from([("label", vec!["orien.bench"])]);
                let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build();
                for c in docker
                    .list_containers(Some(options))
                    .await
                    .unwrap_or_default()
                {
                    if let Some(id) = c.id {
                        let force = RemoveContainerOptionsBuilder::default().force(true).build();
                        let _ = docker.remove_container(&id, Some(force)).await;
                    }
                }
            });
        })
        .join();
    }
}

struct Row {
    name: &'static str,
    value: f64,
    baseline: f64,
    goal: &'static str,
}

#[tokio::main]
async fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "bench/results/provider.json".into());
    let (config, tools) = ProviderConfig::parse(CONFIG, Path::new("bench.toml")).unwrap();
    let node = NodeKey::generate().node_id();
    let _cleanup = Cleanup(node);
    let provider = Provider::start(&config.engine, tools, node).await.unwrap();
    let docker = Docker::connect_with_socket_defaults().unwrap();
    let noop = ToolName::new("noop").unwrap();
    let clock = Arc::new(SystemClock::new());

    // Calls: provider vs raw exec in the same container, interleaved, after a warm-up.
    let session = provider
        .open_session(SessionId::random(), &noop)
        .await
        .unwrap();
    let container = session.container_name().to_owned();
    for _ in 0..10 {
        session
            .exec(ExecId::random(), json!({}), clock.clone())
            .collect_output()
            .await;
        raw_exec(&docker, &container).await;
    }
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..CALLS {
        let started = Instant::now();
        let r = session
            .exec(ExecId::random(), json!({}), clock.clone())
            .collect_output()
            .await;
        ours.push(ms(started.elapsed()));
        assert_eq!(r.exit.outcome, ExecOutcome::Exited);
        raw.push(ms(raw_exec(&docker, &container).await));
    }
    session.close().await.unwrap();

    // Session open vs raw create + start of the same container; teardown is not timed.
    let probe = provider
        .open_session(SessionId::random(), &noop)
        .await
        .unwrap();
    let spec = session_spec(&docker, probe.container_name()).await;
    probe.close().await.unwrap();
    let (mut opens, mut raw_opens) = (Vec::new(), Vec::new());
    for _ in 0..OPENS {
        let started = Instant::now();
        let s = provider
            .open_session(SessionId::random(), &noop)
            .await
            .unwrap();
        opens.push(ms(started.elapsed()));
        s.close().await.unwrap();
        raw_opens.push(ms(raw_open(&docker, &spec).await));
    }

    // Session open from a warm pool (refilled, untimed, before each open) vs the same
    // raw create + start. Another node, so neither provider reaps the other's sandboxes.
    let warm_node = NodeKey::generate().node_id();
    let _warm_cleanup = Cleanup(warm_node);
    let (mut warm_config, warm_tools) =
        ProviderConfig::parse(CONFIG, Path::new("bench.toml")).unwrap();
    warm_config.engine.warm_pool = 1;
    let warm_provider = Provider::start(&warm_config.engine, warm_tools, warm_node)
        .await
        .unwrap();
    let (mut warm_opens, mut warm_raw) = (Vec::new(), Vec::new());
    for _ in 0..OPENS {
        let give_up = Instant::now() + Duration::from_secs(60);
        while warm_provider.warm_sandboxes().get(&noop).copied() != Some(1) {
            assert!(Instant::now() < give_up, "the pool never refilled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let s = warm_provider.open(&noop).await.unwrap();
        warm_opens.push(ms(started.elapsed()));
        s.close().await.unwrap();
        warm_raw.push(ms(raw_open(&docker, &spec).await));
    }
    warm_provider.shutdown().await;

    // The design question: one container per call vs an exec in a warm container.
    let session = provider
        .open_session(SessionId::random(), &noop)
        .await
        .unwrap();
    let (mut per_call, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..PER_CALL_CONTAINERS {
        per_call.push(ms(container_per_call(&docker).await));
        let started = Instant::now();
        session
            .exec(ExecId::random(), json!({}), clock.clone())
            .collect_output()
            .await;
        warm.push(ms(started.elapsed()));
    }
    session.close().await.unwrap();

    let rows = [
        Row {
            name: "provider trivial call p50",
            value: percentile(&mut ours, 50.0),
            baseline: percentile(&mut raw, 50.0),
            goal: "ratio <= 1.2",
        },
        Row {
            name: "provider trivial call p95",
            value: percentile(&mut ours, 95.0),
            baseline: percentile(&mut raw, 95.0),
            goal: "ratio <= 1.2",
        },
        Row {
            name: "session open p50",
            value: percentile(&mut opens, 50.0),
            baseline: percentile(&mut raw_opens, 50.0),
            goal: "ratio <= 1.2",
        },
        Row {
            name: "session open p95",
            value: percentile(&mut opens, 95.0),
            baseline: percentile(&mut raw_opens, 95.0),
            goal: "ratio <= 1.2",
        },
        Row {
            name: "container per call p50 (design alternative)",
            value: percentile(&mut per_call, 50.0),
            baseline: percentile(&mut warm, 50.0),
            goal: "informational: baseline is the warm exec per call the provider uses",
        },
        Row {
            name: "container per call p95 (design alternative)",
            value: percentile(&mut per_call, 95.0),
            baseline: percentile(&mut warm, 95.0),
            goal: "informational: baseline is the warm exec per call the provider uses",
        },
        Row {
            name: "session open with a warm pool p50",
            value: percentile(&mut warm_opens, 50.0),
            baseline: percentile(&mut warm_raw, 50.0),
            goal: "ratio <= 0.5",
        },
        Row {
            name: "session open with a warm pool p95",
            value: percentile(&mut warm_opens, 95.0),
            baseline: percentile(&mut warm_raw, 95.0),
            goal: "ratio <= 1.0",
        },
    ];
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "value": (r.value * 100.0).round() / 100.0,
                "unit": "ms",
                "baseline": (r.baseline * 100.0).round() / 100.0,
                "ratio": ((r.value / r.baseline) * 1000.0).round() / 1000.0,
                "goal": r.goal,
            })
        })
        .collect();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json_rows).unwrap()).unwrap();
    let info = provider.engine();
    let notes = format!(
        "Engine {} (API {}, cgroup v{}), {} trivial calls, {} session opens and {} per-call containers, \
         interleaved with their baselines in the same run.\n\n\
         **Design decision — warm container per session, one exec per call.** A trivial call costs \
         p50 {:.1} ms / p95 {:.1} ms as an exec in the session's warm container, against \
         p50 {:.1} ms / p95 {:.1} ms for a fresh hardened container per call (create, start, wait, remove). \
         Per-call containers would isolate calls from each other inside a session, but at {:.0}× the latency; \
         calls of one session belong to one renter, and the processes of a timed-out call, or those a call \
         leaves behind, are killed under the cgroup freezer.\n\n\
         Session open is measured against a raw create + start of the very container the provider \
         creates (its configuration read back with inspect), without the workspace volume; the \
         provider adds the tmpfs volume and an inspect of the container's cgroup. With a warm \
         pool (one sandbox per tool, refilled before each open, as between sessions that do not \
         arrive back to back) the session takes a sandbox created, started and probed ahead of \
         it; a burst of opens beyond the pool opens cold. Absolute figures \
         depend on the machine's load (other builds ran beside this one); the ratios compare \
         interleaved samples.\n\n\
         The provider's overhead over a raw bollard exec is argument validation, cgroup metering \
         (a few file reads) and event streaming over a channel.\n",
        info.server_version,
        info.api_version,
        info.cgroup_version,
        CALLS,
        OPENS,
        PER_CALL_CONTAINERS,
        rows[4].baseline,
        rows[5].baseline,
        rows[4].value,
        rows[5].value,
        rows[4].value / rows[4].baseline,
    );
    std::fs::write(out.with_extension("md"), notes).unwrap();
    for r in &rows {
        println!(
            "{:<48} {:>9.2} ms  baseline {:>9.2} ms  ratio {:.3}",
            r.name,
            r.value,
            r.baseline,
            r.value / r.baseline
        );
    }
}
