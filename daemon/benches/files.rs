//! `scripts/bench files`: a large file from a renter's HTTP API into a provider's
//! workspace and back, between two `orien-node` processes (`--bin`, as users run them)
//! on loopback, once with the tool's workspace on disk (a filesystem of its own, files
//! written and read on the provider's side of the mount) and once in memory (a tmpfs,
//! files through the engine's archive API), beside, in the same run, a raw libp2p stream over the same TCP + noise +
//! yamux stack (the goal: the transfer at ≥ 0.7× its throughput) and plain loopback TCP
//! (informational); and the peak RSS growth of each node during each transfer (the
//! goal: ≤ 64 MiB).
//!
//! Usage: `cargo bench -p orien-daemon --bench files -- --bin PATH [--size-mib 1024]
//! [--out FILE] [--on disk,memory]`
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A benchmark reports loudly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, StreamProtocol, SwarmBuilder, noise, tcp, yamux};

mod support;
use support::flag;

/// The bytes every transfer repeats: 1 MiB of noise (cheap to send again and again,
/// so the generator costs none of the two cores the nodes share).
fn piece() -> Bytes {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(1 << 20);
    while out.len() < 1 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    Bytes::from(out)
}

fn pieces(size: u64) -> impl Iterator<Item = Bytes> {
    let piece = piece();
    (0..size >> 20).map(move |_| piece.clone())
}

