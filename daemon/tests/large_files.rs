//! Large files between a renter and a provider with the real Docker sandbox, over
//! loopback TCP: a gigabyte up and back through the renter's HTTP API, transfers cut
//! off halfway that resume, ranges and resumed uploads over HTTP, and uploads over the
//! cap refused before a byte moves.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/loopback.rs"]
mod loopback;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use orien_daemon::{ByteStream, SessionConfig, SessionError, TransferError};
use orien_protocol::transfer::TransferRefusal;
use orien_protocol::{ContentHash, Millis, SessionId};
use sha2::{Digest, Sha256};

use loopback::Market;

/// The example provider with the `sha256` tool's workspace and uploads at `workspace`,
/// the workspace on disk (a filesystem of its own per session).
fn provider_config(dir: &std::path::Path, workspace: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(loopback::example_config()).unwrap();
    let marker = "[tools.sha256.limits]";
    let (head, tail) = text.split_once(marker).unwrap();
    let tail = tail.replacen(
        r#"workspace = "64MiB""#,
        &format!("workspace = \"{workspace}\"\nupload = \"{workspace}\"\nworkspace_on = \"disk\""),
        1,
    );
    let path = dir.join("provider.toml");
    std::fs::write(&path, format!("{head}{marker}{tail}")).unwrap();
    path
}

/// Pseudo-random bytes, `piece` at a time, the same for the same `seed`.
fn generated(seed: u64, size: u64, piece: usize) -> impl Iterator<Item = Bytes> {
    let mut state = seed | 1;
    let mut left = size;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let len = left.min(piece as u64) as usize;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&state.to_le_bytes());
        }
        out.truncate(len);
        left -= len as u64;
        Some(Bytes::from(out))
    })
}

fn sha256_of(seed: u64, size: u64) -> ContentHash {
    let mut hasher = Sha256::new();
    for piece in generated(seed, size, 1 << 20) {
        hasher.update(&piece);
    }
    ContentHash::from_bytes(hasher.finalize().into())
}

fn body_of(seed: u64, size: u64) -> ByteStream {
    Box::pin(futures::stream::iter(
        generated(seed, size, 1 << 20).map(Ok),
    ))
}

/// The process's resident memory, sampled until dropped; both nodes live in it.
struct RssWatch {
    start: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

impl RssWatch {
    fn start() -> Self {
        let start = rss();
        let peak = Arc::new(AtomicU64::new(start));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { start, peak, stop }
    }

