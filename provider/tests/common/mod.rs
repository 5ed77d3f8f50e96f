//! Test harness: a provider on the real Docker engine, with the example tools plus
//! deliberately hostile test-only tools, under a fresh node id that is cleaned up
//! (every container and volume with its label) when the harness drops, even on panic.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different part of the harness.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orien_protocol::{ExecId, NodeId, NodeKey, SessionId, SystemClock, ToolName};
use orien_provider::{
    EngineConfig, ExecResult, Provider, ProviderConfig, ProviderError, SessionSandbox,
};

/// Hostile programs for the abuse suite: a provider would never list these, but they
/// stand for any tool binary an attacker could make misbehave.
pub const TEST_TOOLS: &str = r#"
[tools.sh]
description = "A shell: stands for a hostile program inside the sandbox."
version = "test"
image = "orien/busybox:1"
argv = ["sh", "-c", "{script}"]
schema = '''{"type": "object", "additionalProperties": false, "required": ["script"],
             "properties": {"script": {"type": "string", "maxLength": 4096}}}'''
[tools.sh.limits]
max_exec_ms = 4_000
cpus = 0.5
memory = "32MiB"
pids = 32
tmpfs = "1MiB"
output = "4KiB"
workspace = "1MiB"
concurrent_execs = 2
[tools.sh.pricing]
session_per_minute = "0.000100"
exec_per_minute = "0.001000"

[tools.disk]
description = "A shell over a disk-backed workspace: stands for a build tool that writes a lot."
version = "test"
image = "orien/busybox:1"
argv = ["sh", "-c", "{script}"]
schema = '''{"type": "object", "additionalProperties": false, "required": ["script"],
             "properties": {"script": {"type": "string", "maxLength": 4096}}}'''
[tools.disk.limits]
max_exec_ms = 20_000
cpus = 0.5
memory = "32MiB"
pids = 32
tmpfs = "1MiB"
output = "4KiB"
workspace = "16MiB"
workspace_on = "disk"
concurrent_execs = 2
[tools.disk.pricing]
session_per_minute = "0.000100"
exec_per_minute = "0.001000"

[tools.missing]
description = "A tool whose program is not in its image: a provider's config mistake."
version = "test"
image = "orien/busybox:1"
argv = ["no-such-program"]
schema = '''{"type": "object", "additionalProperties": false}'''
[tools.missing.limits]
max_exec_ms = 10_000
cpus = 0.5
memory = "16MiB"
pids = 8
tmpfs = "1MiB"
output = "4KiB"
workspace = "1MiB"
concurrent_execs = 1
[tools.missing.pricing]
session_per_minute = "0.000100"
exec_per_minute = "0.001000"

[tools.echo]
description = "Echo: its argument may not start with a dash."
version = "test"
image = "orien/busybox:1"
argv = ["echo", "{text}"]
schema = '''{"type": "object", "additionalProperties": false, "required": ["text"],
             "properties": {"text": {"type": "string", "maxLength": 256}}}'''
[tools.echo.limits]
max_exec_ms = 10_000
cpus = 0.5
memory = "16MiB"
pids = 8
tmpfs = "1MiB"
output = "4KiB"
workspace = "1MiB"
concurrent_execs = 4
[tools.echo.pricing]
session_per_minute = "0.000100"
exec_per_minute = "0.001000"
"#;

/// The example config with the test tools appended.
pub fn config_text() -> String {
    let example = std::fs::read_to_string(example_path()).expect("configs/provider.example.toml");
    format!("{example}\n{TEST_TOOLS}")
}

/// Where the providers of [`parse_config`] keep disk-backed workspaces (of the `disk`
/// tool, warmed by their pools): shared, each workspace named by its node, and reaped
/// with [`engine_config`].
fn shared_workspaces() -> std::path::PathBuf {
    std::env::temp_dir().join("orien-test-workspaces")
}

/// Parses a test config, its disk-backed workspaces in [`shared_workspaces`].
pub fn parse_config(text: &str) -> (ProviderConfig, Vec<orien_provider::Tool>) {
    let (mut config, tools) =
        ProviderConfig::parse(text, Path::new("t.toml")).expect("test config");
    config.engine.workspaces = Some(shared_workspaces());
    (config, tools)
}

/// Path of the example config.
pub fn example_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/provider.example.toml")
}

