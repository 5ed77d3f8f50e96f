//! The example tools of `configs/provider.example.toml` run in the real sandbox and
//! return the right output.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{Harness, call, stdout};
use orien_protocol::{ExecOutcome, Millis, Timestamp, ToolName, wire};
use orien_provider::{ProviderConfig, WorkspacePath};
use serde_json::json;

const TEXT: &[u8] = b"alpha beta\ngamma\n-delta alpha\n";

#[test]
fn example_config_loads_with_every_tool() {
    let (_, tools) = ProviderConfig::load(&common::example_path()).unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name().to_string()).collect();
    assert_eq!(names, ["base64", "grep", "sha256", "wc"]);
}

#[tokio::test]
async fn sha256_of_a_workspace_file() {
    let h = Harness::start().await;
    let s = h.open("sha256").await;
    s.upload(&WorkspacePath::new("dir/hello.txt").unwrap(), b"hello\n")
        .await
        .unwrap();
    let r = call(&s, json!({"file": "dir/hello.txt"})).await;
    assert_eq!(r.exit.outcome, ExecOutcome::Exited);
    assert_eq!(r.exit.exit_code, Some(0));
    assert_eq!(
        stdout(&r),
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  /workspace/dir/hello.txt\n"
    );
    assert!(!r.exit.stdout_truncated);
    assert_eq!(r.exit.stdout_bytes, r.stdout.len() as u64);
    s.close().await.unwrap();
}

#[tokio::test]
async fn wc_counts_lines_words_and_bytes() {
    let h = Harness::start().await;
    let s = h.open("wc").await;
    s.upload(&WorkspacePath::new("t.txt").unwrap(), TEXT)
        .await
        .unwrap();
    let lines = call(&s, json!({"file": "t.txt", "mode": "-l"})).await;
    assert_eq!(stdout(&lines).split_whitespace().next(), Some("3"));
    let all = call(&s, json!({"file": "t.txt"})).await;
    let counts: Vec<_> = stdout(&all)
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    assert_eq!(counts, ["3", "5", &TEXT.len().to_string()]);
    let refused = call(&s, json!({"file": "t.txt", "mode": "--help"})).await;
    assert!(matches!(
        refused.exit.outcome,
        ExecOutcome::InvalidArguments { .. }
    ));
    s.close().await.unwrap();
}

#[tokio::test]
async fn grep_finds_matching_lines_and_dash_patterns() {
    let h = Harness::start().await;
    let s = h.open("grep").await;
    s.upload(&WorkspacePath::new("t.txt").unwrap(), TEXT)
        .await
        .unwrap();
    let r = call(&s, json!({"pattern": "alpha$", "file": "t.txt"})).await;
    assert_eq!(stdout(&r), "-delta alpha\n");
    // The schema allows a leading dash here, and `-e` keeps it a pattern.
    let r = call(&s, json!({"pattern": "-delta", "file": "t.txt"})).await;
    assert_eq!(
        (stdout(&r).as_str(), r.exit.exit_code),
        ("-delta alpha\n", Some(0))
    );
    let none = call(&s, json!({"pattern": "zeta", "file": "t.txt"})).await;
    assert_eq!(none.exit.exit_code, Some(1));
    s.close().await.unwrap();
}

#[tokio::test]
async fn base64_encodes_and_decodes() {
    let h = Harness::start().await;
    let s = h.open("base64").await;
    s.upload(&WorkspacePath::new("bin").unwrap(), &[0, 1, 2, 250, 255])
        .await
        .unwrap();
    let r = call(&s, json!({"file": "bin"})).await;
    assert_eq!(stdout(&r), "AAEC+v8=\n");
    s.upload(&WorkspacePath::new("b64").unwrap(), b"aGVsbG8=\n")
        .await
        .unwrap();
    let r = call(&s, json!({"file": "b64", "decode": "-d"})).await;
    assert_eq!(r.stdout, b"hello");
    s.close().await.unwrap();
}

#[tokio::test]
async fn offers_are_built_from_the_registry() {
    let h = Harness::start().await;
    let tool = ToolName::new("sha256").unwrap();
    let offer = h
        .provider
        .offer(
            &tool,
            orien_protocol::EvmAddress::from_bytes([0x11; 20]),
            Timestamp(1_700_000_000_000),
            Millis(600_000),
        )
        .unwrap();
    assert_eq!(offer.image_digest, h.provider.image_digest(&tool).unwrap());
    assert_eq!(offer.limits.cpu_millis, 500);
    assert_eq!(offer.limits.memory_bytes, 64 << 20);
    // The offer passes the protocol's own validation on the wire.
    let bytes = wire::encode(&offer).unwrap();
    assert_eq!(
        wire::decode::<orien_protocol::Offer>(&bytes).unwrap(),
        offer
    );
}
