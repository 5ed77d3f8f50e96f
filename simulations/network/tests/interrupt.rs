//! An interrupted run leaves nothing behind: the nodes' ledgers go with it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How many nodes have made their ledgers under `scratch` (in the run's directory, a
/// directory per node).
fn nodes_started(scratch: &Path) -> usize {
    let dirs = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    dirs(scratch)
        .iter()
        .flat_map(|run| dirs(run))
        .filter(|node| !dirs(node).is_empty())
        .count()
}

#[test]
fn an_interrupted_run_removes_the_nodes_ledgers_and_exits_as_interrupted() {
    let scratch = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/fifty.toml");
    let mut run = Command::new(env!("CARGO_BIN_EXE_orien-sim-network"))
        .arg("run")
        .arg(&scenario)
        .arg("--quiet")
        .arg("--scratch")
        .arg(scratch.path())
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Mid-start: nodes running, ledgers open, more starting.
    while nodes_started(scratch.path()) < 20 {
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before it was interrupted"
        );
        assert!(
            Instant::now() < deadline,
            "20 nodes not started in two minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = run.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
