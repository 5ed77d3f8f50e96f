//! The one harness that starts `orien-node` processes for tests: a temporary data
//! directory, loopback ports, the API token, and a kill on drop (even when a test
//! panics), so no process outlives its test.
#![allow(dead_code, unreachable_pub)]

pub mod mcp_client;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `orien-node` process.
pub struct NodeProcess {
    child: Child,
    data_dir: std::sync::Arc<tempfile::TempDir>,
    /// Base URL of its HTTP API.
    pub api: String,
    /// Its bearer token.
    pub token: String,
    /// Its peer id.
    pub id: String,
    /// Its libp2p listen addresses (with `/p2p/<id>`).
    pub listen: Vec<String>,
}

/// The example provider configuration of the repository (Docker tools).
pub fn example_config() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/provider.example.toml")
        .display()
        .to_string()
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orien-node"))
}

/// Runs `orien-node --data-dir DATA_DIR ARGS…`, asserts it succeeded, returns its stdout.
pub fn run_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "orien-node {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl NodeProcess {
    /// Initialises a fresh data directory and runs a node bootstrapping from `bootstrap`.
    pub fn start(bootstrap: &[&NodeProcess]) -> Self {
        Self::start_with(bootstrap, &[])
    }

    /// Like [`start`](Self::start), with more `run` arguments (provider config, timings).
    pub fn start_with(bootstrap: &[&NodeProcess], extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        run_ok(data_dir.path(), &["init"]);
        Self::start_in(data_dir, bootstrap, extra)
    }

    /// Like [`start_with`](Self::start_with), listening on `listen` instead of a
    /// loopback TCP port (e.g. a relay circuit).
    pub fn start_with_listen(bootstrap: &[&NodeProcess], listen: &str, extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        run_ok(data_dir.path(), &["init"]);
        Self::spawn(data_dir, bootstrap, listen, extra)
    }

    /// Runs a node on a data directory already made by `orien-node init`.
    pub fn start_in(
        data_dir: tempfile::TempDir,
        bootstrap: &[&NodeProcess],
        extra: &[&str],
    ) -> Self {
        Self::spawn(data_dir, bootstrap, "/ip4/127.0.0.1/tcp/0", extra)
    }

    /// Starts the node again on the same data directory (after [`kill`](Self::kill),
    /// as after a crash), with `run` arguments `extra`.
    pub fn restart(&mut self, bootstrap: &[&NodeProcess], extra: &[&str]) {
        self.kill();
        let fresh = Self::spawn(
            self.data_dir.clone(),
            bootstrap,
            "/ip4/127.0.0.1/tcp/0",
            extra,
        );
        let old = std::mem::replace(self, fresh);
        drop(old);
    }

    fn spawn(
        data_dir: impl Into<std::sync::Arc<tempfile::TempDir>>,
        bootstrap: &[&NodeProcess],
        listen: &str,
        extra: &[&str],
    ) -> Self {
        let data_dir = data_dir.into();
        let id = run_ok(data_dir.path(), &["id"]).trim().to_owned();
        let mut command = Command::new(binary());
        command
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["run", "--listen", listen, "--api", "127.0.0.1:0"])
            .args(extra)
            .env("ORIEN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for node in bootstrap {
            command.arg("--bootstrap").arg(&node.listen[0]);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listen = Vec::new();
        let api = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    let _ = child.kill();
                    panic!("orien-node did not report its API address")
                });
            if let Some(addr) = line.strip_prefix("listening on ") {
                listen.push(addr.to_owned());
            }
            if let Some(url) = line.strip_prefix("API on ") {
                break url.to_owned();
            }
        };
        let token = std::fs::read_to_string(data_dir.path().join("api.token")).unwrap();
        Self {
            child,
            data_dir,
            api,
            token,
            id,
            listen,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// An authenticated GET.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// An authenticated request with optional JSON body and extra headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        json: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(json) = json {
            request = request.json(&json);
        }
        request.send().await.unwrap()
    }

    /// An authenticated GET answered with JSON and a 2xx status.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// An authenticated POST of JSON answered with a 2xx status and JSON.
    pub async fn post_json(&self, path: &str, json: serde_json::Value) -> serde_json::Value {
        let response = self
            .send(reqwest::Method::POST, path, Some(json), &[])
            .await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    /// Polls `GET path` until `done` holds for its JSON, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let value = self.get_json(path).await;
            if done(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "GET {path} did not reach the expected state within {timeout:?}: {value}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts an execution with `args` in `session` and waits (at most `timeout`) until
    /// it ended (completed or failed); returns the execution document.
    pub async fn run_to_end(
        &self,
        session: &str,
        args: serde_json::Value,
        timeout: Duration,
    ) -> serde_json::Value {
        let exec = self
            .post_json(
                &format!("/v1/sessions/{session}/executions"),
                serde_json::json!({ "args": args }),
            )
            .await;
        let path = format!("/v1/executions/{}", exec["id"].as_str().unwrap());
        self.wait_for(&path, timeout, |e| {
            e["state"] == "completed" || e["state"] == "failed"
        })
        .await
    }

    /// Sends SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a graceful exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A graceful stop removes a provider's warm sandboxes; a node that is gone
        // already (killed by the test) is not signalled again.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
        // What the killed node held in the engine (a provider's warm sandboxes, a session
        // a test left open) goes with it.
        for (kind, list, remove) in [
            ("container", ["ps", "-aq"], ["rm", "-f"]),
            ("volume", ["volume", "ls"], ["volume", "rm"]),
        ] {
            let mut args: Vec<String> = list.iter().map(|a| (*a).to_owned()).collect();
            if kind == "volume" {
                args.push("-q".into());
            }
            args.extend(["--filter".into(), format!("label=orien.node={}", self.id)]);
            let Ok(listed) = Command::new("docker").args(&args).output() else {
                return; // No engine: nothing to remove.
            };
            let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").args(remove).args(&ids).output();
            }
        }
    }
}

