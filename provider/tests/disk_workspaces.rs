//! Disk-backed workspaces on the real engine: a filesystem of its own per session, its
//! size a cap no tool can pass, `nosuid,nodev,noexec`, shared by the session's tools,
//! and gone with the session or, after a crash, with the next start's reap.
//!
//! Making loop mounts needs root; `scripts/test` runs as root. Elsewhere each test says
//! so and returns.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail loudly, and say why they skip.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use common::{Harness, sh, stderr, stdout};
use orien_protocol::{ExecOutcome, ToolName};
use orien_provider::WorkspacePath;

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: disk-backed workspaces are loop mounts, which need root");
    false
}

/// Files and directories under `dir`, relative to it.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// The session's mount point and image under the harness's workspaces directory.
fn files_of(h: &Harness) -> (PathBuf, PathBuf) {
    let names = entries(h.workspaces.path());
    let image = names
        .iter()
        .find(|n| n.ends_with(".img"))
        .expect("an image");
    let mount = h
        .workspaces
        .path()
        .join(image.strip_suffix(".img").unwrap());
    (mount, h.workspaces.path().join(image))
}

#[tokio::test]
async fn a_tool_writing_past_the_cap_gets_enospc_and_the_host_is_untouched() {
    if !root() {
        return;
    }
    let h = Harness::start().await;
    let s = h.open("disk").await;
    let cap = s.tool().limits().workspace_bytes;
    let (mount, image) = files_of(&h);
    assert!(mounted(&mount), "the workspace is mounted at {mount:?}");
    let image_size = std::fs::metadata(&image).unwrap().len();
    assert_eq!(image_size, cap, "the image is the cap's size");
    // Allocated up front: the cap's blocks, and the host filesystem's few of its own.
    let allocated_at_open = std::fs::metadata(&image).unwrap().blocks() * 512;
    assert!(
        (cap..cap + (1 << 20)).contains(&allocated_at_open),
        "{allocated_at_open} allocated for a cap of {cap}"
    );

    // Empty to the tool: the mark and lost+found are gone.
    let r = sh(&s, "ls -A /workspace; echo end").await;
    assert_eq!(stdout(&r), "end\n", "{r:?}");
    // Four times the cap, written by the tool: the filesystem stops it.
    let r = sh(
        &s,
        "dd if=/dev/zero of=/workspace/big bs=1M count=64; echo rc=$?",
    )
    .await;
    assert!(stdout(&r).contains("rc=1"), "{r:?}");
    assert!(stderr(&r).contains("No space left on device"), "{r:?}");
    // What it could write stays under the cap, and the host holds no more than the
    // image, allocated up front, and its mount point.
    let written = std::fs::metadata(mount.join("files/big")).unwrap().len();
    assert!(written > 0 && written <= cap, "{written} of {cap}");
    let allocated = std::fs::metadata(&image).unwrap().blocks() * 512;
    assert_eq!(allocated, allocated_at_open, "the image did not grow");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), cap);
    assert_eq!(
        entries(h.workspaces.path()).len(),
        2,
        "image and mount point"
    );

    // Once the tool removes the file, the workspace takes files again.
    let r = sh(
        &s,
        "rm /workspace/big && echo hi > /workspace/a && cat /workspace/a",
    )
    .await;
    assert_eq!(stdout(&r), "hi\n", "{r:?}");

    // Closing unmounts it and removes both.
    s.close().await.unwrap();
    assert!(!mounted(&mount));
    assert_eq!(entries(h.workspaces.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_disk_workspace_is_nosuid_nodev_noexec_and_shared_by_the_sessions_tools() {
    if !root() {
        return;
    }
    let h = Harness::start().await;
    let s = h.open("disk").await;
    let r = sh(&s, "grep ' /workspace ' /proc/mounts").await;
    let line = stdout(&r);
    for option in ["nosuid", "nodev", "noexec", "rw"] {
        assert!(
            line.split(' ')
                .nth(3)
                .is_some_and(|o| o.split(',').any(|x| x == option)),
            "{option} missing: {line}"
        );
    }
    assert!(line.starts_with("/dev/loop"), "a loop device: {line}");
    let r = sh(&s, "printf '#!/bin/sh\\necho pwned\\n' > /workspace/x && chmod +x /workspace/x && /workspace/x; echo rc=$?").await;
    assert!(stdout(&r).contains("rc=126"), "noexec workspace: {r:?}");
    // Owned by the sandbox user, as a tmpfs workspace is.
    let r = sh(&s, "stat -c '%u:%g %a' /workspace").await;
    assert_eq!(stdout(&r), "65534:65534 700\n", "{r:?}");

    // Files go in and out through the sandbox as with a tmpfs workspace.
    let path = WorkspacePath::new("in/data.txt").unwrap();
    s.upload(&path, b"from the renter\n").await.unwrap();
    assert_eq!(s.download(&path).await.unwrap(), b"from the renter\n");
    // Another tool of the session runs over the same filesystem.
    let other = s
        .exec_tool(
            orien_protocol::ExecId::random(),
            &ToolName::new("sh").unwrap(),
            serde_json::json!({"script": "cat /workspace/in/data.txt; grep ' /workspace ' /proc/mounts"}),
            std::sync::Arc::new(orien_protocol::SystemClock::new()),
        )
        .collect_output()
        .await;
    assert_eq!(other.exit.outcome, ExecOutcome::Exited, "{other:?}");
    let out = String::from_utf8_lossy(&other.stdout);
    assert!(out.starts_with("from the renter\n/dev/loop"), "{out}");
    s.close().await.unwrap();
    assert_eq!(entries(h.workspaces.path()), Vec::<String>::new());
}

#[tokio::test]
async fn what_a_crash_leaves_is_reaped_at_the_next_start() {
    if !root() {
        return;
    }
    let h = Harness::start().await;
    let s = h.open("disk").await;
    let r = sh(&s, "echo left > /workspace/left").await;
    assert_eq!(r.exit.outcome, ExecOutcome::Exited);
    let (mount, image) = files_of(&h);
    // A crash: neither the session nor the provider ends; nothing is removed.
    std::mem::forget(s);
    let (node, workspaces) = (h.node, h.workspaces.clone());
    std::mem::forget(h);
    assert!(mounted(&mount) && image.exists());

    let restarted = Harness::restart_as(node, workspaces).await;
    assert!(!mounted(&mount), "the reap unmounted it");
    assert_eq!(entries(restarted.workspaces.path()), Vec::<String>::new());
    // And the node makes new ones as before.
    let s = restarted.open("disk").await;
    let r = sh(&s, "ls -A /workspace; echo end").await;
    assert_eq!(stdout(&r), "end\n", "a new session starts empty: {r:?}");
    s.close().await.unwrap();
}

#[tokio::test]
async fn files_move_on_the_providers_side_of_the_mount_and_a_full_workspace_keeps_nothing() {
    use orien_provider::{ProviderError, SandboxSession as _};
    if !root() {
        return;
    }
    let h = Harness::start().await;
    let s = h.open("disk").await;
    let cap = s.tool().limits().workspace_bytes;
    let dir = tempfile::tempdir().unwrap();
    // Within the upload limit, but more than the filesystem holds once its own
    // metadata is counted.
    let staged = dir.path().join("big");
    std::fs::write(&staged, vec![7u8; usize::try_from(cap).unwrap() - 4096]).unwrap();
    let failed = s
        .upload_staged(&WorkspacePath::new("out/big").unwrap(), &staged)
        .await;
    assert!(
        matches!(failed, Err(ProviderError::WorkspaceFull { .. })),
        "{failed:?}"
    );
    let r = sh(
        &s,
        "find /workspace -type f | wc -l; df -k /workspace | tail -1",
    )
    .await;
    assert!(stdout(&r).starts_with("0\n"), "nothing is left: {r:?}");

    // One that fits goes in, the tool reads it, and it comes back with its hash.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&staged, &data).unwrap();
    let path = WorkspacePath::new("in/data.bin").unwrap();
    s.upload_staged(&path, &staged).await.unwrap();
    let r = sh(
        &s,
        "stat -c '%s %u' /workspace/in/data.bin; sha256sum /workspace/in/data.bin",
    )
    .await;
    let expected = orien_protocol::ContentHash::of(&data);
    assert!(stdout(&r).starts_with("3000000 65534\n"), "{r:?}");
    assert!(stdout(&r).contains(&expected.to_string()), "{r:?}");
    let copy = dir.path().join("copy");
    let (size, hash) = s.download_to(&path, &copy).await.unwrap();
    assert_eq!((size, hash), (3_000_000, expected));
    assert_eq!(std::fs::read(&copy).unwrap(), data);
    // A link the tool made is not followed out of the workspace.
    let r = sh(&s, "ln -s /etc/passwd /workspace/passwd && echo ok").await;
    assert_eq!(stdout(&r), "ok\n");
    let followed = s
        .download_to(&WorkspacePath::new("passwd").unwrap(), &copy)
        .await;
    assert!(
        matches!(followed, Err(ProviderError::NotAFile(_))),
        "{followed:?}"
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn an_upload_staged_on_the_workspaces_filesystem_is_renamed_in_out_of_the_tools_sight() {
    use orien_provider::{ProviderError, SandboxSession as _};
    if !root() {
        return;
    }
    let h = Harness::start().await;
    let s = h.open("disk").await;
    let uploads = s
        .upload_staging()
        .expect("a disk workspace stages uploads in itself");
    let (mount, _) = files_of(&h);
    assert_eq!(uploads, mount.join("uploads"));
    // Staged there, the bytes count against the workspace's own filesystem, and the
    // tool sees nothing of them.
    let staged = uploads.join("put-test");
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 239) as u8).collect();
    std::fs::write(&staged, &data).unwrap();
    let r = sh(&s, "ls -A /workspace; echo end; df -k /workspace | tail -1").await;
    assert!(
        stdout(&r).starts_with("end\n"),
        "the tool sees no staged file: {r:?}"
    );
    let used_kib: u64 = stdout(&r)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|k| k.parse().ok())
        .unwrap();
    assert!(
        used_kib >= 1900,
        "the staged bytes are on the workspace's filesystem: {r:?}"
    );
    // A link the tool left at the target is replaced, not written through.
    let r = sh(
        &s,
        "mkdir -p /workspace/in && ln -s /etc/passwd /workspace/in/data.bin && echo ok",
    )
    .await;
    assert_eq!(stdout(&r), "ok\n", "{r:?}");
    let path = WorkspacePath::new("in/data.bin").unwrap();
    let inode = std::fs::metadata(&staged).unwrap().ino();
    s.upload_staged(&path, &staged).await.unwrap();
    assert!(!staged.exists(), "moved, not copied");
    let moved = mount.join("files/in/data.bin");
    let meta = std::fs::symlink_metadata(&moved).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.ino(), inode, "the same file, renamed in");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65534, 65534, 0o644)
    );
    let r = sh(&s, "sha256sum /workspace/in/data.bin").await;
    assert!(
        stdout(&r).contains(&orien_protocol::ContentHash::of(&data).to_string()),
        "{r:?}"
    );
    // A directory at the target stays, and the staged file with it.
    std::fs::write(&staged, b"x").unwrap();
    let r = sh(&s, "mkdir -p /workspace/dir/sub && echo ok").await;
    assert_eq!(stdout(&r), "ok\n", "{r:?}");
    let refused = s
        .upload_staged(&WorkspacePath::new("dir").unwrap(), &staged)
        .await;
    assert!(
        matches!(refused, Err(ProviderError::NotAFile(_))),
        "{refused:?}"
    );
    assert!(staged.exists() && mount.join("files/dir/sub").is_dir());
    s.close().await.unwrap();
    assert!(!mount.exists(), "the workspace goes with its staged files");
}