/// Engine settings for tests: the default socket, a quick failure when it is down,
/// and the disk-backed workspaces of [`parse_config`]'s providers (so a reap with it
/// removes those too).
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        connect_attempts: 2,
        workspaces: Some(shared_workspaces()),
        ..EngineConfig::default()
    }
}

/// A provider under a fresh node id; dropping it removes everything of that node.
pub struct Harness {
    pub provider: Provider,
    pub node: NodeId,
    /// Where its disk-backed workspaces live (removed after the harness's reap).
    pub workspaces: Arc<tempfile::TempDir>,
}

impl Harness {
    /// A provider with no warm pool: each test creates exactly what it opens.
    pub async fn start() -> Harness {
        Self::start_as(NodeKey::generate().node_id()).await
    }

    pub async fn start_as(node: NodeId) -> Harness {
        Self::start_with(
            node,
            0,
            Arc::new(tempfile::tempdir().expect("a temporary directory")),
        )
        .await
    }

    /// A provider of `node` whose disk-backed workspaces live in `workspaces` (as a
    /// restart of the node after a crash finds them).
    pub async fn restart_as(node: NodeId, workspaces: Arc<tempfile::TempDir>) -> Harness {
        Self::start_with(node, 0, workspaces).await
    }

    /// A provider keeping `warm` sandboxes per tool; call `provider.shutdown()` before
    /// the end of the test, so no fill is under way when the harness reaps.
    pub async fn start_warm(warm: usize) -> Harness {
        let workspaces = Arc::new(tempfile::tempdir().expect("a temporary directory"));
        Self::start_with(NodeKey::generate().node_id(), warm, workspaces).await
    }

    async fn start_with(node: NodeId, warm: usize, workspaces: Arc<tempfile::TempDir>) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (mut config, tools) =
            ProviderConfig::parse(&config_text(), Path::new("test.toml")).expect("test config");
        config.engine.warm_pool = warm;
        config.engine.workspaces = Some(workspaces.path().to_owned());
        let provider = match Provider::start(&config.engine, tools, node).await {
            Ok(p) => p,
            Err(e @ ProviderError::Engine(_)) => panic!(
                "these tests need a running Docker engine: {e}\n\
                 (`scripts/test` starts one; by hand: `sudo dockerd &` or `sudo systemctl start docker`)"
            ),
            Err(e @ ProviderError::MissingImages(_)) => {
                panic!("{e}\n(`scripts/test` builds the images)")
            }
            Err(e) => panic!("provider failed to start: {e}"),
        };
        Harness {
            provider,
            node,
            workspaces,
        }
    }

    pub async fn open(&self, tool: &str) -> SessionSandbox {
        self.provider
            .open_session(SessionId::random(), &ToolName::new(tool).unwrap())
            .await
            .expect("open session")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let node = self.node;
        // Its own workspaces, then those a provider of `parse_config` made for the node.
        let own = EngineConfig {
            workspaces: Some(self.workspaces.path().to_owned()),
            ..engine_config()
        };
        // Runs on its own runtime: Drop may run inside (or outside) the test's runtime.
        let cleaned = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                // A provider with no sessions: its start-up reap removes all of the node's objects.
                for engine in [own, engine_config()] {
                    Provider::start(&engine, Vec::new(), node).await?;
                }
                Ok::<(), ProviderError>(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("cleanup of node {node} failed: {cleaned:?}");
        }
    }
}

/// Runs one call to its end with the system clock.
pub async fn call(session: &SessionSandbox, args: serde_json::Value) -> ExecResult {
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        session
            .exec(ExecId::random(), args, Arc::new(SystemClock::new()))
            .collect_output(),
    )
    .await
    .expect("a call ends within two minutes");
    assert!(
        result.exit.stdout_bytes >= result.stdout.len() as u64,
        "counted bytes cover delivered bytes"
    );
    result
}

/// Runs a shell script in the `sh` test tool.
pub async fn sh(session: &SessionSandbox, script: &str) -> ExecResult {
    call(session, serde_json::json!({ "script": script })).await
}

/// Text of stdout.
pub fn stdout(r: &ExecResult) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// Text of stderr.
pub fn stderr(r: &ExecResult) -> String {
    String::from_utf8_lossy(&r.stderr).into_owned()
}

/// Command lines of every process the host can see.
pub fn host_command_lines() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            out.push(
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .trim()
                    .to_owned(),
            );
        }
    }
    out
}