/// `orien-devnet up`, killed (with its anvil) on drop.
pub struct Devnet {
    child: Child,
    pub settings: std::collections::HashMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Devnet {
    pub fn start(fund: &[String]) -> Self {
        Self::start_with(fund, &[])
    }

    /// With `extra` arguments of `orien-devnet up` (`--treasury 0x…`, …).
    pub fn start_with(fund: &[String], extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("chain.env");
        let mut command = Command::new(env!("CARGO_BIN_EXE_orien-devnet"));
        command
            .args(["up", "--env-file"])
            .arg(&env_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for f in fund {
            command.args(["--fund", f]);
        }
        command.args(extra);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.starts_with("devnet ready"));
        assert!(
            ready,
            "orien-devnet did not come up (it runs $ORIEN_ANVIL, anvil on PATH, or the npm \
             package that `npm ci` at the repository root installs, as scripts/test does)"
        );
        let settings = std::fs::read_to_string(&env_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self {
            child,
            settings,
            _dir: dir,
        }
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--chain-rpc".into(),
            self.settings["ORIEN_CHAIN_RPC"].clone(),
            "--chain-id".into(),
            self.settings["ORIEN_CHAIN_ID"].clone(),
            "--escrow".into(),
            self.settings["ORIEN_ESCROW"].clone(),
        ]
    }
}

impl Devnet {
    /// Moves the chain's clock `secs` ahead and mines a block at the new time.
    pub async fn advance(&self, secs: u64) {
        let rpc = &self.settings["ORIEN_CHAIN_RPC"];
        let client = reqwest::Client::new();
        for (method, params) in [
            ("evm_increaseTime", serde_json::json!([secs])),
            ("evm_mine", serde_json::json!([])),
        ] {
            let answer: serde_json::Value = client
                .post(rpc)
                .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(answer.get("error").is_none(), "{method}: {answer}");
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wallet_of(data_dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_orien-node"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["wallet", "address"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A data directory made by `orien-node init`, for a node started later with
/// [`NodeProcess::start_in`].
pub fn init_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["init"]);
    dir
}

/// Server-sent events of a finished stream: (id, event, data).
pub fn parse_sse(text: &str) -> Vec<(Option<u64>, String, String)> {
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut name, mut data) = (None, String::from("message"), Vec::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
            }
        }
        if !data.is_empty() {
            events.push((id, name, data.join("\n")));
        }
    }
    events
}
