//! The disk fills up under the ledger: a size-capped tmpfs is mounted for the data
//! directory (the test runs as root, as CI does). Ingesting must fail with a clear typed
//! error, and nothing already acked may be lost: the store reopens read-only on the full
//! disk with every acked receipt and verifies, and after the filesystem grows it takes
//! receipts again. The mount is removed even if the test fails.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use orien_ledger::{Store, StoreError, StoreOptions};
use orien_protocol::{PaymentLane, SessionId, Usdc};
use support::chain::{ChainBuilder, parties, session_record};

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "orien-ledger-test",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs failed (the disk-full test needs root, as in CI)"
        );
        Self(path.to_owned())
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn a_full_disk_gives_a_typed_error_and_loses_nothing_acked() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&dir.path().join("mnt"), "6m");
    let data = mount.0.join("ledger");
    let p = parties();
    let session = SessionId::random();
    let mut chain = ChainBuilder::new(session, None);
    let mut acked = 0u64;
    {
        let store = Store::open(&data).unwrap();
        store
            .open_session(session_record(
                session,
                &p,
                PaymentLane::Ledger,
                Usdc::from_micros(u64::MAX / 2),
            ))
            .unwrap();
        let error = loop {
            assert!(acked < 1_000_000, "the 6 MiB filesystem never filled up");
            let batch: Vec<_> = (0..256).map(|_| chain.next(&p, 7)).collect();
            let results = store.ingest_many(batch, None);
            let mut failed = None;
            for result in results {
                match result {
                    Ok(_) if failed.is_none() => acked += 1,
                    Ok(d) => panic!(
                        "#{} committed after an earlier receipt of the group failed",
                        d.seq()
                    ),
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                break e;
            }
        };
        assert!(
            matches!(error, StoreError::DiskFull { .. }),
            "expected DiskFull, got {error:?}"
        );
        assert!(error.to_string().contains("is full"), "{error}");
        // The store keeps refusing rather than pretending.
        assert!(store.ingest(chain.next(&p, 1)).is_err());
        eprintln!("disk full after {acked} acked receipts: {error}");
    }
    assert!(acked > 0, "nothing was acked before the disk filled");

    // On the still-full disk, read-only: every acked receipt is there and verifies.
    {
        let store = Store::open_with(
            &data,
            StoreOptions {
                read_only: true,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        assert!(store.session_totals(&session).unwrap().receipts >= acked);
        store.verify().unwrap();
    }

    // After the disk grows, the ledger takes receipts again from where it was.
    mount.resize("64m");
    let store = Store::open(&data).unwrap();
    let head = store.head(&session).unwrap().unwrap();
    assert!(head.seq >= acked);
    store.verify().unwrap();
    let mut resumed = ChainBuilder::resume(session, None, &head);
    store.ingest(resumed.next(&p, 1)).unwrap();
    store.verify().unwrap();
}