/// One `orien-node` process in its own data directory.
struct NodeProcess {
    child: Child,
    api: String,
    token: String,
    listen: String,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    fn start(bin: &str, role: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_owned();
        let init = Command::new(bin)
            .args(["--data-dir", &data, "init", "--role", role])
            .output()
            .unwrap();
        assert!(init.status.success(), "{init:?}");
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let mut child = Command::new(bin)
            .args([
                "--data-dir",
                &data,
                "run",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .args(["--api", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut listen = String::new();
        let api = loop {
            let line = lines
                .next()
                .expect("the node printed its API address")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                listen = addr.to_owned();
            }
            if let Some(api) = line.strip_prefix("API on ") {
                break api.to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(dir.path().join("api.token")).unwrap();
        Self {
            child,
            api,
            token: token.trim().to_owned(),
            listen,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token)
    }

    /// Lines of its log that contain `needle`.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(self._dir.path().join("node.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(without_colours)
            .collect()
    }

    fn stop(self) {
        drop(self);
    }
}

impl Drop for NodeProcess {
    /// Stopped as users stop it (SIGTERM: it removes its sandboxes), also when the
    /// benchmark fails part way.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// `line` without its terminal colour codes (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// CPU time (user + system) a process has used so far; `None`: this process.
fn cpu_of(pid: Option<u32>) -> Duration {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux.
}

/// CPU time the bench, the renter and the provider use from now until `taken`.
struct Cpu {
    start: [Duration; 3],
    pids: [Option<u32>; 3],
}

impl Cpu {
    fn watch(renter: u32, provider: u32) -> Self {
        let pids = [None, Some(renter), Some(provider)];
        Self {
            start: pids.map(cpu_of),
            pids,
        }
    }

    /// Seconds of CPU each used since: (bench client, renter, provider).
    fn taken(&self) -> [f64; 3] {
        let mut out = [0.0; 3];
        for (i, pid) in self.pids.iter().enumerate() {
            out[i] = (cpu_of(*pid) - self.start[i]).as_secs_f64();
        }
        out
    }
}

/// The peak RSS of processes, sampled every 20 ms until dropped.
struct Peaks {
    start: Vec<u64>,
    peaks: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
}

impl Peaks {
    fn watch(pids: Vec<u32>) -> Self {
        let start: Vec<u64> = pids.iter().map(|p| rss_of(*p)).collect();
        let peaks = Arc::new(start.iter().map(|s| AtomicU64::new(*s)).collect::<Vec<_>>());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peaks.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (i, pid) in pids.iter().enumerate() {
                    p[i].fetch_max(rss_of(*pid), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { start, peaks, stop }
    }

    /// Each process's (RSS before, peak growth).
    fn growth(&self) -> Vec<(u64, u64)> {
        self.start
            .iter()
            .zip(self.peaks.iter())
            .map(|(s, p)| (*s, p.load(Ordering::Relaxed).saturating_sub(*s)))
            .collect()
    }
}

impl Drop for Peaks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The example provider with the `sha256` tool's workspace and uploads big enough, the
/// workspace `on` memory or disk.
fn provider_config(dir: &std::path::Path, size: u64, on: &str) -> std::path::PathBuf {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/provider.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let marker = "[tools.sha256.limits]";
    let (head, tail) = text.split_once(marker).unwrap();
    let workspace = format!("{}MiB", (size >> 20) + 64);
    let tail = tail.replacen(
        r#"workspace = "64MiB""#,
        &format!("workspace = \"{workspace}\"\nupload = \"{workspace}\"\nworkspace_on = \"{on}\""),
        1,
    );
    let path = dir.join("provider.toml");
    std::fs::write(&path, format!("{head}{marker}{tail}")).unwrap();
    path
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// A raw libp2p stream between two swarms in this process, on the nodes' stack (TCP
/// with nodelay, noise, yamux with its defaults): `size` bytes in 256 KiB writes; its
/// throughput (MB/s) and the CPU seconds both ends took.
async fn raw_stream(size: u64) -> (f64, f64) {
    const PROTOCOL: StreamProtocol = StreamProtocol::new("/orien/bench/1");
    let swarm = || {
        SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    };
    let (mut receiver, mut sender) = (swarm(), swarm());
    receiver
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr: Multiaddr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            receiver.select_next_some().await
        {
            break address;
        }
    };
    let receiver_id = *receiver.local_peer_id();
    let mut incoming = receiver.behaviour().new_control().accept(PROTOCOL).unwrap();
    let mut control = sender.behaviour().new_control();
    tokio::spawn(async move {
        loop {
            receiver.select_next_some().await;
        }
    });
    sender.dial(addr).unwrap();
    loop {
        if let libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } =
            sender.select_next_some().await
        {
            break;
        }
    }
    tokio::spawn(async move {
        loop {
            sender.select_next_some().await;
        }
    });
    let reader = tokio::spawn(async move {
        let (_, mut stream) = incoming.next().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut read: u64 = 0;
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            read += n as u64;
        }
        read
    });
    let mut stream = control.open_stream(receiver_id, PROTOCOL).await.unwrap();
    let cpu = cpu_of(None);
    let started = Instant::now();
    for piece in pieces(size) {
        for part in piece.chunks(256 * 1024) {
            stream.write_all(part).await.unwrap();
        }
    }
    stream.close().await.unwrap();
    let read = reader.await.unwrap();
    assert_eq!(read, size);
    let took = started.elapsed();
    (mb_per_s(size, took), (cpu_of(None) - cpu).as_secs_f64())
}

/// Plain loopback TCP: `size` bytes in 256 KiB writes.
async fn plain_tcp(size: u64) -> f64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut read: u64 = 0;
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            read += n as u64;
        }
        read
    });
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    for piece in pieces(size) {
        socket.write_all(&piece).await.unwrap();
    }
    socket.shutdown().await.unwrap();
    assert_eq!(reader.await.unwrap(), size);
    mb_per_s(size, started.elapsed())
}

/// With `ORIEN_BENCH_PERF=PREFIX`, a `perf record` of both nodes during one transfer,
/// into `PREFIX.<on>.<phase>` (for looking into where their time goes).
fn perf_record(
    renter: &NodeProcess,
    provider: &NodeProcess,
    on: &str,
    phase: &str,
) -> Option<Child> {
    let prefix = std::env::var("ORIEN_BENCH_PERF").ok()?;
    let out = format!("{prefix}.{on}.{phase}");
    Command::new("perf")
        .args(["record", "-F", "999", "-g", "-o", &out, "-p"])
        .arg(format!("{},{}", renter.pid(), provider.pid()))
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn perf_stop(perf: Option<Child>) {
    if let Some(perf) = perf {
        let pid = perf.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = perf.wait_with_output();
    }
}

/// One file up and back through two nodes, the provider's workspace `on` memory or disk.
struct Measured {
    up_took: Duration,
    down_took: Duration,
    /// Per node (renter, provider): RSS before, and peak growth.
    up_growth: Vec<(u64, u64)>,
    down_growth: Vec<(u64, u64)>,
    /// CPU seconds of (bench client, renter, provider) during each transfer.
    up_cpu: [f64; 3],
    down_cpu: [f64; 3],
    /// The provider's log lines of each transfer's phases.
    phases: Vec<String>,
}

async fn transfer(bin: &str, size: u64, on: &str) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let config = provider_config(dir.path(), size, on);
    let provider = NodeProcess::start(
        bin,
        "provider",
        &[
            "--provider-config",
            config.to_str().unwrap(),
            "--accept-ledger-payments",
        ],
    );
    let renter = NodeProcess::start(bin, "renter", &["--bootstrap", &provider.listen]);
    let waited = Instant::now();
    loop {
        let offers: serde_json::Value = renter
            .request(reqwest::Method::GET, "/v1/offers?tool=sha256")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if offers.as_array().is_some_and(|o| !o.is_empty()) {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no offer reached the renter"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let opened: serde_json::Value = renter
        .request(reqwest::Method::POST, "/v1/sessions")
        .json(&serde_json::json!({"tool": "sha256", "budget": "5", "max_duration_secs": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = opened["id"].as_str().expect("a session").to_owned();
    let path = format!("/v1/sessions/{session}/files/bench/big.bin");

    let pids = vec![renter.pid(), provider.pid()];
    let peaks = Peaks::watch(pids.clone());
    let cpu = Cpu::watch(renter.pid(), provider.pid());
    let perf = perf_record(&renter, &provider, on, "up");
    let started = Instant::now();
    let body = futures::stream::iter(pieces(size).map(Ok::<_, std::io::Error>));
    let up = renter
        .request(reqwest::Method::PUT, &path)
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let up_took = started.elapsed();
    let up_cpu = cpu.taken();
    perf_stop(perf);
    assert_eq!(up.status(), 201, "{:?}", up.text().await);
    let up_growth = peaks.growth();
    drop(peaks);

    let peaks = Peaks::watch(pids);
    let cpu = Cpu::watch(renter.pid(), provider.pid());
    let perf = perf_record(&renter, &provider, on, "down");
    let started = Instant::now();
    let down = renter
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 200);
    let mut read: u64 = 0;
    let mut body = down.bytes_stream();
    while let Some(piece) = body.next().await {
        read += piece.unwrap().len() as u64;
    }
    let down_took = started.elapsed();
    let down_cpu = cpu.taken();
    perf_stop(perf);
    assert_eq!(read, size);
    let down_growth = peaks.growth();
    drop(peaks);
    let _ = renter
        .request(
            reqwest::Method::POST,
            &format!("/v1/sessions/{session}/close"),
        )
        .send()
        .await;
    // Where the provider's time went (its own log: staging, workspace, copy, send).
    let phases: Vec<String> = provider
        .log_lines("upload stored")
        .into_iter()
        .chain(provider.log_lines("download sent"))
        .collect();
    renter.stop();
    provider.stop();
    Measured {
        up_took,
        down_took,
        up_growth,
        down_growth,
        up_cpu,
        down_cpu,
        phases,
    }
}

#[tokio::main]
async fn main() {
    let bin: String = flag("--bin", String::new());
    assert!(!bin.is_empty(), "--bin PATH: the orien-node to measure");
    let size: u64 = flag::<u64>("--size-mib", 1024) << 20;
    let out: String = flag("--out", "bench/results/files.json".to_owned());

    let mut rows = Vec::new();
    let mut notes = String::new();
    let (raw, raw_cpu) = raw_stream(size).await;
    let tcp = plain_tcp(size).await;
    notes.push_str(&format!(
        "The raw libp2p stream took {raw_cpu:.2} s of CPU (both ends) for {} MiB. The provider's phases of each transfer are from its log.\n",
        size >> 20
    ));
    let mib = size >> 20;
    let kinds: String = flag("--on", "disk,memory".to_owned());
    for on in kinds.split(',') {
        let m = transfer(&bin, size, on).await;
        let (up_rate, down_rate) = (mb_per_s(size, m.up_took), mb_per_s(size, m.down_took));
        println!(
            "workspace on {on}: {mib} MiB up {up_rate:.0} MB/s ({:?}), down {down_rate:.0} MB/s ({:?}); raw libp2p stream {raw:.0} MB/s, plain TCP {tcp:.0} MB/s",
            m.up_took, m.down_took
        );
        rows.push(serde_json::json!({
            "name": format!("{mib} MiB renter HTTP → provider workspace on {on} (MB/s; baseline: a raw libp2p stream, TCP + noise + yamux)"),
            "value": up_rate, "unit": "MB/s", "baseline": raw, "ratio": up_rate / raw,
            "goal": "ratio >= 0.7",
        }));
        rows.push(serde_json::json!({
            "name": format!("{mib} MiB provider workspace on {on} → renter HTTP (MB/s; baseline: a raw libp2p stream)"),
            "value": down_rate, "unit": "MB/s", "baseline": raw, "ratio": down_rate / raw,
            "goal": "ratio >= 0.7",
        }));
        // What the goal leaves: both nodes and the client share this machine's cores,
        // so at 0.7× the raw stream's throughput the whole transfer may take this much
        // CPU time, the raw stream's own share included.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let budget = cores * (size as f64 / 1e6) / (0.7 * raw);
        for (phase, used) in [("upload", m.up_cpu), ("download", m.down_cpu)] {
            let total: f64 = used.iter().sum();
            rows.push(serde_json::json!({
                "name": format!("CPU time of the {mib} MiB {phase}, workspace on {on}: bench client and both nodes (s; baseline: the raw stream's, both ends; the goal's throughput leaves {budget:.2} s on {cores} cores)"),
                "value": total, "unit": "s", "baseline": raw_cpu, "ratio": total / raw_cpu,
                "goal": null,
            }));
        }
        for (phase, growth) in [("upload", &m.up_growth), ("download", &m.down_growth)] {
            for (node, (before, grew)) in ["renter", "provider"].iter().zip(growth.iter()) {
                let (grew_mib, before_mib) = (*grew as f64 / 1048576.0, *before as f64 / 1048576.0);
                rows.push(serde_json::json!({
                    "name": format!("{node} node's peak RSS growth during the {mib} MiB {phase}, workspace on {on} (MiB; baseline: its RSS before)"),
                    "value": grew_mib, "unit": "MiB", "baseline": before_mib,
                    "ratio": grew_mib / before_mib, "goal": "value <= 64 MiB",
                }));
            }
        }
        let cpu = |[bench, renter, provider]: [f64; 3]| {
            format!("bench client {bench:.2} s, renter {renter:.2} s, provider {provider:.2} s")
        };
        notes.push_str(&format!(
            "\nWorkspace on {on}: CPU time during the upload: {}; during the download: {}.\n\n```\n{}\n```\n",
            cpu(m.up_cpu),
            cpu(m.down_cpu),
            m.phases.join("\n")
        ));
    }
    rows.push(serde_json::json!({
        "name": "raw libp2p stream (MB/s; baseline: plain loopback TCP, informational)",
        "value": raw, "unit": "MB/s", "baseline": tcp, "ratio": raw / tcp, "goal": null,
    }));
    std::fs::write(&out, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    println!("{notes}");
    std::fs::write(std::path::Path::new(&out).with_extension("md"), notes).unwrap();
    println!("{}", serde_json::to_string_pretty(&rows).unwrap());
}