/// Set in the copy of this test binary that runs in a mount namespace of its own.
const UNSHARED: &str = "ORIEN_TEST_UNSHARED_MOUNTS";

#[tokio::test]
async fn a_node_whose_mounts_the_engine_cannot_see_refuses_the_session() {
    if !root() {
        return;
    }
    if std::env::var_os(UNSHARED).is_none() {
        // Runs this very test again in a private mount namespace, as a node under a
        // service manager that gives it one: its mounts never reach the engine.
        let status = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_node_whose_mounts_the_engine_cannot_see_refuses_the_session",
                "--nocapture",
            ])
            .env(UNSHARED, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the unshared run failed: {status}");
        return;
    }
    let h = Harness::start().await;
    let opened = h
        .provider
        .open_session(
            orien_protocol::SessionId::random(),
            &ToolName::new("disk").unwrap(),
        )
        .await;
    match opened {
        Err(orien_provider::ProviderError::Disk(e)) => {
            assert!(e.to_string().contains("mount namespace"), "{e}")
        }
        other => panic!("the session must be refused: {:?}", other.map(|s| s.id())),
    }
    // Nothing is left: no image, no mount point, no container.
    assert_eq!(entries(h.workspaces.path()), Vec::<String>::new());
    assert!(h.provider.live_sessions().is_empty());
}