    fn growth(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).saturating_sub(self.start)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The renter's HTTP API on a loopback port: its base URL and token.
/// Closes the session and stops both nodes.
async fn close_and_stop(market: Market, session: SessionId) {
    market
        .renter
        .sessions()
        .unwrap()
        .close(session)
        .await
        .unwrap();
    market.shutdown().await;
}

fn config() -> SessionConfig {
    SessionConfig {
        receipt_interval: Millis(2_000),
        ..SessionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_goes_up_and_comes_back_over_http_with_matching_hashes() {
    const SIZE: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let market =
        Market::start_with(&provider_config(dir.path(), "1100MiB"), "sha256", config()).await;
    let (base, token) = market.serve_api().await;
    let session = market.open().await;
    let expected = sha256_of(7, SIZE);
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/sessions/{session}/files/big/one.bin");

    let watch = RssWatch::start();
    let up = http
        .put(&url)
        .bearer_auth(&token)
        .header("content-length", SIZE)
        .body(reqwest::Body::wrap_stream(body_of(7, SIZE)))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201, "{:?}", up.text().await);
    let view: serde_json::Value = up.json().await.unwrap();
    assert_eq!(view["size"], SIZE);
    assert_eq!(view["sha256"], expected.to_string());
    let up_growth = watch.growth();
    drop(watch);

    let watch = RssWatch::start();
    let down = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(down.status(), 200);
    assert_eq!(down.headers()["content-length"], SIZE.to_string().as_str());
    assert_eq!(down.headers()["etag"], format!("\"{expected}\"").as_str());
    let mut hasher = Sha256::new();
    let mut read: u64 = 0;
    let mut body = down.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        read += piece.len() as u64;
        hasher.update(&piece);
    }
    assert_eq!(read, SIZE);
    assert_eq!(ContentHash::from_bytes(hasher.finalize().into()), expected);
    let down_growth = watch.growth();
    drop(watch);
    eprintln!(
        "1 GiB up: RSS growth {} MiB; down: {} MiB (both nodes)",
        up_growth >> 20,
        down_growth >> 20
    );
    // Loose on purpose (allocator slack, two nodes in one process); the benchmark
    // measures each node against the 64 MiB goal.
    assert!(
        up_growth < 256 << 20,
        "upload grew RSS by {up_growth} bytes"
    );
    assert!(
        down_growth < 256 << 20,
        "download grew RSS by {down_growth} bytes"
    );
    close_and_stop(market, session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_cut_off_halfway_resume_and_complete() {
    const SIZE: u64 = 40 << 20;
    let market = Market::start("sha256", config()).await;
    let session = market.open().await;
    let sessions = market.renter.sessions().unwrap().clone();
    let provider = market.provider_key.node_id();

    // The renter's node drops its connection to the provider when half is read.
    let renter = market.renter.clone();
    let mut sent: u64 = 0;
    let body = futures::stream::iter(generated(11, SIZE, 1 << 20)).then(move |piece| {
        sent += piece.len() as u64;
        let cut = sent == SIZE / 2;
        let renter = renter.clone();
        async move {
            if cut {
                assert!(renter.disconnect(provider).await.unwrap(), "connected");
            }
            Ok(piece)
        }
    });
    let stored = sessions
        .upload_file(session, "cut.bin", SIZE, 0, Box::pin(body))
        .await
        .unwrap();
    assert_eq!(stored.sha256, sha256_of(11, SIZE));
    assert!(stored.resumes >= 1, "the upload resumed: {stored:?}");

    let download = sessions
        .download_file(session, "cut.bin", 0, None)
        .await
        .unwrap();
    assert_eq!(download.sha256, stored.sha256);
    let mut hasher = Sha256::new();
    let mut read: u64 = 0;
    let mut body = download.body;
    let mut cut = false;
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        read += piece.len() as u64;
        hasher.update(&piece);
        if !cut && read >= SIZE / 2 {
            cut = true;
            assert!(market.renter.disconnect(provider).await.unwrap());
        }
    }
    assert_eq!(read, SIZE);
    assert_eq!(
        ContentHash::from_bytes(hasher.finalize().into()),
        stored.sha256
    );
    close_and_stop(market, session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_cap_is_refused_before_a_byte_moves() {
    let market = Market::start("sha256", config()).await;
    let session = market.open().await;
    let sessions = market.renter.sessions().unwrap().clone();
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let body = futures::stream::poll_fn(move |_| {
        flag.store(true, Ordering::Relaxed);
        std::task::Poll::Ready(Some(Ok(Bytes::from_static(b"x"))))
    });
    let over = (64 << 20) + 1;
    let refused = sessions
        .upload_file(session, "over.bin", over, 0, Box::pin(body))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, SessionError::Transfer(TransferError::Refused(r)) if r.code == TransferRefusal::TooLarge),
        "{refused}"
    );
    assert!(!polled.load(Ordering::Relaxed), "not a byte was read");
    let files = sessions.list_files(session).await.unwrap();
    assert!(files.iter().all(|f| f.path != "over.bin"), "{files:?}");
    close_and_stop(market, session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ranges_resume_downloads_and_content_ranges_resume_uploads() {
    const SIZE: u64 = 3 << 20;
    let market = Market::start("sha256", config()).await;
    let (base, token) = market.serve_api().await;
    let session = market.open().await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/sessions/{session}/files/r.bin");
    let whole: Vec<u8> = generated(5, SIZE, 1 << 20)
        .flat_map(|b| b.to_vec())
        .collect();
    let sha = ContentHash::of(&whole);

    // No size, no upload.
    let chunked = http
        .put(&url)
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(futures::stream::once(async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"no length"))
        })))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 411);

