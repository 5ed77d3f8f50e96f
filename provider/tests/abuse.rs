//! Escape and abuse suite: hostile arguments and hostile programs are contained and
//! reported correctly, and the host is unaffected after each.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use common::{Harness, call, host_command_lines, sh, stderr, stdout};
use orien_protocol::ExecOutcome;
use orien_provider::{EntryKind, ProviderError, SessionSandbox, WorkspacePath};
use serde_json::json;

/// The sandbox still works after an abuse: a fresh call runs normally.
async fn still_healthy(s: &SessionSandbox) {
    let r = sh(s, "echo ok").await;
    assert_eq!(
        (r.exit.outcome.clone(), stdout(&r).as_str()),
        (ExecOutcome::Exited, "ok\n"),
        "{r:?}"
    );
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn network_connection_to_host_loopback_is_impossible() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = sh(
        &s,
        &format!("echo hi | nc -w 2 127.0.0.1 {port}; echo rc=$?"),
    )
    .await;
    assert!(
        stdout(&r).contains("rc=1"),
        "connection attempt must fail: {r:?}"
    );
    // The call is over, so any connection it made would be queued by now.
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the host listener saw a connection");
    let r = sh(&s, "wget -q -T 2 -O - http://127.0.0.1:1/ ; echo rc=$?").await;
    assert!(stdout(&r).contains("rc=1"), "{r:?}");
    still_healthy(&s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn writes_outside_workspace_and_tmp_fail() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let marker = format!("orien-escape-{}", s.id());
    for target in [
        format!("/{marker}"),
        format!("/etc/{marker}"),
        format!("/bin/{marker}"),
        format!("/proc/{marker}"),
    ] {
        let r = sh(&s, &format!("echo x > {target}")).await;
        assert_ne!(
            r.exit.exit_code,
            Some(0),
            "write to {target} succeeded: {r:?}"
        );
        assert!(
            !std::path::Path::new(&target).exists(),
            "{target} appeared on the host"
        );
    }
    let r = sh(&s, "echo x > /etc/passwd; echo rc=$?").await;
    assert!(
        stdout(&r).contains("rc=1") || stdout(&r).contains("rc=2"),
        "{r:?}"
    );
    assert!(stderr(&r).contains("Read-only file system"), "{r:?}");
    // Where writing is allowed, it works.
    let r = sh(
        &s,
        "echo a > /tmp/a && echo b > /workspace/b && cat /tmp/a /workspace/b",
    )
    .await;
    assert_eq!(stdout(&r), "a\nb\n");
    // /tmp and /workspace refuse to execute what is written there.
    let r = sh(&s, "printf '#!/bin/sh\\necho pwned\\n' > /workspace/x && chmod +x /workspace/x && /workspace/x; echo rc=$?").await;
    assert!(stdout(&r).contains("rc=126"), "noexec workspace: {r:?}");
    still_healthy(&s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn fork_bomb_is_capped_by_the_pid_limit() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let pids = s.tool().limits().pids;
    let r = sh(
        &s,
        "bomb() { bomb | bomb & }; bomb; sleep 1; ps -o pid | wc -l",
    )
    .await;
    assert!(
        matches!(r.exit.outcome, ExecOutcome::Exited | ExecOutcome::TimedOut),
        "{r:?}"
    );
    // After the call nothing of the bomb survives: the container was restarted.
    let r = sh(&s, "ps -o pid,args").await;
    let procs = stdout(&r).lines().count().saturating_sub(1);
    assert!(
        procs <= 4,
        "bomb processes survived ({procs} > 4, limit {pids}): {}",
        stdout(&r)
    );
    still_healthy(&s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn memory_bomb_is_reported_as_out_of_memory() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let r = sh(&s, "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done").await;
    assert_eq!(r.exit.outcome, ExecOutcome::OutOfMemory, "{r:?}");
    assert_eq!(r.exit.exit_code, None);
    let limit = s.tool().limits().memory_bytes;
    assert!(
        r.exit.peak_memory_bytes > limit / 2 && r.exit.peak_memory_bytes <= limit,
        "peak {} vs limit {limit}",
        r.exit.peak_memory_bytes
    );
    still_healthy(&s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn filling_the_workspace_stops_at_its_quota() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let quota = s.tool().limits().workspace_bytes;
    let r = sh(
        &s,
        "dd if=/dev/zero of=/workspace/fill bs=64k count=1000 2>&1; echo rc=$?",
    )
    .await;
    assert!(stdout(&r).contains("No space left on device"), "{r:?}");
    let listed = s.list().await.unwrap();
    let fill = listed.iter().find(|e| e.path == "fill").unwrap();
    assert!(fill.size <= quota, "{} > quota {quota}", fill.size);
    // An upload into the full workspace is refused with a typed error.
    let err = s
        .upload(&WorkspacePath::new("more").unwrap(), &vec![1u8; 200_000])
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::WorkspaceFull { .. }), "{err}");
    // An upload over the limit never reaches the engine.
    let err = s
        .upload(
            &WorkspacePath::new("huge").unwrap(),
            &vec![0u8; quota as usize + 1],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::TooLarge { .. }), "{err}");
    sh(&s, "rm /workspace/fill").await;
    still_healthy(&s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn output_flood_is_capped_and_flagged_without_growing_the_provider() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let cap = s.tool().limits().output_bytes;
    let before = rss_bytes();
    let r = sh(&s, "head -c 50000000 /dev/zero; echo done >&2").await;
    assert_eq!(r.exit.outcome, ExecOutcome::Exited, "{:?}", r.exit);
    assert_eq!(r.exit.stdout_bytes, 50_000_000, "every byte is counted");
    assert_eq!(r.stdout.len() as u64, cap, "only the cap is delivered");
    assert!(r.exit.stdout_truncated && !r.exit.stderr_truncated);
    assert_eq!(stderr(&r), "done\n");
    // An endless flood ends at the timeout.
    let r = sh(&s, "yes flood").await;
    assert_eq!(r.exit.outcome, ExecOutcome::TimedOut);
    assert!(
        r.stdout.len() as u64 <= cap,
        "delivered {} > cap {cap}",
        r.stdout.len()
    );
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "provider grew by {grown} bytes during the flood"
    );
    still_healthy(&s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn sleeping_past_the_timeout_is_killed_inside_and_outside() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    let marker = "sleep 4217";
    let kept = WorkspacePath::new("kept.txt").unwrap();
    s.upload(&kept, b"survives timeouts").await.unwrap();
    let r = sh(&s, &format!("{marker}; echo never")).await;
    assert_eq!(r.exit.outcome, ExecOutcome::TimedOut, "{r:?}");
    assert_eq!(r.exit.exit_code, None);
    let limit = s.tool().limits().max_exec.get();
    assert!(
        r.exit.wall.get() >= limit,
        "wall {} < limit {limit}",
        r.exit.wall
    );
    assert!(!stdout(&r).contains("never"));
    // Outside: no such process on the host.
    let left: Vec<_> = host_command_lines()
        .into_iter()
        .filter(|c| c == marker)
        .collect();
    assert!(left.is_empty(), "host still runs {left:?}");
    // Inside: no such process in the container.
    let r = sh(&s, "ps -o args").await;
    assert!(!stdout(&r).contains(marker), "{}", stdout(&r));
    // Ending the call did not cost the session its workspace.
    assert_eq!(s.download(&kept).await.unwrap(), b"survives timeouts");
    still_healthy(&s).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn argument_injection_never_reaches_a_shell() {
    let h = Harness::start().await;
    let grep = h.open("grep").await;
    grep.upload(
        &WorkspacePath::new("t.txt").unwrap(),
        b"a; rm -rf /\n$(id)\n",
    )
    .await
    .unwrap();
    // Shell syntax is data: matched literally, never run.
    let r = call(&grep, json!({"pattern": "; rm -rf /", "file": "t.txt"})).await;
    assert_eq!(stdout(&r), "a; rm -rf /\n");
    let r = call(&grep, json!({"pattern": "$(id)", "file": "t.txt"})).await;
    assert_eq!(
        (stdout(&r).as_str(), r.exit.exit_code),
        ("", Some(1)),
        "ERE `$(id)` matches nothing literal here"
    );
    let r = call(&grep, json!({"pattern": "x", "file": "$(id)"})).await;
    assert_eq!(r.exit.exit_code, Some(2));
    assert!(stderr(&r).contains("/workspace/$(id)"), "{r:?}");
    // Option injection: refused before anything runs.
    let echo = h.open("echo").await;
    for text in ["-n", "--help", "-e\\x41"] {
        let r = call(&echo, json!({ "text": text })).await;
        assert!(
            matches!(r.exit.outcome, ExecOutcome::InvalidArguments { .. }),
            "{text}: {r:?}"
        );
        assert_eq!(r.exit.wall.get(), 0);
    }
    // Path traversal in file arguments.
    for file in ["../etc/passwd", "/etc/passwd", "a/../../x"] {
        let r = call(&grep, json!({"pattern": "root", "file": file})).await;
        assert!(
            matches!(r.exit.outcome, ExecOutcome::InvalidArguments { .. }),
            "{file}: {r:?}"
        );
    }
    // Unknown or ill-typed arguments.
    let r = call(
        &grep,
        json!({"pattern": "a", "file": "t.txt", "extra": "--x"}),
    )
    .await;
    assert!(
        matches!(r.exit.outcome, ExecOutcome::InvalidArguments { .. }),
        "{r:?}"
    );
    grep.close().await.unwrap();
    echo.close().await.unwrap();
}

/// A tar with one entry whose raw name and type are set by hand, as an attacker would.
fn raw_tar(name: &[u8], kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o4755);
    header.set_uid(0);
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn uploads_refuse_traversal_symlinks_and_special_files() {
    let h = Harness::start().await;
    let s = h.open("sh").await;
    for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
        assert!(WorkspacePath::new(bad).is_err(), "{bad}");
    }
    let cases: [(&[u8], tar::EntryType, Option<&str>); 6] = [
        (b"../escape", tar::EntryType::Regular, None),
        (b"/etc/orien-abs", tar::EntryType::Regular, None),
        (b"link", tar::EntryType::Symlink, Some("/etc/passwd")),
        (b"hard", tar::EntryType::Link, Some("/etc/passwd")),
        (b"dev", tar::EntryType::Char, None),
        (b"fifo", tar::EntryType::Fifo, None),
    ];
    for (name, kind, link) in cases {
        let err = s
            .upload_archive(&raw_tar(name, kind, link, b""))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::Path(_) | ProviderError::UnsafeEntry { .. }
            ),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
    }
    assert!(
        s.list().await.unwrap().is_empty(),
        "nothing of the refused uploads landed"
    );
    // A good archive lands with the sandbox user's ownership and no set-uid bit.
    s.upload_archive(&raw_tar(
        b"ok/file.txt",
        tar::EntryType::Regular,
        None,
        b"fine",
    ))
    .await
    .unwrap();
    let r = sh(&s, "stat -c '%u %a' /workspace/ok/file.txt").await;
    assert_eq!(stdout(&r), "65534 644\n");
    // A symlink made by a tool is listed as such and never followed by a download.
    sh(&s, "ln -s /etc/passwd /workspace/pw").await;
    let entries = s.list().await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.path == "pw" && e.kind == EntryKind::Symlink),
        "{entries:?}"
    );
    let err = s
        .download(&WorkspacePath::new("pw").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotAFile(_)), "{err}");
    assert_eq!(
        s.download(&WorkspacePath::new("ok/file.txt").unwrap())
            .await
            .unwrap(),
        b"fine"
    );
    let err = s
        .download(&WorkspacePath::new("absent").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
    // An upload through a symlink a tool planted never lands outside the workspace.
    sh(&s, "ln -s /tmp /workspace/via").await;
    let through = s
        .upload(&WorkspacePath::new("via/planted").unwrap(), b"x")
        .await;
    let r = sh(&s, "ls /tmp/planted").await;
    assert_ne!(
        r.exit.exit_code,
        Some(0),
        "upload followed a planted symlink out of the workspace: {through:?}"
    );
    still_healthy(&s).await;
    s.close().await.unwrap();
}