    // An upload whose client dies part way: the provider keeps what it verified.
    let half = futures::stream::iter(
        generated(5, SIZE, 256 << 10)
            .take(6)
            .map(Ok::<_, std::io::Error>),
    )
    .chain(futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Err(std::io::Error::other("the client died"))
    }));
    let cut = http
        .put(&url)
        .bearer_auth(&token)
        .header("content-length", SIZE)
        .body(reqwest::Body::wrap_stream(half))
        .send()
        .await;
    assert!(cut.is_err() || !cut.unwrap().status().is_success());
    // A resume from the wrong byte is told where to start.
    let wrong = http
        .put(&url)
        .bearer_auth(&token)
        .header("content-range", format!("bytes 1-{}/{SIZE}", SIZE - 1))
        .body(whole[1..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 409);
    let held: u64 = wrong.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        held > 0 && held < SIZE && held.is_multiple_of(256 << 10),
        "held {held}"
    );
    let resumed = http
        .put(&url)
        .bearer_auth(&token)
        .header("content-range", format!("bytes {held}-{}/{SIZE}", SIZE - 1))
        .body(whole[held as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 201);
    let view: serde_json::Value = resumed.json().await.unwrap();
    assert_eq!(
        view["sha256"],
        sha.to_string(),
        "the provider's hash of the whole"
    );

    // A range of the same copy, then a range past the end.
    let first = http.get(&url).bearer_auth(&token).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{sha}\""));
    drop(first);
    let part = http
        .get(&url)
        .bearer_auth(&token)
        .header("range", "bytes=1000-1999")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1000-1999/{SIZE}").as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &whole[1000..2000]);
    let tail = http
        .get(&url)
        .bearer_auth(&token)
        .header("range", format!("bytes={}-", SIZE - 10))
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &whole[(SIZE - 10) as usize..]
    );
    let past = http
        .get(&url)
        .bearer_auth(&token)
        .header("range", format!("bytes={}-", SIZE + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    close_and_stop(market, session).await;
}

/// A tar of `entries` written as given (no checks: hostile archives too).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        let raw = name.as_bytes();
        header.as_gnu_mut().unwrap().name[..raw.len()].copy_from_slice(raw);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn files_of(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() == tar::EntryType::Regular {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            files.push((entry.path().unwrap().display().to_string(), data));
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_tree_round_trips_as_tar_and_hostile_archives_land_nothing() {
    let market = Market::start("sha256", config()).await;
    let (base, token) = market.serve_api().await;
    let session = market.open().await;
    let http = reqwest::Client::new();
    let big: Vec<u8> = generated(3, 300 << 10, 1 << 20)
        .flat_map(|b| b.to_vec())
        .collect();
    let tree = tar_of(&[
        ("a/", tar::EntryType::Directory, b""),
        ("a/x.txt", tar::EntryType::Regular, b"x\n"),
        ("a/b/y.bin", tar::EntryType::Regular, &big),
        ("top.txt", tar::EntryType::Regular, b"top\n"),
        ("empty/", tar::EntryType::Directory, b""),
    ]);
    let put = http
        .put(format!("{base}/v1/sessions/{session}/files/proj"))
        .bearer_auth(&token)
        .header("content-type", "application/x-tar")
        .body(tree.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    let view: serde_json::Value = put.json().await.unwrap();
    assert_eq!(view["sha256"], ContentHash::of(&tree).to_string());

    // The tool sees the files where the archive put them.
    let sessions = market.renter.sessions().unwrap();
    let exec = sessions
        .exec(session, None, r#"{"file":"proj/a/b/y.bin"}"#.into())
        .await
        .unwrap();
    let out = sessions
        .wait_exec(session, exec, Duration::from_secs(60))
        .await
        .unwrap();
    let stdout =
        String::from_utf8_lossy(&out.output(orien_protocol::OutputStream::Stdout)).into_owned();
    assert!(
        stdout.starts_with(&ContentHash::of(&big).to_string()),
        "{stdout}"
    );

    let expected = vec![
        ("a/b/y.bin".to_owned(), big.clone()),
        ("a/x.txt".to_owned(), b"x\n".to_vec()),
        ("top.txt".to_owned(), b"top\n".to_vec()),
    ];
    let dir = http
        .get(format!("{base}/v1/sessions/{session}/files/proj"))
        .bearer_auth(&token)
        .header("accept", "application/x-tar")
        .send()
        .await
        .unwrap();
    assert_eq!(dir.status(), 200);
    assert_eq!(dir.headers()["content-type"], "application/x-tar");
    let back = dir.bytes().await.unwrap();
    assert_eq!(files_of(&back), expected);
    let names: Vec<String> = tar::Archive::new(back.as_ref())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.trim_end_matches('/') == "empty"),
        "{names:?}"
    );
    // The whole workspace, from its root.
    let root = http
        .get(format!("{base}/v1/sessions/{session}/files"))
        .bearer_auth(&token)
        .header("accept", "application/x-tar")
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    let root_files = files_of(&root.bytes().await.unwrap());
    assert!(root_files.contains(&("proj/top.txt".to_owned(), b"top\n".to_vec())));

    let before = sessions.list_files(session).await.unwrap().len();
    for (name, kind) in [
        ("evil", tar::EntryType::Symlink),
        ("hard", tar::EntryType::Link),
        ("dev", tar::EntryType::Char),
        ("../escape.txt", tar::EntryType::Regular),
        ("/abs.txt", tar::EntryType::Regular),
    ] {
        let hostile = tar_of(&[
            ("fine.txt", tar::EntryType::Regular, b"fine"),
            (name, kind, b""),
        ]);
        let refused = http
            .put(format!("{base}/v1/sessions/{session}/files"))
            .bearer_auth(&token)
            .header("content-type", "application/x-tar")
            .body(hostile)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{name}: {:?}", refused.text().await);
    }
    let after = sessions.list_files(session).await.unwrap();
    assert_eq!(after.len(), before, "nothing landed: {after:?}");
    assert!(after.iter().all(|f| f.path != "fine.txt"));
    close_and_stop(market, session).await;
}
